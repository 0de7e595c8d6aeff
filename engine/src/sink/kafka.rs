//! A Kafka topic as a sink: results keyed by the job's key, through the record collector (so they
//! are in the commit cycle's transaction under exactly-once, and flushed before offsets commit
//! under at-least-once). The topic must exist: weir does not guess its partitions or retention.

use super::Sink;
use crate::collector::{Outgoing, RecordCollector};
use anyhow::Context as _;
use weir_config::Job;

pub struct KafkaSink {
    topic: String,
}

impl KafkaSink {
    pub fn new(job: &Job) -> KafkaSink {
        KafkaSink {
            topic: job.sink.topic.clone().unwrap_or_default(),
        }
    }
}

impl Sink for KafkaSink {
    fn check(&self, brokers: &str, job: &Job) -> anyhow::Result<()> {
        if crate::kafka::partition_count(brokers, job, &self.topic)?.is_none() {
            anyhow::bail!(
                "topic {} does not exist on {brokers}: create it first",
                self.topic
            );
        }
        Ok(())
    }

    fn write(&mut self, out: &RecordCollector, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        out.send(Outgoing::to(&self.topic, Some(key), value))
            .with_context(|| format!("producing to {}", self.topic))
    }

    fn describe(&self) -> String {
        format!("kafka topic {}", self.topic)
    }
}
