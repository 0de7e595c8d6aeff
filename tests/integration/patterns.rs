//! The shipped job files for the patterns of the talk, each on the real broker: the simple queue
//! (audit, order kept), fanout (audit and billing in their own groups, each sees every reading), and
//! hopping windows.

use crate::harness::*;
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_engine::generator::{GeneratorSpec, Reading};

const LONG: Duration = Duration::from_secs(120);

/// A shipped job file with its name, topics and the given strings replaced.
fn shipped_job(dir: &Path, file: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(crate::harness::repo_root().join("jobs").join(file)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn audit_job(dir: &Path, name: &str, input: &str, output: &str, rejected: &str) -> PathBuf {
    shipped_job(
        dir,
        "meter-audit.toml",
        &[
            ("name = \"meter-audit\"", &format!("name = \"{name}\"")),
            (
                "topics = [\"meter-readings-audit\"]",
                &format!("topics = [\"{input}\"]"),
            ),
            (
                "topic = \"meter-readings-audited\"",
                &format!("topic = \"{output}\""),
            ),
            (
                "dead_letter_topic = \"meter-readings-audit-rejected\"",
                &format!("dead_letter_topic = \"{rejected}\""),
            ),
        ],
    )
}

fn readings(meters: u32, hours: u32) -> Vec<Reading> {
    GeneratorSpec {
        meters,
        hours,
        readings_per_hour: 12,
        ..Default::default()
    }
    .readings()
    .collect()
}

/// Audited records, in topic order: (meter, ts, audited_by, source_offset).
fn audited(b: &str, topic: &str) -> Vec<(String, i64, String, i64)> {
    read_to_end(b, topic)
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            (
                v["meter_id"].as_str().unwrap().to_string(),
                v["ts"].as_i64().unwrap(),
                v["audited_by"].as_str().unwrap_or("").to_string(),
                v["source_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn real_the_audit_queue_forwards_every_reading_in_order_with_an_audit_stamp() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique("audit");
    let (input, output, rejected) = (
        format!("{name}-in"),
        format!("{name}-out"),
        format!("{name}-rejected"),
    );
    for t in [&input, &output, &rejected] {
        kafka.create_topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let input_readings = readings(10, 5);
    produce_readings(&b, &input, &input_readings);
    let w = Worker::start(
        &audit_job(dir.path(), &name, &input, &output, &rejected),
        &b,
        &dir.path().join("state"),
    );
    await_workers(LONG, "every reading audited", &[&w], || {
        group_drained(&b, &name, &input)
    });
    let out = audited(&b, &output);
    assert_eq!(out.len(), input_readings.len());
    for (i, (r, (meter, ts, by, offset))) in input_readings.iter().zip(&out).enumerate() {
        assert_eq!((meter, *ts), (&r.meter_id, r.ts_ms), "order kept at {i}");
        assert_eq!(by, "weir/meter-audit");
        assert_eq!(*offset, i as i64, "provenance: the source offset");
    }
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_fanout_audit_and_billing_run_in_their_own_groups_and_each_sees_every_reading() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let base = unique("fanout");
    let readings_topic = format!("{base}-readings");
    let (audited_topic, rejected, totals) = (
        format!("{base}-audited"),
        format!("{base}-rejected"),
        format!("{base}-totals"),
    );
    kafka.create_topic(&readings_topic, 1);
    for t in [&audited_topic, &rejected, &totals] {
        kafka.create_topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let (audit_name, billing_name) = (format!("{base}-audit"), format!("{base}-billing"));
    let audit = audit_job(
        dir.path(),
        &audit_name,
        &readings_topic,
        &audited_topic,
        &rejected,
    );
    let billing = shipped_job(
        dir.path(),
        "billing-daily-total.toml",
        &[
            (
                "name = \"billing-daily-total\"",
                &format!("name = \"{billing_name}\""),
            ),
            (
                "topics = [\"meter-readings\"]",
                &format!("topics = [\"{readings_topic}\"]"),
            ),
            (
                "topic = \"meter-daily-totals\"",
                &format!("topic = \"{totals}\""),
            ),
            ("close_idle_after = \"1h\"", "close_idle_after = \"2s\""),
        ],
    );
    // Two days of readings.
    let input_readings = readings(8, 48);
    let a = Worker::start(&audit, &b, &dir.path().join("audit"));
    let w = Worker::start(&billing, &b, &dir.path().join("billing"));
    produce_readings(&b, &readings_topic, &input_readings);
    await_workers(LONG, "both groups to read everything", &[&a, &w], || {
        group_drained(&b, &audit_name, &readings_topic)
            && group_drained(&b, &billing_name, &readings_topic)
    });
    assert_eq!(
        audited(&b, &audited_topic).len(),
        input_readings.len(),
        "audit saw every reading"
    );

    let mut expected: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for r in &input_readings {
        let e = expected
            .entry((r.meter_id.clone(), r.ts_ms - r.ts_ms.rem_euclid(86_400_000)))
            .or_default();
        e.0 += 1;
        e.1 += r.kwh;
    }
    let totals_now = || -> BTreeMap<(String, i64), (u64, f64)> {
        read_to_end(&b, &totals)
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                (
                    (
                        v["meter_id"].as_str().unwrap().to_string(),
                        v["window_start_ms"].as_i64().unwrap(),
                    ),
                    (v["count"].as_u64().unwrap(), v["sum"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    await_workers(LONG, "every daily total", &[&w], || {
        totals_now().len() == expected.len()
    });
    for (k, (count, sum)) in totals_now() {
        let (want_count, want_sum) = expected[&k];
        assert_eq!(count, want_count, "{k:?}: billing saw every reading");
        assert!((sum - want_sum).abs() < 1e-9, "{k:?}: {sum} vs {want_sum}");
    }
    assert_eq!(a.stop(), 0);
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_hopping_windows_give_the_last_hour_average_every_15_minutes() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique("hopping");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    let dir = tempfile::tempdir().unwrap();
    let job = shipped_job(
        dir.path(),
        "meter-hourly-average-hopping.toml",
        &[
            (
                "name = \"meter-hourly-average-hopping\"",
                &format!("name = \"{name}\""),
            ),
            (
                "topics = [\"meter-readings\"]",
                &format!("topics = [\"{input}\"]"),
            ),
            (
                "topic = \"meter-rolling-hour-averages\"",
                &format!("topic = \"{output}\""),
            ),
            ("close_idle_after = \"10m\"", "close_idle_after = \"2s\""),
        ],
    );
    let input_readings = readings(6, 3);
    produce_readings(&b, &input, &input_readings);
    let w = Worker::start(&job, &b, &dir.path().join("state"));

    // The oracle: every 15-minute-aligned hour containing the reading.
    const Q: i64 = 900_000;
    let mut expected: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for r in &input_readings {
        let last = r.ts_ms - r.ts_ms.rem_euclid(Q);
        for start in [last - 3 * Q, last - 2 * Q, last - Q, last] {
            let e = expected.entry((r.meter_id.clone(), start)).or_default();
            e.0 += 1;
            e.1 += r.kwh;
        }
    }
    let results = || parse_outputs(&read_to_end(&b, &output));
    await_workers(LONG, "every rolling hour", &[&w], || {
        results().len() == expected.len()
    });
    for (k, emitted) in results() {
        let (count, sum) = expected[&k];
        assert_eq!(emitted.len(), 1, "{k:?}: one result per window (on_close)");
        assert_eq!(emitted[0].count, count, "{k:?}");
        assert!((emitted[0].avg - sum / count as f64).abs() < 1e-9, "{k:?}");
    }
    assert_eq!(w.stop(), 0);
}
