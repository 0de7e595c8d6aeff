//! A runner as a child process: its CPU time, peak memory, threads and open files from /proc,
//! reaping and stopping it.

use super::*;

/// CPU seconds (user + system) of a live process.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
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
pub(crate) fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Threads and open file descriptors of a live process (0, 0 once it is gone).
pub(crate) fn threads_and_files(pid: u32) -> (u64, u64) {
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (threads, files)
}

/// A child that exited: its exit status and CPU seconds.
pub(crate) struct Exited {
    pub(crate) success: bool,
    pub(crate) cpu_s: f64,
}

/// Reaps `pid` if it has exited (without blocking).
pub(crate) fn reaped(pid: u32) -> Option<Exited> {
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
pub(crate) fn stop(child: Child) -> Exited {
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
