//! The commit cycle: each task's changed state to the changelog, results to the sink, then the
//! guarantee's commit step makes outputs, changelog and offsets durable together; only after it
//! is state applied to the stores and checkpointed. An aborted cycle rewinds every task to its
//! committed state and offsets, in place, or (after a failed store or assignment) the worker gives
//! up its tasks and rejoins.

use super::*;

/// What a commit cycle came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cycle {
    Committed,
    /// The group moved on before the offsets committed: every task went back to its committed
    /// state and offsets, in place.
    Rewound,
    /// Nothing of the cycle is visible; the tasks still hold its state (the caller rewinds, or
    /// gives up the tasks and rejoins).
    Aborted(String),
}

impl TaskManager {
    /// The commit cycle for `only` (or every task).
    pub(crate) fn commit(
        &mut self,
        consumer: &GroupConsumer,
        only: Option<&[i32]>,
    ) -> Result<Cycle, StepError> {
        if let Some(why) = &self.rejoin_because {
            // Uncommitted work may hold a half-applied record: none of it may be committed.
            return Ok(Cycle::Aborted(why.clone()));
        }
        let started = Instant::now();
        let partitions: Vec<i32> = self
            .tasks
            .iter_mut()
            .filter_map(|(p, t)| {
                (only.is_none_or(|o| o.contains(p)) && t.committing().is_some()).then_some(*p)
            })
            .collect();
        // 1. Every changed state entry once: to the changelog now, to the store after the commit.
        if let Err(e) = self.prepare(&partitions) {
            // The open transaction refused the records (an abortable error, e.g. records that
            // timed out in an outage): abort it, as for an abortable commit.
            if let Some(why) = self.collector.take_abortable() {
                self.sink.abort();
                return Ok(Cycle::Aborted(format!(
                    "the transaction must be aborted: {why}"
                )));
            }
            return Err(e);
        }
        // 2. Make outputs, changelog and offsets durable together (the guarantee-specific step).
        let mut offsets = TopicPartitionList::new();
        let mut covered = Vec::new();
        for p in &partitions {
            for (topic, off) in self.tasks[p].offsets.uncommitted() {
                offsets
                    .add_partition_offset(topic, *p, Offset::Offset(off))
                    .map_err(|e| StepError::Fatal(e.into()))?;
                covered.push((topic.to_string(), *p, off));
            }
        }
        match self
            .commit_step
            .commit(&self.collector, consumer, &offsets, &self.health)?
        {
            Outcome::Committed => {}
            Outcome::Aborted(why) => {
                self.sink.abort();
                return Ok(Cycle::Aborted(why));
            }
            Outcome::Rebalancing => {
                // The offsets of this cycle are not committed, so its state must not reach the
                // stores either, or the records processed again from the committed offsets
                // would count twice. Its changelog records carry the uncommitted offsets, which a
                // restore skips.
                self.sink.abort();
                self.rewind(
                    consumer,
                    "the offsets could not be committed (the group is rebalancing)",
                )?;
                return Ok(Cycle::Rewound);
            }
        }
        self.sink.committed(&covered)?;
        for (topic, p, off) in covered {
            if let Some(task) = self.tasks.get_mut(&p) {
                task.offsets.committed.insert(topic, off);
            }
        }
        crate::failpoint::hit("before_state_apply");
        // 3. Only now apply the buffered state writes and move the checkpoints.
        for p in &partitions {
            let cp_started = Instant::now();
            // Delivery reports are per process and may predate this task (the partition left and
            // came back): the task's state never claims less than it already knew.
            let next = self.collector.changelog_next(*p);
            let task = self.tasks.get_mut(p).expect("a task of this cycle");
            let input_offset = task.offsets.committed.values().copied().max().unwrap_or(0);
            let Some(state) = task.committing().and_then(|a| a.state.as_mut()) else {
                continue;
            };
            let moved = state
                .post_commit(next, input_offset, || {
                    crate::failpoint::hit("before_checkpoint")
                })
                .map_err(|e| StepError::Fatal(anyhow::anyhow!("partition {p}: {e}")))?;
            if moved {
                self.metrics
                    .checkpoint_duration
                    .observe(cp_started.elapsed().as_secs_f64());
            }
        }
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commits.inc();
        Ok(Cycle::Committed)
    }

    /// Step 1 of a cycle: changed state to the changelog, results to the sink.
    fn prepare(&mut self, partitions: &[i32]) -> Result<(), StepError> {
        for p in partitions {
            self.send_changed_state(*p)?;
        }
        self.flush_emits()?;
        self.sink.prepare_commit()?;
        Ok(())
    }

    /// Step 1 of a cycle for task `p`: its changed entries to the changelog, each marked with the
    /// offsets this cycle is about to commit (a restore skips them if the commit never happens).
    fn send_changed_state(&mut self, p: i32) -> Result<(), StepError> {
        let Some(window) = self.pipeline.window() else {
            return Ok(());
        };
        let task = self.tasks.get_mut(&p).expect("a task of this cycle");
        let mark = encode_input_offsets(
            task.topics
                .iter()
                .filter_map(|t| Some((t.as_str(), task.offsets.next(t)?))),
        );
        let Some(state) = task.committing().and_then(|a| a.state.as_mut()) else {
            return Ok(());
        };
        for (k, v) in state.prepare_commit(&mut self.emits) {
            let headers = OwnedHeaders::new().insert(Header {
                key: INPUT_OFFSETS_HEADER,
                value: Some(mark.as_bytes()),
            });
            self.collector
                .send(Outgoing {
                    topic: &window.changelog,
                    partition: Some(p),
                    key: Some(k),
                    payload: v.as_deref(),
                    headers: Some(headers),
                })
                .map_err(|e| {
                    StepError::Fatal(anyhow::anyhow!("producing to {}: {e}", window.changelog))
                })?;
        }
        Ok(())
    }

    /// After an aborted commit or a fence: give up every task (their state is what was
    /// committed) and make the producer usable again, by an abort or, when it was fenced, by a
    /// new producer with the same identity. The caller then opens the same partitions again in
    /// place (`reopen`) or leaves and rejoins the group, so every partition is restored and read
    /// again from its committed offset by the ordinary path.
    pub(super) fn restart_after_abort(&mut self) -> Result<(), StepError> {
        self.close_all();
        self.emits.clear();
        self.repartitioned.clear();
        self.sink.abort();
        self.restorer.stale = true;
        if !std::mem::take(&mut self.renew_producer) {
            match self.commit_step.recover(&self.collector) {
                Err(StepError::Fenced(why)) => {
                    tracing::warn!(
                        "the transaction could not be aborted ({why}): renewing the producer"
                    )
                }
                other => return other,
            }
        }
        self.metrics.producer_renewals.inc();
        self.commit_step
            .renew(&mut self.collector, &self.health)
            .map_err(StepError::Fatal)?;
        tracing::info!("a new producer took over the transactional id");
        Ok(())
    }

    /// The producer can no longer be used: a transaction outlived the transaction timeout (a
    /// broker outage, a stalled thread) and the coordinator bumped its epoch, or another
    /// producer took its transactional id. Nothing of the open transaction can commit, and none
    /// of the tasks' uncommitted work may reach their stores: at its next turn the worker gives
    /// up every task, renews the producer (`init_transactions` then fences any real twin) and
    /// opens the tasks again, like Kafka Streams closing its tasks dirty. A live twin is told by
    /// the group (see `rejoin`).
    pub(crate) fn producer_fenced(&mut self, why: String) {
        tracing::warn!("the producer was fenced: {why}");
        self.renew_producer = true;
        self.rejoin_because
            .get_or_insert(format!("the producer was fenced ({why})"));
    }

    /// A fence becomes [`TaskManager::producer_fenced`] (the loop rejoins at its next turn);
    /// other errors pass.
    pub(crate) fn unless_fenced(&mut self, r: Result<(), StepError>) -> anyhow::Result<()> {
        match r {
            Err(StepError::Fenced(why)) => {
                self.producer_fenced(why);
                Ok(())
            }
            Err(StepError::Fatal(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// The producer's fatal error, if it has one: every send and commit fails from then on.
    pub(crate) fn producer_failed(&self) -> Option<String> {
        self.collector.fatal_error()
    }

    /// After an aborted cycle: nothing of it is visible, so every task forgets its uncommitted
    /// state and reads again from its committed offsets.
    pub(crate) fn rewind(&mut self, consumer: &GroupConsumer, why: &str) -> Result<(), StepError> {
        tracing::warn!("{why}; rewinding every task to its committed offsets");
        self.commit_step.recover(&self.collector)?;
        let _ = self.collector.take_abortable();
        self.emits.clear();
        self.sink.abort();
        for task in self.tasks.values_mut() {
            if let Some(state) = task.committing().and_then(|a| a.state.as_mut()) {
                state
                    .discard_uncommitted()
                    .map_err(|e| StepError::Fatal(e.into()))?;
            }
            task.offsets.positions.clear();
            if task.state() != TaskState::Running {
                continue;
            }
            for t in &task.topics {
                let to = task.offsets.resume_at(t);
                if let Err(e) = consumer.seek(t, task.partition, to, Duration::from_secs(10)) {
                    tracing::warn!(partition = task.partition, "rewinding {t}: {e}");
                }
            }
        }
        Ok(())
    }
}
