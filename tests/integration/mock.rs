//! Fast tests on librdkafka's in-process mock cluster, with the same helpers as the real-broker
//! tests. The mock proves the consume/process/produce path; never restore or exactly-once.

use crate::harness::*;
use std::time::Duration;
use weir_engine::generator::GeneratorSpec;

#[test]
fn mock_a_worker_process_computes_hourly_averages_through_the_mock_cluster() {
    let kafka = Kafka::mock();
    let b = kafka.bootstrap();
    let name = unique("mock");
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    // The mock has no CreateTopics: the changelog is created here, as weir would on a broker.
    kafka.create_topic(&format!("{name}-hourly_avg-changelog"), 2);
    let readings: Vec<_> = GeneratorSpec {
        meters: 8,
        hours: 2,
        readings_per_hour: 6,
        ..Default::default()
    }
    .readings()
    .collect();
    produce_readings(&b, &input, &readings);
    assert_eq!(read_to_end(&b, &input).len(), readings.len());

    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), &name, &input, &output, &[]);
    let worker = Worker::start(&job, &b, &dir.path().join("state"));
    let expected = oracle(&readings);
    await_until(Duration::from_secs(60), "every hourly result", || {
        compare_emissions(&parse_outputs(&read_to_end(&b, &output)), &expected).is_empty()
    });
    assert_eq!(worker.stop(), 0);
}
