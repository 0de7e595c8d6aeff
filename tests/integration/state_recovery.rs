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
        log.contains("the changelog was recreated; wiping the store and restoring all of it"),
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
