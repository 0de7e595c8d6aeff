//! How each runner is started: weir's job file and command line, the bare consumer, the Kafka
//! Streams peer, and the restarts that measure restores.

use super::*;

/// The flagship job with this run's name, topics and guarantee.
pub(crate) fn job_file(
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

pub(crate) fn weir_command(a: &Args, job: &Path, state: &Path, http: Option<u16>) -> Command {
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

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub(crate) fn ready(port: u16) -> bool {
    scrape::http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
}

/// This program as the bare consumer of `topic`, stopping after `expect` records.
pub(crate) fn bare_command(a: &Args, me: &Path, topic: &str, expect: u64) -> Command {
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

pub(crate) fn kafka_streams_command(
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
pub(crate) fn kafka_streams_time_to_running(
    a: &Args,
    mut c: Command,
    what: &str,
) -> anyhow::Result<Value> {
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
pub(crate) fn time_to_ready(
    a: &Args,
    job: &Path,
    state: &Path,
    what: &str,
) -> anyhow::Result<Value> {
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
