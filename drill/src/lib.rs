//! `weir drill`: failover drills. A drill starts real `weir run` workers of a job on a real Kafka,
//! produces generated meter readings at a steady rate while a timeline of faults hits the workers
//! (and the brokers), waits for the group to commit all of its input, reads the output with
//! read_committed and compares it with an oracle computed from the acknowledged input alone.
//!
//! The `weir` binary runs it as `weir drill`; the integration tests share its probes and oracle.
//!
//! # Layout
//! - `scenario.rs`: the scenario file (job, workers, input, faults), `--quick`;
//! - `job.rs`: the scenario's job rewritten for one drill run, and the check that the oracle knows
//!   its computation;
//! - `input.rs`: deterministic readings, produced at a rate with every acknowledgement recorded;
//! - `oracle.rs`: the expected windows, computed independently of `operators/`, and the comparison;
//! - `cluster.rs`: topics, offsets, reading the output;
//! - `workers.rs`: worker processes (one slot each: state directory, log, instance id), damage;
//! - `probe.rs`: HTTP GET of a worker's endpoints, and reading `/metrics` bodies;
//! - `brokers.rs`: bouncing a broker of a cluster started by `cargo xtask kafka start`;
//! - `run.rs`: one drill from set-up to report; `timeline.rs`: the drill's state and its scheduled
//!   actions; `faults.rs`: what each fault does; `drain.rs`: waiting for the group to commit its
//!   input once the input ended;
//! - `monitor.rs`: the sampling thread (offsets, lag, output, tasks, restores);
//! - `report.rs`: recovery per fault, the verdict, human and JSON reports;
//! - `plot.rs`: the SVG plot; `progress.rs`: the progress display.

mod brokers;
mod cluster;
mod drain;
mod faults;
mod input;
mod job;
mod monitor;
pub mod oracle;
mod plot;
pub mod probe;
mod progress;
mod report;
mod resources;
mod run;
pub mod scenario;
mod timeline;
mod workers;

pub use report::Report;
pub use run::run;
use std::path::PathBuf;
use std::process::ExitCode;

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
