//! Sinks: where a job's results go. A sink is built from the job's `[sink]` section (see
//! [`build`]: adding a sink is its own file plus one line there), checks at start-up that it can
//! take results, and takes part in the commit cycle: results are written as they are produced,
//! `prepare_commit` runs before the guarantee's commit step, `committed` after it with the input
//! offsets it covered, `abort` when the cycle is aborted. Kafka sinks write through the worker's
//! record collector, so under exactly-once their records are in the cycle's transaction; a sink
//! with its own transactions (a database) keeps the offsets there.
//!
//! # Layout
//! - `mod.rs`: the trait and the registration;
//! - `kafka.rs`: a Kafka topic;
//! - `stdout.rs`: standard output, a line per result.

mod kafka;
mod stdout;

use crate::collector::RecordCollector;
use weir_config::{Job, SinkKind};

/// Input offsets a commit covered: (topic, partition, next offset).
pub type CommittedOffsets<'a> = &'a [(String, i32, i64)];

pub trait Sink: Send {
    /// At start-up: whether results can be written (the topic exists, the table is there).
    fn check(&self, brokers: &str, job: &Job) -> anyhow::Result<()>;
    /// One result, as the sink's format encoded it.
    fn write(&mut self, out: &RecordCollector, key: &[u8], value: &[u8]) -> anyhow::Result<()>;
    /// Before the guarantee's commit step: what was written this cycle is ready to commit.
    fn prepare_commit(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// After the commit step: the cycle's results are durable with these input offsets.
    fn committed(&mut self, _offsets: CommittedOffsets<'_>) -> anyhow::Result<()> {
        Ok(())
    }
    /// The cycle was aborted: nothing written since the last commit counts.
    fn abort(&mut self) {}
    /// For logs and `weir describe`.
    fn describe(&self) -> String;
}

/// The job's sink.
pub fn build(job: &Job) -> Box<dyn Sink> {
    match job.sink.kind {
        SinkKind::Kafka => Box::new(kafka::KafkaSink::new(job)),
        SinkKind::Stdout => Box::new(stdout::Stdout),
    }
}
