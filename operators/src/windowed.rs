//! The windowed aggregation operator.
//!
//! Open windows are the hot set (meters x open windows), so entries live in a bounded in-memory
//! cache in front of the task's store: reads hit the cache, updates mark entries dirty, and at
//! commit each dirty entry becomes one changelog record and one write of the task's batch, however
//! many input records touched it. Clean entries are evicted when the cache is over its budget.
//!
//! Time: stream time is the largest event time seen by the task; a window closes when stream time
//! reaches its end plus grace. Records for closed windows are late: dropped and counted. `on_close`
//! emits one result per key and window when it closes; `on_update` emits, at each commit, the
//! latest value of every window that changed. Closed windows are deleted (tombstones in the changelog).

use crate::aggregate::Agg;
use crate::closing::Closing;
use crate::window::{start_prefix, WindowKey, Windowing, META_STREAM_TIME};
use std::collections::HashMap;
use weir_config::{AggregateFn, EmitMode};
#[cfg(feature = "rocksdb")]
use weir_state::Store;
use weir_state::{Entries, StoreError, WriteOp};

/// Read access to the task's store, as the operator needs it.
pub trait StoreAccess {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries with keys in `[from, to)`, in key order, at most `limit` of them.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError>;
    /// The first key at or after `from`.
    fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last key strictly before `to`.
    fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(feature = "rocksdb")]
impl StoreAccess for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::get(self, key)
    }
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError> {
        Store::scan(self, from, to, limit)
    }
    fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::first_key_from(self, from)
    }
    fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::last_key_before(self, to)
    }
}

/// Stream time as last committed to the store (`i64::MIN`: none yet).
pub(crate) fn stored_stream_time(store: &dyn StoreAccess) -> Result<i64, StoreError> {
    Ok(match store.get(META_STREAM_TIME)? {
        Some(b) if b.len() == 8 => i64::from_be_bytes(b[..8].try_into().unwrap()),
        Some(b) => return Err(undecodable("the stream time entry", META_STREAM_TIME, &b)),
        None => i64::MIN,
    })
}

/// An entry of the store that does not decode: damaged state, never taken as absent (a window
/// would start again at count 1, or stream time go back and closed windows reopen).
pub(crate) fn undecodable(what: &str, key: &[u8], value: &[u8]) -> StoreError {
    StoreError(format!(
        "Corruption: {what} does not decode ({} bytes){}{}",
        value.len(),
        weir_state::CONTENT_MARK,
        String::from_utf8_lossy(key).escape_debug(),
    ))
}

/// An aggregate read from the store.
fn decode_agg(key: &[u8], value: &[u8]) -> Result<Agg, StoreError> {
    Agg::decode(value).ok_or_else(|| undecodable("a window aggregate", key, value))
}

/// The oldest window start in the store.
fn oldest_stored_window(store: &dyn StoreAccess) -> Result<Option<i64>, StoreError> {
    Ok(store
        .first_key_from(&start_prefix(i64::MIN))?
        .and_then(|k| WindowKey::decode(&k))
        .map(|k| k.start))
}

/// A result record for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub key: String,
    pub window_start: i64,
    pub value: Vec<u8>,
}

/// The output record of one window.
fn result(
    key_name: &str,
    size_ms: i64,
    functions: &[AggregateFn],
    agg: &Agg,
    wk: WindowKey,
) -> Emit {
    let value = agg.to_json(
        key_name,
        &wk.key,
        wk.start,
        wk.start.saturating_add(size_ms),
        functions,
    );
    Emit {
        key: wk.key,
        window_start: wk.start,
        value,
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: deleted (window closed), not yet written.
    agg: Option<Agg>,
    dirty: bool,
}

pub struct WindowedAggregate {
    windowing: Windowing,
    emit: EmitMode,
    functions: Vec<AggregateFn>,
    key_name: String,
    cache: HashMap<Vec<u8>, Entry>,
    max_cache_entries: usize,
    stream_time: i64,
    stream_time_dirty: bool,
    /// The smallest window start that may still be open (cache or store); `None` = no open window.
    earliest_open: Option<i64>,
    late_records: u64,
    /// The bounded closing pass (see `closing.rs`).
    closing: Closing,
}

const APPROX_ENTRY_BYTES: usize = 128;

impl WindowedAggregate {
    /// Opens the operator over a (restored) store: stream time and the oldest open window are read back.
    pub fn open(
        store: &dyn StoreAccess,
        windowing: Windowing,
        emit: EmitMode,
        functions: Vec<AggregateFn>,
        key_name: String,
        cache_bytes: usize,
    ) -> Result<WindowedAggregate, StoreError> {
        let stream_time = stored_stream_time(store)?;
        let earliest_open = oldest_stored_window(store)?;
        Ok(WindowedAggregate {
            windowing,
            emit,
            functions,
            key_name,
            cache: HashMap::new(),
            max_cache_entries: (cache_bytes / APPROX_ENTRY_BYTES).max(1024),
            stream_time,
            stream_time_dirty: false,
            earliest_open,
            late_records: 0,
            closing: Closing::default(),
        })
    }

    pub fn stream_time(&self) -> Option<i64> {
        (self.stream_time != i64::MIN).then_some(self.stream_time)
    }

    /// Records dropped because every window they belong to had closed.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Adds one record. Returns false when it was late (dropped). Windows that close because stream
    /// time moved are emitted into `out` (on_close).
    pub fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError> {
        self.advance_stream_time(ts);
        let mut accepted = false;
        let w = self.windowing;
        for start in w.windows_for(ts) {
            if w.is_closed(start, self.stream_time) {
                continue;
            }
            accepted = true;
            let k = WindowKey::encode(start, key);
            let entry = match self.cache.get_mut(&k) {
                Some(e) => e,
                None => {
                    let agg = store.get(&k)?.map(|b| decode_agg(&k, &b)).transpose()?;
                    self.cache.entry(k).or_insert(Entry { agg, dirty: false })
                }
            };
            match &mut entry.agg {
                Some(a) => a.add(value),
                None => entry.agg = Some(Agg::new(value)),
            }
            entry.dirty = true;
            self.earliest_open = Some(self.earliest_open.map_or(start, |e| e.min(start)));
        }
        if !accepted {
            self.late_records += 1;
        }
        self.close_due(store, out)?;
        Ok(accepted)
    }

    fn advance_stream_time(&mut self, ts: i64) {
        if ts > self.stream_time {
            self.stream_time = ts;
            self.stream_time_dirty = true;
        }
    }

    /// Wall-clock idle close: moves stream time past every open window's end plus grace, so they all
    /// close now, and later records for them count as late (never a second result per window).
    pub fn close_all(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if self.earliest_open.is_none() {
            return Ok(());
        }
        // The newest open window: the newest start in the cache or the store (one key read).
        let newest_store = store
            .last_key_before(&[0x02])?
            .and_then(|k| WindowKey::decode(&k))
            .map(|k| k.start);
        let newest_cache = self
            .cache
            .iter()
            .filter(|(_, e)| e.agg.is_some())
            .filter_map(|(k, _)| WindowKey::decode(k))
            .map(|k| k.start)
            .max();
        if let Some(newest) = newest_store.into_iter().chain(newest_cache).max() {
            self.advance_stream_time(
                newest
                    .saturating_add(self.windowing.size_ms)
                    .saturating_add(self.windowing.grace_ms),
            );
        }
        self.close_due(store, out)
    }

    /// True while windows that stream time has closed are still waiting to be emitted: the commit
    /// cycle's closing budget ran out. The engine commits and calls [`Self::close_due`] again.
    pub fn close_pending(&self) -> bool {
        self.earliest_open
            .is_some_and(|e| self.windowing.is_closed(e, self.stream_time))
    }

    /// Sets the most windows one commit cycle closes (tests; the default suits production).
    pub fn set_close_batch(&mut self, windows: usize) {
        self.closing.set_batch(windows);
    }

    /// Emits and deletes the windows that stream time has closed, in key order, at most
    /// `close_batch` per commit cycle: an hour boundary over millions of meters closes millions
    /// of windows at once, and their results, tombstones and changelog records are held in memory
    /// until the commit. What is left stays pending (records for those windows are already late,
    /// so waiting changes no result) and continues after the commit, from its cursor (`closing.rs`).
    pub fn close_due(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if !self.close_pending() || self.closing.spent() {
            return Ok(());
        }
        let limit_key = start_prefix(self.windowing.closed_before(self.stream_time));
        let mut batch = self.closing.next(store, &limit_key)?;
        // Closing windows: those in the store, overlaid by the cache.
        // (key, aggregate, changed since the last commit)
        let mut closing: Vec<(Vec<u8>, Agg, bool)> = Vec::new();
        for (k, v) in std::mem::take(&mut batch.stored) {
            if !self.cache.contains_key(&k) {
                let agg = decode_agg(&k, &v)?;
                closing.push((k, agg, false));
            }
        }
        for (k, e) in &self.cache {
            if let Some(agg) = e
                .agg
                .filter(|_| k.first() == Some(&0x01) && batch.contains(k))
            {
                closing.push((k.clone(), agg, e.dirty));
            }
        }
        closing.sort_by(|a, b| a.0.cmp(&b.0));
        let closed = closing.len();
        for (k, agg, changed) in closing {
            let wk = WindowKey::decode(&k).ok_or_else(|| undecodable("a window key", &k, &[]))?;
            // on_update: the last change of a window reaches the sink even when it closes
            // before the commit that would have emitted it.
            if self.emit == EmitMode::OnClose || changed {
                out.push(result(
                    &self.key_name,
                    self.windowing.size_ms,
                    &self.functions,
                    &agg,
                    wk,
                ));
            }
            self.cache.insert(
                k,
                Entry {
                    agg: None,
                    dirty: true,
                },
            );
        }
        if !self.closing.done(batch, closed, &limit_key) {
            return Ok(());
        }
        let next_store = store
            .first_key_from(&limit_key)?
            .and_then(|k| WindowKey::decode(&k))
            .map(|k| k.start);
        let next_cache = self
            .cache
            .iter()
            .filter(|(k, e)| e.agg.is_some() && k.as_slice() >= &limit_key[..])
            .filter_map(|(k, _)| WindowKey::decode(k))
            .map(|k| k.start)
            .min();
        self.earliest_open = next_store.into_iter().chain(next_cache).min();
        Ok(())
    }

    /// At commit: every dirty entry once, as the writes for the changelog and the store batch
    /// (`None` = delete), plus on_update results into `out`. Entries become clean; the cache is
    /// trimmed to its budget.
    pub fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<WriteOp> {
        self.closing.committed();
        let mut writes = Vec::new();
        let mut deleted = Vec::new();
        for (k, e) in self.cache.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            match &e.agg {
                Some(agg) => {
                    if self.emit == EmitMode::OnUpdate {
                        if let Some(wk) = WindowKey::decode(k) {
                            out.push(result(
                                &self.key_name,
                                self.windowing.size_ms,
                                &self.functions,
                                agg,
                                wk,
                            ));
                        }
                    }
                    writes.push((k.clone(), Some(agg.encode())));
                }
                None => {
                    writes.push((k.clone(), None));
                    deleted.push(k.clone());
                }
            }
        }
        for k in deleted {
            self.cache.remove(&k);
        }
        if self.stream_time_dirty {
            self.stream_time_dirty = false;
            writes.push((
                META_STREAM_TIME.to_vec(),
                Some(self.stream_time.to_be_bytes().to_vec()),
            ));
        }
        if self.cache.len() > self.max_cache_entries {
            let target = self.max_cache_entries * 3 / 4;
            let mut excess = self.cache.len() - target;
            self.cache.retain(|_, e| {
                if excess > 0 && !e.dirty {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        writes
    }

    /// Forgets every uncommitted change (the store still holds the last committed state).
    pub fn discard_uncommitted(&mut self, store: &dyn StoreAccess) -> Result<(), StoreError> {
        self.cache.clear();
        self.stream_time = stored_stream_time(store)?;
        self.stream_time_dirty = false;
        self.earliest_open = oldest_stored_window(store)?;
        self.closing.reset();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The store as the engine keeps it: writes land only at commit.
    #[derive(Default)]
    pub(crate) struct MemStore(pub BTreeMap<Vec<u8>, Vec<u8>>);

    impl StoreAccess for MemStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, StoreError> {
            Ok(self
                .0
                .range(from.to_vec()..to.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn first_key_from(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.range(from.to_vec()..).next().map(|(k, _)| k.clone()))
        }
        fn last_key_before(&self, to: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self
                .0
                .range(..to.to_vec())
                .next_back()
                .map(|(k, _)| k.clone()))
        }
    }

    impl MemStore {
        pub(crate) fn apply(&mut self, writes: Vec<WriteOp>) {
            for (k, v) in writes {
                match v {
                    Some(v) => self.0.insert(k, v),
                    None => self.0.remove(&k),
                };
            }
        }
    }

    const H: i64 = 3_600_000;

    fn op(emit: EmitMode, grace: i64, store: &MemStore) -> WindowedAggregate {
        let w = Windowing {
            size_ms: H,
            advance_ms: H,
            grace_ms: grace,
        };
        WindowedAggregate::open(
            store,
            w,
            emit,
            vec![AggregateFn::Avg, AggregateFn::Count],
            "meter_id".into(),
            1 << 20,
        )
        .unwrap()
    }

    fn parse(e: &Emit) -> serde_json::Value {
        serde_json::from_slice(&e.value).unwrap()
    }

    #[test]
    fn on_close_emits_each_window_once_when_stream_time_passes_end_plus_grace() {
        let mut store = MemStore::default();
        let mut agg = op(EmitMode::OnClose, 60_000, &store);
        let mut out = Vec::new();
        agg.process(&store, "m1", 10, 1.0, &mut out).unwrap();
        agg.process(&store, "m1", H - 1, 3.0, &mut out).unwrap();
        agg.process(&store, "m2", H + 10, 5.0, &mut out).unwrap();
        assert!(out.is_empty(), "still within grace");
        // Within grace: still accepted into the first hour.
        assert!(agg.process(&store, "m1", 500, 2.0, &mut out).unwrap());
        agg.process(&store, "m2", H + 60_000, 5.0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let first = parse(&out[0]);
        assert_eq!(
            (
                first["meter_id"].as_str(),
                first["count"].as_u64(),
                first["avg"].as_f64()
            ),
            (Some("m1"), Some(3), Some(2.0))
        );
        // Late: the first hour has closed.
        assert!(!agg.process(&store, "m1", 20, 9.0, &mut out).unwrap());
        assert_eq!(agg.late_records(), 1);
        assert_eq!(out.len(), 1);
        let writes = agg.take_dirty(&mut out);
        assert_eq!(out.len(), 1, "on_close emits nothing at commit");
        store.apply(writes);
        assert!(
            store.get(&WindowKey::encode(0, "m1")).unwrap().is_none(),
            "closed windows are deleted"
        );
        assert!(store.get(&WindowKey::encode(H, "m2")).unwrap().is_some());
    }

    #[test]
    fn damaged_state_is_an_error_never_taken_as_absent() {
        // An aggregate that does not decode: no new window at count 1.
        let mut store = MemStore::default();
        store
            .0
            .insert(WindowKey::encode(0, "m1"), b"garbage".to_vec());
        let mut agg = op(EmitMode::OnClose, 0, &store);
        let mut out = Vec::new();
        let err = agg.process(&store, "m1", 10, 1.0, &mut out).unwrap_err();
        assert!(err.0.starts_with("Corruption: a window aggregate"), "{err}");
        // Found while closing: neither skipped nor left behind.
        let mut agg = op(EmitMode::OnClose, 0, &MemStore::default());
        let err = agg
            .process(&store, "m2", 10, 1.0, &mut out)
            .and_then(|_| agg.process(&store, "m2", 2 * H, 1.0, &mut out));
        assert!(
            err.is_err(),
            "closing the first hour meets the damaged entry"
        );
        // A stream-time entry of the wrong length: no reset to the beginning of time.
        let mut store = MemStore::default();
        store.0.insert(META_STREAM_TIME.to_vec(), vec![1, 2, 3]);
        let err = WindowedAggregate::open(
            &store,
            Windowing {
                size_ms: H,
                advance_ms: H,
                grace_ms: 0,
            },
            EmitMode::OnClose,
            vec![AggregateFn::Count],
            "k".into(),
            1 << 20,
        )
        .err()
        .unwrap();
        assert!(err.0.contains("the stream time entry"), "{err}");
    }

    #[test]
    fn state_and_stream_time_survive_a_reopen_from_the_store() {
        let mut store = MemStore::default();
        let mut agg = op(EmitMode::OnClose, 0, &store);
        let mut out = Vec::new();
        agg.process(&store, "m1", 10, 1.0, &mut out).unwrap();
        agg.process(&store, "m1", 20, 3.0, &mut out).unwrap();
        store.apply(agg.take_dirty(&mut out));
        let mut reopened = op(EmitMode::OnClose, 0, &store);
        assert_eq!(reopened.stream_time(), Some(20));
        reopened.process(&store, "m1", H, 0.0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(parse(&out[0])["avg"].as_f64(), Some(2.0));
    }

    #[test]
    fn on_update_emits_changed_windows_at_each_commit() {
        let store = MemStore::default();
        let mut agg = op(EmitMode::OnUpdate, 0, &store);
        let mut out = Vec::new();
        for v in [1.0, 2.0, 3.0] {
            agg.process(&store, "m1", 5, v, &mut out).unwrap();
        }
        agg.process(&store, "m2", 5, 7.0, &mut out).unwrap();
        let writes = agg.take_dirty(&mut out);
        assert_eq!(
            out.len(),
            2,
            "one update per changed window, not per record"
        );
        assert_eq!(writes.len(), 3, "two windows and stream time");
        out.clear();
        agg.take_dirty(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn on_update_emits_the_last_change_of_a_window_closing_before_the_commit() {
        let store = MemStore::default();
        let mut agg = op(EmitMode::OnUpdate, 0, &store);
        let mut out = Vec::new();
        agg.process(&store, "m1", 5, 1.0, &mut out).unwrap();
        agg.process(&store, "m1", H + 5, 1.0, &mut out).unwrap();
        assert_eq!(out.len(), 1, "the first hour's only value");
        assert_eq!(parse(&out[0])["count"].as_u64(), Some(1));
    }

    #[test]
    fn idle_close_closes_every_open_window_and_makes_later_records_late() {
        let store = MemStore::default();
        let mut agg = op(EmitMode::OnClose, 0, &store);
        let mut out = Vec::new();
        agg.process(&store, "m1", 5, 1.0, &mut out).unwrap();
        agg.process(&store, "m2", H + 5, 1.0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        agg.close_all(&store, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(!agg.process(&store, "m2", H + 6, 1.0, &mut out).unwrap());
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let mut store = MemStore::default();
        let w = Windowing {
            size_ms: H,
            advance_ms: H,
            grace_ms: 0,
        };
        let mut agg = WindowedAggregate::open(
            &store,
            w,
            EmitMode::OnClose,
            vec![AggregateFn::Sum],
            "k".into(),
            0,
        )
        .unwrap();
        let mut out = Vec::new();
        for i in 0..5000 {
            agg.process(&store, &format!("m{i}"), 5, 1.0, &mut out)
                .unwrap();
        }
        store.apply(agg.take_dirty(&mut out));
        assert!(agg.cached_entries() <= 1024);
        // Evicted entries are read back from the store.
        agg.process(&store, "m1", 6, 1.0, &mut out).unwrap();
        agg.process(&store, "m1", H, 0.0, &mut out).unwrap();
        let m1 = out.iter().map(parse).find(|v| v["k"] == "m1").unwrap();
        assert_eq!(m1["sum"].as_f64(), Some(2.0));
    }

    #[test]
    fn a_mass_close_goes_in_bounded_batches_and_emits_each_window_once() {
        let mut store = MemStore::default();
        let w = Windowing {
            size_ms: H,
            advance_ms: H,
            grace_ms: 0,
        };
        // The smallest cache (1,024 entries): after a commit most windows are in the store only.
        let mut agg = WindowedAggregate::open(
            &store,
            w,
            EmitMode::OnClose,
            vec![AggregateFn::Count],
            "k".into(),
            0,
        )
        .unwrap();
        agg.set_close_batch(100);
        let mut out = Vec::new();
        for i in 0..3000 {
            agg.process(&store, &format!("m{i:04}"), 5, 1.0, &mut out)
                .unwrap();
        }
        store.apply(agg.take_dirty(&mut out));
        assert!(agg.cached_entries() < 3000);
        // A record of the next hour closes all 3,000 windows of the first: 100 per cycle.
        agg.process(&store, "x", H, 1.0, &mut out).unwrap();
        assert_eq!(out.len(), 100);
        assert!(agg.close_pending());
        // Pending windows are closed already: a record for them is late, never a second result.
        assert!(!agg.process(&store, "m0001", 6, 1.0, &mut out).unwrap());
        let mut cycles = 1;
        while agg.close_pending() {
            store.apply(agg.take_dirty(&mut out));
            let before = out.len();
            agg.close_due(&store, &mut out).unwrap();
            assert!(
                out.len() - before <= 100,
                "a cycle closes at most its batch"
            );
            cycles += 1;
        }
        // 30 batches of 100, and perhaps one that finds nothing more below the limit.
        assert!((30..=31).contains(&cycles), "{cycles} cycles");
        let mut keys: Vec<String> = out
            .iter()
            .map(|e| {
                assert_eq!(parse(e)["count"].as_u64(), Some(1));
                e.key.clone()
            })
            .collect();
        keys.sort();
        let expected: Vec<String> = (0..3000).map(|i| format!("m{i:04}")).collect();
        assert_eq!(keys, expected, "every window once");
        store.apply(agg.take_dirty(&mut out));
        let left: Vec<_> = store
            .0
            .keys()
            .filter_map(|k| WindowKey::decode(k))
            .collect();
        assert_eq!(
            left.len(),
            1,
            "only the open window of the next hour: {left:?}"
        );
        assert_eq!(left[0].key, "x");
    }
}
