//! At-least-once: flush, then commit the offsets with the consumer.

use super::*;

/// How long an offset commit is retried while the group coordinator is unavailable: the consumer
/// is not polled meanwhile, and its poll interval must not run out.
const COORDINATOR_RETRY_LIMIT: Duration = Duration::from_secs(120);
const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(500);

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
