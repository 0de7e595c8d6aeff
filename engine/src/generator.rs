//! Deterministic meter readings: the same spec always gives the same readings, so a run's right
//! answer can be computed from the spec alone. Used by `weir demo`, the tests and drills.

/// One electricity-meter reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub meter_id: String,
    pub ts_ms: i64,
    pub kwh: f64,
}

impl Reading {
    /// The JSON the flagship job reads: `{"meter_id": .., "ts": <ms>, "kwh": ..}`.
    pub fn to_json(&self) -> Vec<u8> {
        format!(
            r#"{{"meter_id":"{}","ts":{},"kwh":{}}}"#,
            self.meter_id, self.ts_ms, self.kwh
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone)]
pub struct GeneratorSpec {
    pub meters: u32,
    pub hours: u32,
    pub readings_per_hour: u32,
    /// Event time of the first reading (ms since the epoch).
    pub start_ms: i64,
    pub seed: u64,
}

impl Default for GeneratorSpec {
    fn default() -> Self {
        // 2026-01-01T00:00:00Z
        GeneratorSpec {
            meters: 20,
            hours: 6,
            readings_per_hour: 12,
            start_ms: 1_767_225_600_000,
            seed: 7,
        }
    }
}

/// The SplitMix64 mixer: a well-spread 64-bit value from any 64-bit input (seeded readings here and
/// in the drill's input).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GeneratorSpec {
    pub fn total(&self) -> u64 {
        self.meters as u64 * self.hours as u64 * self.readings_per_hour as u64
    }

    pub fn meter_id(i: u32) -> String {
        format!("meter-{i:05}")
    }

    /// Every reading, in event-time order (all meters at one instant, then the next instant).
    pub fn readings(&self) -> impl Iterator<Item = Reading> + '_ {
        let step = 3_600_000 / self.readings_per_hour.max(1) as i64;
        let instants = self.hours as i64 * self.readings_per_hour as i64;
        (0..instants).flat_map(move |n| {
            (0..self.meters).map(move |m| {
                let ts_ms = self.start_ms + n * step;
                let r = splitmix64(self.seed ^ ((m as u64) << 32) ^ n as u64);
                // Up to 2 kWh per interval, three decimals, like a real register.
                let kwh = (r % 2000) as f64 / 1000.0;
                Reading {
                    meter_id: Self::meter_id(m),
                    ts_ms,
                    kwh,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_spec_gives_the_same_readings() {
        let spec = GeneratorSpec {
            meters: 3,
            hours: 2,
            readings_per_hour: 4,
            ..Default::default()
        };
        let a: Vec<Reading> = spec.readings().collect();
        let b: Vec<Reading> = spec.readings().collect();
        assert_eq!(a, b);
        assert_eq!(a.len() as u64, spec.total());
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        assert_ne!(a[0].kwh, a[1].kwh);
    }
}
