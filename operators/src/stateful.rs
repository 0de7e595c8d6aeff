//! The stateful operator as the engine drives it, through a task's lifecycle. Its state lives in
//! the task's store (committed) and in the operator (what changed since the last commit); the
//! engine owns the store and the commit, the operator says what to write.
//!
//! | lifecycle step | hook |
//! |---|---|
//! | a record | [`process`](StatefulOperator::process) |
//! | tick: the task was idle for `close_idle_after` | [`close_all`](StatefulOperator::close_all) |
//! | prepare commit: the cycle's writes and `on_update` results | [`take_dirty`](StatefulOperator::take_dirty) |
//! | post commit: closing goes on, a bounded batch per cycle | [`close_pending`](StatefulOperator::close_pending), [`close_due`](StatefulOperator::close_due) |
//! | abort: the cycle's work is not committed | [`discard_uncommitted`](StatefulOperator::discard_uncommitted) |
//! | close: the task is revoked or the worker stops | the operator is dropped: what it holds uncommitted is what an abort forgets, and the store keeps the rest |

use crate::{Emit, StoreAccess};
use weir_state::{StoreError, WriteOp};

/// A stateful operator (time windows or sessions) as the engine drives it.
pub trait StatefulOperator: Send {
    /// A record: added to its windows; false when it was late (dropped). Results due now go to
    /// `out`.
    fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError>;
    /// Tick (wall-clock idle close): every open window closes now, and later records for them are
    /// late (never a second result per window).
    fn close_all(&mut self, store: &dyn StoreAccess, out: &mut Vec<Emit>)
        -> Result<(), StoreError>;
    /// After a commit: true while windows that have closed wait to be emitted (a cycle closes a
    /// bounded number, so that memory stays bounded when millions close at once).
    fn close_pending(&self) -> bool;
    /// After a commit: closes the next batch of pending windows.
    fn close_due(&mut self, store: &dyn StoreAccess, out: &mut Vec<Emit>)
        -> Result<(), StoreError>;
    /// Prepare commit: the cycle's writes (changelog and store), each changed entry once, in key
    /// order; `on_update` results into `out`.
    fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<WriteOp>;
    /// Abort: forgets every change not yet committed (the store holds the committed state).
    fn discard_uncommitted(&mut self, store: &dyn StoreAccess) -> Result<(), StoreError>;
    /// Records dropped because every window they belong to had closed.
    fn late_records(&self) -> u64;
}
