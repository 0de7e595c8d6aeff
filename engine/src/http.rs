//! `/metrics`, `/livez` and `/readyz` over hyper's HTTP/1 server (no HTTP/2, no TLS).
//!
//! The port is reachable by anything on the host (and beyond, when bound to `0.0.0.0`), so what a
//! client can hold is bounded ([`LIMITS`]): at most 64 connections at once (a connection beyond
//! them is answered 503 and closed at once, so it holds no file descriptor), the request head
//! within 5 s and the whole connection within 10 s of its accept, a head of at most 8 KiB and 32
//! header lines, no request body, one request per connection (no keep-alive). When `accept` itself
//! fails (out of file descriptors), the loop pauses 100 ms, doubling up to 1 s, instead of
//! spinning.

use crate::health::Health;
use crate::metrics::Metrics;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What one client, or many, can hold of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once. Beyond it, a new connection is answered 503 and closed right
    /// after its accept: the worker never holds more than this many sockets for HTTP, and a slot
    /// frees within `connection_deadline` whatever its client does.
    pub max_connections: usize,
    /// The request line and headers must have arrived within this, counted from the accept.
    pub header_read_timeout: Duration,
    /// A connection is closed this long after its accept, whatever it is doing (reading the
    /// request, or a client reading the response slowly).
    pub connection_deadline: Duration,
    /// Request line and headers, in bytes (hyper's minimum buffer is 8 KiB).
    pub max_header_bytes: usize,
    /// Header lines of a request.
    pub max_headers: usize,
}

pub const LIMITS: Limits = Limits {
    max_connections: 64,
    header_read_timeout: Duration::from_secs(5),
    connection_deadline: Duration::from_secs(10),
    max_header_bytes: 8 * 1024,
    max_headers: 32,
};

/// First pause after `accept` fails for want of a resource (EMFILE, ENFILE, ENOBUFS).
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two failing accepts.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Sent, best effort, to a connection beyond `max_connections` before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 28\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections, retry\n";

pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))
}

/// The address a listener actually bound (useful with port 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// Serves the endpoints on `listener` with [`LIMITS`]; runs until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    serve_with(listener, metrics, health, LIMITS).await
}

/// Where connections come from: a TCP listener, or a stand-in in the tests.
pub(crate) trait Listener: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
    /// A connection beyond the limit: told so if that does not wait, then closed.
    fn refuse(io: Self::Io);
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(s, _)| s)
    }

    fn refuse(io: TcpStream) {
        // Out of the reactor, the socket is a plain non-blocking one: nothing here waits. What the
        // client already sent is read first, so that the close is a FIN after the answer rather
        // than a reset that could discard it.
        if let Ok(mut s) = io.into_std() {
            let mut sent = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut sent);
            let _ = std::io::Write::write(&mut s, BUSY);
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The pause after `accept` failed with `e` (`None`: retry at once), given the previous one.
fn accept_pause(e: &io::Error, previous: Option<Duration>) -> Option<Duration> {
    match e.kind() {
        // The client gave up before its connection was taken: nothing is short on this side.
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => None,
        _ => Some(previous.map_or(ACCEPT_PAUSE_FIRST, |p| (p * 2).min(ACCEPT_PAUSE_MAX))),
    }
}

pub(crate) async fn serve_with<L: Listener>(
    listener: L,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: Limits,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(false)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut pause: Option<Duration> = None;
    let mut saturated = false;
    loop {
        let io = match listener.accept().await {
            Ok(io) => {
                pause = None;
                io
            }
            Err(e) => {
                pause = accept_pause(&e, pause);
                if let Some(p) = pause {
                    tracing::warn!("HTTP endpoint: accept failed: {e}; retrying in {p:?}");
                    tokio::time::sleep(p).await;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !saturated {
                tracing::warn!(
                    "HTTP endpoint: {} connections open, refusing new ones until one closes",
                    limits.max_connections
                );
                saturated = true;
            }
            L::refuse(io);
            continue;
        };
        saturated = false;
        let (builder, metrics, health) = (builder.clone(), metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &metrics, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = builder.serve_connection(TokioIo::new(io), service);
            match tokio::time::timeout(limits.connection_deadline, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("HTTP connection: {e}"),
                Err(_) => tracing::debug!(
                    "HTTP connection closed at its {:?} deadline",
                    limits.connection_deadline
                ),
            }
            drop(slot);
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<String> {
    const PLAIN: &str = "text/plain";
    if req.method() != Method::GET {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET only\n".to_string(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    if !req.body().is_end_stream() {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            PLAIN,
            "a GET carries no body\n".to_string(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/livez" => match health.stuck() {
            None => text(StatusCode::OK, PLAIN, "ok\n".to_string()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("stuck: {why}\n"),
            ),
        },
        "/readyz" => match health.not_ready_reason() {
            None => text(StatusCode::OK, PLAIN, "ready\n".to_string()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "try /metrics, /livez or /readyz\n".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
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
}
