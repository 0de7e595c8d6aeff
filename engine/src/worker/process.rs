//! One record: decoded, through the job's steps, into the window (or forwarded), results to the
//! sink, a bad record by the job's policy.

use super::*;

impl Core {
    pub(super) fn process(
        &mut self,
        consumer: &GroupConsumer,
        msg: &rdkafka::message::BorrowedMessage<'_>,
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
                    next = task.positions[msg.topic()],
                    "records fetched again below the processed position; skipped"
                );
            }
            task.redelivered += 1;
            return Ok(());
        }
        task.last_record_at = Instant::now();
        let payload = msg.payload().unwrap_or_default();
        let from_repartition = self.repartition.as_deref() == Some(msg.topic());
        let mut store_error = None;
        let result = if let Some(forward) = &self.forward {
            forward
                .apply(payload, p, msg.offset(), now_ms())
                .map(|out| match out {
                    Some((key, value)) => self.emits.push(Emit {
                        key: key.unwrap_or_else(|| {
                            String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned()
                        }),
                        window_start: 0,
                        value,
                    }),
                    None => task.counters.filtered.inc(),
                })
        } else if from_repartition {
            // Second half of a re-keyed job: the record already went through the steps.
            crate::repartition::decode(msg.key(), payload).map(|r| {
                if task.seen.admit(r.source) {
                    store_error = aggregate(task, r.key, r.ts, r.value, &mut self.emits).err();
                } else {
                    task.counters.duplicates.inc();
                }
            })
        } else {
            let program = self.program.as_ref().expect("stateful job");
            self.decoder
                .decode(payload, msg.key(), msg.timestamp().to_millis())
                .and_then(|mut rec| {
                    if !program.run(&mut rec.values)? {
                        task.counters.filtered.inc();
                        return Ok(None);
                    }
                    Ok(Some((rec.key, rec.ts_ms, rec.values[program.value_slot])))
                })
                .map(|kept| match (kept, &self.repartition) {
                    (None, _) => {}
                    (Some((key, ts, value)), Some(_)) => {
                        self.repartitioned
                            .push((key, crate::repartition::encode(ts, value, p, msg.offset())));
                    }
                    (Some((key, ts, value)), None) => {
                        store_error = aggregate(task, &key, ts, value, &mut self.emits).err();
                    }
                })
        };
        if let Some(e) = store_error {
            // The task's state cannot be trusted past this record, nor skipped over: nothing of
            // this cycle is committed, and the worker rejoins (see `rejoin_because`).
            let reason = format!(
                "the state store of partition {p} failed at {}[{p}]@{}: {e}",
                msg.topic(),
                msg.offset()
            );
            return self.store_failed(p, reason, &e);
        }
        if let Some(topic) = &self.repartition {
            for (key, payload) in self.repartitioned.drain(..) {
                send(
                    &self.producer,
                    BaseRecord::to(topic).key(key.as_bytes()).payload(&payload),
                )?;
            }
        }
        if let Err(err) = result {
            // Bounded: the error may quote the record, which goes no further than this.
            let err = weir_operators::DecodeError(crate::secrets::redact(
                &weir_operators::excerpt::excerpt(
                    &err.0,
                    weir_operators::excerpt::MESSAGE_MAX_CHARS,
                ),
            ));
            let provenance = format!("{}[{}]@{}", msg.topic(), p, msg.offset());
            match self.policy {
                BadRecordPolicy::Fail => {
                    let reason = format!("bad record at {provenance}: {err}");
                    tracing::error!("{reason}; the task stops (bad_records = \"fail\"); nothing after it is committed");
                    // `/readyz` shows where, the log what (the error may quote the record).
                    task.failure = Some(format!(
                        "bad record at {provenance} (bad_records = \"fail\"; the error is in the log)"
                    ));
                    let topics = self.input_topics(&self.tasks[&p]);
                    self.set_state(p, TaskState::Failed);
                    consumer.pause(&tpl_of(&topics, &[p])).ok();
                    return Ok(());
                }
                BadRecordPolicy::Skip => {
                    tracing::warn!("skipped bad record at {provenance}: {err}");
                    task.counters.skipped.inc();
                }
                BadRecordPolicy::DeadLetter => {
                    let topic = self
                        .dead_letter_topic
                        .as_deref()
                        .expect("validated: dead_letter needs a topic");
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "weir.error",
                            value: Some(err.0.as_bytes()),
                        })
                        .insert(Header {
                            key: "weir.topic",
                            value: Some(msg.topic().as_bytes()),
                        })
                        .insert(Header {
                            key: "weir.partition",
                            value: Some(p.to_string().as_bytes()),
                        })
                        .insert(Header {
                            key: "weir.offset",
                            value: Some(msg.offset().to_string().as_bytes()),
                        });
                    let mut record = BaseRecord::to(topic).payload(payload).headers(headers);
                    if let Some(k) = msg.key() {
                        record = record.key(k);
                    }
                    send(&self.producer, record)?;
                    tracing::warn!("sent bad record at {provenance} to {topic}: {err}");
                    task.counters.dead_lettered.inc();
                }
            }
        }
        let task = self.tasks.get_mut(&p).expect("task");
        match task.positions.get_mut(msg.topic()) {
            Some(next) => *next = msg.offset() + 1,
            None => {
                task.positions
                    .insert(msg.topic().to_string(), msg.offset() + 1);
            }
        }
        task.counters.consumed.inc();
        if let (FetchHold::Never, Some(secs)) =
            (&self.fetch_hold, crate::failpoint::value("hold_fetch"))
        {
            let held = consumer.assignment()?;
            consumer.pause(&held)?;
            tracing::warn!("failpoint hold_fetch: no fetching for {secs} s");
            self.fetch_hold = FetchHold::Holding(Instant::now() + Duration::from_secs(secs), held);
        }
        self.flush_emits()
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
            match &self.sink_topic {
                Some(topic) => send(
                    &self.producer,
                    BaseRecord::to(topic)
                        .key(e.key.as_bytes())
                        .payload(&e.value),
                )?,
                None => println!("{}", String::from_utf8_lossy(&e.value)),
            }
        }
        self.metrics.records_produced.inc_by(emits.len() as u64);
        self.emits = emits;
        self.emits.clear();
        Ok(())
    }
}
