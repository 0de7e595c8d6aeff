//! When windows close: the wall-clock idle close only for a task that is caught up, and a mass
//! close (an hour boundary over many meters) in bounded batches, each window emitted once.

use crate::harness::*;
use std::time::Duration;
use weir_engine::generator::GeneratorSpec;

fn consumed(w: &Worker) -> f64 {
    metric_sum(&w.metrics(), "weir_records_consumed_total")
}

#[test]
fn real_idle_close_waits_while_the_task_is_behind() {
    let s = setup(
        "idle-behind",
        1,
        GeneratorSpec {
            meters: 3,
            hours: 1,
            readings_per_hour: 12,
            ..GeneratorSpec::default()
        },
    );
    let (first, rest) = s.readings.split_at(1);
    // After its first record the worker fetches nothing for 8 s: four times `close_idle_after`
    // (2 s) of silence while the rest of the hour waits in the partition.
    let worker = Worker::start_with(
        &s.job(&[]),
        &s.bootstrap,
        &s.state("a"),
        &[("WEIR_FAILPOINT", "hold_fetch:8")],
    );
    produce_readings(&s.bootstrap, &s.input, first);
    await_workers(
        Duration::from_secs(60),
        "the first record",
        &[&worker],
        || consumed(&worker) >= 1.0,
    );
    produce_readings(&s.bootstrap, &s.input, rest);
    let expected = oracle(&s.readings);
    s.await_results_equal_oracle(&expected, &[&worker]);
    assert!(
        worker.log_text().contains("hold_fetch: fetching again"),
        "the hold happened: {}",
        worker.log_text()
    );
    assert_eq!(
        metric_sum(&worker.metrics(), "weir_records_late_total"),
        0.0
    );
    assert_eq!(worker.stop(), 0);
}

#[test]
fn real_an_hour_boundary_over_many_meters_closes_in_batches_each_window_once() {
    // More windows than one commit cycle closes (20,000), all closing at the same moment.
    let s = setup(
        "mass-close",
        1,
        GeneratorSpec {
            meters: 45_000,
            hours: 1,
            readings_per_hour: 1,
            ..GeneratorSpec::default()
        },
    );
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let worker = Worker::start(&s.job_without_idle_close(), &s.bootstrap, &s.state("a"));
    await_workers(
        Duration::from_secs(180),
        "every reading",
        &[&worker],
        || consumed(&worker) as usize >= s.readings.len(),
    );
    s.send_sentinels(1);
    let expected = oracle(&s.readings);
    let outputs = s.await_results_equal_oracle(&expected, &[&worker]);
    assert_eq!(outputs.len(), 45_000);
    assert_eq!(worker.stop(), 0);
}
