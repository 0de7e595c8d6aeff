//! The `weir` command line.

use crate::health::Health;
use crate::metrics::Metrics;
use crate::worker::{run_worker, WorkerArgs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_config::{load_job, RuntimeConfig, RuntimeOverrides};

#[derive(Parser)]
#[command(name = "weir", version, about = "Stateful stream processing on Apache Kafka", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job: join its consumer group and process the partitions assigned to this process.
    Run {
        /// The job file (TOML).
        file: PathBuf,
        /// Kafka bootstrap servers (overrides WEIR_BROKERS and kafka.bootstrap_servers).
        #[arg(long)]
        brokers: Option<String>,
        /// Root of local state (overrides WEIR_STATE_DIR and state.dir).
        #[arg(long)]
        state_dir: Option<String>,
        /// Serve /metrics, /livez and /readyz on this address, e.g. 127.0.0.1:9464.
        #[arg(long)]
        http: Option<String>,
        /// Static group membership id (group.instance.id) of this worker.
        #[arg(long)]
        instance_id: Option<String>,
    },
    /// Check job files; print every problem as FILE:LINE:COL: message.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a job's topology: source topics and partitions -> operators -> stores and changelogs -> sink.
    Describe {
        file: PathBuf,
        /// `text` or `dot` (Graphviz).
        #[arg(long, default_value = "text")]
        format: String,
        /// Ask this Kafka for the input's partition count.
        #[arg(long)]
        brokers: Option<String>,
    },
    /// Run the flagship job on an in-process Kafka with generated readings, then verify the results.
    Demo {
        /// How long to run, e.g. 30s.
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Serve /metrics, /livez and /readyz on this address.
        #[arg(long)]
        http: Option<String>,
        /// Number of simulated meters.
        #[arg(long, default_value_t = 20)]
        meters: u32,
        /// Hours of event time to generate.
        #[arg(long, default_value_t = 6)]
        hours: u32,
    },
    /// Run a failover drill: real workers on a real Kafka, a timeline of faults while readings
    /// flow, then the output read with read_committed and compared with an oracle.
    Drill {
        /// The scenario file (TOML), e.g. jobs/drills/kill-restart.toml.
        scenario: PathBuf,
        /// Kafka bootstrap servers (default: WEIR_BROKERS, then the `bootstrap` file of the
        /// Kafka run directory).
        #[arg(long)]
        brokers: Option<String>,
        /// Write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Draw output rate and consumer lag, with the faults, to this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// A short version of the scenario (its [quick] table: less input, a compressed timeline).
        #[arg(long)]
        quick: bool,
        /// The run directory of `cargo xtask kafka start` (`bootstrap` and `pids`), needed by
        /// broker_restart; default: the scenario's kafka_dir, then .weir-kafka here or above.
        #[arg(long)]
        kafka_dir: Option<PathBuf>,
        /// KEY=VALUE for every worker's environment (repeatable), e.g. WEIR_FAILPOINT=drop_output:5.
        #[arg(long = "worker-env", value_name = "KEY=VALUE")]
        worker_env: Vec<String>,
        /// Keep the work directory (job file, worker logs, state) and topics even when verified.
        #[arg(long)]
        keep: bool,
    },
}

pub fn init_logging() {
    init_logging_with("info,librdkafka=warn");
}

/// Logging with `default` as the filter when `WEIR_LOG` is not set.
pub fn init_logging_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::secrets::RedactedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::secrets::install_panic_hook();
    match cli.command {
        // The drill's own Kafka clients complain loudly through every broker it bounces on
        // purpose; what matters is in its report and the workers' logs.
        Command::Drill { .. } => init_logging_with("warn,rdkafka=off,librdkafka=off"),
        _ => init_logging(),
    }
    match cli.command {
        Command::Run {
            file,
            brokers,
            state_dir,
            http,
            instance_id,
        } => run(
            file,
            RuntimeOverrides {
                brokers,
                state_dir,
                http,
                instance_id,
            },
        ),
        Command::Validate { files } => validate(&files),
        Command::Demo {
            duration,
            http,
            meters,
            hours,
        } => match duration.parse::<weir_config::Duration>() {
            Ok(d) => crate::demo::run(d.std(), http, meters, hours),
            Err(e) => {
                eprintln!("weir demo: --duration: {e}");
                ExitCode::from(2)
            }
        },
        Command::Describe {
            file,
            format,
            brokers,
        } => describe(&file, &format, brokers.as_deref()),
        Command::Drill {
            scenario,
            brokers,
            report,
            plot,
            quick,
            kafka_dir,
            worker_env,
            keep,
        } => crate::drill::main(crate::drill::DrillArgs {
            scenario,
            brokers,
            report,
            plot,
            quick,
            kafka_dir,
            worker_env,
            keep,
        }),
    }
}

fn describe(file: &std::path::Path, format: &str, brokers: Option<&str>) -> ExitCode {
    let job = match load_job(file) {
        Ok(j) => {
            crate::secrets::register(&j);
            j
        }
        Err(errors) => {
            println!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match format {
        "text" => {
            let partitions = brokers.and_then(|b| {
                crate::kafka::partition_count(b, &job, &job.source.topics[0])
                    .ok()
                    .flatten()
            });
            print!(
                "{}",
                crate::secrets::redact(&crate::describe::text(&job, partitions))
            );
        }
        "dot" => print!("{}", crate::secrets::redact(&crate::describe::dot(&job))),
        other => {
            eprintln!("weir describe: unknown --format {other:?} (text or dot)");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        if let Err(errors) = load_job(f) {
            ok = false;
            println!("{errors}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sets `flag` on SIGTERM or SIGINT.
pub fn on_termination(rt: &tokio::runtime::Runtime, flag: Arc<AtomicBool>) {
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the current batch, committing, leaving the group"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the current batch, committing, leaving the group"),
        }
        flag.store(true, Ordering::Relaxed);
    });
}

/// Starts the HTTP endpoints when an address is given.
pub fn start_http(
    rt: &tokio::runtime::Runtime,
    addr: Option<&str>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let listener = rt.block_on(crate::http::bind(addr))?;
        tracing::info!(
            "serving /metrics, /livez, /readyz on http://{}",
            crate::http::local_addr(&listener)
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        rt.spawn(crate::http::serve(listener, metrics, health));
    }
    Ok(())
}

const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

fn run(file: PathBuf, overrides: RuntimeOverrides) -> ExitCode {
    let job = match load_job(&file) {
        Ok(j) => {
            crate::secrets::register(&j);
            j
        }
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match RuntimeConfig::resolve(&job, &overrides, &|k| std::env::var(k).ok()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir run: {}", crate::secrets::redact(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let metrics = Arc::new(Metrics::new(job.name.get_ref()));
    let health = Arc::new(Health::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    on_termination(&rt, shutdown.clone());
    if let Err(e) = start_http(
        &rt,
        runtime.http.as_deref(),
        metrics.clone(),
        health.clone(),
    ) {
        eprintln!("weir run: {}", crate::secrets::redact(&format!("{e:#}")));
        return ExitCode::FAILURE;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let stop_requested = shutdown.clone();
    let worker = std::thread::Builder::new()
        .name("weir-worker".into())
        .spawn(move || {
            let r = run_worker(WorkerArgs {
                job,
                runtime,
                metrics,
                health,
                shutdown,
            });
            let _ = done_tx.send(());
            r
        })
        .expect("spawning the worker thread");
    // Wait for the worker; once a termination signal arrived, wait at most SHUTDOWN_BOUND.
    let mut signalled_at = None;
    loop {
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop_requested.load(Ordering::Relaxed) {
            let at = *signalled_at.get_or_insert_with(std::time::Instant::now);
            if at.elapsed() > SHUTDOWN_BOUND {
                eprintln!("weir run: the worker did not stop within {}s of the termination signal; exiting", SHUTDOWN_BOUND.as_secs());
                return ExitCode::FAILURE;
            }
        }
    }
    match worker.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("weir run: {}", crate::secrets::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
