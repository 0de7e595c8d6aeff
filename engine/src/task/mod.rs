//! A task: one input partition (of every co-partitioned input topic), its local state and its
//! lifecycle. What a task holds depends on where it is in its lifecycle, so the phase carries it:
//! a restoring task has its opened store and restore progress, a running one its window state (for
//! a stateful job), a failed one its reason. Phases change only through the verbs below, each of
//! which checks the edge.
//!
//! ```text
//! Created -> Restoring -> Running -> Suspended -> Closed
//!     \           \           \-> Failed (bad record, policy `fail`; store failed) -> Suspended
//!      \           \-> Failed (state that does not decode) / Suspended (revoked while restoring)
//!       \-> Running (stateless job) / Closed
//! ```
//!
//! # Layout
//! - `mod.rs`: the task, its phases and lifecycle verbs;
//! - `stateful.rs`: a running task's window state and its commit discipline (prepare: take the
//!   dirty entries; post-commit: apply them and move the checkpoint; abort: forget them);
//! - `restore.rs`: a restoring task's progress and what it does with changelog records;
//! - `tests.rs`: the lifecycle and the commit discipline, without Kafka.

mod restore;
mod stateful;
#[cfg(test)]
mod tests;

pub use restore::{Replayed, Restoring};
pub use stateful::WindowState;

use crate::metrics::TaskCounters;
use std::collections::BTreeMap;
use std::time::Instant;

/// The phase of a task without its data: for metrics (`weir_task_state`), health and logs.
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

/// A running (or failed, still committing what it did before) task's processing state.
pub struct Active {
    /// The window state of a stateful job; none for a stateless one.
    pub state: Option<WindowState>,
}

enum Phase {
    Created,
    Restoring(Box<Restoring>),
    Running(Active),
    /// The reason (content-free: `/readyz` shows it); what the task did before it failed is still
    /// committed, so it keeps its state.
    Failed(String, Option<Active>),
    Suspended,
    Closed,
}

impl Phase {
    fn kind(&self) -> TaskState {
        match self {
            Phase::Created => TaskState::Created,
            Phase::Restoring(_) => TaskState::Restoring,
            Phase::Running(_) => TaskState::Running,
            Phase::Failed(..) => TaskState::Failed,
            Phase::Suspended => TaskState::Suspended,
            Phase::Closed => TaskState::Closed,
        }
    }
}

/// Where a task is in its input: what it processed, what the group committed.
#[derive(Debug, Default)]
pub struct Offsets {
    /// Input topic -> next offset to process. Advanced as records are processed.
    pub positions: BTreeMap<String, i64>,
    /// Input topic -> the offset last committed.
    pub committed: BTreeMap<String, i64>,
}

impl Offsets {
    /// Where input of `topic` resumes: its committed offset, or the beginning without one.
    pub fn resume_at(&self, topic: &str) -> rdkafka::Offset {
        self.committed
            .get(topic)
            .map_or(rdkafka::Offset::Beginning, |o| rdkafka::Offset::Offset(*o))
    }

    /// Offsets to commit: every input topic whose position moved past the last commit.
    pub fn uncommitted(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        self.positions
            .iter()
            .filter(|(t, off)| self.committed.get(*t).is_none_or(|c| c < off))
            .map(|(t, off)| (t.as_str(), *off))
    }

    /// Where input resumes for `topic`: the next offset to process, else the committed one.
    pub fn next(&self, topic: &str) -> Option<i64> {
        self.positions
            .get(topic)
            .or_else(|| self.committed.get(topic))
            .copied()
    }

    /// Records that `record_offset` of `topic` was processed.
    pub fn advance(&mut self, topic: &str, record_offset: i64) {
        match self.positions.get_mut(topic) {
            Some(next) => *next = record_offset + 1,
            None => {
                self.positions.insert(topic.to_string(), record_offset + 1);
            }
        }
    }
}

pub struct Task {
    pub partition: i32,
    /// The input topics of this partition (co-partitioned inputs share a task).
    pub topics: Vec<String>,
    pub offsets: Offsets,
    /// The start of the task's silence, for the idle close: its last record, or the last time it
    /// was seen cut off from a partition leader.
    pub last_record_at: Instant,
    /// Records fetched again below the position already processed (skipped).
    pub redelivered: u64,
    pub counters: TaskCounters,
    phase: Phase,
}

impl Task {
    pub fn new(partition: i32, counters: TaskCounters) -> Task {
        Task {
            partition,
            topics: Vec::new(),
            offsets: Offsets::default(),
            last_record_at: Instant::now(),
            redelivered: 0,
            counters,
            phase: Phase::Created,
        }
    }

    pub fn state(&self) -> TaskState {
        self.phase.kind()
    }

    /// Why the task failed (content-free), if it did.
    pub fn failure(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed(why, _) => Some(why),
            _ => None,
        }
    }

    fn go(&mut self, next: Phase) -> Phase {
        let (from, to) = (self.phase.kind(), next.kind());
        assert!(
            from.may_become(to),
            "task {}: illegal transition {from:?} -> {to:?}",
            self.partition
        );
        tracing::debug!(partition = self.partition, ?from, ?to, "task state");
        std::mem::replace(&mut self.phase, next)
    }

    /// Created -> Restoring: the store is open and its restore decided.
    pub fn begin_restore(&mut self, restoring: Restoring) {
        self.go(Phase::Restoring(Box::new(restoring)));
    }

    /// Created or Restoring -> Running.
    pub fn run(&mut self, active: Active) {
        self.last_record_at = Instant::now();
        self.go(Phase::Running(active));
    }

    /// Restoring or Running -> Failed, keeping a running task's state for the commits to come.
    pub fn fail(&mut self, reason: String) {
        let active = match &mut self.phase {
            Phase::Running(a) => Some(std::mem::replace(a, Active { state: None })),
            _ => None,
        };
        self.go(Phase::Failed(reason, active));
    }

    /// Stops processing (revoked, rejoining, shutting down): the state is dropped (its store
    /// closed, its directory unlocked); Suspended -> Closed follows.
    pub fn suspend(&mut self) {
        if self.state() != TaskState::Created {
            self.go(Phase::Suspended);
        }
    }

    pub fn close(&mut self) {
        self.suspend();
        self.go(Phase::Closed);
    }

    pub fn restoring(&self) -> Option<&Restoring> {
        match &self.phase {
            Phase::Restoring(r) => Some(r),
            _ => None,
        }
    }

    /// A restoring task's progress, with the group's committed offsets its replay checks.
    pub fn restoring_mut(&mut self) -> Option<(&mut Restoring, &BTreeMap<String, i64>)> {
        match &mut self.phase {
            Phase::Restoring(r) => Some((r, &self.offsets.committed)),
            _ => None,
        }
    }

    /// Restoring -> Running or Failed: `finish` turns the restored state into what the task runs
    /// with, or says why it cannot run. An error stops the worker; the task is left Suspended.
    pub fn complete_restoration<E>(
        &mut self,
        finish: impl FnOnce(Restoring) -> Result<Result<Active, String>, E>,
    ) -> Result<(), E> {
        let Phase::Restoring(restoring) = std::mem::replace(&mut self.phase, Phase::Suspended)
        else {
            panic!(
                "task {}: completing a restoration it is not in",
                self.partition
            );
        };
        self.phase = match finish(*restoring)? {
            Ok(active) => {
                self.last_record_at = Instant::now();
                Phase::Running(active)
            }
            Err(why) => Phase::Failed(why, None),
        };
        tracing::debug!(partition = self.partition, to = ?self.state(), "task state");
        Ok(())
    }

    /// The processing state of a running task.
    pub fn running(&mut self) -> Option<&mut Active> {
        match &mut self.phase {
            Phase::Running(a) => Some(a),
            _ => None,
        }
    }

    /// The state a commit cycle covers: running tasks' and failed ones' (what they did before).
    pub fn committing(&mut self) -> Option<&mut Active> {
        match &mut self.phase {
            Phase::Running(a) | Phase::Failed(_, Some(a)) => Some(a),
            _ => None,
        }
    }

    /// The task's local state, whatever its phase holds.
    pub fn local(&self) -> Option<&weir_state::LocalState> {
        match &self.phase {
            Phase::Restoring(r) => Some(&r.local),
            _ => self.window_state().map(|w| &w.local),
        }
    }

    /// The window state of a running or failed task, if the job is stateful.
    pub fn window_state(&self) -> Option<&WindowState> {
        match &self.phase {
            Phase::Running(a) | Phase::Failed(_, Some(a)) => a.state.as_ref(),
            _ => None,
        }
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
