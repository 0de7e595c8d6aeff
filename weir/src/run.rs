//! `weir run`: one worker of a job, in this process, until the job fails or a termination signal
//! has let it finish its batch, commit and leave the group.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_config::{load_job, RuntimeConfig, RuntimeOverrides};
use weir_engine::health::Health;
use weir_engine::metrics::Metrics;
use weir_engine::worker::{run_worker, WorkerArgs};

const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

pub fn run(file: PathBuf, overrides: RuntimeOverrides) -> ExitCode {
    let job = match load_job(&file) {
        Ok(j) => {
            weir_engine::secrets::register(&j);
            j
        }
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match RuntimeConfig::resolve(&job, &overrides, &|k| std::env::var(k).ok()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir run: {}", weir_engine::secrets::redact(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let metrics = Arc::new(Metrics::new(job.name.get_ref()));
    let health = Arc::new(Health::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    crate::serve::on_termination(&rt, shutdown.clone());
    if let Err(e) = crate::serve::start_http(
        &rt,
        runtime.http.as_deref(),
        metrics.clone(),
        health.clone(),
    ) {
        eprintln!(
            "weir run: {}",
            weir_engine::secrets::redact(&format!("{e:#}"))
        );
        return ExitCode::FAILURE;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let stop_requested = shutdown.clone();
    let watched = health.clone();
    let worker = std::thread::Builder::new()
        .name("weir-worker".into())
        .spawn(move || {
            let r = run_worker(WorkerArgs {
                job,
                runtime,
                metrics,
                health,
                shutdown,
            });
            let _ = done_tx.send(());
            r
        })
        .expect("spawning the worker thread");
    // Wait for the worker; once a termination signal arrived, wait at most SHUTDOWN_BOUND.
    let mut signalled_at = None;
    loop {
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        // A worker loop that stopped turning is stuck in a call that ignores its timeout (seen:
        // librdkafka's send_offsets_to_transaction after the group coordinator's broker went
        // away, confluentinc/librdkafka#5456 and #5511). Nothing in the process can unblock it;
        // a restarted process resumes from the committed state (exactly-once: its
        // init_transactions aborts the open transaction). `/livez` has been failing meanwhile.
        if let Some(why) = watched.stuck() {
            tracing::error!("{why}: the worker is stuck in a Kafka call that does not return; exiting so that the process is restarted");
            eprintln!("weir run: {why}: the worker is stuck in a Kafka call that does not return; exiting so that the process is restarted");
            return ExitCode::from(3);
        }
        if stop_requested.load(Ordering::Relaxed) {
            let at = *signalled_at.get_or_insert_with(std::time::Instant::now);
            if at.elapsed() > SHUTDOWN_BOUND {
                eprintln!("weir run: the worker did not stop within {}s of the termination signal; exiting", SHUTDOWN_BOUND.as_secs());
                return ExitCode::FAILURE;
            }
        }
    }
    match worker.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!(
                "weir run: {}",
                weir_engine::secrets::redact(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
