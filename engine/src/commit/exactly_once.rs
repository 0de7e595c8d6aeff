//! Exactly-once: one transaction per commit cycle.

use super::*;

/// Exactly-once: one transaction per commit cycle holds the outputs, the changelog records, the
/// dead letters and the input offsets (sent with the consumer's group metadata, so a member that
/// was replaced is fenced). Nothing of an aborted cycle is visible to read_committed readers.
pub(crate) struct ExactlyOnce {
    /// For errors: the id whose ACL a principal needs.
    pub transactional_id: String,
    /// The producer's `transaction.timeout.ms`: a transaction still not committed after it
    /// has been aborted by its coordinator, so waiting longer for a call is waiting for nothing.
    pub transaction_timeout: Duration,
}

/// Why a retried transactional call came back without success.
enum CallError {
    Kafka(KafkaError),
    /// Still not done after the transaction timeout, each try timing out: the coordinator has
    /// aborted the transaction by now, or librdkafka lost track of its request (a request to a
    /// coordinator that moved can wait forever: confluentinc/librdkafka#5456, #5511).
    Outlived(Duration),
}

/// What went wrong in a transactional call.
enum TxnError {
    /// Abort the transaction: nothing of the cycle is visible.
    Abortable(String),
    Stop(StepError),
}

/// Sorts a transactional error into the commit's outcomes.
fn classify(what: &str, e: CallError) -> TxnError {
    let e = match e {
        CallError::Kafka(e) => e,
        // The transaction cannot commit any more. A new producer with the same id fences this
        // one and aborts what the coordinator still holds open; the tasks are then opened
        // again from what is committed (a commit that did land is what a restore reads).
        CallError::Outlived(waited) => {
            return TxnError::Stop(StepError::Fenced(format!(
                "{what}: not done after {}s, longer than the transaction timeout",
                waited.as_secs()
            )))
        }
    };
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
/// retriable (a timeout is: the call goes on where it stood) and, with a `limit`, for no longer
/// than it. Meanwhile the worker is live and not ready. A call of an open transaction is limited
/// by the transaction timeout: the fence that follows is what the worker recovers from (a new
/// producer), as after an outage that outlived the transaction.
fn retrying(
    what: &str,
    health: &Health,
    limit: Option<Duration>,
    mut call: impl FnMut(Timeout) -> Result<(), KafkaError>,
) -> Result<(), CallError> {
    let started = std::time::Instant::now();
    let mut waited = false;
    let result = loop {
        match call(Timeout::After(CALL_SLICE)) {
            Err(e) if retriable(&e) => {
                if limit.is_some_and(|l| started.elapsed() >= l) {
                    tracing::warn!("{what}: {e}; giving up the transaction");
                    break Err(CallError::Outlived(started.elapsed()));
                }
                let secs = started.elapsed().as_secs();
                tracing::warn!("{what}: {e}; retrying ({secs}s so far)");
                health.set_fatal(format!("{what}: waiting {secs}s for Kafka"));
                health.beat();
                waited = true;
            }
            done => break done.map_err(CallError::Kafka),
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
        retrying("initialising transactions", health, None, |t| {
            producer.init_transactions(t)
        })
        .map_err(|e| {
            let CallError::Kafka(e) = e else {
                unreachable!("no limit, so no outliving it")
            };
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
        let limit = Some(self.transaction_timeout);
        crate::failpoint::hit("eos_before_send_offsets");
        if offsets.count() > 0 {
            let metadata = consumer.group_metadata().ok_or_else(|| {
                TxnError::Stop(StepError::Fatal(anyhow::anyhow!(
                    "the consumer has no group metadata"
                )))
            })?;
            retrying("sending offsets to the transaction", health, limit, |t| {
                producer.send_offsets_to_transaction(offsets, &metadata, t)
            })
            .map_err(|e| classify("sending offsets to the transaction", e))?;
        }
        crate::failpoint::hit("eos_before_commit");
        retrying("committing the transaction", health, limit, |t| {
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
            .map_err(|e| classify("beginning a transaction", CallError::Kafka(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that times out at every try, as librdkafka's `send_offsets_to_transaction` does
    /// when its request to a coordinator that moved is never sent.
    fn stuck(_: Timeout) -> Result<(), KafkaError> {
        Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
    }

    #[test]
    fn a_call_of_the_transaction_that_outlives_its_timeout_fences_the_producer() {
        let health = Health::default();
        health.set_joined();
        let limit = Duration::from_millis(30);
        let started = Instant::now();
        let e = retrying("sending offsets", &health, Some(limit), stuck).unwrap_err();
        assert!(started.elapsed() >= limit);
        assert!(matches!(e, CallError::Outlived(w) if w >= limit));
        match classify("sending offsets", e) {
            TxnError::Stop(StepError::Fenced(why)) => {
                assert!(why.contains("longer than the transaction timeout"), "{why}")
            }
            _ => panic!("not a fence"),
        }
        // The wait was reported and is over.
        assert_eq!(health.not_ready_reason(), None);
    }

    #[test]
    fn a_call_that_succeeds_after_retries_is_done_and_one_that_fails_is_classified() {
        let health = Health::default();
        let mut tries = 0;
        let done = retrying("committing", &health, Some(Duration::from_secs(60)), |t| {
            tries += 1;
            if tries < 3 {
                stuck(t)
            } else {
                Ok(())
            }
        });
        assert!(done.is_ok());
        assert_eq!(tries, 3);
        let failed = retrying("committing", &health, None, |_| {
            Err(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut))
        })
        .unwrap_err();
        assert!(matches!(
            classify("committing", failed),
            TxnError::Stop(StepError::Fatal(_))
        ));
    }
}
