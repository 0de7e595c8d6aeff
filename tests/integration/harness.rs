//! Shared helpers of the integration tests: a broker (the real one started by `cargo xtask kafka
//! start`, or an in-process mock cluster), unique names, topics, producing readings, reading a topic
//! to its end with read_committed, `weir run` worker processes, HTTP probes, and awaiting conditions.

#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use weir_engine::generator::{GeneratorSpec, Reading};

/// A Kafka to test against.
pub enum Kafka {
    /// The real broker started by `cargo xtask kafka start`.
    Real(String),
    /// librdkafka's in-process mock cluster: fast, but not a broker (no compaction, no
    /// transaction markers, drops old data). Never proof of restore or exactly-once.
    Mock(MockCluster<'static, DefaultProducerContext>),
}

/// The repository root, read when the tests run: the compiled-in path is the one the binary was
/// first built in, which a shared target directory reuses for other clones of the same sources.
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.join("..")
}

impl Kafka {
    /// The real broker: `WEIR_TEST_BOOTSTRAP`, or the address `cargo xtask kafka start` wrote.
    pub fn real() -> Kafka {
        if let Ok(b) = std::env::var("WEIR_TEST_BOOTSTRAP") {
            return Kafka::Real(b);
        }
        let file = repo_root().join(".weir-kafka/bootstrap");
        match std::fs::read_to_string(&file) {
            Ok(b) if !b.trim().is_empty() => Kafka::Real(b.trim().to_string()),
            _ => panic!("no Kafka broker for the tests: run them with `cargo xtask test`, or start one with `cargo xtask kafka start`"),
        }
    }

    pub fn mock() -> Kafka {
        Kafka::Mock(MockCluster::new(1).expect("mock cluster"))
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Kafka::Real(b) => b.clone(),
            Kafka::Mock(m) => m.bootstrap_servers(),
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    pub fn create_topic_with(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        match self {
            Kafka::Mock(m) => m
                .create_topic(name, partitions, 1)
                .expect("mock create_topic"),
            Kafka::Real(b) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", b)
                    .create()
                    .unwrap();
                let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
                for (k, v) in config {
                    topic = topic.set(k, v);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let res = rt
                    .block_on(admin.create_topics(
                        [&topic],
                        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
                    ))
                    .unwrap();
                for r in res {
                    r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
                }
                let b = b.clone();
                let name = name.to_string();
                await_until(
                    Duration::from_secs(30),
                    "the new topic to show in metadata",
                    || partition_count(&b, &name) == Some(partitions as usize),
                );
            }
        }
    }
}

impl Kafka {
    /// Deletes a topic of the real broker and waits until metadata no longer lists it.
    pub fn delete_topic(&self, name: &str) {
        let Kafka::Real(b) = self else {
            panic!("delete_topic: real broker only");
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", b)
            .create()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt
            .block_on(admin.delete_topics(
                &[name],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            ))
            .unwrap();
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("deleting {t}: {e}"));
        }
        let (b, name) = (b.clone(), name.to_string());
        await_until(
            Duration::from_secs(60),
            "the topic to leave metadata",
            || partition_count(&b, &name).is_none(),
        );
    }
}

pub fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub fn await_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`await_until`], with the workers' logs in the panic message.
pub fn await_workers(
    timeout: Duration,
    what: &str,
    workers: &[&Worker],
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            let logs: Vec<String> = workers
                .iter()
                .map(|w| {
                    let m = w.metrics();
                    let key: Vec<&str> = m
                        .lines()
                        .filter(|l| {
                            [
                                "weir_records_consumed_total",
                                "weir_tasks",
                                "weir_task_state",
                                "weir_consumer_lag",
                            ]
                            .iter()
                            .any(|k| l.starts_with(k))
                        })
                        .collect();
                    format!(
                        "--- {} ---\n{}\n{}",
                        w.log.display(),
                        w.log_text(),
                        key.join("\n")
                    )
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer")
}

/// Produces readings keyed by meter id; returns once Kafka acknowledged all of them.
pub fn produce_readings(bootstrap: &str, topic: &str, readings: &[Reading]) {
    let p = producer(bootstrap);
    for r in readings {
        let payload = r.to_json();
        send(&p, topic, Some(r.meter_id.as_bytes()), &payload, None);
    }
    p.flush(Duration::from_secs(60))
        .expect("all readings acknowledged");
}

pub fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    partition: Option<i32>,
) {
    let mut rec = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(p) = partition {
        rec = rec.partition(p);
    }
    let mut rec = rec;
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("producing to {topic}: {e}"),
        }
    }
}

/// Every record of `topic` up to its current end (the last stable offset: read_committed).
pub fn read_to_end(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let n =
        partition_count(bootstrap, topic).unwrap_or_else(|| panic!("topic {topic} does not exist"));
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..n as i32 {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let positions = c.position().unwrap();
        let done = ends.iter().all(|(p, end)| {
            *end == 0
                || matches!(positions.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *end)
        });
        if done {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} to its end took over 60 s"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            out.push(m.unwrap().detach());
        }
    }
}

/// The hourly result a sink record carries, and (meter, hour start) -> every result emitted for
/// it, in order: the drill's types, so both compare results alike.
pub use weir_drill::oracle::{Emitted as Outputs, Hourly};

pub fn parse_outputs(msgs: &[OwnedMessage]) -> Outputs {
    let mut out = Outputs::new();
    for m in msgs {
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let meter = v["meter_id"].as_str().unwrap().to_string();
        assert_eq!(
            m.key(),
            Some(meter.as_bytes()),
            "results are keyed by meter id"
        );
        let h = Hourly {
            count: v["count"].as_u64().unwrap(),
            avg: v["avg"].as_f64().unwrap(),
            // min and max only when the job computes them.
            min: v["min"].as_f64().unwrap_or(f64::NAN),
            max: v["max"].as_f64().unwrap_or(f64::NAN),
        };
        out.entry((meter, v["window_start_ms"].as_i64().unwrap()))
            .or_default()
            .push(h);
    }
    out
}

/// The right answer, computed from the readings alone (no weir code involved): the drill's oracle,
/// over every reading.
pub use weir_drill::oracle::hourly as oracle;

/// Differences between the emitted results and the oracle, as readable lines. Every emission of a
/// window is compared, not only the last: these jobs emit on close, so a window emitted twice
/// (a replay under at-least-once) must carry the same value each time; an earlier wrong or
/// double-counted emission is a wrong result a reader has seen.
pub fn compare_emissions(
    outputs: &Outputs,
    expected: &BTreeMap<(String, i64), Hourly>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (k, want) in expected {
        let emitted = outputs.get(k).map(Vec::as_slice).unwrap_or_default();
        if emitted.is_empty() {
            problems.push(format!("missing {k:?}"));
        }
        for (i, got) in emitted.iter().enumerate() {
            if !got.same_as(want) {
                problems.push(format!(
                    "wrong {k:?} (emission {} of {}): got {got:?}, want {want:?}",
                    i + 1,
                    emitted.len()
                ))
            }
        }
    }
    for k in outputs.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("unexpected {k:?}"));
    }
    problems
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    weir_drill::probe::free_port().expect("a free port")
}

/// GET `path` from `addr`; returns (status, body), or None when nothing answers within seconds.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    weir_drill::probe::http_get(addr, path, weir_drill::probe::Patience::PATIENT)
}

pub use weir_drill::probe::{metric_by_partition, metric_sum};

/// A `weir run` process.
pub struct Worker {
    pub child: Child,
    pub http: String,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(job: &Path, bootstrap: &str, state_dir: &Path) -> Worker {
        Worker::start_with(job, bootstrap, state_dir, &[])
    }

    pub fn start_with(
        job: &Path,
        bootstrap: &str,
        state_dir: &Path,
        env: &[(&str, &str)],
    ) -> Worker {
        let http = format!("127.0.0.1:{}", free_port());
        let log = state_dir.with_extension(format!("{}.log", unique("w")));
        let file = std::fs::File::create(&log).unwrap();
        // WEIR_BIN: run another build of weir (e.g. target/release/weir for measurements).
        let bin =
            std::env::var("WEIR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_weir").to_string());
        let child = Command::new(bin)
            .arg("run")
            .arg(job)
            .args(["--brokers", bootstrap, "--http", &http])
            .arg("--state-dir")
            .arg(state_dir)
            .envs(env.iter().copied())
            .env("WEIR_LOG", "info,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawning weir run");
        let w = Worker { child, http, log };
        let addr = w.http.clone();
        await_until(
            Duration::from_secs(30),
            "the worker's HTTP endpoint",
            || http_get(&addr, "/livez").is_some(),
        );
        w
    }

    pub fn metrics(&self) -> String {
        http_get(&self.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn ready(&self) -> bool {
        matches!(http_get(&self.http, "/readyz"), Some((200, _)))
    }

    pub fn await_ready(&self, timeout: Duration) {
        let addr = self.http.clone();
        await_until(timeout, "the worker to be ready", || {
            matches!(http_get(&addr, "/readyz"), Some((200, _)))
        });
    }

    /// Peak resident set size of the process so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then wait for the exit; returns its status code.
    pub fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(45))
    }

    /// SIGKILL: no chance to commit or checkpoint.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL);
                panic!(
                    "worker did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Never leave a worker behind, whatever the test did.
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A job file derived from the flagship job, with its topics renamed and `(from, to)` replacements.
pub fn write_job(
    dir: &Path,
    name: &str,
    input: &str,
    output: &str,
    replacements: &[(&str, &str)],
) -> PathBuf {
    let mut text = weir_engine::FLAGSHIP_JOB
        .replace(
            "name = \"meter-hourly-average\"",
            &format!("name = \"{name}\""),
        )
        .replace(
            "topics = [\"meter-readings\"]",
            &format!("topics = [\"{input}\"]"),
        )
        .replace(
            "topic = \"meter-hourly-averages\"",
            &format!("topic = \"{output}\""),
        )
        .replace("close_idle_after = \"10m\"", "close_idle_after = \"2s\"")
        .replace("commit_interval = \"1s\"", "commit_interval = \"200ms\"");
    for (from, to) in replacements {
        assert!(text.contains(from), "job template has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The group's committed offset of one partition, or None.
pub fn committed_offset(bootstrap: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let res = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match res.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// True when the group has committed, on every partition of `topic`, the partition's end offset.
pub fn group_drained(bootstrap: &str, group: &str, topic: &str) -> bool {
    let n = partition_count(bootstrap, topic).unwrap_or(0) as i32;
    (0..n).all(|p| {
        let end = end_offset(bootstrap, topic, p);
        end == 0 || committed_offset(bootstrap, group, topic, p) == Some(end)
    })
}

/// End offset (high watermark) of one partition.
pub fn end_offset(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    c.fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap()
        .1
}

/// Input and output topics, a state root, and the readings of one test.
pub struct Setup {
    pub kafka: Kafka,
    pub bootstrap: String,
    pub name: String,
    pub input: String,
    pub output: String,
    pub dir: tempfile::TempDir,
    pub readings: Vec<Reading>,
}

pub fn setup(prefix: &str, partitions: i32, spec: GeneratorSpec) -> Setup {
    let kafka = Kafka::real();
    let bootstrap = kafka.bootstrap();
    let name = unique(prefix);
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    kafka.create_topic(&input, partitions);
    kafka.create_topic(&output, partitions);
    Setup {
        kafka,
        bootstrap,
        name,
        input,
        output,
        dir: tempfile::tempdir().unwrap(),
        readings: spec.readings().collect(),
    }
}

impl Setup {
    pub fn job(&self, replacements: &[(&str, &str)]) -> std::path::PathBuf {
        write_job(
            self.dir.path(),
            &self.name,
            &self.input,
            &self.output,
            replacements,
        )
    }

    /// A job whose windows close only by stream time (sentinels), never by wall-clock idleness.
    pub fn job_without_idle_close(&self) -> std::path::PathBuf {
        self.job(&[("close_idle_after = \"2s\"", "close_idle_after = \"1h\"")])
    }

    pub fn state(&self, worker: &str) -> std::path::PathBuf {
        self.dir.path().join(worker)
    }

    /// One reading a day after the data, on every partition: stream time passes every window's
    /// end plus grace, so every window closes without any wall-clock rule.
    pub fn send_sentinels(&self, partitions: i32) {
        let p = producer(&self.bootstrap);
        let ts = self.readings.iter().map(|r| r.ts_ms).max().unwrap() + 86_400_000;
        for part in 0..partitions {
            let payload = Reading {
                meter_id: format!("sentinel-{part}"),
                ts_ms: ts,
                kwh: 0.0,
            }
            .to_json();
            send(
                &p,
                &self.input,
                Some(format!("sentinel-{part}").as_bytes()),
                &payload,
                Some(part),
            );
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    /// Results without the sentinels' own (never closed) windows.
    pub fn outputs(&self) -> Outputs {
        parse_outputs(&read_to_end(&self.bootstrap, &self.output))
            .into_iter()
            .filter(|((m, _), _)| !m.starts_with("sentinel-"))
            .collect()
    }

    /// Waits until every expected window has a result and every result equals the oracle.
    pub fn await_results_equal_oracle(
        &self,
        expected: &BTreeMap<(String, i64), Hourly>,
        workers: &[&Worker],
    ) -> Outputs {
        let mut last = Vec::new();
        let mut outputs = Outputs::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            outputs = self.outputs();
            last = compare_emissions(&outputs, expected);
            if last.is_empty() {
                return outputs;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let logs: Vec<String> = workers.iter().map(|w| w.log_text()).collect();
        panic!("results differ from the oracle ({} problems, first: {:?}); {} windows emitted\nworker logs:\n{}", last.len(), &last[..last.len().min(5)], outputs.len(), logs.join("\n----\n"));
    }

    /// Feeds the readings in batches of `chunk`, one batch every 100 ms, while workers run.
    pub fn feed(&self, chunk: usize) -> std::thread::JoinHandle<()> {
        let (b, input, readings) = (
            self.bootstrap.clone(),
            self.input.clone(),
            self.readings.clone(),
        );
        std::thread::spawn(move || {
            for batch in readings.chunks(chunk) {
                produce_readings(&b, &input, batch);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }
}
