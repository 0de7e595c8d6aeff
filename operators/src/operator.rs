//! One operator discipline for time windows and sessions. Both keep their open entries in a
//! bounded [`DirtyCache`] in front of the task's store, measure what is open against one
//! [`StreamClock`], index what must close by time (`0x01 | time | key`, see `window.rs`) and
//! close it in bounded batches (`closing.rs`). [`WindowOperator`] is that discipline, and it is
//! the [`StatefulOperator`] the engine drives; a [`Windows`] says what differs: how a record
//! lands in its windows, what a batch of closing entries emits, and what a dirty entry writes.

use crate::cache::DirtyCache;
use crate::clock::StreamClock;
use crate::closing::{Batch, Closing};
use crate::formats::Encode;
use crate::results::Results;
use crate::window::{first_time_from, last_time, start_prefix};
use crate::{Emit, StatefulOperator, StoreAccess};
use std::hash::Hash;
use std::sync::Arc;
use weir_state::{StoreError, WriteOp};

/// The store and the results of one call.
pub struct Io<'a> {
    pub store: &'a dyn StoreAccess,
    pub out: &'a mut Vec<Emit>,
}

/// One record, as the aggregate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub key: &'a str,
    pub ts: i64,
    pub value: f64,
}

/// [`WindowOperator`], in the signatures of the [`Windows`] hooks.
pub type Op<W> = WindowOperator<W>;

/// What differs between time windows and sessions. Times are a window's start or a session's
/// end: what the time index of the store orders entries by.
pub trait Windows: Sized + Send + 'static {
    /// The cache's key.
    type Key: Eq + Hash + Clone + Send;
    /// A cached entry.
    type Entry: Send;
    /// About how much memory a cached entry takes (the cache's budget counts them).
    const ENTRY_BYTES: usize;

    /// True when the entry of this time is closed at stream time.
    fn closed(&self, clock: &StreamClock, time: i64) -> bool;
    /// One record: stream time, its windows, late or not (see [`StatefulOperator::process`]).
    fn add(op: &mut Op<Self>, io: Io<'_>, r: Reading<'_>) -> Result<bool, StoreError>;
    /// Closes what `batch` holds and the cache holds in its range (results into `io.out`, the
    /// entries deleted); returns how many it closed.
    fn close(op: &mut Op<Self>, io: Io<'_>, b: &mut Batch) -> Result<usize, StoreError>;
    /// The newest time of an open entry in the cache.
    fn newest_cached(op: &Op<Self>) -> Option<i64>;
    /// The oldest time of an open entry in the cache, at or after `from` (a store key).
    fn oldest_cached(op: &Op<Self>, from: &[u8]) -> Option<i64>;
    /// At commit: every dirty entry's writes, and the `on_update` results.
    fn commit(op: &mut Op<Self>, writes: &mut Vec<WriteOp>, out: &mut Vec<Emit>);
    /// A clean entry left the cache (over budget).
    fn evicted(&mut self, _key: &Self::Key, _entry: &Self::Entry) {}
    /// The cache was cleared (uncommitted work forgotten).
    fn forget(&mut self) {}
}

/// A windowed aggregation over a task's store: time windows or sessions.
pub struct WindowOperator<W: Windows> {
    pub(crate) windows: W,
    pub(crate) cache: DirtyCache<W::Key, W::Entry>,
    pub(crate) clock: StreamClock,
    pub(crate) results: Results,
    /// No open entry's time is before this one; `None` = nothing open.
    earliest: Option<i64>,
    pub(crate) late_records: u64,
    /// The bounded closing pass (see `closing.rs`).
    closing: Closing,
}

impl<W: Windows> WindowOperator<W> {
    /// Opens the operator over a (restored) store: stream time and the oldest open entry are read
    /// back. `span_ms`: the window size or the session gap.
    pub(crate) fn over(
        store: &dyn StoreAccess,
        windows: W,
        results: Results,
        cache_bytes: usize,
        (span_ms, grace_ms): (i64, i64),
    ) -> Result<Self, StoreError> {
        let clock = StreamClock::open(store, span_ms, grace_ms)?;
        Ok(WindowOperator {
            windows,
            cache: DirtyCache::new(cache_bytes, W::ENTRY_BYTES),
            clock,
            results,
            earliest: first_time_from(store, &start_prefix(i64::MIN))?,
            late_records: 0,
            closing: Closing::default(),
        })
    }

    /// Results in `encoder`'s format (JSON otherwise).
    pub fn with_encoder(mut self, encoder: Arc<dyn Encode>) -> Self {
        self.results.set_encoder(encoder);
        self
    }

    pub fn stream_time(&self) -> Option<i64> {
        self.clock.get()
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Sets the most entries one commit cycle closes (tests; the default suits production).
    pub fn set_close_batch(&mut self, entries: usize) {
        self.closing.set_batch(entries);
    }

    /// An entry of this time is open.
    pub(crate) fn opened(&mut self, time: i64) {
        self.earliest = Some(self.earliest.map_or(time, |e| e.min(time)));
    }
}

impl<W: Windows> StatefulOperator for WindowOperator<W> {
    fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError> {
        W::add(self, Io { store, out }, Reading { key, ts, value })
    }

    /// Moves stream time past the newest open entry (its time in the cache or the store: one key
    /// read) by span and grace.
    fn close_all(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if self.earliest.is_none() {
            return Ok(());
        }
        let newest_cache = W::newest_cached(self);
        if let Some(newest) = last_time(store)?.into_iter().chain(newest_cache).max() {
            self.clock.advance_past(newest);
        }
        self.close_due(store, out)
    }

    fn close_pending(&self) -> bool {
        self.earliest
            .is_some_and(|t| self.windows.closed(&self.clock, t))
    }

    /// Emits and deletes what stream time has closed, in the order of the time index, at most a
    /// batch per commit cycle: an hour boundary over millions of keys closes millions of windows
    /// at once, and their results, tombstones and changelog records are held in memory until the
    /// commit. What is left stays pending (records for it are already late, so waiting changes no
    /// result) and goes on after the commit, from its cursor (`closing.rs`).
    fn close_due(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if !self.close_pending() || self.closing.spent() {
            return Ok(());
        }
        let limit_key = start_prefix(self.clock.closed_before());
        let mut batch = self.closing.next(store, &limit_key)?;
        let closed = W::close(self, Io { store, out }, &mut batch)?;
        if !self.closing.done(batch, closed, &limit_key) {
            return Ok(());
        }
        let next_cache = W::oldest_cached(self, &limit_key);
        self.earliest = first_time_from(store, &limit_key)?
            .into_iter()
            .chain(next_cache)
            .min();
        Ok(())
    }

    /// Entries become clean; the cache is trimmed to its budget.
    fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<WriteOp> {
        self.closing.committed();
        let mut writes = Vec::new();
        W::commit(self, &mut writes, out);
        writes.extend(self.clock.take_write());
        let windows = &mut self.windows;
        self.cache.trim(|k, e| windows.evicted(k, e));
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        writes
    }

    fn discard_uncommitted(&mut self, store: &dyn StoreAccess) -> Result<(), StoreError> {
        self.cache.clear();
        self.windows.forget();
        self.clock.restore(store)?;
        self.earliest = first_time_from(store, &start_prefix(i64::MIN))?;
        self.closing.reset();
        Ok(())
    }

    fn late_records(&self) -> u64 {
        self.late_records
    }
}
