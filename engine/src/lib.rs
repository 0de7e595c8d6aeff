//! The weir runtime: workers, tasks, the commit cycle, HTTP endpoints (the `weir` binary is the
//! `weir/` package; the drill is `drill/`).
//!
//! # Layout
//! - `worker/`: one consumer-group member: poll loop, rebalances, restore, processing, commit cycle
//!   (a file each; see its module doc);
//! - `task/`: a task (one input partition), its lifecycle phases and the state each holds;
//! - `repartition.rs`: the repartition topic's records and the second hop's de-duplication;
//! - `commit.rs`: the guarantee-specific commit step;
//! - `collector.rs`: the record collector: every send, its delivery reports (failures, changelog
//!   offsets for checkpoints);
//! - `sink/`: where results go (Kafka, stdout), taking part in the commit cycle;
//! - `pipeline.rs`: the job compiled to what runs per record;
//! - `kafka.rs`: client configuration and internal topics;
//! - `kafka_errors.rs`: Kafka errors a user can act on (listener, mechanism, missing ACL), no values;
//! - `metrics.rs`, `health.rs`, `http.rs`: `/metrics`, `/livez`, `/readyz`;
//! - `secrets.rs`: the job's secrets, redacted from logs, errors, panics and probe answers;
//! - `generator.rs`: deterministic meter readings (demo, tests, drills);
//! - `failpoint.rs`: `WEIR_FAILPOINT` crash points for tests;
//! - `describe.rs`: `weir describe` (text and dot).

mod collector;
mod commit;
pub mod describe;
pub mod failpoint;
pub mod generator;
pub mod health;
pub mod http;
pub mod kafka;
pub mod kafka_errors;
pub mod metrics;
mod pipeline;
mod repartition;
pub mod secrets;
mod sink;
mod task;
pub mod worker;

/// The flagship job as shipped in `jobs/`.
pub const FLAGSHIP_JOB: &str = include_str!("../../jobs/meter-hourly-average.toml");
