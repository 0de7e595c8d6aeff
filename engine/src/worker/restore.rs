//! The changelog reader: a group-less, read_committed consumer replays changelog records into
//! restoring tasks; a task that reached the changelog's end resumes its input.

use super::*;
use crate::task::Replayed;

pub(crate) struct ChangelogReader {
    consumer: BaseConsumer,
    /// read_uncommitted client for high watermarks.
    watermarks: BaseConsumer,
    /// The restoring set changed: the reader's assignment must follow.
    pub stale: bool,
    last_log: Instant,
}

impl ChangelogReader {
    pub fn new(consumer: BaseConsumer, watermarks: BaseConsumer) -> ChangelogReader {
        ChangelogReader {
            consumer,
            watermarks,
            stale: false,
            last_log: Instant::now(),
        }
    }

    /// The changelog partition's (low, high) watermarks. The end is the high watermark, not the
    /// last stable offset: a transaction left open by a replaced (zombie) worker holds the LSO
    /// back while committed records of later owners lie beyond it; the read_committed reader then
    /// waits until that transaction is aborted (at its timeout) and reads on.
    /// Leadership moves while a broker restarts (NotLeaderForPartition): ask again rather than
    /// fail the assignment half-way, which would leave new partitions unpaused and unrestored.
    /// Asks until `deadline` (see `TaskManager::assign_budget`).
    pub fn bounds(&self, changelog: &str, p: i32, deadline: Instant) -> anyhow::Result<(i64, i64)> {
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(100), Duration::from_secs(10));
            match self.watermarks.fetch_watermarks(changelog, p, left) {
                Ok(w) => return Ok(w),
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!("end offsets of {changelog}[{p}]: {e}; asking again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("end offsets of {changelog}[{p}]"))
                }
            }
        }
    }
}

impl TaskManager {
    /// Replays changelog records into restoring tasks; finishes the tasks that reached the end.
    pub(super) fn restore_step(
        &mut self,
        consumer: &GroupConsumer,
        wait: Duration,
    ) -> anyhow::Result<()> {
        let Some(window) = self.pipeline.window() else {
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
        let reader = &mut self.restorer;
        if restoring.is_empty() {
            if reader.stale {
                reader.consumer.unassign()?;
                reader.stale = false;
            }
            return Ok(());
        }
        if reader.stale {
            let mut tpl = TopicPartitionList::new();
            for (p, task) in &self.tasks {
                if let Some(r) = task.restoring() {
                    tpl.add_partition_offset(&changelog, *p, Offset::Offset(r.position))?;
                }
            }
            reader
                .consumer
                .assign(&tpl)
                .context("assigning changelog partitions to the restore consumer")?;
            reader.stale = false;
        }
        let mut wait = wait;
        for _ in 0..5000 {
            let Some(msg) = reader.consumer.poll(wait) else {
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
            let Some((r, committed)) = self
                .tasks
                .get_mut(&msg.partition())
                .and_then(|t| t.restoring_mut())
            else {
                continue;
            };
            let header = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == INPUT_OFFSETS_HEADER)
                    .and_then(|h| h.value)
            });
            let key = msg.key().unwrap_or_default();
            if let Replayed::FirstUndecodable(e) =
                r.replay(kind, msg.offset(), key, msg.payload(), header, committed)
            {
                tracing::error!(
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "{changelog}: {e}"
                );
            }
        }
        let positions = reader.consumer.position().unwrap_or_default();
        let mut finished = Vec::new();
        for p in restoring {
            let task = self.tasks.get_mut(&p).expect("restoring task");
            let restored = task.counters.restored.get();
            let (r, _) = task.restoring_mut().expect("restoring");
            if let Some(Offset::Offset(pos)) =
                positions.find_partition(&changelog, p).map(|e| e.offset())
            {
                r.position = r.position.max(pos);
            }
            r.apply_batch()?;
            let (done, remaining, eta) = (r.done, r.remaining(), r.seconds_to_ready());
            if r.finished() {
                finished.push(p);
            }
            task.counters.restored.inc_by(done - restored);
            let label = p.to_string();
            self.metrics
                .restore_remaining
                .with_label_values(&[&label])
                .set(remaining);
            self.metrics
                .restore_seconds_to_ready
                .with_label_values(&[&label])
                .set(eta);
        }
        for p in finished {
            self.finish_restore(consumer, p)?;
        }
        if self.restorer.last_log.elapsed() > Duration::from_secs(5) {
            self.restorer.last_log = Instant::now();
            for (p, t) in &self.tasks {
                if let Some(r) = t.restoring() {
                    tracing::info!(
                        partition = p,
                        done = r.done,
                        remaining = r.remaining(),
                        "restoring {changelog}"
                    );
                }
            }
        }
        Ok(())
    }

    /// A task that read its changelog to the end: checkpointed and running, or failed when some
    /// of its state does not decode.
    fn finish_restore(&mut self, consumer: &GroupConsumer, p: i32) -> anyhow::Result<()> {
        let window = self.pipeline.window().expect("a stateful job");
        let cache_bytes = self.stores.cache_bytes;
        let task = self.tasks.get_mut(&p).expect("a restoring task");
        task.complete_restoration(|mut r| -> anyhow::Result<_> {
            if let Some(example) = r.undecodable.iter().next() {
                // The changelog is the source of truth: a wipe would replay the same records. The
                // task does not run on state with holes; it says why (`/readyz` says what, the
                // log which keys: record contents stay in the log).
                tracing::error!(
                    partition = p,
                    "{} holds {} key(s) whose latest state does not decode (e.g. {}): the state cannot be rebuilt",
                    window.changelog,
                    r.undecodable.len(),
                    String::from_utf8_lossy(example).escape_debug()
                );
                return Ok(Err(format!(
                    "{} holds {} key(s) whose latest state does not decode: the state cannot be rebuilt (the keys are in the log)",
                    window.changelog,
                    r.undecodable.len()
                )));
            }
            let input_offset = r.local.checkpoint().map_or(0, |c| c.input_offset);
            r.local.checkpoint_at(r.position, input_offset, || {})?;
            let agg = window.open(&r.local.store, cache_bytes)?;
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
            Ok(Ok(Active {
                state: Some(WindowState::new(r.local, agg)?),
            }))
        })?;
        let topics = task.topics.clone();
        let running = task.state() == TaskState::Running;
        self.publish(p);
        let label = p.to_string();
        self.metrics
            .restore_remaining
            .with_label_values(&[&label])
            .set(0);
        self.metrics
            .restore_seconds_to_ready
            .with_label_values(&[&label])
            .set(0.0);
        if running {
            consumer
                .resume(&tpl_of(&topics, &[p]))
                .context("resuming a restored partition")?;
        }
        self.restorer.stale = true;
        Ok(())
    }
}
