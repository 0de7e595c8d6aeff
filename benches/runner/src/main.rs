//! `weir-bench`: the side-by-side benchmark behind `cargo xtask bench`.
//!
//! One input topic is preloaded with meter readings (deterministic, keyed by meter id, murmur2
//! partitioned like Java clients), then each runner drains it in turn, every one from offset 0 with
//! a fresh group, fresh state and its own output topic: a bare rdkafka consumer (the physical
//! limit), weir at-least-once and exactly-once, Kafka Streams (both guarantees) and Quix Streams.
//! Each runner is a child process, measured from spawn to "group committed offsets == end
//! offsets" (CPU from /proc at that moment, peak RSS from the kernel at exit), and its output is
//! read back with read_committed and checked against an oracle computed here from what the broker
//! acknowledged: only correct work counts. Then weir's restore (state wiped) and warm restart.

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_engine::generator::GeneratorSpec;

mod bare;
mod commands;
mod compare;
mod kafka;
mod latency;
mod measure;
mod process;
mod scrape;
mod steady;
mod summary;
use bare::*;
use commands::*;
use compare::*;
use kafka::*;
use measure::*;
use process::*;
use steady::Steady;

#[derive(Parser, Debug)]
#[command(
    name = "weir-bench",
    about = "weir against its peers on the same broker and data"
)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    /// Input records (plus one sentinel per partition that closes the last windows).
    #[arg(long, default_value_t = 3_000_000)]
    records: u64,
    #[arg(long, default_value_t = 100_000)]
    meters: u32,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// The `weir` binary (release build).
    #[arg(long)]
    weir: PathBuf,
    /// The flagship job file, rewritten per run.
    #[arg(long)]
    job: PathBuf,
    /// The Kafka Streams peer's jar; without it those runs are skipped.
    #[arg(long)]
    kafka_streams_jar: Option<PathBuf>,
    /// The Quix Streams peer's run script; without it that run is skipped.
    #[arg(long)]
    quix_run: Option<PathBuf>,
    /// Only these runs (bare, weir_alos, weir_eos, kafka_streams_alos, kafka_streams_eos, quix,
    /// restore, latency); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON results go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker processes of each weir run, in one group on the same input (the aggregate rate;
    /// CPU, peak RSS, threads and open files summed over them). Restores and latency runs use one.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Interleaved rounds of every runner (median and spread reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of input at a fixed rate for each latency run.
    #[arg(long, default_value_t = 20.0)]
    latency_seconds: f64,
    /// Readings/s of the latency runs; default half of weir at-least-once's steady rate (50,000
    /// when that was not measured).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Give up on a runner after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_s: u64,
    /// Internal: run as the bare consumer of `--topic` until `--expect` records were read.
    #[arg(long, hide = true)]
    bare_topic: Option<String>,
    #[arg(long, hide = true)]
    expect: Option<u64>,
}

/// (meter, hour start) -> (count, sum, min, max).
type Oracle = HashMap<(String, i64), (u64, f64, f64, f64)>;

const HOUR: i64 = 3_600_000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(topic) = &args.bare_topic {
        return bare_consumer(&args.bootstrap, topic, args.expect.unwrap_or(0));
    }
    compare(&args)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn tempfile_dir(base: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(base);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn date_today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    weir_operators::time::format_rfc3339_ms(now)[..10].to_string()
}
