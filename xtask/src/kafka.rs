//! A real Apache Kafka (KRaft) cluster on 127.0.0.1 for tests and drills.
//!
//! The broker jars come from Maven Central through `mvn` (the pom beside this crate) into the cache
//! directory. Every start formats fresh storage under `<workspace>/.weir-kafka/`, picks free ports,
//! starts one JVM per node (combined broker + controller) in its own process group, and waits until a
//! Metadata request shows every broker and an elected controller. The bootstrap address is printed and
//! written to `.weir-kafka/bootstrap`, which the test harness reads when `WEIR_TEST_BOOTSTRAP` is unset.

use crate::secure::Secure;
use crate::{cache_dir, prereq, wire, workspace_root};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test broker. On 4.4.0 (the newest served) a node that crashes and restarts within its
/// broker session rolls back the open transactions but drops their abort markers, so the next
/// commit of the same producer id makes the rolled-back records visible: the exactly-once drill of
/// a broker outage emits windows twice (docs/performance.md, "Kafka 4.4.0"). The tests run on
/// 4.1.1, where they pass; `WEIR_KAFKA_VERSION` runs another release.
pub const KAFKA_VERSION: &str = "4.1.1";
/// Runs the broker of another version instead (fetched from Maven Central like the default).
const VERSION_ENV: &str = "WEIR_KAFKA_VERSION";
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn run_dir() -> PathBuf {
    workspace_root().join(".weir-kafka")
}

/// The broker version: [`KAFKA_VERSION`] unless `WEIR_KAFKA_VERSION` names another.
pub fn version() -> String {
    std::env::var(VERSION_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| KAFKA_VERSION.to_string())
}

fn libs_dir(version: &str) -> PathBuf {
    cache_dir().join(format!("kafka-{version}")).join("libs")
}

/// Fetches the broker and its runtime dependencies once; later calls find them in the cache.
fn fetch() -> Result<PathBuf, String> {
    let version = version();
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("{VERSION_ENV}={version:?} is not a Kafka version"));
    }
    let libs = libs_dir(&version);
    let marker = libs.join(".complete");
    if marker.exists() {
        return Ok(libs);
    }
    prereq::ensure_java_and_maven()?;
    eprintln!(
        "xtask: fetching Apache Kafka {version} from Maven Central into {}",
        libs.display()
    );
    let _ = std::fs::remove_dir_all(&libs);
    let pom = workspace_root().join("xtask").join("kafka").join("pom.xml");
    let status = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .arg(format!("-Dkafka.version={version}"))
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .status()
        .map_err(|e| format!("could not run mvn: {e}; install Maven (apt-get install maven)"))?;
    if !status.success() {
        return Err(format!("mvn could not fetch org.apache.kafka:kafka_2.13:{version} ({status}); check access to Maven Central"));
    }
    std::fs::write(&marker, &version).map_err(|e| e.to_string())?;
    Ok(libs)
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

struct Node {
    id: usize,
    broker_port: u16,
    controller_port: u16,
    dir: PathBuf,
}

fn server_properties(node: &Node, voters: &str, brokers: usize, secure: Option<&Secure>) -> String {
    let rf = brokers.min(3);
    let min_isr = if brokers >= 3 { 2 } else { 1 };
    let mut p = String::new();
    let _ = writeln!(p, "process.roles=broker,controller");
    let _ = writeln!(p, "node.id={}", node.id);
    let _ = writeln!(p, "controller.quorum.voters={voters}");
    let extra = secure
        .map(|s| format!(",{}", s.listeners()))
        .unwrap_or_default();
    let _ = writeln!(
        p,
        "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}{extra}",
        node.broker_port, node.controller_port
    );
    let _ = writeln!(
        p,
        "advertised.listeners=PLAINTEXT://127.0.0.1:{}{extra}",
        node.broker_port
    );
    let _ = writeln!(p, "controller.listener.names=CONTROLLER");
    let _ = writeln!(p, "inter.broker.listener.name=PLAINTEXT");
    let _ = writeln!(
        p,
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{}",
        if secure.is_some() {
            ",SSL:SSL,SASL_SSL:SASL_SSL"
        } else {
            ""
        }
    );
    if let Some(s) = secure {
        p.push_str(&s.server_properties());
    }
    let _ = writeln!(p, "log.dirs={}", node.dir.join("data").display());
    let _ = writeln!(p, "num.partitions=1");
    let _ = writeln!(p, "auto.create.topics.enable=false");
    let _ = writeln!(p, "default.replication.factor={rf}");
    let _ = writeln!(p, "min.insync.replicas={min_isr}");
    let _ = writeln!(p, "offsets.topic.replication.factor={rf}");
    let _ = writeln!(p, "offsets.topic.num.partitions=10");
    let _ = writeln!(p, "transaction.state.log.replication.factor={rf}");
    let _ = writeln!(p, "transaction.state.log.min.isr={min_isr}");
    let _ = writeln!(p, "transaction.state.log.num.partitions=10");
    let _ = writeln!(p, "share.coordinator.state.topic.replication.factor={rf}");
    let _ = writeln!(p, "share.coordinator.state.topic.min.isr={min_isr}");
    // Tests and drills: rebalances at once, short session timeouts allowed.
    let _ = writeln!(p, "group.initial.rebalance.delay.ms=0");
    let _ = writeln!(p, "group.min.session.timeout.ms=500");
    let _ = writeln!(p, "group.consumer.min.session.timeout.ms=500");
    // Faster clean-up of transactions left open by killed producers.
    let _ = writeln!(
        p,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=2000"
    );
    let _ = writeln!(p, "log.cleaner.backoff.ms=1000");
    p
}

const LOG4J2: &str = "\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
";

fn java(libs: &Path, node_dir: &Path) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
    ])
    .arg(format!(
        "-Dlog4j2.configurationFile={}",
        node_dir.join("log4j2.properties").display()
    ))
    .arg(format!("-Dkafka.logs.dir={}", node_dir.display()))
    .arg("-cp")
    .arg(format!("{}/*", libs.display()));
    cmd
}

/// A random cluster id: 16 bytes, URL-safe base64 without padding, as Kafka's `random-uuid` prints.
fn cluster_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| e.to_string())?;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    Ok(out)
}

fn kill_children(children: &mut [Child]) {
    for child in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn log_tail(node_dir: &Path) -> String {
    let mut text = String::new();
    for name in ["stdout.log", "server.log"] {
        if let Ok(content) = std::fs::read_to_string(node_dir.join(name)) {
            let lines: Vec<&str> = content.lines().collect();
            let start = lines.len().saturating_sub(15);
            let _ = writeln!(
                text,
                "--- {} (last lines) ---\n{}",
                node_dir.join(name).display(),
                lines[start..].join("\n")
            );
        }
    }
    text
}

/// Starts a fresh cluster of `brokers` nodes and returns its (plaintext) bootstrap address;
/// `secure`: with the TLS and SASL listeners and ACLs of `secure.rs` (one node only).
pub fn start(brokers: usize, secure: bool) -> Result<String, String> {
    if secure && brokers != 1 {
        return Err("kafka start --secure runs one node".into());
    }
    let libs = fetch()?;
    // A cluster left over from an interrupted run is stopped first: never two of ours at once.
    stop()?;
    let dir = run_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    let mut nodes = Vec::new();
    for id in 1..=brokers {
        nodes.push(Node {
            id,
            broker_port: free_port()?,
            controller_port: free_port()?,
            dir: dir.join(format!("node-{id}")),
        });
    }
    let voters: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
        .collect();
    let voters = voters.join(",");
    let cluster = cluster_id()?;
    let secure = if secure {
        Some(crate::secure::prepare(&dir)?)
    } else {
        None
    };

    for node in &nodes {
        std::fs::create_dir_all(node.dir.join("data")).map_err(|e| e.to_string())?;
        std::fs::write(
            node.dir.join("server.properties"),
            server_properties(node, &voters, brokers, secure.as_ref()),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(node.dir.join("log4j2.properties"), LOG4J2).map_err(|e| e.to_string())?;
        let out = java(&libs, &node.dir)
            .args(["kafka.tools.StorageTool", "format", "--cluster-id", &cluster, "--config"])
            .arg(node.dir.join("server.properties"))
            .output()
            .map_err(|e| format!("could not run java: {e}; install Java 17+ (apt-get install openjdk-17-jre-headless)"))?;
        if !out.status.success() {
            return Err(format!(
                "formatting KRaft storage for node {} failed:\n{}{}",
                node.id,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    let started = Instant::now();
    let mut children = Vec::new();
    for node in &nodes {
        let stdout =
            std::fs::File::create(node.dir.join("stdout.log")).map_err(|e| e.to_string())?;
        let stderr = stdout.try_clone().map_err(|e| e.to_string())?;
        let child = java(&libs, &node.dir)
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group: a Ctrl-C meant for a test run does not tear the broker down
            // half-way; `kafka stop` does it properly.
            .process_group(0)
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => {
                kill_children(&mut children);
                return Err(format!("could not start java: {e}"));
            }
        }
    }
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    std::fs::write(dir.join("pids"), pids.join("\n")).map_err(|e| e.to_string())?;

    let bootstrap: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.broker_port))
        .collect();
    let bootstrap = bootstrap.join(",");
    let first: SocketAddr = format!("127.0.0.1:{}", nodes[0].broker_port)
        .parse()
        .unwrap();
    loop {
        for (node, child) in nodes.iter().zip(children.iter_mut()) {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&node.dir);
                let hint = if tail.contains("Address already in use") {
                    "a port it was given was taken meanwhile (port clash): run `cargo xtask kafka start` again"
                } else {
                    "see the log lines below"
                };
                kill_children(&mut children);
                let _ = std::fs::remove_file(dir.join("pids"));
                return Err(format!(
                    "Kafka node {} exited during start-up ({status}): {hint}\n{tail}",
                    node.id
                ));
            }
        }
        let ready = nodes.iter().all(|n| {
            let addr: SocketAddr = format!("127.0.0.1:{}", n.broker_port).parse().unwrap();
            matches!(wire::metadata(addr, Duration::from_secs(2)), Ok(v) if v.brokers == brokers && v.controller_id >= 0)
        });
        if ready {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            let tail = log_tail(&nodes[0].dir);
            kill_children(&mut children);
            let _ = std::fs::remove_file(dir.join("pids"));
            return Err(format!(
                "Kafka did not serve metadata on {first} within {}s; the machine may be overloaded, or Java too old (17+ needed)\n{tail}",
                START_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(s) = &secure {
        if let Err(e) = s.set_up(&libs, &bootstrap) {
            kill_children(&mut children);
            let _ = std::fs::remove_file(dir.join("pids"));
            return Err(e);
        }
    }
    std::fs::write(dir.join("bootstrap"), &bootstrap).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: Kafka {} ({brokers} node(s)) ready in {:.1}s",
        version(),
        started.elapsed().as_secs_f64()
    );
    println!("{bootstrap}");
    Ok(bootstrap)
}

fn alive(pid: &str) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: &str, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, pid])
        .stderr(Stdio::null())
        .status();
}

/// Stops the cluster started from this workspace: SIGTERM, then SIGKILL after a timeout.
pub fn stop() -> Result<(), String> {
    let pids_file = run_dir().join("pids");
    let Ok(content) = std::fs::read_to_string(&pids_file) else {
        return Ok(());
    };
    let pids: Vec<&str> = content.lines().filter(|l| !l.trim().is_empty()).collect();
    for pid in &pids {
        if alive(pid) {
            signal(pid, "-TERM");
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in &pids {
        if alive(pid) {
            eprintln!(
                "xtask: Kafka process {pid} ignored SIGTERM for {}s; killing it",
                STOP_TIMEOUT.as_secs()
            );
            signal(pid, "-KILL");
        }
    }
    let _ = std::fs::remove_file(&pids_file);
    let _ = std::fs::remove_file(run_dir().join("bootstrap"));
    eprintln!("xtask: Kafka stopped");
    Ok(())
}

pub fn status() -> Result<(), String> {
    let dir = run_dir();
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    let live: Vec<&str> = pids.lines().filter(|p| alive(p)).collect();
    let bootstrap = std::fs::read_to_string(dir.join("bootstrap")).unwrap_or_default();
    if live.is_empty() {
        println!("not running");
        return Err("no Kafka started by `cargo xtask kafka start` is running".into());
    }
    let first = bootstrap.split(',').next().unwrap_or_default();
    let view = first
        .parse::<SocketAddr>()
        .ok()
        .and_then(|a| wire::metadata(a, Duration::from_secs(2)).ok());
    match view {
        Some(v) => {
            println!(
                "running: pids {}; bootstrap {bootstrap}; {} broker(s), controller {}",
                live.join(" "),
                v.brokers,
                v.controller_id
            );
            Ok(())
        }
        None => Err(format!(
            "processes {} are alive but {first} does not answer metadata requests",
            live.join(" ")
        )),
    }
}
