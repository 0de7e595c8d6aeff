//! A drill scenario: one TOML file naming the job, the workers, the input and a timeline of faults.
//! Unknown keys are rejected and every problem is reported as `FILE:LINE:COL: message`, like job
//! files. See `docs/drills.md` for every key.

use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use weir_config::{
    deserialize_toml, error_at, read_bounded, ConfigError, ConfigErrors, Duration, Guarantee,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the drill shows, in a sentence (printed with the report).
    #[serde(default)]
    pub description: String,
    /// The job file, relative to the scenario file.
    pub job: Spanned<String>,
    /// Workers started before the timeline begins.
    pub workers: Spanned<u32>,
    /// Partitions of the input topic the drill creates.
    #[serde(default = "default_partitions")]
    pub partitions: Spanned<u32>,
    /// Overrides the job's `processing.guarantee`.
    pub guarantee: Option<Guarantee>,
    /// Overrides the job's `processing.commit_interval`.
    pub commit_interval: Option<Duration>,
    /// Give each worker slot a stable `--instance-id` (static group membership).
    #[serde(default)]
    pub static_membership: bool,
    /// `WEIR_SESSION_TIMEOUT` of the workers (how long the group waits for a silent member).
    pub session_timeout: Option<Duration>,
    /// Extra environment of every worker process, e.g. `{ WEIR_FAILPOINT = "drop_output:5" }`.
    #[serde(default)]
    pub worker_env: BTreeMap<String, String>,
    /// The run directory of `cargo xtask kafka start` (`bootstrap` and `pids` files), relative to
    /// the scenario file; needed by `broker_restart`.
    pub kafka_dir: Option<String>,
    /// How long to wait, after the timeline, for the group to commit every input record.
    pub drain_timeout: Option<Duration>,
    pub input: Input,
    /// How `--quick` shrinks the drill.
    #[serde(default)]
    pub quick: Quick,
    /// A soak's judgement of the workers' memory and open files.
    pub resources: Option<Resources>,
    /// The timeline, as `[[fault]]` tables.
    #[serde(default, rename = "fault")]
    pub faults: Vec<Spanned<Fault>>,
}

fn default_partitions() -> Spanned<u32> {
    Spanned::new(0..0, 6)
}

/// How much a worker process's memory and open files may grow after its warm-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// The start of a process's life that does not count (caches and memtables filling);
    /// `--quick` scales it with the timeline.
    pub warmup: Duration,
    /// The limit, in percent, on growth from just after the warm-up to the end of the process's
    /// life (medians of the first and the last quarter of what follows the warm-up).
    pub max_growth_pct: f64,
    /// Whether `--quick` judges growth too (a short run may still be filling its caches).
    #[serde(default)]
    pub judge_quick: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub meters: Spanned<u32>,
    /// Hours of event time.
    pub hours: Spanned<u32>,
    /// One reading per meter per interval of event time.
    #[serde(default = "default_interval")]
    pub interval: Spanned<Duration>,
    /// Records produced per second of wall-clock time.
    pub rate: Spanned<u32>,
    pub seed: u64,
    /// Readings out of every thousand with a negative value (a faulty register) that the job's
    /// filter must drop.
    #[serde(default = "default_bad_per_mille")]
    pub bad_per_mille: u32,
}

fn default_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_millis(300_000))
}

fn default_bad_per_mille() -> u32 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quick {
    /// Every fault's time and delays are multiplied by this (0 < scale <= 1).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    pub meters: Option<u32>,
    pub hours: Option<u32>,
    pub rate: Option<u32>,
}

impl Default for Quick {
    fn default() -> Self {
        Quick {
            time_scale: default_time_scale(),
            meters: None,
            hours: None,
            rate: None,
        }
    }
}

fn default_time_scale() -> f64 {
    0.5
}

/// How a task's local state is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// The checkpoint file is deleted: the store is untrusted, wiped and restored in full.
    DeleteCheckpoint,
    /// The checkpoint file is overwritten with garbage (its checksum fails).
    GarbleCheckpoint,
    /// RocksDB's `CURRENT` and `MANIFEST-*` files are overwritten: the store cannot be opened.
    Rocksdb,
}

impl Damage {
    pub fn name(self) -> &'static str {
        match self {
            Damage::DeleteCheckpoint => "delete_checkpoint",
            Damage::GarbleCheckpoint => "garble_checkpoint",
            Damage::Rocksdb => "rocksdb",
        }
    }
}

/// Which broker a `broker_restart` hits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum BrokerRef {
    /// A node id (`node.id` of the broker's server.properties).
    Node(i32),
    /// `"leader"`: the leader of input partition 0 at the time of the fault; `"oldest"`: the
    /// broker that has run longest (one after another, a rolling restart); `"all"`: every broker
    /// (an outage of the whole cluster).
    Role(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BrokerSignal {
    /// SIGKILL: a crash.
    #[default]
    Kill,
    /// SIGTERM: a controlled shutdown.
    Term,
}

/// One fault of the timeline; `at` counts from the first input record.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// SIGKILL a worker; start it again (same slot: state directory, instance id) after a delay.
    Kill {
        at: Duration,
        worker: usize,
        restart_after: Option<Duration>,
    },
    /// SIGTERM a worker (it commits and leaves the group); start it again after a delay.
    Stop {
        at: Duration,
        worker: usize,
        restart_after: Option<Duration>,
    },
    /// SIGSTOP a worker; SIGCONT it after `resume_after` (or at a later `resume`).
    Pause {
        at: Duration,
        worker: usize,
        resume_after: Option<Duration>,
    },
    /// SIGCONT a paused worker.
    Resume { at: Duration, worker: usize },
    /// Start `count` new workers (new slots).
    AddWorker {
        at: Duration,
        #[serde(default = "one")]
        count: u32,
    },
    /// SIGKILL a worker, damage its local state, start it again after `restart_after`.
    CorruptState {
        at: Duration,
        worker: usize,
        damage: Damage,
        /// Only these partitions' task directories (default: every one the worker has).
        partitions: Option<Vec<i32>>,
        restart_after: Option<Duration>,
    },
    /// Kill a broker of a cluster the drill owns and start it again, identically, after a delay.
    BrokerRestart {
        at: Duration,
        broker: BrokerRef,
        #[serde(default)]
        signal: BrokerSignal,
        restart_after: Option<Duration>,
    },
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn at(&self) -> std::time::Duration {
        match self {
            Fault::Kill { at, .. }
            | Fault::Stop { at, .. }
            | Fault::Pause { at, .. }
            | Fault::Resume { at, .. }
            | Fault::AddWorker { at, .. }
            | Fault::CorruptState { at, .. }
            | Fault::BrokerRestart { at, .. } => at.std(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Stop { .. } => "stop",
            Fault::Pause { .. } => "pause",
            Fault::Resume { .. } => "resume",
            Fault::AddWorker { .. } => "add_worker",
            Fault::CorruptState { .. } => "corrupt_state",
            Fault::BrokerRestart { .. } => "broker_restart",
        }
    }

    pub fn worker(&self) -> Option<usize> {
        match self {
            Fault::Kill { worker, .. }
            | Fault::Stop { worker, .. }
            | Fault::Pause { worker, .. }
            | Fault::Resume { worker, .. }
            | Fault::CorruptState { worker, .. } => Some(*worker),
            Fault::AddWorker { .. } | Fault::BrokerRestart { .. } => None,
        }
    }

    /// A short label for logs and the plot, e.g. `kill w1`.
    pub fn label(&self) -> String {
        match self {
            Fault::AddWorker { count, .. } => format!("add_worker x{count}"),
            Fault::CorruptState { worker, damage, .. } => {
                format!("corrupt_state w{worker} ({})", damage.name())
            }
            Fault::BrokerRestart { broker, .. } => match broker {
                BrokerRef::Node(n) => format!("broker_restart node {n}"),
                BrokerRef::Role(r) => format!("broker_restart {r}"),
            },
            other => format!("{} w{}", other.kind(), other.worker().unwrap_or_default()),
        }
    }

    /// The same fault with its time and delays multiplied by `scale`.
    fn scaled(&self, scale: f64) -> Fault {
        let s = |d: &Duration| Duration(d.std().mul_f64(scale));
        let so = |d: &Option<Duration>| d.as_ref().map(s);
        match self {
            Fault::Kill {
                at,
                worker,
                restart_after,
            } => Fault::Kill {
                at: s(at),
                worker: *worker,
                restart_after: so(restart_after),
            },
            Fault::Stop {
                at,
                worker,
                restart_after,
            } => Fault::Stop {
                at: s(at),
                worker: *worker,
                restart_after: so(restart_after),
            },
            Fault::Pause {
                at,
                worker,
                resume_after,
            } => Fault::Pause {
                at: s(at),
                worker: *worker,
                resume_after: so(resume_after),
            },
            Fault::Resume { at, worker } => Fault::Resume {
                at: s(at),
                worker: *worker,
            },
            Fault::AddWorker { at, count } => Fault::AddWorker {
                at: s(at),
                count: *count,
            },
            Fault::CorruptState {
                at,
                worker,
                damage,
                partitions,
                restart_after,
            } => Fault::CorruptState {
                at: s(at),
                worker: *worker,
                damage: *damage,
                partitions: partitions.clone(),
                restart_after: so(restart_after),
            },
            Fault::BrokerRestart {
                at,
                broker,
                signal,
                restart_after,
            } => Fault::BrokerRestart {
                at: s(at),
                broker: broker.clone(),
                signal: *signal,
                restart_after: so(restart_after),
            },
        }
    }
}

/// The input a drill produces, after `--quick` was applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputPlan {
    pub meters: u32,
    pub hours: u32,
    pub interval_ms: i64,
    pub rate: u32,
    pub seed: u64,
    pub bad_per_mille: u32,
}

impl InputPlan {
    pub fn readings_per_meter(&self) -> u64 {
        (self.hours as i64 * 3_600_000 / self.interval_ms.max(1)) as u64
    }

    pub fn total(&self) -> u64 {
        self.meters as u64 * self.readings_per_meter()
    }

    /// Wall-clock time the input takes to produce at `rate`.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.total() as f64 / self.rate.max(1) as f64)
    }
}

/// A loaded scenario with `--quick` applied: what a drill runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    pub scenario: Scenario,
    pub job_file: PathBuf,
    pub input: InputPlan,
    /// Faults in time order.
    pub faults: Vec<Fault>,
    pub quick: bool,
    /// What every time of the timeline was multiplied by (1 unless `--quick`).
    pub time_scale: f64,
}

impl Plan {
    pub fn kafka_dir(&self) -> Option<PathBuf> {
        self.scenario
            .kafka_dir
            .as_ref()
            .map(|d| base_dir(&self.file).join(d))
    }
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Reads and validates a scenario file; `quick` applies its `[quick]` table.
pub fn load(path: &Path, quick: bool) -> Result<Plan, ConfigErrors> {
    let file = path.display().to_string();
    let cannot = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 1,
            col: 1,
            message,
        }])
    };
    let bytes = read_bounded(path).map_err(cannot)?;
    let text =
        String::from_utf8(bytes).map_err(|_| cannot("the file is not valid UTF-8".into()))?;
    let plan = parse(path, &text, quick)?;
    if !plan.job_file.exists() {
        return Err(ConfigErrors(vec![error_at(
            &file,
            &text,
            plan.scenario.job.span().start,
            format!("job file {} does not exist", plan.job_file.display()),
        )]));
    }
    Ok(plan)
}

/// Parses and validates scenario text (`path` names it in errors and anchors relative paths).
pub fn parse(path: &Path, text: &str, quick: bool) -> Result<Plan, ConfigErrors> {
    let file = path.display().to_string();
    let scenario: Scenario = deserialize_toml(&file, text)?;
    let mut errors = Vec::new();
    let mut report = |span: Range<usize>, message: String| {
        errors.push(error_at(&file, text, span.start, message));
    };
    let positive = |v: &Spanned<u32>, what: &str, report: &mut dyn FnMut(Range<usize>, String)| {
        if *v.get_ref() == 0 {
            report(v.span(), format!("{what} must be at least 1"));
        }
    };
    positive(&scenario.workers, "workers", &mut report);
    positive(&scenario.partitions, "partitions", &mut report);
    positive(&scenario.input.meters, "input.meters", &mut report);
    positive(&scenario.input.hours, "input.hours", &mut report);
    positive(&scenario.input.rate, "input.rate", &mut report);
    let interval = scenario.input.interval.get_ref().as_millis() as i64;
    if interval == 0 || 3_600_000 % interval != 0 {
        report(
            scenario.input.interval.span(),
            "input.interval must divide an hour, e.g. \"5m\" or \"1m\"".into(),
        );
    }
    let q = &scenario.quick;
    if !(q.time_scale > 0.0 && q.time_scale <= 1.0) {
        report(
            0..0,
            format!("quick.time_scale = {} must be in (0, 1]", q.time_scale),
        );
    }
    let input = InputPlan {
        meters: quick
            .then_some(q.meters)
            .flatten()
            .unwrap_or(*scenario.input.meters.get_ref()),
        hours: quick
            .then_some(q.hours)
            .flatten()
            .unwrap_or(*scenario.input.hours.get_ref()),
        interval_ms: interval.max(1),
        rate: quick
            .then_some(q.rate)
            .flatten()
            .unwrap_or(*scenario.input.rate.get_ref()),
        seed: scenario.input.seed,
        bad_per_mille: scenario.input.bad_per_mille.min(1000),
    };
    let scale = if quick && q.time_scale > 0.0 {
        q.time_scale.min(1.0)
    } else {
        1.0
    };
    let mut faults: Vec<(Range<usize>, Fault)> = scenario
        .faults
        .iter()
        .map(|f| (f.span(), f.get_ref().scaled(scale)))
        .collect();
    faults.sort_by_key(|(_, f)| f.at());

    // Worker slots that exist when each fault happens: the initial ones plus those added before.
    let mut slots = *scenario.workers.get_ref() as usize;
    let input_ends = input.duration();
    for (span, f) in &faults {
        if let Some(w) = f.worker() {
            if w >= slots {
                report(
                    span.clone(),
                    format!(
                        "{}: worker {w} does not exist at {:?} (workers are numbered from 0; {slots} exist then)",
                        f.kind(),
                        f.at()
                    ),
                );
            }
        }
        match f {
            Fault::AddWorker { count, .. } => {
                if *count == 0 {
                    report(span.clone(), "add_worker: count must be at least 1".into());
                }
                slots += *count as usize;
            }
            Fault::CorruptState {
                partitions: Some(ps),
                ..
            } if ps
                .iter()
                .any(|p| *p < 0 || *p >= *scenario.partitions.get_ref() as i32) =>
            {
                report(
                    span.clone(),
                    format!(
                        "corrupt_state: partitions must be between 0 and {}",
                        scenario.partitions.get_ref().saturating_sub(1)
                    ),
                );
            }
            Fault::BrokerRestart {
                broker: BrokerRef::Role(r),
                ..
            } if !["leader", "oldest", "all"].contains(&r.as_str()) => {
                report(
                    span.clone(),
                    format!("broker_restart: broker = {r:?}: write a node id (e.g. 2), \"leader\" (the leader of input partition 0), \"oldest\" (the broker that has run longest) or \"all\""),
                );
            }
            _ => {}
        }
        if f.at() >= input_ends {
            report(
                span.clone(),
                format!(
                    "{} at {:.1}s comes after the input ends ({:.1}s at {} records/s): faults must hit a busy system; add input or move the fault{}",
                    f.kind(),
                    f.at().as_secs_f64(),
                    input_ends.as_secs_f64(),
                    input.rate,
                    if quick { " (this is the --quick timeline: see [quick])" } else { "" }
                ),
            );
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.col));
        return Err(ConfigErrors(errors));
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "drill".into());
    let job_file = base_dir(path).join(scenario.job.get_ref());
    Ok(Plan {
        name,
        file: path.to_path_buf(),
        job_file,
        input,
        faults: faults.into_iter().map(|(_, f)| f).collect(),
        scenario,
        quick,
        time_scale: scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
job = "../meter-hourly-average.toml"
workers = 2

[input]
meters = 10
hours = 4
rate = 100
seed = 1

[[fault]]
kind = "kill"
at = "2s"
worker = 1
restart_after = "1s"

[[fault]]
kind = "add_worker"
at = "1s"

[[fault]]
kind = "pause"
at = "3s"
worker = 2
resume_after = "500ms"
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("s.toml"), text, false) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_scenario_loads_with_its_faults_in_time_order() {
        let plan = parse(Path::new("jobs/drills/s.toml"), GOOD, false).unwrap();
        assert_eq!(plan.input.total(), 10 * 4 * 12);
        let kinds: Vec<&str> = plan.faults.iter().map(Fault::kind).collect();
        assert_eq!(kinds, ["add_worker", "kill", "pause"]);
        assert_eq!(
            plan.job_file,
            Path::new("jobs/drills/../meter-hourly-average.toml")
        );
    }

    #[test]
    fn quick_scales_the_timeline_and_replaces_the_input() {
        let text = format!("{GOOD}\n[quick]\ntime_scale = 0.5\nmeters = 5\n");
        let plan = parse(Path::new("s.toml"), &text, true).unwrap();
        assert_eq!(plan.input.meters, 5);
        assert_eq!(plan.faults[1].at(), std::time::Duration::from_secs(1));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_position() {
        let text = GOOD.replace("restart_after", "restart_afer");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("s.toml:"), "{e:?}");
        assert!(e[0].contains("restart_afer"), "{e:?}");
        let e = errors(&GOOD.replace("seed = 1", "seed = 1\nsed = 2"));
        assert_eq!(e, ["s.toml:10:1: unknown key `sed`; did you mean `seed`?"]);
    }

    #[test]
    fn a_fault_on_a_worker_that_does_not_exist_yet_is_refused() {
        let e = errors(&GOOD.replace("at = \"1s\"", "at = \"4s\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("s.toml:21:1:"), "{e:?}");
        assert!(e[0].contains("worker 2 does not exist"), "{e:?}");
    }

    #[test]
    fn a_fault_after_the_input_ended_is_refused() {
        // 480 records at 100/s: the input ends after 4.8 s.
        let e = errors(&GOOD.replace("at = \"3s\"", "at = \"10s\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("after the input ends"), "{e:?}");
    }

    #[test]
    fn durations_are_strings_with_units() {
        let e = errors(&GOOD.replace("at = \"2s\"", "at = 2"));
        assert_eq!(e.len(), 1, "{e:?}");
    }
}
