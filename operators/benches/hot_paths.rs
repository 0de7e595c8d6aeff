//! Micro-benchmarks of the per-record hot path: decoding a reading, and one windowed-aggregate
//! update (cache hit, and a commit's worth of dirty entries). `cargo bench -p weir-operators`;
//! `cargo test --benches` runs each once.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use weir_config::{parse_job, AggregateFn, EmitMode};
use weir_operators::{Decoder, StatefulOperator, StoreAccess, WindowedAggregate, Windowing};
use weir_state::{Entries, StoreError};

/// An empty store: every window is new, as in the first pass over fresh keys.
struct Empty;

impl StoreAccess for Empty {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn scan(&self, _: &[u8], _: &[u8], _: usize) -> Result<Entries, StoreError> {
        Ok(Vec::new())
    }
    fn first_key_from(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn last_key_before(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
}

fn decode(c: &mut Criterion) {
    let job = parse_job(
        "bench.toml",
        "name = \"b\"\n[source]\ntopics = [\"t\"]\nkey_field = \"meter_id\"\ntimestamp_field = \"ts\"\n[sink]\ntopic = \"o\"\n",
        &|_| None,
    )
    .unwrap();
    let decoder = Decoder::new(&job.source, vec!["kwh".into()]).unwrap();
    let payload = br#"{"meter_id":"meter-00042","ts":1767225600000,"kwh":0.412}"#;
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_reading", |b| {
        b.iter(|| decoder.decode(black_box(payload), None, None).unwrap())
    });
    g.finish();
}

fn window_update(c: &mut Criterion) {
    const H: i64 = 3_600_000;
    let windowing = Windowing {
        size_ms: H,
        advance_ms: H,
        grace_ms: 300_000,
    };
    let functions = vec![
        AggregateFn::Avg,
        AggregateFn::Count,
        AggregateFn::Min,
        AggregateFn::Max,
    ];
    let keys: Vec<String> = (0..10_000).map(|i| format!("meter-{i:05}")).collect();
    let mut g = c.benchmark_group("window_aggregate");
    g.throughput(Throughput::Elements(1));
    let mut agg = WindowedAggregate::open(
        &Empty,
        windowing,
        EmitMode::OnClose,
        functions.clone(),
        "meter_id".into(),
        64 << 20,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut i = 0usize;
    g.bench_function("update_cached_window", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            agg.process(&Empty, &keys[i], 1_000 + i as i64, 0.5, &mut out)
                .unwrap()
        })
    });
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("commit_10k_dirty_windows", |b| {
        b.iter(|| {
            for k in &keys {
                agg.process(&Empty, k, 2_000, 0.5, &mut out).unwrap();
            }
            black_box(agg.take_dirty(&mut out))
        })
    });
    g.finish();
}

criterion_group!(benches, decode, window_update);
criterion_main!(benches);
