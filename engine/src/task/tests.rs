//! The task lifecycle and the commit discipline, without Kafka: real stores in a temporary
//! directory, a fake operator that records what the task asks of it.

use super::*;
use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use weir_operators::{Emit, StoreAccess, WindowAggregate};
use weir_state::{Checkpoint, LocalState, SharedResources, StoreError, TaskDir, WriteOp};

fn task(p: i32) -> Task {
    Task::new(p, Metrics::new("t").task_counters(p))
}

fn local(root: &std::path::Path) -> LocalState {
    let dir = TaskDir::lock(root, "job", 0).unwrap();
    let resources = SharedResources::new(8 << 20, 8 << 20);
    LocalState::open(dir, "agg", &resources, (0, 0)).unwrap().0
}

/// What the fake operator was asked to do, shared with the test.
#[derive(Default)]
struct Calls {
    discarded: usize,
}

/// Sums values per key; every key it touched is dirty until the commit takes it.
struct FakeSum {
    dirty: BTreeMap<String, f64>,
    calls: Arc<Mutex<Calls>>,
}

impl WindowAggregate for FakeSum {
    fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        _ts: i64,
        value: f64,
        _out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError> {
        let stored = match self.dirty.get(key) {
            Some(v) => *v,
            None => store
                .get(key.as_bytes())?
                .map_or(0.0, |b| f64::from_be_bytes(b.try_into().unwrap())),
        };
        self.dirty.insert(key.to_string(), stored + value);
        Ok(true)
    }
    fn close_all(&mut self, _: &dyn StoreAccess, _: &mut Vec<Emit>) -> Result<(), StoreError> {
        Ok(())
    }
    fn close_pending(&self) -> bool {
        false
    }
    fn close_due(&mut self, _: &dyn StoreAccess, _: &mut Vec<Emit>) -> Result<(), StoreError> {
        Ok(())
    }
    fn take_dirty(&mut self, _: &mut Vec<Emit>) -> Vec<WriteOp> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), Some(v.to_be_bytes().to_vec())))
            .collect()
    }
    fn discard_uncommitted(&mut self, _: &dyn StoreAccess) -> Result<(), StoreError> {
        self.dirty.clear();
        self.calls.lock().unwrap().discarded += 1;
        Ok(())
    }
    fn late_records(&self) -> u64 {
        0
    }
}

fn window_state(root: &std::path::Path) -> (WindowState, Arc<Mutex<Calls>>) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let op = FakeSum {
        dirty: BTreeMap::new(),
        calls: calls.clone(),
    };
    (WindowState::new(local(root), Box::new(op)).unwrap(), calls)
}

fn stored(state: &WindowState, key: &str) -> Option<f64> {
    state
        .local
        .store
        .get(key.as_bytes())
        .unwrap()
        .map(|b| f64::from_be_bytes(b.try_into().unwrap()))
}

#[test]
fn the_lifecycle_allows_only_its_edges() {
    let root = tempfile::tempdir().unwrap();
    let mut t = task(0);
    assert_eq!(t.state(), TaskState::Created);
    t.begin_restore(Restoring::new(local(root.path()), 0, 0, false));
    assert_eq!(t.state(), TaskState::Restoring);
    assert!(t.local().is_some(), "a restoring task has its store");
    t.complete_restoration(|_| Ok::<_, ()>(Ok(Active { state: None })))
        .unwrap();
    assert_eq!(t.state(), TaskState::Running);
    t.fail("bad record at in[0]@3".into());
    assert_eq!(t.failure(), Some("bad record at in[0]@3"));
    t.close();
    assert_eq!(t.state(), TaskState::Closed);
    assert!(!TaskState::Closed.may_become(TaskState::Running));
    assert!(!TaskState::Running.may_become(TaskState::Restoring));
}

#[test]
fn a_restore_that_cannot_rebuild_the_state_fails_the_task_without_its_store() {
    let root = tempfile::tempdir().unwrap();
    let mut t = task(0);
    t.begin_restore(Restoring::new(local(root.path()), 0, 0, false));
    t.complete_restoration(|_| Ok::<_, ()>(Err("holes".to_string())))
        .unwrap();
    assert_eq!(t.state(), TaskState::Failed);
    assert!(
        t.local().is_none(),
        "the store is closed, its directory free"
    );
    assert!(TaskDir::lock(root.path(), "job", 0).is_ok());
    assert!(t.committing().is_none(), "nothing of it to commit");
}

#[test]
#[should_panic(expected = "illegal transition Created -> Failed")]
fn an_illegal_transition_is_a_loud_bug() {
    task(1).fail("x".into());
}

#[test]
fn nothing_reaches_the_store_before_the_offsets_commit() {
    let root = tempfile::tempdir().unwrap();
    let (mut state, _) = window_state(root.path());
    let mut out = Vec::new();
    state.aggregate("m1", 0, 2.0, &mut out).unwrap();
    state.aggregate("m1", 0, 3.0, &mut out).unwrap();
    let writes = state.prepare_commit(&mut out).to_vec();
    assert_eq!(writes.len(), 1, "each changed entry once: {writes:?}");
    assert_eq!(stored(&state, "m1"), None, "prepared, not applied");
    // The commit step succeeded: the writes reach the store and the checkpoint moves.
    assert!(state.post_commit(Some(1), 10, || {}).unwrap());
    assert_eq!(stored(&state, "m1"), Some(5.0));
    let cp = Checkpoint::read(&state.local.dir.checkpoint_path()).unwrap();
    assert_eq!((cp.changelog_offsets["agg"], cp.input_offset), (1, 10));
    // Nothing changed since: no write, no checkpoint.
    state.prepare_commit(&mut out);
    assert!(!state.post_commit(Some(1), 10, || {}).unwrap());
}

#[test]
fn the_checkpoint_is_written_after_the_store_is_durable() {
    let root = tempfile::tempdir().unwrap();
    let (mut state, _) = window_state(root.path());
    state.aggregate("m1", 0, 1.0, &mut Vec::new()).unwrap();
    state.prepare_commit(&mut Vec::new());
    let path = state.local.dir.checkpoint_path();
    state
        .post_commit(Some(1), 1, || {
            assert!(!path.exists(), "no checkpoint before the store is synced");
        })
        .unwrap();
    assert!(path.exists());
}

#[test]
fn an_aborted_cycle_forgets_its_state_and_the_committed_one_stays() {
    let root = tempfile::tempdir().unwrap();
    let (mut state, calls) = window_state(root.path());
    let mut out = Vec::new();
    state.aggregate("m1", 0, 1.0, &mut out).unwrap();
    state.prepare_commit(&mut out);
    state.post_commit(Some(1), 1, || {}).unwrap();
    // The next cycle is aborted after its writes went to the changelog.
    state.aggregate("m1", 0, 100.0, &mut out).unwrap();
    assert_eq!(state.prepare_commit(&mut out).len(), 1);
    state.discard_uncommitted().unwrap();
    assert_eq!(calls.lock().unwrap().discarded, 1);
    assert!(state.pending().is_empty());
    assert_eq!(stored(&state, "m1"), Some(1.0), "the committed value");
    // The records are processed again from the committed offsets: counted once.
    state.aggregate("m1", 0, 100.0, &mut out).unwrap();
    state.prepare_commit(&mut out);
    state.post_commit(Some(3), 2, || {}).unwrap();
    assert_eq!(stored(&state, "m1"), Some(101.0));
}

#[test]
fn checkpoints_never_go_backwards_whatever_the_delivery_reports_say() {
    let root = tempfile::tempdir().unwrap();
    let (mut state, _) = window_state(root.path());
    state.aggregate("m1", 0, 1.0, &mut Vec::new()).unwrap();
    state.prepare_commit(&mut Vec::new());
    state.post_commit(Some(40), 100, || {}).unwrap();
    // Reports of an earlier owner in this process (the partition came back), an older input
    // offset: the checkpoint keeps what it knew.
    state.aggregate("m2", 0, 1.0, &mut Vec::new()).unwrap();
    state.prepare_commit(&mut Vec::new());
    state.post_commit(Some(7), 50, || {}).unwrap();
    let cp = state.local.checkpoint().unwrap();
    assert_eq!((cp.changelog_offsets["agg"], cp.input_offset), (40, 100));
    state.post_commit(None, 0, || {}).unwrap();
    assert_eq!(state.local.changelog_next(), 40);
}

#[test]
fn offsets_to_commit_are_those_past_the_last_commit() {
    let mut o = Offsets::default();
    o.committed.insert("a".into(), 5);
    assert_eq!(
        o.next("a"),
        Some(5),
        "nothing processed: the committed offset"
    );
    o.advance("a", 5);
    o.advance("b", 0);
    assert_eq!(o.uncommitted().collect::<Vec<_>>(), [("a", 6), ("b", 1)]);
    o.committed.insert("a".into(), 6);
    assert_eq!(o.uncommitted().collect::<Vec<_>>(), [("b", 1)]);
}

#[test]
fn caught_up_only_at_the_end_of_the_partition() {
    assert!(caught_up(None, 0, None), "an empty partition");
    assert!(caught_up(Some(100), 100, None));
    // A backlog: records the consumer has not fetched, or fetched and not handed over.
    assert!(!caught_up(Some(40), 100, Some((60, 0))));
    assert!(!caught_up(Some(40), 100, Some((100, 3))));
    assert!(
        !caught_up(Some(40), 100, None),
        "no fetch position known: behind"
    );
    // Only a commit marker (or an aborted transaction) after the last record processed.
    assert!(caught_up(Some(99), 100, Some((100, 0))));
}
