use super::*;
use crate::store::mem::MemStore;

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
