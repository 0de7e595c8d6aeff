//! Metrics and health endpoints: linted by promtool, scraped by a real Prometheus server, documented
//! truthfully, bounded in cardinality, and readiness that follows restores.

use crate::harness::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir_engine::generator::{GeneratorSpec, Reading};

const LONG: Duration = Duration::from_secs(120);

struct Run {
    b: String,
    name: String,
    input: String,
    output: String,
    dir: tempfile::TempDir,
}

fn run(prefix: &str) -> Run {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let name = unique(prefix);
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 4);
    kafka.create_topic(&output, 4);
    Run {
        b,
        name,
        input,
        output,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Run {
    fn job(&self) -> std::path::PathBuf {
        write_job(self.dir.path(), &self.name, &self.input, &self.output, &[])
    }
}

fn readings(meters: u32) -> Vec<Reading> {
    GeneratorSpec {
        meters,
        hours: 2,
        readings_per_hour: 4,
        ..Default::default()
    }
    .readings()
    .collect()
}

/// `# TYPE` lines of a `/metrics` body: name -> type.
fn exposed_types(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

/// The metric table of docs/metrics.md: name -> type.
fn documented_types() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(crate::harness::repo_root().join("docs/metrics.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `weir_") || l.starts_with("| `process_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect()
}

/// A worker that has done everything that creates series: assignment, processing, commits, a
/// restore, statistics.
fn busy_worker(r: &Run) -> Worker {
    produce_readings(&r.b, &r.input, &readings(50));
    let job = r.job();
    let state = r.dir.path().join("state");
    let w = Worker::start(&job, &r.b, &state);
    await_workers(LONG, "the input to be processed", &[&w], || {
        group_drained(&r.b, &r.name, &r.input)
    });
    assert_eq!(w.stop(), 0);
    std::fs::remove_dir_all(&state).unwrap();
    let w = Worker::start(&job, &r.b, &state);
    w.await_ready(LONG);
    // librdkafka statistics (consumer lag) arrive every 5 s.
    await_workers(LONG, "consumer lag statistics", &[&w], || {
        w.metrics().contains("weir_consumer_lag_records{")
    });
    w
}

#[test]
fn real_metrics_pass_promtool_and_match_the_documentation() {
    let r = run("promtool");
    let w = busy_worker(&r);
    let body = w.metrics();
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    std::io::Write::write_all(lint.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let exposed = exposed_types(&body);
    let documented = documented_types();
    assert_eq!(
        exposed, documented,
        "docs/metrics.md and a live /metrics disagree"
    );
    for line in body.lines().filter(|l| l.starts_with("weir_")) {
        assert!(
            line.contains(&format!("job=\"{}\"", r.name)),
            "every series names its job: {line}"
        );
        let labels = line
            .split('{')
            .nth(1)
            .and_then(|l| l.split('}').next())
            .unwrap_or("");
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            let key = label.split('=').next().unwrap();
            assert!(
                ["job", "partition", "le"].contains(&key),
                "label {key} is not allowed: {line}"
            );
        }
    }
    assert_eq!(w.stop(), 0);
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_that_exist() {
    let path = crate::harness::repo_root().join("deploy/grafana/weir.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        out.push(v.as_str().unwrap().to_string());
                    } else {
                        collect(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 6,
        "throughput, lag, restore, commit latency, task states, memory"
    );
    let documented = documented_types();
    let mut used = BTreeSet::new();
    for e in &exprs {
        for (i, _) in e.match_indices("weir_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| documented.get(*b).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&name)
                .to_string();
            assert!(
                documented.contains_key(&base),
                "the dashboard uses {name}, which weir does not export"
            );
            used.insert(base);
        }
    }
    for needed in [
        "weir_records_consumed_total",
        "weir_consumer_lag_records",
        "weir_restore_records_remaining",
        "weir_commit_duration_seconds",
        "weir_task_state",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn real_the_number_of_series_does_not_grow_with_the_number_of_meters() {
    let r = run("cardinality");
    let w = Worker::start(&r.job(), &r.b, &r.dir.path().join("state"));
    let series = |w: &Worker| {
        w.metrics()
            .lines()
            .filter(|l| l.starts_with("weir_"))
            .count()
    };
    produce_readings(&r.b, &r.input, &readings(10));
    await_workers(LONG, "10 meters processed", &[&w], || {
        group_drained(&r.b, &r.name, &r.input)
    });
    await_workers(LONG, "consumer lag statistics", &[&w], || {
        w.metrics().contains("weir_consumer_lag_records{")
    });
    let with_10 = series(&w);
    let many: Vec<Reading> = GeneratorSpec {
        meters: 10_000,
        hours: 2,
        readings_per_hour: 2,
        start_ms: GeneratorSpec::default().start_ms + 7_200_000,
        ..Default::default()
    }
    .readings()
    .collect();
    produce_readings(&r.b, &r.input, &many);
    await_workers(LONG, "10,000 meters processed", &[&w], || {
        group_drained(&r.b, &r.name, &r.input)
    });
    assert_eq!(series(&w), with_10, "series with 10 meters vs with 10,000");
    assert_eq!(w.stop(), 0);
}

#[test]
fn real_readiness_is_503_while_restoring_and_200_once_running() {
    let r = run("readyz");
    let state = r.dir.path().join("state");
    produce_readings(
        &r.b,
        &r.input,
        &GeneratorSpec {
            meters: 50_000,
            hours: 1,
            readings_per_hour: 1,
            ..Default::default()
        }
        .readings()
        .collect::<Vec<_>>(),
    );
    let w = Worker::start(&r.job(), &r.b, &state);
    await_workers(LONG, "the input to be processed", &[&w], || {
        group_drained(&r.b, &r.name, &r.input)
    });
    assert_eq!(w.stop(), 0);
    std::fs::remove_dir_all(&state).unwrap();

    let w = Worker::start(&r.job(), &r.b, &state);
    let mut saw_restoring = false;
    let deadline = std::time::Instant::now() + LONG;
    loop {
        match http_get(&w.http, "/readyz") {
            Some((503, body)) if body.contains("restoring") => saw_restoring = true,
            Some((200, _)) => break,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready:\n{}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(saw_restoring, "/readyz answered 503 (restoring) before 200");
    assert!(metric_sum(&w.metrics(), "weir_restore_records_total") >= 50_000.0);
    assert_eq!(w.stop(), 0);
}

/// A Prometheus server on 127.0.0.1, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, target: &str) -> Prometheus {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weir\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    let p = Prometheus { child, addr };
    let a = p.addr.clone();
    await_until(LONG, "Prometheus to be ready", || {
        matches!(http_get(&a, "/-/ready"), Some((200, _)))
    });
    p
}

fn query(p: &Prometheus, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (status, body) = http_get(&p.addr, &format!("/api/v1/query?query={encoded}"))?;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].get(0)?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn real_prometheus_scrapes_a_worker_and_counts_every_record_and_the_restore() {
    let r = run("prom");
    let state = r.dir.path().join("state");
    let input = readings(40);
    produce_readings(&r.b, &r.input, &input);
    let w = Worker::start(&r.job(), &r.b, &state);
    let prom = start_prometheus(r.dir.path(), &w.http);
    await_workers(LONG, "the input to be processed", &[&w], || {
        group_drained(&r.b, &r.name, &r.input)
    });
    let consumed = format!("sum(weir_records_consumed_total{{job=\"{}\"}})", r.name);
    await_until(LONG, "Prometheus to see every record", || {
        query(&prom, &consumed) == Some(input.len() as f64)
    });
    assert_eq!(w.stop(), 0);
    drop(prom);

    // A full restore, seen through Prometheus.
    std::fs::remove_dir_all(&state).unwrap();
    let changelog_records: i64 = (0..4)
        .map(|p| end_offset(&r.b, &format!("{}-hourly_avg-changelog", r.name), p))
        .sum();
    let w = Worker::start(&r.job(), &r.b, &state);
    let prom = start_prometheus(&r.dir.path().join("second"), &w.http);
    let restored = format!("sum(weir_restore_records_total{{job=\"{}\"}})", r.name);
    await_until(LONG, "Prometheus to see the restore", || {
        query(&prom, &restored) == Some(changelog_records as f64)
    });
    assert_eq!(
        query(
            &prom,
            &format!("sum(weir_restore_records_remaining{{job=\"{}\"}})", r.name)
        ),
        Some(0.0)
    );
    assert_eq!(w.stop(), 0);
}
