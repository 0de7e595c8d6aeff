//! The steady-state rate: records done between 10 % and 90 % of the input over the time between
//! those two moments, so that start-up (a JVM's, a restore's, a group join's) and the last
//! commit's tail do not dilute the figure the way they do the whole-run rate.

/// The moments a runner passed 10 % and 90 % of its input, seconds from its spawn.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Steady {
    total: u64,
    pub t10: Option<f64>,
    pub t90: Option<f64>,
}

impl Steady {
    pub fn new(total: u64) -> Steady {
        Steady {
            total,
            ..Steady::default()
        }
    }

    /// The record count of the 10 % mark.
    pub fn low(&self) -> u64 {
        self.total.div_ceil(10)
    }

    /// The record count of the 90 % mark.
    pub fn high(&self) -> u64 {
        (self.total * 9).div_ceil(10)
    }

    /// `done` records were done (committed, or read by the bare consumer) at `at_s`. Samples come
    /// in time order; the first that reaches a mark sets it.
    pub fn observe(&mut self, at_s: f64, done: u64) {
        if self.t10.is_none() && done >= self.low() {
            self.t10 = Some(at_s);
        }
        if self.t90.is_none() && done >= self.high() {
            self.t90 = Some(at_s);
        }
    }

    /// Seconds between the two marks, when both were seen and apart.
    pub fn span_s(&self) -> Option<f64> {
        match (self.t10, self.t90) {
            (Some(a), Some(b)) if b > a => Some(b - a),
            _ => None,
        }
    }

    /// Records per second between the marks.
    pub fn rate(&self) -> Option<f64> {
        self.span_s().map(|s| (self.high() - self.low()) as f64 / s)
    }
}

/// The bare consumer's own report of its marks: `steady <unix ms at 10 %> <unix ms at 90 %>`.
pub fn bare_line(t10_unix_ms: u128, t90_unix_ms: u128) -> String {
    format!("steady {t10_unix_ms} {t90_unix_ms}")
}

/// Reads [`bare_line`] back, as seconds from `spawned_unix_ms`.
pub fn parse_bare_line(line: &str, spawned_unix_ms: u128) -> Option<(f64, f64)> {
    let mut it = line.strip_prefix("steady ")?.split(' ');
    let mut next = || -> Option<f64> {
        let ms: u128 = it.next()?.trim().parse().ok()?;
        Some(ms.saturating_sub(spawned_unix_ms) as f64 / 1000.0)
    };
    Some((next()?, next()?))
}

pub fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_only_the_middle_of_the_input() {
        let mut s = Steady::new(1000);
        assert_eq!(s.rate(), None);
        // Start-up: nothing done for 3 s, then 100 records/s.
        for t in 0..=13 {
            let done = if t < 3 { 0 } else { (t - 3) * 100 };
            s.observe(t as f64, done.min(1000) as u64);
        }
        assert_eq!(s.t10, Some(4.0));
        assert_eq!(s.t90, Some(12.0));
        assert_eq!(s.rate(), Some(100.0));
        // The whole-run rate of the same run would say 1000 / 13 s.
    }

    #[test]
    fn a_run_that_jumps_past_both_marks_at_once_has_no_steady_rate() {
        let mut s = Steady::new(1000);
        s.observe(1.0, 0);
        s.observe(2.0, 1000);
        assert_eq!(s.span_s(), None);
        assert_eq!(s.rate(), None);
    }

    #[test]
    fn the_bare_consumers_line_reads_back_relative_to_its_spawn() {
        let line = bare_line(10_500, 12_750);
        assert_eq!(parse_bare_line(&line, 10_000), Some((0.5, 2.75)));
        assert_eq!(parse_bare_line("100 records, 5 bytes", 0), None);
    }
}
