//! Several interleaved rounds of every runner, summarised: each rate and ratio as the median of
//! the rounds with their spread (min, max), so that one noisy run does not make the figure.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The ratios the performance targets are stated in: (name, numerator runner, denominator runner).
const RATIOS: &[(&str, &str, &str)] = &[
    ("weir_alos/bare", "weir_alos", "bare"),
    (
        "weir_alos/kafka_streams_alos",
        "weir_alos",
        "kafka_streams_alos",
    ),
    ("weir_eos/weir_alos", "weir_eos", "weir_alos"),
    (
        "weir_eos/kafka_streams_eos",
        "weir_eos",
        "kafka_streams_eos",
    ),
    ("weir_alos/quix", "weir_alos", "quix"),
];

/// The two rates every run reports.
const RATES: &[&str] = &["records_per_s", "steady_records_per_s"];

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn spread(xs: &[f64]) -> Value {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if xs.is_empty() {
        Value::Null
    } else {
        json!([min, max])
    }
}

fn rate(run: &Value, key: &str) -> Option<f64> {
    run[key].as_f64()
}

/// Per runner: the round whose whole-run rate is the median (its other figures kept as they
/// were, so the shape of a single run stays), with every rate replaced by the median of the
/// rounds, `<rate>_runs` listing each round's and `<rate>_spread` their [min, max]; verified only
/// if every round was.
pub fn runs(rounds: &BTreeMap<String, Vec<Value>>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, rs) in rounds {
        let whole: Vec<f64> = rs.iter().filter_map(|r| rate(r, RATES[0])).collect();
        let mid = median(&whole);
        let base = rs
            .iter()
            .min_by(|a, b| {
                let d = |r: &Value| (rate(r, RATES[0]).unwrap_or(0.0) - mid.unwrap_or(0.0)).abs();
                d(a).total_cmp(&d(b))
            })
            .cloned()
            .unwrap_or(Value::Null);
        let mut summary = base;
        for key in RATES {
            let xs: Vec<f64> = rs.iter().filter_map(|r| rate(r, key)).collect();
            summary[*key] = json!(median(&xs).map(f64::round));
            summary[format!("{key}_runs")] = json!(xs);
            summary[format!("{key}_spread")] = spread(&xs);
        }
        summary["rounds"] = json!(rs.len());
        summary["verified"] = json!(rs.iter().all(|r| r["verified"] == json!(true)));
        out.insert(name.clone(), summary);
    }
    out
}

/// Each target ratio per rate: computed within each round (both runners measured minutes apart on
/// the same broker), then the median and [min, max] over the rounds. Only verified rounds count.
pub fn ratios(rounds: &BTreeMap<String, Vec<Value>>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, num, den) in RATIOS {
        let (Some(n), Some(d)) = (rounds.get(*num), rounds.get(*den)) else {
            continue;
        };
        let mut entry = Map::new();
        for key in RATES {
            let xs: Vec<f64> = n
                .iter()
                .zip(d)
                .filter(|(a, b)| a["verified"] == json!(true) && b["verified"] == json!(true))
                .filter_map(|(a, b)| Some(rate(a, key)? / rate(b, key)?))
                .map(|x| (x * 1000.0).round() / 1000.0)
                .collect();
            entry.insert(
                key.to_string(),
                json!({ "median": median(&xs), "spread": spread(&xs), "runs": xs }),
            );
        }
        out.insert(name.to_string(), Value::Object(entry));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(whole: f64, steady: f64, verified: bool) -> Value {
        json!({ "records_per_s": whole, "steady_records_per_s": steady, "cpu_s": whole / 100.0, "verified": verified })
    }

    #[test]
    fn rates_are_medians_of_the_rounds_with_their_spread() {
        let mut rounds = BTreeMap::new();
        rounds.insert(
            "bare".to_string(),
            vec![
                run(500.0, 600.0, true),
                run(300.0, 400.0, true),
                run(400.0, 800.0, true),
            ],
        );
        rounds.insert(
            "weir_alos".to_string(),
            vec![
                run(250.0, 300.0, true),
                run(150.0, 200.0, true),
                run(100.0, 100.0, false),
            ],
        );
        let r = runs(&rounds);
        assert_eq!(r["bare"]["records_per_s"], json!(400.0));
        assert_eq!(r["bare"]["steady_records_per_s"], json!(600.0));
        assert_eq!(r["bare"]["records_per_s_spread"], json!([300.0, 500.0]));
        // The other figures are the median round's.
        assert_eq!(r["bare"]["cpu_s"], json!(4.0));
        assert_eq!(r["bare"]["verified"], json!(true));
        assert_eq!(r["weir_alos"]["verified"], json!(false));

        let q = ratios(&rounds);
        // Per round: 250/500 and 150/300; the unverified third round does not count.
        let whole = &q["weir_alos/bare"]["records_per_s"];
        assert_eq!(whole["runs"], json!([0.5, 0.5]));
        assert_eq!(whole["median"], json!(0.5));
        assert_eq!(
            q["weir_alos/bare"]["steady_records_per_s"]["spread"],
            json!([0.5, 0.5])
        );
        assert!(q.get("weir_alos/kafka_streams_alos").is_none());
    }
}
