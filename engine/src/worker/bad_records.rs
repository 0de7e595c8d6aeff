//! A record that does not decode, by the job's `processing.bad_records` policy: the task fails
//! (`fail`), the record is counted and skipped (`skip`), or it goes to the dead-letter topic with
//! its provenance (`dead_letter`). Error texts are bounded and redacted: they may quote the
//! record, which goes no further than the log and the dead letter.

use super::*;
use rdkafka::message::BorrowedMessage;
use weir_operators::DecodeError;

impl TaskManager {
    /// Handles a bad record; true when the task goes on past it, false when it failed.
    pub(super) fn bad_record(
        &mut self,
        consumer: &GroupConsumer,
        msg: &BorrowedMessage<'_>,
        err: DecodeError,
    ) -> anyhow::Result<bool> {
        let p = msg.partition();
        let err = DecodeError(crate::secrets::redact(&weir_operators::excerpt::excerpt(
            &err.0,
            weir_operators::excerpt::MESSAGE_MAX_CHARS,
        )));
        let provenance = format!("{}[{}]@{}", msg.topic(), p, msg.offset());
        let task = self.tasks.get_mut(&p).expect("task");
        match self.bad_records.policy {
            BadRecordPolicy::Fail => {
                tracing::error!("bad record at {provenance}: {err}; the task stops (bad_records = \"fail\"); nothing after it is committed");
                // `/readyz` shows where, the log what (the error may quote the record).
                let topics = task.topics.clone();
                self.fail_task(
                    p,
                    format!("bad record at {provenance} (bad_records = \"fail\"; the error is in the log)"),
                );
                consumer.pause(&tpl_of(&topics, &[p])).ok();
                return Ok(false);
            }
            BadRecordPolicy::Skip => {
                tracing::warn!("skipped bad record at {provenance}: {err}");
                task.counters.skipped.inc();
            }
            BadRecordPolicy::DeadLetter => {
                let topic = self
                    .bad_records
                    .dead_letter_topic
                    .as_deref()
                    .expect("validated: dead_letter needs a topic");
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "weir.error",
                        value: Some(err.0.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.topic",
                        value: Some(msg.topic().as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.partition",
                        value: Some(p.to_string().as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.offset",
                        value: Some(msg.offset().to_string().as_bytes()),
                    });
                self.collector
                    .send(Outgoing {
                        topic,
                        partition: None,
                        key: msg.key(),
                        payload: Some(msg.payload().unwrap_or_default()),
                        headers: Some(headers),
                    })
                    .with_context(|| format!("producing to {topic}"))?;
                tracing::warn!("sent bad record at {provenance} to {topic}: {err}");
                task.counters.dead_lettered.inc();
            }
        }
        Ok(true)
    }
}
