//! Decoding input records, the part every format shares: the format ([`Decode`], see
//! `formats/`) extracts the job's fields from the payload; the key and event time come from the
//! Kafka record where the job names no field for them; event time must be plausible (within
//! `source.max_event_time_skew` of processing time) and the numeric fields present and finite.

use crate::formats::{self, Decode, FieldNames, RawRecord, SchemaResolver};
use std::fmt;
use std::sync::Arc;
use weir_config::SourceConfig;

/// A decoded record: the key, event time in ms, and the numeric fields asked for, in the order they
/// were given to [`Decoder::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: String,
    pub ts_ms: i64,
    pub values: Vec<f64>,
}

/// Why a record could not be decoded; the engine adds topic, partition and offset.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

pub struct Decoder {
    names: FieldNames,
    format: Box<dyn Decode>,
    /// The plausible event times: `[now - max_past_ms, now + max_future_ms]`.
    max_past_ms: i64,
    max_future_ms: i64,
    /// Processing time, ms since the epoch: set by the engine once per batch of records.
    now_ms: i64,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("names", &self.names)
            .field("max_past_ms", &self.max_past_ms)
            .field("max_future_ms", &self.max_future_ms)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// `value_fields`: the numeric fields to extract, in the order [`Record::values`] holds them.
    pub fn new(source: &SourceConfig, value_fields: Vec<String>) -> Result<Decoder, String> {
        Decoder::with_schemas(source, value_fields, &formats::no_schemas())
    }

    /// A decoder whose format may look writer schemas up (a schema registry).
    pub fn with_schemas(
        source: &SourceConfig,
        value_fields: Vec<String>,
        schemas: &Arc<dyn SchemaResolver>,
    ) -> Result<Decoder, String> {
        let names = FieldNames::of(source, value_fields);
        Ok(Decoder {
            format: formats::decoder(source, &names, schemas)?,
            names,
            max_past_ms: source.max_event_time_skew.past.as_millis() as i64,
            max_future_ms: source.max_event_time_skew.future.as_millis() as i64,
            now_ms: crate::time::wall_clock_ms(),
        })
    }

    /// Processing time for the records decoded next (the wall clock, read once per batch).
    pub fn set_processing_time(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Event time outside `source.max_event_time_skew` around processing time is an error.
    pub fn check_event_time(&self, ts_ms: i64) -> Result<i64, DecodeError> {
        let earliest = self.now_ms.saturating_sub(self.max_past_ms);
        let latest = self.now_ms.saturating_add(self.max_future_ms);
        let off = |a: i64, b: i64| weir_config::Duration::from_millis(a.abs_diff(b));
        if ts_ms > latest {
            return Err(DecodeError(format!(
                "event time {ts_ms} is {} ahead of processing time, beyond source.max_event_time_skew.future ({})",
                off(ts_ms, self.now_ms),
                weir_config::Duration::from_millis(self.max_future_ms as u64)
            )));
        }
        if ts_ms < earliest {
            return Err(DecodeError(format!(
                "event time {ts_ms} is {} behind processing time, beyond source.max_event_time_skew.past ({})",
                off(ts_ms, self.now_ms),
                weir_config::Duration::from_millis(self.max_past_ms as u64)
            )));
        }
        Ok(ts_ms)
    }

    /// Decodes one record. `kafka_key` and `kafka_ts` are used when the job names no key or
    /// timestamp field.
    pub fn decode(
        &self,
        payload: &[u8],
        kafka_key: Option<&[u8]>,
        kafka_ts: Option<i64>,
    ) -> Result<Record, DecodeError> {
        let mut ex = self.names.empty();
        let record = RawRecord {
            payload,
            key: kafka_key,
            timestamp: kafka_ts,
        };
        self.format.decode(record, &mut ex)?;
        let key = match (&self.names.key, ex.key) {
            (Some(_), Some(k)) => k,
            (Some(f), None) => return Err(DecodeError(format!("missing key field {f:?}"))),
            (None, _) => match kafka_key {
                Some(k) => String::from_utf8(k.to_vec())
                    .map_err(|_| DecodeError("record key is not UTF-8".into()))?,
                None => {
                    return Err(DecodeError(
                        "record has no key and the job names no key_field".into(),
                    ))
                }
            },
        };
        let ts_ms = match (&self.names.timestamp, ex.ts_ms) {
            (Some(_), Some(t)) => t,
            (Some(f), None) => return Err(DecodeError(format!("missing timestamp field {f:?}"))),
            (None, _) => {
                kafka_ts.ok_or_else(|| DecodeError("record has no Kafka timestamp".into()))?
            }
        };
        let ts_ms = self.check_event_time(ts_ms)?;
        let values = ex
            .values
            .into_iter()
            .zip(&self.names.values)
            .map(|(v, name)| match v {
                Some(v) if v.is_finite() => Ok(v),
                Some(_) => Err(DecodeError(format!("field {name:?} is not finite"))),
                None => Err(DecodeError(format!("missing numeric field {name:?}"))),
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(Record { key, ts_ms, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::{Format, TimestampFormat};

    fn source(format: Format, ts_format: TimestampFormat) -> SourceConfig {
        SourceConfig {
            topics: vec!["t".into()],
            format,
            columns: vec!["meter_id".into(), "ts".into(), "kwh".into()],
            key_field: Some("meter_id".into()),
            timestamp_field: Some("ts".into()),
            timestamp_format: ts_format,
            max_event_time_skew: Default::default(),
        }
    }

    #[test]
    fn event_times_outside_the_plausible_range_are_bad_records() {
        let mut d = Decoder::new(
            &source(Format::Json, TimestampFormat::UnixMs),
            vec!["kwh".into()],
        )
        .unwrap();
        let now = 1_764_547_200_000; // 2025-12-01
        d.set_processing_time(now);
        let rec = |ts: &str| format!(r#"{{"meter_id":"m","ts":{ts},"kwh":1}}"#);
        assert_eq!(
            d.decode(rec("1764540000000").as_bytes(), None, None)
                .unwrap()
                .ts_ms,
            1_764_540_000_000
        );
        // Microseconds where milliseconds were expected: 56,000 years ahead.
        let err = d
            .decode(rec("1764540000000000").as_bytes(), None, None)
            .unwrap_err();
        assert!(
            err.0.contains(
                "ahead of processing time, beyond source.max_event_time_skew.future (1d)"
            ),
            "{err}"
        );
        for absurd in [
            "1e300",
            "-1e300",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(
                d.decode(rec(absurd).as_bytes(), None, None).is_err(),
                "{absurd}"
            );
        }
        // A day and a bit ahead is out; a day is in.
        assert!(d
            .decode(rec(&(now + 86_400_001).to_string()).as_bytes(), None, None)
            .is_err());
        assert!(d
            .decode(rec(&(now + 86_400_000).to_string()).as_bytes(), None, None)
            .is_ok());
        // The Kafka timestamp is checked too.
        let mut no_ts = source(Format::Json, TimestampFormat::UnixMs);
        no_ts.timestamp_field = None;
        no_ts.max_event_time_skew.past = weir_config::Duration::from_millis(3_600_000);
        let mut d = Decoder::new(&no_ts, vec!["kwh".into()]).unwrap();
        d.set_processing_time(now);
        let payload = br#"{"meter_id":"m","kwh":1}"#;
        assert!(d.decode(payload, None, Some(now - 3_600_000)).is_ok());
        let err = d.decode(payload, None, Some(now - 3_600_001)).unwrap_err();
        assert!(
            err.0
                .contains("behind processing time, beyond source.max_event_time_skew.past (1h)"),
            "{err}"
        );
    }

    #[test]
    fn json_extracts_only_the_named_fields() {
        let d = Decoder::new(
            &source(Format::Json, TimestampFormat::UnixMs),
            vec!["kwh".into()],
        )
        .unwrap();
        let r = d
            .decode(
                br#"{"meter_id":"m-1","note":{"deep":[1,2]},"ts":3600000,"kwh":0.25}"#,
                None,
                None,
            )
            .unwrap();
        assert_eq!(
            r,
            Record {
                key: "m-1".into(),
                ts_ms: 3_600_000,
                values: vec![0.25]
            }
        );
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let d = Decoder::new(
            &source(Format::Json, TimestampFormat::Rfc3339),
            vec!["kwh".into()],
        )
        .unwrap();
        assert!(d
            .decode(b"{not json", None, None)
            .unwrap_err()
            .0
            .contains("invalid JSON"));
        assert!(d
            .decode(
                br#"{"meter_id":"m","ts":"2026-11-25T10:00:00Z"}"#,
                None,
                None
            )
            .unwrap_err()
            .0
            .contains("missing numeric field \"kwh\""));
        assert!(d
            .decode(br#"{"meter_id":"m","ts":"yesterday","kwh":1}"#, None, None)
            .unwrap_err()
            .0
            .contains("not RFC 3339"));
        assert!(d
            .decode(
                br#"{"meter_id":"m","ts":"2026-11-25T10:00:00Z","kwh":"x"}"#,
                None,
                None
            )
            .unwrap_err()
            .0
            .contains("not a number"));
        assert!(d.decode(br#"[1,2]"#, None, None).is_err());
    }

    #[test]
    fn csv_by_column_names() {
        let d = Decoder::new(
            &source(Format::Csv, TimestampFormat::UnixS),
            vec!["kwh".into()],
        )
        .unwrap();
        let r = d.decode(b"m-7, 3600.5, 1.5\n", None, None).unwrap();
        assert_eq!(
            r,
            Record {
                key: "m-7".into(),
                ts_ms: 3_600_500,
                values: vec![1.5]
            }
        );
        assert!(d
            .decode(b"m-7,1", None, None)
            .unwrap_err()
            .0
            .contains("columns"));
    }

    #[test]
    fn kafka_key_and_timestamp_when_no_fields_are_named() {
        let mut s = source(Format::Json, TimestampFormat::UnixMs);
        s.key_field = None;
        s.timestamp_field = None;
        let d = Decoder::new(&s, vec!["kwh".into()]).unwrap();
        let r = d.decode(br#"{"kwh":2}"#, Some(b"m-9"), Some(42)).unwrap();
        assert_eq!((r.key.as_str(), r.ts_ms), ("m-9", 42));
    }
}
