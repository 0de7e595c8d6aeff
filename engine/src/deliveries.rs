//! Delivery reports of the worker's producer: the first failure (so a commit never claims records
//! Kafka did not take) and, per changelog partition, the offset after the last record written,
//! which the task's next checkpoint records.

use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::Mutex;

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
