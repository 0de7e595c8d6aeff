//! The command line: `weir run | validate | describe | demo | drill`, as clap parses it.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "weir", version, about = "Stateful stream processing on Apache Kafka", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
