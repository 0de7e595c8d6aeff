//! Each worker process's memory and open files over the run, from the `process_*` series of its
//! `/metrics`, and how much they grew after its warm-up: what a soak is judged by. A restarted
//! worker slot is a new process (its `process_start_time_seconds` changed) with its own figures.

use crate::monitor::Sample;
use serde::Serialize;
use std::collections::BTreeMap;

/// One worker process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessResources {
    pub worker: usize,
    /// Seconds since the timeline started: the first and the last sample.
    pub from_s: f64,
    pub to_s: f64,
    pub samples: usize,
    pub rss_peak_mib: f64,
    /// Medians of the first and the last quarter of the life after the warm-up.
    pub rss_after_warmup_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_growth_pct: Option<f64>,
    pub fds_after_warmup: Option<i64>,
    pub fds_end: Option<i64>,
    pub fds_growth_pct: Option<f64>,
}

impl ProcessResources {
    /// The larger of the two growths, when the process lived long enough to have them.
    pub fn growth_pct(&self) -> Option<f64> {
        match (self.rss_growth_pct, self.fds_growth_pct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// One sample of one process: (seconds since the timeline started, RSS bytes, open files).
type Point = (f64, i64, i64);

fn median(mut v: Vec<i64>) -> Option<i64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn growth(before: Option<i64>, after: Option<i64>) -> Option<f64> {
    let (b, a) = (before?, after?);
    (b > 0).then(|| ((a - b) as f64 / b as f64 * 1000.0).round() / 10.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Per worker process, in order of slot and start. Growth needs a life after the warm-up of at
/// least `warmup_s` too (so that both quarters hold samples from a settled process).
pub fn analyse(samples: &[Sample], warmup_s: f64) -> Vec<ProcessResources> {
    // (slot, start time) -> samples (t, rss, fds)
    let mut lives: BTreeMap<(usize, i64), Vec<Point>> = BTreeMap::new();
    for s in samples {
        for (slot, w) in s.workers.iter().enumerate() {
            if let Some(w) = w.as_ref().filter(|w| w.rss > 0) {
                lives
                    .entry((slot, w.started))
                    .or_default()
                    .push((s.t, w.rss, w.fds));
            }
        }
    }
    lives
        .into_iter()
        .map(|((worker, _), life)| {
            let from = life.first().map_or(0.0, |x| x.0);
            let to = life.last().map_or(0.0, |x| x.0);
            let settled = from + warmup_s;
            let quarter = (to - settled) / 4.0;
            let judged = to - settled >= warmup_s.max(1.0);
            let window = |lo: f64, hi: f64, f: fn(&Point) -> i64| {
                if !judged {
                    return None;
                }
                median(
                    life.iter()
                        .filter(|x| x.0 >= lo && x.0 <= hi)
                        .map(f)
                        .collect(),
                )
            };
            let rss_a = window(settled, settled + quarter, |x| x.1);
            let rss_b = window(to - quarter, to, |x| x.1);
            let fds_a = window(settled, settled + quarter, |x| x.2);
            let fds_b = window(to - quarter, to, |x| x.2);
            ProcessResources {
                worker,
                from_s: round2(from),
                to_s: round2(to),
                samples: life.len(),
                rss_peak_mib: round2(life.iter().map(|x| x.1).max().unwrap_or(0) as f64 / MIB),
                rss_after_warmup_mib: rss_a.map(|v| round2(v as f64 / MIB)),
                rss_end_mib: rss_b.map(|v| round2(v as f64 / MIB)),
                rss_growth_pct: growth(rss_a, rss_b),
                fds_after_warmup: fds_a,
                fds_end: fds_b,
                fds_growth_pct: growth(fds_a, fds_b),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::WorkerView;

    fn sample(t: f64, workers: Vec<Option<(i64, i64, i64)>>) -> Sample {
        Sample {
            t,
            input_end: vec![],
            committed: vec![],
            output_end: 0,
            workers: workers
                .into_iter()
                .map(|w| {
                    w.map(|(rss, fds, started)| WorkerView {
                        tasks: BTreeMap::new(),
                        rss,
                        fds,
                        started,
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn growth_is_measured_per_process_after_its_warmup() {
        let mut samples = Vec::new();
        for i in 0..100 {
            let t = i as f64;
            // Slot 0: fills up during the warm-up (10 s), then grows 20 % by the end.
            let rss0 = if t < 10.0 {
                10 + i
            } else {
                100 + (t as i64 - 10) * 20 / 90
            };
            // Slot 1: restarted at 50 s (a new start time), flat.
            let w1 = if t < 50.0 { (200, 40, 1) } else { (300, 50, 2) };
            samples.push(sample(t, vec![Some((rss0, 30, 7)), Some(w1)]));
        }
        let r = analyse(&samples, 10.0);
        assert_eq!(r.len(), 3, "{r:?}");
        let growth0 = r[0].rss_growth_pct.unwrap();
        assert!((12.0..=20.0).contains(&growth0), "{growth0}");
        assert_eq!(r[0].fds_growth_pct, Some(0.0));
        assert_eq!((r[1].worker, r[1].to_s), (1, 49.0));
        assert_eq!(r[1].growth_pct(), Some(0.0));
        assert_eq!((r[2].worker, r[2].from_s), (1, 50.0));
    }

    #[test]
    fn a_short_life_is_not_judged() {
        let samples: Vec<Sample> = (0..15)
            .map(|i| sample(i as f64, vec![Some((100 + i, 10, 1))]))
            .collect();
        let r = analyse(&samples, 10.0);
        assert_eq!(r[0].growth_pct(), None);
        assert_eq!(r[0].samples, 15);
    }
}
