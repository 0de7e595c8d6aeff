use super::*;
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST_LIMITS: Limits = Limits {
    max_connections: 4,
    header_read_timeout: Duration::from_millis(800),
    connection_deadline: Duration::from_millis(1500),
    max_header_bytes: 8 * 1024,
    max_headers: 32,
};

async fn start(limits: Limits) -> (SocketAddr, Arc<Health>) {
    let listener = bind("127.0.0.1:0").await.unwrap();
    let addr = local_addr(&listener).unwrap();
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new("http-test"));
    tokio::spawn(serve_with(listener, metrics, health.clone(), limits));
    (addr, health)
}

/// Sends `request` whole, then reads until the server closes: (status, headers, body).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let raw = read_until_closed(&mut s).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// What arrives until the server closes (a reset after the answer keeps what came before).
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => panic!("the server did not close within 5 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return raw,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(addr, req.as_bytes()).await
}

/// Reads until EOF or an error; the time it took.
async fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((t0 + bound).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn endpoints_answer_as_before() {
    let (addr, health) = start(TEST_LIMITS).await;
    let (code, head, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("weir_"), "{body}");
    assert!(head.contains("connection: close"), "no keep-alive: {head}");

    assert_eq!(get(addr, "/livez").await.2, "ok\n");
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: not yet a member of the consumer group\n")
    );
    health.set_joined();
    let (code, _, body) = get(addr, "/readyz?verbose=1").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    let (code, _, body) = get(addr, "/nope").await;
    assert_eq!(code, 404);
    assert_eq!(body, "try /metrics, /livez or /readyz\n");

    let (code, head, body) = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!((code, body.as_str()), (405, "GET only\n"));
    assert!(head.contains("allow: get"), "{head}");
    let (code, _, _) = exchange(addr, b"DELETE /livez HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(code, 405);

    let (code, _, _) = exchange(
        addr,
        b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(code, 413, "a body is refused");

    // HTTP/1.0, as some probes speak it.
    let (code, _, body) = exchange(addr, b"GET /livez HTTP/1.0\r\n\r\n").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn oversized_or_malformed_heads_are_refused() {
    let (addr, _) = start(TEST_LIMITS).await;
    let big = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let (code, _, _) = exchange(addr, big.as_bytes()).await;
    assert_eq!(code, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /livez HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (code, _, _) = exchange(addr, req.as_bytes()).await;
    assert_eq!(code, 431);
    let (code, _, _) = exchange(addr, b"\x16\x03\x01garbage\r\n\r\n").await;
    assert_eq!(code, 400);
    // Still serving.
    assert_eq!(get(addr, "/livez").await.0, 200);
}

#[tokio::test]
async fn a_head_trickling_slower_than_the_deadline_is_cut_off() {
    let (addr, _) = start(TEST_LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        // A byte every 200 ms: each read resets nothing, the head never completes in time.
        for b in b"X-Slow: 0123456789abcdef".iter().cycle().take(40) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(&[*b]).await.is_err() {
                return Some(s);
            }
            let mut probe = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                return Some(s);
            }
        }
        None
    });
    let t0 = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(6), trickle)
        .await
        .expect("the trickle ends")
        .unwrap();
    assert!(
        cut.is_some(),
        "the server never closed a head that took 8 s"
    );
    let took = t0.elapsed();
    assert!(
        took < TEST_LIMITS.header_read_timeout + Duration::from_millis(900),
        "closed after {took:?}"
    );
    assert!(took >= TEST_LIMITS.header_read_timeout - Duration::from_millis(250));
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let (addr, _) = start(TEST_LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("closed");
    let deadline = TEST_LIMITS.header_read_timeout;
    assert!(took >= deadline - Duration::from_millis(100), "{took:?}");
    assert!(took < deadline + Duration::from_millis(500), "{took:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_a_request_is_served_once_slots_free() {
    let (addr, _) = start(TEST_LIMITS).await;
    // Fill every slot with a client that sent half a head and then nothing.
    let mut holders = Vec::new();
    for _ in 0..TEST_LIMITS.max_connections {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    // Beyond the cap: answered 503 and closed at once, not queued.
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let raw = read_until_closed(&mut s).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.ends_with("too many connections, retry\n"), "{text}");
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The holders are cut at the header deadline; then a well-formed request is served.
    for s in &mut holders {
        closed_within(s, Duration::from_secs(3))
            .await
            .expect("a slot holder is cut off");
    }
    let (code, _, body) = get(addr, "/livez").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    // Every slot is free again.
    let mut served = Vec::new();
    for _ in 0..TEST_LIMITS.max_connections {
        served.push(tokio::spawn(get(addr, "/metrics")));
    }
    for h in served {
        assert_eq!(h.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn the_connection_closes_after_one_response() {
    let (addr, _) = start(TEST_LIMITS).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(took < Duration::from_millis(500), "no keep-alive: {took:?}");
}

/// Hands out one connection, then none.
struct OneConnection(Mutex<Option<tokio::io::DuplexStream>>);

impl Listener for OneConnection {
    type Io = tokio::io::DuplexStream;

    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send {
        let io = self.0.lock().unwrap().take();
        async move {
            match io {
                Some(io) => Ok(io),
                None => std::future::pending().await,
            }
        }
    }

    fn refuse(_: Self::Io) {}
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_cut_at_the_connection_deadline() {
    // A pipe smaller than the /metrics answer, whose client end never reads: the server's
    // write waits for ever, unless the deadline ends the connection.
    let (mut client, server) = tokio::io::duplex(512);
    let metrics = Arc::new(Metrics::new("http-test"));
    assert!(metrics.render().len() > 2048);
    tokio::spawn(serve_with(
        OneConnection(Mutex::new(Some(server))),
        metrics,
        Arc::new(Health::default()),
        TEST_LIMITS,
    ));
    let t0 = Instant::now();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The server end is dropped at the deadline: a write to it fails from then on.
    let took = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match tokio::time::timeout(Duration::from_millis(50), client.write_all(b"x")).await {
            Ok(Err(_)) => break t0.elapsed(),
            _ => assert!(t0.elapsed() < Duration::from_secs(5), "never cut"),
        }
    };
    let deadline = TEST_LIMITS.connection_deadline;
    assert!(took >= deadline - Duration::from_millis(100), "{took:?}");
    assert!(took < deadline + Duration::from_millis(500), "{took:?}");
}

struct FailingListener {
    calls: Arc<Mutex<Vec<Instant>>>,
    failures: usize,
    error: io::ErrorKind,
}

impl Listener for FailingListener {
    type Io = TcpStream;

    fn accept(&self) -> impl Future<Output = io::Result<TcpStream>> + Send {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len()
        };
        let (failures, kind) = (self.failures, self.error);
        async move {
            if n <= failures {
                Err(io::Error::new(kind, "accept failed"))
            } else {
                std::future::pending().await
            }
        }
    }

    fn refuse(_: TcpStream) {}
}

async fn accept_times(failures: usize, error: io::ErrorKind) -> Vec<Duration> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let listener = FailingListener {
        calls: calls.clone(),
        failures,
        error,
    };
    let serving = tokio::spawn(serve_with(
        listener,
        Arc::new(Metrics::new("http-test")),
        Arc::new(Health::default()),
        TEST_LIMITS,
    ));
    let t0 = Instant::now();
    while calls.lock().unwrap().len() <= failures && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serving.abort();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), failures + 1, "every failure is retried");
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn accept_failures_back_off_from_100ms_doubling_to_1s() {
    // Out of file descriptors (EMFILE): pauses of 100, 200, 400, 800, 1000, 1000 ms.
    let gaps = accept_times(6, io::ErrorKind::Other).await;
    let want = [100, 200, 400, 800, 1000, 1000];
    for (gap, want) in gaps.iter().zip(want) {
        let want = Duration::from_millis(want);
        assert!(*gap >= want, "pause {gap:?}, want {want:?}: {gaps:?}");
        assert!(*gap < want + Duration::from_millis(400), "{gaps:?}");
    }
    // A client that went away before its accept: retried at once.
    let gaps = accept_times(50, io::ErrorKind::ConnectionAborted).await;
    assert!(
        gaps.iter().sum::<Duration>() < Duration::from_millis(500),
        "{gaps:?}"
    );
}

#[test]
fn the_busy_answer_is_well_formed() {
    let text = std::str::from_utf8(BUSY).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
}

#[test]
fn accept_pause_doubles_and_resets() {
    let emfile = io::Error::from_raw_os_error(libc::EMFILE);
    let mut p = None;
    let mut seen = Vec::new();
    for _ in 0..6 {
        p = accept_pause(&emfile, p);
        seen.push(p.unwrap().as_millis());
    }
    assert_eq!(seen, [100, 200, 400, 800, 1000, 1000]);
    let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
    assert_eq!(accept_pause(&aborted, p), None);
}
