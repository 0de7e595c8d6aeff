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
mod tests;
