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

/// How long an offset commit is retried while the group coordinator is unavailable: the consumer
/// is not polled meanwhile, and its poll interval must not run out.
const COORDINATOR_RETRY_LIMIT: Duration = Duration::from_secs(120);
const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(500);

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

/// At-least-once: flush the producer, then commit offsets. A crash between the two re-processes
/// the records of one commit interval (state does not count them twice: see `INPUT_OFFSETS_HEADER`).
pub(crate) struct AtLeastOnce;

impl CommitStep for AtLeastOnce {
    fn start(&mut self, _: &RecordCollector, _: &Health) -> anyhow::Result<()> {
        Ok(())
    }

    fn commit(
        &mut self,
        out: &RecordCollector,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> Result<Outcome, StepError> {
        flush(out.producer(), health)?;
        if let Some(failure) = out.take_failure() {
            return Err(StepError::Fatal(anyhow::anyhow!(
                "{failure}; input offsets were not committed"
            )));
        }
        if offsets.count() == 0 {
            return Ok(Outcome::Committed);
        }
        crate::failpoint::hit("before_offset_commit");
        let started = std::time::Instant::now();
        let mut retried = false;
        loop {
            match consumer.commit(offsets, CommitMode::Sync) {
                Ok(()) => {
                    if retried {
                        health.clear_fatal();
                    }
                    return Ok(Outcome::Committed);
                }
                // The group is rebalancing: the offsets are committed by the revoke that follows,
                // or the records are processed again by the next owner (at-least-once).
                Err(KafkaError::ConsumerCommit(
                    code @ (RDKafkaErrorCode::RebalanceInProgress
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId),
                )) => {
                    tracing::warn!("offset commit skipped: {code}");
                    return Ok(Outcome::Rebalancing);
                }
                // The group coordinator is away (a broker restarts, leadership moves): the same
                // offsets are committed once it is back. Giving up here would stop the worker.
                Err(KafkaError::ConsumerCommit(code))
                    if coordinator_unavailable(code)
                        && started.elapsed() < COORDINATOR_RETRY_LIMIT =>
                {
                    tracing::warn!("offset commit: {code}; retrying");
                    health.set_fatal(format!("offset commit: {code}; retrying"));
                    health.beat();
                    retried = true;
                    std::thread::sleep(COORDINATOR_RETRY_PAUSE);
                }
                Err(e) => return Err(StepError::Fatal(anyhow::anyhow!("committing offsets: {e}"))),
            }
        }
    }

    fn recover(&mut self, _: &RecordCollector) -> Result<(), StepError> {
        Ok(())
    }
}

/// Exactly-once: one transaction per commit cycle holds the outputs, the changelog records, the
/// dead letters and the input offsets (sent with the consumer's group metadata, so a member that
/// was replaced is fenced). Nothing of an aborted cycle is visible to read_committed readers.
pub(crate) struct ExactlyOnce {
    /// For errors: the id whose ACL a principal needs.
    pub transactional_id: String,
}

/// What went wrong in a transactional call.
enum TxnError {
    /// Abort the transaction: nothing of the cycle is visible.
    Abortable(String),
    Stop(StepError),
}

/// Sorts a transactional error into the commit's outcomes.
fn classify(what: &str, e: KafkaError) -> TxnError {
    match &e {
        KafkaError::Transaction(t) if t.txn_requires_abort() && !t.is_fatal() => {
            TxnError::Abortable(format!("transaction aborted: {what}: {e}"))
        }
        // A missing ACL is no fence: a new producer would fail the same way.
        KafkaError::Transaction(t)
            if t.is_fatal() && crate::kafka_errors::is_authorization(t.code()) =>
        {
            TxnError::Stop(StepError::Fatal(anyhow::anyhow!("{what}: {e}")))
        }
        // Fatal for the producer: its epoch was bumped, by the coordinator aborting a
        // transaction that outlived the transaction timeout, or by a newer producer with the
        // same transactional id. Which one only the group can tell (see `Fenced`).
        KafkaError::Transaction(t) if t.is_fatal() => {
            TxnError::Stop(StepError::Fenced(format!("{what}: {e}")))
        }
        _ => TxnError::Stop(StepError::Fatal(anyhow::anyhow!("{what}: {e}"))),
    }
}

impl From<TxnError> for Result<Outcome, StepError> {
    fn from(e: TxnError) -> Self {
        match e {
            TxnError::Abortable(why) => Ok(Outcome::Aborted(why)),
            TxnError::Stop(e) => Err(e),
        }
    }
}

/// A transactional call that may be made again: librdkafka says so, or the flush that
/// `commit_transaction` starts with ran out of its time.
fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_retriable(),
        KafkaError::Flush(code) => *code == RDKafkaErrorCode::OperationTimedOut,
        _ => false,
    }
}

/// Retries a transactional call, each try bounded by [`CALL_SLICE`], while librdkafka says it is
/// retriable (a timeout is: the call goes on where it stood). Meanwhile the worker is live and
/// not ready. A wait longer than the transaction timeout ends in a fence once Kafka is back,
/// which the worker recovers from.
fn retrying(
    what: &str,
    health: &Health,
    mut call: impl FnMut(Timeout) -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    let started = std::time::Instant::now();
    let mut waited = false;
    let result = loop {
        match call(Timeout::After(CALL_SLICE)) {
            Err(e) if retriable(&e) => {
                let secs = started.elapsed().as_secs();
                tracing::warn!("{what}: {e}; retrying ({secs}s so far)");
                health.set_fatal(format!("{what}: waiting {secs}s for Kafka"));
                health.beat();
                waited = true;
            }
            done => break done,
        }
    };
    if waited {
        health.clear_fatal();
    }
    result
}

impl CommitStep for ExactlyOnce {
    fn start(&mut self, out: &RecordCollector, health: &Health) -> anyhow::Result<()> {
        let producer = out.producer();
        // Fences any older instance with the same transactional id and aborts its open
        // transaction; waits while the transaction coordinator is away.
        retrying("initialising transactions", health, |t| {
            producer.init_transactions(t)
        })
        .map_err(|e| {
            let why = e.rdkafka_error_code().and_then(|code| {
                crate::kafka_errors::explain_authorization(
                    code,
                    &format!("TransactionalId:{}", self.transactional_id),
                    "WRITE",
                )
            });
            anyhow::anyhow!(
                "initialising transactions: {}",
                why.unwrap_or(e.to_string())
            )
        })?;
        producer
            .begin_transaction()
            .map_err(|e| anyhow::anyhow!("beginning a transaction: {e}"))
    }

    fn commit(
        &mut self,
        out: &RecordCollector,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> Result<Outcome, StepError> {
        match self.transaction(out, consumer, offsets, health) {
            Ok(()) => Ok(Outcome::Committed),
            Err(e) => e.into(),
        }
    }

    fn recover(&mut self, out: &RecordCollector) -> Result<(), StepError> {
        let producer = out.producer();
        // Bounded: this may run inside a rebalance callback, and a member stuck there holds the
        // whole group's rebalance (seen when the coordinator had already aborted a zombie's
        // transaction). Failing here stops the worker; its restart cleans up.
        // Records of the cycle still queued would make the abort wait for delivery reports that
        // only this thread serves: drop them (they belong to the aborted transaction) and serve
        // their reports first.
        producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            producer.poll(Duration::from_millis(20));
        }
        producer
            .abort_transaction(Duration::from_secs(30))
            .map_err(|e| StepError::Fenced(format!("aborting the transaction: {e}")))?;
        let _ = out.take_failure();
        producer
            .begin_transaction()
            .map_err(|e| StepError::Fatal(anyhow::anyhow!("beginning a transaction: {e}")))
    }
}

impl ExactlyOnce {
    /// Offsets into the open transaction, commit it, begin the next.
    fn transaction(
        &mut self,
        out: &RecordCollector,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> Result<(), TxnError> {
        let producer = out.producer();
        crate::failpoint::hit("eos_before_send_offsets");
        if offsets.count() > 0 {
            let metadata = consumer.group_metadata().ok_or_else(|| {
                TxnError::Stop(StepError::Fatal(anyhow::anyhow!(
                    "the consumer has no group metadata"
                )))
            })?;
            retrying("sending offsets to the transaction", health, |t| {
                producer.send_offsets_to_transaction(offsets, &metadata, t)
            })
            .map_err(|e| classify("sending offsets to the transaction", e))?;
        }
        crate::failpoint::hit("eos_before_commit");
        retrying("committing the transaction", health, |t| {
            producer.commit_transaction(t)
        })
        .map_err(|e| classify("committing the transaction", e))?;
        if let Some(failure) = out.take_failure() {
            // Cannot happen after a successful commit; if it does, stop rather than guess.
            return Err(TxnError::Stop(StepError::Fatal(anyhow::anyhow!(
                "{failure} in a committed transaction"
            ))));
        }
        crate::failpoint::hit("eos_after_commit");
        producer
            .begin_transaction()
            .map_err(|e| classify("beginning a transaction", e))
    }
}
