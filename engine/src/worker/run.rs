//! The poll loop: records processed in batches, restores stepped, housekeeping (idle close,
//! gauges) every 200 ms, the commit cycle every interval (at once while windows are pending), a
//! rejoin after a failed assignment or store; on shutdown a final commit and every task closed.

use super::setup::{start, Started};
use super::*;

/// Runs a worker until `shutdown` is set (then commits, checkpoints, leaves the group) or a fatal
/// error. Blocking: run it on its own thread.
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        job,
        runtime,
        metrics,
        health,
        shutdown,
    } = args;
    let Started {
        core,
        consumer,
        name,
        subscribed,
    } = start(&job, &runtime, &metrics, &health)?;
    let subscribed: Vec<&str> = subscribed.iter().map(String::as_str).collect();

    let commit_interval = job.processing.commit_interval.std();
    let mut next_commit = Instant::now() + commit_interval;
    let mut next_housekeeping = Instant::now();
    let mut rejoin_backoff = Duration::ZERO;
    let result = (|| -> anyhow::Result<()> {
        while !shutdown.load(Ordering::Relaxed) {
            let restoring = core
                .lock()
                .unwrap()
                .tasks
                .values()
                .any(|t| t.state() == TaskState::Restoring);
            let polled = consumer.poll(if restoring {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            });
            let mut c = core.lock().unwrap();
            match polled {
                Some(Ok(msg)) => {
                    let started = Instant::now();
                    // Processing time for the event-time plausibility check, once per batch.
                    c.decoder.set_processing_time(now_ms());
                    c.process(&consumer, &msg)?;
                    drop(msg);
                    // Drain what is already fetched without blocking, lock held: no callbacks
                    // run from a zero-timeout poll of an already-filled queue... except they may,
                    // so release the lock between polls.
                    drop(c);
                    for _ in 0..256 {
                        match consumer.poll(Duration::ZERO) {
                            Some(Ok(m)) => core.lock().unwrap().process(&consumer, &m)?,
                            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                                bail!("consumer: {e}")
                            }
                            Some(Err(e)) => {
                                if let Some(why) = not_authorized(&e, &name, &subscribed) {
                                    bail!("consumer: {why}");
                                }
                                tracing::warn!("consumer: {e}");
                                break;
                            }
                            None => break,
                        }
                    }
                    metrics
                        .poll_batch_duration
                        .observe(started.elapsed().as_secs_f64());
                    c = core.lock().unwrap();
                }
                // Fatal for the consumer (e.g. its static instance id was taken by a newer
                // process): this worker is replaced; stop instead of spinning.
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => bail!("consumer: {e}"),
                Some(Err(e)) => {
                    // A missing ACL is no outage: no retry helps, say what is missing and stop.
                    if let Some(why) = not_authorized(&e, &name, &subscribed) {
                        bail!("consumer: {why}");
                    }
                    tracing::warn!("consumer: {e}")
                }
                None => {}
            }
            c.restore_step(
                &consumer,
                if restoring {
                    Duration::from_millis(50)
                } else {
                    Duration::ZERO
                },
            )?;
            health.beat();
            if let Some(why) = c.rejoin_because.take() {
                rejoin_backoff =
                    (rejoin_backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(
                    "{why}: closing every task, rejoining the group in {:.0?}",
                    rejoin_backoff
                );
                health.set_rejoining(Some(why));
                c.restart_after_abort()?;
                drop(c);
                consumer.unsubscribe();
                let until = Instant::now() + rejoin_backoff;
                while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                    health.beat();
                    std::thread::sleep(Duration::from_millis(100));
                }
                consumer
                    .subscribe(&subscribed)
                    .context("subscribing again")?;
                continue;
            }
            if c.tasks.values().any(|t| t.state() == TaskState::Running) {
                rejoin_backoff = Duration::ZERO;
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                c.end_fetch_hold(&consumer)?;
                c.close_idle(&consumer)?;
                c.update_gauges();
                c.producer.poll(Duration::ZERO);
                next_housekeeping = now + Duration::from_millis(200);
            }
            if now >= next_commit {
                next_commit = Instant::now() + commit_interval;
                let committed = c.commit(&consumer, None);
                if committed.is_ok() && c.continue_closing()? {
                    next_commit = Instant::now();
                }
                if let Err(e) = committed {
                    if e.is::<Fenced>() {
                        // A newer instance with this identity owns the tasks now. Rejoining under
                        // the same transactional and instance id would fence it in turn: stop.
                        return Err(e.context("this worker was replaced by a newer instance with the same identity; stopping"));
                    }
                    if !e.is::<Aborted>() {
                        return Err(e);
                    }
                    if c.rejoin_because.is_none() {
                        // Nothing of the cycle is visible: every task goes back to its committed
                        // state and offsets, in place. The rebalance that usually caused the abort
                        // (a new generation) goes on by itself; leaving and joining again on top
                        // of it could leave a static member without partitions for minutes.
                        c.rewind(&consumer, &format!("{e:#}"))?;
                    }
                    // Otherwise the worker gives up its tasks and rejoins at the next turn.
                }
            }
        }
        Ok(())
    })();
    match &result {
        Ok(()) => {
            tracing::info!("shutting down: final commit");
            let mut c = core.lock().unwrap();
            c.commit(&consumer, None)?;
            c.close_all();
        }
        Err(e) => {
            health.set_fatal(format!("{e:#}"));
            tracing::error!("worker stopped: {e:#}");
        }
    }
    // Leaving the group: close the consumer while the core is not locked (revoke callbacks run).
    consumer.unsubscribe();
    drop(consumer);
    result
}
