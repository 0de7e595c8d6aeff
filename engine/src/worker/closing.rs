//! When windows close outside a record: the wall-clock idle close, the batches left after a
//! commit, and a task whose store failed.

use super::*;
use weir_state::StoreError;

impl TaskManager {
    /// Wall-clock idle close for tasks that received nothing for `close_idle_after` and are caught
    /// up: every input partition read to its end, as the partition leader says now. A task that is
    /// behind (a backlog, a broker that is down or away) is not idle: closing its windows then
    /// would make the records still to come late.
    pub(super) fn close_idle(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        let Some(idle) = self.pipeline.window().and_then(|w| w.idle_close) else {
            return Ok(());
        };
        let mut failed = None;
        for task in self
            .tasks
            .values_mut()
            .filter(|t| t.state() == TaskState::Running)
        {
            if task.last_record_at.elapsed() < idle {
                continue;
            }
            let p = task.partition;
            let fetched = &self.fetched;
            // (why not, whether the leader could not be asked)
            let behind = task.topics.iter().find_map(|topic| {
                let next = task.offsets.next(topic);
                let drained = fetched.get(&(topic.clone(), p)).copied();
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(1)) {
                    Ok((_, high)) if crate::task::caught_up(next, high, drained) => None,
                    Ok((_, high)) => Some((
                        format!(
                            "{topic}[{p}] is behind (next {next:?}, fetched {drained:?}, end {high})"
                        ),
                        false,
                    )),
                    Err(e) => Some((format!("{topic}[{p}]: end offset unknown ({e})"), true)),
                }
            });
            if let Some((why, unreachable)) = behind {
                tracing::debug!(partition = p, "no idle close: {why}");
                task.last_record_at = if unreachable {
                    // Disconnected: silence counts again from now, once connected (the records
                    // producers held back during an outage arrive after it).
                    Instant::now()
                } else {
                    // Behind: ask again in a few seconds, not at every turn of the loop.
                    Instant::now()
                        .checked_sub(idle.saturating_sub(Duration::from_secs(5)))
                        .unwrap_or_else(Instant::now)
                };
                continue;
            }
            task.last_record_at = Instant::now();
            let state = task.running().and_then(|a| a.state.as_mut());
            if let Some(Err(e)) = state.map(|s| s.close_all(&mut self.emits)) {
                failed = Some((p, e));
                break;
            }
        }
        if let Some((p, e)) = failed {
            let reason = format!("the state store of partition {p} failed at idle close: {e}");
            return self.store_failed(p, reason, &e);
        }
        self.flush_emits()
    }

    /// A task whose store failed: its state cannot be trusted past this point, nor skipped over.
    /// Nothing of this cycle is committed, and the worker rejoins (see `rejoin_because`).
    pub(super) fn store_failed(
        &mut self,
        p: i32,
        reason: String,
        e: &StoreError,
    ) -> anyhow::Result<()> {
        tracing::error!("{reason}");
        let task = self.tasks.get_mut(&p).expect("task");
        if e.0.starts_with("Corruption") {
            // Damaged local state: without a checkpoint, the next assignment wipes the store
            // and restores it from the changelog.
            if let Some(state) = task.running().and_then(|a| a.state.as_mut()) {
                state.local.distrust()?;
            }
        }
        // The log has the whole reason; `/readyz` and the rejoin reason leave out the data.
        let shown = format!("the state store of partition {p} failed: {}", e.summary());
        self.fail_task(p, shown.clone());
        self.rejoin_because.get_or_insert(shown);
        Ok(())
    }

    /// Windows that closed but did not fit in the last commit cycle (see `close_due` in the
    /// operators): the next batch of each task, now. True when some remain after it, so that the
    /// caller commits again without waiting for the interval.
    pub(super) fn continue_closing(&mut self) -> anyhow::Result<bool> {
        let mut pending = false;
        let mut failed = None;
        for task in self.tasks.values_mut() {
            let Some(state) = task.running().and_then(|a| a.state.as_mut()) else {
                continue;
            };
            match state.continue_closing(&mut self.emits) {
                Ok(more) => pending |= more,
                Err(e) => {
                    failed = Some((task.partition, e));
                    break;
                }
            }
        }
        if let Some((p, e)) = failed {
            let reason = format!("the state store of partition {p} failed closing windows: {e}");
            return self.store_failed(p, reason, &e).map(|_| false);
        }
        self.flush_emits()?;
        Ok(pending)
    }
}
