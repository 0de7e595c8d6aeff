//! Bounded closing, shared by time windows and sessions: both keep what must close as a prefix
//! range of the store (`0x01 | time | key`), and an hour boundary over millions of keys closes
//! millions of entries at once. One commit cycle closes at most a batch of them, in key order from
//! a cursor; below the cursor everything is closed already (deleted, or a tombstone in the cache
//! until the commit), and nothing below the limit can open again.

use crate::window::start_prefix;
use crate::StoreAccess;
use weir_state::{Entries, StoreError};

/// Entries closed per commit cycle: their results and tombstones wait in memory for the commit
/// (a few hundred bytes each), and one transaction carries them.
pub const CLOSE_BATCH: usize = 20_000;

/// The closing pass of one operator: how much this cycle closed, and where the pass goes on.
#[derive(Debug)]
pub struct Closing {
    closed_this_cycle: usize,
    batch: usize,
    cursor: Option<Vec<u8>>,
}

/// One batch: the stored entries in `[from, upto)` (the caller overlays its cache on that range).
pub struct Batch {
    pub stored: Entries,
    pub from: Vec<u8>,
    pub upto: Vec<u8>,
}

impl Batch {
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.from[..] && key < &self.upto[..]
    }
}

impl Default for Closing {
    fn default() -> Self {
        Closing {
            closed_this_cycle: 0,
            batch: CLOSE_BATCH,
            cursor: None,
        }
    }
}

impl Closing {
    pub fn set_batch(&mut self, entries: usize) {
        self.batch = entries.max(1);
    }

    /// This cycle's batch is spent: the rest waits for the commit.
    pub fn spent(&self) -> bool {
        self.closed_this_cycle >= self.batch
    }

    /// The next batch below `limit_key`: at most what is left of this cycle's budget.
    pub fn next(&mut self, store: &dyn StoreAccess, limit_key: &[u8]) -> Result<Batch, StoreError> {
        let from = self
            .cursor
            .take()
            .unwrap_or_else(|| start_prefix(i64::MIN).to_vec());
        let budget = self.batch - self.closed_this_cycle;
        let stored = store.scan(&from, limit_key, budget)?;
        // Up to the limit, or just past the last key read when the budget ran out.
        let upto = match stored.last() {
            Some((k, _)) if stored.len() == budget => {
                let mut next = k.clone();
                next.push(0);
                next
            }
            _ => limit_key.to_vec(),
        };
        Ok(Batch { stored, from, upto })
    }

    /// `closed` entries of `batch` were closed. True when the pass reached `limit_key`; otherwise it
    /// goes on from the batch's end after the commit.
    pub fn done(&mut self, batch: Batch, closed: usize, limit_key: &[u8]) -> bool {
        self.closed_this_cycle += closed;
        if batch.upto[..] == limit_key[..] {
            return true;
        }
        self.cursor = Some(batch.upto);
        false
    }

    /// At commit: a new cycle's budget.
    pub fn committed(&mut self) {
        self.closed_this_cycle = 0;
    }

    /// Uncommitted work forgotten: the pass starts again from the store.
    pub fn reset(&mut self) {
        self.closed_this_cycle = 0;
        self.cursor = None;
    }
}
