//! Session windows: per key, records closer than `gap` to each other form one session; a record
//! that falls within `gap` of two sessions merges them. A session `[start, end]` (first and last
//! event time) closes when stream time reaches `end + gap + grace`: from then on no accepted record
//! can reach it. A record whose own new session would already be closed is late (dropped, counted).
//!
//! Store layout (next to the meta entries under `0x00`):
//! - `0x03 | key` -> bincode `Vec<Session>`: the key's open sessions, usually one;
//! - `0x01 | end (sign-flipped big-endian) | key` -> empty: an index by session end, so the sessions
//!   that must close are a prefix range, as for time windows.
//!
//! Like the windowed operator, keys live in a bounded cache in front of the store; a dirty key is
//! written once per commit (its session list and its index changes), however many records touched it.

use crate::aggregate::Agg;
use crate::closing::Closing;
use crate::window::{start_prefix, WindowKey, META_STREAM_TIME};
use crate::windowed::{stored_stream_time, Emit, StoreAccess};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use weir_config::{AggregateFn, EmitMode};
use weir_state::{StoreError, WriteOp};

const SESSIONS_PREFIX: u8 = 0x03;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    agg: Agg,
}

/// A key's session list, as the store and the changelog hold it, decodes.
pub(crate) fn check_sessions(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    bincode::deserialize::<Vec<Session>>(value)
        .map(|_| ())
        .map_err(|_| crate::windowed::undecodable("the sessions of a key", key, value))
}

fn sessions_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(SESSIONS_PREFIX);
    k.extend_from_slice(key.as_bytes());
    k
}

#[derive(Debug, Clone)]
struct KeySessions {
    sessions: Vec<Session>,
    /// Session ends as the store's index holds them (as of the last commit).
    committed_ends: Vec<i64>,
    dirty: bool,
    /// Changed since the last on_update emission.
    updated: bool,
}

pub struct SessionAggregate {
    gap_ms: i64,
    grace_ms: i64,
    emit: EmitMode,
    functions: Vec<AggregateFn>,
    key_name: String,
    cache: HashMap<String, KeySessions>,
    /// `(end, key)` of every session held in the cache.
    cached_ends: BTreeSet<(i64, String)>,
    max_cache_keys: usize,
    stream_time: i64,
    stream_time_dirty: bool,
    /// No open session ends before this (a lower bound); `None` = no open session.
    earliest_end: Option<i64>,
    late_records: u64,
    /// The bounded closing pass over the end index (see `closing.rs`).
    closing: Closing,
}

const APPROX_KEY_BYTES: usize = 160;

fn oldest_stored_end(store: &dyn StoreAccess, from: i64) -> Result<Option<i64>, StoreError> {
    Ok(store
        .first_key_from(&start_prefix(from))?
        .and_then(|k| WindowKey::decode(&k))
        .map(|k| k.start))
}

impl SessionAggregate {
    pub fn open(
        store: &dyn StoreAccess,
        gap_ms: i64,
        grace_ms: i64,
        emit: EmitMode,
        functions: Vec<AggregateFn>,
        key_name: String,
        cache_bytes: usize,
    ) -> Result<SessionAggregate, StoreError> {
        Ok(SessionAggregate {
            gap_ms,
            grace_ms,
            emit,
            functions,
            key_name,
            cache: HashMap::new(),
            cached_ends: BTreeSet::new(),
            max_cache_keys: (cache_bytes / APPROX_KEY_BYTES).max(1024),
            stream_time: stored_stream_time(store)?,
            stream_time_dirty: false,
            earliest_end: oldest_stored_end(store, i64::MIN)?,
            late_records: 0,
            closing: Closing::default(),
        })
    }

    pub fn stream_time(&self) -> Option<i64> {
        (self.stream_time != i64::MIN).then_some(self.stream_time)
    }

    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Sessions ending before this bound are closed.
    fn close_limit(&self) -> i64 {
        self.stream_time
            .saturating_sub(self.gap_ms)
            .saturating_sub(self.grace_ms)
            .saturating_add(1)
    }

    fn load(&mut self, store: &dyn StoreAccess, key: &str) -> Result<(), StoreError> {
        if self.cache.contains_key(key) {
            return Ok(());
        }
        let k = sessions_key(key);
        let sessions: Vec<Session> = match store.get(&k)? {
            Some(b) => bincode::deserialize(&b)
                .map_err(|_| crate::windowed::undecodable("the sessions of a key", &k, &b))?,
            None => Vec::new(),
        };
        for s in &sessions {
            self.cached_ends.insert((s.end, key.to_string()));
        }
        self.cache.insert(
            key.to_string(),
            KeySessions {
                committed_ends: sessions.iter().map(|s| s.end).collect(),
                sessions,
                dirty: false,
                updated: false,
            },
        );
        Ok(())
    }

    fn result(&self, key: &str, s: &Session) -> Emit {
        Emit {
            key: key.to_string(),
            window_start: s.start,
            value: s
                .agg
                .to_json(&self.key_name, key, s.start, s.end, &self.functions),
        }
    }

    /// Adds one record; returns false when it was late (dropped).
    pub fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, StoreError> {
        if ts > self.stream_time {
            self.stream_time = ts;
            self.stream_time_dirty = true;
            self.close_due(store, out)?;
        }
        self.load(store, key)?;
        let gap = self.gap_ms;
        let limit = self.close_limit();
        let entry = self.cache.get_mut(key).expect("loaded");
        let (merged, kept): (Vec<Session>, Vec<Session>) = entry
            .sessions
            .iter()
            .partition(|s| s.start.saturating_sub(gap) < ts && ts < s.end.saturating_add(gap));
        if merged.is_empty() && ts < limit {
            self.late_records += 1;
            return Ok(false);
        }
        let mut session = Session {
            start: ts,
            end: ts,
            agg: Agg::new(value),
        };
        for s in &merged {
            session.start = session.start.min(s.start);
            session.end = session.end.max(s.end);
            session.agg.merge(&s.agg);
            self.cached_ends.remove(&(s.end, key.to_string()));
        }
        self.cached_ends.insert((session.end, key.to_string()));
        entry.sessions = kept;
        entry.sessions.push(session);
        entry.sessions.sort_by_key(|s| s.start);
        entry.dirty = true;
        entry.updated = true;
        self.earliest_end = Some(
            self.earliest_end
                .map_or(session.end, |e| e.min(session.end)),
        );
        Ok(true)
    }

    /// True while sessions that stream time has closed wait for the next commit cycle.
    pub fn close_pending(&self) -> bool {
        self.earliest_end.is_some_and(|e| e < self.close_limit())
    }

    /// Sets the most keys one commit cycle closes sessions of (tests).
    pub fn set_close_batch(&mut self, keys: usize) {
        self.closing.set_batch(keys);
    }

    /// Emits and removes the sessions that are closed at the current stream time, at most
    /// `close_batch` keys per commit cycle, in the order of the end index; the rest stays pending
    /// and goes on from its cursor after the commit (`closing.rs`).
    pub fn close_due(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if !self.close_pending() || self.closing.spent() {
            return Ok(());
        }
        let limit = self.close_limit();
        let limit_key = start_prefix(limit);
        let mut batch = self.closing.next(store, &limit_key)?;
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for (k, _) in std::mem::take(&mut batch.stored) {
            let wk = WindowKey::decode(&k)
                .ok_or_else(|| crate::windowed::undecodable("a session end index key", &k, &[]))?;
            if !self.cache.contains_key(&wk.key) {
                keys.insert(wk.key);
            }
        }
        keys.extend(
            self.cached_ends
                .range(..(limit, String::new()))
                .filter(|(end, key)| batch.contains(&WindowKey::encode(*end, key)))
                .map(|(_, k)| k.clone()),
        );
        let closed = keys.len();
        for key in keys {
            self.load(store, &key)?;
            let entry = self.cache.get_mut(&key).expect("loaded");
            let (closed, open): (Vec<Session>, Vec<Session>) =
                entry.sessions.iter().partition(|s| s.end < limit);
            // on_update: a session's last change reaches the sink before it closes.
            let emit = self.emit == EmitMode::OnClose || entry.updated;
            entry.sessions = open;
            entry.dirty = true;
            for s in &closed {
                self.cached_ends.remove(&(s.end, key.clone()));
            }
            if emit {
                for s in &closed {
                    out.push(self.result(&key, s));
                }
            }
        }
        if !self.closing.done(batch, closed, &limit_key) {
            return Ok(());
        }
        let next_store = oldest_stored_end(store, limit)?;
        let next_cache = self.cached_ends.first().map(|(e, _)| *e);
        self.earliest_end = next_store.into_iter().chain(next_cache).min();
        Ok(())
    }

    /// Wall-clock idle close: stream time moves past every open session's end + gap + grace.
    pub fn close_all(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), StoreError> {
        if self.earliest_end.is_none() {
            return Ok(());
        }
        let newest_store = store
            .last_key_before(&[0x02])?
            .and_then(|k| WindowKey::decode(&k))
            .map(|k| k.start);
        let newest_cache = self.cached_ends.last().map(|(e, _)| *e);
        if let Some(newest) = newest_store.into_iter().chain(newest_cache).max() {
            let t = newest
                .saturating_add(self.gap_ms)
                .saturating_add(self.grace_ms);
            if t > self.stream_time {
                self.stream_time = t;
                self.stream_time_dirty = true;
            }
        }
        self.close_due(store, out)
    }

    /// At commit: each dirty key's session list and index changes, once; on_update results.
    pub fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<WriteOp> {
        self.closing.committed();
        let mut writes = Vec::new();
        let mut emptied = Vec::new();
        let on_update = self.emit == EmitMode::OnUpdate;
        for (key, e) in self.cache.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            if on_update && e.updated {
                for s in &e.sessions {
                    out.push(Emit {
                        key: key.clone(),
                        window_start: s.start,
                        value: s
                            .agg
                            .to_json(&self.key_name, key, s.start, s.end, &self.functions),
                    });
                }
            }
            e.updated = false;
            let ends: Vec<i64> = e.sessions.iter().map(|s| s.end).collect();
            for end in e.committed_ends.iter().filter(|x| !ends.contains(x)) {
                writes.push((WindowKey::encode(*end, key), None));
            }
            for end in ends.iter().filter(|x| !e.committed_ends.contains(x)) {
                writes.push((WindowKey::encode(*end, key), Some(Vec::new())));
            }
            if e.sessions.is_empty() {
                writes.push((sessions_key(key), None));
                emptied.push(key.clone());
            } else {
                writes.push((
                    sessions_key(key),
                    Some(bincode::serialize(&e.sessions).expect("sessions serialise")),
                ));
            }
            e.committed_ends = ends;
        }
        for k in emptied {
            self.cache.remove(&k);
        }
        if self.stream_time_dirty {
            self.stream_time_dirty = false;
            writes.push((
                META_STREAM_TIME.to_vec(),
                Some(self.stream_time.to_be_bytes().to_vec()),
            ));
        }
        if self.cache.len() > self.max_cache_keys {
            let target = self.max_cache_keys * 3 / 4;
            let mut excess = self.cache.len() - target;
            let ends = &mut self.cached_ends;
            self.cache.retain(|key, e| {
                if excess > 0 && !e.dirty {
                    excess -= 1;
                    for s in &e.sessions {
                        ends.remove(&(s.end, key.clone()));
                    }
                    false
                } else {
                    true
                }
            });
        }
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        writes
    }

    /// Forgets every uncommitted change.
    pub fn discard_uncommitted(&mut self, store: &dyn StoreAccess) -> Result<(), StoreError> {
        self.cache.clear();
        self.cached_ends.clear();
        self.stream_time = stored_stream_time(store)?;
        self.stream_time_dirty = false;
        self.earliest_end = oldest_stored_end(store, i64::MIN)?;
        self.closing.reset();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windowed::tests::MemStore;

    const M: i64 = 60_000;

    fn op(store: &MemStore, emit: EmitMode, grace: i64) -> SessionAggregate {
        SessionAggregate::open(
            store,
            30 * M,
            grace,
            emit,
            vec![AggregateFn::Sum, AggregateFn::Count],
            "meter_id".into(),
            1 << 20,
        )
        .unwrap()
    }

    fn parsed(out: &[Emit]) -> Vec<(String, i64, i64, f64)> {
        out.iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.value).unwrap();
                (
                    v["meter_id"].as_str().unwrap().to_string(),
                    v["window_start_ms"].as_i64().unwrap(),
                    v["window_end_ms"].as_i64().unwrap(),
                    v["sum"].as_f64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn silence_of_gap_splits_sessions_and_each_closes_once() {
        let store = MemStore::default();
        let mut s = op(&store, EmitMode::OnClose, 0);
        let mut out = Vec::new();
        for (t, v) in [(0, 1.0), (10 * M, 2.0), (35 * M, 3.0)] {
            assert!(s.process(&store, "m1", t, v, &mut out).unwrap());
        }
        assert!(out.is_empty(), "25 minutes apart: one session, still open");
        // 30 minutes of silence after 35m: the session [0, 35m] closes at 65m.
        s.process(&store, "m2", 65 * M - 1, 0.0, &mut out).unwrap();
        assert!(out.is_empty());
        s.process(&store, "m2", 65 * M, 0.0, &mut out).unwrap();
        assert_eq!(parsed(&out), vec![("m1".into(), 0, 35 * M, 6.0)]);
        // A record for the closed session's time is late: its own session would be closed too.
        assert!(!s.process(&store, "m1", 30 * M, 9.0, &mut out).unwrap());
        assert_eq!(s.late_records(), 1);
        // A new session for m1 after the gap.
        assert!(s.process(&store, "m1", 70 * M, 4.0, &mut out).unwrap());
        s.close_all(&store, &mut out).unwrap();
        assert_eq!(
            parsed(&out)[1..],
            [
                ("m1".into(), 70 * M, 70 * M, 4.0),
                ("m2".into(), 65 * M - 1, 65 * M, 0.0)
            ]
        );
    }

    #[test]
    fn an_out_of_order_record_bridges_two_sessions() {
        let store = MemStore::default();
        let mut s = op(&store, EmitMode::OnClose, 60 * M);
        let mut out = Vec::new();
        s.process(&store, "m", 0, 1.0, &mut out).unwrap();
        s.process(&store, "m", 50 * M, 2.0, &mut out).unwrap();
        s.process(&store, "m", 25 * M, 3.0, &mut out).unwrap();
        s.close_all(&store, &mut out).unwrap();
        assert_eq!(parsed(&out), vec![("m".into(), 0, 50 * M, 6.0)]);
    }

    #[test]
    fn sessions_survive_commit_eviction_and_reopen() {
        let mut store = MemStore::default();
        let mut s = op(&store, EmitMode::OnClose, 0);
        let mut out = Vec::new();
        s.process(&store, "m", 0, 1.0, &mut out).unwrap();
        s.process(&store, "m", 5 * M, 1.0, &mut out).unwrap();
        store.apply(s.take_dirty(&mut out));
        let mut s = op(&store, EmitMode::OnClose, 0);
        assert_eq!(s.stream_time(), Some(5 * M));
        s.process(&store, "m", 20 * M, 1.0, &mut out).unwrap();
        store.apply(s.take_dirty(&mut out));
        // Only one session and one index entry remain for the key.
        assert_eq!(store.0.keys().filter(|k| k[0] == 0x01).count(), 1);
        s.process(&store, "other", 50 * M, 0.0, &mut out).unwrap();
        assert_eq!(parsed(&out), vec![("m".into(), 0, 20 * M, 3.0)]);
        store.apply(s.take_dirty(&mut out));
        assert!(
            store.get(&sessions_key("m")).unwrap().is_none(),
            "closed sessions are deleted"
        );
        assert_eq!(
            store.0.keys().filter(|k| k[0] == 0x01).count(),
            1,
            "only `other` is open"
        );
        // Uncommitted changes are forgotten.
        s.process(&store, "other", 51 * M, 5.0, &mut out).unwrap();
        s.discard_uncommitted(&store).unwrap();
        s.close_all(&store, &mut out).unwrap();
        assert_eq!(parsed(&out)[1], ("other".into(), 50 * M, 50 * M, 0.0));
    }

    #[test]
    fn on_update_emits_at_commit_and_the_last_change_before_close() {
        let store = MemStore::default();
        let mut s = op(&store, EmitMode::OnUpdate, 0);
        let mut out = Vec::new();
        s.process(&store, "m", 0, 1.0, &mut out).unwrap();
        s.process(&store, "m", M, 1.0, &mut out).unwrap();
        s.take_dirty(&mut out);
        assert_eq!(parsed(&out), vec![("m".into(), 0, M, 2.0)]);
        s.process(&store, "m", 2 * M, 1.0, &mut out).unwrap();
        s.process(&store, "x", 40 * M, 0.0, &mut out).unwrap();
        assert_eq!(parsed(&out)[1], ("m".into(), 0, 2 * M, 3.0));
    }

    #[test]
    fn a_mass_close_of_sessions_goes_in_bounded_batches_each_once() {
        let mut store = MemStore::default();
        let mut s = op(&store, EmitMode::OnClose, 0);
        s.set_close_batch(64);
        let mut out = Vec::new();
        for i in 0..1000 {
            s.process(&store, &format!("m{i:04}"), i, 1.0, &mut out)
                .unwrap();
        }
        store.apply(s.take_dirty(&mut out));
        s.process(&store, "x", 120 * M, 1.0, &mut out).unwrap();
        assert_eq!(out.len(), 64);
        while s.close_pending() {
            store.apply(s.take_dirty(&mut out));
            let before = out.len();
            s.close_due(&store, &mut out).unwrap();
            assert!(out.len() - before <= 64);
        }
        let mut keys: Vec<String> = out.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        let expected: Vec<String> = (0..1000).map(|i| format!("m{i:04}")).collect();
        assert_eq!(keys, expected, "every session once");
    }
}
