//! Bouncing a broker of a cluster the drill owns (started by `cargo xtask kafka start`, whose run
//! directory holds `bootstrap` and `pids`). A broker is identified by reading its process (command
//! line, working directory, environment, where its output goes) before it is killed, then started
//! again exactly so; the `pids` file is updated so that `cargo xtask kafka stop` still stops it.

use anyhow::{bail, Context as _};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker as read from /proc.
#[derive(Debug, Clone)]
pub struct Broker {
    pub pid: i32,
    pub node_id: i32,
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    output: Option<PathBuf>,
    /// The broker's own client address (`host:port` of its PLAINTEXT listener).
    pub address: Option<String>,
}

fn split_nul(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; only its parent's wait is missing.
        Ok(stat) => !stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn read_broker(pid: i32) -> anyhow::Result<Broker> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let argv = split_nul(
        std::fs::read(proc.join("cmdline")).with_context(|| format!("reading process {pid}"))?,
    );
    anyhow::ensure!(
        argv.iter().any(|a| a == "kafka.Kafka"),
        "process {pid} is not a Kafka broker (its command line has no kafka.Kafka): the pids file is stale"
    );
    let cwd = std::fs::read_link(proc.join("cwd"))?;
    let env = split_nul(std::fs::read(proc.join("environ"))?)
        .into_iter()
        .filter_map(|kv| {
            let s = kv.into_vec();
            let at = s.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(s[..at].to_vec()),
                OsString::from_vec(s[at + 1..].to_vec()),
            ))
        })
        .collect();
    let output = std::fs::read_link(proc.join("fd/1"))
        .ok()
        .filter(|p| p.is_absolute() && p.exists());
    // The last argument is the broker's server.properties; its node.id names the broker.
    let props = argv
        .iter()
        .rev()
        .map(PathBuf::from)
        .find(|a| a.extension().is_some_and(|e| e == "properties"))
        .map(|p| if p.is_absolute() { p } else { cwd.join(p) })
        .with_context(|| format!("process {pid}: no server.properties in its command line"))?;
    let text =
        std::fs::read_to_string(&props).with_context(|| format!("reading {}", props.display()))?;
    let node_id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("node.id="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{}: no node.id", props.display()))?;
    let listeners = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("advertised.listeners=")
            .or_else(|| l.trim().strip_prefix("listeners="))
    });
    let address = listeners.and_then(|ls| {
        ls.split(',')
            .find_map(|l| l.trim().strip_prefix("PLAINTEXT://"))
            .map(str::to_string)
    });
    Ok(Broker {
        pid,
        node_id,
        argv,
        cwd,
        env,
        output,
        address,
    })
}

fn pids(kafka_dir: &Path) -> anyhow::Result<Vec<i32>> {
    let file = kafka_dir.join("pids");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {}: broker_restart needs a cluster started by `cargo xtask kafka start`",
            file.display()
        )
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Every live broker of the cluster in `kafka_dir`.
pub fn list(kafka_dir: &Path) -> anyhow::Result<Vec<Broker>> {
    pids(kafka_dir)?
        .into_iter()
        .filter(|p| alive(*p))
        .map(read_broker)
        .collect()
}

/// The broker whose process has run longest: restarting the oldest each time is a rolling restart
/// of every broker in turn.
pub fn oldest(kafka_dir: &Path) -> anyhow::Result<Broker> {
    list(kafka_dir)?
        .into_iter()
        .min_by_key(|b| (start_ticks(b.pid), b.pid))
        .context("no live broker")
}

/// When the process started, in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit(") ").next()?.to_string();
            // `rest` starts at field 3 (state); starttime is field 22.
            rest.split_whitespace().nth(19)?.parse().ok()
        })
        .unwrap_or(u64::MAX)
}

/// The broker with this node id.
pub fn find(kafka_dir: &Path, node_id: i32) -> anyhow::Result<Broker> {
    let all = list(kafka_dir)?;
    let ids: Vec<i32> = all.iter().map(|b| b.node_id).collect();
    all.into_iter()
        .find(|b| b.node_id == node_id)
        .with_context(|| format!("no live broker with node id {node_id} (live: {ids:?})"))
}

/// Signals the broker and waits until its process is gone (a SIGTERM that takes over a minute is
/// followed by SIGKILL).
pub fn kill(b: &Broker, term: bool) -> anyhow::Result<()> {
    // Read again right before the signal: never signal a pid that was reused by another process.
    let now = read_broker(b.pid)?;
    anyhow::ensure!(
        now.node_id == b.node_id,
        "process {} is no longer broker {}",
        b.pid,
        b.node_id
    );
    let sig = if term { libc::SIGTERM } else { libc::SIGKILL };
    // SAFETY: a signal to a broker process we just identified.
    unsafe { libc::kill(b.pid, sig) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(b.pid) {
        if Instant::now() > deadline {
            if !term {
                bail!("broker {} (pid {}) survived SIGKILL", b.node_id, b.pid);
            }
            // SAFETY: as above.
            unsafe { libc::kill(b.pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the broker again as it was started before, in its own process group (it outlives the
/// drill), and puts the new pid in place of the old one in the `pids` file.
pub fn restart(kafka_dir: &Path, b: &Broker) -> anyhow::Result<Child> {
    let (program, args) = b.argv.split_first().context("empty command line")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&b.cwd)
        .env_clear()
        .envs(b.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    match &b.output {
        Some(path) => {
            let out = std::fs::OpenOptions::new().append(true).open(path)?;
            cmd.stdout(out.try_clone()?).stderr(out);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting broker {} again", b.node_id))?;
    let file = kafka_dir.join("pids");
    let text = std::fs::read_to_string(&file)?;
    let updated: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim().parse() == Ok(b.pid) {
                child.id().to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let tmp = kafka_dir.join("pids.tmp");
    std::fs::write(&tmp, updated.join("\n"))?;
    std::fs::rename(&tmp, &file)?;
    Ok(child)
}
