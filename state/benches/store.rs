//! Micro-benchmark of the commit's state write: one RocksDB write batch of a commit's dirty
//! entries (10,000 windows of ~40-byte values). `cargo bench -p weir-state`; `cargo test --benches`
//! runs it once.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_state::{SharedResources, Store};

fn batch_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let resources = SharedResources::new(64 << 20, 32 << 20);
    let store = Store::open(&dir.path().join("db"), &resources).unwrap();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..10_000u32)
        .map(|i| {
            let mut k = vec![0x01, 0x80, 0, 0, 0, 0, 0, 0, 0];
            k.extend_from_slice(format!("meter-{i:05}").as_bytes());
            (k, vec![7u8; 40])
        })
        .collect();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("write_batch_10k", |b| {
        b.iter(|| {
            store
                .write(
                    entries
                        .iter()
                        .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
                )
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, batch_write);
criterion_main!(benches);
