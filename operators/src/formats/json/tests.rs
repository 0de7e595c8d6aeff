use super::*;
use crate::formats::raw;

fn encode(row: &Row<'_>) -> String {
    let mut out = Vec::new();
    JsonEncode.encode(row, &mut out);
    String::from_utf8(out).unwrap()
}

/// What the output was when results were serde_json maps: the reference every row must match.
fn as_map(row: &Row<'_>) -> String {
    let mut m = serde_json::Map::new();
    for (name, v) in row {
        let v = match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => (*f).into(),
            Value::Str(s) => (*s).into(),
            Value::Json(v) => (*v).clone(),
        };
        m.insert(name.to_string(), v);
    }
    serde_json::to_string(&m).unwrap()
}

#[test]
fn objects_are_written_as_serde_json_maps_were() {
    let nested = serde_json::json!({"b": [1, {"c": null}], "a": "\u{1}"});
    let rows: Vec<Vec<(&str, Value)>> = vec![
        vec![],
        vec![
            ("z", Value::Int(1)),
            ("a", Value::Float(0.1)),
            ("m", Value::Null),
        ],
        // A repeated name: the last value, at its place in the order.
        vec![
            ("count", Value::Str("k")),
            ("avg", Value::Float(2.5)),
            ("count", Value::Int(3)),
        ],
        vec![
            ("é", Value::Str("\"quoted\"\n")),
            ("e", Value::Bool(false)),
            ("E", Value::Json(&nested)),
        ],
        vec![
            ("x", Value::Float(f64::INFINITY)),
            ("y", Value::Float(-0.0)),
            ("w", Value::Float(1e300)),
        ],
        vec![("a", Value::Int(i64::MIN)), ("b", Value::Int(i64::MAX))],
    ];
    for row in &rows {
        assert_eq!(encode(row), as_map(row));
    }
    assert_eq!(encode(&rows[2]), r#"{"avg":2.5,"count":3}"#);
}

#[test]
fn what_json_writes_it_reads_back() {
    let names = FieldNames {
        key: Some("meter_id".into()),
        timestamp: Some("ts".into()),
        timestamp_format: weir_config::TimestampFormat::Rfc3339,
        values: vec!["kwh".into(), "volts".into()],
    };
    let row = [
        ("meter_id", Value::Str("m \"1\"")),
        ("ts", Value::Str("2025-12-01T00:00:00.250Z")),
        ("kwh", Value::Float(0.25)),
        ("volts", Value::Int(230)),
        ("note", Value::Null),
    ];
    let line = encode(&row);
    let mut fields = names.empty();
    JsonDecode::new(&names)
        .decode(raw(&line), &mut fields)
        .unwrap();
    assert_eq!(
        fields,
        Fields {
            key: Some("m \"1\"".into()),
            ts_ms: Some(1_764_547_200_250),
            values: vec![Some(0.25), Some(230.0)],
        }
    );
    let object = JsonDecode::new(&FieldNames::none())
        .object(line.as_bytes())
        .unwrap();
    assert_eq!(object.len(), 5);
    let err = JsonDecode::new(&names).object(b"[1]").unwrap_err();
    assert!(err.0.starts_with("invalid JSON object: "), "{err}");
}
