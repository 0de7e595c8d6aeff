//! Figures of the core engine on the real broker, measured in one run (ignored by default: it takes
//! minutes). `cargo xtask kafka start`, then:
//!
//! ```sh
//! WEIR_BIN=$CARGO_TARGET_DIR/release/weir cargo test -p weir --test integration -- --ignored --nocapture measure
//! ```
//! `WEIR_MEASURE_METERS` (default 1,000,000) meters, two readings each in the same hour, so every
//! meter holds an open window at the end.

use crate::harness::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use weir_engine::generator::{GeneratorSpec, Reading};

const PARTITIONS: i32 = 4;

fn produce_fast(bootstrap: &str, topic: &str, readings: impl Iterator<Item = Reading>) -> usize {
    let p: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
    let mut n = 0;
    for r in readings {
        send(&p, topic, Some(r.meter_id.as_bytes()), &r.to_json(), None);
        n += 1;
    }
    p.flush(Duration::from_secs(300)).unwrap();
    n
}

/// Records/s of a bare consumer reading `topic` from the beginning: the physical limit.
fn bare_rate(bootstrap: &str, topic: &str) -> (usize, f64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bare"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in 0..PARTITIONS {
        total += end_offset(bootstrap, topic, p) as usize;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut n = 0;
    let mut started = None;
    while n < total {
        if let Some(m) = c.poll(Duration::from_secs(1)) {
            let m = m.unwrap();
            std::hint::black_box(m.payload());
            started.get_or_insert_with(Instant::now);
            n += 1;
        }
    }
    (n, n as f64 / started.unwrap().elapsed().as_secs_f64())
}

fn time_until(what: &str, w: &Worker, mut cond: impl FnMut(&str) -> bool) -> Instant {
    await_workers(Duration::from_secs(900), what, &[w], || cond(&w.metrics()));
    Instant::now()
}

#[test]
#[ignore = "minutes long; run on demand (see the module doc)"]
fn real_measure_core_figures() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let meters: u32 = std::env::var("WEIR_MEASURE_METERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let name = unique("measure");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, PARTITIONS);
    kafka.create_topic(&output, PARTITIONS);
    let spec = GeneratorSpec {
        meters,
        hours: 1,
        readings_per_hour: 2,
        ..Default::default()
    };
    let t = Instant::now();
    let records = produce_fast(&b, &input, spec.readings());
    println!(
        "preloaded {records} records in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let (_, bare) = bare_rate(&b, &input);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &name,
        &input,
        &output,
        &[
            ("close_idle_after = \"2s\"", "close_idle_after = \"1h\""),
            ("commit_interval = \"200ms\"", "commit_interval = \"1s\""),
        ],
    );
    let state = dir.path().join("state");
    let w = Worker::start(&job, &b, &state);
    let t0 = time_until("the first record", &w, |m| {
        metric_sum(m, "weir_records_consumed_total") > 0.0
    });
    let t1 = time_until("every record", &w, |m| {
        metric_sum(m, "weir_records_consumed_total") as usize >= records
    });
    let weir = records as f64 / (t1 - t0).as_secs_f64();
    let rss = w.peak_rss_bytes();
    assert_eq!(w.stop(), 0);

    // Full restore: local state gone, everything comes back from the changelog.
    let changelog = format!("{name}-hourly_avg-changelog");
    let (changelog_records, bare_changelog) = bare_rate(&b, &changelog);
    std::fs::remove_dir_all(&state).unwrap();
    let w = Worker::start(&job, &b, &state);
    let r0 = time_until("the assignment", &w, |m| {
        metric_sum(m, "weir_tasks") == PARTITIONS as f64
    });
    let r1 = time_until("the restore", &w, |m| {
        metric_sum(m, "weir_restore_records_total") as usize >= changelog_records
            && metric_sum(m, "weir_restore_records_remaining") == 0.0
    });
    w.await_ready(Duration::from_secs(60));
    let restore = changelog_records as f64 / (r1 - r0).as_secs_f64();
    let restore_rss = w.peak_rss_bytes();
    assert_eq!(w.stop(), 0);

    // Exactly-once vs at-least-once on the same input, at two commit intervals.
    let mut guarantees = Vec::new();
    for interval in ["100ms", "1s"] {
        for guarantee in ["at_least_once", "exactly_once"] {
            let run = format!("{name}-{guarantee}-{interval}");
            let job = write_job(
                dir.path(),
                &run,
                &input,
                &output,
                &[
                    ("close_idle_after = \"2s\"", "close_idle_after = \"1h\""),
                    (
                        "commit_interval = \"200ms\"",
                        &format!("commit_interval = \"{interval}\""),
                    ),
                    (
                        "guarantee = \"at_least_once\"",
                        &format!("guarantee = \"{guarantee}\""),
                    ),
                ],
            );
            let w = Worker::start(&job, &b, &dir.path().join(&run));
            let t0 = time_until("the first record", &w, |m| {
                metric_sum(m, "weir_records_consumed_total") > 0.0
            });
            let t1 = time_until("every record", &w, |m| {
                metric_sum(m, "weir_records_consumed_total") as usize >= records
            });
            guarantees.push((
                guarantee,
                interval,
                records as f64 / (t1 - t0).as_secs_f64(),
            ));
            assert_eq!(w.stop(), 0);
        }
    }

    let recovery_dynamic = recovery_seconds(&kafka, dir.path(), None);
    let recovery_static = recovery_seconds(&kafka, dir.path(), Some("recovery-worker-1"));

    println!("figure | value");
    println!("records | {records} ({meters} meters, 2 readings each, {PARTITIONS} partitions)");
    println!("bare consumer records/s | {bare:.0}");
    println!(
        "weir flagship records/s (one worker) | {weir:.0}  ({:.2} x bare)",
        weir / bare
    );
    println!(
        "weir peak RSS with {meters} meters of state | {:.1} MiB",
        rss as f64 / 1048576.0
    );
    println!("changelog records | {changelog_records}");
    println!("bare consumer on the changelog records/s | {bare_changelog:.0}");
    println!(
        "full restore records/s | {restore:.0}  ({:.2} x bare on the changelog)",
        restore / bare_changelog
    );
    println!(
        "peak RSS during full restore | {:.1} MiB",
        restore_rss as f64 / 1048576.0
    );
    for pair in guarantees.chunks(2) {
        let ((_, interval, alos), (_, _, eos)) = (pair[0], pair[1]);
        println!("records/s at commit interval {interval} | at-least-once {alos:.0}, exactly-once {eos:.0}  ({:.2} x)", eos / alos);
    }
    println!("SIGKILL + restart -> first new committed result (dynamic membership, 10 s session timeout) | {recovery_dynamic:.2} s");
    println!("SIGKILL + restart -> first new committed result (static membership, --instance-id) | {recovery_static:.2} s");
}

/// SIGKILL a worker while results flow, restart it at once, and return the seconds from the kill to
/// the first result committed after it.
fn recovery_seconds(kafka: &Kafka, dir: &std::path::Path, instance_id: Option<&str>) -> f64 {
    let b = kafka.bootstrap();
    let name = unique("recovery");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, PARTITIONS);
    kafka.create_topic(&output, PARTITIONS);
    let job = write_job(
        dir,
        &name,
        &input,
        &output,
        &[
            ("close_idle_after = \"2s\"", "close_idle_after = \"1h\""),
            ("commit_interval = \"200ms\"", "commit_interval = \"1s\""),
            ("grace = \"5m\"", "grace = \"0s\""),
        ],
    );
    let state = dir.join(&name);
    let env: Vec<(&str, &str)> = instance_id
        .map(|id| ("WEIR_INSTANCE_ID", id))
        .into_iter()
        .collect();
    let w = Worker::start_with(&job, &b, &state, &env);
    let readings: Vec<Reading> = GeneratorSpec {
        meters: 200,
        hours: 60,
        readings_per_hour: 12,
        ..Default::default()
    }
    .readings()
    .collect();
    let (fb, fin) = (b.clone(), input.clone());
    let feeder = std::thread::spawn(move || {
        // One event-time hour every 250 ms: results flow continuously.
        for hour in readings.chunks(200 * 12) {
            produce_readings(&fb, &fin, hour);
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    time_until("results to flow", &w, |m| {
        metric_sum(m, "weir_records_produced_total") > 0.0
    });
    std::thread::sleep(Duration::from_secs(3));
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    w.kill();
    let w = Worker::start_with(&job, &b, &state, &env);
    let first_after = || {
        read_to_end(&b, &output)
            .iter()
            .filter_map(|m| match m.timestamp() {
                Timestamp::CreateTime(t) if t > killed_ms => Some(t),
                _ => None,
            })
            .min()
    };
    await_until(
        Duration::from_secs(120),
        "results after the restart",
        || first_after().is_some(),
    );
    let seconds = (first_after().unwrap() - killed_ms) as f64 / 1000.0;
    feeder.join().unwrap();
    assert_eq!(w.stop(), 0);
    seconds
}
