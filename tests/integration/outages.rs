//! Kafka away when a worker starts: the worker waits (live, not ready, saying why) instead of
//! exiting, and runs once Kafka can be reached.

use crate::harness::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use weir_engine::generator::GeneratorSpec;

/// Forwards every connection to `port` to `to`, from now on: a bootstrap address that starts to
/// answer. (Clients learn the brokers' own addresses from the metadata it returns.)
fn forward(port: u16, to: String) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&to) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || std::io::Write::write_all(&mut into, &buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn real_a_worker_started_while_kafka_is_away_waits_not_ready_and_runs_once_it_is_there() {
    let s = setup(
        "kafka-away",
        2,
        GeneratorSpec {
            meters: 10,
            hours: 2,
            readings_per_hour: 4,
            ..GeneratorSpec::default()
        },
    );
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    // Nothing listens here yet.
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let worker = Worker::start(&s.job(&[]), &address, &s.state("a"));
    let waiting = Instant::now();
    await_until(
        Duration::from_secs(60),
        "the worker to say it waits for Kafka",
        || {
            http_get(&worker.http, "/readyz").is_some_and(|(code, body)| {
                code == 503 && body.contains("waiting") && body.contains(&address)
            })
        },
    );
    // Past the 10 s a metadata request used to be given before the worker gave up and exited.
    while waiting.elapsed() < Duration::from_secs(12) {
        assert!(
            matches!(http_get(&worker.http, "/livez"), Some((200, _))),
            "the waiting worker is live:\n{}",
            worker.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!worker.ready());
    forward(port, s.bootstrap.clone());
    worker.await_ready(Duration::from_secs(60));
    let expected = oracle(&s.readings);
    s.await_results_equal_oracle(&expected, &[&worker]);
    assert_eq!(worker.stop(), 0);
}
