//! Readiness: a worker is ready when it has joined its group and every task it owns is running.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Health {
    inner: Mutex<HealthState>,
}

#[derive(Default)]
struct HealthState {
    joined: bool,
    /// Partition -> why it is not running (absent = running).
    not_running: BTreeMap<i32, String>,
    fatal: Option<String>,
}

impl Health {
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

    pub fn clear_fatal(&self) {
        self.inner.lock().unwrap().fatal = None;
    }

    /// `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        let s = self.inner.lock().unwrap();
        if let Some(f) = &s.fatal {
            return Some(f.clone());
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
