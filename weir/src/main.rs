//! `weir`: stateful stream processing on Apache Kafka, the command.
//!
//! # Layout
//! - `cli.rs`: the command line (subcommands and their flags);
//! - `run.rs`: `weir run`, one worker of a job until a termination signal;
//! - `inspect.rs`: `weir validate` and `weir describe`, job files read without running them;
//! - `demo.rs`: `weir demo`, the flagship job on an in-process mock cluster, its results verified;
//! - `serve.rs`: what `weir run` and `weir demo` set up around a worker: termination signals and
//!   the HTTP endpoints.
//!
//! The runtime is the `weir-engine` library; `weir drill` is the `weir-drill` library.

mod cli;
mod demo;
mod inspect;
mod run;
mod serve;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;
use weir_config::RuntimeOverrides;

fn main() -> ExitCode {
    let cli = Cli::parse();
    weir_engine::secrets::install_panic_hook();
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
        } => run::run(
            file,
            RuntimeOverrides {
                brokers,
                state_dir,
                http,
                instance_id,
            },
        ),
        Command::Validate { files } => inspect::validate(&files),
        Command::Demo {
            duration,
            http,
            meters,
            hours,
        } => match duration.parse::<weir_config::Duration>() {
            Ok(d) => demo::run(d.std(), http, meters, hours),
            Err(e) => {
                eprintln!("weir demo: --duration: {e}");
                ExitCode::from(2)
            }
        },
        Command::Describe {
            file,
            format,
            brokers,
        } => inspect::describe(&file, &format, brokers.as_deref()),
        Command::Drill {
            scenario,
            brokers,
            report,
            plot,
            quick,
            kafka_dir,
            worker_env,
            keep,
        } => weir_drill::main(weir_drill::DrillArgs {
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

fn init_logging() {
    init_logging_with("info,librdkafka=warn");
}

/// Logging with `default` as the filter when `WEIR_LOG` is not set.
fn init_logging_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(weir_engine::secrets::RedactedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
