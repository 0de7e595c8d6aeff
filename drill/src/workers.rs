//! The drill's workers: real `weir run` processes, one per slot. A slot keeps its state directory,
//! its log file and (with static membership) its instance id across restarts, as a machine would.

use crate::probe::{free_port, http_get, Patience};
use anyhow::Context as _;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the monitor finds a slot's `/metrics` (None while the process is down or paused).
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub http: Option<String>,
    /// Stopped with SIGSTOP: it would not answer.
    pub paused: bool,
    pub log: PathBuf,
}

pub type Endpoints = Arc<Mutex<Vec<Endpoint>>>;

/// How every worker process is started.
pub struct Launch {
    pub bin: PathBuf,
    pub job: PathBuf,
    pub bootstrap: String,
    pub root: PathBuf,
    pub job_name: String,
    pub env: Vec<(String, String)>,
    pub static_membership: bool,
}

struct Slot {
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

/// A worker process that ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exit {
    pub worker: usize,
    pub code: Option<i32>,
    /// Ended by the drill (kill, stop, the end of the drill) rather than on its own.
    pub expected: bool,
    pub at_s: f64,
}

pub struct Workers {
    launch: Launch,
    slots: Vec<Slot>,
    pub endpoints: Endpoints,
    pub exits: Vec<Exit>,
    t0: Instant,
}

impl Workers {
    pub fn new(launch: Launch, t0: Instant) -> Workers {
        Workers {
            launch,
            slots: Vec::new(),
            endpoints: Arc::new(Mutex::new(Vec::new())),
            exits: Vec::new(),
            t0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn state_dir(&self, slot: usize) -> PathBuf {
        self.launch.root.join(format!("w{slot}"))
    }

    pub fn log_path(&self, slot: usize) -> PathBuf {
        self.launch.root.join(format!("w{slot}.log"))
    }

    pub fn running(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.child.is_some())
    }

    pub fn paused(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.paused)
    }

    pub fn live_count(&self) -> usize {
        self.slots.iter().filter(|s| s.child.is_some()).count()
    }

    /// Exit times count from `t0` (the first input record).
    pub fn set_t0(&mut self, t0: Instant) {
        self.t0 = t0;
    }

    fn since_t0(&self) -> f64 {
        super::monitor::signed_secs(self.t0, Instant::now())
    }

    /// Adds a slot and starts its worker; returns the slot number.
    pub fn add(&mut self) -> anyhow::Result<usize> {
        self.slots.push(Slot {
            child: None,
            paused: false,
            starts: 0,
        });
        let slot = self.slots.len() - 1;
        self.endpoints.lock().unwrap().push(Endpoint {
            http: None,
            paused: false,
            log: self.log_path(slot),
        });
        self.start(slot)?;
        Ok(slot)
    }

    /// Starts the slot's worker (again).
    pub fn start(&mut self, slot: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.running(slot),
            "worker {slot} is already running: kill or stop it first"
        );
        let http = format!("127.0.0.1:{}", free_port()?);
        let state_dir = self.state_dir(slot);
        let log_path = self.log_path(slot);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let n = self.slots[slot].starts + 1;
        writeln!(log, "--- drill: start {n} of worker {slot} ---")?;
        let l = &self.launch;
        let mut cmd = Command::new(&l.bin);
        cmd.arg("run")
            .arg(&l.job)
            .args(["--brokers", &l.bootstrap, "--http", &http])
            .arg("--state-dir")
            .arg(&state_dir);
        if l.static_membership {
            cmd.args(["--instance-id", &format!("w{slot}")]);
        }
        cmd.env("WEIR_LOG", "info,librdkafka=warn")
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl only, between fork and exec. A drill that dies takes its workers with it
        // (every worker is spawned by the drill's main thread, which lives as long as the drill).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", l.bin.display()))?;
        let s = &mut self.slots[slot];
        s.child = Some(child);
        s.paused = false;
        s.starts = n;
        self.endpoints.lock().unwrap()[slot].http = Some(http);
        Ok(())
    }

    /// Waits until the slot's worker answers `/livez` (it has started its HTTP endpoint).
    pub fn await_live(&mut self, slot: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let http = self.endpoints.lock().unwrap()[slot].http.clone();
            if let Some(h) = http {
                if http_get(&h, "/livez", Patience::BRIEF).is_some() {
                    return Ok(());
                }
            }
            self.reap();
            anyhow::ensure!(
                self.running(slot),
                "worker {slot} exited during start-up; see {}",
                self.log_path(slot).display()
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "worker {slot} did not serve /livez within {timeout:?}; see {}",
                self.log_path(slot).display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self, slot: usize) -> Option<String> {
        let http = self.endpoints.lock().unwrap()[slot].http.clone()?;
        http_get(&http, "/metrics", Patience::BRIEF).map(|(_, b)| b)
    }

    fn pid(&self, slot: usize) -> Option<i32> {
        self.slots[slot].child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, slot: usize, sig: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .pid(slot)
            .with_context(|| format!("worker {slot} is not running"))?;
        // SAFETY: a signal to our own child, which is not reaped yet (so the pid is still ours).
        unsafe { libc::kill(pid, sig) };
        Ok(())
    }

    fn ended(&mut self, slot: usize, code: Option<i32>, expected: bool) {
        self.slots[slot].child = None;
        self.slots[slot].paused = false;
        let mut e = self.endpoints.lock().unwrap();
        e[slot].http = None;
        e[slot].paused = false;
        drop(e);
        let at_s = self.since_t0();
        self.exits.push(Exit {
            worker: slot,
            code,
            expected,
            at_s,
        });
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, slot: usize) -> anyhow::Result<()> {
        self.signal(slot, libc::SIGKILL)?;
        let status = self.slots[slot].child.as_mut().expect("running").wait()?;
        self.ended(slot, status.code(), true);
        Ok(())
    }

    /// SIGTERM (the worker commits, checkpoints and leaves its group), then waits for the exit;
    /// SIGKILL after `timeout`. Returns the exit code.
    pub fn stop(&mut self, slot: usize, timeout: Duration) -> anyhow::Result<Option<i32>> {
        if self.slots[slot].paused {
            self.resume(slot)?;
        }
        self.signal(slot, libc::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.slots[slot].child.as_mut().expect("running");
            if let Some(status) = child.try_wait()? {
                self.ended(slot, status.code(), true);
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    "worker {slot} did not stop within {timeout:?} of SIGTERM; killing it"
                );
                self.kill(slot)?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pause(&mut self, slot: usize) -> anyhow::Result<()> {
        self.signal(slot, libc::SIGSTOP)?;
        self.slots[slot].paused = true;
        self.endpoints.lock().unwrap()[slot].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, slot: usize) -> anyhow::Result<()> {
        self.signal(slot, libc::SIGCONT)?;
        self.slots[slot].paused = false;
        self.endpoints.lock().unwrap()[slot].paused = false;
        Ok(())
    }

    /// Notes workers that ended on their own.
    pub fn reap(&mut self) -> Vec<usize> {
        let mut gone = Vec::new();
        for slot in 0..self.slots.len() {
            let status = match self.slots[slot].child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            self.ended(slot, status.code(), false);
            gone.push(slot);
        }
        gone
    }

    /// Stops every worker (SIGTERM, SIGKILL after `timeout`); true when all exited with 0.
    pub fn stop_all(&mut self, timeout: Duration) -> bool {
        self.reap();
        let live: Vec<usize> = (0..self.slots.len()).filter(|s| self.running(*s)).collect();
        for &slot in &live {
            if self.slots[slot].paused {
                let _ = self.resume(slot);
            }
            let _ = self.signal(slot, libc::SIGTERM);
        }
        let mut clean = true;
        for slot in live {
            match self.stop(slot, timeout) {
                Ok(Some(0)) => {}
                _ => clean = false,
            }
        }
        clean
    }

    /// Task directories of a slot: `<state_dir>/<job>/<partition>/`.
    pub fn task_dirs(&self, slot: usize) -> Vec<(i32, PathBuf)> {
        let root = self.state_dir(slot).join(&self.launch.job_name);
        let mut dirs: Vec<(i32, PathBuf)> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        dirs.sort();
        dirs
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Never leave a worker behind, whatever happened.
        for s in &mut self.slots {
            if let Some(c) = s.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Deterministic filler bytes for damaged files.
fn garbage(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] | 1)
        .collect()
}

/// Damages one task directory; returns what was done, for the report.
pub fn damage(dir: &Path, how: super::scenario::Damage) -> anyhow::Result<String> {
    use super::scenario::Damage;
    let checkpoint = dir.join("checkpoint");
    match how {
        Damage::DeleteCheckpoint => match std::fs::remove_file(&checkpoint) {
            Ok(()) => Ok("checkpoint deleted".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("no checkpoint".into()),
            Err(e) => Err(e).context(checkpoint.display().to_string()),
        },
        Damage::GarbleCheckpoint => {
            let len = std::fs::metadata(&checkpoint)
                .map(|m| m.len() as usize)
                .unwrap_or(64);
            std::fs::write(&checkpoint, garbage(len.max(16)))
                .with_context(|| checkpoint.display().to_string())?;
            Ok("checkpoint overwritten".into())
        }
        Damage::Rocksdb => {
            let db = dir.join("db");
            let mut damaged = 0;
            for e in std::fs::read_dir(&db)
                .with_context(|| db.display().to_string())?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("MANIFEST-") || name == "CURRENT" || name.ends_with(".sst") {
                    let len = e.metadata().map(|m| m.len() as usize).unwrap_or(0);
                    // Whole small files; the first 4 KiB of table files.
                    let mut f = std::fs::OpenOptions::new().write(true).open(e.path())?;
                    f.write_all(&garbage(len.clamp(16, 4096)))?;
                    f.sync_all()?;
                    damaged += 1;
                }
            }
            Ok(format!("{damaged} RocksDB files overwritten"))
        }
    }
}
