//! The core engine against the real broker: results equal an oracle computed from the input alone,
//! through partition moves, crashes, warm restarts, damaged checkpoints and bad records.

use crate::harness::*;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir_engine::generator::{GeneratorSpec, Reading};

const PARTITIONS: i32 = 4;
const LONG: Duration = Duration::from_secs(120);

fn consumed(w: &Worker) -> f64 {
    metric_sum(&w.metrics(), "weir_records_consumed_total")
}

fn spec(meters: u32, hours: u32) -> GeneratorSpec {
    GeneratorSpec {
        meters,
        hours,
        readings_per_hour: 12,
        ..GeneratorSpec::default()
    }
}

#[test]
fn real_one_worker_emits_one_result_per_meter_and_hour_equal_to_the_oracle() {
    let s = setup("one", PARTITIONS, spec(50, 4));
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let worker = Worker::start(&s.job(&[]), &s.bootstrap, &s.state("a"));
    let expected = oracle(&s.readings);
    // No sentinels: the last hour closes through the wall-clock idle rule.
    let outputs = s.await_results_equal_oracle(&expected, &[&worker]);
    assert!(
        outputs.values().all(|v| v.len() == 1),
        "a clean run emits each window once (on_close)"
    );
    assert_eq!(consumed(&worker) as usize, s.readings.len());
    assert_eq!(worker.stop(), 0);
}

#[test]
fn real_partitions_move_with_their_state_when_a_worker_joins_and_another_leaves() {
    let s = setup("move", PARTITIONS, spec(40, 6));
    let job = s.job_without_idle_close();
    let thirds: Vec<&[Reading]> = s.readings.chunks(s.readings.len().div_ceil(3)).collect();
    let a = Worker::start(&job, &s.bootstrap, &s.state("a"));
    produce_readings(&s.bootstrap, &s.input, thirds[0]);
    await_workers(LONG, "worker A to process the first third", &[&a], || {
        consumed(&a) as usize >= thirds[0].len()
    });

    let b = Worker::start(&job, &s.bootstrap, &s.state("b"));
    await_workers(LONG, "B to take over some partitions", &[&a, &b], || {
        metric_sum(&b.metrics(), "weir_tasks") >= 1.0 && b.ready()
    });
    assert!(
        metric_sum(&b.metrics(), "weir_restore_records_total") > 0.0,
        "B restored A's state for the partitions it took"
    );
    produce_readings(&s.bootstrap, &s.input, thirds[1]);
    await_workers(
        LONG,
        "A and B to process the second third",
        &[&a, &b],
        || group_drained(&s.bootstrap, &s.name, &s.input),
    );

    assert_eq!(
        a.stop(),
        0,
        "SIGTERM: commit, checkpoint, leave the group, exit 0"
    );
    await_workers(LONG, "B to own every partition", &[&b], || {
        metric_sum(&b.metrics(), "weir_tasks") == PARTITIONS as f64 && b.ready()
    });
    produce_readings(&s.bootstrap, &s.input, thirds[2]);
    s.send_sentinels(PARTITIONS);
    s.await_results_equal_oracle(&oracle(&s.readings), &[&b]);
    assert_eq!(b.stop(), 0);
}

#[test]
fn real_a_killed_worker_restarts_and_its_results_equal_the_oracle() {
    let s = setup("crash", PARTITIONS, spec(40, 6));
    let job = s.job_without_idle_close();
    let state = s.state("a");
    // Input arrives while the worker runs, in small steady batches.
    let feeder = s.feed(120);
    let first = Worker::start(&job, &s.bootstrap, &state);
    await_until(LONG, "the worker to be mid-stream", || {
        consumed(&first) as usize >= s.readings.len() / 3
    });
    first.kill();
    let second = Worker::start(&job, &s.bootstrap, &state);
    feeder.join().unwrap();
    s.send_sentinels(PARTITIONS);
    let expected = oracle(&s.readings);
    let outputs = s.await_results_equal_oracle(&expected, &[&second]);
    // Duplicates are re-emissions of the same final value, never a partial one.
    for (k, emitted) in &outputs {
        for h in emitted {
            let want = &expected[k];
            assert!(
                h.count == want.count && (h.avg - want.avg).abs() < 1e-9,
                "{k:?} emitted {h:?}, want {want:?}"
            );
        }
    }
    assert_eq!(second.stop(), 0);
}

fn read_checkpoint_offset(state: &Path, job: &str, partition: i32) -> Option<i64> {
    let cp = weir_state::Checkpoint::read(
        &state
            .join(job)
            .join(partition.to_string())
            .join("checkpoint"),
    )
    .ok()?;
    cp.changelog_offsets.get("hourly_avg").copied()
}

#[test]
fn real_a_warm_restart_replays_only_the_changelog_written_after_the_checkpoint() {
    let s = setup("warm", PARTITIONS, spec(40, 6));
    let job = s.job_without_idle_close();
    let state = s.state("a");
    let changelog = format!("{}-hourly_avg-changelog", s.name);
    let halves: Vec<&[Reading]> = s.readings.chunks(s.readings.len().div_ceil(2)).collect();

    // Clean stop: everything is checkpointed, a restart replays nothing.
    let w = Worker::start(&job, &s.bootstrap, &state);
    produce_readings(&s.bootstrap, &s.input, halves[0]);
    await_until(LONG, "the first half to be processed", || {
        consumed(&w) as usize >= halves[0].len()
    });
    assert_eq!(w.stop(), 0);
    let w = Worker::start(&job, &s.bootstrap, &state);
    w.await_ready(LONG);
    assert_eq!(
        metric_sum(&w.metrics(), "weir_restore_records_total"),
        0.0,
        "nothing to replay after a clean stop"
    );
    assert_eq!(metric_sum(&w.metrics(), "weir_restore_wipes_total"), 0.0);

    // Crash: the restore replays exactly the changelog records after each task's checkpoint.
    produce_readings(&s.bootstrap, &s.input, &halves[1][..halves[1].len() / 2]);
    await_until(LONG, "more input to be processed", || {
        consumed(&w) as usize >= halves[1].len() / 2
    });
    w.kill();
    let mut tail = BTreeMap::new();
    let mut total = 0;
    for p in 0..PARTITIONS {
        let end = end_offset(&s.bootstrap, &changelog, p);
        let checkpoint =
            read_checkpoint_offset(&state, &s.name, p).expect("a checkpoint survives the kill");
        assert!(checkpoint <= end);
        tail.insert(p, (end - checkpoint) as f64);
        total += end;
    }
    let w = Worker::start(&job, &s.bootstrap, &state);
    w.await_ready(LONG);
    let restored = metric_by_partition(&w.metrics(), "weir_restore_records_total");
    for p in 0..PARTITIONS {
        assert_eq!(
            restored.get(&p).copied().unwrap_or(0.0),
            tail[&p],
            "partition {p}: restored records = changelog records after its checkpoint"
        );
    }
    assert!(
        restored.values().sum::<f64>() < total as f64,
        "no full replay"
    );
    produce_readings(&s.bootstrap, &s.input, &halves[1][halves[1].len() / 2..]);
    s.send_sentinels(PARTITIONS);
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_a_missing_or_corrupted_checkpoint_wipes_the_store_and_restores_all_of_the_changelog() {
    let s = setup("corrupt", PARTITIONS, spec(40, 6));
    let job = s.job_without_idle_close();
    let state = s.state("a");
    let changelog = format!("{}-hourly_avg-changelog", s.name);
    let halves: Vec<&[Reading]> = s.readings.chunks(s.readings.len().div_ceil(2)).collect();
    let w = Worker::start(&job, &s.bootstrap, &state);
    produce_readings(&s.bootstrap, &s.input, halves[0]);
    await_until(LONG, "the first half to be processed", || {
        consumed(&w) as usize >= halves[0].len()
    });
    assert_eq!(w.stop(), 0);

    let task = |p: i32| state.join(&s.name).join(p.to_string());
    let mut bytes = std::fs::read(task(0).join("checkpoint")).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0x5a;
    std::fs::write(task(0).join("checkpoint"), bytes).unwrap();
    std::fs::remove_file(task(1).join("checkpoint")).unwrap();

    let w = Worker::start(&job, &s.bootstrap, &state);
    w.await_ready(LONG);
    let m = w.metrics();
    let wipes = metric_by_partition(&m, "weir_restore_wipes_total");
    let restored = metric_by_partition(&m, "weir_restore_records_total");
    for p in [0, 1] {
        assert_eq!(wipes.get(&p), Some(&1.0), "partition {p} was wiped");
        assert_eq!(
            restored.get(&p).copied(),
            Some(end_offset(&s.bootstrap, &changelog, p) as f64),
            "partition {p} replayed its whole changelog"
        );
    }
    for p in [2, 3] {
        assert_eq!(wipes.get(&p).copied().unwrap_or(0.0), 0.0);
        assert_eq!(restored.get(&p).copied().unwrap_or(0.0), 0.0);
    }
    produce_readings(&s.bootstrap, &s.input, halves[1]);
    s.send_sentinels(PARTITIONS);
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    assert_eq!(w.stop(), 0);
}

/// Good readings, a poison record in the middle (at the returned offset), more good readings and
/// a sentinel, all on one partition.
fn poisoned_input(s: &Setup) -> i64 {
    let p = producer(&s.bootstrap);
    let half = s.readings.len() / 2;
    for r in &s.readings[..half] {
        send(
            &p,
            &s.input,
            Some(r.meter_id.as_bytes()),
            &r.to_json(),
            Some(0),
        );
    }
    send(
        &p,
        &s.input,
        Some(b"meter-x"),
        b"{\"meter_id\": \"meter-x\", \"ts\": \"not a time\"",
        Some(0),
    );
    for r in &s.readings[half..] {
        send(
            &p,
            &s.input,
            Some(r.meter_id.as_bytes()),
            &r.to_json(),
            Some(0),
        );
    }
    p.flush(Duration::from_secs(30)).unwrap();
    s.send_sentinels(1);
    half as i64
}

#[test]
fn real_bad_record_policy_fail_stops_the_task_and_commits_nothing_after_the_bad_record() {
    let s = setup("fail", 1, spec(5, 3));
    let poison = poisoned_input(&s);
    let w = Worker::start(&s.job(&[]), &s.bootstrap, &s.state("a"));
    let addr = w.http.clone();
    await_until(
        LONG,
        "readiness to turn false",
        || matches!(http_get(&addr, "/readyz"), Some((503, body)) if body.contains("failed")),
    );
    let (_, body) = http_get(&w.http, "/readyz").unwrap();
    assert!(body.contains(&format!("{}[0]@{poison}", s.input)), "{body}");
    assert!(w
        .log_text()
        .contains(&format!("bad record at {}[0]@{poison}", s.input)));
    await_until(
        LONG,
        "the offsets before the bad record to be committed",
        || committed_offset(&s.bootstrap, &s.name, &s.input, 0) == Some(poison),
    );
    // Several commit intervals later, still nothing after it.
    let commits = metric_sum(&w.metrics(), "weir_commits_total");
    await_until(LONG, "more commit cycles", || {
        metric_sum(&w.metrics(), "weir_commits_total") >= commits + 5.0
    });
    assert_eq!(
        committed_offset(&s.bootstrap, &s.name, &s.input, 0),
        Some(poison)
    );
    assert!(
        matches!(http_get(&w.http, "/livez"), Some((200, _))),
        "the process stays up: no crash loop"
    );
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_bad_record_policy_skip_counts_the_record_and_goes_on() {
    let s = setup("skip", 1, spec(5, 3));
    poisoned_input(&s);
    let job = s.job(&[("bad_records = \"fail\"", "bad_records = \"skip\"")]);
    let w = Worker::start(&job, &s.bootstrap, &s.state("a"));
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    assert_eq!(metric_sum(&w.metrics(), "weir_records_skipped_total"), 1.0);
    assert!(w
        .log_text()
        .contains(&format!("skipped bad record at {}[0]@", s.input)));
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_bad_record_policy_dead_letter_sends_the_original_bytes_with_provenance() {
    let s = setup("dlq", 1, spec(5, 3));
    let dlq = format!("{}-dead", s.name);
    s.kafka.create_topic(&dlq, 1);
    let poison = poisoned_input(&s);
    let job = s.job(&[(
        "bad_records = \"fail\"",
        &format!("bad_records = \"dead_letter\"\ndead_letter_topic = \"{dlq}\""),
    )]);
    let w = Worker::start(&job, &s.bootstrap, &s.state("a"));
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    let dead = read_to_end(&s.bootstrap, &dlq);
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].payload(),
        Some(&b"{\"meter_id\": \"meter-x\", \"ts\": \"not a time\""[..])
    );
    assert_eq!(dead[0].key(), Some(&b"meter-x"[..]));
    let headers: BTreeMap<String, String> = dead[0]
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(headers.get("weir.topic"), Some(&s.input));
    assert_eq!(headers.get("weir.partition").map(String::as_str), Some("0"));
    assert_eq!(headers.get("weir.offset"), Some(&poison.to_string()));
    assert!(
        headers
            .get("weir.error")
            .is_some_and(|e| e.contains("invalid JSON")),
        "{headers:?}"
    );
    assert_eq!(
        metric_sum(&w.metrics(), "weir_records_dead_lettered_total"),
        1.0
    );
    assert_eq!(w.stop(), 0);
}

/// A crash at each step of the commit cycle (process aborted by a failpoint on its third cycle with
/// input), then a restart: every result equals the oracle, so no record was lost or counted twice.
#[test]
fn real_a_crash_at_any_step_of_the_commit_cycle_neither_loses_nor_double_counts() {
    for failpoint in [
        "before_offset_commit",
        "before_state_apply",
        "before_checkpoint",
    ] {
        let s = setup("failpoint", PARTITIONS, spec(20, 6));
        let job = s.job_without_idle_close();
        let state = s.state("a");
        let feeder = s.feed(80);
        let mut first = Worker::start_with(
            &job,
            &s.bootstrap,
            &state,
            &[("WEIR_FAILPOINT", &format!("{failpoint}:3"))],
        );
        let code = first.wait(LONG);
        assert_ne!(code, 0, "{failpoint}: the failpoint aborts the worker");
        assert!(first
            .log_text()
            .contains(&format!("failpoint {failpoint}: aborting")));
        let second = Worker::start(&job, &s.bootstrap, &state);
        feeder.join().unwrap();
        s.send_sentinels(PARTITIONS);
        let expected = oracle(&s.readings);
        let outputs = s.await_results_equal_oracle(&expected, &[&second]);
        for (k, emitted) in &outputs {
            assert!(
                emitted.iter().all(|h| h.count == expected[k].count),
                "{failpoint}: {k:?} emitted {emitted:?}"
            );
        }
        assert_eq!(second.stop(), 0);
    }
}
