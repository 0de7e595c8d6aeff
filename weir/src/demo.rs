//! `weir demo`: zero set-up. An in-process mock Kafka cluster, a generator of meter readings, the
//! flagship job run by the real worker, its hourly averages printed as they arrive, and a final
//! check of every average against what the generator produced.
//!
//! The mock cluster is fine for this (small data, at-least-once) and for nothing that must prove
//! restore or exactly-once; the test suite does that against a real broker.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_config::{parse_job, Operator, RuntimeConfig, RuntimeOverrides};
use weir_engine::generator::{GeneratorSpec, Reading};
use weir_engine::health::Health;
use weir_engine::metrics::Metrics;
use weir_engine::worker::{run_worker, WorkerArgs};

const PARTITIONS: i32 = 4;

/// An hourly result as the sink carries it.
#[derive(Debug, Clone, PartialEq)]
struct Hourly {
    count: u64,
    avg: f64,
    min: f64,
    max: f64,
}

pub fn run(duration: Duration, http: Option<String>, meters: u32, hours: u32) -> ExitCode {
    match demo(duration, http, meters, hours) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weir demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo(duration: Duration, http: Option<String>, meters: u32, hours: u32) -> anyhow::Result<bool> {
    let cluster = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let mut job = parse_job(
        "jobs/meter-hourly-average.toml",
        weir_engine::FLAGSHIP_JOB,
        &|_| None,
    )?;
    // The demo compresses hours of event time into seconds: close a silent partition's windows
    // after 2 s of wall-clock silence, and commit often.
    let idle = Duration::from_secs(2);
    for op in job.pipeline.iter_mut() {
        if let Operator::Window(w) = op.get_mut() {
            w.close_idle_after = Some(weir_config::Duration(idle));
        }
    }
    job.processing.commit_interval = weir_config::Duration::from_millis(500);
    let input = job.source.topics[0].clone();
    let output = job
        .sink
        .topic
        .clone()
        .expect("the flagship job has a kafka sink");
    let changelog = job.changelog_topic().expect("the flagship job keeps state");
    // The mock cluster has no CreateTopics: create every topic up front.
    for t in [&input, &output, &changelog] {
        cluster.create_topic(t, PARTITIONS, 1)?;
    }
    let state_dir = std::env::temp_dir().join(format!("weir-demo-{}", std::process::id()));
    let runtime = RuntimeConfig::resolve(
        &job,
        &RuntimeOverrides {
            brokers: Some(bootstrap.clone()),
            state_dir: Some(state_dir.display().to_string()),
            http: http.clone(),
            instance_id: None,
        },
        &|_| None,
    )
    .map_err(|e| anyhow::anyhow!(e))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::new(job.name.get_ref()));
    let health = Arc::new(Health::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    crate::serve::on_termination(&rt, shutdown.clone());
    crate::serve::start_http(&rt, http.as_deref(), metrics.clone(), health.clone())?;

    let spec = GeneratorSpec {
        meters,
        hours,
        ..GeneratorSpec::default()
    };
    println!(
        "weir demo: {} meters x {} hours of readings ({} records) through an in-process Kafka ({PARTITIONS} partitions), for {}s",
        spec.meters,
        spec.hours,
        spec.total(),
        duration.as_secs()
    );
    let worker = {
        let (job, metrics, health, shutdown) = (
            job.clone(),
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        );
        std::thread::spawn(move || {
            run_worker(WorkerArgs {
                job,
                runtime,
                metrics,
                health,
                shutdown,
            })
        })
    };

    // Produce at a steady rate over the first half of the run, so windows close while it runs.
    let producer_spec = spec.clone();
    let producer_bootstrap = bootstrap.clone();
    let produce_for = duration / 2;
    let producer_topic = input.clone();
    let generator = std::thread::spawn(move || -> anyhow::Result<Vec<Reading>> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &producer_bootstrap)
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()?;
        let total = producer_spec.total().max(1);
        let started = Instant::now();
        let mut sent = Vec::with_capacity(total as usize);
        for (i, r) in producer_spec.readings().enumerate() {
            let due = produce_for.mul_f64(i as f64 / total as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let payload = r.to_json();
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(&producer_topic)
                        .key(r.meter_id.as_bytes())
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)?;
            sent.push(r);
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(sent)
    });

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "weir-demo-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&output, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut results: BTreeMap<(String, i64), Vec<Hourly>> = BTreeMap::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !shutdown.load(Ordering::Relaxed) {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        let v: serde_json::Value = serde_json::from_slice(msg.payload().unwrap_or_default())?;
        let meter = v["meter_id"].as_str().unwrap_or_default().to_string();
        let hourly = Hourly {
            count: v["count"].as_u64().unwrap_or(0),
            avg: v["avg"].as_f64().unwrap_or(f64::NAN),
            min: v["min"].as_f64().unwrap_or(f64::NAN),
            max: v["max"].as_f64().unwrap_or(f64::NAN),
        };
        println!(
            "{meter}  {}  avg {:.4} kWh  ({} readings, min {:.3}, max {:.3})",
            v["window_start"].as_str().unwrap_or("?"),
            hourly.avg,
            hourly.count,
            hourly.min,
            hourly.max
        );
        results
            .entry((meter, v["window_start_ms"].as_i64().unwrap_or(0)))
            .or_default()
            .push(hourly);
    }
    shutdown.store(true, Ordering::Relaxed);
    let sent = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    let worker_result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the worker panicked"))?;
    let _ = std::fs::remove_dir_all(&state_dir);
    worker_result?;
    // Every client goes before the cluster it talks to (a client left behind logs connection
    // errors once the cluster is gone), and the verdict is the last line.
    drop(consumer);
    drop(cluster);
    Ok(verify(&sent, &results))
}

/// Compares the job's results with averages computed here, from the readings the generator sent.
fn verify(sent: &[Reading], results: &BTreeMap<(String, i64), Vec<Hourly>>) -> bool {
    let mut expected: BTreeMap<(String, i64), (u64, f64, f64, f64)> = BTreeMap::new();
    for r in sent {
        let hour = r.ts_ms - r.ts_ms.rem_euclid(3_600_000);
        let e = expected.entry((r.meter_id.clone(), hour)).or_insert((
            0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        e.0 += 1;
        e.1 += r.kwh;
        e.2 = e.2.min(r.kwh);
        e.3 = e.3.max(r.kwh);
    }
    let mut problems = Vec::new();
    for (key, (count, sum, min, max)) in &expected {
        match results.get(key).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!(
                "missing: {} hour starting {}",
                key.0,
                weir_operators::time::format_rfc3339_ms(key.1)
            )),
            Some([got]) => {
                let avg = sum / *count as f64;
                if got.count != *count
                    || (got.avg - avg).abs() > 1e-9
                    || got.min != *min
                    || got.max != *max
                {
                    problems.push(format!("wrong: {} {}: got {got:?}, expected count {count} avg {avg} min {min} max {max}", key.0, weir_operators::time::format_rfc3339_ms(key.1)));
                }
            }
            Some(many) => problems.push(format!(
                "duplicated: {} {} emitted {} times",
                key.0,
                weir_operators::time::format_rfc3339_ms(key.1),
                many.len()
            )),
        }
    }
    for key in results.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!(
            "unexpected: {} {}",
            key.0,
            weir_operators::time::format_rfc3339_ms(key.1)
        ));
    }
    if problems.is_empty() {
        println!(
            "verified {} windows: every hourly average matches the generator's",
            expected.len()
        );
        true
    } else {
        println!(
            "verification FAILED: {} of {} windows wrong",
            problems.len(),
            expected.len()
        );
        for p in problems.iter().take(20) {
            println!("  {p}");
        }
        false
    }
}
