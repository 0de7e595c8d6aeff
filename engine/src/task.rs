//! A task: one input partition (of every co-partitioned input topic), its local store and its
//! lifecycle. The lifecycle is an explicit state machine, changed only through [`Task::transition`].
//!
//! ```text
//! Created -> Restoring -> Running -> Suspended -> Closed
//!                 \           \-> Failed (bad record, policy `fail`) -> Suspended -> Closed
//!                  \-> Suspended (revoked while restoring)
//! ```

use crate::metrics::TaskCounters;
use std::collections::BTreeMap;
use std::time::Instant;
use weir_operators::WindowAggregate;
use weir_state::{Checkpoint, Store, TaskDir, WriteOp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Created,
    Restoring,
    Running,
    Suspended,
    Closed,
    Failed,
}

impl TaskState {
    pub fn code(self) -> i64 {
        match self {
            TaskState::Created => 0,
            TaskState::Restoring => 1,
            TaskState::Running => 2,
            TaskState::Suspended => 3,
            TaskState::Closed => 4,
            TaskState::Failed => 5,
        }
    }

    fn may_become(self, next: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Created, Restoring)
                | (Created, Running)
                | (Restoring, Running)
                | (Restoring, Suspended)
                | (Restoring, Failed)
                | (Running, Failed)
                | (Running, Suspended)
                | (Failed, Suspended)
                | (Suspended, Closed)
                | (Created, Closed)
        )
    }
}

/// Restore bookkeeping of a task in `Restoring`.
pub struct Restore {
    /// Next changelog offset to read.
    pub position: i64,
    /// Changelog end (last stable offset) when the restore started.
    pub end: i64,
    pub done: u64,
    /// Records read but not applied: written by a commit cycle whose offsets never committed.
    pub skipped: u64,
    pub batch: Vec<WriteOp>,
    pub started: Instant,
    pub wiped: bool,
    /// Keys whose latest changelog value does not decode (a later value or tombstone of the key
    /// takes it off): state the restore cannot rebuild.
    pub undecodable: std::collections::BTreeSet<Vec<u8>>,
}

pub struct Task {
    pub partition: i32,
    state: TaskState,
    /// The input topics of this partition (co-partitioned inputs share a task).
    pub topics: Vec<String>,
    /// Input topic -> next offset to process. Advanced as records are processed.
    pub positions: BTreeMap<String, i64>,
    /// Input topic -> the offset last committed.
    pub committed: BTreeMap<String, i64>,
    pub dir: Option<TaskDir>,
    pub store: Option<Store>,
    pub agg: Option<Box<dyn WindowAggregate>>,
    pub checkpoint: Option<Checkpoint>,
    /// Next changelog offset the local state will match once pending writes are applied.
    pub changelog_next: Option<i64>,
    /// State writes produced to the changelog, applied to the store after the commit.
    pub pending: Vec<WriteOp>,
    pub restore: Option<Restore>,
    /// The start of the task's silence, for the idle close: its last record, or the last time it
    /// was seen cut off from a partition leader.
    pub last_record_at: Instant,
    pub last_checkpoint_at: Instant,
    pub failure: Option<String>,
    /// Records fetched again below the position already processed (skipped).
    pub redelivered: u64,
    /// Second hop of a `key_by` job: the source offsets applied (see `repartition.rs`).
    pub seen: crate::repartition::Seen,
    pub counters: TaskCounters,
}

impl Task {
    pub fn new(partition: i32, counters: TaskCounters) -> Task {
        Task {
            partition,
            state: TaskState::Created,
            topics: Vec::new(),
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            dir: None,
            store: None,
            agg: None,
            checkpoint: None,
            changelog_next: None,
            pending: Vec::new(),
            restore: None,
            last_record_at: Instant::now(),
            last_checkpoint_at: Instant::now(),
            failure: None,
            redelivered: 0,
            seen: Default::default(),
            counters,
        }
    }

    pub fn state(&self) -> TaskState {
        self.state
    }

    /// Moves to `next`; an illegal move is a bug in the worker and panics with both states named.
    pub fn transition(&mut self, next: TaskState) {
        assert!(
            self.state.may_become(next),
            "task {}: illegal transition {:?} -> {:?}",
            self.partition,
            self.state,
            next
        );
        tracing::debug!(partition = self.partition, from = ?self.state, to = ?next, "task state");
        self.state = next;
    }

    /// Offsets to commit: every input topic whose position moved past the last commit.
    pub fn uncommitted(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        self.positions
            .iter()
            .filter(|(t, off)| self.committed.get(*t).is_none_or(|c| c < off))
            .map(|(t, off)| (t.as_str(), *off))
    }
}

/// Whether a task has read an input partition to its end, for the idle close: `next` is the next
/// offset it would process, `end` the partition's end as its leader says now, `fetched` the
/// consumer's fetch position and the records fetched but not yet handed over. Between `next` and
/// `end` there may be only transaction markers and aborted records, which are never handed over:
/// then the fetch position is at the end with nothing waiting.
pub fn caught_up(next: Option<i64>, end: i64, fetched: Option<(i64, i64)>) -> bool {
    end == 0
        || next.is_some_and(|n| n >= end)
        || fetched.is_some_and(|(position, waiting)| position >= end && waiting == 0)
}

#[cfg(test)]
mod tests {
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

    use super::*;

    #[test]
    fn the_lifecycle_allows_only_its_edges() {
        let mut t = Task::new(0, crate::metrics::Metrics::new("t").task_counters(0));
        t.transition(TaskState::Restoring);
        t.transition(TaskState::Running);
        t.transition(TaskState::Suspended);
        t.transition(TaskState::Closed);
        assert!(!TaskState::Closed.may_become(TaskState::Running));
        assert!(!TaskState::Running.may_become(TaskState::Restoring));
    }

    #[test]
    #[should_panic(expected = "illegal transition Created -> Failed")]
    fn an_illegal_transition_is_a_loud_bug() {
        Task::new(1, crate::metrics::Metrics::new("t").task_counters(1))
            .transition(TaskState::Failed);
    }
}
