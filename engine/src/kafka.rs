//! Kafka clients as weir configures them, and the internal topics weir creates.

use crate::kafka_errors::{creation_error, explain_authorization, explain_hopeless, Watched};
use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};
use weir_config::Job;

/// Base client settings: the job's pass-through librdkafka properties, weir's default client id
/// where the job gives none, and the bootstrap servers (validation refused a job property that
/// contradicts them). The properties weir needs are set by the callers after these: validation
/// refused any that contradict them (`weir_config::kafka_props`).
pub fn client_config(brokers: &str, job: &Job) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &job.kafka.properties {
        c.set(k, v);
    }
    set_default(
        &mut c,
        job,
        "client.id",
        format!("weir-{}", job.name.get_ref()),
    );
    // A broker that restarted is back in the client's view within a second of listening again.
    set_default(&mut c, job, "reconnect.backoff.max.ms", "1000");
    c.set("bootstrap.servers", brokers);
    c
}

/// Sets a property weir only tunes (`kafka_props::TUNABLE_DEFAULTS`): the job's value, under any
/// of the property's names, wins.
pub fn set_default(c: &mut ClientConfig, job: &Job, name: &str, value: impl Into<String>) {
    if weir_config::kafka_props::user_value(&job.kafka.properties, name).is_none() {
        c.set(name, value.into());
    }
}

/// [`set_default`] with weir's default from `kafka_props::TUNABLE_DEFAULTS` (the one place it is
/// written, and documented from).
pub fn set_tuned(c: &mut ClientConfig, job: &Job, name: &str) {
    let default = weir_config::kafka_props::TUNABLE_DEFAULTS
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.default)
        .unwrap_or_else(|| panic!("{name} is not a tunable property with a default"));
    set_default(c, job, name, default);
}

/// Partition count of each topic, from cluster metadata (`None` = the topic does not exist).
/// Waits up to 10 s for the cluster, but a failed authentication or TLS handshake ends the wait at
/// once with an error that says so (no retry cures wrong credentials).
pub fn partition_count(brokers: &str, job: &Job, topic: &str) -> anyhow::Result<Option<usize>> {
    partition_count_until(brokers, job, topic, &mut |waited| {
        waited < Duration::from_secs(10)
    })
}

/// [`partition_count`] for a worker that starts while Kafka is away: it waits as long as it takes
/// (live, not ready, saying so every 10 s) rather than exit and be restarted in a loop. Wrong
/// credentials or TLS settings still end the wait at once.
pub fn partition_count_patiently(
    brokers: &str,
    job: &Job,
    topic: &str,
    health: &crate::health::Health,
) -> anyhow::Result<Option<usize>> {
    let mut said = Duration::ZERO;
    let count = partition_count_until(brokers, job, topic, &mut |waited| {
        health.beat();
        if waited >= said + Duration::from_secs(10) {
            said = waited;
            tracing::warn!(
                "Kafka at {brokers} has not answered for {}s; still waiting",
                waited.as_secs()
            );
            health.set_fatal(format!(
                "waiting {}s for Kafka at {brokers}",
                waited.as_secs()
            ));
        }
        true
    });
    if said > Duration::ZERO {
        health.clear_fatal();
    }
    count
}

/// Asks for the topic's metadata while `go_on(time waited so far)` says so.
fn partition_count_until(
    brokers: &str,
    job: &Job,
    topic: &str,
    go_on: &mut dyn FnMut(Duration) -> bool,
) -> anyhow::Result<Option<usize>> {
    let consumer: BaseConsumer<Watched> = client_config(brokers, job)
        .create_with_context(Watched::default())
        .map_err(|e| creation_error("creating a metadata client", e))?;
    let started = Instant::now();
    let md = loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_millis(500)) {
            Ok(md) => break md,
            Err(e) => {
                // Serves the client's events: its error callbacks run only in a poll.
                let _ = consumer.poll(Duration::ZERO);
                if let Some(reason) = consumer.context().hopeless() {
                    bail!("{}", explain_hopeless(job, &reason));
                }
                if !go_on(started.elapsed()) {
                    return Err(e)
                        .with_context(|| format!("fetching metadata of {topic} from {brokers}"));
                }
                // Nothing listening answers at once: do not spin on it.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => Ok(Some(t.partitions().len())),
        Some(code @ RDKafkaErrorCode::TopicAuthorizationFailed) => bail!(
            "{}",
            explain_authorization(code, &format!("Topic:{topic}"), "DESCRIBE")
                .expect("an ACL error")
        ),
        Some(_) => Ok(None),
    }
}

/// Makes sure an internal topic exists with `partitions` partitions (compacted when `compacted`).
/// An existing topic with another partition count is an error: co-partitioning would be broken.
pub fn ensure_topic(
    brokers: &str,
    job: &Job,
    topic: &str,
    partitions: usize,
    replication: Option<i16>,
    compacted: bool,
) -> anyhow::Result<()> {
    match partition_count(brokers, job, topic)? {
        Some(n) if n == partitions => return Ok(()),
        Some(n) => bail!("topic {topic} has {n} partitions but the input has {partitions}: delete it or give the job another name"),
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, job)
        .create()
        .map_err(|e| creation_error("creating an admin client", e))?;
    let replication = match replication {
        Some(r) => TopicReplication::Fixed(r as i32),
        None => TopicReplication::Fixed(-1),
    };
    let mut new = NewTopic::new(topic, partitions as i32, replication);
    if compacted {
        new = new.set("cleanup.policy", "compact");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(admin.create_topics(
        [&new],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => match explain_authorization(code, &format!("Topic:{t}"), "CREATE") {
                Some(why) => bail!(
                    "creating topic {t}: {why}; or create it beforehand with {partitions} partitions{}",
                    if compacted { " and cleanup.policy=compact" } else { "" }
                ),
                None => bail!("creating topic {t}: {code}"),
            },
        }
    }
    // Metadata may lag creation for a moment; wait until the topic is visible.
    for _ in 0..100 {
        if partition_count(brokers, job, topic)? == Some(partitions) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("topic {topic} was created but does not show in metadata")
}
