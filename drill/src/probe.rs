//! Asking a `weir run` process how it is: an HTTP GET of its endpoints (`/metrics`, `/livez`,
//! `/readyz`), and the numbers in a `/metrics` body. The drill's monitor and the integration tests
//! both read workers this way.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// How long [`http_get`] waits for a connection and then for the whole answer.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub connect: Duration,
    pub read: Duration,
}

impl Patience {
    /// For a sampling loop: a worker that does not answer at once counts as not answering.
    pub const BRIEF: Patience = Patience {
        connect: Duration::from_millis(300),
        read: Duration::from_millis(800),
    };
    /// For a test that wants the answer, even from a busy process.
    pub const PATIENT: Patience = Patience {
        connect: Duration::from_secs(5),
        read: Duration::from_secs(5),
    };
}

/// GET `path` from `addr` (`IP:PORT`); (status, body), or None when nothing answers in time.
pub fn http_get(addr: &str, path: &str, patience: Patience) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, patience.connect).ok()?;
    s.set_read_timeout(Some(patience.read)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a worker's `--http`).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sum of a metric's samples over all its label sets, from a `/metrics` body.
pub fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per-partition values of a metric (its samples with a `partition` label), from a `/metrics` body.
pub fn metric_by_partition(body: &str, name: &str) -> BTreeMap<i32, f64> {
    let prefix = format!("{name}{{");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let p = l
                .split("partition=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            Some((p, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Partition -> task state (`weir_task_state`: 2 is running), from a `/metrics` body.
pub fn task_states(body: &str) -> BTreeMap<i32, i64> {
    metric_by_partition(body, "weir_task_state")
        .into_iter()
        .map(|(p, v)| (p, v as i64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP x\n# TYPE weir_tasks gauge\nweir_task_state{job=\"j\",partition=\"0\"} 2\nweir_task_state{job=\"j\",partition=\"5\"} 1\nweir_tasks{job=\"j\"} 2\nweir_tasks_other 7\n";

    #[test]
    fn task_states_come_per_partition() {
        let s = task_states(BODY);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), [(0, 2), (5, 1)]);
    }

    #[test]
    fn a_sum_counts_only_the_metric_named() {
        assert_eq!(metric_sum(BODY, "weir_tasks"), 2.0);
        assert_eq!(metric_sum(BODY, "weir_task_state"), 3.0);
        assert_eq!(metric_sum(BODY, "weir_missing"), 0.0);
    }

    #[test]
    fn nothing_listening_is_none() {
        let port = free_port().unwrap();
        let addr = format!("127.0.0.1:{port}");
        assert_eq!(http_get(&addr, "/livez", Patience::BRIEF), None);
    }
}
