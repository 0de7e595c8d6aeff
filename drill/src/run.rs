//! One drill from set-up to report: the job and its topics, the workers joined and balanced, the
//! timeline while the input flows, the drain, the output compared with the oracle, clean-up.

use crate::cluster::{self, Probe};
use crate::input;
use crate::job::{check_job, guarantee_name, rewrite_job, Names};
use crate::monitor::{self, Monitor, Watch};
use crate::oracle;
use crate::plot;
use crate::progress::Progress;
use crate::report::{self, Report};
use crate::scenario::{self, Fault};
use crate::timeline::{timeline, Action, Drill};
use crate::workers::{Launch, Workers};
use crate::{brokers, DrillArgs};
use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_config::Guarantee;

/// The run directory of `cargo xtask kafka start` in the current directory or one above it.
fn default_kafka_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(".weir-kafka"))
        .find(|d| d.join("bootstrap").is_file())
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
pub fn await_condition(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
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
    let plan = scenario::load(&args.scenario, args.quick)?;
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
    let original = weir_config::load_job(&plan.job_file)?;
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
        .context("creating the work directory")?
        // Kept whatever goes wrong (the logs say why); removed only after a verified run.
        .keep();
    let job_path = work.as_path().join("job.toml");
    std::fs::write(
        &job_path,
        rewrite_job(&plan, &job_text, &names, &bootstrap)?,
    )?;
    let job = weir_config::load_job(&job_path)?;
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
    env.extend(parse_env(&args.worker_env)?);
    // The scenario's session timeout is the classic protocol's: under the consumer protocol the
    // broker's decides (and a worker refuses one).
    let broker_sessions = env
        .iter()
        .any(|(k, v)| k == "WEIR_GROUP_PROTOCOL" && v == "consumer");
    let given = env.iter().any(|(k, _)| k == "WEIR_SESSION_TIMEOUT");
    if let Some(s) = plan
        .scenario
        .session_timeout
        .filter(|_| !broker_sessions && !given)
    {
        env.insert(
            0,
            (
                "WEIR_SESSION_TIMEOUT".into(),
                format!("{}ms", s.as_millis()),
            ),
        );
    }
    let setup_t0 = Instant::now();
    let mut workers = Workers::new(
        Launch {
            bin,
            job: job_path.clone(),
            bootstrap: bootstrap.clone(),
            root: work.as_path().to_path_buf(),
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
            let tasks = crate::probe::task_states(&m);
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
            work.as_path().display()
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
        return Err(e);
    }
    if let Some(f) = feeder.acks.first_failure() {
        bail!(
            "{} input records were not acknowledged ({f}): the oracle cannot know what the job read",
            feeder.acks.failed()
        );
    }
    let drain = d.drain(&feeder)?;
    let (drained, drain_s) = (drain.drained, drain.seconds);
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
        resources: crate::resources::analyse(
            &data.samples,
            plan.scenario
                .resources
                .as_ref()
                .map_or(0.0, |r| r.warmup.std().as_secs_f64() * plan.time_scale),
        ),
        max_growth_pct: plan
            .scenario
            .resources
            .as_ref()
            .filter(|r| !plan.quick || r.judge_quick)
            .map(|r| r.max_growth_pct),
        work_dir: work.as_path().display().to_string(),
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
        let _ = std::fs::remove_dir_all(&work);
        report.work_dir = "(removed)".into();
    }
    Ok(report)
}
