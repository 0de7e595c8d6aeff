//! A task's local state from opening to checkpoint: the one place that decides, when a task
//! arrives, whether its store can be trusted ("restore the changelog's tail from offset N") or not
//! ("wiped: replay everything"), and the one place that builds and moves its checkpoint.
//!
//! The store is untrusted, and wiped, when the checkpoint is missing, unreadable, of another format
//! version or for another store; when RocksDB itself cannot open it (damaged files); and when the
//! checkpoint is ahead of the changelog's end (the topic was deleted and made again). An empty
//! store without a checkpoint needs no wipe: it restores everything from the start anyway.

use crate::{
    Checkpoint, CheckpointError, ReplayBatch, SharedResources, Store, StoreError, TaskDir, WriteOp,
};
use std::time::Duration;

/// Why a task's local state could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// RocksDB could not open the store for a reason that passes (a lock still held by the task's
    /// previous owner in this process, too many open files): try the assignment again later.
    Transient(StoreError),
    /// The store could not be wiped or made again.
    Store(StoreError),
    /// The damaged checkpoint could not be removed.
    Checkpoint(std::io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Transient(e) => write!(f, "the store cannot be opened now: {e}"),
            OpenError::Store(e) => write!(f, "{e}"),
            OpenError::Checkpoint(e) => write!(f, "removing the checkpoint: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        OpenError::Store(e)
    }
}

/// Where a task's restore starts, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The store matches the checkpoint: only the changelog after it is read.
    Tail(i64),
    /// Nothing local is trusted: every record of the changelog from its start (`low`) is read.
    /// `wiped` says whether local data was thrown away (counted as a wipe).
    Everything { low: i64, wiped: bool, why: String },
}

impl RestoreFrom {
    pub fn offset(&self) -> i64 {
        match self {
            RestoreFrom::Tail(from) => *from,
            RestoreFrom::Everything { low, .. } => *low,
        }
    }

    pub fn wiped(&self) -> bool {
        matches!(self, RestoreFrom::Everything { wiped: true, .. })
    }
}

/// A task's open store, its directory (locked) and its checkpoint.
pub struct LocalState {
    pub dir: TaskDir,
    pub store: Store,
    store_name: String,
    checkpoint: Option<Checkpoint>,
    /// The changelog offset the store matches once pending writes are applied.
    changelog_next: i64,
    /// Replayed records were written without the WAL since the last checkpoint.
    unlogged: bool,
}

/// Opens a task's store, asking again a few times while the error is transient.
fn open_store(dir: &TaskDir, resources: &SharedResources) -> Result<Store, StoreError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..5 {
        match Store::open(&dir.db_path(), resources) {
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    "opening {}: {e}; trying again in {wait:?}",
                    dir.db_path().display()
                );
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    Store::open(&dir.db_path(), resources)
}

impl LocalState {
    /// Opens the state of the task whose directory is `dir`, for a changelog whose partition now
    /// spans `low..high`, and decides where its restore starts. A store that cannot be trusted is
    /// wiped here (and its checkpoint removed), so that what is returned is always consistent.
    pub fn open(
        dir: TaskDir,
        store_name: &str,
        resources: &SharedResources,
        (low, high): (i64, i64),
    ) -> Result<(LocalState, RestoreFrom), OpenError> {
        let (store, damaged) = match open_store(&dir, resources) {
            Ok(s) => (s, None),
            Err(e) if e.is_transient() => return Err(OpenError::Transient(e)),
            Err(e) => {
                Store::destroy(&dir.db_path())?;
                Checkpoint::delete(&dir.checkpoint_path()).map_err(OpenError::Checkpoint)?;
                (
                    Store::open(&dir.db_path(), resources)?,
                    Some(format!("the local store cannot be opened ({e})")),
                )
            }
        };
        let read = Checkpoint::read(&dir.checkpoint_path());
        let (mut store, mut from, mut checkpoint) = match (read, damaged) {
            (_, Some(why)) => {
                let from = RestoreFrom::Everything {
                    low,
                    wiped: true,
                    why,
                };
                (store, from, None)
            }
            (Ok(cp), None) if cp.changelog_offsets.contains_key(store_name) => {
                let from = RestoreFrom::Tail(cp.changelog_offsets[store_name].max(low));
                (store, from, Some(cp))
            }
            (other, None) => {
                let why = match other {
                    Err(CheckpointError::Missing) => "no checkpoint".to_string(),
                    Err(e) => e.to_string(),
                    Ok(_) => "the checkpoint has no offset for this store".into(),
                };
                let wiped = !store.is_empty();
                let store = if wiped { store.wipe(resources)? } else { store };
                (store, RestoreFrom::Everything { low, wiped, why }, None)
            }
        };
        if let RestoreFrom::Tail(at) = from {
            if at > high {
                // The store holds state of a changelog that is gone; a restore from the
                // checkpoint's offset would skip the new topic's first records.
                Checkpoint::delete(&dir.checkpoint_path()).map_err(OpenError::Checkpoint)?;
                store = store.wipe(resources)?;
                checkpoint = None;
                from = RestoreFrom::Everything {
                    low,
                    wiped: true,
                    why: format!(
                        "the checkpoint is at {at} of a changelog that ends at {high}: the changelog was recreated"
                    ),
                };
            }
        }
        let state = LocalState {
            dir,
            store,
            store_name: store_name.to_string(),
            checkpoint,
            changelog_next: from.offset(),
            unlogged: false,
        };
        Ok((state, from))
    }

    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    pub fn changelog_next(&self) -> i64 {
        self.changelog_next
    }

    /// Writes state entries to the store (a commit's pending writes, a restore's batch).
    pub fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        self.store
            .write(ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    /// Writes a restore's replayed changelog records (without the WAL; the next checkpoint
    /// flushes them to SST files first).
    pub fn write_replayed(&mut self, batch: &mut ReplayBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.unlogged = true;
        self.store.write_replayed(batch)
    }

    /// True when nothing changed since the last checkpoint: no writes and the same changelog end.
    pub fn unchanged(&self, pending: &[WriteOp], changelog_next: i64) -> bool {
        pending.is_empty() && changelog_next <= self.changelog_next && self.checkpoint.is_some()
    }

    /// Makes the store durable and moves the checkpoint to `changelog_next` (never backwards: a
    /// lower figure, e.g. delivery reports older than this task, keeps the one already known),
    /// recording the highest input offset committed with it.
    pub fn checkpoint_at(
        &mut self,
        changelog_next: i64,
        input_offset: i64,
        before_write: impl FnOnce(),
    ) -> Result<(), CheckpointFailure> {
        if self.unlogged {
            self.store.flush().map_err(CheckpointFailure::Store)?;
            self.unlogged = false;
        }
        self.store.sync().map_err(CheckpointFailure::Store)?;
        before_write();
        let next = changelog_next.max(self.changelog_next);
        let previous = self.checkpoint.as_ref();
        let cp = Checkpoint {
            changelog_offsets: [(self.store_name.clone(), next)].into(),
            input_offset: input_offset.max(previous.map_or(0, |c| c.input_offset)),
        };
        cp.write(&self.dir.checkpoint_path(), previous)
            .map_err(CheckpointFailure::Checkpoint)?;
        self.checkpoint = Some(cp);
        self.changelog_next = next;
        Ok(())
    }

    /// Damaged state found while running: without a checkpoint the next assignment wipes the
    /// store and restores it from the changelog.
    pub fn distrust(&mut self) -> std::io::Result<()> {
        self.checkpoint = None;
        Checkpoint::delete(&self.dir.checkpoint_path())
    }
}

/// Why a checkpoint could not be moved.
#[derive(Debug)]
pub enum CheckpointFailure {
    Store(StoreError),
    Checkpoint(CheckpointError),
}

impl std::fmt::Display for CheckpointFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointFailure::Store(e) => write!(f, "syncing the store: {e}"),
            CheckpointFailure::Checkpoint(e) => write!(f, "writing the checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointFailure {}

#[cfg(test)]
mod tests;
