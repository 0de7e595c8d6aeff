//! Failpoints for crash tests: `WEIR_FAILPOINT=<name>[:<n>]` aborts the process (no clean-up, like
//! SIGKILL) the n-th time (default: the first) execution reaches the failpoint `name`. Unset, a
//! failpoint costs one relaxed atomic load. `drop_output[:n]` instead silently drops the n-th
//! result record (a deliberately broken run, for proving that verifiers fail). `hold_fetch:<s>`
//! stops fetching every partition for `s` seconds after the first record (a consumer cut off from
//! records that are there, as after an outage or a stall).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn configured() -> &'static Option<(String, u64)> {
    static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let value = std::env::var("WEIR_FAILPOINT").ok()?;
        let (name, n) = match value.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some((name, n.max(1)))
    })
}

/// True the n-th time execution reaches the failpoint `name` (and only then): for failpoints that
/// misbehave instead of aborting, such as `drop_output`, which loses one result record so that a
/// verifier can be shown to catch it.
pub fn fires(name: &str) -> bool {
    static HITS: AtomicU64 = AtomicU64::new(0);
    match configured() {
        Some((wanted, n)) if wanted == name => HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n,
        _ => false,
    }
}

/// Aborts the process if `name` is the configured failpoint and this is its n-th hit.
pub fn hit(name: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((wanted, n)) = configured() {
        if wanted == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}

/// The number given to failpoint `name` when it is the configured one (`WEIR_FAILPOINT=name:n`),
/// for failpoints that take a value rather than a hit count.
pub fn value(name: &str) -> Option<u64> {
    match configured() {
        Some((wanted, n)) if wanted == name => Some(*n),
        _ => None,
    }
}
