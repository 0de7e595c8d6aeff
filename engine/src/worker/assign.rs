//! Partitions arriving (tasks opened, their restore decided, input paused) and leaving (committed
//! and checkpointed unless lost, then closed).

use super::*;
use weir_state::{OpenError, RestoreFrom};

impl TaskManager {
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
                Task::new(e.partition(), self.metrics.task_counters(e.partition()))
            });
            if !task.topics.iter().any(|t| t == e.topic()) {
                task.topics.push(e.topic().to_string());
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        for p in &new {
            self.publish(*p);
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
        // Bounded: the callback holds the worker's thread, and under exactly-once the open
        // transaction with it. Past the budget the assignment fails and the worker rejoins,
        // which aborts the transaction before the coordinator would (its timeout).
        let deadline = Instant::now() + self.assign_budget;
        let committed = consumer
            .committed_offsets(tpl_of(&input_topics, &new), self.assign_budget)
            .context("reading the group's committed offsets")?;
        for e in committed.elements() {
            if let (Offset::Offset(off), Some(task)) =
                (e.offset(), self.tasks.get_mut(&e.partition()))
            {
                task.offsets.committed.insert(e.topic().to_string(), off);
            }
        }
        let Some(window) = self.pipeline.window() else {
            for p in new {
                if let Some(task) = self.tasks.get_mut(&p) {
                    task.run(Active { state: None });
                }
                self.publish(p);
            }
            return Ok(());
        };
        let (changelog, store_name) = (window.changelog.clone(), window.store.clone());
        for &p in &new {
            let bounds = self.restorer.bounds(&changelog, p, deadline)?;
            let dir = TaskDir::lock_patiently(&self.stores.state_dir, &self.job_name, p)?;
            let (local, from) =
                match LocalState::open(dir, &store_name, &self.stores.resources, bounds) {
                    Ok(opened) => opened,
                    Err(e @ OpenError::Transient(_)) => bail!("partition {p}: {e}"),
                    Err(e) => return Err(e).context(format!("opening the state of partition {p}")),
                };
            let task = self.tasks.get_mut(&p).expect("just inserted");
            match &from {
                RestoreFrom::Tail(_) => {}
                RestoreFrom::Everything {
                    wiped: true, why, ..
                } => {
                    tracing::warn!(
                        partition = p,
                        "{why}: the local store was wiped, restoring all of {changelog}"
                    );
                    task.counters.wipes.inc();
                }
                RestoreFrom::Everything { why, .. } => {
                    tracing::info!(partition = p, "{why}; restoring all of {changelog}")
                }
            }
            let restoring = Restoring::new(local, from.offset(), bounds.1, from.wiped());
            self.metrics
                .restore_remaining
                .with_label_values(&[&p.to_string()])
                .set(restoring.remaining());
            task.begin_restore(restoring);
            self.publish(p);
        }
        consumer
            .pause(&tpl_of(&input_topics, &new))
            .context("pausing restoring partitions")?;
        self.restorer.stale = true;
        Ok(())
    }

    /// After every task was closed dirty (a fenced producer) while the consumer keeps its
    /// assignment: the same partitions opened again, as if just assigned (restored from their
    /// checkpoints' changelog tail), their input read again from the committed offsets.
    pub(super) fn reopen(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        let assignment = consumer.assignment().context("reading the assignment")?;
        self.assign(consumer, &assignment)?;
        for task in self.tasks.values() {
            for t in &task.topics {
                consumer
                    .seek(
                        t,
                        task.partition,
                        task.offsets.resume_at(t),
                        Duration::from_secs(10),
                    )
                    .with_context(|| format!("reading {t}[{}] again", task.partition))?;
            }
        }
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
            // Inside a rebalance callback the group cannot be left and rejoined: rewind in place.
            let committed = match self.commit(consumer, only) {
                Ok(Cycle::Aborted(why)) => self.rewind(consumer, &why),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            self.unless_fenced(committed)?;
            crate::failpoint::hit("after_revoke_commit");
        } else if self.transactional {
            // The lost tasks' uncommitted work is in the open transaction with everyone else's:
            // abort it, and every task goes back to its committed offsets.
            let rewound = self.rewind(consumer, "partitions were lost");
            self.unless_fenced(rewound)?;
        }
        self.close_tasks(&partitions);
        Ok(())
    }
}
