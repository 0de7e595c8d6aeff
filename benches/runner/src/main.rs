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

mod steady;
mod summary;
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
    /// restore); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON results go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Interleaved rounds of every runner (median and spread reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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

/// The physical limit: read every record of `topic` (all partitions, from the start) and nothing else.
fn bare_consumer(bootstrap: &str, topic: &str, expect: u64) -> anyhow::Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-bare")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut n = 0u64;
    let mut bytes = 0u64;
    // The clock is read at the two marks only, not per record.
    let marks = Steady::new(expect);
    let (mut t10, mut t90) = (0, 0);
    while n < expect {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            bytes += m?.payload_len() as u64;
            n += 1;
            if n == marks.low() {
                t10 = steady::unix_ms();
            }
            if n == marks.high() {
                t90 = steady::unix_ms();
            }
        }
    }
    println!("{n} records, {bytes} bytes");
    println!("{}", steady::bare_line(t10, t90));
    Ok(())
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

fn create_topics(bootstrap: &str, names: &[String], partitions: i32) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let a = admin(bootstrap)?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in rt.block_on(a.create_topics(&topics, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Produces the readings and one sentinel per partition; returns the oracle of what was acknowledged.
fn preload(args: &Args, topic: &str) -> anyhow::Result<(Oracle, u64)> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let per_hour = 12u64;
    let hours = args.records.div_ceil(args.meters as u64 * per_hour) as i64;
    // Event time ends an hour before now: changelogs of windowed stores (Kafka Streams') delete
    // records older than window + retention, and brokers refuse timestamps an hour or more ahead,
    // so old or future event times would make restores and sentinels say nothing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let spec = GeneratorSpec {
        meters: args.meters,
        hours: hours as u32,
        readings_per_hour: per_hour as u32,
        start_ms: now - now.rem_euclid(HOUR) - (hours + 1) * HOUR,
        ..Default::default()
    };
    let mut oracle = Oracle::new();
    let mut max_ts = 0;
    // A full queue drains as the broker acknowledges: wait and send again.
    let send = |mut rec: BaseRecord<'_, [u8], [u8]>| loop {
        match p.send(rec) {
            Ok(()) => break,
            Err((_, back)) => {
                p.poll(Duration::from_millis(10));
                rec = back;
            }
        }
    };
    for r in spec.readings().take(args.records as usize) {
        let payload = r.to_json();
        send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(r.meter_id.as_bytes())
                .payload(&payload),
        );
        max_ts = max_ts.max(r.ts_ms);
        if r.kwh >= 0.0 {
            let e = oracle
                .entry((r.meter_id, r.ts_ms - r.ts_ms.rem_euclid(HOUR)))
                .or_insert((0, 0.0, f64::MAX, f64::MIN));
            e.0 += 1;
            e.1 += r.kwh;
            e.2 = e.2.min(r.kwh);
            e.3 = e.3.max(r.kwh);
        }
    }
    // Sentinels: stream time of every partition passes the last window's end + grace (5 min),
    // still in the past.
    let sentinel_ts = max_ts - max_ts.rem_euclid(HOUR) + HOUR + 10 * 60_000;
    for part in 0..args.partitions {
        let key = format!("sentinel-{part}");
        let payload = format!(r#"{{"meter_id":"{key}","ts":{sentinel_ts},"kwh":0.0}}"#);
        send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_bytes())
                .partition(part),
        );
    }
    // An idempotent producer with infinite retries either delivers everything or fails the flush.
    p.flush(Duration::from_secs(300))
        .context("not every reading was acknowledged")?;
    Ok((oracle, args.records + args.partitions as u64))
}

fn end_offsets(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    (0..partitions)
        .map(|p| Ok(c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))
        .collect()
}

/// The sum of `topic`'s end offsets (0 when they cannot be asked).
fn output_total(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<BaseConsumer>()
        .ok()
        .and_then(|c| end_offsets(&c, topic, partitions).ok())
        .map(|ends| ends.iter().sum())
        .unwrap_or(0)
}

fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let Ok(c) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create::<BaseConsumer>()
    else {
        return 0;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .map(|t| {
            t.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every result in `topic` (read_committed), without the sentinels' windows.
fn read_results(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<Value>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-verify")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let ends = end_offsets(&c, topic, partitions)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut next = vec![0i64; partitions as usize];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        if Instant::now() > deadline {
            bail!("reading {topic}: stuck before its end offsets {ends:?} (at {next:?})");
        }
        // A transaction marker ends a partition without a record: the position says where it is.
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m?;
            next[m.partition() as usize] = m.offset() + 1;
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                .with_context(|| format!("{topic}: a result is not JSON"))?;
            if !v["meter_id"]
                .as_str()
                .unwrap_or("")
                .starts_with("sentinel-")
            {
                out.push(v);
            }
        } else if let Ok(pos) = c.position() {
            for e in pos.elements() {
                if let Offset::Offset(o) = e.offset() {
                    next[e.partition() as usize] = next[e.partition() as usize].max(o);
                }
            }
        }
    }
    Ok(out)
}

/// Compares results with the oracle: (missing, duplicated, wrong).
fn verify(results: &[Value], oracle: &Oracle) -> (u64, u64, u64) {
    let mut seen: HashMap<(String, i64), u32> = HashMap::new();
    let mut wrong = 0;
    for v in results {
        let key = (
            v["meter_id"].as_str().unwrap_or("").to_string(),
            v["window_start_ms"].as_i64().unwrap_or(i64::MIN),
        );
        *seen.entry(key.clone()).or_default() += 1;
        let ok = oracle.get(&key).is_some_and(|&(n, sum, min, max)| {
            v["count"].as_u64() == Some(n)
                && v["avg"]
                    .as_f64()
                    .is_some_and(|a| (a - sum / n as f64).abs() < 1e-9)
                && v["min"].as_f64() == Some(min)
                && v["max"].as_f64() == Some(max)
        });
        if !ok {
            wrong += 1;
        }
    }
    let missing = oracle.keys().filter(|k| !seen.contains_key(*k)).count() as u64;
    let duplicated = seen.values().filter(|&&n| n > 1).count() as u64;
    (missing, duplicated, wrong)
}

/// CPU seconds (user + system) of a live process.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks
}

/// Peak RSS of a live process (VmHWM, bytes). Read from /proc rather than the rusage of wait4,
/// whose maxrss carries over the pre-exec peak of the forked copy of this (oracle-holding) process.
fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A child that exited: its exit status and CPU seconds.
struct Exited {
    success: bool,
    cpu_s: f64,
}

/// Reaps `pid` if it has exited (without blocking).
fn reaped(pid: u32) -> Option<Exited> {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
    (r == pid as i32).then(|| Exited {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        cpu_s: [usage.ru_utime, usage.ru_stime]
            .iter()
            .map(|t| t.tv_sec as f64 + t.tv_usec as f64 / 1e6)
            .sum(),
    })
}

/// Stops a child (SIGTERM, then SIGKILL after 60 s) and reaps it.
fn stop(child: Child) -> Exited {
    let pid = child.id();
    // Reaped here with wait4 (for the peak RSS), not by `Child`.
    std::mem::forget(child);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = reaped(pid) {
            return e;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Run {
    name: &'static str,
    command: Command,
    /// `Some(group)`: drained when the group committed the end offsets; `None`: when it exits.
    group: Option<String>,
    output: Option<String>,
    duplicates_allowed: bool,
}

struct Input<'a> {
    args: &'a Args,
    topic: &'a str,
    total: u64,
    oracle: &'a Oracle,
}

fn measure(input: &Input, mut run: Run) -> anyhow::Result<Value> {
    let a = input.args;
    eprintln!("weir-bench: {} ...", run.name);
    let log = std::env::temp_dir().join(format!("weir-bench-{}.log", run.name));
    let started = Instant::now();
    let spawned_unix_ms = steady::unix_ms();
    let mut steady = Steady::new(input.total);
    let mut child = run
        .command
        // The bare consumer reports its own marks on stdout (a runner with a group is sampled).
        .stdout(if run.group.is_none() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", run.name))?;
    let bare_out = child.stdout.take();
    let pid = child.id();
    let timeout = Duration::from_secs(a.timeout_s);
    let mut cpu_s = 0.0;
    let mut peak = 0;
    let mut exited = None;
    let drained = loop {
        cpu_s = cpu_seconds(pid).max(cpu_s);
        peak = peak_rss_bytes(pid).max(peak);
        if let Some(e) = reaped(pid) {
            if run.group.is_none() && e.success {
                exited = Some(e);
                break true;
            }
            bail!("{} exited early; its log: {}", run.name, log.display());
        }
        if let Some(g) = &run.group {
            let c = committed_total(&a.bootstrap, g, input.topic, a.partitions);
            steady.observe(started.elapsed().as_secs_f64(), c.max(0) as u64);
            // Drained: every input offset committed and as many output records as windows
            // (windows that close at once are emitted over several commit cycles, after the
            // offsets that closed them; under exactly-once the count includes commit markers,
            // which the verification below allows for).
            if c as u64 >= input.total
                && run.output.as_deref().is_none_or(|t| {
                    output_total(&a.bootstrap, t, a.partitions) >= input.oracle.len() as i64
                })
            {
                break true;
            }
        }
        if started.elapsed() > timeout {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let drain_s = started.elapsed().as_secs_f64();
    cpu_s = cpu_seconds(pid).max(cpu_s);
    peak = peak_rss_bytes(pid).max(peak);
    if let Some(out) = bare_out {
        let marks = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| steady::parse_bare_line(&l, spawned_unix_ms));
        if let Some((t10, t90)) = marks {
            steady.t10 = Some(t10);
            steady.t90 = Some(t90);
        }
    }
    let mut result = json!({
        "drain_s": round(drain_s),
        "records_per_s": (input.total as f64 / drain_s).round(),
        "steady_records_per_s": steady.rate().map(f64::round),
        "steady_span_s": steady.span_s().map(round),
        "to_10_percent_s": steady.t10.map(round),
        "cpu_s": round(cpu_s),
        "peak_rss_bytes": peak,
    });
    let verified = match &run.output {
        _ if !drained => {
            result["error"] = json!(format!("not drained within {} s", a.timeout_s));
            false
        }
        Some(topic) => {
            // The last cycles' results may still be on their way (see the drain condition).
            let mut results = read_results(&a.bootstrap, topic, a.partitions)?;
            let mut checked = verify(&results, input.oracle);
            for _ in 0..5 {
                if checked.0 == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
                results = read_results(&a.bootstrap, topic, a.partitions)?;
                checked = verify(&results, input.oracle);
            }
            let (missing, duplicated, wrong) = checked;
            result["windows_expected"] = json!(input.oracle.len());
            result["windows_missing"] = json!(missing);
            result["windows_duplicated"] = json!(duplicated);
            result["windows_wrong"] = json!(wrong);
            missing == 0 && wrong == 0 && (run.duplicates_allowed || duplicated == 0)
        }
        // The bare consumer verifies itself: it exits once it has read every record.
        None => true,
    };
    // Stopped only now: the verification above may wait for the last results.
    match exited {
        Some(e) => result["cpu_s"] = json!(round(e.cpu_s)),
        None => {
            stop(child);
        }
    }
    result["verified"] = json!(verified);
    run.output.take();
    eprintln!("weir-bench: {} {result}", run.name);
    Ok(result)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The flagship job with this run's name, topics and guarantee.
fn job_file(
    a: &Args,
    dir: &Path,
    name: &str,
    input: &str,
    output: &str,
    eos: bool,
) -> anyhow::Result<PathBuf> {
    let mut text = std::fs::read_to_string(&a.job)?;
    for (from, to) in [
        (
            "name = \"meter-hourly-average\"".to_string(),
            format!("name = \"{name}\""),
        ),
        (
            "topics = [\"meter-readings\"]".to_string(),
            format!("topics = [\"{input}\"]"),
        ),
        (
            "topic = \"meter-hourly-averages\"".to_string(),
            format!("topic = \"{output}\""),
        ),
        (
            "guarantee = \"at_least_once\"".to_string(),
            format!(
                "guarantee = \"{}\"",
                if eos { "exactly_once" } else { "at_least_once" }
            ),
        ),
        (
            "commit_interval = \"1s\"".to_string(),
            format!("commit_interval = \"{}ms\"", a.commit_interval_ms),
        ),
    ] {
        if !text.contains(&from) {
            bail!("{} has no {from}", a.job.display());
        }
        text = text.replace(&from, &to);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn weir_command(a: &Args, job: &Path, state: &Path, http: Option<u16>) -> Command {
    let mut c = Command::new(&a.weir);
    c.arg("run")
        .arg(job)
        .arg("--brokers")
        .arg(&a.bootstrap)
        .arg("--state-dir")
        .arg(state)
        .env("WEIR_LOG", "info,librdkafka=warn");
    if let Some(port) = http {
        c.arg("--http").arg(format!("127.0.0.1:{port}"));
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// This program as the bare consumer of `topic`, stopping after `expect` records.
fn bare_command(a: &Args, me: &Path, topic: &str, expect: u64) -> Command {
    let mut c = Command::new(me);
    c.arg("--bootstrap")
        .arg(&a.bootstrap)
        .arg("--weir")
        .arg(&a.weir)
        .arg("--job")
        .arg(&a.job)
        .arg("--bare-topic")
        .arg(topic)
        .arg("--expect")
        .arg(expect.to_string());
    c
}

fn kafka_streams_command(
    a: &Args,
    jar: &Path,
    input: &str,
    output: &str,
    app: &str,
    guarantee: &str,
    state: &Path,
) -> Command {
    let mut c = Command::new("java");
    c.arg("-Xmx512m")
        .arg("-jar")
        .arg(jar)
        .env("BOOTSTRAP", &a.bootstrap)
        .env("INPUT_TOPIC", input)
        .env("OUTPUT_TOPIC", output)
        .env("APPLICATION_ID", app)
        // Static membership, so a restart takes its partitions back at once (as weir's
        // --instance-id does), and the peer leaves the group when it closes.
        .env("INSTANCE_ID", format!("{app}-1"))
        .env("GUARANTEE", guarantee)
        .env("COMMIT_INTERVAL_MS", a.commit_interval_ms.to_string())
        .env("STATE_DIR", state);
    c
}

/// Starts the Kafka Streams peer over existing committed offsets and measures the time until it
/// says RUNNING, with what it says of each restored changelog partition
/// (`kafka-streams peer: restored N records of STORE partition P in MS ms`).
fn kafka_streams_time_to_running(a: &Args, mut c: Command, what: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let log = std::env::temp_dir().join(format!("weir-bench-{what}.log"));
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut records, mut ms) = (0u64, 0u64);
    let deadline = started + Duration::from_secs(a.timeout_s);
    let running_s = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| anyhow::anyhow!("{what}: Kafka Streams never said RUNNING"));
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                stop(child);
                return Err(e);
            }
        };
        if line.contains("RUNNING") {
            break started.elapsed().as_secs_f64();
        }
        if let Some(rest) = line.strip_prefix("kafka-streams peer: restored ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            records += words
                .first()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            ms = ms.max(
                words
                    .iter()
                    .rev()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            );
        }
    };
    stop(child);
    let seconds = ms as f64 / 1000.0;
    Ok(json!({
        "ready_s": round(running_s),
        "records_restored": records,
        "restore_s": round(seconds),
        "restore_records_per_s": if seconds > 0.0 { (records as f64 / seconds).round() } else { 0.0 },
    }))
}

/// Starts weir over existing committed offsets and measures the time until it is ready (every task
/// restored and running), with what its log says of the restore.
fn time_to_ready(a: &Args, job: &Path, state: &Path, what: &str) -> anyhow::Result<Value> {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("weir-bench-{what}.log"));
    let started = Instant::now();
    let child = weir_command(a, job, state, Some(port))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    while !ready(port) {
        if started.elapsed() > Duration::from_secs(a.timeout_s) {
            stop(child);
            bail!("{what}: not ready within {} s", a.timeout_s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready_s = started.elapsed().as_secs_f64();
    stop(child);
    // "restored; task running partition=.. records=N .. seconds="S"": tasks restore side by side.
    let (mut records, mut seconds) = (0u64, 0f64);
    for line in BufReader::new(std::fs::File::open(&log)?).lines() {
        let line = line?;
        if !line.contains("restored; task running") {
            continue;
        }
        let field = |name: &str| -> Option<String> {
            let at = line.find(&format!(" {name}="))? + name.len() + 2;
            Some(
                line[at..]
                    .split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        };
        records += field("records").and_then(|v| v.parse().ok()).unwrap_or(0);
        seconds = seconds.max(field("seconds").and_then(|v| v.parse().ok()).unwrap_or(0.0));
    }
    Ok(json!({
        "ready_s": round(ready_s),
        "records_restored": records,
        "restore_s": round(seconds),
        "restore_records_per_s": if seconds > 0.0 { (records as f64 / seconds).round() } else { 0.0 },
    }))
}

fn compare(a: &Args) -> anyhow::Result<()> {
    let wanted = |name: &str| a.only.is_empty() || a.only.iter().any(|o| o == name);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let base = format!("bench-{stamp}");
    let input = format!("{base}-readings");
    create_topics(&a.bootstrap, std::slice::from_ref(&input), a.partitions)?;
    eprintln!(
        "weir-bench: preloading {} readings of {} meters into {input} ({} partitions)",
        a.records, a.meters, a.partitions
    );
    let t = Instant::now();
    let (oracle, total) = preload(a, &input)?;
    eprintln!(
        "weir-bench: preloaded in {:.1} s; {} windows expected",
        t.elapsed().as_secs_f64(),
        oracle.len()
    );
    let work = tempfile_dir(&base)?;
    let inp = Input {
        args: a,
        topic: &input,
        total,
        oracle: &oracle,
    };
    let me = std::env::current_exe()?;
    // The broker has just started and the input was just written: one untimed drain warms its
    // page cache and connections before anything is measured.
    measure(
        &inp,
        Run {
            name: "warm-up",
            command: bare_command(a, &me, &input, total),
            group: None,
            output: None,
            duplicates_allowed: false,
        },
    )?;
    // Interleaved rounds (bare, weir, peers, then again): noise and warm-up then spread over
    // every runner instead of favouring the ones measured last.
    let mut rounds: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut alos_state = None;
    let mut ks_alos = None;
    for round in 0..a.rounds.max(1) {
        eprintln!("weir-bench: round {} of {}", round + 1, a.rounds.max(1));

        if wanted("bare") {
            let c = bare_command(a, &me, &input, total);
            let r = measure(
                &inp,
                Run {
                    name: "bare",
                    command: c,
                    group: None,
                    output: None,
                    duplicates_allowed: false,
                },
            )?;
            rounds.entry("bare".into()).or_default().push(r);
        }
        for (key, eos) in [("weir_alos", false), ("weir_eos", true)] {
            if !(wanted(key) || key == "weir_alos" && wanted("restore")) {
                continue;
            }
            let name = format!("{base}-r{round}-{key}").replace('_', "-");
            let output = format!("{name}-out");
            create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
            let job = job_file(a, &work, &name, &input, &output, eos)?;
            let state = work.join(&name);
            let r = measure(
                &inp,
                Run {
                    name: key,
                    command: weir_command(a, &job, &state, None),
                    group: Some(name.clone()),
                    output: Some(output),
                    duplicates_allowed: !eos,
                },
            )?;
            rounds.entry(key.into()).or_default().push(r);
            if !eos {
                alos_state = Some((job, state, name));
            }
        }
        if let Some(jar) = &a.kafka_streams_jar {
            for (key, guarantee) in [
                ("kafka_streams_alos", "at_least_once"),
                ("kafka_streams_eos", "exactly_once_v2"),
            ] {
                if !wanted(key) {
                    continue;
                }
                let app = format!("{base}-r{round}-{key}").replace('_', "-");
                let output = format!("{app}-out");
                create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
                let c = kafka_streams_command(
                    a,
                    jar,
                    &input,
                    &output,
                    &app,
                    guarantee,
                    &work.join(&app),
                );
                if guarantee == "at_least_once" {
                    ks_alos = Some((output.clone(), app.clone()));
                }
                let r = measure(
                    &inp,
                    Run {
                        name: key,
                        command: c,
                        group: Some(app),
                        output: Some(output),
                        duplicates_allowed: guarantee == "at_least_once",
                    },
                )?;
                rounds.entry(key.into()).or_default().push(r);
            }
        }
        if let (Some(script), true) = (&a.quix_run, wanted("quix")) {
            let group = format!("{base}-r{round}-quix");
            let output = format!("{group}-out");
            create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
            let mut c = Command::new(script);
            c.env("BOOTSTRAP", &a.bootstrap)
                .env("INPUT_TOPIC", &input)
                .env("OUTPUT_TOPIC", &output)
                .env("CONSUMER_GROUP", &group)
                .env("GUARANTEE", "at-least-once")
                .env(
                    "COMMIT_INTERVAL_S",
                    format!("{}", a.commit_interval_ms as f64 / 1000.0),
                )
                .env("STATE_DIR", work.join(&group));
            let r = measure(
                &inp,
                Run {
                    name: "quix",
                    command: c,
                    group: Some(group),
                    output: Some(output),
                    duplicates_allowed: true,
                },
            )?;
            rounds.entry("quix".into()).or_default().push(r);
        }
    }
    let runs = summary::runs(&rounds);
    let ratios = summary::ratios(&rounds);

    let mut restore = serde_json::Map::new();
    if let (Some((job, state, name)), true) = (&alos_state, wanted("restore")) {
        // Warm restart: state intact.
        restore.insert(
            "weir_warm_restart".into(),
            time_to_ready(a, job, state, "warm")?,
        );
        // Full restore: local state wiped, everything replayed from the changelog.
        std::fs::remove_dir_all(state)?;
        let full = time_to_ready(a, job, state, "restore")?;
        // The same changelog read by the bare consumer: the limit for a restore.
        let changelog = format!("{name}-hourly_avg-changelog");
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &a.bootstrap)
            .create()?;
        let records: i64 = end_offsets(&c, &changelog, a.partitions)?.iter().sum();
        let cmd = bare_command(a, &me, &changelog, records as u64);
        let bare = measure(
            &Input {
                total: records as u64,
                topic: &changelog,
                ..inp
            },
            Run {
                name: "bare_changelog",
                command: cmd,
                group: None,
                output: None,
                duplicates_allowed: false,
            },
        )?;
        restore.insert("weir_full".into(), full);
        restore.insert("bare_changelog".into(), bare);
    }
    if let (Some(jar), Some((output, app)), true) =
        (&a.kafka_streams_jar, &ks_alos, wanted("restore"))
    {
        let state = work.join(app);
        let c = || kafka_streams_command(a, jar, &input, output, app, "at_least_once", &state);
        restore.insert(
            "kafka_streams_warm_restart".into(),
            kafka_streams_time_to_running(a, c(), "ks-warm")?,
        );
        std::fs::remove_dir_all(&state).ok();
        restore.insert(
            "kafka_streams_full".into(),
            kafka_streams_time_to_running(a, c(), "ks-restore")?,
        );
    }

    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let report = json!({
        "date": date_today(),
        "machine": machine,
        "records": total,
        "meters": a.meters,
        "partitions": a.partitions,
        "commit_interval_ms": a.commit_interval_ms,
        "rounds": a.rounds.max(1),
        "runs": runs,
        "ratios": ratios,
        "restore": restore,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(out) = &a.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &text)?;
    }
    let failed: Vec<&String> = runs
        .iter()
        .filter(|(_, r)| r["verified"] != json!(true))
        .map(|(k, _)| k)
        .collect();
    if !failed.is_empty() {
        eprintln!("weir-bench: not verified (their figures do not count): {failed:?}");
    }
    // weir must be right; a peer that is not is reported as such.
    if failed
        .iter()
        .any(|k| k.starts_with("weir") || k.as_str() == "bare")
    {
        bail!("weir not verified: {failed:?}");
    }
    Ok(())
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
