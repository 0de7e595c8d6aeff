//! Decoding input records. Only the fields the job uses are extracted (key, event time, the numeric
//! fields of filters and aggregates); the rest of a JSON object is skipped without allocating.

use crate::excerpt::{excerpt, quoted, MESSAGE_MAX_CHARS};
use crate::time::parse_rfc3339_ms;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use weir_config::{Format, SourceConfig, TimestampFormat};

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

#[derive(Debug, Clone)]
pub struct Decoder {
    format: Format,
    key_field: Option<String>,
    ts_field: Option<String>,
    ts_format: TimestampFormat,
    value_fields: Vec<String>,
    /// CSV: column index of key, timestamp and each value field.
    csv_key: Option<usize>,
    csv_ts: Option<usize>,
    csv_values: Vec<usize>,
    /// The plausible event times: `[now - max_past_ms, now + max_future_ms]`.
    max_past_ms: i64,
    max_future_ms: i64,
    /// Processing time, ms since the epoch: set by the engine once per batch of records.
    now_ms: i64,
}

impl Decoder {
    /// `value_fields`: the numeric fields to extract, in the order [`Record::values`] holds them.
    pub fn new(source: &SourceConfig, value_fields: Vec<String>) -> Result<Decoder, String> {
        let col = |name: &str| -> Result<usize, String> {
            source
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| {
                    format!(
                        "field {name:?} is not one of the csv columns {:?}",
                        source.columns
                    )
                })
        };
        let (mut csv_key, mut csv_ts, mut csv_values) = (None, None, Vec::new());
        if source.format == Format::Csv {
            csv_key = source.key_field.as_deref().map(col).transpose()?;
            csv_ts = source.timestamp_field.as_deref().map(col).transpose()?;
            csv_values = value_fields
                .iter()
                .map(|f| col(f))
                .collect::<Result<_, _>>()?;
        }
        Ok(Decoder {
            format: source.format,
            key_field: source.key_field.clone(),
            ts_field: source.timestamp_field.clone(),
            ts_format: source.timestamp_format,
            value_fields,
            csv_key,
            csv_ts,
            csv_values,
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
        let mut ex = Extracted {
            key: None,
            ts: None,
            values: vec![None; self.value_fields.len()],
        };
        match self.format {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_slice(payload);
                ExtractSeed {
                    decoder: self,
                    out: &mut ex,
                }
                .deserialize(&mut de)
                .and_then(|_| de.end())
                .map_err(|e| {
                    DecodeError(format!(
                        "invalid JSON: {}",
                        excerpt(&e.to_string(), MESSAGE_MAX_CHARS)
                    ))
                })?;
            }
            Format::Csv => self.decode_csv(payload, &mut ex)?,
        }
        let key = match (&self.key_field, ex.key) {
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
        let ts_ms = match (&self.ts_field, ex.ts) {
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
            .zip(&self.value_fields)
            .map(|(v, name)| {
                v.ok_or_else(|| DecodeError(format!("missing numeric field {name:?}")))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(Record { key, ts_ms, values })
    }

    fn decode_csv(&self, payload: &[u8], ex: &mut Extracted) -> Result<(), DecodeError> {
        let line = std::str::from_utf8(payload)
            .map_err(|_| DecodeError("CSV record is not UTF-8".into()))?;
        let cols: Vec<&str> = line
            .trim_end_matches(['\r', '\n'])
            .split(',')
            .map(str::trim)
            .collect();
        let get = |i: usize| {
            cols.get(i).copied().ok_or_else(|| {
                DecodeError(format!(
                    "CSV record has {} columns, expected at least {}",
                    cols.len(),
                    i + 1
                ))
            })
        };
        if let Some(i) = self.csv_key {
            ex.key = Some(get(i)?.to_string());
        }
        if let Some(i) = self.csv_ts {
            ex.ts = Some(self.parse_ts_str(get(i)?)?);
        }
        for (slot, &i) in ex.values.iter_mut().zip(&self.csv_values) {
            let text = get(i)?;
            *slot = Some(text.parse::<f64>().map_err(|_| {
                DecodeError(format!("column {i} is not a number: {}", quoted(text)))
            })?);
        }
        Ok(())
    }

    fn ts_from_number(&self, n: f64) -> Result<i64, DecodeError> {
        if !n.is_finite() {
            return Err(DecodeError("timestamp is not a finite number".into()));
        }
        match self.ts_format {
            TimestampFormat::UnixMs => Ok(n as i64),
            TimestampFormat::UnixS => Ok((n * 1000.0).round() as i64),
            TimestampFormat::Rfc3339 => Err(DecodeError(format!(
                "timestamp {n} is a number, expected an RFC 3339 string"
            ))),
        }
    }

    fn parse_ts_str(&self, s: &str) -> Result<i64, DecodeError> {
        match self.ts_format {
            TimestampFormat::Rfc3339 => parse_rfc3339_ms(s)
                .ok_or_else(|| DecodeError(format!("timestamp {} is not RFC 3339", quoted(s)))),
            _ => s
                .parse::<f64>()
                .map_err(|_| DecodeError(format!("timestamp {} is not a number", quoted(s))))
                .and_then(|n| self.ts_from_number(n)),
        }
    }
}

struct Extracted {
    key: Option<String>,
    ts: Option<i64>,
    values: Vec<Option<f64>>,
}

struct ExtractSeed<'a> {
    decoder: &'a Decoder,
    out: &'a mut Extracted,
}

enum Field {
    Key,
    Ts,
    Value(usize),
    Other,
}

struct FieldSeed<'a>(&'a Decoder);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        let d = self.0;
        Ok(if d.key_field.as_deref() == Some(name) {
            Field::Key
        } else if d.ts_field.as_deref() == Some(name) {
            Field::Ts
        } else if let Some(i) = d.value_fields.iter().position(|f| f == name) {
            Field::Value(i)
        } else {
            Field::Other
        })
    }
}

/// A JSON scalar as the decoder needs it.
enum Scalar {
    Num(f64),
    Int(i64),
    Str(String),
    Null,
    Bool,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool)
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for ExtractSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ExtractSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key_seed(FieldSeed(self.decoder))? {
            match field {
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
                Field::Key => {
                    self.out.key = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Str(s) => Some(s),
                        Scalar::Int(i) => Some(i.to_string()),
                        _ => {
                            return Err(de::Error::custom(
                                "the key field must be a string or an integer",
                            ))
                        }
                    }
                }
                Field::Ts => {
                    let ts = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Int(i) => self.decoder.ts_from_number(i as f64),
                        Scalar::Num(n) => self.decoder.ts_from_number(n),
                        Scalar::Str(s) => self.decoder.parse_ts_str(&s),
                        _ => Err(DecodeError(
                            "the timestamp field must be a number or a string".into(),
                        )),
                    };
                    self.out.ts = Some(ts.map_err(|e| de::Error::custom(e.0))?);
                }
                Field::Value(i) => {
                    let v = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Int(n) => n as f64,
                        Scalar::Num(n) => n,
                        Scalar::Str(s) => s.parse::<f64>().map_err(|_| {
                            de::Error::custom(format!(
                                "field {:?} is not a number: {}",
                                self.decoder.value_fields[i],
                                quoted(&s)
                            ))
                        })?,
                        Scalar::Null | Scalar::Bool => {
                            return Err(de::Error::custom(format!(
                                "field {:?} must be a number",
                                self.decoder.value_fields[i]
                            )))
                        }
                    };
                    if !v.is_finite() {
                        return Err(de::Error::custom(format!(
                            "field {:?} is not finite",
                            self.decoder.value_fields[i]
                        )));
                    }
                    self.out.values[i] = Some(v);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
