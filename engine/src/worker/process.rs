//! One record: to its task, through the job's pipeline (forwarded, re-keyed, or aggregated into
//! the task's window state), results to the sink; a record that does not decode goes to
//! `bad_records.rs`, a store that fails to `closing.rs`.

use super::*;
use crate::pipeline::Aggregation;
use rdkafka::message::BorrowedMessage;

/// What the pipeline made of a record, for the task's counters.
enum Applied {
    Kept,
    Filtered,
    Late,
    /// A copy of a record the task already applied (a first hop that replayed its input).
    Duplicate,
}

/// Why a record did not go through.
enum Refused {
    /// It does not decode (a bad record, by the job's policy).
    Bad(weir_operators::DecodeError),
    /// The task's store failed under it (no bad record: the task's state is in question).
    Store(weir_state::StoreError),
}

impl TaskManager {
    /// Reads the clocks for the batch of records polled next, once rather than per record:
    /// processing time (event-time plausibility, forwarded records) and the instant a task
    /// notes as its last record (idle close).
    pub(super) fn begin_batch(&mut self) {
        let ms = now_ms();
        self.pipeline.set_processing_time(ms);
        self.batch_clock = (Instant::now(), ms);
    }

    pub(super) fn process(
        &mut self,
        consumer: &GroupConsumer,
        msg: &BorrowedMessage<'_>,
    ) -> anyhow::Result<()> {
        let p = msg.partition();
        let Some(task) = self.tasks.get_mut(&p) else {
            tracing::warn!(
                partition = p,
                offset = msg.offset(),
                "record for a partition this worker does not own; ignored"
            );
            return Ok(());
        };
        if task.state() != TaskState::Running {
            // Fetched before the pause took effect: put it back so it is read again on resume.
            consumer
                .seek(
                    msg.topic(),
                    p,
                    Offset::Offset(msg.offset()),
                    Duration::from_secs(1),
                )
                .ok();
            return Ok(());
        }
        if task
            .offsets
            .positions
            .get(msg.topic())
            .is_some_and(|&next| msg.offset() < next)
        {
            // The fetch went backwards without this worker asking (e.g. the consumer's offset
            // reset after a broker restart): these records are already in the task's state and
            // output; processing them again would count them twice.
            if task.redelivered.is_multiple_of(100_000) {
                tracing::warn!(
                    partition = p,
                    topic = msg.topic(),
                    offset = msg.offset(),
                    next = task.offsets.positions[msg.topic()],
                    "records fetched again below the processed position; skipped"
                );
            }
            task.redelivered += 1;
            return Ok(());
        }
        task.last_record_at = self.batch_clock.0;
        let applied = match &self.pipeline {
            Pipeline::Forward(forward) => {
                let payload = msg.payload().unwrap_or_default();
                match forward.apply(payload, p, msg.offset(), self.batch_clock.1) {
                    Ok(Some((key, value))) => {
                        self.emits.push(Emit {
                            key: key.unwrap_or_else(|| {
                                String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned()
                            }),
                            window_start: 0,
                            value,
                        });
                        Ok(Applied::Kept)
                    }
                    Ok(None) => Ok(Applied::Filtered),
                    Err(e) => Err(Refused::Bad(e)),
                }
            }
            Pipeline::Aggregate(agg) => {
                let active = task.running().expect("a running task");
                aggregate(agg, active, msg, &mut self.emits, &mut self.repartitioned)
            }
        };
        match applied {
            Ok(Applied::Kept) => {}
            Ok(Applied::Filtered) => task.counters.filtered.inc(),
            Ok(Applied::Late) => task.counters.late.inc(),
            Ok(Applied::Duplicate) => task.counters.duplicates.inc(),
            Err(Refused::Store(e)) => {
                // The task's state cannot be trusted past this record, nor skipped over: nothing
                // of this cycle is committed, and the worker rejoins (see `rejoin_because`).
                let reason = format!(
                    "the state store of partition {p} failed at {}[{p}]@{}: {e}",
                    msg.topic(),
                    msg.offset()
                );
                return self.store_failed(p, reason, &e);
            }
            Err(Refused::Bad(e)) => {
                if !self.bad_record(consumer, msg, e)? {
                    return Ok(());
                }
            }
        }
        self.send_repartitioned()?;
        let task = self.tasks.get_mut(&p).expect("task");
        task.offsets.advance(msg.topic(), msg.offset());
        task.counters.consumed.inc();
        self.failpoint_hold_fetch(consumer)?;
        self.flush_emits()?;
        // A send that waited on a full queue (Kafka away) may have lasted longer than an idle
        // close or the event-time skew: the batch's clocks are read again.
        if self.collector.take_waited() {
            self.begin_batch();
            if let Some(task) = self.tasks.get_mut(&p) {
                task.last_record_at = self.batch_clock.0;
            }
        }
        Ok(())
    }

    fn send_repartitioned(&mut self) -> anyhow::Result<()> {
        let Some(topic) = self.pipeline.repartition() else {
            return Ok(());
        };
        for (key, payload) in self.repartitioned.drain(..) {
            self.collector
                .send(Outgoing::to(topic, Some(key.as_bytes()), &payload))
                .with_context(|| format!("producing to {topic}"))?;
        }
        Ok(())
    }

    /// Sends the results produced so far to the sink.
    pub(super) fn flush_emits(&mut self) -> anyhow::Result<()> {
        if self.emits.is_empty() {
            return Ok(());
        }
        let emits = std::mem::take(&mut self.emits);
        for e in &emits {
            if crate::failpoint::fires("drop_output") {
                tracing::warn!(key = %e.key, "failpoint drop_output: result record dropped");
                continue;
            }
            self.sink
                .write(&self.collector, e.key.as_bytes(), &e.value)?;
        }
        self.metrics.records_produced.inc_by(emits.len() as u64);
        // The buffer's capacity is kept for the next results.
        self.emits = emits;
        self.emits.clear();
        Ok(())
    }

    /// Failpoint `hold_fetch:<s>`: after the first record, no fetching for s seconds.
    fn failpoint_hold_fetch(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        if let (FetchHold::Never, Some(secs)) =
            (&self.fetch_hold, crate::failpoint::value("hold_fetch"))
        {
            let held = consumer.assignment()?;
            consumer.pause(&held)?;
            tracing::warn!("failpoint hold_fetch: no fetching for {secs} s");
            self.fetch_hold = FetchHold::Holding(Instant::now() + Duration::from_secs(secs), held);
        }
        Ok(())
    }

    /// Ends a `hold_fetch` failpoint's pause once it is due.
    pub(super) fn end_fetch_hold(&mut self, consumer: &GroupConsumer) -> anyhow::Result<()> {
        if let FetchHold::Holding(until, held) = &self.fetch_hold {
            if Instant::now() >= *until {
                consumer.resume(held)?;
                tracing::warn!("failpoint hold_fetch: fetching again");
                self.fetch_hold = FetchHold::Done;
            }
        }
        Ok(())
    }
}

/// A record of a stateful job: decoded and through the steps, then re-keyed (first hop of a
/// `key_by` job) or aggregated; a record read back from the repartition topic (second hop) went
/// through the steps already.
fn aggregate(
    job: &Aggregation,
    active: &mut Active,
    msg: &BorrowedMessage<'_>,
    emits: &mut Vec<Emit>,
    repartitioned: &mut Vec<(String, Vec<u8>)>,
) -> Result<Applied, Refused> {
    let state = active
        .state
        .as_mut()
        .expect("a stateful task has window state");
    let payload = msg.payload().unwrap_or_default();
    let add = |state: &mut WindowState, key: &str, ts, value, emits: &mut Vec<Emit>| match state
        .aggregate(key, ts, value, emits)
    {
        Ok(true) => Ok(Applied::Kept),
        Ok(false) => Ok(Applied::Late),
        Err(e) => Err(Refused::Store(e)),
    };
    if job.repartition.as_deref() == Some(msg.topic()) {
        let r = crate::repartition::decode(msg.key(), payload).map_err(Refused::Bad)?;
        if !state.seen.admit(r.source) {
            return Ok(Applied::Duplicate);
        }
        return add(state, r.key, r.ts, r.value, emits);
    }
    let mut rec = job
        .decoder
        .decode(payload, msg.key(), msg.timestamp().to_millis())
        .map_err(Refused::Bad)?;
    if !job.program.run(&mut rec.values).map_err(Refused::Bad)? {
        return Ok(Applied::Filtered);
    }
    let value = rec.values[job.program.value_slot];
    if job.repartition.is_some() {
        let encoded = crate::repartition::encode(rec.ts_ms, value, msg.partition(), msg.offset());
        repartitioned.push((rec.key, encoded));
        return Ok(Applied::Kept);
    }
    add(state, &rec.key, rec.ts_ms, value, emits)
}
