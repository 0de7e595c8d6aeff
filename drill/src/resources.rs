//! Each worker process's memory and open files over the run, from the `process_*` series of its
//! `/metrics`, and how much they grew after its warm-up: what a soak is judged by. A restarted
//! worker slot is a new process (its `process_start_time_seconds` changed) with its own figures.
//!
//! Memory is judged outside the stores' block cache: that cache (memtables are charged to it) is
//! bounded by `runtime.block_cache_bytes` and fills with the state that passes through it, which
//! after a restore of the whole changelog is far more than a warm-up's worth of input. Filling a
//! bounded cache is not a leak; memory that grows outside it is. Both figures are reported.

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
    /// The block cache's peak and its medians of the same quarters.
    pub cache_peak_mib: f64,
    pub cache_after_warmup_mib: Option<f64>,
    pub cache_end_mib: Option<f64>,
    /// RSS less the block cache: what is judged.
    pub outside_cache_after_warmup_mib: Option<f64>,
    pub outside_cache_end_mib: Option<f64>,
    pub outside_cache_growth_pct: Option<f64>,
    pub fds_after_warmup: Option<i64>,
    pub fds_end: Option<i64>,
    pub fds_growth_pct: Option<f64>,
}

impl ProcessResources {
    /// The larger of the judged growths (memory outside the block cache, open files), when the
    /// process lived long enough to have them.
    pub fn growth_pct(&self) -> Option<f64> {
        match (self.outside_cache_growth_pct, self.fds_growth_pct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// One line for the report; a process that lived too briefly for a settled baseline says
    /// so instead of printing growth figures it does not have.
    pub fn summary(&self) -> String {
        let r = self;
        let head = format!(
            "w{} {:.0}-{:.0} s: RSS peak {:.1} MiB, block cache peak {:.1} MiB",
            r.worker, r.from_s, r.to_s, r.rss_peak_mib, r.cache_peak_mib
        );
        let (Some(rss_a), Some(rss_e), Some(out_a), Some(out_e), Some(fds_a), Some(fds_e)) = (
            r.rss_after_warmup_mib,
            r.rss_end_mib,
            r.outside_cache_after_warmup_mib,
            r.outside_cache_end_mib,
            r.fds_after_warmup,
            r.fds_end,
        ) else {
            return format!("{head}; lived too briefly after its warm-up to judge growth");
        };
        let pct = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:+.1} %"));
        format!(
        "{head}; RSS {rss_a:.1} -> {rss_e:.1} MiB ({}), outside the block cache {out_a:.1} -> {out_e:.1} MiB ({}), open files {fds_a} -> {fds_e} ({})",
        pct(r.rss_growth_pct),
        pct(r.outside_cache_growth_pct),
        pct(r.fds_growth_pct),
    )
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// One sample of one process.
struct Point {
    /// Seconds since the timeline started.
    t: f64,
    rss: i64,
    fds: i64,
    cache: i64,
}

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
                lives.entry((slot, w.started)).or_default().push(Point {
                    t: s.t,
                    rss: w.rss,
                    fds: w.fds,
                    cache: w.cache,
                });
            }
        }
    }
    lives
        .into_iter()
        .map(|((worker, _), life)| {
            let from = life.first().map_or(0.0, |x| x.t);
            let to = life.last().map_or(0.0, |x| x.t);
            let settled = from + warmup_s;
            let quarter = (to - settled) / 4.0;
            let judged = to - settled >= warmup_s.max(1.0);
            // Medians of the first and the last quarter after the warm-up.
            let quarters = |f: fn(&Point) -> i64| {
                let median_in = |lo: f64, hi: f64| {
                    median(
                        life.iter()
                            .filter(|x| x.t >= lo && x.t <= hi)
                            .map(f)
                            .collect(),
                    )
                };
                if !judged {
                    return (None, None);
                }
                (
                    median_in(settled, settled + quarter),
                    median_in(to - quarter, to),
                )
            };
            let mib = |v: Option<i64>| v.map(|v| round2(v as f64 / MIB));
            let peak =
                |f: fn(&Point) -> i64| round2(life.iter().map(f).max().unwrap_or(0) as f64 / MIB);
            let (rss_a, rss_b) = quarters(|x| x.rss);
            let (cache_a, cache_b) = quarters(|x| x.cache);
            let (out_a, out_b) = quarters(|x| (x.rss - x.cache).max(0));
            let (fds_a, fds_b) = quarters(|x| x.fds);
            ProcessResources {
                worker,
                from_s: round2(from),
                to_s: round2(to),
                samples: life.len(),
                rss_peak_mib: peak(|x| x.rss),
                rss_after_warmup_mib: mib(rss_a),
                rss_end_mib: mib(rss_b),
                rss_growth_pct: growth(rss_a, rss_b),
                cache_peak_mib: peak(|x| x.cache),
                cache_after_warmup_mib: mib(cache_a),
                cache_end_mib: mib(cache_b),
                outside_cache_after_warmup_mib: mib(out_a),
                outside_cache_end_mib: mib(out_b),
                outside_cache_growth_pct: growth(out_a, out_b),
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

    /// Per slot: (rss, fds, start time, cache).
    fn sample(t: f64, workers: Vec<Option<(i64, i64, i64, i64)>>) -> Sample {
        Sample {
            t,
            input_end: vec![],
            committed: vec![],
            output_end: 0,
            workers: workers
                .into_iter()
                .map(|w| {
                    w.map(|(rss, fds, started, cache)| WorkerView {
                        tasks: BTreeMap::new(),
                        rss,
                        fds,
                        started,
                        cache,
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
            let w1 = if t < 50.0 {
                (200, 40, 1, 0)
            } else {
                (300, 50, 2, 0)
            };
            samples.push(sample(t, vec![Some((rss0, 30, 7, 0)), Some(w1)]));
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
            .map(|i| sample(i as f64, vec![Some((100 + i, 10, 1, 0))]))
            .collect();
        let r = analyse(&samples, 10.0);
        assert_eq!(r[0].growth_pct(), None);
        assert_eq!(r[0].samples, 15);
    }

    /// A block cache filling towards its bound makes RSS grow; memory outside it stays flat: not
    /// judged as growth. The same growth outside the cache is.
    #[test]
    fn a_filling_block_cache_is_not_growth_but_memory_outside_it_is() {
        let filling: Vec<Sample> = (0..100)
            .map(|i| {
                let cache = i << 20;
                sample(i as f64, vec![Some(((50 << 20) + cache, 20, 1, cache))])
            })
            .collect();
        let r = analyse(&filling, 10.0);
        assert!(r[0].rss_growth_pct.unwrap() > 50.0, "{r:?}");
        assert_eq!(r[0].outside_cache_growth_pct, Some(0.0));
        assert_eq!(r[0].growth_pct(), Some(0.0));
        assert!(r[0].cache_peak_mib > 0.0);

        let leaking: Vec<Sample> = (0..100)
            .map(|i| {
                sample(
                    i as f64,
                    vec![Some(((50 << 20) + (i << 20), 20, 1, 1 << 20))],
                )
            })
            .collect();
        let r = analyse(&leaking, 10.0);
        assert!(r[0].growth_pct().unwrap() > 50.0, "{r:?}");
    }
}
