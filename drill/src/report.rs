//! The drill's findings: recovery per fault (from the monitor's samples), the verdict of the
//! comparison with the oracle, as a human summary and as JSON.

use super::monitor::{Restore, Sample};
use super::oracle::Verdict;
use super::workers::Exit;
use serde::Serialize;

/// How a fault's recovery is recognised.
#[derive(Debug, Clone)]
pub enum Measure {
    /// Every partition in `partitions` has its group-committed offset move past `baseline` (the
    /// committed offsets right after the fault took effect).
    Advance {
        partitions: Vec<i32>,
        baseline: Vec<i64>,
    },
    /// New workers: once each of them runs tasks, every partition commits again.
    NewAssignment { workers: Vec<usize> },
    /// Not measured (e.g. `resume`: its pause's recovery covers it).
    None,
}

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRun {
    pub kind: &'static str,
    pub label: String,
    pub worker: Option<usize>,
    pub at_s: f64,
    pub measure: Measure,
    pub notes: Vec<String>,
    /// broker_restart: seconds from the fault until the broker was back with every replica in sync.
    pub broker_back_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
    pub at_s: f64,
    /// Fault -> every affected input partition committed again; null when not measured.
    pub recovery_s: Option<f64>,
    pub affected_partitions: Vec<i32>,
    pub records_restored: u64,
    pub restore_records_per_s: Option<f64>,
    pub restores: usize,
    /// Times a worker found local state untrusted or unreadable and rebuilt it from the changelog
    /// (the damage was detected).
    pub restores_wiped: usize,
    /// Partitions whose restores count here.
    pub restored_partitions: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_back_s: Option<f64>,
    /// broker_restart: from the broker being back to every partition committed again (the end
    /// of the outage to the first new committed output; negative when commits went on while a
    /// broker of several was away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after_back_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The first sample at or after `from` where every partition in `partitions` committed past
/// `baseline`.
fn first_advance(
    samples: &[Sample],
    from: f64,
    partitions: &[i32],
    baseline: &[i64],
) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.t >= from)
        .find(|s| {
            partitions.iter().all(|&p| {
                let p = p as usize;
                s.committed.get(p).copied().unwrap_or(0) > baseline.get(p).copied().unwrap_or(0)
            })
        })
        .map(|s| s.t)
}

/// When a fault's recovery ended (None: not measured or never seen), and the partitions it
/// affected; notes for the report.
fn recovery(
    f: &FaultRun,
    samples: &[Sample],
    partitions_total: u32,
    notes: &mut Vec<String>,
) -> (Option<f64>, Vec<i32>) {
    let (end, affected) = match &f.measure {
        Measure::Advance {
            partitions,
            baseline,
        } => {
            // A worker that owned nothing at the fault (between two assignments) still took part
            // in the group: its recovery is the whole group committing again.
            let affected = if partitions.is_empty() {
                notes.push(
                    "the worker owned no partition at the fault: every partition is awaited".into(),
                );
                (0..partitions_total as i32).collect()
            } else {
                partitions.clone()
            };
            (
                first_advance(samples, f.at_s, &affected, baseline),
                affected,
            )
        }
        Measure::NewAssignment { workers } => {
            // The new workers run their tasks: the group has settled on the new assignment.
            let settled = samples.iter().filter(|s| s.t >= f.at_s).find(|s| {
                workers.iter().all(|w| {
                    s.workers
                        .get(*w)
                        .and_then(|v| v.as_ref())
                        .is_some_and(|v| v.all_running())
                })
            });
            let all: Vec<i32> = (0..partitions_total as i32).collect();
            match settled {
                Some(s) => (first_advance(samples, s.t, &all, &s.committed), all),
                None => {
                    notes.push("the new workers never ran a task".into());
                    (None, all)
                }
            }
        }
        Measure::None => (None, vec![]),
    };
    if end.is_none() && !matches!(f.measure, Measure::None) && !affected.is_empty() {
        notes.push("no commit after the fault was seen on every affected partition".into());
    }
    (end, affected)
}

/// The report of every fault. A restore (or a wipe of local state) counts for the latest fault
/// before it whose recovery it falls in (plus a second for the monitor's latency).
pub fn analyse(
    runs: &[FaultRun],
    samples: &[Sample],
    restores: &[Restore],
    wipes: &[(f64, i32)],
    partitions: u32,
) -> Vec<FaultReport> {
    let mut notes: Vec<Vec<String>> = runs.iter().map(|f| f.notes.clone()).collect();
    let recoveries: Vec<(Option<f64>, Vec<i32>)> = runs
        .iter()
        .zip(notes.iter_mut())
        .map(|(f, n)| recovery(f, samples, partitions, n))
        .collect();
    let owner = |t: f64| -> Option<usize> {
        (0..runs.len())
            .filter(|&i| {
                let until = recoveries[i].0.map(|e| e + 1.0).unwrap_or(runs[i].at_s);
                runs[i].at_s <= t && t <= until
            })
            .max_by(|&a, &b| runs[a].at_s.total_cmp(&runs[b].at_s))
    };
    let mut mine: Vec<Vec<&Restore>> = vec![Vec::new(); runs.len()];
    for r in restores {
        if let Some(i) = owner(r.t) {
            mine[i].push(r);
        }
    }
    let mut wiped = vec![0usize; runs.len()];
    for (t, _) in wipes {
        if let Some(i) = owner(*t) {
            wiped[i] += 1;
        }
    }
    runs.iter()
        .enumerate()
        .map(|(i, f)| {
            let (end, affected) = recoveries[i].clone();
            let records: u64 = mine[i].iter().map(|r| r.records).sum();
            // Restores of one fault run side by side: the rate is records over the longest.
            let longest = mine[i].iter().map(|r| r.seconds).fold(0.0, f64::max);
            let mut restored: Vec<i32> = mine[i].iter().map(|r| r.partition).collect();
            restored.sort_unstable();
            restored.dedup();
            FaultReport {
                kind: f.kind,
                label: f.label.clone(),
                worker: f.worker,
                at_s: round(f.at_s, 2),
                recovery_s: end.map(|e| round(e - f.at_s, 2)),
                affected_partitions: affected,
                records_restored: records,
                restore_records_per_s: (records > 0 && longest > 0.0)
                    .then(|| round(records as f64 / longest, 0)),
                restores: mine[i].len(),
                restores_wiped: wiped[i],
                restored_partitions: restored,
                broker_back_s: f.broker_back_s.map(|b| round(b, 2)),
                resumed_after_back_s: end
                    .zip(f.broker_back_s)
                    .map(|(e, b)| round(e - f.at_s - b, 2)),
                notes: std::mem::take(&mut notes[i]),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub quick: bool,
    pub guarantee: &'static str,
    pub job: String,
    pub input_topic: String,
    pub output_topic: String,
    pub partitions: u32,
    pub workers: u32,
    pub static_membership: bool,
    pub meters: u32,
    pub hours: u32,
    pub rate: u32,
    pub seed: u64,
    /// Input records the broker acknowledged (the oracle's input).
    pub records_in: u64,
    pub records_unacknowledged: u64,
    pub input_seconds: f64,
    pub windows_expected: u64,
    pub windows_emitted: u64,
    pub windows_missing: u64,
    pub windows_duplicated: u64,
    pub windows_wrong: u64,
    pub windows_unexpected: u64,
    pub output_records: u64,
    pub output_records_unreadable: u64,
    pub verified: bool,
    pub drained: bool,
    pub drain_s: f64,
    pub duration_s: f64,
    pub faults: Vec<FaultReport>,
    pub worker_exits: Vec<Exit>,
    pub workers_stopped_cleanly: bool,
    pub examples: Vec<String>,
    pub worker_errors: Vec<String>,
    /// Each worker process's memory and open files (see `resources.rs`).
    pub resources: Vec<crate::resources::ProcessResources>,
    /// The scenario's limit on their growth after warm-up, when it judges them.
    pub max_growth_pct: Option<f64>,
    pub work_dir: String,
}

impl Report {
    pub fn apply(&mut self, v: &Verdict, exactly_once: bool) {
        self.windows_expected = v.windows_expected;
        self.windows_emitted = v.windows_emitted;
        self.windows_missing = v.windows_missing;
        self.windows_duplicated = v.windows_duplicated;
        self.windows_wrong = v.windows_wrong;
        self.windows_unexpected = v.windows_unexpected;
        self.output_records_unreadable = v.output_records_unreadable;
        self.examples = v.examples.clone();
        self.verified = v.verified(exactly_once) && self.drained && self.resources_within_limit();
    }

    /// No judged process grew by more than the limit (true without a limit).
    pub fn resources_within_limit(&self) -> bool {
        let Some(limit) = self.max_growth_pct else {
            return true;
        };
        self.resources
            .iter()
            .filter_map(|r| r.growth_pct())
            .all(|g| g <= limit)
    }

    /// The summary for people.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "drill {}{}: {} workers, {} partitions, {}",
            self.scenario,
            if self.quick { " (quick)" } else { "" },
            self.workers,
            self.partitions,
            self.guarantee
        );
        if !self.description.is_empty() {
            let _ = writeln!(s, "  {}", self.description);
        }
        let _ = writeln!(
            s,
            "  input: {} records acknowledged ({} meters x {} h) in {:.1} s",
            self.records_in, self.meters, self.hours, self.input_seconds
        );
        let _ = writeln!(s, "  faults:");
        for f in &self.faults {
            let recovery = match (f.recovery_s, f.broker_back_s, f.resumed_after_back_s) {
                (Some(r), Some(b), Some(after)) => format!(
                    "recovered in {r:.2} s (broker back after {b:.2} s, commits {after:+.2} s after that)"
                ),
                (Some(r), _, _) => format!("recovered in {r:.2} s"),
                (None, _, _) => "recovery not measured".into(),
            };
            let restore = match f.restore_records_per_s {
                Some(rate) => format!(
                    ", {} records restored ({} restores{}, {rate:.0} records/s)",
                    f.records_restored,
                    f.restores,
                    if f.restores_wiped > 0 {
                        format!(", {} after a wipe", f.restores_wiped)
                    } else {
                        String::new()
                    }
                ),
                None if f.restores > 0 => format!(", {} restores (nothing to replay)", f.restores),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "    {:>7.2} s  {:<32} {recovery}{restore}",
                f.at_s, f.label
            );
            for n in &f.notes {
                let _ = writeln!(s, "               note: {n}");
            }
        }
        let _ = writeln!(
            s,
            "  output: {} records, {} windows of {} expected",
            self.output_records, self.windows_emitted, self.windows_expected
        );
        let _ = writeln!(
            s,
            "  missing {}, duplicated {}, wrong {}, unexpected {}",
            self.windows_missing,
            self.windows_duplicated,
            self.windows_wrong,
            self.windows_unexpected
        );
        for e in &self.examples {
            let _ = writeln!(s, "    {e}");
        }
        if !self.drained {
            let _ = writeln!(
                s,
                "  the group did not commit all of its input within the drain timeout"
            );
        }
        let unexpected: Vec<String> = self
            .worker_exits
            .iter()
            .filter(|e| !e.expected)
            .map(|e| format!("w{} (code {:?}) at {:.1} s", e.worker, e.code, e.at_s))
            .collect();
        if !unexpected.is_empty() {
            let _ = writeln!(
                s,
                "  workers that exited on their own: {}",
                unexpected.join(", ")
            );
        }
        for e in &self.worker_errors {
            let _ = writeln!(s, "  worker error: {e}");
        }
        if !self.workers_stopped_cleanly {
            let _ = writeln!(
                s,
                "  not every worker stopped cleanly at the end (exit code other than 0)"
            );
        }
        for r in &self.resources {
            let _ = writeln!(s, "  {}", r.summary());
        }
        if let Some(limit) = self.max_growth_pct {
            let _ = writeln!(
                s,
                "  resources: growth after warm-up (memory outside the block cache, open files) {} the {limit} % limit",
                if self.resources_within_limit() {
                    "within"
                } else {
                    "BEYOND"
                }
            );
        }
        let _ = writeln!(s, "  worker logs and state: {}", self.work_dir);
        let _ = writeln!(
            s,
            "{}",
            if self.verified {
                "VERIFIED: the output equals the oracle"
            } else {
                "NOT VERIFIED"
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, committed: Vec<i64>) -> Sample {
        Sample {
            t,
            input_end: vec![100; committed.len()],
            committed,
            output_end: 0,
            workers: vec![],
        }
    }

    #[test]
    fn recovery_ends_when_every_affected_partition_commits_again() {
        let samples = vec![
            sample(9.0, vec![10, 10, 10]),
            sample(10.5, vec![10, 10, 12]),
            sample(12.0, vec![11, 10, 13]),
            sample(14.25, vec![11, 12, 14]),
        ];
        let f = FaultRun {
            kind: "kill",
            label: "kill w0".into(),
            worker: Some(0),
            at_s: 10.0,
            measure: Measure::Advance {
                partitions: vec![0, 1],
                baseline: vec![10, 10, 10],
            },
            notes: vec![],
            broker_back_s: None,
        };
        let restores = vec![
            Restore {
                t: 11.0,
                partition: 0,
                records: 300,
                seconds: 0.5,
            },
            Restore {
                t: 11.2,
                partition: 1,
                records: 100,
                seconds: 0.25,
            },
            Restore {
                t: 30.0,
                partition: 1,
                records: 7,
                seconds: 0.1,
            },
        ];
        let r = analyse(&[f], &samples, &restores, &[(11.0, 0), (20.0, 1)], 3).remove(0);
        assert_eq!(r.restores_wiped, 1);
        assert_eq!(r.recovery_s, Some(4.25));
        assert_eq!(r.records_restored, 400);
        assert_eq!(r.restore_records_per_s, Some(800.0));
    }

    #[test]
    fn a_worker_that_owned_nothing_recovers_when_every_partition_commits_again() {
        let samples = vec![
            sample(10.5, vec![11, 10, 12]),
            sample(12.0, vec![11, 10, 13]),
            sample(13.5, vec![12, 11, 13]),
        ];
        let f = FaultRun {
            kind: "kill",
            label: "kill w2".into(),
            worker: Some(2),
            at_s: 10.0,
            measure: Measure::Advance {
                partitions: vec![],
                baseline: vec![10, 10, 10],
            },
            notes: vec![],
            broker_back_s: None,
        };
        let r = analyse(&[f], &samples, &[], &[], 3).remove(0);
        assert_eq!(r.recovery_s, Some(3.5));
        assert_eq!(r.affected_partitions, vec![0, 1, 2]);
        assert!(
            r.notes.iter().any(|n| n.contains("owned no partition")),
            "{:?}",
            r.notes
        );
    }
}
