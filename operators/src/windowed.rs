//! Time windows (tumbling and hopping): a record lands in every window containing its event time.
//!
//! A window closes when stream time reaches its end plus grace; records for closed windows are
//! late: dropped and counted. `on_close` emits one result per key and window when it closes;
//! `on_update` emits, at each commit, the latest value of every window that changed. Closed
//! windows are deleted (tombstones in the changelog). Cache, clock and closing: `operator.rs`.

use crate::aggregate::Agg;
use crate::clock::StreamClock;
use crate::closing::Batch;
use crate::entries::undecodable;
use crate::operator::{Io, Op, Reading, WindowOperator, Windows};
use crate::results::Results;
use crate::window::{WindowKey, Windowing};
use crate::{Emit, StatefulOperator, StoreAccess};
use weir_config::{AggregateFn, EmitMode};
use weir_state::{StoreError, WriteOp};

/// Time windows over a task's store.
pub type WindowedAggregate = WindowOperator<TimeWindows>;

/// The windows of a [`WindowedAggregate`]: cached by store key, `None` once closed (a delete
/// not yet written).
pub struct TimeWindows {
    windowing: Windowing,
    /// The store key of the window a record is looked up in, reused: a record in a cached
    /// window allocates nothing.
    key_buf: Vec<u8>,
}

/// An aggregate read from the store.
fn decode_agg(key: &[u8], value: &[u8]) -> Result<Agg, StoreError> {
    Agg::decode(value).ok_or_else(|| undecodable("a window aggregate", key, value))
}

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
        let span = (windowing.size_ms, windowing.grace_ms);
        let results = Results::new(emit, functions, key_name);
        WindowOperator::over(
            store,
            TimeWindows {
                windowing,
                key_buf: Vec::new(),
            },
            results,
            cache_bytes,
            span,
        )
    }
}

impl TimeWindows {
    fn result(&self, results: &Results, wk: WindowKey, agg: &Agg) -> Emit {
        let end = wk.start.saturating_add(self.windowing.size_ms);
        results.result(wk.key, wk.start, end, agg)
    }
}

impl Windows for TimeWindows {
    type Key = Vec<u8>;
    type Entry = Option<Agg>;
    const ENTRY_BYTES: usize = 128;

    fn closed(&self, clock: &StreamClock, start: i64) -> bool {
        self.windowing.is_closed(start, clock.now())
    }

    /// Windows that close because stream time moved are emitted (on_close).
    fn add(op: &mut Op<Self>, io: Io<'_>, r: Reading<'_>) -> Result<bool, StoreError> {
        op.clock.advance(r.ts);
        let mut accepted = false;
        let w = op.windows.windowing;
        for start in w.windows_for(r.ts) {
            if w.is_closed(start, op.clock.now()) {
                continue;
            }
            accepted = true;
            let k = &mut op.windows.key_buf;
            WindowKey::encode_into(start, r.key, k);
            let entry = match op.cache.get_mut(k.as_slice()) {
                Some(e) => e,
                None => {
                    let agg = io.store.get(k)?.map(|b| decode_agg(k, &b)).transpose()?;
                    op.cache.insert(k.clone(), agg)
                }
            };
            let agg = entry.touch();
            match agg {
                Some(a) => a.add(r.value),
                None => *agg = Some(Agg::new(r.value)),
            }
            op.opened(start);
        }
        if !accepted {
            op.late_records += 1;
        }
        op.close_due(io.store, io.out)?;
        Ok(accepted)
    }

    /// Closing windows: those in the store, overlaid by the cache, in key order.
    fn close(op: &mut Op<Self>, io: Io<'_>, b: &mut Batch) -> Result<usize, StoreError> {
        // (key, aggregate, changed since the last commit)
        let mut closing: Vec<(Vec<u8>, Agg, bool)> = Vec::new();
        for (k, v) in std::mem::take(&mut b.stored) {
            if !op.cache.contains(&k) {
                let agg = decode_agg(&k, &v)?;
                closing.push((k, agg, false));
            }
        }
        for (k, e) in op.cache.iter() {
            if let Some(agg) = e
                .get()
                .filter(|_| k.first() == Some(&0x01) && b.contains(k))
            {
                closing.push((k.clone(), agg, e.is_dirty()));
            }
        }
        closing.sort_by(|a, b| a.0.cmp(&b.0));
        let closed = closing.len();
        for (k, agg, changed) in closing {
            let wk = WindowKey::decode(&k).ok_or_else(|| undecodable("a window key", &k, &[]))?;
            // on_update: the last change of a window reaches the sink even when it closes
            // before the commit that would have emitted it.
            if !op.results.on_update() || changed {
                io.out.push(op.windows.result(&op.results, wk, &agg));
            }
            op.cache.put(k, None);
        }
        Ok(closed)
    }

    fn newest_cached(op: &Op<Self>) -> Option<i64> {
        op.cache
            .iter()
            .filter(|(_, e)| e.get().is_some())
            .filter_map(|(k, _)| WindowKey::decode(k))
            .map(|k| k.start)
            .max()
    }

    fn oldest_cached(op: &Op<Self>, from: &[u8]) -> Option<i64> {
        op.cache
            .iter()
            .filter(|(k, e)| e.get().is_some() && k.as_slice() >= from)
            .filter_map(|(k, _)| WindowKey::decode(k))
            .map(|k| k.start)
            .min()
    }

    /// A window's aggregate (a delete once it closed); on_update, its result.
    fn commit(op: &mut Op<Self>, writes: &mut Vec<WriteOp>, out: &mut Vec<Emit>) {
        let (windows, results) = (&op.windows, &op.results);
        op.cache.commit(|k, e| match e {
            Some(agg) => {
                if results.on_update() {
                    if let Some(wk) = WindowKey::decode(k) {
                        out.push(windows.result(results, wk, agg));
                    }
                }
                writes.push((k.clone(), Some(agg.encode())));
                true
            }
            None => {
                writes.push((k.clone(), None));
                false
            }
        });
    }
}

#[cfg(test)]
mod tests;
