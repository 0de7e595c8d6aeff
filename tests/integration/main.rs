//! The integration tests: one binary (one link), a module per area. Tests named `real_*` run
//! against the real Kafka broker started by `cargo xtask test`; `mock_*` on the in-process mock
//! cluster.

mod harness;

mod bad_input;
mod broker;
mod demo;
mod drill;
mod engine;
mod exactly_once;
mod http_limits;
mod job_files;
mod key_by;
mod measure;
mod mock;
mod observability;
mod outages;
mod patterns;
mod secrets;
mod secure;
mod state_recovery;
mod window_close;
