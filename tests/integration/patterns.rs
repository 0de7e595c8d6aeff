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

/// (meter, session start) -> every result: (end, Wh, readings, peak Wh).
type Sessions = BTreeMap<(String, i64), Vec<(i64, f64, u64, f64)>>;

#[test]
fn real_session_windows_split_consumption_at_30_minutes_of_silence() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique("sessions");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    let dir = tempfile::tempdir().unwrap();
    let job = shipped_job(
        dir.path(),
        "meter-consumption-sessions.toml",
        &[
            (
                "name = \"meter-consumption-sessions\"",
                &format!("name = \"{name}\""),
            ),
            (
                "topics = [\"meter-readings\"]",
                &format!("topics = [\"{input}\"]"),
            ),
            (
                "topic = \"meter-consumption-sessions\"",
                &format!("topic = \"{output}\""),
            ),
            ("close_idle_after = \"10m\"", "close_idle_after = \"2s\""),
        ],
    );
    // Readings every 5 minutes for 8 hours; each meter consumes in bursts separated by stretches
    // of zero readings, some shorter and some longer than the 30-minute gap.
    let mut input_readings: Vec<Reading> = readings(6, 8);
    for r in &mut input_readings {
        let slot = (r.ts_ms / 300_000) as u64;
        let meter: u64 = r.meter_id[6..].parse().unwrap();
        // Zero for 4 to 11 slots (20 to 55 minutes) out of every 24, shifted per meter.
        let phase = (slot + meter * 5) % 24;
        if phase < 4 + meter % 8 {
            r.kwh = 0.0;
        }
    }
    produce_readings(&b, &input, &input_readings);
    let w = Worker::start(&job, &b, &dir.path().join("state"));

    // The oracle, written out: per meter in time order, consuming readings only; a silence of 30
    // minutes or more starts a new session. (start, end) -> (Wh, readings, peak Wh).
    let mut expected: BTreeMap<(String, i64), (i64, f64, u64, f64)> = BTreeMap::new();
    let mut by_meter: BTreeMap<&str, Vec<&Reading>> = BTreeMap::new();
    for r in input_readings.iter().filter(|r| r.kwh > 0.0) {
        by_meter.entry(&r.meter_id).or_default().push(r);
    }
    for (meter, rs) in by_meter {
        let mut current: Option<(i64, i64, f64, u64, f64)> = None;
        for r in rs {
            let wh = r.kwh * 1000.0;
            current = Some(match current {
                Some((s, e, sum, n, max)) if r.ts_ms - e < 1_800_000 => {
                    (s, r.ts_ms, sum + wh, n + 1, max.max(wh))
                }
                Some((s, e, sum, n, max)) => {
                    expected.insert((meter.to_string(), s), (e, sum, n, max));
                    (r.ts_ms, r.ts_ms, wh, 1, wh)
                }
                None => (r.ts_ms, r.ts_ms, wh, 1, wh),
            });
        }
        let (s, e, sum, n, max) = current.unwrap();
        expected.insert((meter.to_string(), s), (e, sum, n, max));
    }
    assert!(
        expected.len() > 6 * 3,
        "the data really has several sessions per meter"
    );
    let results = || -> Sessions {
        let mut out = Sessions::new();
        for m in read_to_end(&b, &output) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.entry((
                v["meter_id"].as_str().unwrap().to_string(),
                v["window_start_ms"].as_i64().unwrap(),
            ))
            .or_default()
            .push((
                v["window_end_ms"].as_i64().unwrap(),
                v["sum"].as_f64().unwrap(),
                v["count"].as_u64().unwrap(),
                v["max"].as_f64().unwrap(),
            ));
        }
        out
    };
    await_workers(LONG, "every session closed", &[&w], || {
        results().len() >= expected.len()
    });
    let got = results();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, (end, sum, n, max)) in &expected {
        let emitted = &got[k];
        assert_eq!(emitted.len(), 1, "{k:?}: one result per session (on_close)");
        let (e_end, e_sum, e_n, e_max) = emitted[0];
        assert_eq!((e_end, e_n), (*end, *n), "{k:?}");
        assert!(
            (e_sum - sum).abs() < 1e-6 && (e_max - max).abs() < 1e-9,
            "{k:?}: {e_sum} vs {sum}, {e_max} vs {max}"
        );
    }
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_key_by_repartitions_unkeyed_readings_so_each_meter_is_aggregated_once() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique("rekeyed");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 3);
    kafka.create_topic(&output, 3);
    let dir = tempfile::tempdir().unwrap();
    let job = shipped_job(
        dir.path(),
        "meter-hourly-average-rekeyed.toml",
        &[
            (
                "name = \"meter-hourly-average-rekeyed\"",
                &format!("name = \"{name}\""),
            ),
            (
                "topics = [\"gateway-readings\"]",
                &format!("topics = [\"{input}\"]"),
            ),
            (
                "topic = \"meter-hourly-averages-rekeyed\"",
                &format!("topic = \"{output}\""),
            ),
            ("close_idle_after = \"10m\"", "close_idle_after = \"2s\""),
            // All input is there before the workers start, so one input partition may be hours
            // of event time ahead of another: the grace covers that skew (see the job file).
            ("grace = \"1h\"", "grace = \"6h\""),
        ],
    );
    // No key, and every meter's readings spread over all three partitions (reading n of a meter
    // goes to partition (n + meter) mod 3).
    let input_readings = readings(9, 4);
    let p = producer(&b);
    for (i, r) in input_readings.iter().enumerate() {
        send(
            &p,
            &input,
            None,
            &r.to_json(),
            Some(((i / 9 + i) % 3) as i32),
        );
    }
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
    let w1 = Worker::start(&job, &b, &dir.path().join("w1"));
    let w2 = Worker::start(&job, &b, &dir.path().join("w2"));
    let expected = oracle(&input_readings);
    let results = || parse_outputs(&read_to_end(&b, &output));
    await_workers(LONG, "every meter-hour", &[&w1, &w2], || {
        results().len() >= expected.len()
    });
    let got = results();
    let problems = compare_emissions(&got, &expected);
    assert!(problems.is_empty(), "{problems:?}");
    for (k, v) in &got {
        assert_eq!(
            v.len(),
            1,
            "{k:?}: one result per meter and hour, from the one task owning the meter"
        );
    }
    let repartition = format!("{name}-repartition");
    assert_eq!(
        partition_count(&b, &repartition),
        Some(3),
        "the repartition topic is co-partitioned with the input"
    );
    assert_eq!(w1.stop(), 0);
    assert_eq!(w2.stop(), 0);
}
