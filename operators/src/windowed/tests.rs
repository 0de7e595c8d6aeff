use super::*;
use crate::store::mem::MemStore;
use crate::window::META_STREAM_TIME;

const H: i64 = 3_600_000;

fn op(emit: EmitMode, grace: i64, store: &MemStore) -> WindowedAggregate {
    hourly(
        store,
        grace,
        emit,
        vec![AggregateFn::Avg, AggregateFn::Count],
        "meter_id",
        1 << 20,
    )
}

/// Hourly tumbling windows keyed by `key`, with an operator cache of `cache_bytes`.
fn hourly(
    store: &MemStore,
    grace: i64,
    emit: EmitMode,
    functions: Vec<AggregateFn>,
    key: &str,
    cache_bytes: usize,
) -> WindowedAggregate {
    let w = Windowing {
        size_ms: H,
        advance_ms: H,
        grace_ms: grace,
    };
    WindowedAggregate::open(store, w, emit, functions, key.into(), cache_bytes).unwrap()
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
    let mut agg = hourly(&store, 0, EmitMode::OnClose, vec![AggregateFn::Sum], "k", 0);
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
    // The smallest cache (1,024 entries): after a commit most windows are in the store only.
    let mut agg = hourly(
        &store,
        0,
        EmitMode::OnClose,
        vec![AggregateFn::Count],
        "k",
        0,
    );
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
