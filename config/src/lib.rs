//! Job and runtime configuration for weir.
//!
//! A job is one TOML file (see `docs/config-reference.md`). This crate turns its bytes into a
//! validated [`Job`], or into a list of [`ConfigError`]s, each `FILE:LINE:COL: message`. It depends on
//! no other weir crate.
//!
//! # Layout
//! - `job.rs`: the job file's types, one struct per table, unknown keys rejected;
//! - `duration.rs`: durations written as strings (`"1h"`, `"500ms"`);
//! - `expr.rs`: the arithmetic expressions of `map.derive`;
//! - `interpolate.rs`: `${VAR}`, `${VAR:-default}`, `${VAR:?message}` in the string values of job
//!   files;
//! - `kafka_props.rs`: the librdkafka properties weir sets itself, required or tunable;
//! - `load.rs`: reading, parsing and validating, with positions in every error;
//! - `secret.rs`: which values are secret, and redacting them from text;
//! - `structure.rs`: every unknown key, wrong type and missing key of a file, not just the first;
//! - `runtime.rs`: per-process settings (CLI flags > `WEIR_*` variables > the job file).

mod duration;
mod expr;
mod interpolate;
mod job;
pub mod kafka_props;
mod load;
mod runtime;
pub mod secret;
mod structure;

pub use duration::Duration;
pub use expr::{BinOp, Expr, ExprError};
pub use job::*;
pub use load::{
    deserialize_toml, error_at, load_job, parse_job, read_bounded, ConfigError, ConfigErrors,
    MAX_WINDOWS_PER_RECORD,
};
pub use runtime::{RuntimeConfig, RuntimeOverrides};
pub use secret::{is_sensitive_property, redact};
