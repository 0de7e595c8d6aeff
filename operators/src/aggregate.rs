//! The aggregate kept per key and window: count, sum, min and max, from which every supported
//! function (avg, sum, count, min, max) is derived. Stored with bincode as an absolute value.

use crate::formats::{Encode, Value};
use crate::time::format_rfc3339_ms;
use serde::{Deserialize, Serialize};
use weir_config::AggregateFn;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Agg {
    pub fn new(v: f64) -> Agg {
        Agg {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    pub fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Combines two aggregates (session merges).
    pub fn merge(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn value(&self, f: AggregateFn) -> f64 {
        match f {
            AggregateFn::Avg => self.sum / self.count as f64,
            AggregateFn::Sum => self.sum,
            AggregateFn::Count => self.count as f64,
            AggregateFn::Min => self.min,
            AggregateFn::Max => self.max,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("fixed-size struct serialises")
    }

    pub fn decode(bytes: &[u8]) -> Option<Agg> {
        bincode::deserialize(bytes).ok()
    }

    /// The output record of the window `[start, end]`, in `encoder`'s format: the key (named
    /// `key_name`), `window_start`, `window_end` (RFC 3339), `window_start_ms`, `window_end_ms`,
    /// then a value per function, in that order.
    pub fn encode_result(
        &self,
        encoder: &dyn Encode,
        key: (&str, &str),
        (start, end): (i64, i64),
        functions: &[AggregateFn],
        out: &mut Vec<u8>,
    ) {
        let (start_text, end_text) = (format_rfc3339_ms(start), format_rfc3339_ms(end));
        let mut row: Vec<(&str, Value)> = Vec::with_capacity(5 + functions.len());
        row.extend([
            (key.0, Value::Str(key.1)),
            ("window_start", Value::Str(&start_text)),
            ("window_end", Value::Str(&end_text)),
            ("window_start_ms", Value::Int(start)),
            ("window_end_ms", Value::Int(end)),
        ]);
        for &f in functions {
            let v = match f {
                AggregateFn::Count => Value::Int(i64::try_from(self.count).unwrap_or(i64::MAX)),
                _ => Value::Float(self.value(f)),
            };
            row.push((f.name(), v));
        }
        encoder.encode(&row, out);
    }

    /// The output record as JSON (see [`Agg::encode_result`]).
    pub fn to_json(
        &self,
        key_name: &str,
        key: &str,
        start: i64,
        end: i64,
        functions: &[AggregateFn],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let json = crate::formats::json();
        self.encode_result(&*json, (key_name, key), (start, end), functions, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_every_function_and_round_trips() {
        let mut a = Agg::new(2.0);
        a.add(4.0);
        a.add(0.0);
        assert_eq!(
            (
                a.value(AggregateFn::Avg),
                a.value(AggregateFn::Min),
                a.value(AggregateFn::Max)
            ),
            (2.0, 0.0, 4.0)
        );
        assert_eq!(Agg::decode(&a.encode()), Some(a));
        let json: serde_json::Value = serde_json::from_slice(&a.to_json(
            "meter_id",
            "m",
            0,
            3_600_000,
            &[AggregateFn::Avg, AggregateFn::Count],
        ))
        .unwrap();
        assert_eq!(json["count"], 3);
        assert_eq!(json["avg"], 2.0);
        assert_eq!(json["window_end"], "1970-01-01T01:00:00.000Z");
    }
}
