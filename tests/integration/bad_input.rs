//! Event times no clock produces: one record with a timestamp in microseconds (or 1e300, or
//! -1e300) must not move stream time and make every later record late, nor overflow window
//! arithmetic; under `bad_records = "skip"` they are skipped and counted, and every good window
//! comes out right.

use crate::harness::*;
use weir_engine::generator::GeneratorSpec;

#[test]
fn real_absurd_event_times_are_bad_records_and_every_good_window_is_emitted() {
    let s = setup(
        "absurd-ts",
        1,
        GeneratorSpec {
            meters: 10,
            hours: 5,
            readings_per_hour: 12,
            ..Default::default()
        },
    );
    let p = producer(&s.bootstrap);
    let good = s.readings[0].clone();
    // First the absurd ones: microseconds (56,000 years ahead), and both ends of f64.
    for ts in [
        (good.ts_ms * 1000).to_string(),
        "1e300".into(),
        "-1e300".into(),
    ] {
        let bad = format!(
            r#"{{"meter_id": "{}", "ts": {ts}, "kwh": 1.0}}"#,
            good.meter_id
        );
        send(
            &p,
            &s.input,
            Some(good.meter_id.as_bytes()),
            bad.as_bytes(),
            Some(0),
        );
    }
    rdkafka::producer::Producer::flush(&p, std::time::Duration::from_secs(30)).unwrap();
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let job = s.job(&[("bad_records = \"fail\"", "bad_records = \"skip\"")]);
    let w = Worker::start(&job, &s.bootstrap, &s.state("a"));
    s.await_results_equal_oracle(&oracle(&s.readings), &[&w]);
    assert_eq!(metric_sum(&w.metrics(), "weir_records_skipped_total"), 3.0);
    assert_eq!(metric_sum(&w.metrics(), "weir_records_late_total"), 0.0);
    let log = w.log_text();
    assert!(
        log.contains("beyond source.max_event_time_skew.future")
            && log.contains("beyond source.max_event_time_skew.past"),
        "{log}"
    );
    assert_eq!(w.stop(), 0, "SIGTERM is acted on");
}
