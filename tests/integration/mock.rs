//! Fast tests on librdkafka's in-process mock cluster, with the same helpers as the real-broker
//! tests. The mock proves the consume/process/produce path; never restore or exactly-once.

use crate::harness::*;
use std::time::Duration;
use weir_engine::generator::GeneratorSpec;

#[test]
fn mock_a_worker_process_computes_hourly_averages_through_the_mock_cluster() {
    let (on, readings) = flagship_on_mock("mock", 8, 6, &[]);
    let (b, output) = (on.kafka.bootstrap(), &on.output);
    assert_eq!(read_to_end(&b, &on.input).len(), readings.len());
    let expected = oracle(&readings);
    await_until(Duration::from_secs(60), "every hourly result", || {
        compare_emissions(&parse_outputs(&read_to_end(&b, output)), &expected).is_empty()
    });
    assert_eq!(on.worker.stop(), 0);
}

/// The flagship job (with `replacements`) running on a mock cluster, over `meters` meters' readings
/// of 2 hours, `per_hour` each, already produced.
struct OnMock {
    worker: Worker,
    kafka: Kafka,
    input: String,
    output: String,
    _dir: tempfile::TempDir,
}

fn flagship_on_mock(
    prefix: &str,
    meters: u32,
    per_hour: u32,
    replacements: &[(&str, &str)],
) -> (OnMock, Vec<weir_engine::generator::Reading>) {
    let kafka = Kafka::mock();
    let b = kafka.bootstrap();
    let name = unique(prefix);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    // The mock has no CreateTopics: the changelog is created here, as weir would on a broker.
    kafka.create_topic(&format!("{name}-hourly_avg-changelog"), 2);
    let readings: Vec<_> = GeneratorSpec {
        meters,
        hours: 2,
        readings_per_hour: per_hour,
        ..Default::default()
    }
    .readings()
    .collect();
    produce_readings(&b, &input, &readings);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), &name, &input, &output, replacements);
    let worker = Worker::start(&job, &b, &dir.path().join("state"));
    let on = OnMock {
        worker,
        kafka,
        input,
        output,
        _dir: dir,
    };
    (on, readings)
}

/// A csv sink writes each hourly result as one CSV line: the key, the window's bounds, then one
/// column per aggregate function, in the job's order; every window once, with the oracle's figures.
#[test]
fn mock_a_csv_sink_writes_every_hourly_result_as_one_csv_line() {
    let (on, readings) = flagship_on_mock(
        "mock-csv",
        6,
        4,
        &[(
            "format = \"json\"\n\n[state]",
            "format = \"csv\"\n\n[state]",
        )],
    );
    let (b, output) = (on.kafka.bootstrap(), &on.output);
    let expected = oracle(&readings);
    let parse = |msgs: &[rdkafka::message::OwnedMessage]| {
        let mut out: Vec<((String, i64), Hourly)> = Vec::new();
        for m in msgs {
            use rdkafka::Message;
            let line = std::str::from_utf8(m.payload().unwrap()).unwrap();
            // meter_id, window_start, window_end, window_start_ms, window_end_ms, avg, count, min, max
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 9, "one column per field: {line:?}");
            assert_eq!(
                m.key(),
                Some(cols[0].as_bytes()),
                "keyed by the meter: {line:?}"
            );
            assert!(cols[1].ends_with(":00:00.000Z"), "RFC 3339 start: {line:?}");
            let num = |i: usize| cols[i].parse::<f64>().unwrap();
            out.push((
                (cols[0].to_string(), cols[3].parse().unwrap()),
                Hourly {
                    avg: num(5),
                    count: cols[6].parse().unwrap(),
                    min: num(7),
                    max: num(8),
                },
            ));
        }
        out
    };
    await_until(Duration::from_secs(60), "every hourly result", || {
        parse(&read_to_end(&b, output)).len() >= expected.len()
    });
    let results = parse(&read_to_end(&b, output));
    assert_eq!(results.len(), expected.len(), "each window once");
    for (k, got) in &results {
        let want = &expected[k];
        assert!(got.same_as(want), "{k:?}: {got:?}, expected {want:?}");
    }
    assert_eq!(on.worker.stop(), 0);
}
