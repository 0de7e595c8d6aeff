//! The drill's state while it runs, and its timeline: scheduled actions (faults, restarts,
//! resumes, broker starts) executed at their time while the input flows.

use crate::brokers;
use crate::cluster::Probe;
use crate::input;
use crate::job::Names;
use crate::monitor::{signed_secs, Monitor};
use crate::progress::Progress;
use crate::report::{FaultRun, Measure};
use crate::scenario::{Fault, Plan};
use crate::workers::Workers;
use anyhow::bail;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Something the timeline does at a time.
pub enum Action {
    Fault(usize),
    Start {
        worker: usize,
    },
    Resume {
        worker: usize,
    },
    BrokerStart {
        fault: usize,
        broker: brokers::Broker,
    },
}

/// A restarted broker being watched until it is back in the cluster.
pub struct BrokerBack {
    pub fault: usize,
    pub node_id: i32,
    /// A client of the restarted broker alone: it answers only once that process serves.
    pub own: Option<Probe>,
    pub since: Instant,
}

pub struct Drill<'a> {
    pub plan: &'a Plan,
    pub names: Names,
    pub bootstrap: String,
    pub kafka_dir: Option<PathBuf>,
    pub probe: Probe,
    pub workers: Workers,
    pub monitor: Monitor,
    pub progress: Progress,
    pub t0: Instant,
    pub queue: Vec<(Instant, Action)>,
    pub runs: Vec<FaultRun>,
    pub broker_children: Vec<std::process::Child>,
    pub broker_back: Vec<BrokerBack>,
}

impl Drill<'_> {
    pub fn now_s(&self) -> f64 {
        signed_secs(self.t0, Instant::now())
    }

    pub fn schedule(&mut self, at: Instant, action: Action) {
        self.queue.push((at, action));
        self.queue.sort_by_key(|(at, _)| *at);
    }

    /// The group's committed offsets now (asked again until Kafka answers).
    pub fn committed_now(&self) -> Vec<i64> {
        let n = *self.plan.scenario.partitions.get_ref();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.probe.committed_offsets(&self.names.input, n) {
                return c;
            }
            if Instant::now() > deadline {
                return self
                    .monitor
                    .last()
                    .map(|s| s.committed)
                    .unwrap_or_else(|| vec![0; n as usize]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn record(
        &mut self,
        fault: &Fault,
        at_s: f64,
        measure: Measure,
        notes: Vec<String>,
    ) -> usize {
        self.runs.push(FaultRun {
            kind: fault.kind(),
            label: fault.label(),
            worker: fault.worker(),
            at_s,
            measure,
            notes,
            broker_back_s: None,
        });
        self.runs.len() - 1
    }

    pub fn after(&self, d: Option<weir_config::Duration>) -> Option<Instant> {
        d.map(|d| Instant::now() + d.std())
    }

    pub fn execute(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Fault(i) => {
                let fault = self.plan.faults[i].clone();
                let owned = fault
                    .worker()
                    .map(|w| format!(" (tasks {:?})", self.monitor.owned(w)))
                    .unwrap_or_default();
                self.progress.event(&format!("{}{owned}", fault.label()));
                self.fault(&fault)
            }
            Action::Start { worker } => {
                if self.workers.running(worker) {
                    self.progress
                        .event(&format!("w{worker} is already running; not started again"));
                    return Ok(());
                }
                self.progress.event(&format!("start w{worker} again"));
                self.workers.start(worker)
            }
            Action::Resume { worker } => {
                if self.workers.paused(worker) {
                    self.progress.event(&format!("resume w{worker} (SIGCONT)"));
                    self.workers.resume(worker)?;
                }
                Ok(())
            }
            Action::BrokerStart { fault, broker } => {
                self.progress
                    .event(&format!("start broker {} again", broker.node_id));
                let dir = self.kafka_dir.clone().expect("checked before the timeline");
                let child = brokers::restart(&dir, &broker)?;
                self.broker_children.push(child);
                let own = broker
                    .address
                    .as_deref()
                    .and_then(|a| Probe::new(a, None).ok());
                self.broker_back.push(BrokerBack {
                    fault,
                    node_id: broker.node_id,
                    own,
                    since: Instant::now(),
                });
                Ok(())
            }
        }
    }

    /// Notes restarted brokers that are back: in the metadata, every replica in sync.
    pub fn check_brokers(&mut self) {
        if self.broker_back.is_empty() {
            return;
        }
        let topics = [self.names.input.as_str(), self.names.output.as_str()];
        let Some((brokers, healthy)) = self.probe.cluster_health(&topics) else {
            return;
        };
        let now_s = self.now_s();
        let mut still = Vec::new();
        for b in std::mem::take(&mut self.broker_back) {
            // The restarted process itself serves metadata that lists it, and every replica is in
            // sync (the cluster's view alone is not enough: a dead broker stays listed, and in
            // every ISR, until the controller notices).
            let serves = b.own.as_ref().is_none_or(|own| {
                own.cluster_health(&[])
                    .is_some_and(|(ids, _)| ids.contains(&b.node_id))
            });
            if serves && brokers.contains(&b.node_id) && healthy {
                let run = &mut self.runs[b.fault];
                run.broker_back_s = Some(now_s - run.at_s);
                self.progress.event(&format!(
                    "{}: the broker is back, every replica in sync",
                    run.label
                ));
            } else if b.since.elapsed() > Duration::from_secs(180) {
                self.runs[b.fault]
                    .notes
                    .push("the broker was not back within 180 s".into());
            } else {
                still.push(b);
            }
        }
        self.broker_back = still;
    }

    pub fn status(&mut self, feeder: &input::Feeder, phase: &str) {
        let last = self.monitor.last();
        let (lag, out) = last
            .as_ref()
            .map(|s| (s.lag(), s.output_end))
            .unwrap_or((0, 0));
        let next = self
            .queue
            .iter()
            .find_map(|(at, a)| match a {
                Action::Fault(i) => Some(format!(
                    " | next: {} at {:.0}s",
                    self.plan.faults[*i].label(),
                    signed_secs(self.t0, *at)
                )),
                _ => None,
            })
            .unwrap_or_default();
        let msg = format!(
            "{phase}: sent {} acked {}/{} lag {lag} output {out} workers {}{next}",
            feeder.sent.load(Ordering::Relaxed),
            feeder.acks.acked(),
            feeder.total,
            self.workers.live_count()
        );
        self.progress.status(feeder.acks.acked(), msg);
    }
}

/// How long after its planned end (and after the last fault) the input may still be waiting for
/// acknowledgements before the drill gives up on its own producer: it retries without a timeout,
/// so a broker that never takes the records again would otherwise keep the drill running forever.
const INPUT_GRACE: Duration = Duration::from_secs(180);

/// Runs the faults while the input flows; returns when both are done.
pub fn timeline(
    d: &mut Drill<'_>,
    feeder: &mut input::Feeder,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let input_due = d.t0 + d.plan.input.duration();
    let mut settled_at: Option<Instant> = None;
    loop {
        for w in d.workers.reap() {
            d.progress.event(&format!(
                "w{w} exited on its own; see {}",
                d.workers.log_path(w).display()
            ));
        }
        while d.queue.first().is_some_and(|(at, _)| *at <= Instant::now()) {
            let (_, action) = d.queue.remove(0);
            d.execute(action)?;
        }
        d.check_brokers();
        d.status(feeder, "timeline");
        if d.queue.is_empty() && d.broker_back.is_empty() && feeder.finished() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped");
        }
        // Every fault done and every broker back: from then on the input only waits for acks.
        if d.queue.is_empty() && d.broker_back.is_empty() && Instant::now() >= input_due {
            let since = *settled_at.get_or_insert_with(Instant::now);
            if since.elapsed() > INPUT_GRACE {
                stop.store(true, Ordering::Relaxed);
                bail!(
                    "the drill's own input producer has {} of {} records unacknowledged {:.0} s after the input was due to end and every broker was back ({} sent): the brokers stopped taking them; not a verdict on weir",
                    feeder.total - feeder.acks.acked(),
                    feeder.total,
                    since.elapsed().as_secs_f64(),
                    feeder.sent.load(Ordering::Relaxed)
                );
            }
        }
        // Waiting for the next scheduled moment (a fault, a restart), not for a condition.
        std::thread::sleep(Duration::from_millis(50));
    }
    feeder.join()
}
