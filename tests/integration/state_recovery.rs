//! Local state that disagrees with the changelog, on the real broker: a checkpoint beyond the
//! changelog's end (the topic was deleted and made again) means wipe and restore in full, so a
//! later restore from that checkpoint does not skip the new topic's first records.

use crate::harness::*;
use std::time::Duration;
use weir_engine::generator::GeneratorSpec;

const LONG: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 2;

#[test]
fn real_a_checkpoint_beyond_a_recreated_changelog_wipes_and_restores_and_later_restores_are_exact()
{
    let s = setup(
        "recreated-changelog",
        PARTITIONS,
        GeneratorSpec {
            meters: 12,
            hours: 8,
            readings_per_hour: 12,
            ..Default::default()
        },
    );
    let job = s.job(&[]);
    let changelog = format!("{}-hourly_avg-changelog", s.name);
    let (first, second) = s.readings.split_at(s.readings.len() / 2);
    // First half: processed, committed, checkpointed, every window of it emitted (idle close).
    produce_readings(&s.bootstrap, &s.input, first);
    let state = s.state("w");
    let w1 = Worker::start(&job, &s.bootstrap, &state);
    let expected_first = oracle(first);
    await_workers(LONG, "the first half's windows", &[&w1], || {
        let out = s.outputs();
        expected_first.keys().all(|k| out.contains_key(k))
    });
    assert_eq!(w1.stop(), 0);
    let before: i64 = (0..PARTITIONS)
        .map(|p| end_offset(&s.bootstrap, &changelog, p))
        .sum();
    assert!(before > 0, "the first half wrote the changelog");

    // The changelog is deleted and made again, empty; the local checkpoints still point into
    // the old one.
    s.kafka.delete_topic(&changelog);
    s.kafka
        .create_topic_with(&changelog, PARTITIONS, &[("cleanup.policy", "compact")]);

    // The second half, with a crash between committing offsets and applying state: the restart
    // must replay the changelog tail of that cycle from the checkpoint.
    // Fed slowly (10 s), so that the crash lands in a cycle with state to apply.
    let feeder = {
        let (b, input, second) = (s.bootstrap.clone(), s.input.clone(), second.to_vec());
        std::thread::spawn(move || {
            for chunk in second.chunks(12) {
                produce_readings(&b, &input, chunk);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut w2 = Worker::start_with(
        &job,
        &s.bootstrap,
        &state,
        &[("WEIR_FAILPOINT", "before_state_apply:3")],
    );
    assert_ne!(w2.wait(LONG), 0, "the failpoint aborts the worker");
    let log = w2.log_text();
    assert!(
        log.contains("the changelog was recreated: the local store was wiped, restoring all of"),
        "{log}"
    );
    let w3 = Worker::start(&job, &s.bootstrap, &state);
    feeder.join().unwrap();
    s.send_sentinels(PARTITIONS);
    let all = oracle(&s.readings);
    let out = s.await_results_equal_oracle(&all, &[&w3]);
    assert_eq!(out.len(), all.len());
    assert_eq!(
        metric_sum(&w3.metrics(), "weir_restore_wipes_total"),
        0.0,
        "after the wipe, the checkpoint is good again: a crash needs no wipe"
    );
    assert_eq!(w3.stop(), 0);
}

#[test]
fn real_a_changelog_value_that_does_not_decode_fails_the_task_and_says_why() {
    let s = setup(
        "undecodable-changelog",
        1,
        GeneratorSpec {
            meters: 4,
            hours: 2,
            readings_per_hour: 12,
            ..Default::default()
        },
    );
    let job = s.job(&[]);
    let changelog = format!("{}-hourly_avg-changelog", s.name);
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let w1 = Worker::start(&job, &s.bootstrap, &s.state("w1"));
    await_workers(LONG, "the changelog to be written", &[&w1], || {
        // The worker creates the changelog: ask for its end only once it exists.
        partition_count(&s.bootstrap, &changelog).is_some()
            && end_offset(&s.bootstrap, &changelog, 0) > 0
    });
    assert_eq!(w1.stop(), 0);
    // A window entry whose value is not an aggregate, as a damaged or foreign writer would leave.
    let mut key = vec![0x01];
    key.extend_from_slice(&((1_767_225_600_000i64 as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(b"meter-garbage");
    let p = producer(&s.bootstrap);
    send(&p, &changelog, Some(&key), b"not an aggregate", None);
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
    // Another machine: no local state, the whole changelog is restored.
    let w2 = Worker::start(&job, &s.bootstrap, &s.state("w2"));
    await_workers(LONG, "the task to fail", &[&w2], || {
        http_get(&w2.http, "/readyz")
            .is_some_and(|(code, body)| code == 503 && body.contains("does not decode"))
    });
    // Which key is in the log; `/readyz` shows no record contents.
    assert!(w2.log_text().contains("meter-garbage"), "{}", w2.log_text());
    let (_, body) = http_get(&w2.http, "/readyz").unwrap();
    assert!(!body.contains("meter-garbage"), "{body}");
    assert!(
        matches!(http_get(&w2.http, "/livez"), Some((200, _))),
        "the process stays up"
    );
    assert_eq!(w2.stop(), 0);
}

#[test]
fn real_a_task_directory_locked_by_another_process_is_waited_for_then_the_worker_runs() {
    let s = setup(
        "locked-dir",
        2,
        GeneratorSpec {
            meters: 6,
            hours: 3,
            readings_per_hour: 12,
            ..Default::default()
        },
    );
    let job = s.job(&[]);
    let state = s.state("w");
    // Another process (here: the test) holds partition 1's lock, like a previous owner that has
    // not let go yet.
    let dir = state.join(&s.name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let w = Worker::start(&job, &s.bootstrap, &state);
    await_workers(LONG, "the worker to give up and rejoin", &[&w], || {
        w.log_text().contains("the assignment failed")
    });
    let (code, body) = http_get(&w.http, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(matches!(http_get(&w.http, "/livez"), Some((200, _))));
    // The lock goes: the next attempt takes every partition and the results are exact.
    drop(lock);
    s.send_sentinels(2);
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    w.await_ready(LONG);
    assert_eq!(w.stop(), 0);
}
