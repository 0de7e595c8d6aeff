//! The task manager's commit discipline without a broker: a scripted commit step stands in for
//! the guarantee (committed, aborted, rebalancing), a recording sink for the output, and the
//! Kafka clients point at an address where nothing listens (they queue locally and never
//! connect). Tasks hold real RocksDB stores in a temporary directory and the flagship job's window
//! operator; records go straight to a task's window state, as `process` hands them over.

use super::*;
use crate::sink::CommittedOffsets;
use rdkafka::ClientConfig;
use std::collections::VecDeque;
use weir_state::Checkpoint;

const TOPIC: &str = "meter-readings";
const NOWHERE: &str = "127.0.0.1:9";

/// What the fake commit step and the fake sink were asked to do.
#[derive(Default)]
struct Seen {
    /// Outcomes to return, in order; `Committed` once they run out.
    script: VecDeque<Outcome>,
    /// The offsets of every commit asked for: (partition, next offset) pairs.
    commits: Vec<Vec<(i32, i64)>>,
    recovered: usize,
    /// The next commit is fenced (the producer's epoch was bumped).
    fence_next: bool,
    /// `start` calls: once more per renewed producer.
    started: usize,
    written: Vec<(String, Vec<u8>)>,
    sink_committed: Vec<Vec<(i32, i64)>>,
    sink_aborted: usize,
}

type Shared = Arc<Mutex<Seen>>;

struct ScriptedStep(Shared);

impl CommitStep for ScriptedStep {
    fn start(&mut self, _: &RecordCollector, _: &Health) -> anyhow::Result<()> {
        self.0.lock().unwrap().started += 1;
        Ok(())
    }
    fn commit(
        &mut self,
        _: &RecordCollector,
        _: &GroupConsumer,
        offsets: &TopicPartitionList,
        _: &Health,
    ) -> Result<Outcome, StepError> {
        let mut seen = self.0.lock().unwrap();
        let asked = offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), o),
                other => panic!("a commit of {other:?}"),
            })
            .collect();
        seen.commits.push(asked);
        if std::mem::take(&mut seen.fence_next) {
            return Err(StepError::Fenced("epoch bumped".into()));
        }
        Ok(seen.script.pop_front().unwrap_or(Outcome::Committed))
    }
    fn recover(&mut self, _: &RecordCollector) -> Result<(), StepError> {
        self.0.lock().unwrap().recovered += 1;
        Ok(())
    }
}

struct RecordingSink(Shared);

impl Sink for RecordingSink {
    fn check(&self, _: &str, _: &Job) -> anyhow::Result<()> {
        Ok(())
    }
    fn write(&mut self, _: &RecordCollector, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let key = String::from_utf8(key.to_vec()).unwrap();
        self.0.lock().unwrap().written.push((key, value.to_vec()));
        Ok(())
    }
    fn committed(&mut self, offsets: CommittedOffsets<'_>) -> anyhow::Result<()> {
        let offsets = offsets.iter().map(|(_, p, o)| (*p, *o)).collect();
        self.0.lock().unwrap().sink_committed.push(offsets);
        Ok(())
    }
    fn abort(&mut self) {
        self.0.lock().unwrap().sink_aborted += 1;
    }
    fn describe(&self) -> String {
        "recording".into()
    }
}

fn job() -> Job {
    weir_config::parse_job("job.toml", crate::FLAGSHIP_JOB, &|_| None).unwrap()
}

fn nowhere() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", NOWHERE);
    c
}

/// A manager of the flagship job with a running task per partition in `partitions`.
fn manager(
    dir: &std::path::Path,
    partitions: &[i32],
    transactional: bool,
) -> (TaskManager, Shared) {
    let job = job();
    let seen = Shared::default();
    let pipeline = Pipeline::compile(&job, &weir_operators::formats::no_schemas()).unwrap();
    let changelog = pipeline.window().unwrap().changelog.clone();
    let metrics = Arc::new(Metrics::new("t"));
    let mut m = TaskManager {
        job_name: "t".into(),
        pipeline,
        tasks: BTreeMap::new(),
        collector: RecordCollector::create(nowhere(), Some(changelog)).unwrap(),
        sink: Box::new(RecordingSink(seen.clone())),
        bad_records: BadRecords {
            policy: BadRecordPolicy::Fail,
            dead_letter_topic: None,
        },
        commit_step: Box::new(ScriptedStep(seen.clone())),
        transactional,
        restorer: restore::ChangelogReader::new(
            nowhere().create().unwrap(),
            nowhere().create().unwrap(),
        ),
        stores: Stores {
            state_dir: dir.to_path_buf(),
            resources: SharedResources::new(8 << 20, 8 << 20),
            cache_bytes: 1 << 20,
        },
        rejoin_because: None,
        renew_producer: false,
        assign_budget: Duration::from_secs(5),
        metrics: metrics.clone(),
        health: Arc::new(Health::default()),
        emits: Vec::new(),
        repartitioned: Vec::new(),
        fetched: BTreeMap::new(),
        fetch_hold: FetchHold::Never,
        batch_clock: (Instant::now(), now_ms()),
    };
    for &p in partitions {
        let w = m.pipeline.window().unwrap();
        let dir = TaskDir::lock(dir, "t", p).unwrap();
        let (local, _) = LocalState::open(dir, &w.store, &m.stores.resources, (0, 0)).unwrap();
        let agg = w.open(&local.store, m.stores.cache_bytes).unwrap();
        let mut task = Task::new(p, metrics.task_counters(p));
        task.topics.push(TOPIC.into());
        task.run(Active {
            state: Some(WindowState::new(local, agg).unwrap()),
        });
        m.tasks.insert(p, task);
    }
    (m, seen)
}

/// A group consumer that never connects (its callbacks would reach a manager of its own).
fn consumer(dir: &std::path::Path) -> GroupConsumer {
    let (core, _) = manager(&dir.join("callbacks"), &[], false);
    nowhere()
        .set("group.id", "t")
        .create_with_context(WorkerContext {
            core: Arc::new(Mutex::new(core)),
            metrics: Arc::new(Metrics::new("callbacks")),
            topics: vec![TOPIC.into()],
        })
        .unwrap()
}

/// Readings `(offset, meter, minute of the first hour, kWh)` of partition `p`, as `process`
/// applies them: into the window state, the task's position past each.
fn feed(m: &mut TaskManager, p: i32, readings: &[(i64, &str, i64, f64)]) {
    let task = m.tasks.get_mut(&p).unwrap();
    for &(offset, meter, minute, kwh) in readings {
        let state = task.running().unwrap().state.as_mut().unwrap();
        assert!(state
            .aggregate(meter, minute * 60_000, kwh, &mut m.emits)
            .unwrap());
        task.offsets.advance(TOPIC, offset);
    }
}

fn store_is_empty(m: &TaskManager, p: i32) -> bool {
    m.tasks[&p].local().unwrap().store.is_empty()
}

fn checkpoint(m: &TaskManager, p: i32) -> Option<Checkpoint> {
    m.tasks[&p].local().unwrap().checkpoint().cloned()
}

/// Every window of partition `p` closed now: (meter, count) of each result, in key order.
fn counts_after_closing(m: &mut TaskManager, p: i32) -> Vec<(String, u64)> {
    let task = m.tasks.get_mut(&p).unwrap();
    let state = task.running().unwrap().state.as_mut().unwrap();
    let mut out = Vec::new();
    state.close_all(&mut out).unwrap();
    let mut counts: Vec<(String, u64)> = out
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
            (e.key.clone(), v["count"].as_u64().unwrap())
        })
        .collect();
    counts.sort();
    counts
}

const P0: &[(i64, &str, i64, f64)] = &[(0, "m1", 1, 1.0), (1, "m1", 2, 2.0), (2, "m2", 3, 3.0)];
const P1: &[(i64, &str, i64, f64)] = &[(0, "m3", 1, 4.0), (1, "m3", 5, 5.0)];

/// Two running tasks (partitions 0 and 1) fed `P0` and `P1`, their offsets not yet committed; the
/// first commit asked for answers `first` (or commits).
fn fed_pair(
    transactional: bool,
    first: Option<Outcome>,
) -> (tempfile::TempDir, TaskManager, Shared, GroupConsumer) {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, seen) = manager(dir.path(), &[0, 1], transactional);
    let c = consumer(dir.path());
    feed(&mut m, 0, P0);
    feed(&mut m, 1, P1);
    seen.lock().unwrap().script.extend(first);
    (dir, m, seen, c)
}

fn aborted() -> Option<Outcome> {
    Some(Outcome::Aborted("the transaction was aborted".into()))
}

#[test]
fn an_aborted_cycle_reaches_no_store_and_every_task_reads_again_from_its_committed_offsets() {
    let (_dir, mut m, seen, c) = fed_pair(true, aborted());
    let cycle = m.commit(&c, None).unwrap();
    assert!(matches!(cycle, Cycle::Aborted(_)));
    assert_eq!(seen.lock().unwrap().commits, [vec![(0, 3), (1, 2)]]);
    // The changelog records went out; the stores and checkpoints did not move.
    assert!(store_is_empty(&m, 0) && store_is_empty(&m, 1));
    assert!(checkpoint(&m, 0).is_none() && checkpoint(&m, 1).is_none());
    assert!(seen.lock().unwrap().sink_committed.is_empty());
    // The loop rewinds: uncommitted state forgotten, positions back to the committed ones.
    m.rewind(&c, "the transaction was aborted").unwrap();
    assert_eq!(seen.lock().unwrap().recovered, 1);
    assert!(seen.lock().unwrap().sink_aborted >= 1);
    for p in [0, 1] {
        assert!(m.tasks[&p].offsets.positions.is_empty());
        assert_eq!(m.tasks[&p].offsets.next(TOPIC), None);
    }
    // The same records again, and a cycle that commits: each counted once.
    feed(&mut m, 0, P0);
    feed(&mut m, 1, P1);
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Committed));
    assert_eq!(seen.lock().unwrap().commits[1], [(0, 3), (1, 2)]);
    assert_eq!(checkpoint(&m, 0).unwrap().input_offset, 3);
    assert_eq!(checkpoint(&m, 1).unwrap().input_offset, 2);
    assert_eq!(m.tasks[&0].offsets.committed[TOPIC], 3);
    assert!(!store_is_empty(&m, 0));
    assert_eq!(
        counts_after_closing(&mut m, 0),
        [("m1".to_string(), 2), ("m2".to_string(), 1)]
    );
    assert_eq!(counts_after_closing(&mut m, 1), [("m3".to_string(), 2)]);
}

#[test]
fn a_rebalance_during_the_cycle_applies_nothing_and_rewinds_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, seen) = manager(dir.path(), &[0], false);
    let c = consumer(dir.path());
    // A first cycle commits offset 2 (two readings).
    feed(&mut m, 0, &P0[..2]);
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Committed));
    let committed = checkpoint(&m, 0).unwrap();
    assert_eq!(committed.input_offset, 2);
    // The next cycle's offset commit meets a rebalance.
    feed(&mut m, 0, &P0[2..]);
    seen.lock().unwrap().script.push_back(Outcome::Rebalancing);
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Rewound));
    assert_eq!(
        checkpoint(&m, 0).unwrap(),
        committed,
        "the checkpoint stayed"
    );
    assert_eq!(m.tasks[&0].offsets.committed[TOPIC], 2);
    assert_eq!(
        m.tasks[&0].offsets.next(TOPIC),
        Some(2),
        "read again from 2"
    );
    // Read again from the committed offset: m2 once, m1's two readings once.
    feed(&mut m, 0, &P0[2..]);
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Committed));
    assert_eq!(checkpoint(&m, 0).unwrap().input_offset, 3);
    assert_eq!(
        counts_after_closing(&mut m, 0),
        [("m1".to_string(), 2), ("m2".to_string(), 1)]
    );
}

#[test]
fn a_revocation_commits_the_leaving_tasks_alone_under_at_least_once() {
    let (dir, mut m, seen, c) = fed_pair(false, None);
    m.revoke(&c, &[1], false).unwrap();
    assert_eq!(seen.lock().unwrap().commits, [vec![(1, 2)]]);
    assert_eq!(seen.lock().unwrap().sink_committed, [vec![(1, 2)]]);
    assert!(!m.tasks.contains_key(&1), "the revoked task is closed");
    // Partition 1's store was made durable before it closed; a new owner finds its checkpoint.
    let cp = Checkpoint::read(&TaskDir::lock(dir.path(), "t", 1).unwrap().checkpoint_path());
    assert_eq!(cp.unwrap().input_offset, 2);
    // The task that stays keeps its uncommitted work for its own next cycle.
    assert!(store_is_empty(&m, 0));
    assert_eq!(m.tasks[&0].offsets.next(TOPIC), Some(3));
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Committed));
    assert_eq!(seen.lock().unwrap().commits[1], [(0, 3)]);
}

#[test]
fn a_revocation_under_exactly_once_commits_every_task_in_the_transaction() {
    let (_dir, mut m, seen, c) = fed_pair(true, None);
    m.revoke(&c, &[1], false).unwrap();
    // The open transaction holds both tasks' output: both tasks' offsets go with it.
    assert_eq!(seen.lock().unwrap().commits, [vec![(0, 3), (1, 2)]]);
    assert!(!m.tasks.contains_key(&1));
    assert_eq!(checkpoint(&m, 0).unwrap().input_offset, 3);
    assert_eq!(m.tasks[&0].offsets.committed[TOPIC], 3);
}

#[test]
fn a_revocation_whose_commit_aborts_rewinds_the_tasks_that_stay() {
    let (dir, mut m, seen, c) = fed_pair(true, aborted());
    m.revoke(&c, &[1], false).unwrap();
    assert!(!m.tasks.contains_key(&1));
    assert!(store_is_empty(&m, 0));
    assert!(checkpoint(&m, 0).is_none());
    assert_eq!(
        m.tasks[&0].offsets.next(TOPIC),
        None,
        "read again from the start"
    );
    assert_eq!(seen.lock().unwrap().recovered, 1);
    // Partition 1 left without a checkpoint: its next owner restores it from the changelog.
    let cp = Checkpoint::read(&TaskDir::lock(dir.path(), "t", 1).unwrap().checkpoint_path());
    assert!(cp.is_err());
}

#[test]
fn lost_partitions_commit_nothing_and_under_exactly_once_rewind_every_task() {
    let (_dir, mut m, seen, c) = fed_pair(true, None);
    m.revoke(&c, &[1], true).unwrap();
    assert!(seen.lock().unwrap().commits.is_empty());
    assert!(!m.tasks.contains_key(&1));
    assert_eq!(m.tasks[&0].offsets.next(TOPIC), None);
    assert!(store_is_empty(&m, 0));
    // Fed again after the rewind, counted once.
    feed(&mut m, 0, P0);
    assert!(matches!(m.commit(&c, None).unwrap(), Cycle::Committed));
    assert_eq!(
        counts_after_closing(&mut m, 0),
        [("m1".to_string(), 2), ("m2".to_string(), 1)]
    );
}

#[test]
fn a_fenced_commit_keeps_its_state_out_of_the_stores_and_the_rejoin_renews_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, seen) = manager(dir.path(), &[0, 1], true);
    let consumer = consumer(dir.path());
    feed(&mut m, 0, &[(10, "m1", 1, 1.0), (11, "m1", 2, 2.0)]);
    seen.lock().unwrap().fence_next = true;
    let fenced = m.commit(&consumer, None);
    assert!(matches!(fenced, Err(StepError::Fenced(_))), "{fenced:?}");
    // What the poll loop does with it.
    m.producer_fenced("epoch bumped".into());
    assert!(
        m.rejoin_because.as_deref().unwrap().contains("fenced"),
        "{:?}",
        m.rejoin_because
    );
    assert!(
        store_is_empty(&m, 0),
        "nothing of the fenced cycle reached the store"
    );
    assert_eq!(checkpoint(&m, 0), None, "nor moved its checkpoint");
    m.restart_after_abort().unwrap();
    assert!(m.tasks.is_empty(), "every task given up");
    assert!(m.emits.is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.started, 1, "a new producer, started once");
    assert_eq!(
        seen.recovered, 0,
        "a fenced producer is not aborted, it is replaced"
    );
    assert!(seen.sink_committed.is_empty());
    assert!(seen.sink_aborted >= 1);
    assert_eq!(m.metrics.producer_renewals.get(), 1);
    assert!(!m.renew_producer);
}

#[test]
fn a_fenced_revocation_closes_the_revoked_tasks_and_asks_for_a_rejoin_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, seen) = manager(dir.path(), &[0, 1], true);
    let consumer = consumer(dir.path());
    feed(&mut m, 1, &[(5, "m2", 1, 1.0)]);
    seen.lock().unwrap().fence_next = true;
    m.revoke(&consumer, &[0], false).unwrap();
    assert!(!m.tasks.contains_key(&0), "the revoked task is closed");
    assert!(m.rejoin_because.is_some());
    assert!(m.renew_producer);
    assert!(
        store_is_empty(&m, 1),
        "the other task's cycle did not commit either"
    );
    // An ordinary abort (no fence) recovers the producer in place instead.
    m.renew_producer = false;
    m.restart_after_abort().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!((seen.recovered, seen.started), (1, 0));
}
