//! Durations as human strings: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or combinations such as
//! `"1h30m"`.

use serde::de::{self, Deserialize, Deserializer};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest duration a job may name: 100 years (36500d). Event times and window bounds are
    /// i64 milliseconds; a duration this long still leaves every sum with a plausible time far
    /// from overflow, and a longer one is a typo (`"18446744073709551615ms"`).
    pub const MAX_MS: u64 = 36_500 * 86_400_000;

    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }
    pub fn std(&self) -> std::time::Duration {
        self.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err("empty duration; write e.g. \"500ms\", \"30s\", \"1h\"".into());
        }
        let mut total: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "bad duration {s:?}: expected a number before the unit, e.g. \"30s\""
                ));
            }
            let number: u128 = rest[..digits]
                .parse()
                .map_err(|_| format!("bad duration {s:?}: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms_per_unit: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => {
                    return Err(format!(
                        "bad duration {s:?}: missing unit (ms, s, m, h or d)"
                    ))
                }
                other => {
                    return Err(format!(
                        "bad duration {s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                    ))
                }
            };
            total = total
                .checked_add(
                    number
                        .checked_mul(ms_per_unit)
                        .ok_or("duration too large")?,
                )
                .ok_or("duration too large")?;
        }
        if total > u128::from(Duration::MAX_MS) {
            return Err(format!(
                "bad duration {s:?}: longer than 100 years (36500d), the longest a job may name"
            ));
        }
        Ok(Duration::from_millis(total as u64))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"30s\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!("500ms".parse::<Duration>().unwrap().as_millis(), 500);
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_millis(), 5_400_000);
        assert_eq!("2d".parse::<Duration>().unwrap().as_millis(), 172_800_000);
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!("10"
            .parse::<Duration>()
            .unwrap_err()
            .contains("missing unit"));
        assert!("10w"
            .parse::<Duration>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("h".parse::<Duration>().is_err());
        assert!("99999999999999999999999d".parse::<Duration>().is_err());
        assert!("18446744073709551615ms"
            .parse::<Duration>()
            .unwrap_err()
            .contains("longer than 100 years"));
        assert!("36501d".parse::<Duration>().is_err());
        assert_eq!(
            "36500d".parse::<Duration>().unwrap().as_millis(),
            Duration::MAX_MS
        );
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(Duration::from_millis(3_600_000).to_string(), "1h");
        assert_eq!(Duration::from_millis(1_500).to_string(), "1500ms");
    }
}
