//! The drill's input: meter readings generated from the seed alone, produced at a steady rate while
//! the faults happen, with every broker acknowledgement recorded (the oracle counts exactly the
//! acknowledged records).

use super::scenario::InputPlan;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_engine::generator::{splitmix64, GeneratorSpec, Reading};

/// Event time of the first reading: 2026-01-01T00:00:00Z.
pub const START_MS: i64 = 1_767_225_600_000;

impl InputPlan {
    /// Reading number `i`, in production order: every meter at one instant, then the next instant,
    /// so event time never goes backwards within a partition.
    pub fn reading(&self, i: u64) -> Reading {
        let meters = self.meters.max(1) as u64;
        let (n, m) = (i / meters, (i % meters) as u32);
        let r = splitmix64(self.seed ^ splitmix64(((m as u64) << 32) | n));
        let bad = (r >> 40) % 1000 < self.bad_per_mille as u64;
        // Up to 2 kWh per interval with three decimals, like a real register; a faulty one reads
        // below zero.
        let kwh = if bad {
            -(((r >> 20) % 1000) as f64 / 1000.0 + 0.001)
        } else {
            (r % 2000) as f64 / 1000.0
        };
        Reading {
            meter_id: GeneratorSpec::meter_id(m),
            ts_ms: START_MS + n as i64 * self.interval_ms,
            kwh,
        }
    }

    /// Event time of the last reading.
    pub fn last_ts_ms(&self) -> i64 {
        START_MS + (self.readings_per_meter() as i64 - 1).max(0) * self.interval_ms
    }
}

const PENDING: u8 = 0;
const ACKED: u8 = 1;
const FAILED: u8 = 2;

/// Delivery state of every input record, by reading number.
pub struct Acks {
    state: Vec<AtomicU8>,
    acked: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Acks {
    fn new(total: u64) -> Acks {
        Acks {
            state: (0..total).map(|_| AtomicU8::new(PENDING)).collect(),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failure: Mutex::new(None),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn first_failure(&self) -> Option<String> {
        self.first_failure.lock().unwrap().clone()
    }

    /// Reading numbers the broker acknowledged.
    pub fn acknowledged(&self) -> impl Iterator<Item = u64> + '_ {
        self.state
            .iter()
            .enumerate()
            .filter(|(_, s)| s.load(Ordering::Relaxed) == ACKED)
            .map(|(i, _)| i as u64)
    }
}

struct AckContext(Arc<Acks>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let acks = &self.0;
        let (state, counter) = match result {
            Ok(_) => (ACKED, &acks.acked),
            Err((e, _)) => {
                acks.first_failure
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
                (FAILED, &acks.failed)
            }
        };
        if let Some(s) = acks.state.get(index) {
            s.store(state, Ordering::Relaxed);
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn producer<C: ProducerContext>(
    bootstrap: &str,
    context: C,
) -> anyhow::Result<ThreadedProducer<C>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Keyed by meter id with the partitioner the engine's producer uses.
        .set("partitioner", "murmur2_random")
        // Never give up on a record: through a broker bounce the input waits, it is not lost.
        .set("message.timeout.ms", "0")
        .create_with_context(context)?)
}

fn send_retrying<C: ProducerContext>(
    p: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if stop.load(Ordering::Relaxed) {
                    anyhow::bail!("stopped");
                }
                record = r;
                // The local queue is full (the broker is slow or away): back off.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// The input being produced on its own thread.
pub struct Feeder {
    pub acks: Arc<Acks>,
    pub sent: Arc<AtomicU64>,
    pub total: u64,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Feeder {
    /// Starts producing the plan's readings to `topic` at its rate.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        plan: InputPlan,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Feeder> {
        let total = plan.total();
        let acks = Arc::new(Acks::new(total));
        let p = producer(bootstrap, AckContext(acks.clone()))?;
        let sent = Arc::new(AtomicU64::new(0));
        let (topic, sent2) = (topic.to_string(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("drill-input".into())
            .spawn(move || -> anyhow::Result<()> {
                let started = Instant::now();
                let rate = plan.rate.max(1) as f64;
                for i in 0..total {
                    // Pace: record i leaves at i / rate seconds.
                    let due = Duration::from_secs_f64(i as f64 / rate);
                    let now = started.elapsed();
                    if due > now {
                        std::thread::sleep((due - now).min(Duration::from_millis(20)));
                        if due > started.elapsed() {
                            std::thread::sleep(due.saturating_sub(started.elapsed()));
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        anyhow::bail!("stopped");
                    }
                    let r = plan.reading(i);
                    let payload = r.to_json();
                    let record = BaseRecord::with_opaque_to(&topic, i as usize)
                        .key(r.meter_id.as_bytes())
                        .payload(payload.as_slice());
                    send_retrying(&p, record, &stop)?;
                    sent2.fetch_add(1, Ordering::Relaxed);
                }
                // Wait for every acknowledgement (no timeout on records: they are retried until
                // the broker takes them).
                while p.in_flight_count() > 0 {
                    if stop.load(Ordering::Relaxed) {
                        anyhow::bail!("stopped");
                    }
                    let _ = p.flush(Duration::from_millis(200));
                }
                Ok(())
            })?;
        Ok(Feeder {
            acks,
            sent,
            total,
            handle: Some(handle),
        })
    }

    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the input thread; its error, if any.
    pub fn join(&mut self) -> anyhow::Result<()> {
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the input thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// One reading a day after the last one on every partition, keyed `sentinel-<p>`: stream time then
/// passes every window's end plus grace, so every window closes without any wall-clock rule.
pub fn send_sentinels(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    after_ts_ms: i64,
) -> anyhow::Result<()> {
    struct Quiet;
    impl ClientContext for Quiet {}
    impl ProducerContext for Quiet {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
    }
    let p = producer(bootstrap, Quiet)?;
    let stop = AtomicBool::new(false);
    for part in 0..partitions as i32 {
        let key = format!("sentinel-{part}");
        let payload = Reading {
            meter_id: key.clone(),
            ts_ms: after_ts_ms + 86_400_000,
            kwh: 0.0,
        }
        .to_json();
        let record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_slice())
            .partition(part);
        send_retrying(&p, record, &stop)?;
    }
    p.flush(Duration::from_secs(120))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> InputPlan {
        InputPlan {
            meters: 7,
            hours: 3,
            interval_ms: 300_000,
            rate: 100,
            seed: 42,
            bad_per_mille: 50,
        }
    }

    #[test]
    fn readings_depend_on_the_seed_only_and_event_time_never_goes_back() {
        let p = plan();
        let a: Vec<Reading> = (0..p.total()).map(|i| p.reading(i)).collect();
        let b: Vec<Reading> = (0..p.total()).map(|i| p.reading(i)).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 7 * 3 * 12);
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        assert_eq!(a.last().unwrap().ts_ms, p.last_ts_ms());
        let other = InputPlan { seed: 43, ..p };
        assert_ne!(a[3], other.reading(3));
    }

    #[test]
    fn some_readings_are_negative_as_configured() {
        let p = InputPlan {
            meters: 100,
            hours: 10,
            ..plan()
        };
        let bad = (0..p.total()).filter(|&i| p.reading(i).kwh < 0.0).count() as f64;
        let share = bad / p.total() as f64;
        assert!((0.03..0.07).contains(&share), "{share}");
        let none = InputPlan {
            bad_per_mille: 0,
            ..p
        };
        assert!((0..none.total()).all(|i| none.reading(i).kwh >= 0.0));
    }
}
