//! A restoring task: its opened store and how far the changelog replay has come. Records of
//! commit cycles whose offsets never committed are skipped; a key whose latest value does not
//! decode is remembered (a later value or tombstone of the key takes it off). Replayed records go
//! straight into a RocksDB batch written without the WAL; the restore's checkpoint flushes them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use weir_config::WindowKind;
use weir_state::{written_by_committed_cycle, LocalState, ReplayBatch, StoreError};

/// Records applied to the store in one write while restoring.
const RESTORE_BATCH: usize = 10_000;

pub struct Restoring {
    pub local: LocalState,
    /// Next changelog offset to read.
    pub position: i64,
    /// Changelog end (high watermark) when the restore started.
    pub end: i64,
    pub done: u64,
    /// Records read but not applied: written by a commit cycle whose offsets never committed.
    pub skipped: u64,
    batch: ReplayBatch,
    pub started: Instant,
    pub wiped: bool,
    /// Keys whose latest changelog value does not decode: state the restore cannot rebuild.
    pub undecodable: BTreeSet<Vec<u8>>,
}

/// What became of one changelog record.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    Applied,
    /// Written by a cycle that never committed.
    Skipped,
    /// The first key of the restore whose value does not decode (later ones are not reported).
    FirstUndecodable(StoreError),
    Undecodable,
}

impl Restoring {
    pub fn new(local: LocalState, from: i64, end: i64, wiped: bool) -> Restoring {
        Restoring {
            local,
            position: from,
            end,
            done: 0,
            skipped: 0,
            batch: ReplayBatch::default(),
            started: Instant::now(),
            wiped,
            undecodable: BTreeSet::new(),
        }
    }

    /// One changelog record at `offset`; `committed` is the group's committed input offsets.
    pub fn replay(
        &mut self,
        kind: WindowKind,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
        offsets_header: Option<&[u8]>,
        committed: &BTreeMap<String, i64>,
    ) -> Replayed {
        self.done += 1;
        self.position = offset + 1;
        if !written_by_committed_cycle(offsets_header, committed) {
            self.skipped += 1;
            return Replayed::Skipped;
        }
        if let Some(v) = value {
            if let Err(e) = weir_operators::check_state_entry(kind, key, v) {
                let first = self.undecodable.is_empty();
                self.undecodable.insert(key.to_vec());
                return if first {
                    Replayed::FirstUndecodable(e)
                } else {
                    Replayed::Undecodable
                };
            }
        }
        if !self.undecodable.is_empty() {
            self.undecodable.remove(key);
        }
        match value {
            Some(v) => self.batch.put(key, v),
            None => self.batch.delete(key),
        }
        Replayed::Applied
    }

    pub fn finished(&self) -> bool {
        self.position >= self.end
    }

    pub fn remaining(&self) -> i64 {
        (self.end - self.position).max(0)
    }

    /// Writes the records replayed so far once a batch is full, or at the end.
    pub fn apply_batch(&mut self) -> Result<(), StoreError> {
        if self.batch.len() >= RESTORE_BATCH || (self.finished() && !self.batch.is_empty()) {
            self.local.write_replayed(&mut self.batch)?;
        }
        Ok(())
    }

    /// Seconds until the end at the rate so far (0 when nothing was read yet).
    pub fn seconds_to_ready(&self) -> f64 {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        if rate > 0.0 {
            self.remaining() as f64 / rate
        } else {
            0.0
        }
    }
}
