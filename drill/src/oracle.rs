//! The right answer, computed here from the acknowledged input alone, and the comparison with what
//! the job wrote. Deliberately independent of `operators/`: per meter and hour of event time, the
//! count, average, minimum and maximum of `kwh` over readings with `kwh >= 0` (the flagship job).
//! The integration tests take their oracle from here too ([`hourly`], [`Hourly::same_as`]).

use serde::Serialize;
use std::collections::BTreeMap;
use weir_engine::generator::Reading;

const HOUR_MS: i64 = 3_600_000;

/// One hourly result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hourly {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

impl Hourly {
    /// Equal, up to the last bits of the average.
    pub fn same_as(&self, other: &Hourly) -> bool {
        self.count == other.count
            && self.min == other.min
            && self.max == other.max
            // Sums of the same numbers in another order may differ in the last bits.
            && (self.avg - other.avg).abs() <= 1e-9 * self.avg.abs().max(1.0)
    }
}

/// (meter, hour start in ms) -> result.
pub type Windows = BTreeMap<(String, i64), Hourly>;

/// Running totals of one window.
#[derive(Default)]
struct Totals {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// The expected results of `readings` under the flagship job: its filter keeps `kwh >= 0`.
pub fn expected<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> Windows {
    hourly(readings.into_iter().filter(|r| r.kwh >= 0.0))
}

/// Per meter and hour of event time: the count, average, minimum and maximum of every reading.
pub fn hourly<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> Windows {
    let mut totals: BTreeMap<(String, i64), Totals> = BTreeMap::new();
    for r in readings {
        let hour = r.ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let t = totals.entry((r.meter_id.clone(), hour)).or_default();
        if t.count == 0 {
            (t.min, t.max) = (r.kwh, r.kwh);
        } else {
            t.min = t.min.min(r.kwh);
            t.max = t.max.max(r.kwh);
        }
        t.count += 1;
        t.sum += r.kwh;
    }
    totals
        .into_iter()
        .map(|(k, t)| {
            (
                k,
                Hourly {
                    count: t.count,
                    avg: t.sum / t.count as f64,
                    min: t.min,
                    max: t.max,
                },
            )
        })
        .collect()
}

/// Every result the job wrote, per window, in output order.
pub type Emitted = BTreeMap<(String, i64), Vec<Hourly>>;

/// Parses output records (JSON with `meter_id`, `window_start_ms`, `count`, `avg`, `min`, `max`);
/// the sentinels' own windows are left out. Returns the results and the records that did not parse.
pub fn parse_outputs<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> (Emitted, u64) {
    let mut out = Emitted::new();
    let mut unreadable = 0;
    for p in payloads {
        let parsed = serde_json::from_slice::<serde_json::Value>(p)
            .ok()
            .and_then(|v| {
                let meter = v.get("meter_id")?.as_str()?.to_string();
                let start = v.get("window_start_ms")?.as_i64()?;
                let h = Hourly {
                    count: v.get("count")?.as_u64()?,
                    avg: v.get("avg")?.as_f64()?,
                    min: v.get("min")?.as_f64()?,
                    max: v.get("max")?.as_f64()?,
                };
                Some((meter, start, h))
            });
        match parsed {
            Some((meter, _, _)) if meter.starts_with("sentinel-") => {}
            Some((meter, start, h)) => out.entry((meter, start)).or_default().push(h),
            None => unreadable += 1,
        }
    }
    (out, unreadable)
}

/// How the output differs from the expected results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub windows_expected: u64,
    pub windows_emitted: u64,
    pub windows_missing: u64,
    /// Windows with more than one result.
    pub windows_duplicated: u64,
    /// Windows with at least one result that differs from the expected one.
    pub windows_wrong: u64,
    /// Results for windows that should not exist.
    pub windows_unexpected: u64,
    pub output_records_unreadable: u64,
    /// A few examples of each problem, for people.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Exactly-once: nothing missing, duplicated, wrong or unexpected. At-least-once: duplicates are
    /// allowed (they are equal, or they count as wrong).
    pub fn verified(&self, exactly_once: bool) -> bool {
        self.windows_missing == 0
            && self.windows_wrong == 0
            && self.windows_unexpected == 0
            && self.output_records_unreadable == 0
            && (!exactly_once || self.windows_duplicated == 0)
    }
}

const EXAMPLES_PER_KIND: usize = 3;

pub fn compare(expected: &Windows, emitted: &Emitted, unreadable: u64) -> Verdict {
    let mut v = Verdict {
        windows_expected: expected.len() as u64,
        windows_emitted: emitted.len() as u64,
        output_records_unreadable: unreadable,
        ..Verdict::default()
    };
    let (mut missing, mut duplicated, mut wrong, mut unexpected) = (0, 0, 0, 0);
    let time = |ms: i64| format!("{}h", (ms - super::input::START_MS) / HOUR_MS);
    for ((meter, start), want) in expected {
        let key = (meter.clone(), *start);
        match emitted.get(&key) {
            None => {
                v.windows_missing += 1;
                missing += 1;
                if missing <= EXAMPLES_PER_KIND {
                    v.examples
                        .push(format!("missing: {meter} hour {}", time(*start)));
                }
            }
            Some(got) => {
                if got.len() > 1 {
                    v.windows_duplicated += 1;
                    duplicated += 1;
                    if duplicated <= EXAMPLES_PER_KIND {
                        v.examples.push(format!(
                            "duplicated: {meter} hour {}: {} results",
                            time(*start),
                            got.len()
                        ));
                    }
                }
                if let Some(bad) = got.iter().find(|g| !g.same_as(want)) {
                    v.windows_wrong += 1;
                    wrong += 1;
                    if wrong <= EXAMPLES_PER_KIND {
                        v.examples.push(format!(
                            "wrong: {meter} hour {}: got {bad:?}, want {want:?}",
                            time(*start)
                        ));
                    }
                }
            }
        }
    }
    for (meter, start) in emitted.keys().filter(|k| !expected.contains_key(*k)) {
        v.windows_unexpected += 1;
        unexpected += 1;
        if unexpected <= EXAMPLES_PER_KIND {
            v.examples
                .push(format!("unexpected: {meter} window start {start}"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(meter: &str, minute: i64, kwh: f64) -> Reading {
        Reading {
            meter_id: meter.into(),
            ts_ms: super::super::input::START_MS + minute * 60_000,
            kwh,
        }
    }

    #[test]
    fn negative_readings_do_not_count_and_hours_are_separate() {
        let readings = [
            r("a", 0, 1.0),
            r("a", 30, 3.0),
            r("a", 45, -1.0),
            r("a", 60, 0.5),
            r("b", 10, -2.0),
        ];
        let e = expected(&readings);
        assert_eq!(e.len(), 2, "b has no valid reading, so no window");
        let first = e.values().next().unwrap();
        assert_eq!(
            *first,
            Hourly {
                count: 2,
                avg: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn missing_duplicated_wrong_and_unexpected_windows_are_counted_apart() {
        let readings = [r("a", 0, 1.0), r("b", 0, 2.0), r("c", 0, 3.0)];
        let e = expected(&readings);
        let mut out = Emitted::new();
        let k = |m: &str| (m.to_string(), super::super::input::START_MS);
        out.insert(k("a"), vec![e[&k("a")], e[&k("a")]]);
        let mut bad = e[&k("b")];
        bad.count = 2;
        out.insert(k("b"), vec![bad]);
        out.insert(k("z"), vec![e[&k("a")]]);
        let v = compare(&e, &out, 0);
        assert_eq!(
            (
                v.windows_missing,
                v.windows_duplicated,
                v.windows_wrong,
                v.windows_unexpected
            ),
            (1, 1, 1, 1)
        );
        assert!(!v.verified(false));
        out.remove(&k("z"));
        out.insert(k("b"), vec![e[&k("b")]]);
        out.insert(k("c"), vec![e[&k("c")]]);
        let v = compare(&e, &out, 0);
        assert!(v.verified(false), "equal duplicates pass at-least-once");
        assert!(!v.verified(true), "but not exactly-once");
    }

    #[test]
    fn outputs_parse_and_sentinels_are_left_out() {
        let a = br#"{"meter_id":"meter-00001","window_start_ms":5,"count":2,"avg":1.5,"min":1,"max":2}"#;
        let s =
            br#"{"meter_id":"sentinel-0","window_start_ms":5,"count":1,"avg":0,"min":0,"max":0}"#;
        let (out, unreadable) = parse_outputs([&a[..], &s[..], b"nope"]);
        assert_eq!(out.len(), 1);
        assert_eq!(unreadable, 1);
    }
}
