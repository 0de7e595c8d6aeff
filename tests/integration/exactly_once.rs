//! Exactly-once on the real broker: outputs read with read_committed equal the oracle exactly — no
//! window missing, none duplicated — through kills, crashes at every step of the transactional
//! commit, and a zombie worker; restores replay only the changelog tail.

use crate::harness::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use std::time::Duration;
use weir_engine::generator::{GeneratorSpec, Reading};

const PARTITIONS: i32 = 4;
const LONG: Duration = Duration::from_secs(180);

struct Eos {
    b: String,
    name: String,
    input: String,
    output: String,
    dir: tempfile::TempDir,
    readings: Vec<Reading>,
}

fn eos(prefix: &str, meters: u32, hours: u32) -> Eos {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique(prefix);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, PARTITIONS);
    kafka.create_topic(&output, PARTITIONS);
    let readings = GeneratorSpec {
        meters,
        hours,
        readings_per_hour: 12,
        ..Default::default()
    }
    .readings()
    .collect();
    Eos {
        b,
        name,
        input,
        output,
        dir: tempfile::tempdir().unwrap(),
        readings,
    }
}

impl Eos {
    fn job(&self) -> std::path::PathBuf {
        write_job(
            self.dir.path(),
            &self.name,
            &self.input,
            &self.output,
            &[
                (
                    "guarantee = \"at_least_once\"",
                    "guarantee = \"exactly_once\"",
                ),
                ("close_idle_after = \"2s\"", "close_idle_after = \"1h\""),
            ],
        )
    }

    fn start(&self, instance: &str, extra: &[(&str, &str)]) -> Worker {
        let mut env = vec![
            ("WEIR_INSTANCE_ID", instance),
            ("WEIR_SESSION_TIMEOUT", "6s"),
        ];
        env.extend_from_slice(extra);
        Worker::start_with(&self.job(), &self.b, &self.dir.path().join(instance), &env)
    }

    /// Feeds the readings in small batches while workers run.
    fn feed(&self) -> std::thread::JoinHandle<()> {
        let (b, input, readings) = (self.b.clone(), self.input.clone(), self.readings.clone());
        std::thread::spawn(move || {
            for chunk in readings.chunks(100) {
                produce_readings(&b, &input, chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    fn sentinels(&self) {
        let p = producer(&self.b);
        let ts = self.readings.iter().map(|r| r.ts_ms).max().unwrap() + 86_400_000;
        for part in 0..PARTITIONS {
            let payload = Reading {
                meter_id: format!("sentinel-{part}"),
                ts_ms: ts,
                kwh: 0.0,
            }
            .to_json();
            send(
                &p,
                &self.input,
                Some(format!("sentinel-{part}").as_bytes()),
                &payload,
                Some(part),
            );
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    /// Waits for every expected window, then asserts each was emitted exactly once with the
    /// oracle's value.
    fn assert_exact(&self, workers: &[&Worker]) {
        let expected = oracle(&self.readings);
        let outputs = || -> Outputs {
            parse_outputs(&read_to_end(&self.b, &self.output))
                .into_iter()
                .filter(|((m, _), _)| !m.starts_with("sentinel-"))
                .collect()
        };
        await_workers(LONG, "every window", workers, || {
            expected.keys().all(|k| outputs().contains_key(k))
        });
        let got = outputs();
        let duplicated: Vec<_> = got
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (k.clone(), v.len()))
            .collect();
        assert!(
            duplicated.is_empty(),
            "duplicated windows under exactly-once: {duplicated:?}"
        );
        let wrong = compare_final(&got, &expected);
        assert!(
            wrong.is_empty(),
            "windows differing from the oracle: {wrong:?}"
        );
    }

    /// No transaction left open: on every output and changelog partition, the last stable offset
    /// (read_committed end) equals the high watermark.
    fn assert_no_open_transaction(&self) {
        let uncommitted: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.b)
            .set("isolation.level", "read_uncommitted")
            .create()
            .unwrap();
        let committed: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.b)
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        for topic in [
            self.output.clone(),
            format!("{}-hourly_avg-changelog", self.name),
        ] {
            for p in 0..PARTITIONS {
                let (_, high) = uncommitted
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap();
                let (_, stable) = committed
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap();
                assert_eq!(stable, high, "{topic}[{p}]: a transaction is still open");
            }
        }
    }
}

fn wipes(w: &Worker) -> f64 {
    metric_sum(&w.metrics(), "weir_restore_wipes_total")
}

#[test]
fn real_exactly_once_output_is_exact_through_three_kills_and_restores_replay_only_the_tail() {
    let s = eos("eos-kill", 30, 8);
    let feeder = s.feed();
    let mut w = s.start("w1", &[]);
    for kill in 1..=3 {
        let target = s.readings.len() / 4 * kill;
        let input = s.input.clone();
        await_workers(LONG, "the stream to move on", &[&w], || {
            (0..PARTITIONS)
                .map(|p| committed_offset(&s.b, &s.name, &input, p).unwrap_or(0))
                .sum::<i64>() as usize
                >= target.min(s.readings.len() - 1)
        });
        w.kill();
        w = s.start("w1", &[]);
        w.await_ready(LONG);
        assert_eq!(wipes(&w), 0.0, "kill {kill}: a crash needs no wipe");
        let changelog_total: i64 = (0..PARTITIONS)
            .map(|p| end_offset(&s.b, &format!("{}-hourly_avg-changelog", s.name), p))
            .sum();
        assert!(
            metric_sum(&w.metrics(), "weir_restore_records_total") < changelog_total as f64,
            "kill {kill}: restore replays the tail, not everything"
        );
    }
    feeder.join().unwrap();
    s.sentinels();
    s.assert_exact(&[&w]);
    assert_eq!(w.stop(), 0);
    s.assert_no_open_transaction();
}

#[test]
fn real_exactly_once_a_crash_at_each_step_of_the_transactional_commit_leaves_the_output_exact() {
    for failpoint in [
        "eos_before_send_offsets",
        "eos_before_commit",
        "eos_after_commit",
        "before_state_apply",
        "before_checkpoint",
    ] {
        let s = eos("eos-fp", 12, 4);
        let feeder = s.feed();
        let mut first = s.start("w1", &[("WEIR_FAILPOINT", &format!("{failpoint}:4"))]);
        assert_ne!(
            first.wait(LONG),
            0,
            "{failpoint}: the failpoint aborts the worker"
        );
        assert!(first
            .log_text()
            .contains(&format!("failpoint {failpoint}: aborting")));
        let second = s.start("w1", &[]);
        feeder.join().unwrap();
        s.sentinels();
        s.assert_exact(&[&second]);
        assert_eq!(wipes(&second), 0.0, "{failpoint}: no wipe");
        assert_eq!(second.stop(), 0);
        s.assert_no_open_transaction();
    }
}

#[test]
fn real_exactly_once_a_zombie_worker_is_fenced_and_commits_nothing() {
    let s = eos("eos-zombie", 20, 6);
    let halves: Vec<&[Reading]> = s.readings.chunks(s.readings.len().div_ceil(2)).collect();
    produce_readings(&s.b, &s.input, halves[0]);
    let zombie = s.start("a", &[]);
    await_workers(LONG, "the first half to be committed", &[&zombie], || {
        group_drained(&s.b, &s.name, &s.input)
    });
    let other = s.start("b", &[]);
    await_workers(
        LONG,
        "the group to split the partitions",
        &[&zombie, &other],
        || metric_sum(&other.metrics(), "weir_tasks") >= 1.0,
    );

    // Freeze A past its session timeout: B takes every partition.
    unsafe { libc::kill(zombie.child.id() as i32, libc::SIGSTOP) };
    await_workers(LONG, "B to own every partition", &[&other], || {
        metric_sum(&other.metrics(), "weir_tasks") == PARTITIONS as f64 && other.ready()
    });
    produce_readings(&s.b, &s.input, halves[1]);
    s.sentinels();
    // A wakes up with a transaction it believes open and records it believes it owns.
    unsafe { libc::kill(zombie.child.id() as i32, libc::SIGCONT) };
    s.assert_exact(&[&zombie, &other]);
    await_workers(
        LONG,
        "the zombie to learn it was replaced",
        &[&zombie],
        || {
            let log = zombie.log_text().to_lowercase();
            log.contains("transaction aborted")
                || log.contains("lost=true")
                || log.contains("fenced")
        },
    );
    drop(zombie);
    let other_log = other.log.clone();
    assert_eq!(
        other.stop(),
        0,
        "{}",
        std::fs::read_to_string(other_log).unwrap_or_default()
    );
    s.assert_no_open_transaction();
}
