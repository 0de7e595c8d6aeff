//! The record collector: the one owner of the worker's producer, its sends and their delivery
//! reports. Every record the worker writes (results, changelog entries, re-keyed records, dead
//! letters) goes through [`RecordCollector::send`]; the delivery reports keep the first failure (so
//! that a commit never claims records Kafka did not take) and, per changelog partition, the offset
//! after the last record written, which the task's next checkpoint records.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One record to write.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// None: a tombstone.
    pub payload: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

impl<'a> Outgoing<'a> {
    pub fn to(topic: &'a str, key: Option<&'a [u8]>, payload: &'a [u8]) -> Outgoing<'a> {
        Outgoing {
            topic,
            partition: None,
            key,
            payload: Some(payload),
            headers: None,
        }
    }
}

pub struct RecordCollector {
    producer: BaseProducer<Deliveries>,
    /// Why a send was refused because the open transaction must be aborted first (librdkafka's
    /// `__STATE` after an abortable error, e.g. records that timed out during an outage).
    abortable: Mutex<Option<String>>,
    /// What the producer was made from, for [`RecordCollector::renew`].
    config: ClientConfig,
    /// Told that the worker is alive while a send waits on a full queue (an outage).
    health: Option<std::sync::Arc<crate::health::Health>>,
    changelog: Option<String>,
    /// A send waited on a full queue since [`RecordCollector::take_waited`] last asked.
    waited: std::sync::atomic::AtomicBool,
}

impl RecordCollector {
    /// A collector whose producer is made from `config`; `changelog` is the topic whose delivered
    /// offsets are tracked.
    pub fn create(
        config: ClientConfig,
        changelog: Option<String>,
    ) -> Result<RecordCollector, KafkaError> {
        let producer = config.create_with_context(Deliveries::new(changelog.clone()))?;
        Ok(RecordCollector {
            producer,
            waited: Default::default(),
            abortable: Mutex::new(None),
            config,
            health: None,
            changelog,
        })
    }

    /// True once after a send waited on a full queue (Kafka away): clocks read before it are stale.
    pub fn take_waited(&self) -> bool {
        self.waited
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits on a full queue count as a live worker (see `Health::stuck`).
    pub fn with_health(mut self, health: std::sync::Arc<crate::health::Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Replaces a producer that can no longer be used (fenced, its epoch bumped by a transaction
    /// timeout) by a new one from the same configuration, hence with the same transactional id:
    /// what was queued is dropped (it belonged to a transaction that will never commit); what was
    /// learnt of the changelog's offsets is kept.
    pub fn renew(&mut self) -> Result<(), KafkaError> {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.producer.poll(Duration::from_millis(100));
        let fresh: BaseProducer<Deliveries> = self
            .config
            .create_with_context(Deliveries::new(self.changelog.clone()))?;
        {
            let old = self.producer.context().state.lock().unwrap();
            fresh.context().state.lock().unwrap().changelog_next = old.changelog_next.clone();
        }
        self.producer = fresh;
        *self.abortable.lock().unwrap() = None;
        Ok(())
    }

    /// Sends one record, waiting (and serving delivery reports) while the producer queue is full.
    pub fn send(&self, out: Outgoing<'_>) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(out.topic);
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(v) = out.payload {
            record = record.payload(v);
        }
        if let Some(h) = out.headers {
            record = record.headers(h);
        }
        let mut full_since: Option<std::time::Instant> = None;
        let mut said = Duration::ZERO;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.waited
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.producer.poll(Duration::from_millis(50));
                    if let Some(h) = &self.health {
                        h.beat();
                    }
                    let full = full_since
                        .get_or_insert_with(std::time::Instant::now)
                        .elapsed();
                    if full >= said + Duration::from_secs(10) {
                        said = full;
                        tracing::warn!(
                            "the producer queue has been full for {}s ({} records not acknowledged)",
                            full.as_secs(),
                            self.producer.in_flight_count()
                        );
                        // Under exactly-once the open transaction would outlive its timeout:
                        // give it up (the caller aborts and rewinds) rather than wait on.
                        if self.transactional() {
                            self.refuse(out.topic, &e);
                            return Err(e);
                        }
                    }
                }
                Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::State), _)) => {
                    self.refuse(out.topic, &e);
                    return Err(e);
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn transactional(&self) -> bool {
        self.config.get("transactional.id").is_some()
    }

    /// Notes that the open transaction cannot take more records: see `take_abortable`.
    fn refuse(&self, topic: &str, e: &KafkaError) {
        self.abortable
            .lock()
            .unwrap()
            .get_or_insert_with(|| format!("producing to {topic}: {e}"));
    }

    /// Why a send was refused because the open transaction must be aborted first, if one was
    /// since the last call: the caller aborts the transaction and rewinds, it does not stop.
    pub fn take_abortable(&self) -> Option<String> {
        self.abortable.lock().unwrap().take()
    }

    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<String> {
        self.producer.context().take_failure()
    }

    /// The producer's fatal error (fenced, its epoch bumped), if it has one: it can send nothing
    /// more, and only [`RecordCollector::renew`] helps.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, why)| format!("{code}: {why}"))
    }

    /// The offset after the last changelog record delivered to `partition` by this process.
    pub fn changelog_next(&self, partition: i32) -> Option<i64> {
        self.producer.context().changelog_next(partition)
    }

    /// Serves delivery reports.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// The producer, for the guarantee's commit step (flush, transactions).
    pub fn producer(&self) -> &BaseProducer<Deliveries> {
        &self.producer
    }
}

/// The producer's context: delivery reports.
pub struct Deliveries {
    changelog: Option<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failure: Option<String>,
    changelog_next: HashMap<i32, i64>,
}

impl Deliveries {
    pub fn new(changelog: Option<String>) -> Deliveries {
        Deliveries {
            changelog,
            state: Mutex::new(State::default()),
        }
    }

    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<String> {
        self.state.lock().unwrap().failure.take()
    }

    /// The offset after the last changelog record delivered to `partition`.
    pub fn changelog_next(&self, partition: i32) -> Option<i64> {
        self.state
            .lock()
            .unwrap()
            .changelog_next
            .get(&partition)
            .copied()
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut s = self.state.lock().unwrap();
        match result {
            Ok(m) => {
                if self.changelog.as_deref() == Some(m.topic()) {
                    let next = s.changelog_next.entry(m.partition()).or_insert(0);
                    *next = (*next).max(m.offset() + 1);
                }
            }
            Err((e, m)) => {
                if s.failure.is_none() {
                    s.failure = Some(format!(
                        "delivery to {}[{}] failed: {e}",
                        m.topic(),
                        m.partition()
                    ));
                }
            }
        }
    }
}
