//! A weir run's own account of where its time went, from its `/metrics` at the end of the run:
//! the commit cycles (how many, their total time, the share of the run they took), the
//! checkpoints inside them, and the time the poll loop spent handing records to tasks.

use serde_json::{json, Value};
use std::io::{Read, Write};

/// The body of `GET path` on 127.0.0.1:`port` (HTTP/1.1, connection closed), or `None`.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

/// The sum over every label set of the samples named exactly `name`.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Commit and checkpoint figures of a weir run that lasted `run_s` seconds.
pub(crate) fn engine_figures(text: &str, run_s: f64) -> Value {
    let commit_s = total(text, "weir_commit_duration_seconds_sum");
    let commits = total(text, "weir_commit_duration_seconds_count");
    let checkpoint_s = total(text, "weir_checkpoint_duration_seconds_sum");
    let r = super::round;
    json!({
        "commits": commits,
        "commit_s": r(commit_s),
        "commit_mean_ms": if commits > 0.0 { r(commit_s / commits * 1000.0) } else { 0.0 },
        "commit_share": if run_s > 0.0 { r(commit_s / run_s) } else { 0.0 },
        "checkpoint_s": r(checkpoint_s),
        "processing_s": r(total(text, "weir_processing_duration_seconds_sum")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_add_up_every_label_set_and_only_the_named_series() {
        let text = "# HELP weir_commit_duration_seconds x\n\
            weir_commit_duration_seconds_bucket{job=\"j\",le=\"0.1\"} 3\n\
            weir_commit_duration_seconds_sum{job=\"j\"} 0.5\n\
            weir_commit_duration_seconds_count{job=\"j\"} 4\n\
            weir_checkpoint_duration_seconds_sum{job=\"j\",partition=\"0\"} 0.25\n\
            weir_checkpoint_duration_seconds_sum{job=\"j\",partition=\"1\"} 0.5\n";
        let f = engine_figures(text, 10.0);
        assert_eq!(f["commits"], 4.0);
        assert_eq!(f["commit_s"], 0.5);
        assert_eq!(f["commit_mean_ms"], 125.0);
        assert_eq!(f["commit_share"], 0.05);
        assert_eq!(f["checkpoint_s"], 0.75);
        assert_eq!(f["processing_s"], 0.0);
    }
}
