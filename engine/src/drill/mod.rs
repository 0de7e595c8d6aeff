//! `weir drill`: failover drills. A drill starts real `weir run` workers of a job on a real Kafka,
//! produces generated meter readings at a steady rate while a timeline of faults hits the workers
//! (and the brokers), waits for the group to commit all of its input, reads the output with
//! read_committed and compares it with an oracle computed from the acknowledged input alone.
//!
//! # Layout
//! - `scenario.rs`: the scenario file (job, workers, input, faults), `--quick`;
//! - `input.rs`: deterministic readings, produced at a rate with every acknowledgement recorded;
//! - `oracle.rs`: the expected windows, computed independently of `operators/`, and the comparison;
//! - `cluster.rs`: topics, offsets, reading the output;
//! - `workers.rs`: worker processes (one slot each: state directory, log, instance id), damage;
//! - `brokers.rs`: bouncing a broker of a cluster started by `cargo xtask kafka start`;
//! - `monitor.rs`: the sampling thread (offsets, lag, output, tasks, restores);
//! - `report.rs`: recovery per fault, the verdict, human and JSON reports;
//! - `plot.rs`: the SVG plot; `progress.rs`: the progress display.

mod brokers;
mod cluster;
mod input;
mod monitor;
mod oracle;
mod plot;
mod progress;
mod report;
pub mod scenario;
mod workers;

use anyhow::{bail, Context as _};
use cluster::Probe;
use monitor::{signed_secs, Monitor, Watch};
use progress::Progress;
use report::{FaultRun, Measure, Report};
use scenario::{BrokerRef, BrokerSignal, Fault, Plan};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_config::{
    AggregateFn, Comparison, EmitMode, Format, Guarantee, Job, Operator, SinkKind, TimestampFormat,
    WindowKind,
};
use workers::{Launch, Workers};

/// The command line of `weir drill`.
#[derive(Debug, Clone, Default)]
pub struct DrillArgs {
    pub scenario: PathBuf,
    pub brokers: Option<String>,
    pub report: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub quick: bool,
    pub kafka_dir: Option<PathBuf>,
    /// `KEY=VALUE` added to every worker's environment.
    pub worker_env: Vec<String>,
    /// Keep the work directory (job file, worker logs and state) even when verified.
    pub keep: bool,
}

/// Exit 0 when verified, 1 when not, 2 when the drill itself could not run.
pub fn main(args: DrillArgs) -> ExitCode {
    match run(&args) {
        Ok(report) => {
            print!("{}", report.human());
            let mut code = if report.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
            if let Some(path) = &args.report {
                let json = serde_json::to_string_pretty(&report).expect("a report serialises");
                if let Err(e) = std::fs::write(path, json + "\n") {
                    eprintln!("weir drill: writing {}: {e}", path.display());
                    code = ExitCode::from(2);
                }
            }
            code
        }
        Err(e) => {
            eprintln!("weir drill: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The run directory of `cargo xtask kafka start` in the current directory or one above it.
fn default_kafka_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(".weir-kafka"))
        .find(|d| d.join("bootstrap").is_file())
}

fn guarantee_name(g: Guarantee) -> &'static str {
    match g {
        Guarantee::AtLeastOnce => "at_least_once",
        Guarantee::ExactlyOnce => "exactly_once",
    }
}

struct Names {
    job: String,
    input: String,
    output: String,
    dead_letters: Option<String>,
}

/// The scenario's job file with this drill's own name, topics and brokers (and the scenario's
/// overrides), so every drill run is independent of every other.
fn rewrite_job(plan: &Plan, text: &str, names: &Names, bootstrap: &str) -> anyhow::Result<String> {
    use toml::{Table, Value};
    let mut t: Table = text
        .parse()
        .with_context(|| format!("parsing {}", plan.job_file.display()))?;
    let table = |t: &mut Table, key: &str| -> anyhow::Result<Table> {
        match t.remove(key) {
            Some(Value::Table(x)) => Ok(x),
            None => Ok(Table::new()),
            Some(_) => bail!("{key} is not a table"),
        }
    };
    t.insert("name".into(), Value::String(names.job.clone()));
    let mut kafka = table(&mut t, "kafka")?;
    kafka.insert("bootstrap_servers".into(), Value::String(bootstrap.into()));
    t.insert("kafka".into(), Value::Table(kafka));
    let mut source = table(&mut t, "source")?;
    source.insert(
        "topics".into(),
        Value::Array(vec![Value::String(names.input.clone())]),
    );
    t.insert("source".into(), Value::Table(source));
    let mut sink = table(&mut t, "sink")?;
    sink.insert("topic".into(), Value::String(names.output.clone()));
    t.insert("sink".into(), Value::Table(sink));
    let mut processing = table(&mut t, "processing")?;
    if let Some(g) = plan.scenario.guarantee {
        processing.insert("guarantee".into(), Value::String(guarantee_name(g).into()));
    }
    if let Some(c) = plan.scenario.commit_interval {
        processing.insert(
            "commit_interval".into(),
            Value::String(format!("{}ms", c.as_millis())),
        );
    }
    if let Some(d) = &names.dead_letters {
        processing.insert("dead_letter_topic".into(), Value::String(d.clone()));
    }
    t.insert("processing".into(), Value::Table(processing));
    // Each worker gets its own --state-dir.
    if let Some(Value::Table(state)) = t.get_mut("state") {
        state.remove("dir");
    }
    Ok(toml::to_string(&t)?)
}

/// The oracle knows one computation: the flagship job's. Refuse a job that computes another.
fn check_job(job: &Job) -> anyhow::Result<()> {
    let plan = job.plan();
    let mut problems = Vec::new();
    if job.source.format != Format::Json
        || job.source.key_field.as_deref() != Some("meter_id")
        || job.source.timestamp_field.as_deref() != Some("ts")
        || job.source.timestamp_format != TimestampFormat::UnixMs
    {
        problems.push("it must read JSON readings keyed by meter_id with event time in ts (ms)");
    }
    let filter_ok = matches!(
        plan.steps.as_slice(),
        [Operator::Filter(f)] if f.field == "kwh" && f.op == Comparison::Ge && f.value == 0.0
    );
    if !filter_ok {
        problems.push("its only step before the window must be the filter kwh >= 0");
    }
    match &plan.window {
        Some((w, a))
            if w.kind == WindowKind::Tumbling
                && w.size_or_gap_ms() == 3_600_000
                && w.emit == EmitMode::OnClose
                && a.field == "kwh"
                && [AggregateFn::Count, AggregateFn::Avg, AggregateFn::Min, AggregateFn::Max]
                    .iter()
                    .all(|f| a.functions.contains(f)) => {}
        _ => problems.push(
            "it must aggregate kwh in 1h tumbling windows emitted on close, with count, avg, min and max",
        ),
    }
    if job.sink.kind != SinkKind::Kafka || job.sink.format != Format::Json {
        problems.push("it must write JSON to a Kafka topic");
    }
    if !problems.is_empty() {
        bail!(
            "the drill's oracle checks the flagship computation (per meter and hour: count, avg, min, max of kwh >= 0); this job differs: {}",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Something the timeline does at a time.
enum Action {
    Fault(usize),
    Start {
        worker: usize,
    },
    Resume {
        worker: usize,
    },
    BrokerStart {
        fault: usize,
        broker: brokers::Broker,
    },
}

/// A restarted broker being watched until it is back in the cluster.
struct BrokerBack {
    fault: usize,
    node_id: i32,
    /// A client of the restarted broker alone: it answers only once that process serves.
    own: Option<Probe>,
    since: Instant,
}

struct Drill<'a> {
    plan: &'a Plan,
    names: Names,
    bootstrap: String,
    kafka_dir: Option<PathBuf>,
    probe: Probe,
    workers: Workers,
    monitor: Monitor,
    progress: Progress,
    t0: Instant,
    queue: Vec<(Instant, Action)>,
    runs: Vec<FaultRun>,
    broker_children: Vec<std::process::Child>,
    broker_back: Vec<BrokerBack>,
}

impl Drill<'_> {
    fn now_s(&self) -> f64 {
        signed_secs(self.t0, Instant::now())
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.queue.push((at, action));
        self.queue.sort_by_key(|(at, _)| *at);
    }

    /// The group's committed offsets now (asked again until Kafka answers).
    fn committed_now(&self) -> Vec<i64> {
        let n = *self.plan.scenario.partitions.get_ref();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.probe.committed_offsets(&self.names.input, n) {
                return c;
            }
            if Instant::now() > deadline {
                return self
                    .monitor
                    .last()
                    .map(|s| s.committed)
                    .unwrap_or_else(|| vec![0; n as usize]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn record(&mut self, fault: &Fault, at_s: f64, measure: Measure, notes: Vec<String>) -> usize {
        self.runs.push(FaultRun {
            kind: fault.kind(),
            label: fault.label(),
            worker: fault.worker(),
            at_s,
            measure,
            notes,
            broker_back_s: None,
        });
        self.runs.len() - 1
    }

    fn after(&self, d: Option<weir_config::Duration>) -> Option<Instant> {
        d.map(|d| Instant::now() + d.std())
    }

    fn execute(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Fault(i) => {
                let fault = self.plan.faults[i].clone();
                let owned = fault
                    .worker()
                    .map(|w| format!(" (tasks {:?})", self.monitor.owned(w)))
                    .unwrap_or_default();
                self.progress.event(&format!("{}{owned}", fault.label()));
                self.fault(&fault)
            }
            Action::Start { worker } => {
                if self.workers.running(worker) {
                    self.progress
                        .event(&format!("w{worker} is already running; not started again"));
                    return Ok(());
                }
                self.progress.event(&format!("start w{worker} again"));
                self.workers.start(worker)
            }
            Action::Resume { worker } => {
                if self.workers.paused(worker) {
                    self.progress.event(&format!("resume w{worker} (SIGCONT)"));
                    self.workers.resume(worker)?;
                }
                Ok(())
            }
            Action::BrokerStart { fault, broker } => {
                self.progress
                    .event(&format!("start broker {} again", broker.node_id));
                let dir = self.kafka_dir.clone().expect("checked before the timeline");
                let child = brokers::restart(&dir, &broker)?;
                self.broker_children.push(child);
                let own = broker
                    .address
                    .as_deref()
                    .and_then(|a| Probe::new(a, None).ok());
                self.broker_back.push(BrokerBack {
                    fault,
                    node_id: broker.node_id,
                    own,
                    since: Instant::now(),
                });
                Ok(())
            }
        }
    }

    fn fault(&mut self, fault: &Fault) -> anyhow::Result<()> {
        let at_s = self.now_s();
        let n = *self.plan.scenario.partitions.get_ref();
        if let Some(w) = fault.worker() {
            let needs_running = !matches!(fault, Fault::Resume { .. });
            if needs_running && !self.workers.running(w) {
                let note = format!("w{w} was not running: nothing to do");
                self.progress.event(&note);
                self.record(fault, at_s, Measure::None, vec![note]);
                return Ok(());
            }
        }
        match fault {
            Fault::Kill {
                worker,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.kill(*worker)?;
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    vec![],
                );
                if let Some(at) = self.after(*restart_after) {
                    self.schedule(at, Action::Start { worker: *worker });
                }
            }
            Fault::Stop {
                worker,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                let code = self.workers.stop(*worker, Duration::from_secs(45))?;
                let baseline = self.committed_now();
                let notes = match code {
                    Some(0) => vec![],
                    other => vec![format!("the worker's exit code after SIGTERM: {other:?}")],
                };
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    notes,
                );
                if let Some(at) = self.after(*restart_after) {
                    self.schedule(at, Action::Start { worker: *worker });
                }
            }
            Fault::Pause {
                worker,
                resume_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.pause(*worker)?;
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    vec![],
                );
                if let Some(at) = self.after(*resume_after) {
                    self.schedule(at, Action::Resume { worker: *worker });
                }
            }
            Fault::Resume { worker, .. } => {
                let note = if self.workers.paused(*worker) {
                    self.workers.resume(*worker)?;
                    vec![]
                } else {
                    vec![format!("w{worker} was not paused")]
                };
                self.record(fault, at_s, Measure::None, note);
            }
            Fault::AddWorker { count, .. } => {
                let mut added = Vec::new();
                for _ in 0..*count {
                    added.push(self.workers.add()?);
                }
                self.progress.event(&format!(
                    "started {}",
                    added
                        .iter()
                        .map(|w| format!("w{w}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                self.record(
                    fault,
                    at_s,
                    Measure::NewAssignment { workers: added },
                    vec![],
                );
            }
            Fault::CorruptState {
                worker,
                damage,
                partitions,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.kill(*worker)?;
                let mut notes = Vec::new();
                for (p, dir) in self.workers.task_dirs(*worker) {
                    if partitions.as_ref().is_some_and(|ps| !ps.contains(&p)) {
                        continue;
                    }
                    let done = workers::damage(&dir, *damage)?;
                    notes.push(format!("partition {p}: {done}"));
                }
                if notes.is_empty() {
                    notes.push("the worker had no task directory to damage".into());
                }
                self.progress
                    .event(&format!("damaged: {}", notes.join("; ")));
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    notes,
                );
                let at = self.after(*restart_after).unwrap_or_else(Instant::now);
                self.schedule(at, Action::Start { worker: *worker });
            }
            Fault::BrokerRestart {
                broker,
                signal,
                restart_after,
                ..
            } => {
                let dir = self.kafka_dir.clone().expect("checked before the timeline");
                // A bounce starts from a whole cluster: an earlier bounced broker is back first.
                while !self.broker_back.is_empty() {
                    self.check_brokers();
                    std::thread::sleep(Duration::from_millis(200));
                }
                let node = match broker {
                    BrokerRef::Node(n) => *n,
                    BrokerRef::Role(_) => self
                        .probe
                        .leader(&self.names.input, 0)
                        .context("no leader for input partition 0")?,
                };
                let b = brokers::find(&dir, node)?;
                let baseline = self.committed_now();
                let at_s = self.now_s();
                brokers::kill(&b, *signal == BrokerSignal::Term)?;
                self.progress.event(&format!(
                    "broker {node} (pid {}) {}",
                    b.pid,
                    if *signal == BrokerSignal::Term {
                        "stopped (SIGTERM)"
                    } else {
                        "killed (SIGKILL)"
                    }
                ));
                let run = self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: (0..n as i32).collect(),
                        baseline,
                    },
                    vec![format!("node {node}")],
                );
                let delay = restart_after
                    .map(|d| d.std())
                    .unwrap_or(Duration::from_secs(5));
                self.schedule(
                    Instant::now() + delay,
                    Action::BrokerStart {
                        fault: run,
                        broker: b,
                    },
                );
            }
        }
        Ok(())
    }

    /// Notes restarted brokers that are back: in the metadata, every replica in sync.
    fn check_brokers(&mut self) {
        if self.broker_back.is_empty() {
            return;
        }
        let topics = [self.names.input.as_str(), self.names.output.as_str()];
        let Some((brokers, healthy)) = self.probe.cluster_health(&topics) else {
            return;
        };
        let now_s = self.now_s();
        let mut still = Vec::new();
        for b in std::mem::take(&mut self.broker_back) {
            // The restarted process itself serves metadata that lists it, and every replica is in
            // sync (the cluster's view alone is not enough: a dead broker stays listed, and in
            // every ISR, until the controller notices).
            let serves = b.own.as_ref().is_none_or(|own| {
                own.cluster_health(&[])
                    .is_some_and(|(ids, _)| ids.contains(&b.node_id))
            });
            if serves && brokers.contains(&b.node_id) && healthy {
                let run = &mut self.runs[b.fault];
                run.broker_back_s = Some(now_s - run.at_s);
                self.progress.event(&format!(
                    "{}: the broker is back, every replica in sync",
                    run.label
                ));
            } else if b.since.elapsed() > Duration::from_secs(180) {
                self.runs[b.fault]
                    .notes
                    .push("the broker was not back within 180 s".into());
            } else {
                still.push(b);
            }
        }
        self.broker_back = still;
    }

    fn status(&mut self, feeder: &input::Feeder, phase: &str) {
        let last = self.monitor.last();
        let (lag, out) = last
            .as_ref()
            .map(|s| (s.lag(), s.output_end))
            .unwrap_or((0, 0));
        let next = self
            .queue
            .iter()
            .find_map(|(at, a)| match a {
                Action::Fault(i) => Some(format!(
                    " | next: {} at {:.0}s",
                    self.plan.faults[*i].label(),
                    signed_secs(self.t0, *at)
                )),
                _ => None,
            })
            .unwrap_or_default();
        let msg = format!(
            "{phase}: sent {} acked {}/{} lag {lag} output {out} workers {}{next}",
            feeder.sent.load(Ordering::Relaxed),
            feeder.acks.acked(),
            feeder.total,
            self.workers.live_count()
        );
        self.progress.status(feeder.acks.acked(), msg);
    }
}

fn parse_env(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--worker-env {kv:?}: write KEY=VALUE"))
        })
        .collect()
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; false on timeout.
fn await_condition(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(args: &DrillArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let plan = scenario::load(&args.scenario, args.quick).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kafka_dir = args
        .kafka_dir
        .clone()
        .or_else(|| plan.kafka_dir())
        .or_else(default_kafka_dir);
    let bootstrap = match (&args.brokers, std::env::var("WEIR_BROKERS").ok(), &kafka_dir) {
        (Some(b), _, _) => b.clone(),
        (None, Some(b), _) => b,
        (None, None, Some(dir)) => std::fs::read_to_string(dir.join("bootstrap"))
            .with_context(|| format!("reading {}/bootstrap", dir.display()))?
            .trim()
            .to_string(),
        _ => bail!("no Kafka: pass --brokers, set WEIR_BROKERS, or start one with `cargo xtask kafka start`"),
    };
    let bounces = plan
        .faults
        .iter()
        .any(|f| matches!(f, Fault::BrokerRestart { .. }));
    if bounces {
        let dir = kafka_dir.as_ref().context(
            "broker_restart needs the cluster's run directory: pass --kafka-dir (the .weir-kafka directory of `cargo xtask kafka start`) or set kafka_dir in the scenario",
        )?;
        let live = brokers::list(dir)?;
        anyhow::ensure!(!live.is_empty(), "no live broker in {}/pids", dir.display());
    }
    let partitions = *plan.scenario.partitions.get_ref();
    let suffix = format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let job_name = format!("drill-{}-{suffix}", plan.name);
    let job_text = std::fs::read_to_string(&plan.job_file)
        .with_context(|| format!("reading {}", plan.job_file.display()))?;
    let original = weir_config::load_job(&plan.job_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let names = Names {
        input: format!("{job_name}-in"),
        output: format!("{job_name}-out"),
        dead_letters: original
            .processing
            .dead_letter_topic
            .as_ref()
            .map(|_| format!("{job_name}-dead-letters")),
        job: job_name.clone(),
    };
    let work = tempfile::Builder::new()
        .prefix(&format!("weir-drill-{}-", plan.name))
        .tempdir()
        .context("creating the work directory")?;
    let job_path = work.path().join("job.toml");
    std::fs::write(
        &job_path,
        rewrite_job(&plan, &job_text, &names, &bootstrap)?,
    )?;
    let job = weir_config::load_job(&job_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    check_job(&job)?;
    let guarantee = job.processing.guarantee;
    let exactly_once = guarantee == Guarantee::ExactlyOnce;

    let mut progress = Progress::new();
    progress.phase("setting up");
    let mut topics = vec![
        (names.input.as_str(), partitions),
        (names.output.as_str(), partitions),
    ];
    if let Some(d) = &names.dead_letters {
        topics.push((d.as_str(), partitions));
    }
    cluster::create_topics(&bootstrap, &topics)?;

    let bin = match std::env::var_os("WEIR_BIN") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().context("finding the weir binary")?,
    };
    let mut env: Vec<(String, String)> = plan
        .scenario
        .worker_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(s) = plan.scenario.session_timeout {
        env.push((
            "WEIR_SESSION_TIMEOUT".into(),
            format!("{}ms", s.as_millis()),
        ));
    }
    env.extend(parse_env(&args.worker_env)?);
    let setup_t0 = Instant::now();
    let mut workers = Workers::new(
        Launch {
            bin,
            job: job_path.clone(),
            bootstrap: bootstrap.clone(),
            root: work.path().to_path_buf(),
            job_name: job_name.clone(),
            env,
            static_membership: plan.scenario.static_membership,
        },
        setup_t0,
    );
    for _ in 0..*plan.scenario.workers.get_ref() {
        let w = workers.add()?;
        workers.await_live(w, Duration::from_secs(60))?;
    }
    progress.phase("joining");
    // Every partition owned by a running task before the first record: the faults then hit a
    // group in its steady state.
    // Balanced, too: every worker runs its share, so the first fault hits a worker with tasks.
    let share = partitions as usize / workers.len().max(1);
    let settled = await_condition(Duration::from_secs(120), || {
        let mut running = std::collections::BTreeSet::new();
        for w in 0..workers.len() {
            let Some(m) = workers.metrics(w) else {
                return false;
            };
            let tasks = monitor::task_states(&m);
            if tasks.len() < share || tasks.values().any(|s| *s != 2) {
                return false;
            }
            running.extend(tasks.keys().copied());
        }
        running.len() == partitions as usize
    });
    if !settled {
        bail!(
            "the workers did not take every partition within 120 s; see the logs in {}",
            work.path().display()
        );
    }

    let t0 = Instant::now();
    workers.set_t0(t0);
    let monitor = Monitor::start(Watch {
        bootstrap: bootstrap.clone(),
        group: job_name.clone(),
        input: names.input.clone(),
        output: names.output.clone(),
        partitions,
        endpoints: workers.endpoints.clone(),
        t0,
    })?;
    let stop_input = Arc::new(AtomicBool::new(false));
    let mut feeder =
        input::Feeder::start(&bootstrap, &names.input, plan.input, stop_input.clone())?;
    progress.set_t0(t0, feeder.total);
    progress.phase("timeline");
    progress.event(&format!(
        "input: {} records ({} meters x {} h) at {}/s into {} ({partitions} partitions); {} workers, {}",
        feeder.total,
        plan.input.meters,
        plan.input.hours,
        plan.input.rate,
        names.input,
        plan.scenario.workers.get_ref(),
        guarantee_name(guarantee)
    ));
    let probe = Probe::new(&bootstrap, Some(&job_name))?;
    let mut d = Drill {
        plan: &plan,
        names,
        bootstrap: bootstrap.clone(),
        kafka_dir,
        probe,
        workers,
        monitor,
        progress,
        t0,
        queue: Vec::new(),
        runs: Vec::new(),
        broker_children: Vec::new(),
        broker_back: Vec::new(),
    };
    for (i, f) in plan.faults.iter().enumerate() {
        d.schedule(t0 + f.at(), Action::Fault(i));
    }
    let result = timeline(&mut d, &mut feeder, &stop_input);
    let input_seconds = d.now_s();
    if let Err(e) = result {
        // Never leave the cluster short of a broker the drill took down.
        for (_, action) in std::mem::take(&mut d.queue) {
            if let Action::BrokerStart { fault, broker } = action {
                let _ = d.execute(Action::BrokerStart { fault, broker });
            }
        }
        stop_input.store(true, Ordering::Relaxed);
        let _ = feeder.join();
        d.workers.stop_all(Duration::from_secs(10));
        let _ = work.keep();
        return Err(e);
    }
    if let Some(f) = feeder.acks.first_failure() {
        bail!(
            "{} input records were not acknowledged ({f}): the oracle cannot know what the job read",
            feeder.acks.failed()
        );
    }

    // Close every window, then wait for the group to commit all of its input.
    d.progress.phase("draining");
    input::send_sentinels(
        &d.bootstrap,
        &d.names.input,
        partitions,
        plan.input.last_ts_ms(),
    )?;
    let drain_from = Instant::now();
    let drain_timeout = plan
        .scenario
        .drain_timeout
        .map(|t| t.std())
        .unwrap_or(Duration::from_secs(180));
    let mut drained = false;
    while drain_from.elapsed() < drain_timeout {
        d.workers.reap();
        if d.workers.live_count() == 0 {
            d.progress.event("no worker is left to drain the input");
            break;
        }
        let ends = d.probe.end_offsets(&d.names.input, partitions);
        let committed = d.probe.committed_offsets(&d.names.input, partitions);
        if let (Some(e), Some(c)) = (&ends, &committed) {
            if e == c {
                drained = true;
                break;
            }
        }
        d.check_brokers();
        d.status(&feeder, "draining");
        std::thread::sleep(Duration::from_millis(200));
    }
    let drain_s = drain_from.elapsed().as_secs_f64();
    d.progress.event(&if drained {
        format!("drained: every input record committed ({drain_s:.1} s after the input ended)")
    } else {
        format!("NOT drained within {}s", drain_timeout.as_secs())
    });
    // Under exactly-once, results are visible once no transaction is open on the output.
    let names = &d.names;
    let stable = await_condition(Duration::from_secs(60), || {
        matches!((d.probe.stable_offsets(&names.output, partitions), d.probe.end_offsets(&names.output, partitions)),
            (Some(s), Some(e)) if s == e)
    });
    if !stable {
        d.progress.event(
            "a transaction is still open on the output after 60 s; reading what is committed",
        );
    }
    // A few more samples after the drain, so the plot shows the end.
    std::thread::sleep(monitor::INTERVAL * 2);

    d.progress.phase("verifying");
    let payloads = cluster::read_committed(
        &d.bootstrap,
        &d.names.output,
        partitions,
        Duration::from_secs(120),
    )?;
    let (emitted, unreadable) = oracle::parse_outputs(payloads.iter().map(Vec::as_slice));
    let readings: Vec<_> = feeder
        .acks
        .acknowledged()
        .map(|i| plan.input.reading(i))
        .collect();
    let expected = oracle::expected(&readings);
    let verdict = oracle::compare(&expected, &emitted, unreadable);

    let clean = d.workers.stop_all(Duration::from_secs(45));
    for c in &mut d.broker_children {
        let _ = c.try_wait();
    }
    d.progress.finish();
    let Drill {
        runs,
        monitor,
        workers,
        ..
    } = d;
    let data = monitor.finish();
    let faults = report::analyse(
        &runs,
        &data.samples,
        &data.restores,
        &data.wipes,
        partitions,
    );
    let mut report = Report {
        scenario: plan.name.clone(),
        description: plan.scenario.description.clone(),
        quick: plan.quick,
        guarantee: guarantee_name(guarantee),
        job: job_name,
        input_topic: d.names.input.clone(),
        output_topic: d.names.output.clone(),
        partitions,
        workers: *plan.scenario.workers.get_ref(),
        static_membership: plan.scenario.static_membership,
        meters: plan.input.meters,
        hours: plan.input.hours,
        rate: plan.input.rate,
        seed: plan.input.seed,
        records_in: feeder.acks.acked(),
        records_unacknowledged: feeder.total - feeder.acks.acked(),
        input_seconds: (input_seconds * 100.0).round() / 100.0,
        windows_expected: 0,
        windows_emitted: 0,
        windows_missing: 0,
        windows_duplicated: 0,
        windows_wrong: 0,
        windows_unexpected: 0,
        output_records: payloads.len() as u64,
        output_records_unreadable: 0,
        verified: false,
        drained,
        drain_s: (drain_s * 100.0).round() / 100.0,
        duration_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        faults,
        worker_exits: workers.exits.clone(),
        workers_stopped_cleanly: clean,
        examples: vec![],
        worker_errors: data
            .errors
            .iter()
            .map(|(w, l)| format!("w{w}: {l}"))
            .collect(),
        work_dir: work.path().display().to_string(),
    };
    report.apply(&verdict, exactly_once);
    drop(workers);
    if let Some(path) = &args.plot {
        let title = format!(
            "weir drill {}{} — {}, {} partitions",
            plan.name,
            if plan.quick { " (quick)" } else { "" },
            report.guarantee,
            partitions
        );
        plot::write(path, &title, &data.samples, &report.faults)?;
    }
    if report.verified && !args.keep {
        let mut topics = vec![report.input_topic.clone(), report.output_topic.clone()];
        topics.extend(job.changelog_topic());
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        cluster::delete_topics(&bootstrap, &topics);
        report.work_dir = "(removed)".into();
    } else {
        let _ = work.keep();
    }
    Ok(report)
}

/// Runs the faults while the input flows; returns when both are done.
fn timeline(
    d: &mut Drill<'_>,
    feeder: &mut input::Feeder,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    loop {
        for w in d.workers.reap() {
            d.progress.event(&format!(
                "w{w} exited on its own; see {}",
                d.workers.log_path(w).display()
            ));
        }
        while d.queue.first().is_some_and(|(at, _)| *at <= Instant::now()) {
            let (_, action) = d.queue.remove(0);
            d.execute(action)?;
        }
        d.check_brokers();
        d.status(feeder, "timeline");
        if d.queue.is_empty() && d.broker_back.is_empty() && feeder.finished() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped");
        }
        // Waiting for the next scheduled moment (a fault, a restart), not for a condition.
        std::thread::sleep(Duration::from_millis(50));
    }
    feeder.join()
}
