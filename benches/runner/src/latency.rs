//! Latency under load. With `emit = "on_update"` (Kafka Streams: `onWindowUpdate`, no
//! suppression) a runner reads readings produced at a fixed rate, and for every reading the
//! latency is the time from its append to the broker (the input topic uses LogAppendTime, so the
//! delivery report carries the broker's clock) to the moment the first result that includes it is
//! readable (read_committed). A result for (meter, window) with `count = c` includes that meter's
//! first c readings in the window; the schedule below says which readings those are.

use super::*;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What to produce: `count` readings at `rate` per second, reading `i` of meter `i % meters`
/// with event time `t0_ms + i / rate` (so the windows are the ones of the present).
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) t0_ms: i64,
    pub(crate) rate: f64,
    pub(crate) meters: u64,
    pub(crate) count: u64,
}

impl Schedule {
    fn ts(&self, i: u64) -> i64 {
        self.t0_ms + (i as f64 * 1000.0 / self.rate) as i64
    }

    /// The reading that is the `c`-th (1-based) of `meter` in the window starting at `start`.
    fn reading(&self, meter: u64, start: i64, c: u64) -> Option<u64> {
        // The meter's k-th reading is i = meter + k * meters; find the first k in the window.
        let (mut lo, mut hi) = (0u64, self.count / self.meters + 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.ts(meter + mid * self.meters) < start {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = meter + (lo + c - 1) * self.meters;
        (c > 0 && i < self.count && self.ts(i) < start + HOUR).then_some(i)
    }
}

/// What the reader has seen: when each reading was first included in a readable result (0 until
/// then), how many readings were, and whether a probe's result came back.
struct Seen {
    first: Vec<AtomicI64>,
    included: AtomicU64,
    probe_answered: AtomicBool,
}

/// Delivery reports: the broker's append time of each reading (0 until acknowledged).
struct Appends(Arc<Vec<AtomicI64>>);

impl ClientContext for Appends {}

impl ProducerContext for Appends {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        if let (Ok(m), Some(slot)) = (result, self.0.get(i)) {
            if let Some(ts) = m.timestamp().to_millis() {
                slot.store(ts, Ordering::Relaxed);
            }
        }
    }
}

/// One runner's latency: `start` spawns it reading `input` and writing `output`.
pub(crate) fn measure_latency(
    a: &Args,
    name: &str,
    input: &str,
    output: &str,
    sched: Schedule,
    mut command: Command,
) -> anyhow::Result<Value> {
    eprintln!(
        "weir-bench: latency of {name} at {:.0} readings/s ...",
        sched.rate
    );
    let log = std::env::temp_dir().join(format!("weir-bench-latency-{name}.log"));
    let child = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let result = run_schedule(a, input, output, sched);
    stop(child);
    let mut v = result.with_context(|| format!("{name}; its log: {}", log.display()))?;
    v["rate_per_s"] = json!(sched.rate.round());
    eprintln!("weir-bench: latency of {name} {v}");
    Ok(v)
}

fn run_schedule(a: &Args, input: &str, output: &str, sched: Schedule) -> anyhow::Result<Value> {
    let appends = Arc::new(
        (0..sched.count)
            .map(|_| AtomicI64::new(0))
            .collect::<Vec<_>>(),
    );
    let producer: ThreadedProducer<Appends> = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("linger.ms", "1")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Appends(appends.clone()))?;
    // The reader: every result as it becomes readable, with the time it was read.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen {
        first: (0..sched.count).map(|_| AtomicI64::new(0)).collect(),
        included: AtomicU64::new(0),
        probe_answered: AtomicBool::new(false),
    });
    let reader = {
        let (bootstrap, topic, partitions) =
            (a.bootstrap.clone(), output.to_string(), a.partitions);
        let (stop_reading, seen) = (stop_reading.clone(), seen.clone());
        std::thread::spawn(move || {
            read_results_live(&bootstrap, &topic, partitions, sched, &stop_reading, &seen)
        })
    };
    // Until the runner is up: a probe every 200 ms until a result comes back.
    let probes_up = Instant::now();
    let mut probe = 0;
    while !seen.probe_answered.load(Ordering::Relaxed) && !reader.is_finished() {
        if probes_up.elapsed() > Duration::from_secs(180) {
            bail!("no result within 180 s of the start");
        }
        let key = format!("probe-{}", probe % 16);
        let payload = format!(
            r#"{{"meter_id":"{key}","ts":{},"kwh":0.0}}"#,
            steady::unix_ms() as i64
        );
        let _ = producer.send(
            BaseRecord::with_opaque_to(input, usize::MAX)
                .key(key.as_bytes())
                .payload(payload.as_bytes()),
        );
        probe += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // The schedule, paced against the clock (sends catch up after a stall, never run ahead).
    let started = Instant::now();
    for i in 0..sched.count {
        let due = Duration::from_secs_f64(i as f64 / sched.rate);
        let ahead = due.saturating_sub(started.elapsed());
        if !ahead.is_zero() {
            std::thread::sleep(ahead);
        }
        let meter = i % sched.meters;
        let key = format!("meter-{meter:06}");
        let payload = format!(
            r#"{{"meter_id":"{key}","ts":{},"kwh":{:.3}}}"#,
            sched.ts(i),
            0.1 + (i % 7) as f64 / 10.0
        );
        let mut rec = BaseRecord::with_opaque_to(input, i as usize)
            .key(key.as_bytes())
            .payload(payload.as_bytes());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
            }
        }
    }
    let produced_s = started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(60))?;
    // Every reading seen in a result, or 30 s after the last send.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.included.load(Ordering::Relaxed) < sched.count
        && Instant::now() < deadline
        && !reader.is_finished()
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_reading.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let mut latencies: Vec<i64> = seen
        .first
        .iter()
        .zip(appends.iter())
        .map(|(t, a)| (t.load(Ordering::Relaxed), a.load(Ordering::Relaxed)))
        .filter(|(t, _)| *t != 0)
        .map(|(t, a)| t - a)
        .collect();
    let missing = sched.count - latencies.len() as u64;
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
    };
    Ok(json!({
        "readings": sched.count,
        "produced_s": round(produced_s),
        "missing": missing,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies.last(),
    }))
}

/// Reads `topic` from the beginning until told to stop; for every result of a scheduled meter,
/// each reading it newly includes is recorded with the time it became readable.
fn read_results_live(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    sched: Schedule,
    stop: &AtomicBool,
    seen: &Seen,
) -> anyhow::Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-latency")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.queue.backoff.ms", "1")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut counted: HashMap<(u64, i64), u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = steady::unix_ms() as i64;
        let m = m?;
        let Ok(v) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()) else {
            continue;
        };
        let id = v["meter_id"].as_str().unwrap_or("");
        let (Some(start), Some(count)) = (v["window_start_ms"].as_i64(), v["count"].as_u64())
        else {
            continue;
        };
        let Some(meter) = id
            .strip_prefix("meter-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            // A probe's result: the runner is up.
            seen.probe_answered.store(true, Ordering::Relaxed);
            continue;
        };
        let before = counted.entry((meter, start)).or_default();
        for c in (*before + 1)..=count {
            let first = sched
                .reading(meter, start, c)
                .and_then(|i| seen.first.get(i as usize));
            if first.is_some_and(|f| {
                f.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            }) {
                seen.included.fetch_add(1, Ordering::Relaxed);
            }
        }
        *before = (*before).max(count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_names_the_reading_a_count_includes() {
        // 10 readings/s, 4 meters: reading i at t0 + 100 ms * i; the hour starts 250 ms in.
        let s = Schedule {
            t0_ms: HOUR - 250,
            rate: 10.0,
            meters: 4,
            count: 40,
        };
        // Meter 1's readings: i = 1 (t0+100), 5 (t0+500), 9, ...; the first in the new hour is 5.
        assert_eq!(s.reading(1, 0, 1), Some(1));
        assert_eq!(
            s.reading(1, 0, 2),
            None,
            "one reading of meter 1 before the hour"
        );
        assert_eq!(s.reading(1, HOUR, 1), Some(5));
        assert_eq!(s.reading(1, HOUR, 3), Some(13));
        assert_eq!(s.reading(1, HOUR, 10), None, "beyond the schedule");
        assert_eq!(s.reading(1, HOUR, 0), None);
    }
}
