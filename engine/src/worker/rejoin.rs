//! Giving up every task and joining the group again: after a failed assignment or store, and
//! after the group fenced the consumer's static instance id (a new consumer joins in its place,
//! unless that happens again soon: a live twin). Under the consumer group protocol (KIP-848) it
//! is the joining member that is refused while another holds its instance id: a predecessor
//! killed without leaving holds it until the broker's session times out, so the worker retries
//! every few seconds, not ready, and stops only when the refusals outlast that session by far.
//! After a fenced producer whose consumer still holds its assignment, the tasks are opened again
//! in place instead: no rebalance, so no member waits for another that is still stuck in an
//! outage.

use super::run::Loop;
use super::*;

/// A consumer fenced again within this long after it was replaced (or within twice the session
/// timeout, if longer) means another live process holds the same instance id.
const TWIN_WINDOW: Duration = Duration::from_secs(60);

/// How often a refused instance id (KIP-848's UNRELEASED_INSTANCE_ID) asks again.
const REFUSED_RETRY: Duration = Duration::from_secs(2);

impl Loop {
    /// Gives up every task and its uncommitted work. After a fenced producer, with the consumer
    /// still a member, the tasks are opened again in place. Otherwise the worker leaves the group
    /// (with a new consumer, if the group fenced this one) and joins it again after a pause that
    /// doubles (1 s to 30 s) while no task gets to run.
    pub(super) fn rejoin(&mut self, why: String) -> anyhow::Result<()> {
        let consumer_fenced = self.started.consumer.client().fatal_error().is_some();
        if !consumer_fenced && self.started.core.lock().unwrap().renew_producer {
            tracing::warn!("{why}: closing every task, opening them again in place");
            self.health.set_rejoining(Some(why));
            let mut c = self.started.core.lock().unwrap();
            c.restart_after_abort()?;
            if let Err(e) = c.reopen(&self.started.consumer) {
                // The next turn rejoins the group instead.
                c.rejoin_because = Some(format!("opening the tasks again failed: {e:#}"));
            }
            if c.rejoin_because.is_none() {
                self.health.set_rejoining(None);
            }
            return Ok(());
        }
        let fatal = self.started.consumer.client().fatal_error();
        let refused = matches!(&fatal, Some((RDKafkaErrorCode::UnreleasedInstanceId, _)));
        self.rejoin_backoff = if refused {
            REFUSED_RETRY
        } else {
            (self.rejoin_backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
        };
        tracing::warn!(
            "{why}: closing every task, rejoining the group in {:.0?}",
            self.rejoin_backoff
        );
        self.health.set_rejoining(Some(why));
        self.started.core.lock().unwrap().restart_after_abort()?;
        match fatal {
            Some((_, reason)) if refused => self.retry_refused(&reason)?,
            Some((code, reason)) => self.renew_consumer(&format!("{code}: {reason}"))?,
            None => self.started.consumer.unsubscribe(),
        }
        let until = Instant::now() + self.rejoin_backoff;
        while Instant::now() < until && !self.shutdown.load(Ordering::Relaxed) {
            self.health.beat();
            std::thread::sleep(Duration::from_millis(100));
        }
        let names: Vec<&str> = self.started.subscribed.iter().map(String::as_str).collect();
        self.started
            .consumer
            .subscribe(&names)
            .context("subscribing again")?;
        Ok(())
    }

    /// The group fenced the consumer (librdkafka makes that fatal): a new consumer with the same
    /// instance id takes its place. With a 10 s session a restarted group coordinator can load
    /// the group after the member's session ran out; the member's next request under its old
    /// member id is then fenced by its own instance id. A second fence soon after the first is
    /// another process with the same instance id, alive: two such workers would keep taking each
    /// other's partitions, so this one stops, and says so.
    fn renew_consumer(&mut self, fatal: &str) -> anyhow::Result<()> {
        let window = TWIN_WINDOW.max(self.started.consumers.session_timeout * 2);
        if let Some(at) = self.consumer_renewed_at.filter(|at| at.elapsed() < window) {
            let who = match &self.started.consumers.instance_id {
                Some(id) => format!("another live worker uses instance id {id}"),
                None => "the consumer keeps failing".into(),
            };
            bail!(
                "{who}: the group fenced this worker again {:.0}s after it rejoined ({fatal}); stopping, so that the other keeps the partitions",
                at.elapsed().as_secs_f64()
            );
        }
        tracing::warn!(
            "the group fenced this worker's consumer ({fatal}): a new consumer joins in its place"
        );
        self.replace_consumer()?;
        self.consumer_renewed_at = Some(Instant::now());
        Ok(())
    }

    /// The group refused this worker's instance id as held by another member (librdkafka makes
    /// it fatal): a predecessor that died without leaving holds it until the broker's session
    /// (`group.consumer.session.timeout.ms`, 45 s by default) runs out, a live twin holds it for
    /// good. A new consumer asks again; refusals for twice that session (at least a minute)
    /// mean a twin, and this worker stops, leaving the partitions to it.
    fn retry_refused(&mut self, reason: &str) -> anyhow::Result<()> {
        // Refusals more than a few retries apart are separate episodes: the member was
        // accepted in between (a worker with no partitions never runs a task to say so).
        let since = match self.refused_since {
            Some((since, last)) if last.elapsed() < REFUSED_RETRY * 5 => since,
            _ => Instant::now(),
        };
        self.refused_since = Some((since, Instant::now()));
        let window = TWIN_WINDOW.max(self.started.consumers.session_timeout * 2);
        if since.elapsed() >= window {
            let id = self.started.consumers.instance_id.as_deref().unwrap_or("-");
            bail!(
                "another live worker uses instance id {id}: the group has refused it for {:.0}s ({reason}); stopping, so that the other keeps the partitions",
                since.elapsed().as_secs_f64()
            );
        }
        tracing::warn!(
            "the group refuses this worker's instance id as still held ({reason}): a predecessor's session has not run out yet; asking again in {REFUSED_RETRY:?}"
        );
        self.replace_consumer()
    }

    /// A new consumer with the same configuration in place of the one librdkafka failed for good.
    fn replace_consumer(&mut self) -> anyhow::Result<()> {
        self.metrics.consumer_renewals.inc();
        let fresh = self.started.consumers.create()?;
        // Closing the old one runs its callbacks, which lock the manager: not locked here. Its
        // tasks are closed already, so nothing is committed under the old identity.
        drop(std::mem::replace(&mut self.started.consumer, fresh));
        Ok(())
    }
}
