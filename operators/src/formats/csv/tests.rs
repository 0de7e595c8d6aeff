use super::*;
use crate::formats::raw;
use crate::formats::Value;

fn texts(line: &str) -> Vec<String> {
    cells(line.as_bytes())
        .unwrap()
        .into_iter()
        .map(|c| c.text.into_owned())
        .collect()
}

#[test]
fn plain_cells_split_at_commas_and_are_trimmed() {
    assert_eq!(texts("m-7, 3600.5, 1.5\r\n"), ["m-7", "3600.5", "1.5"]);
    assert_eq!(texts("a,,b,"), ["a", "", "b", ""]);
    assert_eq!(texts(""), [""]);
    // A quote inside a plain cell is a character of it.
    assert_eq!(texts("5\" pipe,x"), ["5\" pipe", "x"]);
}

#[test]
fn quoted_cells_hold_commas_quotes_and_line_breaks() {
    assert_eq!(
        texts(
            r#""a,b", "say ""hi""" ,"line
two","""#
        ),
        ["a,b", r#"say "hi""#, "line\ntwo", ""]
    );
    let quoted: Vec<bool> = cells(br#""1",1"#)
        .unwrap()
        .iter()
        .map(|c| c.quoted)
        .collect();
    assert_eq!(quoted, [true, false]);
    for bad in [r#""open"#, r#""a"b,c"#, r#""a""#.trim_end_matches('"')] {
        assert!(cells(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(cells(b"\xff,1").unwrap_err().0.contains("not UTF-8"));
}

fn encode(row: &Row<'_>) -> String {
    let mut out = Vec::new();
    CsvEncode.encode(row, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn cells_are_quoted_where_csv_needs_it() {
    let row = [
        ("a", Value::Str("plain")),
        ("b", Value::Str("a,b")),
        ("c", Value::Str(r#"say "hi""#)),
        ("d", Value::Str("two\nlines")),
        ("e", Value::Str(" padded ")),
        ("f", Value::Str("")),
        ("g", Value::Null),
        ("h", Value::Int(-42)),
        ("i", Value::Float(2.0)),
        ("j", Value::Float(f64::NAN)),
        ("k", Value::Bool(true)),
    ];
    assert_eq!(
        encode(&row),
        r#"plain,"a,b","say ""hi""","two
lines"," padded ","",,-42,2.0,,true"#
    );
    let nested = serde_json::json!({"x": [1, 2]});
    assert_eq!(encode(&[("n", Value::Json(&nested))]), r#""{""x"":[1,2]}""#);
}

fn source(columns: &[&str]) -> SourceConfig {
    SourceConfig {
        topics: vec!["t".into()],
        format: weir_config::Format::Csv,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        key_field: Some("meter_id".into()),
        timestamp_field: Some("ts".into()),
        timestamp_format: weir_config::TimestampFormat::UnixMs,
        max_event_time_skew: Default::default(),
    }
}

#[test]
fn what_csv_writes_it_reads_back() {
    let source = source(&["meter_id", "ts", "kwh"]);
    let names = FieldNames::of(&source, vec!["kwh".into()]);
    let decoder = CsvDecode::new(&source, &names).unwrap();
    for key in ["m-1", "north, east", r#"the "big" one"#, " spaced ", ""] {
        let row = [
            ("meter_id", Value::Str(key)),
            ("ts", Value::Int(1_764_547_200_000)),
            ("kwh", Value::Float(0.25)),
        ];
        let line = encode(&row);
        let mut fields = names.empty();
        decoder.decode(raw(&line), &mut fields).unwrap();
        assert_eq!(
            fields,
            Fields {
                key: Some(key.into()),
                ts_ms: Some(1_764_547_200_000),
                values: vec![Some(0.25)],
            },
            "{line}"
        );
    }
}

#[test]
fn forwarded_csv_records_are_objects_of_their_columns() {
    let source = source(&["meter_id", "ts", "kwh", "note"]);
    let decoder = CsvDecode::new(&source, &FieldNames::none()).unwrap();
    let object = decoder
        .object(br#"007, 1764547200000, 0.25, "12""#)
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(object),
        serde_json::json!({"meter_id": "007", "ts": 1764547200000i64, "kwh": 0.25, "note": "12"}),
        "numbers are numbers, except the key column and quoted cells"
    );
    let err = decoder.object(b"m,1,2").unwrap_err();
    assert_eq!(err.0, "CSV record has 3 columns, source.columns names 4");
    // A column the job does not have is a start-up error, not a bad record.
    let names = FieldNames::of(&source, vec!["volts".into()]);
    assert!(CsvDecode::new(&source, &names)
        .unwrap_err()
        .contains("\"volts\" is not one of the csv columns"));
}
