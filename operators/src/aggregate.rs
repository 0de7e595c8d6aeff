//! The aggregate kept per key and window: count, sum, min and max, from which every supported
//! function (avg, sum, count, min, max) is derived. Stored with bincode as an absolute value.

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

    /// The output record: `{"<key_name>": key, "window_start": .., "window_end": .., "<fn>": ..}`.
    pub fn to_json(
        &self,
        key_name: &str,
        key: &str,
        start: i64,
        end: i64,
        functions: &[AggregateFn],
    ) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert(key_name.to_string(), key.into());
        m.insert("window_start".into(), format_rfc3339_ms(start).into());
        m.insert("window_end".into(), format_rfc3339_ms(end).into());
        m.insert("window_start_ms".into(), start.into());
        m.insert("window_end_ms".into(), end.into());
        for &f in functions {
            let v = self.value(f);
            m.insert(
                f.name().into(),
                if f == AggregateFn::Count {
                    (self.count).into()
                } else {
                    v.into()
                },
            );
        }
        serde_json::to_vec(&m).expect("a JSON map serialises")
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
