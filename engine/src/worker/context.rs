//! The consumer's callbacks: statistics (fetch positions, leader connections, lag) and
//! rebalances, which run inside `poll` on the worker's thread.

use super::*;

pub(crate) struct WorkerContext {
    pub(super) core: Arc<Mutex<TaskManager>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) topics: Vec<String>,
}

impl ClientContext for WorkerContext {
    fn stats(&self, stats: Statistics) {
        {
            let mut core = self.core.lock().unwrap();
            let up: Vec<i32> = stats
                .brokers
                .values()
                .filter(|b| b.state == "UP")
                .map(|b| b.nodeid)
                .collect();
            for (topic, t) in &stats.topics {
                for (p, ps) in t.partitions.iter().filter(|(p, _)| **p >= 0) {
                    core.fetched
                        .insert((topic.clone(), *p), (ps.next_offset, ps.fetchq_cnt));
                    if !up.contains(&ps.leader) {
                        // No connection to the partition's leader: the task is not idle, it is
                        // cut off (see `close_idle`); its silence counts from when it is back.
                        if let Some(task) = core.tasks.get_mut(p) {
                            if task.topics.contains(topic) {
                                task.last_record_at = Instant::now();
                            }
                        }
                    }
                }
            }
        }
        for topic in &self.topics {
            let Some(t) = stats.topics.get(topic) else {
                continue;
            };
            for (p, ps) in &t.partitions {
                if *p >= 0 && ps.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut core = self.core.lock().unwrap();
            core.metrics.rebalances.inc();
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if let Err(e) = core.revoke(consumer, &partitions, consumer.assignment_lost()) {
                tracing::error!("revoking partitions {partitions:?}: {e:#}");
                core.health.set_fatal(format!("revoke failed: {e:#}"));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut core = self.core.lock().unwrap();
                core.metrics.rebalances.inc();
                if let Err(e) = core.assign(consumer, tpl) {
                    tracing::error!("assigning partitions: {e:#}");
                    core.health
                        .set_rejoining(Some(format!("the assignment failed: {e:#}")));
                    // Half an assignment is no state to run in: the main loop rejoins.
                    core.rejoin_because = Some(format!("the assignment failed: {e:#}"));
                } else if core.rejoin_because.is_none() {
                    core.health.set_rejoining(None);
                }
                // Only now: readiness must never see the member joined with tasks not yet listed.
                core.health.set_joined();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }
}
