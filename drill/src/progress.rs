//! What the drill shows while it runs: a progress bar on a terminal, plain lines otherwise (a log
//! or CI), with one line per event either way.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    last_plain: Instant,
    t0: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:>9} [{bar:30}] {pos}/{len} records  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            last_plain: Instant::now(),
            t0: Instant::now(),
        }
    }

    /// From now on, event times count from `t0` (the first input record).
    pub fn set_t0(&mut self, t0: Instant, records: u64) {
        self.t0 = t0;
        if let Some(b) = &self.bar {
            b.set_length(records);
        }
    }

    fn stamp(&self) -> String {
        let t = super::monitor::signed_secs(self.t0, Instant::now());
        format!("[{t:>7.2} s]")
    }

    /// One event, e.g. a fault.
    pub fn event(&self, msg: &str) {
        let line = format!("{} {msg}", self.stamp());
        match &self.bar {
            Some(b) => b.println(line),
            None => println!("{line}"),
        }
    }

    /// The phase (starting, timeline, draining, verifying).
    pub fn phase(&self, phase: &str) {
        match &self.bar {
            Some(b) => b.set_prefix(phase.to_string()),
            None => println!("{} {phase}", self.stamp()),
        }
    }

    /// Ongoing numbers: shown on the bar, or printed every few seconds.
    pub fn status(&mut self, position: u64, msg: String) {
        match &self.bar {
            Some(b) => {
                b.set_position(position);
                b.set_message(msg);
            }
            None => {
                if self.last_plain.elapsed() >= PLAIN_EVERY {
                    self.last_plain = Instant::now();
                    println!("{} {msg}", self.stamp());
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
