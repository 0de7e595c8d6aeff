//! Readiness: a worker is ready when it has joined its group and every task it owns is running.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Health {
    inner: Mutex<HealthState>,
    /// When the worker's loop last turned (ms since `born`): liveness.
    beat_ms: AtomicU64,
    born: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Mutex::default(),
            beat_ms: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

/// A loop that has not turned for this long is stuck (a blocked write, a deadlock): `/livez` fails
/// so that an orchestrator restarts the process. Longer than any single step may take (a commit
/// waits at most 30 s for its flush; a restore batch and a rejoin pause are far shorter).
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

#[derive(Default)]
struct HealthState {
    joined: bool,
    /// Partition -> why it is not running (absent = running).
    not_running: BTreeMap<i32, String>,
    fatal: Option<String>,
    /// Why the worker gave up its tasks and is joining the group again (until an assignment
    /// succeeds).
    rejoining: Option<String>,
}

impl Health {
    /// The worker's loop turned.
    pub fn beat(&self) {
        self.beat_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// `Some(why)` when the loop has not turned for `STUCK_AFTER` (before the first beat, the
    /// process is starting and counts as live).
    pub fn stuck(&self) -> Option<String> {
        let last = self.beat_ms.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        let silent = self
            .born
            .elapsed()
            .saturating_sub(Duration::from_millis(last));
        (silent >= STUCK_AFTER)
            .then(|| format!("the worker loop has not turned for {}s", silent.as_secs()))
    }

    pub fn set_joined(&self) {
        self.inner.lock().unwrap().joined = true;
    }

    pub fn set_task(&self, partition: i32, not_running: Option<String>) {
        let mut s = self.inner.lock().unwrap();
        match not_running {
            Some(why) => s.not_running.insert(partition, why),
            None => s.not_running.remove(&partition),
        };
    }

    pub fn set_fatal(&self, why: String) {
        self.inner.lock().unwrap().fatal = Some(why);
    }

    pub fn set_rejoining(&self, why: Option<String>) {
        self.inner.lock().unwrap().rejoining = why;
    }

    pub fn clear_fatal(&self) {
        self.inner.lock().unwrap().fatal = None;
    }

    /// `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        let s = self.inner.lock().unwrap();
        if let Some(f) = &s.fatal {
            return Some(f.clone());
        }
        if let Some(r) = &s.rejoining {
            return Some(format!("rejoining the group: {r}"));
        }
        if !s.joined {
            return Some("not yet a member of the consumer group".into());
        }
        s.not_running
            .iter()
            .next()
            .map(|(p, why)| format!("partition {p}: {why}"))
    }
}
