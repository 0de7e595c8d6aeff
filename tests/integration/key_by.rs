//! `key_by` under at-least-once on the real broker: a first hop that crashes produces its
//! uncommitted repartition records again, and the second hop must apply each reading once.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_engine::generator::{GeneratorSpec, Reading};

const LONG: Duration = Duration::from_secs(240);
const PARTITIONS: i32 = 3;

fn rekeyed_at_least_once(dir: &Path, name: &str, input: &str, output: &str) -> PathBuf {
    let mut text =
        std::fs::read_to_string(repo_root().join("jobs/meter-hourly-average-rekeyed.toml"))
            .unwrap();
    for (from, to) in [
        (
            "name = \"meter-hourly-average-rekeyed\"",
            format!("name = \"{name}\""),
        ),
        (
            "topics = [\"gateway-readings\"]",
            format!("topics = [\"{input}\"]"),
        ),
        (
            "topic = \"meter-hourly-averages-rekeyed\"",
            format!("topic = \"{output}\""),
        ),
        (
            "guarantee = \"exactly_once\"",
            "guarantee = \"at_least_once\"".into(),
        ),
        // The last hour closes by the idle close. Its silence must outlast the tasks' restores
        // after a kill: a task that restored first and closed its windows while another still
        // restores would see the other's re-keyed records late (the idle rule looks at a task's own
        // partitions, not at the first hop feeding it: a known gap of the idle close in re-keyed
        // jobs, to be fixed with its own test).
        (
            "close_idle_after = \"10m\"",
            "close_idle_after = \"10s\"".into(),
        ),
        // Longer than the whole input: a first hop catching up on the backlog a kill left may run
        // hours of event time ahead on one partition (see the job file); here no reading may be
        // late, so a wrong count can only be a reading lost or counted twice.
        ("grace = \"1h\"", "grace = \"12h\"".into()),
    ] {
        assert!(text.contains(from), "the rekeyed job has no {from:?}");
        text = text.replace(from, &to);
    }
    let path = dir.join("rekeyed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh input and output topic, the re-keyed job on them, and its readings.
struct Rekeyed {
    kafka: Kafka,
    b: String,
    name: String,
    input: String,
    output: String,
    dir: tempfile::TempDir,
    job: PathBuf,
    readings: Vec<Reading>,
}

fn rekeyed(prefix: &str, meters: u32, hours: u32) -> Rekeyed {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique(prefix);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, PARTITIONS);
    kafka.create_topic(&output, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let job = rekeyed_at_least_once(dir.path(), &name, &input, &output);
    let readings = GeneratorSpec {
        meters,
        hours,
        readings_per_hour: 12,
        ..Default::default()
    }
    .readings()
    .collect();
    Rekeyed {
        kafka,
        b,
        name,
        input,
        output,
        dir,
        job,
        readings,
    }
}

#[test]
fn real_key_by_at_least_once_counts_every_reading_once_through_three_kills() {
    let meters = 40;
    let Rekeyed {
        kafka: _kafka,
        b,
        name,
        input,
        output,
        dir,
        job,
        readings,
    } = rekeyed("rekeyed-alos", meters, 8);
    // Unkeyed, each meter's readings spread over every partition, fed while the worker runs.
    let feeder = {
        let (b, input, readings) = (b.clone(), input.clone(), readings.clone());
        std::thread::spawn(move || {
            let p = producer(&b);
            for (n, chunk) in readings.chunks(meters as usize).enumerate() {
                for (i, r) in chunk.iter().enumerate() {
                    send(
                        &p,
                        &input,
                        None,
                        &r.to_json(),
                        Some(((n + i) % PARTITIONS as usize) as i32),
                    );
                }
                rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };
    let state = dir.path().join("w");
    let mut w = Worker::start(&job, &b, &state);
    for kill in 1..=3 {
        let target = readings.len() / 4 * kill;
        await_workers(LONG, "the first hop to move on", &[&w], || {
            (0..PARTITIONS)
                .map(|p| committed_offset(&b, &name, &input, p).unwrap_or(0))
                .sum::<i64>() as usize
                >= target
        });
        w.kill();
        w = Worker::start(&job, &b, &state);
    }
    feeder.join().unwrap();
    let expected = oracle(&readings);
    let results = || parse_outputs(&read_to_end(&b, &output));
    await_workers(LONG, "every meter-hour", &[&w], || {
        expected.keys().all(|k| results().contains_key(k))
    });
    // At-least-once may emit a window twice after a crash, never with another value: every
    // emission is compared, and a reading counted twice shows as a wrong count.
    let problems = compare_emissions(&results(), &expected);
    let metrics = w.metrics();
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}\nlate {}, repartition duplicates skipped {}\n{}",
        problems.len(),
        &problems[..problems.len().min(5)],
        metric_sum(&metrics, "weir_records_late_total"),
        metric_sum(&metrics, "weir_repartition_duplicates_total"),
        w.log_text()
    );
    assert_eq!(w.stop(), 0);
}

/// Under the consumer group protocol (KIP-848) the coordinator assigns: its `range` assignor must
/// give one worker partition p of both the input and the repartition topic, or tasks would read
/// half their records. A second worker joins while readings flow (an incremental rebalance), both
/// end with tasks, and every emission equals the oracle.
#[test]
fn real_key_by_under_the_consumer_group_protocol_keeps_tasks_co_partitioned() {
    let Rekeyed {
        kafka: _kafka,
        b,
        name,
        input,
        output,
        dir,
        job,
        readings,
    } = rekeyed("rekeyed-kip848", 30, 6);
    let env = [("WEIR_GROUP_PROTOCOL", "consumer")];
    let first = Worker::start_with(&job, &b, &dir.path().join("w1"), &env);
    first.await_ready(LONG);
    let half = readings.len() / 2;
    produce_readings(&b, &input, &readings[..half]);
    await_workers(LONG, "the first half read", &[&first], || {
        (0..PARTITIONS)
            .map(|p| committed_offset(&b, &name, &input, p).unwrap_or(0))
            .sum::<i64>() as usize
            >= half
    });
    let second = Worker::start_with(&job, &b, &dir.path().join("w2"), &env);
    let running = |w: &Worker| {
        metric_by_partition(&w.metrics(), "weir_task_state")
            .values()
            .filter(|s| **s == 2.0)
            .count()
    };
    await_workers(
        LONG,
        "both workers running tasks",
        &[&first, &second],
        || {
            running(&first) > 0
                && running(&second) > 0
                && running(&first) + running(&second) == PARTITIONS as usize
        },
    );
    produce_readings(&b, &input, &readings[half..]);
    let expected = oracle(&readings);
    let results = || parse_outputs(&read_to_end(&b, &output));
    await_workers(LONG, "every meter-hour", &[&first, &second], || {
        expected.keys().all(|k| results().contains_key(k))
    });
    let problems = compare_emissions(&results(), &expected);
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}\n{}\n{}",
        problems.len(),
        &problems[..problems.len().min(5)],
        first.log_text(),
        second.log_text()
    );
    assert!(
        first.log_text().contains("group_protocol=\"consumer\"")
            || first.log_text().contains("group_protocol=consumer"),
        "{}",
        first.log_text()
    );
    assert_eq!(second.stop(), 0);
    assert_eq!(first.stop(), 0);
}
