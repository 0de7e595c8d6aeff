//! A worker: one consumer-group member running every task the group assigns to it.
//!
//! One thread polls the group consumer, processes records, restores state and runs the commit
//! cycle. Rebalance callbacks run on that same thread (inside `poll`), so the tasks live in a
//! [`Core`] behind a mutex that the loop releases before each poll: a revocation commits and closes
//! its tasks before the partitions leave, an assignment opens tasks and pauses their input while
//! their state is restored from the changelog by a second, group-less consumer.

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

pub(crate) struct WorkerContext {
    core: Arc<Mutex<Core>>,
    metrics: Arc<Metrics>,
    topics: Vec<String>,
}

impl ClientContext for WorkerContext {
    fn stats(&self, stats: Statistics) {
        {
            let mut core = self.core.lock().unwrap();
            let up: Vec<i32> = stats
                .brokers
                .values()
                .filter(|b| b.state == "UP")
                .map(|b| b.nodeid)
                .collect();
            for (topic, t) in &stats.topics {
                for (p, ps) in t.partitions.iter().filter(|(p, _)| **p >= 0) {
                    core.fetched
                        .insert((topic.clone(), *p), (ps.next_offset, ps.fetchq_cnt));
                    if !up.contains(&ps.leader) {
                        // No connection to the partition's leader: the task is not idle, it is
                        // cut off (see `close_idle`); its silence counts from when it is back.
                        if let Some(task) = core.tasks.get_mut(p) {
                            if task.topics.contains(topic) {
                                task.last_record_at = Instant::now();
                            }
                        }
                    }
                }
            }
        }
        for topic in &self.topics {
            let Some(t) = stats.topics.get(topic) else {
                continue;
            };
            for (p, ps) in &t.partitions {
                if *p >= 0 && ps.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut core = self.core.lock().unwrap();
            core.metrics.rebalances.inc();
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if let Err(e) = core.revoke(consumer, &partitions, consumer.assignment_lost()) {
                tracing::error!("revoking partitions {partitions:?}: {e:#}");
                core.health.set_fatal(format!("revoke failed: {e:#}"));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut core = self.core.lock().unwrap();
                core.metrics.rebalances.inc();
                if let Err(e) = core.assign(consumer, tpl) {
                    tracing::error!("assigning partitions: {e:#}");
                    core.health
                        .set_rejoining(Some(format!("the assignment failed: {e:#}")));
                    // Half an assignment is no state to run in: the main loop rejoins.
                    core.rejoin_because = Some(format!("the assignment failed: {e:#}"));
                } else if core.rejoin_because.is_none() {
                    core.health.set_rejoining(None);
                }
                // Only now: readiness must never see the member joined with tasks not yet listed.
                core.health.set_joined();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }
}

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

/// A task directory's lock: its previous owner in this process (a revoked task still closing) or
/// another process on the host may hold it for a moment; ask a few times before giving up.
fn lock_task_dir(state_dir: &Path, job: &str, p: i32) -> anyhow::Result<TaskDir> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..5 {
        match TaskDir::lock(state_dir, job, p) {
            Ok(d) => return Ok(d),
            Err(e) => tracing::warn!(partition = p, "{e}; trying again in {wait:?}"),
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
    TaskDir::lock(state_dir, job, p).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Opens a store, asking again a few times while the error is transient (see
/// `StoreError::is_transient`).
fn open_store(path: &Path, resources: &SharedResources) -> Result<Store, StoreError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..5 {
        match Store::open(path, resources) {
            Err(e) if e.is_transient() => {
                tracing::warn!("opening {}: {e}; trying again in {wait:?}", path.display());
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    Store::open(path, resources)
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

/// Adds one record to its task's window aggregation, counting it if it was late.
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

    /// New partitions: open each task's store, decide what to restore, pause input until restored.
    fn assign(&mut self, consumer: &GroupConsumer, tpl: &TopicPartitionList) -> anyhow::Result<()> {
        let mut new = Vec::new();
        for e in tpl.elements() {
            let task = self.tasks.entry(e.partition()).or_insert_with(|| {
                new.push(e.partition());
                self.health.set_task(e.partition(), Some("created".into()));
                Task::new(e.partition(), self.metrics.task_counters(e.partition()))
            });
            if !task.topics.iter().any(|t| t == e.topic()) {
                task.topics.push(e.topic().to_string());
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.metrics.tasks.set(self.tasks.len() as i64);
        tracing::info!(partitions = ?new, "partitions assigned");
        // The group's committed offsets: where input resumes, and which changelog records a
        // restore may apply (those of cycles that committed).
        let input_topics: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let committed = consumer
            .committed_offsets(tpl_of(&input_topics, &new), Duration::from_secs(30))
            .context("reading the group's committed offsets")?;
        for e in committed.elements() {
            if let (Offset::Offset(off), Some(task)) =
                (e.offset(), self.tasks.get_mut(&e.partition()))
            {
                task.committed.insert(e.topic().to_string(), off);
            }
        }
        let Some(window) = &self.window else {
            for p in new {
                self.set_state(p, TaskState::Running);
            }
            return Ok(());
        };
        let changelog = window.changelog.clone();
        let store_name = window.store.clone();
        let mut to_pause = Vec::new();
        for &p in &new {
            let dir = lock_task_dir(&self.state_dir, &self.job_name, p)?;
            let store = match open_store(&dir.db_path(), &self.resources) {
                Ok(s) => s,
                Err(e) if e.is_transient() => {
                    bail!("the store of partition {p} cannot be opened now: {e}")
                }
                Err(e) => {
                    tracing::warn!(partition = p, "local store cannot be opened ({e}); wiping it and restoring from {changelog}");
                    Store::destroy(&dir.db_path()).map_err(|e| anyhow::anyhow!("{e}"))?;
                    Checkpoint::delete(&dir.checkpoint_path())?;
                    Store::open(&dir.db_path(), &self.resources)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            let checkpoint = Checkpoint::read(&dir.checkpoint_path());
            let (mut store, from, mut checkpoint, mut wiped) = match checkpoint {
                Ok(cp) if cp.changelog_offsets.contains_key(&store_name) => {
                    let from = cp.changelog_offsets[&store_name];
                    (store, from, Some(cp), false)
                }
                other => {
                    let missing = matches!(other, Err(CheckpointError::Missing));
                    let why = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "checkpoint has no offset for this store".into(),
                    };
                    let empty = store.is_empty();
                    let store = if empty {
                        store
                    } else {
                        store
                            .wipe(&self.resources)
                            .map_err(|e| anyhow::anyhow!("{e}"))?
                    };
                    if !empty {
                        tracing::warn!(partition = p, "{why} and the local store is not empty: wiped, restoring all of {changelog}");
                        self.tasks[&p].counters.wipes.inc();
                    } else if !missing {
                        tracing::warn!(partition = p, "{why}; restoring all of {changelog}");
                    }
                    (store, 0, None, !empty)
                }
            };
            // The end is the high watermark, not the last stable offset: a transaction left open by
            // a replaced (zombie) worker holds the LSO back while committed records of later
            // owners lie beyond it. The read_committed restore consumer then waits until that
            // transaction is aborted (at its timeout) and reads on.
            // Leadership moves while a broker restarts (NotLeaderForPartition): ask again rather
            // than fail the assignment half-way, which would leave the new partitions unpaused
            // and their tasks unrestored.
            let asked = Instant::now();
            let (low, high) = loop {
                match self
                    .watermarks
                    .fetch_watermarks(&changelog, p, Duration::from_secs(10))
                {
                    Ok(w) => break w,
                    Err(e) if asked.elapsed() < Duration::from_secs(60) => {
                        tracing::warn!("end offsets of {changelog}[{p}]: {e}; asking again");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("end offsets of {changelog}[{p}]"))
                    }
                }
            };
            let mut from = from.max(low);
            if from > high && checkpoint.is_some() {
                // The checkpoint is ahead of the changelog: the topic was deleted and made again.
                // The store holds state of the old topic, and a restore from the checkpoint's
                // offset would skip the new topic's first records.
                tracing::warn!(partition = p, "the checkpoint is at {from} of {changelog}, which ends at {high}: the changelog was recreated; wiping the store and restoring all of it");
                Checkpoint::delete(&dir.checkpoint_path())?;
                store = store
                    .wipe(&self.resources)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                self.tasks[&p].counters.wipes.inc();
                checkpoint = None;
                wiped = true;
                from = low;
            }
            let task = self.tasks.get_mut(&p).expect("just inserted");
            task.dir = Some(dir);
            task.store = Some(store);
            task.checkpoint = checkpoint;
            task.changelog_next = Some(from);
            task.restore = Some(Restore {
                position: from,
                end: high,
                done: 0,
                skipped: 0,
                batch: Vec::new(),
                started: Instant::now(),
                wiped,
                undecodable: Default::default(),
            });
            self.metrics
                .restore_remaining
                .with_label_values(&[&p.to_string()])
                .set((high - from).max(0));
            self.set_state(p, TaskState::Restoring);
            to_pause.push(p);
        }
        consumer
            .pause(&tpl_of(&input_topics, &to_pause))
            .context("pausing restoring partitions")?;
        self.restore_assignment_stale = true;
        Ok(())
    }

    /// Partitions leaving: commit and checkpoint them (unless lost), then close their tasks.
    fn revoke(
        &mut self,
        consumer: &GroupConsumer,
        partitions: &[i32],
        lost: bool,
    ) -> anyhow::Result<()> {
        let mut partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| self.tasks.contains_key(p))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            return Ok(());
        }
        tracing::info!(partitions = ?partitions, lost, "partitions revoked");
        if !lost {
            // Under exactly-once the transaction carries every task's results, changelog and
            // repartition records so far, not only the leaving tasks': committing it with only
            // their offsets would make the others' output visible while their input offsets stay
            // behind, and a crash then would emit it again. So every task commits (as Kafka
            // Streams does under EOS v2). At-least-once commits the leaving tasks alone.
            let only = (!self.transactional).then_some(partitions.as_slice());
            match self.commit(consumer, only) {
                // Inside a rebalance callback the group cannot be left and rejoined: rewind in place.
                Err(e) if e.is::<Aborted>() => self.rewind(consumer, &format!("{e:#}"))?,
                other => other?,
            }
            crate::failpoint::hit("after_revoke_commit");
        } else if self.transactional {
            // The lost tasks' uncommitted work is in the open transaction with everyone else's:
            // abort it, and every task goes back to its committed offsets.
            self.rewind(consumer, "partitions were lost")?;
        }
        for p in partitions {
            let state = self.tasks[&p].state();
            if state == TaskState::Restoring {
                self.restore_assignment_stale = true;
            }
            if state != TaskState::Created {
                self.set_state(p, TaskState::Suspended);
            }
            self.set_state(p, TaskState::Closed);
            self.tasks.remove(&p);
            self.metrics.forget_partition(p);
            self.health.set_task(p, None);
        }
        self.metrics.tasks.set(self.tasks.len() as i64);
        Ok(())
    }

    /// Replays changelog records into restoring tasks; finishes the tasks that reached the end.
    fn restore_step(&mut self, consumer: &GroupConsumer, wait: Duration) -> anyhow::Result<()> {
        let Some(window) = &self.window else {
            return Ok(());
        };
        let changelog = window.changelog.clone();
        let kind = window.window.kind;
        let restoring: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state() == TaskState::Restoring)
            .map(|(p, _)| *p)
            .collect();
        if restoring.is_empty() {
            if self.restore_assignment_stale {
                self.restore_consumer.unassign()?;
                self.restore_assignment_stale = false;
            }
            return Ok(());
        }
        if self.restore_assignment_stale {
            let mut tpl = TopicPartitionList::new();
            for p in &restoring {
                let r = self.tasks[p]
                    .restore
                    .as_ref()
                    .expect("restoring task has restore state");
                tpl.add_partition_offset(&changelog, *p, Offset::Offset(r.position))?;
            }
            self.restore_consumer
                .assign(&tpl)
                .context("assigning changelog partitions to the restore consumer")?;
            self.restore_assignment_stale = false;
        }
        let mut wait = wait;
        for _ in 0..5000 {
            let Some(msg) = self.restore_consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let msg = match msg {
                // Brokers away for now: the restore goes on from its position when they are back.
                Err(KafkaError::MessageConsumption(code))
                    if crate::commit::coordinator_unavailable(code) =>
                {
                    tracing::warn!("reading {changelog}: {code}; retrying");
                    break;
                }
                other => other.with_context(|| format!("reading {changelog}"))?,
            };
            let Some(task) = self.tasks.get_mut(&msg.partition()) else {
                continue;
            };
            let Some(r) = task.restore.as_mut() else {
                continue;
            };
            r.done += 1;
            r.position = msg.offset() + 1;
            let header = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == INPUT_OFFSETS_HEADER)
                    .and_then(|h| h.value)
            });
            if !written_by_committed_cycle(header, &task.committed) {
                r.skipped += 1;
                continue;
            }
            let key = msg.key().unwrap_or_default();
            match msg.payload() {
                Some(v) => {
                    if let Err(e) = check_state_entry(kind, key, v) {
                        if r.undecodable.is_empty() {
                            tracing::error!(
                                partition = msg.partition(),
                                offset = msg.offset(),
                                "{changelog}: {e}"
                            );
                        }
                        r.undecodable.insert(key.to_vec());
                        continue;
                    }
                    r.undecodable.remove(key);
                }
                None => {
                    r.undecodable.remove(key);
                }
            }
            r.batch
                .push((key.to_vec(), msg.payload().map(<[u8]>::to_vec)));
        }
        let positions = self.restore_consumer.position().unwrap_or_default();
        for p in restoring {
            let task = self.tasks.get_mut(&p).expect("restoring task");
            let store = task.store.as_ref().expect("restoring task has a store");
            let r = task.restore.as_mut().expect("restoring");
            if let Some(Offset::Offset(pos)) =
                positions.find_partition(&changelog, p).map(|e| e.offset())
            {
                r.position = r.position.max(pos);
            }
            let finished = r.position >= r.end;
            if r.batch.len() >= 10_000 || (finished && !r.batch.is_empty()) {
                let batch = std::mem::take(&mut r.batch);
                store
                    .write(batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let label = p.to_string();
            task.counters
                .restored
                .inc_by(r.done - task.counters.restored.get());
            let remaining = (r.end - r.position).max(0);
            self.metrics
                .restore_remaining
                .with_label_values(&[&label])
                .set(remaining);
            let rate = r.done as f64 / r.started.elapsed().as_secs_f64().max(1e-3);
            self.metrics
                .restore_seconds_to_ready
                .with_label_values(&[&label])
                .set(if rate > 0.0 {
                    remaining as f64 / rate
                } else {
                    0.0
                });
            if finished {
                self.finish_restore(consumer, p)?;
            }
        }
        if self.last_restore_log.elapsed() > Duration::from_secs(5) {
            self.last_restore_log = Instant::now();
            for (p, t) in self
                .tasks
                .iter()
                .filter(|(_, t)| t.state() == TaskState::Restoring)
            {
                let r = t.restore.as_ref().expect("restoring");
                tracing::info!(
                    partition = p,
                    done = r.done,
                    remaining = (r.end - r.position).max(0),
                    "restoring {changelog}"
                );
            }
        }
        Ok(())
    }

    fn finish_restore(&mut self, consumer: &GroupConsumer, p: i32) -> anyhow::Result<()> {
        let window = self.window.as_ref().expect("stateful job");
        let task = self.tasks.get_mut(&p).expect("task");
        let r = task.restore.take().expect("restoring");
        if let Some(example) = r.undecodable.iter().next() {
            // The changelog is the source of truth: a wipe would replay the same records. The
            // task does not run on state with holes; it says why.
            let reason = format!(
                "{} holds {} key(s) whose latest state does not decode (e.g. {}): the state cannot be rebuilt",
                window.changelog,
                r.undecodable.len(),
                String::from_utf8_lossy(example).escape_debug()
            );
            tracing::error!(partition = p, "{reason}");
            // `/readyz` says what, the log which keys (record contents stay in the log).
            task.failure = Some(format!(
                "{} holds {} key(s) whose latest state does not decode: the state cannot be rebuilt (the keys are in the log)",
                window.changelog,
                r.undecodable.len()
            ));
            self.set_state(p, TaskState::Failed);
            return Ok(());
        }
        let store = task.store.as_ref().expect("store");
        store.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
        let cp = Checkpoint {
            changelog_offsets: [(window.store.clone(), r.position)].into(),
            input_offset: task
                .checkpoint
                .as_ref()
                .map(|c| c.input_offset)
                .unwrap_or(0),
        };
        let path = task.dir.as_ref().expect("dir").checkpoint_path();
        cp.write(&path, task.checkpoint.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        task.checkpoint = Some(cp);
        task.changelog_next = Some(r.position);
        task.last_checkpoint_at = Instant::now();
        let agg = open_window_aggregate(
            store,
            &window.window,
            window.functions.clone(),
            window.key_name.clone(),
            self.cache_bytes,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        task.agg = Some(agg);
        task.seen = crate::repartition::Seen::load(store).map_err(|e| anyhow::anyhow!("{e}"))?;
        task.last_record_at = Instant::now();
        let secs = r.started.elapsed().as_secs_f64();
        tracing::info!(
            partition = p,
            records = r.done,
            skipped_uncommitted = r.skipped,
            wiped = r.wiped,
            seconds = format!("{secs:.2}"),
            records_per_s = format!("{:.0}", r.done as f64 / secs.max(1e-3)),
            "restored; task running"
        );
        let topics = self.input_topics(&self.tasks[&p]);
        self.set_state(p, TaskState::Running);
        self.metrics
            .restore_remaining
            .with_label_values(&[&p.to_string()])
            .set(0);
        self.metrics
            .restore_seconds_to_ready
            .with_label_values(&[&p.to_string()])
            .set(0.0);
        consumer
            .resume(&tpl_of(&topics, &[p]))
            .context("resuming a restored partition")?;
        self.restore_assignment_stale = true;
        Ok(())
    }

    fn process(
        &mut self,
        consumer: &GroupConsumer,
        msg: &rdkafka::message::BorrowedMessage<'_>,
    ) -> anyhow::Result<()> {
        let p = msg.partition();
        let Some(task) = self.tasks.get_mut(&p) else {
            tracing::warn!(
                partition = p,
                offset = msg.offset(),
                "record for a partition this worker does not own; ignored"
            );
            return Ok(());
        };
        if task.state() != TaskState::Running {
            // Fetched before the pause took effect: put it back so it is read again on resume.
            consumer
                .seek(
                    msg.topic(),
                    p,
                    Offset::Offset(msg.offset()),
                    Duration::from_secs(1),
                )
                .ok();
            return Ok(());
        }
        if task
            .positions
            .get(msg.topic())
            .is_some_and(|&next| msg.offset() < next)
        {
            // The fetch went backwards without this worker asking (e.g. the consumer's offset
            // reset after a broker restart): these records are already in the task's state and
            // output; processing them again would count them twice.
            if task.redelivered.is_multiple_of(100_000) {
                tracing::warn!(
                    partition = p,
                    topic = msg.topic(),
                    offset = msg.offset(),
                    next = task.positions[msg.topic()],
                    "records fetched again below the processed position; skipped"
                );
            }
            task.redelivered += 1;
            return Ok(());
        }
        task.last_record_at = Instant::now();
        let payload = msg.payload().unwrap_or_default();
        let from_repartition = self.repartition.as_deref() == Some(msg.topic());
        let mut store_error = None;
        let result = if let Some(forward) = &self.forward {
            forward
                .apply(payload, p, msg.offset(), now_ms())
                .map(|out| match out {
                    Some((key, value)) => self.emits.push(Emit {
                        key: key.unwrap_or_else(|| {
                            String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned()
                        }),
                        window_start: 0,
                        value,
                    }),
                    None => task.counters.filtered.inc(),
                })
        } else if from_repartition {
            // Second half of a re-keyed job: the record already went through the steps.
            crate::repartition::decode(msg.key(), payload).map(|r| {
                if task.seen.admit(r.source) {
                    store_error = aggregate(task, r.key, r.ts, r.value, &mut self.emits).err();
                } else {
                    task.counters.duplicates.inc();
                }
            })
        } else {
            let program = self.program.as_ref().expect("stateful job");
            self.decoder
                .decode(payload, msg.key(), msg.timestamp().to_millis())
                .and_then(|mut rec| {
                    if !program.run(&mut rec.values)? {
                        task.counters.filtered.inc();
                        return Ok(None);
                    }
                    Ok(Some((rec.key, rec.ts_ms, rec.values[program.value_slot])))
                })
                .map(|kept| match (kept, &self.repartition) {
                    (None, _) => {}
                    (Some((key, ts, value)), Some(_)) => {
                        self.repartitioned
                            .push((key, crate::repartition::encode(ts, value, p, msg.offset())));
                    }
                    (Some((key, ts, value)), None) => {
                        store_error = aggregate(task, &key, ts, value, &mut self.emits).err();
                    }
                })
        };
        if let Some(e) = store_error {
            // The task's state cannot be trusted past this record, nor skipped over: nothing of
            // this cycle is committed, and the worker rejoins (see `rejoin_because`).
            let reason = format!(
                "the state store of partition {p} failed at {}[{p}]@{}: {e}",
                msg.topic(),
                msg.offset()
            );
            return self.store_failed(p, reason, &e);
        }
        if let Some(topic) = &self.repartition {
            for (key, payload) in self.repartitioned.drain(..) {
                send(
                    &self.producer,
                    BaseRecord::to(topic).key(key.as_bytes()).payload(&payload),
                )?;
            }
        }
        if let Err(err) = result {
            // Bounded: the error may quote the record, which goes no further than this.
            let err = weir_operators::DecodeError(crate::secrets::redact(
                &weir_operators::excerpt::excerpt(
                    &err.0,
                    weir_operators::excerpt::MESSAGE_MAX_CHARS,
                ),
            ));
            let provenance = format!("{}[{}]@{}", msg.topic(), p, msg.offset());
            match self.policy {
                BadRecordPolicy::Fail => {
                    let reason = format!("bad record at {provenance}: {err}");
                    tracing::error!("{reason}; the task stops (bad_records = \"fail\"); nothing after it is committed");
                    // `/readyz` shows where, the log what (the error may quote the record).
                    task.failure = Some(format!(
                        "bad record at {provenance} (bad_records = \"fail\"; the error is in the log)"
                    ));
                    let topics = self.input_topics(&self.tasks[&p]);
                    self.set_state(p, TaskState::Failed);
                    consumer.pause(&tpl_of(&topics, &[p])).ok();
                    return Ok(());
                }
                BadRecordPolicy::Skip => {
                    tracing::warn!("skipped bad record at {provenance}: {err}");
                    task.counters.skipped.inc();
                }
                BadRecordPolicy::DeadLetter => {
                    let topic = self
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
                    let mut record = BaseRecord::to(topic).payload(payload).headers(headers);
                    if let Some(k) = msg.key() {
                        record = record.key(k);
                    }
                    send(&self.producer, record)?;
                    tracing::warn!("sent bad record at {provenance} to {topic}: {err}");
                    task.counters.dead_lettered.inc();
                }
            }
        }
        let task = self.tasks.get_mut(&p).expect("task");
        match task.positions.get_mut(msg.topic()) {
            Some(next) => *next = msg.offset() + 1,
            None => {
                task.positions
                    .insert(msg.topic().to_string(), msg.offset() + 1);
            }
        }
        task.counters.consumed.inc();
        if let (FetchHold::Never, Some(secs)) =
            (&self.fetch_hold, crate::failpoint::value("hold_fetch"))
        {
            let held = consumer.assignment()?;
            consumer.pause(&held)?;
            tracing::warn!("failpoint hold_fetch: no fetching for {secs} s");
            self.fetch_hold = FetchHold::Holding(Instant::now() + Duration::from_secs(secs), held);
        }
        self.flush_emits()
    }

    /// Ends a `hold_fetch` failpoint's pause once it is due.
    fn end_fetch_hold(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        if let FetchHold::Holding(until, held) = &self.fetch_hold {
            if Instant::now() >= *until {
                consumer.resume(held)?;
                tracing::warn!("failpoint hold_fetch: fetching again");
                self.fetch_hold = FetchHold::Done;
            }
        }
        Ok(())
    }

    /// Sends the results produced so far to the sink.
    fn flush_emits(&mut self) -> anyhow::Result<()> {
        if self.emits.is_empty() {
            return Ok(());
        }
        let emits = std::mem::take(&mut self.emits);
        for e in &emits {
            if crate::failpoint::fires("drop_output") {
                tracing::warn!(key = %e.key, "failpoint drop_output: result record dropped");
                continue;
            }
            match &self.sink_topic {
                Some(topic) => send(
                    &self.producer,
                    BaseRecord::to(topic)
                        .key(e.key.as_bytes())
                        .payload(&e.value),
                )?,
                None => println!("{}", String::from_utf8_lossy(&e.value)),
            }
        }
        self.metrics.records_produced.inc_by(emits.len() as u64);
        self.emits = emits;
        self.emits.clear();
        Ok(())
    }

    /// Wall-clock idle close for tasks that received nothing for `close_idle_after` and are caught
    /// up: every input partition read to its end, as the partition leader says now. A task that is
    /// behind (a backlog, a broker that is down or away) is not idle: closing its windows then
    /// would make the records still to come late.
    fn close_idle(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        let Some(idle) = self.window.as_ref().and_then(|w| w.idle_close) else {
            return Ok(());
        };
        let mut failed = None;
        for task in self
            .tasks
            .values_mut()
            .filter(|t| t.state() == TaskState::Running)
        {
            if task.last_record_at.elapsed() < idle {
                continue;
            }
            let p = task.partition;
            let fetched = &self.fetched;
            // (why not, whether the leader could not be asked)
            let behind = task.topics.iter().find_map(|topic| {
                let next = task
                    .positions
                    .get(topic)
                    .or_else(|| task.committed.get(topic))
                    .copied();
                let drained = fetched.get(&(topic.clone(), p)).copied();
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(1)) {
                    Ok((_, high)) if crate::task::caught_up(next, high, drained) => None,
                    Ok((_, high)) => Some((
                        format!(
                            "{topic}[{p}] is behind (next {next:?}, fetched {drained:?}, end {high})"
                        ),
                        false,
                    )),
                    Err(e) => Some((format!("{topic}[{p}]: end offset unknown ({e})"), true)),
                }
            });
            if let Some((why, unreachable)) = behind {
                tracing::debug!(partition = p, "no idle close: {why}");
                task.last_record_at = if unreachable {
                    // Disconnected: silence counts again from now, once connected (the records
                    // producers held back during an outage arrive after it).
                    Instant::now()
                } else {
                    // Behind: ask again in a few seconds, not at every turn of the loop.
                    Instant::now()
                        .checked_sub(idle.saturating_sub(Duration::from_secs(5)))
                        .unwrap_or_else(Instant::now)
                };
                continue;
            }
            task.last_record_at = Instant::now();
            if let (Some(agg), Some(store)) = (task.agg.as_mut(), task.store.as_ref()) {
                if let Err(e) = agg.close_all(store, &mut self.emits) {
                    failed = Some((p, e));
                    break;
                }
            }
        }
        if let Some((p, e)) = failed {
            let reason = format!("the state store of partition {p} failed at idle close: {e}");
            return self.store_failed(p, reason, &e);
        }
        self.flush_emits()
    }

    /// A task whose store failed: its state cannot be trusted past this point, nor skipped over.
    /// Nothing of this cycle is committed, and the worker rejoins (see `rejoin_because`).
    fn store_failed(&mut self, p: i32, reason: String, e: &StoreError) -> anyhow::Result<()> {
        tracing::error!("{reason}");
        let task = self.tasks.get_mut(&p).expect("task");
        if e.0.starts_with("Corruption") {
            // Damaged local state: without a checkpoint, the next assignment wipes the store
            // and restores it from the changelog.
            if let Some(dir) = &task.dir {
                Checkpoint::delete(&dir.checkpoint_path())?;
            }
        }
        // The log has the whole reason; `/readyz` and the rejoin reason leave out the data.
        let shown = format!("the state store of partition {p} failed: {}", e.summary());
        task.failure = Some(shown.clone());
        self.set_state(p, TaskState::Failed);
        self.rejoin_because.get_or_insert(shown);
        Ok(())
    }

    /// Windows that closed but did not fit in the last commit cycle (see `close_due` in the
    /// operators): the next batch of each task, now. True when some remain after it, so that the
    /// caller commits again without waiting for the interval.
    fn continue_closing(&mut self) -> anyhow::Result<bool> {
        let mut pending = false;
        let mut failed = None;
        for task in self
            .tasks
            .values_mut()
            .filter(|t| t.state() == TaskState::Running)
        {
            if let (Some(agg), Some(store)) = (task.agg.as_mut(), task.store.as_ref()) {
                if agg.close_pending() {
                    if let Err(e) = agg.close_due(store, &mut self.emits) {
                        failed = Some((task.partition, e));
                        break;
                    }
                    pending |= agg.close_pending();
                }
            }
        }
        if let Some((p, e)) = failed {
            let reason = format!("the state store of partition {p} failed closing windows: {e}");
            return self.store_failed(p, reason, &e).map(|_| false);
        }
        self.flush_emits()?;
        Ok(pending)
    }

    /// The commit cycle for `only` (or every task): changelog + outputs flushed, offsets committed,
    /// state applied and checkpointed. The commit step itself is pluggable (see `commit.rs`).
    pub(crate) fn commit(
        &mut self,
        consumer: &GroupConsumer,
        only: Option<&[i32]>,
    ) -> anyhow::Result<()> {
        if let Some(why) = &self.rejoin_because {
            // Uncommitted work may hold a half-applied record: none of it may be committed.
            return Err(anyhow::Error::new(Aborted(why.clone())));
        }
        let started = Instant::now();
        let partitions: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(p, t)| {
                only.is_none_or(|o| o.contains(p))
                    && matches!(t.state(), TaskState::Running | TaskState::Failed)
            })
            .map(|(p, _)| *p)
            .collect();
        // 1. Every dirty state entry once: to the changelog now, to the store after the commit.
        if let Some(window) = &self.window {
            for p in &partitions {
                let task = self.tasks.get_mut(p).expect("task");
                let Some(agg) = task.agg.as_mut() else {
                    continue;
                };
                let mut writes = agg.take_dirty(&mut self.emits);
                // The second hop's de-duplication state goes with the window state it guards.
                writes.extend(task.seen.take_dirty());
                // The offsets this cycle is about to commit: a restore skips these records if
                // the commit never happens.
                let mark = encode_input_offsets(task.topics.iter().filter_map(|t| {
                    let off = task.positions.get(t).or_else(|| task.committed.get(t))?;
                    Some((t.as_str(), *off))
                }));
                for (k, v) in &writes {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: INPUT_OFFSETS_HEADER,
                        value: Some(mark.as_bytes()),
                    });
                    let mut record = BaseRecord::to(&window.changelog)
                        .partition(*p)
                        .key(k.as_slice())
                        .headers(headers);
                    if let Some(v) = v {
                        record = record.payload(v.as_slice());
                    }
                    send(&self.producer, record)?;
                }
                task.pending.extend(writes);
            }
        }
        self.flush_emits()?;
        // 2. Make outputs, changelog and offsets durable together (the guarantee-specific step).
        let mut offsets = TopicPartitionList::new();
        for p in &partitions {
            for (topic, off) in self.tasks[p].uncommitted() {
                offsets.add_partition_offset(topic, *p, Offset::Offset(off))?;
            }
        }
        let committed = match self
            .commit
            .commit(&self.producer, consumer, &offsets, &self.health)
        {
            Ok(c) => c,
            Err(CommitFailure::Fatal(e)) => return Err(e),
            Err(CommitFailure::Abortable(why)) => return Err(anyhow::Error::new(Aborted(why))),
        };
        if !committed {
            // The group moved on (rebalance, this member expelled): the offsets of this cycle are
            // not committed, so its state must not reach the stores either, or the records
            // processed again from the committed offsets would count twice. Its changelog records
            // carry the uncommitted offsets, which a restore skips.
            return self.rewind(
                consumer,
                "the offsets could not be committed (the group is rebalancing)",
            );
        }
        for e in offsets.elements() {
            if let (Some(task), Offset::Offset(off)) =
                (self.tasks.get_mut(&e.partition()), e.offset())
            {
                task.committed.insert(e.topic().to_string(), off);
            }
        }
        crate::failpoint::hit("before_state_apply");
        // 3. Only now apply the buffered state writes and move the checkpoints.
        if let Some(window) = &self.window {
            for p in &partitions {
                let cp_started = Instant::now();
                let task = self.tasks.get_mut(p).expect("task");
                let Some(store) = task.store.as_ref() else {
                    continue;
                };
                // Delivery reports are per process and may predate this task (the partition left
                // and came back): never claim less than the task already knew.
                let next = self
                    .producer
                    .context()
                    .changelog_next(*p)
                    .max(task.changelog_next);
                let pending = std::mem::take(&mut task.pending);
                if pending.is_empty() && next == task.changelog_next && task.checkpoint.is_some() {
                    continue;
                }
                store
                    .write(pending.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                store.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
                crate::failpoint::hit("before_checkpoint");
                let cp = Checkpoint {
                    changelog_offsets: [(window.store.clone(), next.unwrap_or(0))].into(),
                    input_offset: task
                        .committed
                        .values()
                        .copied()
                        .max()
                        .unwrap_or(0)
                        .max(task.checkpoint.as_ref().map_or(0, |c| c.input_offset)),
                };
                let path = task
                    .dir
                    .as_ref()
                    .expect("stateful task has a dir")
                    .checkpoint_path();
                cp.write(&path, task.checkpoint.as_ref())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                task.checkpoint = Some(cp);
                task.changelog_next = next;
                task.last_checkpoint_at = Instant::now();
                self.metrics
                    .checkpoint_duration
                    .observe(cp_started.elapsed().as_secs_f64());
            }
        }
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commits.inc();
        Ok(())
    }

    /// After the producer was fenced: give up every task (their state is what was committed),
    /// make a new producer; the caller then rejoins the group.
    /// After an aborted commit: give up every task (their state is what was committed) and make
    /// the producer usable again; the caller then leaves and rejoins the group, so every partition
    /// is assigned, restored and read again from its committed offset by the ordinary path.
    fn restart_after_abort(&mut self) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        self.close_all();
        for p in partitions {
            self.metrics.forget_partition(p);
            self.health.set_task(p, None);
        }
        self.metrics.tasks.set(0);
        self.emits.clear();
        self.restore_assignment_stale = true;
        self.commit.recover(&self.producer)
    }

    /// After an aborted transaction: nothing of the cycle is visible, so every task forgets its
    /// uncommitted state and reads again from its committed offsets.
    fn rewind(&mut self, consumer: &GroupConsumer, why: &str) -> anyhow::Result<()> {
        tracing::warn!("{why}; rewinding every task to its committed offsets");
        self.commit.recover(&self.producer)?;
        self.emits.clear();
        for task in self.tasks.values_mut() {
            task.pending.clear();
            if let (Some(agg), Some(store)) = (task.agg.as_mut(), task.store.as_ref()) {
                agg.discard_uncommitted(store)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                task.seen =
                    crate::repartition::Seen::load(store).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            task.positions.clear();
            if task.state() != TaskState::Running {
                continue;
            }
            for t in &task.topics {
                let to = task
                    .committed
                    .get(t)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                if let Err(e) = consumer.seek(t, task.partition, to, Duration::from_secs(10)) {
                    tracing::warn!(partition = task.partition, "rewinding {t}: {e}");
                }
            }
        }
        Ok(())
    }

    fn update_gauges(&self) {
        self.metrics
            .block_cache_bytes
            .set(self.resources.block_cache_usage() as i64);
        self.metrics
            .write_buffer_bytes
            .set(self.resources.write_buffer_usage() as i64);
        for (p, t) in &self.tasks {
            let label = p.to_string();
            if let Some(s) = &t.store {
                self.metrics
                    .state_size
                    .with_label_values(&[&label])
                    .set(s.estimated_size_bytes() as i64);
                self.metrics
                    .checkpoint_age
                    .with_label_values(&[&label])
                    .set(t.last_checkpoint_at.elapsed().as_secs_f64());
            }
        }
    }

    fn close_all(&mut self) {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            let state = self.tasks[&p].state();
            if state != TaskState::Created {
                self.set_state(p, TaskState::Suspended);
            }
            self.set_state(p, TaskState::Closed);
            self.tasks.remove(&p);
        }
    }
}

/// Runs a worker until `shutdown` is set (then commits, checkpoints, leaves the group) or a fatal
/// error. Blocking: run it on its own thread.
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        job,
        runtime,
        metrics,
        health,
        shutdown,
    } = args;
    let name = job.name.get_ref().clone();
    let brokers = runtime.brokers.clone();
    let topics = job.source.topics.clone();

    // Co-partitioned inputs: every input topic has the same number of partitions.
    let mut partitions = None;
    for t in &topics {
        let n = partition_count(&brokers, &job, t)?
            .with_context(|| format!("input topic {t} does not exist on {brokers}"))?;
        match partitions {
            Some(m) if m != n => bail!(
                "input topics are not co-partitioned: {} has {m} partitions, {t} has {n}",
                topics[0]
            ),
            _ => partitions = Some(n),
        }
    }
    let partitions = partitions.context("the job names no input topic")?;
    let plan = job.plan();
    let program = plan.window.as_ref().map(|_| Program::compile(&job));
    let window = match (&plan.window, job.changelog_topic()) {
        (Some((w, a)), Some(changelog)) => {
            ensure_topic(
                &brokers,
                &job,
                &changelog,
                partitions,
                job.state.changelog_replication_factor,
                true,
            )?;
            Some(WindowSpec {
                window: w.clone(),
                functions: a.functions.clone(),
                idle_close: w.close_idle_after.map(|d| d.std()),
                store: a.store.get_ref().clone(),
                changelog,
                key_name: program
                    .as_ref()
                    .map_or_else(|| "key".into(), |p| p.key_name.clone()),
            })
        }
        _ => None,
    };
    let sink_topic = match job.sink.kind {
        SinkKind::Kafka => job.sink.topic.clone(),
        SinkKind::Stdout => None,
    };
    for t in sink_topic
        .iter()
        .chain(job.processing.dead_letter_topic.iter())
    {
        if partition_count(&brokers, &job, t)?.is_none() {
            bail!("topic {t} does not exist on {brokers}: create it first");
        }
    }
    let forward = plan.window.is_none().then(|| Forward::compile(&job));
    // A re-keyed job decodes its key from the key_by field.
    let mut source = job.source.clone();
    if let Some(k) = program.as_ref().and_then(|p| p.key_input_field.clone()) {
        source.key_field = Some(k);
    }
    let decoder = Decoder::new(
        &source,
        program
            .as_ref()
            .map(|p| p.input_fields.clone())
            .unwrap_or_default(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let repartition = job.repartition_topic();
    if let Some(t) = &repartition {
        ensure_topic(
            &brokers,
            &job,
            t,
            partitions,
            job.state.changelog_replication_factor,
            false,
        )?;
    }

    let mut pc = client_config(&brokers, &job);
    pc.set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random");
    set_default(&mut pc, &job, "linger.ms", "5");
    set_default(&mut pc, &job, "compression.type", "lz4");
    // Bounded memory: a commit of many dirty keys waits for acknowledgements rather than
    // queueing them all (librdkafka's default allows 1 GiB).
    set_default(&mut pc, &job, "queue.buffering.max.kbytes", "32768");
    let commit: Box<dyn CommitStep + Send> = match job.processing.guarantee {
        Guarantee::AtLeastOnce => {
            // Never give up on a record: while Kafka is away the worker waits (and says it is not ready).
            set_default(&mut pc, &job, "message.timeout.ms", "0");
            Box::new(AtLeastOnce)
        }
        Guarantee::ExactlyOnce => {
            // A stable id per worker identity lets a restarted worker fence its predecessor and
            // abort its open transaction at once; without --instance-id the id is unique per process
            // and a dead worker's open transaction ends at the transaction timeout.
            let id = match &runtime.instance_id {
                Some(i) => format!("{name}-{i}"),
                None => format!("{name}-{}-{}", std::process::id(), now_ms()),
            };
            tracing::info!(transactional_id = %id, "exactly-once");
            // A transaction stays open for a commit interval (and a revocation's commit within
            // it): its timeout must outlast that. A `kafka.properties` value wins.
            let txn_timeout_ms = (job.processing.commit_interval.as_millis() * 3).max(10_000);
            pc.set("transactional.id", &id);
            set_default(
                &mut pc,
                &job,
                "transaction.timeout.ms",
                txn_timeout_ms.to_string(),
            );
            set_default(&mut pc, &job, "message.timeout.ms", "10000");
            Box::new(ExactlyOnce {
                transactional_id: id,
            })
        }
    };
    let producer: BaseProducer<Deliveries> = pc
        .create_with_context(Deliveries::new(
            window.as_ref().map(|w| w.changelog.clone()),
        ))
        .map_err(|e| creation_error("creating the producer", e))?;
    let restore_consumer: BaseConsumer = client_config(&brokers, &job)
        .set("group.id", format!("{name}-restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| creation_error("creating the restore consumer", e))?;

    let watermarks: BaseConsumer = client_config(&brokers, &job)
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|e| creation_error("creating the watermark client", e))?;
    let state_dir = PathBuf::from(&runtime.state_dir);
    let mut commit = commit;
    commit.start(&producer)?;
    let core = Arc::new(Mutex::new(Core {
        job_name: name.clone(),
        decoder,
        program,
        forward,
        repartition: repartition.clone(),
        window,
        sink_topic,
        dead_letter_topic: job.processing.dead_letter_topic.clone(),
        policy: job.processing.bad_records,
        state_dir,
        cache_bytes: (runtime.block_cache_bytes as usize) / partitions.max(1),
        tasks: BTreeMap::new(),
        producer,
        restore_consumer,
        transactional: job.processing.guarantee == Guarantee::ExactlyOnce,
        watermarks,
        restore_assignment_stale: false,
        rejoin_because: None,
        resources: SharedResources::new(runtime.block_cache_bytes, runtime.write_buffer_bytes),
        metrics: metrics.clone(),
        health: health.clone(),
        emits: Vec::new(),
        repartitioned: Vec::new(),
        last_restore_log: Instant::now(),
        fetched: BTreeMap::new(),
        fetch_hold: FetchHold::Never,
        commit,
    }));

    // A task is partition p of every subscribed topic, so one member must own p of all of them.
    // The range assignor gives that for co-partitioned topics (each topic's partitions go to the
    // members in the same order); cooperative-sticky balances topic-partitions independently, so
    // it is kept for single-topic jobs, where it moves only the partitions that must move.
    let co_partitioned = topics.len() + usize::from(repartition.is_some()) > 1;
    let mut cc = client_config(&brokers, &job);
    cc.set("group.id", &name)
        .set(
            "partition.assignment.strategy",
            if co_partitioned {
                "range"
            } else {
                "cooperative-sticky"
            },
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    set_default(
        &mut cc,
        &job,
        "session.timeout.ms",
        runtime.session_timeout.as_millis().to_string(),
    );
    set_default(
        &mut cc,
        &job,
        "heartbeat.interval.ms",
        (runtime.session_timeout.as_millis() / 5)
            .max(100)
            .to_string(),
    );
    set_default(&mut cc, &job, "statistics.interval.ms", "5000");
    set_default(&mut cc, &job, "queued.max.messages.kbytes", "4096");
    if let Some(id) = &runtime.instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: GroupConsumer = cc
        .create_with_context(WorkerContext {
            core: core.clone(),
            metrics: metrics.clone(),
            topics: topics.clone(),
        })
        .map_err(|e| creation_error("creating the consumer", e))?;
    // A re-keyed job also consumes its repartition topic: partition p of both belongs to task p.
    let subscribed: Vec<&str> = topics
        .iter()
        .chain(repartition.iter())
        .map(String::as_str)
        .collect();
    consumer.subscribe(&subscribed).context("subscribing")?;
    tracing::info!(job = %name, brokers = %brokers, topics = ?topics, partitions, "worker started");

    let commit_interval = job.processing.commit_interval.std();
    let mut next_commit = Instant::now() + commit_interval;
    let mut next_housekeeping = Instant::now();
    let mut rejoin_backoff = Duration::ZERO;
    let result = (|| -> anyhow::Result<()> {
        while !shutdown.load(Ordering::Relaxed) {
            let restoring = core
                .lock()
                .unwrap()
                .tasks
                .values()
                .any(|t| t.state() == TaskState::Restoring);
            let polled = consumer.poll(if restoring {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            });
            let mut c = core.lock().unwrap();
            match polled {
                Some(Ok(msg)) => {
                    let started = Instant::now();
                    // Processing time for the event-time plausibility check, once per batch.
                    c.decoder.set_processing_time(now_ms());
                    c.process(&consumer, &msg)?;
                    drop(msg);
                    // Drain what is already fetched without blocking, lock held: no callbacks
                    // run from a zero-timeout poll of an already-filled queue... except they may,
                    // so release the lock between polls.
                    drop(c);
                    for _ in 0..256 {
                        match consumer.poll(Duration::ZERO) {
                            Some(Ok(m)) => core.lock().unwrap().process(&consumer, &m)?,
                            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                                bail!("consumer: {e}")
                            }
                            Some(Err(e)) => {
                                if let Some(why) = not_authorized(&e, &name, &subscribed) {
                                    bail!("consumer: {why}");
                                }
                                tracing::warn!("consumer: {e}");
                                break;
                            }
                            None => break,
                        }
                    }
                    metrics
                        .poll_batch_duration
                        .observe(started.elapsed().as_secs_f64());
                    c = core.lock().unwrap();
                }
                // Fatal for the consumer (e.g. its static instance id was taken by a newer
                // process): this worker is replaced; stop instead of spinning.
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => bail!("consumer: {e}"),
                Some(Err(e)) => {
                    // A missing ACL is no outage: no retry helps, say what is missing and stop.
                    if let Some(why) = not_authorized(&e, &name, &subscribed) {
                        bail!("consumer: {why}");
                    }
                    tracing::warn!("consumer: {e}")
                }
                None => {}
            }
            c.restore_step(
                &consumer,
                if restoring {
                    Duration::from_millis(50)
                } else {
                    Duration::ZERO
                },
            )?;
            health.beat();
            if let Some(why) = c.rejoin_because.take() {
                rejoin_backoff =
                    (rejoin_backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(
                    "{why}: closing every task, rejoining the group in {:.0?}",
                    rejoin_backoff
                );
                health.set_rejoining(Some(why));
                c.restart_after_abort()?;
                drop(c);
                consumer.unsubscribe();
                let until = Instant::now() + rejoin_backoff;
                while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                    health.beat();
                    std::thread::sleep(Duration::from_millis(100));
                }
                consumer
                    .subscribe(&subscribed)
                    .context("subscribing again")?;
                continue;
            }
            if c.tasks.values().any(|t| t.state() == TaskState::Running) {
                rejoin_backoff = Duration::ZERO;
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                c.end_fetch_hold(&consumer)?;
                c.close_idle(&consumer)?;
                c.update_gauges();
                c.producer.poll(Duration::ZERO);
                next_housekeeping = now + Duration::from_millis(200);
            }
            if now >= next_commit {
                next_commit = Instant::now() + commit_interval;
                let committed = c.commit(&consumer, None);
                if committed.is_ok() && c.continue_closing()? {
                    next_commit = Instant::now();
                }
                if let Err(e) = committed {
                    if e.is::<Fenced>() {
                        // A newer instance with this identity owns the tasks now. Rejoining under
                        // the same transactional and instance id would fence it in turn: stop.
                        return Err(e.context("this worker was replaced by a newer instance with the same identity; stopping"));
                    }
                    if !e.is::<Aborted>() {
                        return Err(e);
                    }
                    if c.rejoin_because.is_none() {
                        // Nothing of the cycle is visible: every task goes back to its committed
                        // state and offsets, in place. The rebalance that usually caused the abort
                        // (a new generation) goes on by itself; leaving and joining again on top
                        // of it could leave a static member without partitions for minutes.
                        c.rewind(&consumer, &format!("{e:#}"))?;
                    }
                    // Otherwise the worker gives up its tasks and rejoins at the next turn.
                }
            }
        }
        Ok(())
    })();
    match &result {
        Ok(()) => {
            tracing::info!("shutting down: final commit");
            let mut c = core.lock().unwrap();
            c.commit(&consumer, None)?;
            c.close_all();
        }
        Err(e) => {
            health.set_fatal(format!("{e:#}"));
            tracing::error!("worker stopped: {e:#}");
        }
    }
    // Leaving the group: close the consumer while the core is not locked (revoke callbacks run).
    consumer.unsubscribe();
    drop(consumer);
    result
}
