//! A worker: one consumer-group member running every task the group assigns to it.
//!
//! One thread polls the group consumer, processes records, restores state and runs the commit
//! cycle. Rebalance callbacks run on that same thread (inside `poll`), so the tasks live in a
//! [`Core`] behind a mutex that the loop releases before each poll: a revocation commits and closes
//! its tasks before the partitions leave, an assignment opens tasks and pauses their input while
//! their state is restored from the changelog by a second, group-less consumer.

//!
//! # Layout
//! - `mod.rs`: the worker's state ([`Core`]) and the helpers its parts share;
//! - `setup.rs`: topics, clients and the core, from the job;
//! - `run.rs`: the poll loop (process, restore, housekeeping, commit) and shutdown;
//! - `context.rs`: the consumer's callbacks (statistics, rebalances);
//! - `assign.rs`: partitions arriving (tasks opened, restore decided) and leaving (committed, closed);
//! - `restore.rs`: changelog replay into restoring tasks;
//! - `process.rs`: one record through decode, steps, window, sink or dead letters;
//! - `closing.rs`: idle close, batched closing after commits, a failed store;
//! - `cycle.rs`: the commit cycle, rewind and restart after an abort, gauges.

use crate::commit::{Aborted, AtLeastOnce, CommitFailure, CommitStep, ExactlyOnce, Fenced};
use crate::deliveries::Deliveries;
use crate::health::Health;
use crate::kafka::{client_config, ensure_topic, partition_count, set_default};
use crate::kafka_errors::creation_error;
use crate::metrics::Metrics;
use crate::task::{Restore, Task, TaskState};
use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_config::{
    AggregateFn, BadRecordPolicy, Guarantee, Job, RuntimeConfig, SinkKind, WindowOp,
};
use weir_operators::{check_state_entry, open_window_aggregate, Decoder, Emit, Forward, Program};
use weir_state::{
    encode_input_offsets, written_by_committed_cycle, Checkpoint, CheckpointError, SharedResources,
    Store, StoreError, TaskDir, INPUT_OFFSETS_HEADER,
};

/// What the windowed part of a job needs at run time.
struct WindowSpec {
    window: WindowOp,
    functions: Vec<AggregateFn>,
    idle_close: Option<Duration>,
    store: String,
    changelog: String,
    key_name: String,
}

/// Everything a worker needs to run a job.
pub struct WorkerArgs {
    pub job: Job,
    pub runtime: RuntimeConfig,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
}

/// The tasks and the clients they share. Touched by the poll loop and by rebalance callbacks,
/// both on the worker thread.
pub(crate) struct Core {
    job_name: String,
    /// Stateful jobs: decoding and the steps ahead of the window.
    decoder: Decoder,
    program: Option<Program>,
    /// Stateless jobs: the steps applied to each JSON record.
    forward: Option<Forward>,
    /// The internal topic re-keyed records cross when `key_by` changes the partitioning.
    repartition: Option<String>,
    window: Option<WindowSpec>,
    sink_topic: Option<String>,
    dead_letter_topic: Option<String>,
    policy: BadRecordPolicy,
    state_dir: PathBuf,
    cache_bytes: usize,
    pub(crate) tasks: BTreeMap<i32, Task>,
    pub(crate) producer: BaseProducer<Deliveries>,
    restore_consumer: BaseConsumer,
    transactional: bool,
    /// read_uncommitted client for high watermarks.
    watermarks: BaseConsumer,
    restore_assignment_stale: bool,
    /// An assignment that could not be carried out (e.g. a task directory still locked), or a
    /// state store that failed under a record: the worker gives up every task and its uncommitted
    /// work (nothing more is committed), leaves the group and joins again after a pause.
    rejoin_because: Option<String>,
    resources: SharedResources,
    pub(crate) metrics: Arc<Metrics>,
    health: Arc<Health>,
    emits: Vec<Emit>,
    /// Re-keyed records (key, value) on their way to the repartition topic.
    repartitioned: Vec<(String, Vec<u8>)>,
    last_restore_log: Instant,
    commit: Box<dyn CommitStep + Send>,
    /// From the consumer's statistics: (topic, partition) -> (fetch position, records fetched and
    /// not yet handed over). The fetch position passes transaction markers and aborted records,
    /// which the processed position never does.
    fetched: BTreeMap<(String, i32), (i64, i64)>,
    /// Failpoint `hold_fetch`: the partitions paused and until when (then `Done`).
    fetch_hold: FetchHold,
}

enum FetchHold {
    Never,
    Holding(Instant, TopicPartitionList),
    Done,
}

mod assign;
mod closing;
mod context;
mod cycle;
mod process;
mod restore;
mod run;
mod setup;

pub(crate) use context::WorkerContext;
pub use run::run_worker;

pub(crate) type GroupConsumer = BaseConsumer<WorkerContext>;

/// Sends one record, waiting (and serving delivery reports) while the producer queue is full.
pub(crate) fn send(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, r)) => bail!("producing to {}: {e}", r.topic),
        }
    }
}

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

/// Adds a record to the task's window state. A store error is no bad record: it is returned, and
/// the record is neither counted nor dropped.
fn aggregate(
    task: &mut Task,
    key: &str,
    ts: i64,
    value: f64,
    out: &mut Vec<Emit>,
) -> Result<(), StoreError> {
    if let (Some(agg), Some(store)) = (task.agg.as_mut(), task.store.as_ref()) {
        if !agg.process(store, key, ts, value, out)? {
            task.counters.late.inc();
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Core {
    fn input_topics(&self, task: &Task) -> Vec<String> {
        task.topics.clone()
    }

    fn set_state(&mut self, partition: i32, next: TaskState) {
        let task = self.tasks.get_mut(&partition).expect("task exists");
        task.transition(next);
        self.metrics
            .task_state
            .with_label_values(&[&partition.to_string()])
            .set(next.code());
        let why = match next {
            TaskState::Running | TaskState::Closed | TaskState::Suspended => None,
            TaskState::Failed => Some(format!(
                "failed: {}",
                task.failure.clone().unwrap_or_default()
            )),
            other => Some(format!("{other:?}").to_lowercase()),
        };
        self.health.set_task(partition, why);
    }
}
