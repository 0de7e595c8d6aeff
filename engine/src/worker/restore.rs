//! Restore: changelog records replayed into restoring tasks by the group-less restore consumer;
//! a task that reached the changelog's end resumes its input.

use super::*;

impl Core {
    /// Replays changelog records into restoring tasks; finishes the tasks that reached the end.
    pub(super) fn restore_step(
        &mut self,
        consumer: &GroupConsumer,
        wait: Duration,
    ) -> anyhow::Result<()> {
        let Some(window) = &self.window else {
            return Ok(());
        };
        let changelog = window.changelog.clone();
        let kind = window.window.kind;
        let restoring: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state() == TaskState::Restoring)
            .map(|(p, _)| *p)
            .collect();
        if restoring.is_empty() {
            if self.restore_assignment_stale {
                self.restore_consumer.unassign()?;
                self.restore_assignment_stale = false;
            }
            return Ok(());
        }
        if self.restore_assignment_stale {
            let mut tpl = TopicPartitionList::new();
            for p in &restoring {
                let r = self.tasks[p]
                    .restore
                    .as_ref()
                    .expect("restoring task has restore state");
                tpl.add_partition_offset(&changelog, *p, Offset::Offset(r.position))?;
            }
            self.restore_consumer
                .assign(&tpl)
                .context("assigning changelog partitions to the restore consumer")?;
            self.restore_assignment_stale = false;
        }
        let mut wait = wait;
        for _ in 0..5000 {
            let Some(msg) = self.restore_consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let msg = match msg {
                // Brokers away for now: the restore goes on from its position when they are back.
                Err(KafkaError::MessageConsumption(code))
                    if crate::commit::coordinator_unavailable(code) =>
                {
                    tracing::warn!("reading {changelog}: {code}; retrying");
                    break;
                }
                other => other.with_context(|| format!("reading {changelog}"))?,
            };
            let Some(task) = self.tasks.get_mut(&msg.partition()) else {
                continue;
            };
            let Some(r) = task.restore.as_mut() else {
                continue;
            };
            r.done += 1;
            r.position = msg.offset() + 1;
            let header = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == INPUT_OFFSETS_HEADER)
                    .and_then(|h| h.value)
            });
            if !written_by_committed_cycle(header, &task.committed) {
                r.skipped += 1;
                continue;
            }
            let key = msg.key().unwrap_or_default();
            match msg.payload() {
                Some(v) => {
                    if let Err(e) = check_state_entry(kind, key, v) {
                        if r.undecodable.is_empty() {
                            tracing::error!(
                                partition = msg.partition(),
                                offset = msg.offset(),
                                "{changelog}: {e}"
                            );
                        }
                        r.undecodable.insert(key.to_vec());
                        continue;
                    }
                    r.undecodable.remove(key);
                }
                None => {
                    r.undecodable.remove(key);
                }
            }
            r.batch
                .push((key.to_vec(), msg.payload().map(<[u8]>::to_vec)));
        }
        let positions = self.restore_consumer.position().unwrap_or_default();
        for p in restoring {
            let task = self.tasks.get_mut(&p).expect("restoring task");
            let store = task.store.as_ref().expect("restoring task has a store");
            let r = task.restore.as_mut().expect("restoring");
            if let Some(Offset::Offset(pos)) =
                positions.find_partition(&changelog, p).map(|e| e.offset())
            {
                r.position = r.position.max(pos);
            }
            let finished = r.position >= r.end;
            if r.batch.len() >= 10_000 || (finished && !r.batch.is_empty()) {
                let batch = std::mem::take(&mut r.batch);
                store
                    .write(batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let label = p.to_string();
            task.counters
                .restored
                .inc_by(r.done - task.counters.restored.get());
            let remaining = (r.end - r.position).max(0);
            self.metrics
                .restore_remaining
                .with_label_values(&[&label])
                .set(remaining);
            let rate = r.done as f64 / r.started.elapsed().as_secs_f64().max(1e-3);
            self.metrics
                .restore_seconds_to_ready
                .with_label_values(&[&label])
                .set(if rate > 0.0 {
                    remaining as f64 / rate
                } else {
                    0.0
                });
            if finished {
                self.finish_restore(consumer, p)?;
            }
        }
        if self.last_restore_log.elapsed() > Duration::from_secs(5) {
            self.last_restore_log = Instant::now();
            for (p, t) in self
                .tasks
                .iter()
                .filter(|(_, t)| t.state() == TaskState::Restoring)
            {
                let r = t.restore.as_ref().expect("restoring");
                tracing::info!(
                    partition = p,
                    done = r.done,
                    remaining = (r.end - r.position).max(0),
                    "restoring {changelog}"
                );
            }
        }
        Ok(())
    }

    pub(super) fn finish_restore(
        &mut self,
        consumer: &GroupConsumer,
        p: i32,
    ) -> anyhow::Result<()> {
        let window = self.window.as_ref().expect("stateful job");
        let task = self.tasks.get_mut(&p).expect("task");
        let r = task.restore.take().expect("restoring");
        if let Some(example) = r.undecodable.iter().next() {
            // The changelog is the source of truth: a wipe would replay the same records. The
            // task does not run on state with holes; it says why.
            let reason = format!(
                "{} holds {} key(s) whose latest state does not decode (e.g. {}): the state cannot be rebuilt",
                window.changelog,
                r.undecodable.len(),
                String::from_utf8_lossy(example).escape_debug()
            );
            tracing::error!(partition = p, "{reason}");
            // `/readyz` says what, the log which keys (record contents stay in the log).
            task.failure = Some(format!(
                "{} holds {} key(s) whose latest state does not decode: the state cannot be rebuilt (the keys are in the log)",
                window.changelog,
                r.undecodable.len()
            ));
            self.set_state(p, TaskState::Failed);
            return Ok(());
        }
        let store = task.store.as_ref().expect("store");
        store.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
        let cp = Checkpoint {
            changelog_offsets: [(window.store.clone(), r.position)].into(),
            input_offset: task
                .checkpoint
                .as_ref()
                .map(|c| c.input_offset)
                .unwrap_or(0),
        };
        let path = task.dir.as_ref().expect("dir").checkpoint_path();
        cp.write(&path, task.checkpoint.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        task.checkpoint = Some(cp);
        task.changelog_next = Some(r.position);
        task.last_checkpoint_at = Instant::now();
        let agg = open_window_aggregate(
            store,
            &window.window,
            window.functions.clone(),
            window.key_name.clone(),
            self.cache_bytes,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        task.agg = Some(agg);
        task.seen = crate::repartition::Seen::load(store).map_err(|e| anyhow::anyhow!("{e}"))?;
        task.last_record_at = Instant::now();
        let secs = r.started.elapsed().as_secs_f64();
        tracing::info!(
            partition = p,
            records = r.done,
            skipped_uncommitted = r.skipped,
            wiped = r.wiped,
            seconds = format!("{secs:.2}"),
            records_per_s = format!("{:.0}", r.done as f64 / secs.max(1e-3)),
            "restored; task running"
        );
        let topics = self.input_topics(&self.tasks[&p]);
        self.set_state(p, TaskState::Running);
        self.metrics
            .restore_remaining
            .with_label_values(&[&p.to_string()])
            .set(0);
        self.metrics
            .restore_seconds_to_ready
            .with_label_values(&[&p.to_string()])
            .set(0.0);
        consumer
            .resume(&tpl_of(&topics, &[p]))
            .context("resuming a restored partition")?;
        self.restore_assignment_stale = true;
        Ok(())
    }
}
