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

/// A loop that has not turned for this long is stuck (a blocked write, a deadlock, a Kafka call
/// that ignores its timeout): `/livez` fails, and `weir run` exits (code 3) so that the process
/// is restarted. Longer than any single step may take: every wait on Kafka beats at least every
/// 5 s, an abort waits at most 30 s, an assignment at most 60 s.
pub const STUCK_AFTER: Duration = Duration::from_secs(90);

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

    /// `None` when ready. The reason is what `/readyz` shows to anyone who can reach the port:
    /// without the job's secrets, then one line of at most [`REASON_MAX_CHARS`] characters (see
    /// [`bounded`]). Redacted first, so that a cut never leaves part of a secret behind.
    pub fn not_ready_reason(&self) -> Option<String> {
        let s = self.inner.lock().unwrap();
        let why = if let Some(f) = &s.fatal {
            f.clone()
        } else if let Some(r) = &s.rejoining {
            format!("rejoining the group: {r}")
        } else if !s.joined {
            "not yet a member of the consumer group".into()
        } else {
            let (p, why) = s.not_running.iter().next()?;
            format!("partition {p}: {why}")
        };
        Some(bounded(&crate::secrets::redact(&why)))
    }
}

/// Longest reason `/readyz` shows, in characters.
pub const REASON_MAX_CHARS: usize = 256;

/// A reason as `/readyz` shows it. Reasons are written by the worker, and some quote what they
/// failed on: a bad record's decode error quotes a field's value, an undecodable changelog entry
/// shows an example key, an error chain says whatever its source said. The worker's log has them
/// whole; the endpoint gets at most [`REASON_MAX_CHARS`] characters on one line, control
/// characters escaped, so that a record cannot put an arbitrary amount of its content (nor
/// extra lines) in a probe's answer.
pub fn bounded(why: &str) -> String {
    weir_operators::excerpt::excerpt(why, REASON_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        let h = Health::default();
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("not yet a member of the consumer group")
        );
        h.set_joined();
        assert_eq!(h.not_ready_reason(), None);
        h.set_task(3, Some("restoring".into()));
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("partition 3: restoring")
        );

        let value = "x".repeat(100_000);
        h.set_task(
            3,
            Some(format!(
                "failed: bad record at in[3]@7: column 2 is not a number: {value:?}\nsecond line"
            )),
        );
        let why = h.not_ready_reason().unwrap();
        assert!(why.starts_with("partition 3: failed: bad record at in[3]@7: column 2"));
        assert!(why.ends_with(" more bytes]"), "{why}");
        assert!(why.chars().count() <= REASON_MAX_CHARS + 32, "{why}");
        assert!(!why.contains('\n'));

        h.set_fatal("a\nb\u{7}c".into());
        assert_eq!(h.not_ready_reason().as_deref(), Some("a\\nb\\u{7}c"));
        h.clear_fatal();

        let job = weir_config::parse_job(
            "j.toml",
            "name = \"j\"\n[kafka.properties]\n\"sasl.password\" = \"hunter3-readyz\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n",
            &|_| None,
        )
        .unwrap();
        crate::secrets::register(&job);
        // The secret straddles the bound: redacted before the cut, no part of it is left.
        h.set_fatal(format!(
            "{} hunter3-readyz",
            "w".repeat(REASON_MAX_CHARS - 5)
        ));
        let why = h.not_ready_reason().unwrap();
        assert!(!why.contains("hun"), "{why}");
        h.clear_fatal();

        let exact = "é".repeat(REASON_MAX_CHARS);
        assert_eq!(bounded(&exact), exact);
        let over = format!("{exact}é");
        assert_eq!(bounded(&over), format!("{exact} [... 2 more bytes]"));
    }
}
