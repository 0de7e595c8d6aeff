//! Per-process settings: CLI flags win over `WEIR_*` environment variables, which win over the
//! job file's `[runtime]` table, which wins over the defaults here.

use crate::{Duration, Job};

/// The session timeout of a static member (`instance_id` set) unless one is given.
pub const STATIC_SESSION_TIMEOUT_MS: u64 = 30_000;

/// Settings given on the command line (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct RuntimeOverrides {
    pub brokers: Option<String>,
    pub state_dir: Option<String>,
    pub http: Option<String>,
    pub instance_id: Option<String>,
}

/// The settings a worker runs with, after every source has been applied.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub brokers: String,
    pub state_dir: String,
    pub http: Option<String>,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub block_cache_bytes: u64,
    pub write_buffer_bytes: u64,
}

impl RuntimeConfig {
    /// Defaults are sized for a small pod: 64 MiB block cache, 32 MiB of memtables per worker.
    pub fn resolve(
        job: &Job,
        cli: &RuntimeOverrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RuntimeConfig, String> {
        let env_or = |name: &str| env(name).filter(|v| !v.is_empty());
        let r = &job.runtime;
        let brokers = cli
            .brokers
            .clone()
            .or_else(|| env_or("WEIR_BROKERS"))
            .or_else(|| job.kafka.bootstrap_servers.clone())
            .ok_or("no Kafka bootstrap servers: give --brokers, WEIR_BROKERS or kafka.bootstrap_servers")?;
        let state_dir = cli
            .state_dir
            .clone()
            .or_else(|| env_or("WEIR_STATE_DIR"))
            .or_else(|| job.state.dir.clone())
            .unwrap_or_else(|| "weir-state".into());
        let http = cli
            .http
            .clone()
            .or_else(|| env_or("WEIR_HTTP"))
            .or_else(|| r.http.clone());
        let instance_id = cli
            .instance_id
            .clone()
            .or_else(|| env_or("WEIR_INSTANCE_ID"))
            .or_else(|| r.instance_id.clone());
        let parse_duration = |name: &str| -> Result<Option<Duration>, String> {
            env_or(name)
                .map(|v| v.parse::<Duration>().map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let parse_bytes = |name: &str| -> Result<Option<u64>, String> {
            env_or(name)
                .map(|v| v.parse::<u64>().map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        // A static member that restarts takes its partitions back without a rebalance as long
        // as its session lasts; so does one whose group coordinator restarts (KIP-345). 10 s
        // is shorter than a broker restart, and a coordinator that loads the group after its
        // members' sessions ran out fences them by their own instance id.
        let session_timeout = parse_duration("WEIR_SESSION_TIMEOUT")?
            .or(r.session_timeout)
            .unwrap_or(Duration::from_millis(if instance_id.is_some() {
                STATIC_SESSION_TIMEOUT_MS
            } else {
                10_000
            }));
        Ok(RuntimeConfig {
            brokers,
            state_dir,
            http,
            instance_id,
            session_timeout,
            block_cache_bytes: parse_bytes("WEIR_BLOCK_CACHE_BYTES")?
                .or(r.block_cache_bytes)
                .unwrap_or(64 << 20),
            write_buffer_bytes: parse_bytes("WEIR_WRITE_BUFFER_BYTES")?
                .or(r.write_buffer_bytes)
                .unwrap_or(32 << 20),
        })
    }
}
