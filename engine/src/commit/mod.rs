//! The guarantee-specific step of the commit cycle: make the produced records (outputs, changelog,
//! dead letters) durable together with the input offsets. Everything before it (collecting dirty
//! state) and after it (applying state, checkpoints) is the same for every guarantee.

use crate::collector::{Deliveries, RecordCollector};
use crate::health::Health;
use crate::worker::GroupConsumer;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use std::time::{Duration, Instant};

mod at_least_once;
mod exactly_once;

pub(crate) use at_least_once::AtLeastOnce;
pub(crate) use exactly_once::ExactlyOnce;

/// What a commit step did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Outputs, changelog and offsets are durable together.
    Committed,
    /// The group moved on (a rebalance, this member expelled): the offsets were not committed,
    /// nothing of the cycle may reach the stores.
    Rebalancing,
    /// Nothing of this cycle is visible: drop the uncommitted state and rewind to the committed
    /// offsets, then carry on.
    Aborted(String),
}

/// Why the worker cannot go on with its commit steps.
#[derive(Debug)]
pub(crate) enum StepError {
    /// The transactional producer can no longer be used; another instance may own its tasks.
    Fenced(String),
    Fatal(anyhow::Error),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Fenced(why) => write!(f, "producer fenced: {why}"),
            StepError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for StepError {}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Fatal(e)
    }
}

pub(crate) trait CommitStep {
    /// Called before the first record is produced, and again after the producer was renewed.
    /// Waits (not ready) while Kafka is away.
    fn start(&mut self, out: &RecordCollector, health: &Health) -> anyhow::Result<()>;
    fn commit(
        &mut self,
        out: &RecordCollector,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> Result<Outcome, StepError>;
    /// After an aborted cycle: make the producer usable again.
    fn recover(&mut self, out: &RecordCollector) -> Result<(), StepError>;

    /// After [`StepError::Fenced`]: a new producer with the same identity in place of the old
    /// one, started again (under exactly-once `init_transactions` fences whatever else holds the
    /// transactional id and aborts the transaction it left open).
    fn renew(&mut self, out: &mut RecordCollector, health: &Health) -> anyhow::Result<()> {
        out.renew()
            .map_err(|e| anyhow::anyhow!("creating a new producer: {e}"))?;
        self.start(out, health)
    }
}

/// How long one blocking call to Kafka may hold the worker's thread before it serves its loop
/// (liveness, readiness) and calls again.
const CALL_SLICE: Duration = Duration::from_secs(5);

/// Waits up to `timeout` until every record sent is acknowledged, serving delivery reports as
/// they arrive. rdkafka's own `flush` waits in whole 100 ms polls whenever a record is still in
/// flight (its `poll` returns only at its deadline, not at the first event), which cost every
/// commit cycle 100 ms for acknowledgements that take one or two. A short `poll` timeout is no
/// way out (rdkafka rounds what is left of it down to whole milliseconds, so a 1 ms poll spins):
/// reports are served without waiting, and between them the thread sleeps, from 100 us up to
/// 10 ms while nothing arrives (a broker away costs no CPU). A record counts as in flight until
/// its delivery report has been handed to the context, so a failure is known when this returns.
fn flush_within(producer: &BaseProducer<Deliveries>, timeout: Duration) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = FLUSH_PAUSE_MIN;
    let mut in_flight = producer.in_flight_count();
    while in_flight > 0 {
        producer.poll(Duration::ZERO);
        let now_in_flight = producer.in_flight_count();
        if now_in_flight < in_flight {
            // A report was served: there may be more at once.
            pause = FLUSH_PAUSE_MIN;
        } else {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(FLUSH_PAUSE_MAX);
        }
        in_flight = now_in_flight;
    }
    Ok(())
}

/// The sleeps of [`flush_within`] while no delivery report arrives.
const FLUSH_PAUSE_MIN: Duration = Duration::from_micros(100);
const FLUSH_PAUSE_MAX: Duration = Duration::from_millis(10);

/// Flushes the producer, waiting (and reporting not-ready) while Kafka does not acknowledge.
fn flush(producer: &BaseProducer<Deliveries>, health: &Health) -> anyhow::Result<()> {
    let mut waited = 0;
    loop {
        match flush_within(producer, Duration::from_secs(5)) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                waited += 5;
                // Waiting on Kafka is no stuck loop.
                health.beat();
                tracing::warn!(
                    "Kafka has not acknowledged {} records for {waited}s; still waiting",
                    producer.in_flight_count()
                );
                health.set_fatal(format!(
                    "waiting {waited}s for Kafka to acknowledge records"
                ));
            }
            Err(e) => anyhow::bail!("flushing the producer: {e}"),
        }
    }
    if waited > 0 {
        health.clear_fatal();
    }
    Ok(())
}

/// Errors that say the coordinator (or every broker) is away for now, not that the commit is wrong.
pub(crate) fn coordinator_unavailable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::NetworkException
    )
}
