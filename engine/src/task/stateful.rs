//! A running task's window state and its commit discipline. Between commits, state changes live
//! in the operator's cache; a commit cycle takes each changed entry once (`prepare_commit`: they
//! go to the changelog, and wait in `pending`); only once the cycle's offsets are committed are
//! they applied to the store and the checkpoint moved (`post_commit`); an aborted cycle forgets
//! them (`discard_uncommitted`), so the store never holds state whose input offsets were not
//! committed, and a checkpoint never goes backwards.

use crate::repartition::Seen;
use std::time::Instant;
use weir_operators::{Emit, WindowAggregate};
use weir_state::{CheckpointFailure, LocalState, StoreError, WriteOp};

pub struct WindowState {
    pub local: LocalState,
    pub agg: Box<dyn WindowAggregate>,
    /// Second hop of a `key_by` job: the source offsets applied (see `repartition.rs`).
    pub seen: Seen,
    /// State writes produced to the changelog, applied to the store after the commit.
    pending: Vec<WriteOp>,
    pub last_checkpoint_at: Instant,
}

impl WindowState {
    /// A restored store with its operator opened over it.
    pub fn new(
        local: LocalState,
        agg: Box<dyn WindowAggregate>,
    ) -> Result<WindowState, StoreError> {
        let seen = Seen::load(&local.store)?;
        Ok(WindowState {
            local,
            agg,
            seen,
            pending: Vec::new(),
            last_checkpoint_at: Instant::now(),
        })
    }

    /// Adds a record to the window state; false when it was late. Results due go to `out`.
    pub fn aggregate(
        &mut self,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError> {
        self.agg.process(&self.local.store, key, ts, value, out)
    }

    /// The first step of a commit: every entry changed since the last cycle, once (on_update
    /// results go to `out`). They are returned for the changelog and kept until `post_commit`.
    pub fn prepare_commit(&mut self, out: &mut Vec<Emit>) -> &[WriteOp] {
        let start = self.pending.len();
        self.pending.extend(self.agg.take_dirty(out));
        // The second hop's de-duplication state goes with the window state it guards.
        self.pending.extend(self.seen.take_dirty());
        &self.pending[start..]
    }

    /// After the cycle's offsets committed: the pending writes reach the store, the store is made
    /// durable, and the checkpoint moves to `changelog_next` with `input_offset`. False when
    /// nothing had changed (no write, no checkpoint).
    pub fn post_commit(
        &mut self,
        changelog_next: Option<i64>,
        input_offset: i64,
        before_checkpoint: impl FnOnce(),
    ) -> Result<bool, CheckpointFailure> {
        let next = changelog_next.unwrap_or(0).max(self.local.changelog_next());
        if self.local.unchanged(&self.pending, next) {
            return Ok(false);
        }
        let pending = std::mem::take(&mut self.pending);
        self.local
            .write(&pending)
            .map_err(CheckpointFailure::Store)?;
        self.local
            .checkpoint_at(next, input_offset, before_checkpoint)?;
        self.last_checkpoint_at = Instant::now();
        Ok(true)
    }

    /// After an aborted cycle: every change not committed is forgotten, the operator's view goes
    /// back to the store's.
    pub fn discard_uncommitted(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.agg.discard_uncommitted(&self.local.store)?;
        self.seen = Seen::load(&self.local.store)?;
        Ok(())
    }

    /// Wall-clock idle close: every open window closes now.
    pub fn close_all(&mut self, out: &mut Vec<Emit>) -> Result<(), StoreError> {
        self.agg.close_all(&self.local.store, out)
    }

    /// The next batch of windows that closed but did not fit in the last cycle; true when more
    /// remain after it.
    pub fn continue_closing(&mut self, out: &mut Vec<Emit>) -> Result<bool, StoreError> {
        if !self.agg.close_pending() {
            return Ok(false);
        }
        self.agg.close_due(&self.local.store, out)?;
        Ok(self.agg.close_pending())
    }

    #[cfg(test)]
    pub fn pending(&self) -> &[WriteOp] {
        &self.pending
    }
}
