//! Results in the sink's format, from the job file to the bytes.

use super::*;
use crate::store::mem::MemStore;
use crate::{open_window_aggregate, StatefulOperator, WindowedAggregate, Windowing};
use weir_config::parse_job;

const H: i64 = 3_600_000;

/// A window's JSON result is byte for byte what it was when results were serde_json maps.
#[test]
fn json_results_are_the_bytes_they_always_were() {
    let store = MemStore::default();
    let all = vec![
        AggregateFn::Avg,
        AggregateFn::Count,
        AggregateFn::Min,
        AggregateFn::Max,
        AggregateFn::Sum,
    ];
    let w = Windowing {
        size_ms: H,
        advance_ms: H,
        grace_ms: 0,
    };
    let mut op =
        WindowedAggregate::open(&store, w, EmitMode::OnClose, all, "meter_id".into(), 0).unwrap();
    let mut out = Vec::new();
    for v in [2.0, 4.0, 0.0] {
        op.process(&store, "m\"1", 10, v, &mut out).unwrap();
    }
    op.close_all(&store, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out[0].value.clone()).unwrap(),
        r#"{"avg":2.0,"count":3,"max":4.0,"meter_id":"m\"1","min":0.0,"sum":6.0,"window_end":"1970-01-01T01:00:00.000Z","window_end_ms":3600000,"window_start":"1970-01-01T00:00:00.000Z","window_start_ms":0}"#
    );
    // A key named like a function: the function's value, as before.
    let one = Agg::new(0.1).to_json(
        "count",
        "x",
        -5,
        1_764_547_200_123,
        &[AggregateFn::Count, AggregateFn::Avg],
    );
    assert_eq!(
        String::from_utf8(one).unwrap(),
        r#"{"avg":0.1,"count":1,"window_end":"2025-12-01T00:00:00.123Z","window_end_ms":1764547200123,"window_start":"1969-12-31T23:59:59.995Z","window_start_ms":-5}"#
    );
    // A sum beyond f64 is null.
    let mut huge = Agg::new(f64::MAX);
    huge.add(f64::MAX);
    let out = huge.to_json("k", "é", 1, 2, &[AggregateFn::Sum, AggregateFn::Max]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"k":"é","max":1.7976931348623157e+308,"sum":null,"window_end":"1970-01-01T00:00:00.002Z","window_end_ms":2,"window_start":"1970-01-01T00:00:00.001Z","window_start_ms":1}"#
    );
}

fn job(window: &str, sink_format: &str) -> weir_config::Job {
    let text = format!(
        "name = \"j\"\n[source]\ntopics = [\"in\"]\nkey_field = \"meter_id\"\ntimestamp_field = \"ts\"\n[[pipeline]]\nwindow = {window}\n[[pipeline]]\naggregate = {{ store = \"s\", field = \"kwh\", functions = [\"sum\", \"count\"] }}\n[sink]\ntopic = \"out\"\nformat = \"{sink_format}\"\n"
    );
    parse_job("j.toml", &text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn results_of(job: &weir_config::Job) -> Vec<String> {
    let store = MemStore::default();
    let (window, aggregate) = job.plan().window.unwrap();
    let mut op =
        open_window_aggregate(&store, &window, aggregate.functions, "site".into(), 0).unwrap();
    let mut out = Vec::new();
    op.process(&store, "north, east", 10, 1.5, &mut out)
        .unwrap();
    op.process(&store, "north, east", 20, 2.5, &mut out)
        .unwrap();
    op.close_all(&store, &mut out).unwrap();
    out.into_iter()
        .map(|e| String::from_utf8(e.value).unwrap())
        .collect()
}

#[test]
fn a_csv_sink_gets_csv_lines_from_windows_and_sessions() {
    let tumbling = "{ type = \"tumbling\", size = \"1h\" }";
    assert_eq!(
        results_of(&job(tumbling, "csv")),
        [r#""north, east",1970-01-01T00:00:00.000Z,1970-01-01T01:00:00.000Z,0,3600000,4.0,2"#]
    );
    let session = "{ type = \"session\", gap = \"1m\" }";
    assert_eq!(
        results_of(&job(session, "csv")),
        [r#""north, east",1970-01-01T00:00:00.010Z,1970-01-01T00:00:00.020Z,10,20,4.0,2"#]
    );
    assert_eq!(
        results_of(&job(tumbling, "json")),
        [
            r#"{"count":2,"site":"north, east","sum":4.0,"window_end":"1970-01-01T01:00:00.000Z","window_end_ms":3600000,"window_start":"1970-01-01T00:00:00.000Z","window_start_ms":0}"#
        ]
    );
}
