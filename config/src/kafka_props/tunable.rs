//! The properties weir tunes ([`TUNABLE_DEFAULTS`]): weir's default, which a job's
//! `[kafka.properties]` value overrides. The engine reads its defaults from here and the config
//! reference documents them from here.

use super::Client;

/// A property weir sets only where the job does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunable {
    pub name: &'static str,
    /// The other names librdkafka takes for it.
    pub aliases: &'static [&'static str],
    pub client: Client,
    /// weir's value when it is a constant; `None` when weir computes it (see `how`).
    pub default: Option<&'static str>,
    /// How weir chooses its value.
    pub how: &'static str,
}

/// The properties weir tunes: the job's value, if it gives one, wins.
pub const TUNABLE_DEFAULTS: &[Tunable] = &[
    Tunable {
        name: "client.id",
        aliases: &[],
        client: Client::Every,
        default: None,
        how: "weir-<name>",
    },
    Tunable {
        name: "linger.ms",
        aliases: &["queue.buffering.max.ms"],
        client: Client::Producer,
        default: Some("5"),
        how: "small batches, low latency",
    },
    Tunable {
        name: "compression.type",
        aliases: &["compression.codec", "topic.compression.type", "topic.compression.codec"],
        client: Client::Producer,
        default: Some("lz4"),
        how: "cheap compression",
    },
    Tunable {
        name: "queue.buffering.max.kbytes",
        aliases: &[],
        client: Client::Producer,
        default: Some("32768"),
        how: "bounded memory: a large commit waits for acknowledgements rather than queueing 1 GiB",
    },
    Tunable {
        name: "message.timeout.ms",
        aliases: &["delivery.timeout.ms", "topic.message.timeout.ms", "topic.delivery.timeout.ms"],
        client: Client::Producer,
        default: None,
        how: "0 (never give up) under at-least-once, 10000 under exactly-once; a record that times out fails the task, it is never skipped",
    },
    Tunable {
        name: "transaction.timeout.ms",
        aliases: &[],
        client: Client::Producer,
        default: None,
        how: "exactly-once: `processing.transaction_timeout`, by default three commit intervals, at least 10000",
    },
    Tunable {
        name: "session.timeout.ms",
        aliases: &[],
        client: Client::Consumer,
        default: None,
        how: "runtime.session_timeout (WEIR_SESSION_TIMEOUT): 10 s by default, 30 s for a static member",
    },
    Tunable {
        name: "heartbeat.interval.ms",
        aliases: &[],
        client: Client::Consumer,
        default: None,
        how: "a fifth of the session timeout, at least 100",
    },
    Tunable {
        name: "reconnect.backoff.max.ms",
        aliases: &[],
        client: Client::Every,
        default: Some("1000"),
        how: "a broker that restarted is reconnected to within a second (librdkafka waits up to 10 s)",
    },
    Tunable {
        name: "statistics.interval.ms",
        aliases: &[],
        client: Client::Consumer,
        default: Some("5000"),
        how: "how often the consumer's statistics are refreshed: fetch positions and leader connections, which idle close reads",
    },
    Tunable {
        name: "queued.max.messages.kbytes",
        aliases: &[],
        client: Client::Consumer,
        default: Some("4096"),
        how: "bounded prefetch memory per partition",
    },
    Tunable {
        name: "fetch.queue.backoff.ms",
        aliases: &[],
        client: Client::Consumer,
        default: Some("10"),
        how: "how long a partition's fetching pauses once its prefetch queue is full; librdkafka's 1000 ms left the queue empty most of each second (restore and processing ran at half speed)",
    },
];
