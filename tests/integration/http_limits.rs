//! The HTTP endpoints under a crowd of slow clients: the worker keeps consuming, committing and
//! emitting exact results, its file descriptors stay bounded, and it answers probes again once the
//! crowd leaves.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_engine::generator::GeneratorSpec;

const PARTITIONS: i32 = 2;
const LONG: Duration = Duration::from_secs(60);
/// How long the crowd stays: several header deadlines (5 s), so slots are cut and retaken.
const CROWD_FOR: Duration = Duration::from_secs(15);
/// Each slow client sends one byte this often.
const TRICKLE_EVERY: Duration = Duration::from_secs(2);

fn cap() -> usize {
    weir_engine::http::LIMITS.max_connections
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// A GET that keeps what arrived before a reset: (status, how long it took), or None when nothing
/// came back.
fn probe(addr: SocketAddr, path: &str) -> (Option<u16>, Duration) {
    let t0 = Instant::now();
    let mut raw = Vec::new();
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
        }
    }
    let status = String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    (status, t0.elapsed())
}

fn consumed(w: &Worker) -> f64 {
    metric_sum(&w.metrics(), "weir_records_consumed_total")
}

/// Slow clients: each opens a connection, sends half a request head, then one byte of a header
/// line that never ends every `TRICKLE_EVERY`; a client whose connection the worker closed opens
/// a new one. Bounded in time by `CROWD_FOR` (and stopped earlier by `stop`).
struct Crowd {
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Crowd {
    fn start(addr: SocketAddr, clients: usize) -> Crowd {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicUsize::new(0));
        let (stop2, connects2) = (stop.clone(), connects.clone());
        let thread = std::thread::spawn(move || {
            let connect = || {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                connects2.fetch_add(1, Ordering::Relaxed);
                s.write_all(b"GET /livez HTTP/1.1\r\nX-Slow: ").ok()?;
                Some(s)
            };
            let mut clients: Vec<Option<TcpStream>> = (0..clients).map(|_| connect()).collect();
            let until = Instant::now() + CROWD_FOR;
            while Instant::now() < until && !stop2.load(Ordering::Relaxed) {
                for c in clients.iter_mut() {
                    let alive = c.as_mut().is_some_and(|s| s.write_all(b"a").is_ok());
                    if !alive {
                        *c = connect();
                    }
                }
                let tick = Instant::now() + TRICKLE_EVERY;
                while Instant::now() < tick && !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Crowd {
            stop,
            connects,
            thread: Some(thread),
        }
    }

    /// Every client closes its connection.
    fn leave(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The most file descriptors a process had open, sampled every 50 ms until stopped.
struct FdWatch {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    vanished: Arc<AtomicBool>,
}

impl FdWatch {
    fn start(pid: u32) -> FdWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let vanished = Arc::new(AtomicBool::new(false));
        let (stop2, max2, vanished2) = (stop.clone(), max.clone(), vanished.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
                match open_fds(pid) {
                    Some(n) => {
                        max2.fetch_max(n, Ordering::Relaxed);
                    }
                    None => vanished2.store(true, Ordering::Relaxed),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        FdWatch {
            stop,
            max,
            vanished,
        }
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn real_a_crowd_of_slow_http_clients_neither_stops_nor_kills_the_worker() {
    let s = setup(
        "http-limits",
        PARTITIONS,
        GeneratorSpec {
            meters: 20,
            hours: 3,
            readings_per_hour: 12,
            ..Default::default()
        },
    );
    let (first, second) = s.readings.split_at(s.readings.len() / 2);
    produce_readings(&s.bootstrap, &s.input, first);
    let mut w = Worker::start(&s.job_without_idle_close(), &s.bootstrap, &s.state("a"));
    await_workers(LONG, "the first half to be committed", &[&w], || {
        group_drained(&s.bootstrap, &s.name, &s.input)
    });
    w.await_ready(LONG);
    let before = consumed(&w);
    assert!(before >= first.len() as f64, "consumed {before}");
    let pid = w.child.id();
    let baseline = open_fds(pid).unwrap();
    let watch = FdWatch::start(pid);

    let slow = cap() + 200;
    let addr: SocketAddr = w.http.parse().unwrap();
    let mut crowd = Crowd::start(addr, slow);
    let crowd_began = Instant::now();
    await_until(Duration::from_secs(10), "the crowd to connect", || {
        crowd.connects.load(Ordering::Relaxed) >= slow
    });

    // While every slot is taken: a probe is answered at once (503, busy) rather than left
    // waiting, and Kafka sees the worker consume and commit the second half.
    let (status, took) = probe(addr, "/livez");
    assert!(took < Duration::from_secs(2), "a probe waited {took:?}");
    assert!(
        matches!(status, Some(503) | Some(200)),
        "during the crowd: {status:?}"
    );
    produce_readings(&s.bootstrap, &s.input, second);
    s.send_sentinels(PARTITIONS);
    await_workers(
        LONG,
        "the second half to be committed during the crowd",
        &[&w],
        || group_drained(&s.bootstrap, &s.name, &s.input),
    );
    for p in 0..PARTITIONS {
        assert_eq!(
            committed_offset(&s.bootstrap, &s.name, &s.input, p),
            Some(end_offset(&s.bootstrap, &s.input, p)),
            "partition {p}"
        );
    }
    let expected = oracle(&s.readings);
    s.await_results_equal_oracle(&expected, &[&w]);
    // Stay until the crowd has had its slots cut and retaken a few times.
    while crowd_began.elapsed() < CROWD_FOR - Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(w.child.try_wait().unwrap().is_none(), "the worker died");
    assert!(!watch.vanished.load(Ordering::Relaxed), "the worker died");
    let peak = watch.max();
    assert!(
        peak <= baseline + cap() + 40,
        "{peak} file descriptors open at the peak, {baseline} before the crowd of {slow}"
    );
    let connects = crowd.connects.load(Ordering::Relaxed);
    assert!(
        connects > slow + cap(),
        "the worker closes slow clients (and they come back): only {connects} connections"
    );

    crowd.leave();
    await_workers(
        Duration::from_secs(15),
        "/livez once the crowd left",
        &[&w],
        || matches!(http_get(&w.http, "/livez"), Some((200, _))),
    );
    let after = consumed(&w);
    assert!(
        after >= s.readings.len() as f64 && after > before,
        "consumed {before} before the crowd, {after} after"
    );
    await_until(
        Duration::from_secs(10),
        "the crowd's sockets to be closed",
        || open_fds(pid).is_some_and(|n| n <= baseline + 20),
    );
    assert!(w.child.try_wait().unwrap().is_none(), "the worker died");
    assert!(
        !w.log_text().contains("Too many open files"),
        "{}",
        w.log_text()
    );
    drop(watch);
    assert_eq!(w.stop(), 0);
}
