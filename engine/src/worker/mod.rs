//! A worker: one consumer-group member running every task the group assigns to it.
//!
//! One thread polls the group consumer and drives the [`TaskManager`]: records to their tasks,
//! restores stepped, the commit cycle. Rebalance callbacks run on that same thread (inside `poll`),
//! so the manager lives behind a mutex that the loop releases before each poll: a revocation
//! commits and closes its tasks before the partitions leave, an assignment opens tasks and pauses
//! their input while their state is restored from the changelog by a second, group-less consumer.
//!
//! # Layout
//! - `mod.rs`: the task manager ([`TaskManager`]) and the helpers its parts share;
//! - `setup.rs`: topics, clients and the manager, from the job;
//! - `run.rs`: the poll loop (process, restore, housekeeping, commit) and shutdown;
//! - `context.rs`: the consumer's callbacks (statistics, rebalances);
//! - `assign.rs`: partitions arriving (tasks opened, restore decided) and leaving (committed, closed);
//! - `restore.rs`: the changelog reader: replay into restoring tasks;
//! - `process.rs`: one record through the job's pipeline into its task, results to the sink;
//! - `bad_records.rs`: a record that does not decode, by the job's policy;
//! - `closing.rs`: idle close, batched closing after commits, a failed store;
//! - `cycle.rs`: the commit cycle, rewind and restart after an abort or a fence;
//! - `rejoin.rs`: giving up every task and joining again; a fenced consumer replaced (or a twin told);
//! - `lifecycle.rs`: task phase changes with their metrics and health, gauges, closing every task.

use crate::collector::{Outgoing, RecordCollector};
use crate::commit::{AtLeastOnce, CommitStep, ExactlyOnce, Outcome, StepError};
use crate::health::Health;
use crate::kafka::{client_config, ensure_topic, partition_count, set_default, set_tuned};
use crate::kafka_errors::creation_error;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::sink::Sink;
use crate::task::{Active, Restoring, Task, TaskState, WindowState};
use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_config::{BadRecordPolicy, Guarantee, Job, RuntimeConfig};
use weir_operators::Emit;
use weir_state::{
    encode_input_offsets, LocalState, SharedResources, TaskDir, INPUT_OFFSETS_HEADER,
};

/// Everything a worker needs to run a job.
pub struct WorkerArgs {
    pub job: Job,
    pub runtime: RuntimeConfig,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
}

/// Where tasks keep their local state, and the memory their stores share.
struct Stores {
    state_dir: PathBuf,
    resources: SharedResources,
    /// Each task's operator cache.
    cache_bytes: usize,
}

/// What to do with a record that does not decode.
struct BadRecords {
    policy: BadRecordPolicy,
    dead_letter_topic: Option<String>,
}

/// The set of tasks and what they share: the job's pipeline, the clients, the sink, the commit
/// step. Touched by the poll loop and by rebalance callbacks, both on the worker thread.
pub(crate) struct TaskManager {
    job_name: String,
    pipeline: Pipeline,
    pub(crate) tasks: BTreeMap<i32, Task>,
    collector: RecordCollector,
    sink: Box<dyn Sink>,
    bad_records: BadRecords,
    commit_step: Box<dyn CommitStep + Send>,
    transactional: bool,
    restorer: restore::ChangelogReader,
    stores: Stores,
    /// An assignment that could not be carried out (e.g. a task directory still locked), or a
    /// state store that failed under a record: the worker gives up every task and its uncommitted
    /// work (nothing more is committed), leaves the group and joins again after a pause.
    pub(super) rejoin_because: Option<String>,
    /// Set with `rejoin_because` when the producer was fenced: the rejoin renews it.
    pub(super) renew_producer: bool,
    /// How long an assignment may wait on Kafka (committed offsets, changelog ends): under
    /// exactly-once half the transaction timeout, so that the open transaction never outlives it
    /// because of an assignment.
    assign_budget: Duration,
    pub(crate) metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Results produced and not yet written to the sink.
    emits: Vec<Emit>,
    /// Re-keyed records (key, value) on their way to the repartition topic.
    repartitioned: Vec<(String, Vec<u8>)>,
    /// From the consumer's statistics: (topic, partition) -> (fetch position, records fetched and
    /// not yet handed over). The fetch position passes transaction markers and aborted records,
    /// which the processed position never does.
    fetched: BTreeMap<(String, i32), (i64, i64)>,
    /// Failpoint `hold_fetch`: the partitions paused and until when (then `Done`).
    fetch_hold: FetchHold,
    /// The clocks, read once per poll batch (see `begin_batch`): a monotonic instant and
    /// processing time in ms since the epoch.
    batch_clock: (Instant, i64),
}

enum FetchHold {
    Never,
    Holding(Instant, TopicPartitionList),
    Done,
}

mod assign;
mod bad_records;
mod closing;
mod context;
mod cycle;
mod lifecycle;
mod process;
mod rejoin;
mod restore;
mod run;
mod setup;
#[cfg(test)]
mod tests;

pub(crate) use context::WorkerContext;
pub(crate) use cycle::Cycle;
pub use run::run_worker;

pub(crate) type GroupConsumer = BaseConsumer<WorkerContext>;

/// A consumer error that is a missing ACL, as what the job's principal needs.
fn not_authorized(e: &KafkaError, group: &str, topics: &[&str]) -> Option<String> {
    let code = e.rdkafka_error_code()?;
    let resource = match code {
        RDKafkaErrorCode::GroupAuthorizationFailed => format!("Group:{group}"),
        _ => topics
            .iter()
            .map(|t| format!("Topic:{t}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    crate::kafka_errors::explain_authorization(code, &resource, "READ")
}

fn tpl_of(topics: &[String], partitions: &[i32]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for &p in partitions {
            tpl.add_partition(t, p);
        }
    }
    tpl
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
