//! What each fault of the timeline does to the workers or the brokers, and what its recovery is
//! measured by.

use crate::brokers;
use crate::report::Measure;
use crate::scenario::{BrokerRef, BrokerSignal, Fault};
use crate::timeline::{Action, Drill};
use crate::workers;
use anyhow::Context as _;
use std::time::{Duration, Instant};

impl Drill<'_> {
    pub fn fault(&mut self, fault: &Fault) -> anyhow::Result<()> {
        // Every fault starts from a whole cluster: a broker an earlier bounce took down is started
        // (at its time) and back first. A worker killed while the brokers are away would own no
        // partition (its session has lapsed) and its recovery could not be told from the outage's.
        if self.brokers_away() {
            self.progress.event(&format!(
                "{}: waits for the brokers to be back",
                fault.label()
            ));
            self.settle_brokers()?;
        }
        let at_s = self.now_s();
        let n = *self.plan.scenario.partitions.get_ref();
        if let Some(w) = fault.worker() {
            let needs_running = !matches!(fault, Fault::Resume { .. });
            if needs_running && !self.workers.running(w) {
                let note = format!("w{w} was not running: nothing to do");
                self.progress.event(&note);
                self.record(fault, at_s, Measure::None, vec![note]);
                return Ok(());
            }
        }
        match fault {
            Fault::Kill {
                worker,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.kill(*worker)?;
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    vec![],
                );
                if let Some(at) = self.after(*restart_after) {
                    self.schedule(at, Action::Start { worker: *worker });
                }
            }
            Fault::Stop {
                worker,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                let code = self.workers.stop(*worker, Duration::from_secs(45))?;
                let baseline = self.committed_now();
                let notes = match code {
                    Some(0) => vec![],
                    other => vec![format!("the worker's exit code after SIGTERM: {other:?}")],
                };
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    notes,
                );
                if let Some(at) = self.after(*restart_after) {
                    self.schedule(at, Action::Start { worker: *worker });
                }
            }
            Fault::Pause {
                worker,
                resume_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.pause(*worker)?;
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    vec![],
                );
                if let Some(at) = self.after(*resume_after) {
                    self.schedule(at, Action::Resume { worker: *worker });
                }
            }
            Fault::Resume { worker, .. } => {
                let note = if self.workers.paused(*worker) {
                    self.workers.resume(*worker)?;
                    vec![]
                } else {
                    vec![format!("w{worker} was not paused")]
                };
                self.record(fault, at_s, Measure::None, note);
            }
            Fault::AddWorker { count, .. } => {
                let mut added = Vec::new();
                for _ in 0..*count {
                    added.push(self.workers.add()?);
                }
                self.progress.event(&format!(
                    "started {}",
                    added
                        .iter()
                        .map(|w| format!("w{w}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                self.record(
                    fault,
                    at_s,
                    Measure::NewAssignment { workers: added },
                    vec![],
                );
            }
            Fault::CorruptState {
                worker,
                damage,
                partitions,
                restart_after,
                ..
            } => {
                let owned = self.monitor.owned(*worker);
                self.workers.kill(*worker)?;
                let mut notes = Vec::new();
                for (p, dir) in self.workers.task_dirs(*worker) {
                    if partitions.as_ref().is_some_and(|ps| !ps.contains(&p)) {
                        continue;
                    }
                    let done = workers::damage(&dir, *damage)?;
                    notes.push(format!("partition {p}: {done}"));
                }
                if notes.is_empty() {
                    notes.push("the worker had no task directory to damage".into());
                }
                self.progress
                    .event(&format!("damaged: {}", notes.join("; ")));
                let baseline = self.committed_now();
                self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: owned,
                        baseline,
                    },
                    notes,
                );
                let at = self.after(*restart_after).unwrap_or_else(Instant::now);
                self.schedule(at, Action::Start { worker: *worker });
            }
            Fault::BrokerRestart {
                broker,
                signal,
                restart_after,
                ..
            } => {
                let dir = self.kafka_dir.clone().expect("checked before the timeline");
                let targets = match broker {
                    BrokerRef::Node(n) => vec![brokers::find(&dir, *n)?],
                    BrokerRef::Role(r) if r == "all" => brokers::list(&dir)?,
                    BrokerRef::Role(r) if r == "oldest" => vec![brokers::oldest(&dir)?],
                    BrokerRef::Role(_) => {
                        let node = self
                            .probe
                            .leader(&self.names.input, 0)
                            .context("no leader for input partition 0")?;
                        vec![brokers::find(&dir, node)?]
                    }
                };
                let baseline = self.committed_now();
                let at_s = self.now_s();
                for b in &targets {
                    brokers::kill(b, *signal == BrokerSignal::Term)?;
                    self.progress.event(&format!(
                        "broker {} (pid {}) {}",
                        b.node_id,
                        b.pid,
                        if *signal == BrokerSignal::Term {
                            "stopped (SIGTERM)"
                        } else {
                            "killed (SIGKILL)"
                        }
                    ));
                }
                let nodes: Vec<String> = targets.iter().map(|b| b.node_id.to_string()).collect();
                let run = self.record(
                    fault,
                    at_s,
                    Measure::Advance {
                        partitions: (0..n as i32).collect(),
                        baseline,
                    },
                    vec![format!("node {}", nodes.join(", "))],
                );
                let delay = restart_after
                    .map(|d| d.std())
                    .unwrap_or(Duration::from_secs(5));
                for b in targets {
                    self.schedule(
                        Instant::now() + delay,
                        Action::BrokerStart {
                            fault: run,
                            broker: b,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// A bounced broker is still to be started or not yet back.
    fn brokers_away(&self) -> bool {
        !self.broker_back.is_empty()
            || self
                .queue
                .iter()
                .any(|(_, a)| matches!(a, Action::BrokerStart { .. }))
    }

    /// Starts every bounced broker at its time and waits until each is back.
    fn settle_brokers(&mut self) -> anyhow::Result<()> {
        while let Some(i) = self
            .queue
            .iter()
            .position(|(_, a)| matches!(a, Action::BrokerStart { .. }))
        {
            let (at, action) = self.queue.remove(i);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            self.execute(action)?;
        }
        while !self.broker_back.is_empty() {
            self.check_brokers();
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}
