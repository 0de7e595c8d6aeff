//! The commit cycle (outputs, changelog, offsets durable together, then state applied and
//! checkpointed), rewind and restart after an abort, gauges, closing every task.

use super::*;

impl Core {
    /// The commit cycle for `only` (or every task): changelog + outputs flushed, offsets committed,
    /// state applied and checkpointed. The commit step itself is pluggable (see `commit.rs`).
    pub(crate) fn commit(
        &mut self,
        consumer: &GroupConsumer,
        only: Option<&[i32]>,
    ) -> anyhow::Result<()> {
        if let Some(why) = &self.rejoin_because {
            // Uncommitted work may hold a half-applied record: none of it may be committed.
            return Err(anyhow::Error::new(Aborted(why.clone())));
        }
        let started = Instant::now();
        let partitions: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(p, t)| {
                only.is_none_or(|o| o.contains(p))
                    && matches!(t.state(), TaskState::Running | TaskState::Failed)
            })
            .map(|(p, _)| *p)
            .collect();
        // 1. Every dirty state entry once: to the changelog now, to the store after the commit.
        if let Some(window) = &self.window {
            for p in &partitions {
                let task = self.tasks.get_mut(p).expect("task");
                let Some(agg) = task.agg.as_mut() else {
                    continue;
                };
                let mut writes = agg.take_dirty(&mut self.emits);
                // The second hop's de-duplication state goes with the window state it guards.
                writes.extend(task.seen.take_dirty());
                // The offsets this cycle is about to commit: a restore skips these records if
                // the commit never happens.
                let mark = encode_input_offsets(task.topics.iter().filter_map(|t| {
                    let off = task.positions.get(t).or_else(|| task.committed.get(t))?;
                    Some((t.as_str(), *off))
                }));
                for (k, v) in &writes {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: INPUT_OFFSETS_HEADER,
                        value: Some(mark.as_bytes()),
                    });
                    let mut record = BaseRecord::to(&window.changelog)
                        .partition(*p)
                        .key(k.as_slice())
                        .headers(headers);
                    if let Some(v) = v {
                        record = record.payload(v.as_slice());
                    }
                    send(&self.producer, record)?;
                }
                task.pending.extend(writes);
            }
        }
        self.flush_emits()?;
        // 2. Make outputs, changelog and offsets durable together (the guarantee-specific step).
        let mut offsets = TopicPartitionList::new();
        for p in &partitions {
            for (topic, off) in self.tasks[p].uncommitted() {
                offsets.add_partition_offset(topic, *p, Offset::Offset(off))?;
            }
        }
        let committed = match self
            .commit
            .commit(&self.producer, consumer, &offsets, &self.health)
        {
            Ok(c) => c,
            Err(CommitFailure::Fatal(e)) => return Err(e),
            Err(CommitFailure::Abortable(why)) => return Err(anyhow::Error::new(Aborted(why))),
        };
        if !committed {
            // The group moved on (rebalance, this member expelled): the offsets of this cycle are
            // not committed, so its state must not reach the stores either, or the records
            // processed again from the committed offsets would count twice. Its changelog records
            // carry the uncommitted offsets, which a restore skips.
            return self.rewind(
                consumer,
                "the offsets could not be committed (the group is rebalancing)",
            );
        }
        for e in offsets.elements() {
            if let (Some(task), Offset::Offset(off)) =
                (self.tasks.get_mut(&e.partition()), e.offset())
            {
                task.committed.insert(e.topic().to_string(), off);
            }
        }
        crate::failpoint::hit("before_state_apply");
        // 3. Only now apply the buffered state writes and move the checkpoints.
        if let Some(window) = &self.window {
            for p in &partitions {
                let cp_started = Instant::now();
                let task = self.tasks.get_mut(p).expect("task");
                let Some(store) = task.store.as_ref() else {
                    continue;
                };
                // Delivery reports are per process and may predate this task (the partition left
                // and came back): never claim less than the task already knew.
                let next = self
                    .producer
                    .context()
                    .changelog_next(*p)
                    .max(task.changelog_next);
                let pending = std::mem::take(&mut task.pending);
                if pending.is_empty() && next == task.changelog_next && task.checkpoint.is_some() {
                    continue;
                }
                store
                    .write(pending.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                store.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
                crate::failpoint::hit("before_checkpoint");
                let cp = Checkpoint {
                    changelog_offsets: [(window.store.clone(), next.unwrap_or(0))].into(),
                    input_offset: task
                        .committed
                        .values()
                        .copied()
                        .max()
                        .unwrap_or(0)
                        .max(task.checkpoint.as_ref().map_or(0, |c| c.input_offset)),
                };
                let path = task
                    .dir
                    .as_ref()
                    .expect("stateful task has a dir")
                    .checkpoint_path();
                cp.write(&path, task.checkpoint.as_ref())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                task.checkpoint = Some(cp);
                task.changelog_next = next;
                task.last_checkpoint_at = Instant::now();
                self.metrics
                    .checkpoint_duration
                    .observe(cp_started.elapsed().as_secs_f64());
            }
        }
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commits.inc();
        Ok(())
    }

    /// After an aborted commit: give up every task (their state is what was committed) and make
    /// the producer usable again; the caller then leaves and rejoins the group, so every partition
    /// is assigned, restored and read again from its committed offset by the ordinary path.
    pub(super) fn restart_after_abort(&mut self) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        self.close_all();
        for p in partitions {
            self.metrics.forget_partition(p);
            self.health.set_task(p, None);
        }
        self.metrics.tasks.set(0);
        self.emits.clear();
        self.restore_assignment_stale = true;
        self.commit.recover(&self.producer)
    }

    /// After an aborted transaction: nothing of the cycle is visible, so every task forgets its
    /// uncommitted state and reads again from its committed offsets.
    pub(super) fn rewind(&mut self, consumer: &GroupConsumer, why: &str) -> anyhow::Result<()> {
        tracing::warn!("{why}; rewinding every task to its committed offsets");
        self.commit.recover(&self.producer)?;
        self.emits.clear();
        for task in self.tasks.values_mut() {
            task.pending.clear();
            if let (Some(agg), Some(store)) = (task.agg.as_mut(), task.store.as_ref()) {
                agg.discard_uncommitted(store)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                task.seen =
                    crate::repartition::Seen::load(store).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            task.positions.clear();
            if task.state() != TaskState::Running {
                continue;
            }
            for t in &task.topics {
                let to = task
                    .committed
                    .get(t)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                if let Err(e) = consumer.seek(t, task.partition, to, Duration::from_secs(10)) {
                    tracing::warn!(partition = task.partition, "rewinding {t}: {e}");
                }
            }
        }
        Ok(())
    }

    pub(super) fn update_gauges(&self) {
        self.metrics
            .block_cache_bytes
            .set(self.resources.block_cache_usage() as i64);
        self.metrics
            .write_buffer_bytes
            .set(self.resources.write_buffer_usage() as i64);
        for (p, t) in &self.tasks {
            let label = p.to_string();
            if let Some(s) = &t.store {
                self.metrics
                    .state_size
                    .with_label_values(&[&label])
                    .set(s.estimated_size_bytes() as i64);
                self.metrics
                    .checkpoint_age
                    .with_label_values(&[&label])
                    .set(t.last_checkpoint_at.elapsed().as_secs_f64());
            }
        }
    }

    pub(super) fn close_all(&mut self) {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            let state = self.tasks[&p].state();
            if state != TaskState::Created {
                self.set_state(p, TaskState::Suspended);
            }
            self.set_state(p, TaskState::Closed);
            self.tasks.remove(&p);
        }
    }
}
