//! What a process that runs a worker (`weir run`, `weir demo`) sets up around it: a flag raised
//! by SIGTERM or SIGINT, and the HTTP endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use weir_engine::health::Health;
use weir_engine::metrics::Metrics;

/// Sets `flag` on SIGTERM or SIGINT.
pub fn on_termination(rt: &tokio::runtime::Runtime, flag: Arc<AtomicBool>) {
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the current batch, committing, leaving the group"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the current batch, committing, leaving the group"),
        }
        flag.store(true, Ordering::Relaxed);
    });
}

/// Starts the HTTP endpoints when an address is given.
pub fn start_http(
    rt: &tokio::runtime::Runtime,
    addr: Option<&str>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let listener = rt.block_on(weir_engine::http::bind(addr))?;
        tracing::info!(
            "serving /metrics, /livez, /readyz on http://{}",
            weir_engine::http::local_addr(&listener)
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        rt.spawn(weir_engine::http::serve(listener, metrics, health));
    }
    Ok(())
}
