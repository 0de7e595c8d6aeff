//! The monitor thread: every ~250 ms, the input's end offsets and the group's committed offsets
//! (lag, and when each partition commits again after a fault), the output's end offsets (output
//! rate), each worker's tasks from its `/metrics`, and the workers' new log lines (finished
//! restores).

use super::cluster::Probe;
use crate::probe::{http_get, metric_sum, task_states, Patience};
use crate::workers::Endpoints;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const INTERVAL: Duration = Duration::from_millis(250);

/// What one worker said at one sample.
#[derive(Debug, Clone, Default)]
pub struct WorkerView {
    /// Partition -> task state (2 = running).
    pub tasks: BTreeMap<i32, i64>,
    /// The process's `process_resident_memory_bytes`, `process_open_fds` and
    /// `process_start_time_seconds` (which tells a restarted process from the one before).
    pub rss: i64,
    pub fds: i64,
    pub started: i64,
    /// `weir_rocksdb_block_cache_bytes`: the stores' shared block cache, memtables included (they
    /// are charged to it). Bounded by `runtime.block_cache_bytes`.
    pub cache: i64,
}

impl WorkerView {
    pub fn all_running(&self) -> bool {
        !self.tasks.is_empty() && self.tasks.values().all(|s| *s == 2)
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the timeline started.
    pub t: f64,
    pub input_end: Vec<i64>,
    pub committed: Vec<i64>,
    pub output_end: i64,
    /// Per worker slot; None when it did not answer.
    pub workers: Vec<Option<WorkerView>>,
}

impl Sample {
    pub fn lag(&self) -> i64 {
        self.input_end
            .iter()
            .zip(&self.committed)
            .map(|(e, c)| (e - c).max(0))
            .sum()
    }
}

/// A `restored; task running` log line.
#[derive(Debug, Clone)]
pub struct Restore {
    pub t: f64,
    pub partition: i32,
    pub records: u64,
    pub seconds: f64,
}

#[derive(Default)]
pub struct Data {
    pub samples: Vec<Sample>,
    pub restores: Vec<Restore>,
    /// Last partitions each worker reported owning (kept while it cannot answer, e.g. paused).
    pub owned: Vec<Vec<i32>>,
    /// Times a worker found a task's local state untrusted or unreadable and rebuilt it.
    pub wipes: Vec<(f64, i32)>,
    /// The workers' own ERROR lines (not librdkafka's connection noise), for the report.
    pub errors: Vec<(usize, String)>,
}

pub struct Monitor {
    pub data: Arc<Mutex<Data>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

pub fn signed_secs(t0: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64() - t0.saturating_duration_since(at).as_secs_f64()
}

/// Parses `key=value` (or `key="value"`) from a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

pub fn parse_restore(line: &str) -> Option<(i32, u64, f64)> {
    if !line.contains("restored; task running") {
        return None;
    }
    Some((
        field(line, "partition")?.parse().ok()?,
        field(line, "records")?.parse().ok()?,
        field(line, "seconds")?.parse().ok()?,
    ))
}

/// The partition of a log line saying local state was wiped or could not be opened.
pub fn parse_wipe(line: &str) -> Option<i32> {
    if !(line.contains("local store cannot be opened") || line.contains("wiped, restoring all of"))
    {
        return None;
    }
    field(line, "partition")?.parse().ok()
}

pub struct Watch {
    pub bootstrap: String,
    pub group: String,
    pub input: String,
    pub output: String,
    pub partitions: u32,
    pub endpoints: Endpoints,
    pub t0: Instant,
}

impl Monitor {
    pub fn start(w: Watch) -> anyhow::Result<Monitor> {
        let data = Arc::new(Mutex::new(Data::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let probe = Probe::new(&w.bootstrap, Some(&w.group))?;
        let (d, s) = (data.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("drill-monitor".into())
            .spawn(move || run(w, probe, d, s))?;
        Ok(Monitor {
            data,
            stop,
            handle: Some(handle),
        })
    }

    pub fn last(&self) -> Option<Sample> {
        self.data.lock().unwrap().samples.last().cloned()
    }

    pub fn owned(&self, worker: usize) -> Vec<i32> {
        self.data
            .lock()
            .unwrap()
            .owned
            .get(worker)
            .cloned()
            .unwrap_or_default()
    }

    pub fn finish(mut self) -> Data {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.data.lock().unwrap())
    }
}

fn run(w: Watch, probe: Probe, data: Arc<Mutex<Data>>, stop: Arc<AtomicBool>) {
    let mut log_offsets: Vec<u64> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut last: Option<Sample> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let endpoints = w.endpoints.lock().unwrap().clone();
        // Kafka: keep the previous values of whatever did not answer (a broker is away).
        let input_end = probe
            .end_offsets(&w.input, w.partitions)
            .or_else(|| last.as_ref().map(|s| s.input_end.clone()))
            .unwrap_or_else(|| vec![0; w.partitions as usize]);
        let committed = probe
            .committed_offsets(&w.input, w.partitions)
            .or_else(|| last.as_ref().map(|s| s.committed.clone()))
            .unwrap_or_else(|| vec![0; w.partitions as usize]);
        let output_end = probe
            .end_offsets(&w.output, w.partitions)
            .map(|v| v.iter().sum())
            .or_else(|| last.as_ref().map(|s| s.output_end))
            .unwrap_or(0);
        let workers: Vec<Option<WorkerView>> = endpoints
            .iter()
            .map(|e| {
                if e.paused {
                    return None;
                }
                let body = http_get(e.http.as_ref()?, "/metrics", Patience::BRIEF)?.1;
                Some(WorkerView {
                    tasks: task_states(&body),
                    rss: metric_sum(&body, "process_resident_memory_bytes") as i64,
                    fds: metric_sum(&body, "process_open_fds") as i64,
                    started: metric_sum(&body, "process_start_time_seconds") as i64,
                    cache: metric_sum(&body, "weir_rocksdb_block_cache_bytes") as i64,
                })
            })
            .collect();
        // New log lines.
        log_offsets.resize(endpoints.len(), 0);
        partial.resize(endpoints.len(), String::new());
        let mut lines = Vec::new();
        for (slot, e) in endpoints.iter().enumerate() {
            let Ok(mut f) = std::fs::File::open(&e.log) else {
                continue;
            };
            if f.seek(SeekFrom::Start(log_offsets[slot])).is_err() {
                continue;
            }
            let mut chunk = String::new();
            if let Ok(n) = f.read_to_string(&mut chunk) {
                log_offsets[slot] += n as u64;
                partial[slot].push_str(&chunk);
                if let Some(cut) = partial[slot].rfind('\n') {
                    let complete: String = partial[slot].drain(..=cut).collect();
                    lines.extend(complete.lines().map(|l| (slot, l.to_string())));
                }
            }
        }
        let t = signed_secs(w.t0, Instant::now());
        let sample = Sample {
            t,
            input_end,
            committed,
            output_end,
            workers,
        };
        {
            let mut d = data.lock().unwrap();
            d.owned.resize(endpoints.len(), Vec::new());
            for (slot, v) in sample.workers.iter().enumerate() {
                match (v, &endpoints[slot].http) {
                    (Some(v), _) => d.owned[slot] = v.tasks.keys().copied().collect(),
                    // Down: it owns nothing now; paused or busy: keep what it said last.
                    (None, None) => d.owned[slot].clear(),
                    (None, Some(_)) => {}
                }
            }
            for (slot, line) in lines {
                if let Some((partition, records, seconds)) = parse_restore(&line) {
                    d.restores.push(Restore {
                        t,
                        partition,
                        records,
                        seconds,
                    });
                } else if let Some(p) = parse_wipe(&line) {
                    d.wipes.push((t, p));
                } else if line.contains(" ERROR ")
                    && !line.contains("librdkafka")
                    && d.errors.len() < 20
                {
                    d.errors.push((slot, line));
                }
            }
            d.samples.push(sample.clone());
        }
        last = Some(sample);
        if let Some(rest) = INTERVAL.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_log_line_gives_partition_records_and_seconds() {
        let line = r#"2026-01-01T00:00:00.000000Z  INFO restored; task running partition=3 records=1200 skipped_uncommitted=0 wiped=true seconds="0.25" records_per_s="4800""#;
        assert_eq!(parse_restore(line), Some((3, 1200, 0.25)));
        assert_eq!(parse_restore("INFO partitions assigned"), None);
        let wipe = "2026-01-01T00:00:00Z  WARN no checkpoint and the local store is not empty: wiped, restoring all of x-changelog partition=4";
        assert_eq!(parse_wipe(wipe), Some(4));
    }
}
