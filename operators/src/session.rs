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
//! The cache holds keys: a dirty key is written once per commit (its session list and its index
//! changes), however many records touched it. Cache, clock and closing: `operator.rs`.

use crate::aggregate::Agg;
use crate::clock::StreamClock;
use crate::closing::Batch;
use crate::entries::undecodable;
use crate::operator::{Io, Op, Reading, WindowOperator, Windows};
use crate::results::Results;
use crate::window::WindowKey;
use crate::{Emit, StatefulOperator, StoreAccess};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use weir_config::{AggregateFn, EmitMode};
use weir_state::{StoreError, WriteOp};

const SESSIONS_PREFIX: u8 = 0x03;

/// Session windows over a task's store.
pub type SessionAggregate = WindowOperator<Sessions>;

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
        .map_err(|_| undecodable("the sessions of a key", key, value))
}

fn sessions_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(SESSIONS_PREFIX);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The sessions of a [`SessionAggregate`], cached by record key.
pub struct Sessions {
    gap_ms: i64,
    /// `(end, key)` of every session held in the cache.
    cached_ends: BTreeSet<(i64, String)>,
}

/// A key's open sessions.
#[derive(Debug, Clone)]
pub struct KeySessions {
    sessions: Vec<Session>,
    /// Session ends as the store's index holds them (as of the last commit).
    committed_ends: Vec<i64>,
    /// Changed since the last on_update emission.
    updated: bool,
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
        let sessions = Sessions {
            gap_ms,
            cached_ends: BTreeSet::new(),
        };
        let results = Results::new(emit, functions, key_name);
        WindowOperator::over(store, sessions, results, cache_bytes, (gap_ms, grace_ms))
    }
}

/// The key's sessions into the cache, unless they are there.
fn load(op: &mut SessionAggregate, store: &dyn StoreAccess, key: &str) -> Result<(), StoreError> {
    if op.cache.contains(key) {
        return Ok(());
    }
    let k = sessions_key(key);
    let sessions: Vec<Session> = match store.get(&k)? {
        Some(b) => {
            bincode::deserialize(&b).map_err(|_| undecodable("the sessions of a key", &k, &b))?
        }
        None => Vec::new(),
    };
    for s in &sessions {
        op.windows.cached_ends.insert((s.end, key.to_string()));
    }
    op.cache.insert(
        key.to_string(),
        KeySessions {
            committed_ends: sessions.iter().map(|s| s.end).collect(),
            sessions,
            updated: false,
        },
    );
    Ok(())
}

fn result(results: &Results, key: &str, s: &Session) -> Emit {
    results.result(key.to_string(), s.start, s.end, &s.agg)
}

impl Windows for Sessions {
    type Key = String;
    type Entry = KeySessions;
    const ENTRY_BYTES: usize = 160;

    fn closed(&self, clock: &StreamClock, end: i64) -> bool {
        end < clock.closed_before()
    }

    /// Sessions that stream time closes are emitted first; then the record merges with the
    /// sessions it is within `gap` of.
    fn add(op: &mut Op<Self>, io: Io<'_>, r: Reading<'_>) -> Result<bool, StoreError> {
        let (key, ts) = (r.key, r.ts);
        if op.clock.advance(ts) {
            op.close_due(io.store, io.out)?;
        }
        load(op, io.store, key)?;
        let gap = op.windows.gap_ms;
        let limit = op.clock.closed_before();
        let entry = op.cache.get_mut(key).expect("loaded");
        let (merged, kept): (Vec<Session>, Vec<Session>) = entry
            .get()
            .sessions
            .iter()
            .partition(|s| s.start.saturating_sub(gap) < ts && ts < s.end.saturating_add(gap));
        if merged.is_empty() && ts < limit {
            op.late_records += 1;
            return Ok(false);
        }
        let mut session = Session {
            start: ts,
            end: ts,
            agg: Agg::new(r.value),
        };
        for s in &merged {
            session.start = session.start.min(s.start);
            session.end = session.end.max(s.end);
            session.agg.merge(&s.agg);
            op.windows.cached_ends.remove(&(s.end, key.to_string()));
        }
        op.windows
            .cached_ends
            .insert((session.end, key.to_string()));
        let e = entry.touch();
        e.sessions = kept;
        e.sessions.push(session);
        e.sessions.sort_by_key(|s| s.start);
        e.updated = true;
        op.opened(session.end);
        Ok(true)
    }

    /// The batch names keys (through the end index): each key's closed sessions are emitted and
    /// removed, its open ones stay.
    fn close(op: &mut Op<Self>, io: Io<'_>, b: &mut Batch) -> Result<usize, StoreError> {
        let limit = op.clock.closed_before();
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for (k, _) in std::mem::take(&mut b.stored) {
            let wk = WindowKey::decode(&k)
                .ok_or_else(|| undecodable("a session end index key", &k, &[]))?;
            if !op.cache.contains(wk.key.as_str()) {
                keys.insert(wk.key);
            }
        }
        keys.extend(
            op.windows
                .cached_ends
                .range(..(limit, String::new()))
                .filter(|(end, key)| b.contains(&WindowKey::encode(*end, key)))
                .map(|(_, k)| k.clone()),
        );
        let closed = keys.len();
        for key in keys {
            load(op, io.store, &key)?;
            let entry = op.cache.get_mut(key.as_str()).expect("loaded");
            let (closed, open): (Vec<Session>, Vec<Session>) =
                entry.get().sessions.iter().partition(|s| s.end < limit);
            // on_update: a session's last change reaches the sink before it closes.
            let emit = !op.results.on_update() || entry.get().updated;
            entry.touch().sessions = open;
            for s in &closed {
                op.windows.cached_ends.remove(&(s.end, key.clone()));
            }
            if emit {
                for s in &closed {
                    io.out.push(result(&op.results, &key, s));
                }
            }
        }
        Ok(closed)
    }

    fn newest_cached(op: &Op<Self>) -> Option<i64> {
        op.windows.cached_ends.last().map(|(e, _)| *e)
    }

    /// Every cached session at or after the closing limit is open: the oldest of them.
    fn oldest_cached(op: &Op<Self>, _from: &[u8]) -> Option<i64> {
        op.windows.cached_ends.first().map(|(e, _)| *e)
    }

    /// A key's session list (a delete once it has none) and its index changes; on_update, its
    /// sessions' results.
    fn commit(op: &mut Op<Self>, writes: &mut Vec<WriteOp>, out: &mut Vec<Emit>) {
        let results = &op.results;
        let on_update = results.on_update();
        op.cache.commit(|key, e| {
            if on_update && e.updated {
                for s in &e.sessions {
                    out.push(result(results, key, s));
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
            let open = !e.sessions.is_empty();
            let list = open.then(|| bincode::serialize(&e.sessions).expect("sessions serialise"));
            writes.push((sessions_key(key), list));
            e.committed_ends = ends;
            open
        });
    }

    fn evicted(&mut self, key: &String, e: &KeySessions) {
        for s in &e.sessions {
            self.cached_ends.remove(&(s.end, key.clone()));
        }
    }

    fn forget(&mut self) {
        self.cached_ends.clear();
    }
}

#[cfg(test)]
mod tests;
