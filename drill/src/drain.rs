//! The end of a drill's input: sentinels that close every window, then waiting until the group has
//! committed all of its input and no transaction is open on the output.

use crate::input;
use crate::run::await_condition;
use crate::timeline::Drill;
use std::time::{Duration, Instant};

/// How the drain went.
pub struct Drained {
    /// Every input record was committed in time.
    pub drained: bool,
    /// Seconds from the end of the input to the drain (or to giving up).
    pub seconds: f64,
}

impl Drill<'_> {
    pub fn drain(&mut self, feeder: &input::Feeder) -> anyhow::Result<Drained> {
        let partitions = *self.plan.scenario.partitions.get_ref();
        // Close every window, then wait for the group to commit all of its input.
        self.progress.phase("draining");
        input::send_sentinels(
            &self.bootstrap,
            &self.names.input,
            partitions,
            self.plan.input.last_ts_ms(),
        )?;
        let drain_from = Instant::now();
        let drain_timeout = self
            .plan
            .scenario
            .drain_timeout
            .map(|t| t.std())
            .unwrap_or(Duration::from_secs(180));
        let mut drained = false;
        while drain_from.elapsed() < drain_timeout {
            self.workers.reap();
            if self.workers.live_count() == 0 {
                self.progress.event("no worker is left to drain the input");
                break;
            }
            let ends = self.probe.end_offsets(&self.names.input, partitions);
            let committed = self.probe.committed_offsets(&self.names.input, partitions);
            if let (Some(e), Some(c)) = (&ends, &committed) {
                if e == c {
                    drained = true;
                    break;
                }
            }
            self.check_brokers();
            self.status(feeder, "draining");
            std::thread::sleep(Duration::from_millis(200));
        }
        let drain_s = drain_from.elapsed().as_secs_f64();
        self.progress.event(&if drained {
            format!("drained: every input record committed ({drain_s:.1} s after the input ended)")
        } else {
            format!("NOT drained within {}s", drain_timeout.as_secs())
        });
        // Under exactly-once, results are visible once no transaction is open on the output.
        let names = &self.names;
        let stable = await_condition(Duration::from_secs(60), || {
            matches!((self.probe.stable_offsets(&names.output, partitions), self.probe.end_offsets(&names.output, partitions)),
                (Some(s), Some(e)) if s == e)
        });
        if !stable {
            self.progress.event(
                "a transaction is still open on the output after 60 s; reading what is committed",
            );
        }
        Ok(Drained {
            drained,
            seconds: drain_s,
        })
    }
}
