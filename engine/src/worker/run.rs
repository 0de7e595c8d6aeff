//! The poll loop: records processed in batches, restores stepped, housekeeping (idle close,
//! gauges) every 200 ms, the commit cycle every interval (at once while windows are pending), a
//! rejoin after a failed assignment or store or a fence (`rejoin.rs`); on shutdown a final commit
//! and every task closed.

use super::setup::{start, Started};
use super::*;

/// Records handed to their tasks per turn of the loop without blocking, after the first.
const BATCH: usize = 256;

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
    let started = start(&job, &runtime, &metrics, &health)?;
    let mut worker = Loop {
        commit_interval: job.processing.commit_interval.std(),
        next_commit: Instant::now() + job.processing.commit_interval.std(),
        next_housekeeping: Instant::now(),
        rejoin_backoff: Duration::ZERO,
        consumer_renewed_at: None,
        refused_since: None,
        started,
        metrics,
        health: health.clone(),
        shutdown,
    };
    let result = worker.run();
    let Started { core, consumer, .. } = worker.started;
    match &result {
        Ok(()) => {
            tracing::info!("shutting down: final commit");
            let mut c = core.lock().unwrap();
            let last = c.commit(&consumer, None);
            c.close_all();
            if let Cycle::Aborted(why) = last? {
                bail!("the final commit was aborted: {why}");
            }
        }
        Err(e) => {
            health.set_fatal(format!("{e:#}"));
            tracing::error!("worker stopped: {e:#}");
        }
    }
    // Leaving the group: close the consumer while the manager is not locked (revoke callbacks run).
    consumer.unsubscribe();
    drop(consumer);
    result
}

pub(super) struct Loop {
    pub started: Started,
    commit_interval: Duration,
    next_commit: Instant,
    next_housekeeping: Instant,
    pub rejoin_backoff: Duration,
    /// When the group consumer was last replaced after a fence (see `rejoin`).
    pub consumer_renewed_at: Option<Instant>,
    /// Since when the group has refused this worker's instance id as still held by another
    /// member (the consumer group protocol; see `rejoin`), and when it last did.
    pub refused_since: Option<(Instant, Instant)>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Arc<AtomicBool>,
}

impl Loop {
    fn run(&mut self) -> anyhow::Result<()> {
        while !self.shutdown.load(Ordering::Relaxed) {
            match self.turn() {
                Ok(None) => {}
                // A failed rejoin (no new producer, no subscription) stops the worker.
                Ok(Some(why)) => self.rejoin(why)?,
                // Not every error is a stop. A producer that failed for good (fenced: a
                // transaction outlived its timeout) fails whatever was sending through it: the
                // next turn recovers. A send the open transaction refused (it must be aborted
                // first) is an aborted cycle: every task back to its committed state and offsets.
                Err(e) => {
                    let mut c = self.started.core.lock().unwrap();
                    if let Some(fatal) = c.producer_failed() {
                        c.producer_fenced(format!("{e:#} ({fatal})"));
                    } else if let Some(why) = c.collector.take_abortable() {
                        let rewound = c.rewind(&self.started.consumer, &why);
                        c.unless_fenced(rewound)?;
                    } else {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// One turn of the loop; `Some(why)` when the worker must give up its tasks and rejoin.
    fn turn(&mut self) -> anyhow::Result<Option<String>> {
        // Set by a callback or the error path since the last turn: nothing more is processed.
        if let Some(why) = self.started.core.lock().unwrap().rejoin_because.take() {
            return Ok(Some(why));
        }
        {
            let core = self.started.core.clone();
            let restoring = core
                .lock()
                .unwrap()
                .tasks
                .values()
                .any(|t| t.state() == TaskState::Restoring);
            self.poll_batch(restoring)?;
            let mut c = core.lock().unwrap();
            let wait = if restoring {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            c.restore_step(&self.started.consumer, wait)?;
            self.health.beat();
            if let Some(why) = c.rejoin_because.take() {
                return Ok(Some(why));
            }
            if c.tasks.values().any(|t| t.state() == TaskState::Running) {
                self.rejoin_backoff = Duration::ZERO;
                self.refused_since = None;
            }
            let now = Instant::now();
            if now >= self.next_housekeeping {
                c.end_fetch_hold(&self.started.consumer)?;
                c.close_idle(&self.started.consumer)?;
                c.update_gauges();
                c.collector.poll();
                self.next_housekeeping = now + Duration::from_millis(200);
            }
            if now >= self.next_commit {
                self.next_commit = Instant::now() + self.commit_interval;
                if self.commit(&mut c)? {
                    self.next_commit = Instant::now();
                }
            }
        }
        Ok(None)
    }

    /// One poll (blocking up to 100 ms unless tasks are restoring), then what is already fetched,
    /// each record to its task. The manager is locked per record: callbacks run inside `poll`.
    fn poll_batch(&mut self, restoring: bool) -> anyhow::Result<()> {
        let consumer = &self.started.consumer;
        let core = &self.started.core;
        let wait = if restoring {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        let started = Instant::now();
        let mut first = true;
        for _ in 0..=BATCH {
            let polled = consumer.poll(if first { wait } else { Duration::ZERO });
            match polled {
                Some(Ok(msg)) => {
                    let mut c = core.lock().unwrap();
                    if first {
                        c.begin_batch();
                    }
                    c.process(consumer, &msg)?;
                }
                // Fatal for the consumer: the group fenced its static instance id (a coordinator
                // that restarted after the member's session ran out, or a newer process with the
                // same id). The rejoin replaces the consumer, or stops on a live twin.
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    core.lock()
                        .unwrap()
                        .rejoin_because
                        .get_or_insert(format!("the consumer failed: {e}"));
                    break;
                }
                Some(Err(e)) => {
                    // A missing ACL is no outage: no retry helps, say what is missing and stop.
                    let names: Vec<&str> =
                        self.started.subscribed.iter().map(String::as_str).collect();
                    if let Some(why) = not_authorized(&e, &self.started.name, &names) {
                        bail!("consumer: {why}");
                    }
                    tracing::warn!("consumer: {e}");
                    break;
                }
                None => break,
            }
            first = false;
        }
        if !first {
            self.metrics
                .poll_batch_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// The commit cycle and what follows it; true when windows wait to close, so that the next
    /// cycle follows at once.
    fn commit(&mut self, c: &mut TaskManager) -> anyhow::Result<bool> {
        match c.commit(&self.started.consumer, None) {
            Ok(Cycle::Committed | Cycle::Rewound) => c.continue_closing(),
            // Nothing of the cycle is visible: every task goes back to its committed state and
            // offsets, in place. The rebalance that usually caused the abort (a new generation)
            // goes on by itself; leaving and joining again on top of it could leave a static
            // member without partitions for minutes. After a failed store the worker gives up
            // its tasks and rejoins at the next turn instead.
            Ok(Cycle::Aborted(why)) => {
                if c.rejoin_because.is_none() {
                    let rewound = c.rewind(&self.started.consumer, &why);
                    c.unless_fenced(rewound)?;
                }
                Ok(false)
            }
            // The coordinator aborted the transaction at its timeout, or a newer instance with
            // this identity took over: the next turn gives up every task and rejoins with a new
            // producer (a twin is told apart there, by the group).
            Err(StepError::Fenced(why)) => {
                c.producer_fenced(why);
                Ok(false)
            }
            Err(StepError::Fatal(e)) => Err(e),
        }
    }
}
