//! The guarantee-specific step of the commit cycle: make the produced records (outputs, changelog,
//! dead letters) durable, then commit the input offsets. Everything before it (collecting dirty
//! state) and after it (applying state, checkpoints) is the same for every guarantee.

use crate::deliveries::Deliveries;
use crate::health::Health;
use crate::worker::GroupConsumer;
use anyhow::bail;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use std::time::Duration;

pub(crate) trait CommitStep {
    fn commit(
        &mut self,
        producer: &BaseProducer<Deliveries>,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> anyhow::Result<bool>;
}

/// At-least-once: flush the producer, then commit offsets. A crash between the two re-processes
/// the records of one commit interval. Returns whether the offsets were committed.
pub(crate) struct AtLeastOnce;

impl CommitStep for AtLeastOnce {
    fn commit(
        &mut self,
        producer: &BaseProducer<Deliveries>,
        consumer: &GroupConsumer,
        offsets: &TopicPartitionList,
        health: &Health,
    ) -> anyhow::Result<bool> {
        let mut waited = 0;
        loop {
            match producer.flush(Duration::from_secs(5)) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                    waited += 5;
                    tracing::warn!(
                        "Kafka has not acknowledged {} records for {waited}s; still waiting",
                        producer.in_flight_count()
                    );
                    health.set_fatal(format!(
                        "waiting {waited}s for Kafka to acknowledge records"
                    ));
                }
                Err(e) => bail!("flushing the producer: {e}"),
            }
        }
        if waited > 0 {
            health.clear_fatal();
        }
        if let Some(failure) = producer.context().take_failure() {
            bail!("{failure}; input offsets were not committed");
        }
        if offsets.count() == 0 {
            return Ok(true);
        }
        crate::failpoint::hit("before_offset_commit");
        match consumer.commit(offsets, CommitMode::Sync) {
            Ok(()) => Ok(true),
            // The group is rebalancing: the offsets are committed by the revoke that follows, or
            // the records are processed again by the next owner (at-least-once).
            Err(KafkaError::ConsumerCommit(
                code @ (RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId),
            )) => {
                tracing::warn!("offset commit skipped: {code}");
                Ok(false)
            }
            Err(e) => bail!("committing offsets: {e}"),
        }
    }
}
