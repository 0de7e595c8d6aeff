//! Partitions arriving (tasks opened, the restore decided, input paused) and leaving (committed
//! and checkpointed unless lost, then closed).

use super::*;

/// A task directory's lock: its previous owner in this process (a revoked task still closing) or
/// another process on the host may hold it for a moment; ask a few times before giving up.
fn lock_task_dir(state_dir: &Path, job: &str, p: i32) -> anyhow::Result<TaskDir> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..5 {
        match TaskDir::lock(state_dir, job, p) {
            Ok(d) => return Ok(d),
            Err(e) => tracing::warn!(partition = p, "{e}; trying again in {wait:?}"),
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
    TaskDir::lock(state_dir, job, p).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Opens a store, asking again a few times while the error is transient (see
/// `StoreError::is_transient`).
fn open_store(path: &Path, resources: &SharedResources) -> Result<Store, StoreError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..5 {
        match Store::open(path, resources) {
            Err(e) if e.is_transient() => {
                tracing::warn!("opening {}: {e}; trying again in {wait:?}", path.display());
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    Store::open(path, resources)
}

impl Core {
    /// New partitions: open each task's store, decide what to restore, pause input until restored.
    pub(super) fn assign(
        &mut self,
        consumer: &GroupConsumer,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<()> {
        let mut new = Vec::new();
        for e in tpl.elements() {
            let task = self.tasks.entry(e.partition()).or_insert_with(|| {
                new.push(e.partition());
                self.health.set_task(e.partition(), Some("created".into()));
                Task::new(e.partition(), self.metrics.task_counters(e.partition()))
            });
            if !task.topics.iter().any(|t| t == e.topic()) {
                task.topics.push(e.topic().to_string());
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.metrics.tasks.set(self.tasks.len() as i64);
        tracing::info!(partitions = ?new, "partitions assigned");
        // The group's committed offsets: where input resumes, and which changelog records a
        // restore may apply (those of cycles that committed).
        let input_topics: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let committed = consumer
            .committed_offsets(tpl_of(&input_topics, &new), Duration::from_secs(30))
            .context("reading the group's committed offsets")?;
        for e in committed.elements() {
            if let (Offset::Offset(off), Some(task)) =
                (e.offset(), self.tasks.get_mut(&e.partition()))
            {
                task.committed.insert(e.topic().to_string(), off);
            }
        }
        let Some(window) = &self.window else {
            for p in new {
                self.set_state(p, TaskState::Running);
            }
            return Ok(());
        };
        let changelog = window.changelog.clone();
        let store_name = window.store.clone();
        let mut to_pause = Vec::new();
        for &p in &new {
            let dir = lock_task_dir(&self.state_dir, &self.job_name, p)?;
            let store = match open_store(&dir.db_path(), &self.resources) {
                Ok(s) => s,
                Err(e) if e.is_transient() => {
                    bail!("the store of partition {p} cannot be opened now: {e}")
                }
                Err(e) => {
                    tracing::warn!(partition = p, "local store cannot be opened ({e}); wiping it and restoring from {changelog}");
                    Store::destroy(&dir.db_path()).map_err(|e| anyhow::anyhow!("{e}"))?;
                    Checkpoint::delete(&dir.checkpoint_path())?;
                    Store::open(&dir.db_path(), &self.resources)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            let checkpoint = Checkpoint::read(&dir.checkpoint_path());
            let (mut store, from, mut checkpoint, mut wiped) = match checkpoint {
                Ok(cp) if cp.changelog_offsets.contains_key(&store_name) => {
                    let from = cp.changelog_offsets[&store_name];
                    (store, from, Some(cp), false)
                }
                other => {
                    let missing = matches!(other, Err(CheckpointError::Missing));
                    let why = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "checkpoint has no offset for this store".into(),
                    };
                    let empty = store.is_empty();
                    let store = if empty {
                        store
                    } else {
                        store
                            .wipe(&self.resources)
                            .map_err(|e| anyhow::anyhow!("{e}"))?
                    };
                    if !empty {
                        tracing::warn!(partition = p, "{why} and the local store is not empty: wiped, restoring all of {changelog}");
                        self.tasks[&p].counters.wipes.inc();
                    } else if !missing {
                        tracing::warn!(partition = p, "{why}; restoring all of {changelog}");
                    }
                    (store, 0, None, !empty)
                }
            };
            // The end is the high watermark, not the last stable offset: a transaction left open by
            // a replaced (zombie) worker holds the LSO back while committed records of later
            // owners lie beyond it. The read_committed restore consumer then waits until that
            // transaction is aborted (at its timeout) and reads on.
            // Leadership moves while a broker restarts (NotLeaderForPartition): ask again rather
            // than fail the assignment half-way, which would leave the new partitions unpaused
            // and their tasks unrestored.
            let asked = Instant::now();
            let (low, high) = loop {
                match self
                    .watermarks
                    .fetch_watermarks(&changelog, p, Duration::from_secs(10))
                {
                    Ok(w) => break w,
                    Err(e) if asked.elapsed() < Duration::from_secs(60) => {
                        tracing::warn!("end offsets of {changelog}[{p}]: {e}; asking again");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("end offsets of {changelog}[{p}]"))
                    }
                }
            };
            let mut from = from.max(low);
            if from > high && checkpoint.is_some() {
                // The checkpoint is ahead of the changelog: the topic was deleted and made again.
                // The store holds state of the old topic, and a restore from the checkpoint's
                // offset would skip the new topic's first records.
                tracing::warn!(partition = p, "the checkpoint is at {from} of {changelog}, which ends at {high}: the changelog was recreated; wiping the store and restoring all of it");
                Checkpoint::delete(&dir.checkpoint_path())?;
                store = store
                    .wipe(&self.resources)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                self.tasks[&p].counters.wipes.inc();
                checkpoint = None;
                wiped = true;
                from = low;
            }
            let task = self.tasks.get_mut(&p).expect("just inserted");
            task.dir = Some(dir);
            task.store = Some(store);
            task.checkpoint = checkpoint;
            task.changelog_next = Some(from);
            task.restore = Some(Restore {
                position: from,
                end: high,
                done: 0,
                skipped: 0,
                batch: Vec::new(),
                started: Instant::now(),
                wiped,
                undecodable: Default::default(),
            });
            self.metrics
                .restore_remaining
                .with_label_values(&[&p.to_string()])
                .set((high - from).max(0));
            self.set_state(p, TaskState::Restoring);
            to_pause.push(p);
        }
        consumer
            .pause(&tpl_of(&input_topics, &to_pause))
            .context("pausing restoring partitions")?;
        self.restore_assignment_stale = true;
        Ok(())
    }

    /// Partitions leaving: commit and checkpoint them (unless lost), then close their tasks.
    pub(super) fn revoke(
        &mut self,
        consumer: &GroupConsumer,
        partitions: &[i32],
        lost: bool,
    ) -> anyhow::Result<()> {
        let mut partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| self.tasks.contains_key(p))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            return Ok(());
        }
        tracing::info!(partitions = ?partitions, lost, "partitions revoked");
        if !lost {
            // Under exactly-once the transaction carries every task's results, changelog and
            // repartition records so far, not only the leaving tasks': committing it with only
            // their offsets would make the others' output visible while their input offsets stay
            // behind, and a crash then would emit it again. So every task commits (as Kafka
            // Streams does under EOS v2). At-least-once commits the leaving tasks alone.
            let only = (!self.transactional).then_some(partitions.as_slice());
            match self.commit(consumer, only) {
                // Inside a rebalance callback the group cannot be left and rejoined: rewind in place.
                Err(e) if e.is::<Aborted>() => self.rewind(consumer, &format!("{e:#}"))?,
                other => other?,
            }
            crate::failpoint::hit("after_revoke_commit");
        } else if self.transactional {
            // The lost tasks' uncommitted work is in the open transaction with everyone else's:
            // abort it, and every task goes back to its committed offsets.
            self.rewind(consumer, "partitions were lost")?;
        }
        for p in partitions {
            let state = self.tasks[&p].state();
            if state == TaskState::Restoring {
                self.restore_assignment_stale = true;
            }
            if state != TaskState::Created {
                self.set_state(p, TaskState::Suspended);
            }
            self.set_state(p, TaskState::Closed);
            self.tasks.remove(&p);
            self.metrics.forget_partition(p);
            self.health.set_task(p, None);
        }
        self.metrics.tasks.set(self.tasks.len() as i64);
        Ok(())
    }
}
