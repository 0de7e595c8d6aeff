//! Per-process settings: CLI flags win over `WEIR_*` environment variables, which win over the
//! job file's `[runtime]` table, which wins over the defaults here.

use crate::{Duration, GroupProtocol, Job};

/// The session timeout of a static member (`instance_id` set) unless one is given.
pub const STATIC_SESSION_TIMEOUT_MS: u64 = 30_000;

/// The brokers' default `group.consumer.session.timeout.ms`: under the consumer group protocol
/// the session is the broker's, and weir sizes its own waits (a refused instance id) by it.
pub const BROKER_CONSUMER_SESSION_TIMEOUT_MS: u64 = 45_000;

/// Why a session timeout is refused under the consumer group protocol (file and environment).
pub(crate) const NO_SESSION_UNDER_CONSUMER: &str = "does not apply under group_protocol = \"consumer\": the broker's group.consumer.session.timeout.ms decides";

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
    /// Under the classic protocol only: under `consumer` the broker's
    /// `group.consumer.session.timeout.ms` decides (45 s by default).
    pub session_timeout: Duration,
    pub group_protocol: GroupProtocol,
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
        let group_protocol = env_or("WEIR_GROUP_PROTOCOL")
            .map(|v| {
                v.parse::<GroupProtocol>()
                    .map_err(|e| format!("WEIR_GROUP_PROTOCOL: {e}"))
            })
            .transpose()?
            .or(r.group_protocol)
            .unwrap_or_default();
        let session_timeout_given = parse_duration("WEIR_SESSION_TIMEOUT")?.or(r.session_timeout);
        if group_protocol == GroupProtocol::Consumer && session_timeout_given.is_some() {
            return Err(format!(
                "a session timeout (runtime.session_timeout or WEIR_SESSION_TIMEOUT) {NO_SESSION_UNDER_CONSUMER}"
            ));
        }
        let session_timeout = session_timeout_given.unwrap_or(Duration::from_millis(
            match (group_protocol, instance_id.is_some()) {
                (GroupProtocol::Consumer, _) => BROKER_CONSUMER_SESSION_TIMEOUT_MS,
                (GroupProtocol::Classic, true) => STATIC_SESSION_TIMEOUT_MS,
                (GroupProtocol::Classic, false) => 10_000,
            },
        ));
        Ok(RuntimeConfig {
            brokers,
            state_dir,
            http,
            instance_id,
            session_timeout,
            group_protocol,
            block_cache_bytes: parse_bytes("WEIR_BLOCK_CACHE_BYTES")?
                .or(r.block_cache_bytes)
                .unwrap_or(64 << 20),
            write_buffer_bytes: parse_bytes("WEIR_WRITE_BUFFER_BYTES")?
                .or(r.write_buffer_bytes)
                .unwrap_or(32 << 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(runtime: &str, env: &[(&str, &str)]) -> Result<RuntimeConfig, String> {
        let text = format!(
            "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n[runtime]\n{runtime}\n"
        );
        let job = crate::parse_job("j.toml", &text, &|_| None).map_err(|e| e.to_string())?;
        let cli = RuntimeOverrides {
            brokers: Some("b:9092".into()),
            ..RuntimeOverrides::default()
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RuntimeConfig::resolve(&job, &cli, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_group_protocol_comes_from_the_environment_then_the_file() {
        let r = resolve("", &[]).unwrap();
        assert_eq!(r.group_protocol, GroupProtocol::Classic);
        assert_eq!(r.session_timeout.as_millis(), 10_000);
        let r = resolve("group_protocol = \"consumer\"", &[]).unwrap();
        assert_eq!(r.group_protocol, GroupProtocol::Consumer);
        // weir's own waits follow the broker's default session under that protocol.
        assert_eq!(
            r.session_timeout.as_millis(),
            BROKER_CONSUMER_SESSION_TIMEOUT_MS
        );
        let r = resolve(
            "group_protocol = \"consumer\"",
            &[("WEIR_GROUP_PROTOCOL", "classic")],
        );
        assert_eq!(r.unwrap().group_protocol, GroupProtocol::Classic);
        let err = resolve("", &[("WEIR_GROUP_PROTOCOL", "kip848")]).unwrap_err();
        assert!(
            err.starts_with("WEIR_GROUP_PROTOCOL: unknown group protocol \"kip848\""),
            "{err}"
        );
    }

    #[test]
    fn a_session_timeout_is_refused_where_the_broker_decides_it() {
        let err = resolve(
            "session_timeout = \"20s\"",
            &[("WEIR_GROUP_PROTOCOL", "consumer")],
        )
        .unwrap_err();
        assert!(
            err.contains("does not apply under group_protocol = \"consumer\""),
            "{err}"
        );
        let r = resolve("session_timeout = \"20s\"", &[]).unwrap();
        assert_eq!(r.session_timeout.as_millis(), 20_000);
    }
}
