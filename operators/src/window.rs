//! Window assignment and the layout of window state in a task's store.
//!
//! Store keys: `0x01 | window start (i64, sign bit flipped, big-endian) | record key`, so windows sort
//! by start and every window that must close is a prefix range of the store (sessions index their
//! ends the same way). Meta entries (stream time) live under `0x00`.

use crate::StoreAccess;
use weir_config::{WindowKind, WindowOp};
use weir_state::StoreError;

pub const META_STREAM_TIME: &[u8] = b"\x00stream_time";
/// Second hop of a `key_by` job: per source partition (4 bytes, big-endian), the highest source
/// offset applied (8 bytes), kept by the engine with the window state.
pub const META_REPARTITION_SEEN_PREFIX: &[u8] = b"\x00repartition_seen/";
const WINDOW_PREFIX: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    pub size_ms: i64,
    pub advance_ms: i64,
    pub grace_ms: i64,
}

impl Windowing {
    pub fn from_config(w: &WindowOp) -> Windowing {
        let size_ms = w.size_or_gap_ms();
        let advance_ms = match w.kind {
            WindowKind::Tumbling | WindowKind::Session => size_ms,
            WindowKind::Hopping => w
                .advance
                .as_ref()
                .map(|a| a.get_ref().as_millis() as i64)
                .unwrap_or(size_ms),
        };
        Windowing {
            size_ms,
            advance_ms,
            grace_ms: w.grace.as_millis() as i64,
        }
    }

    /// Starts of every window containing `ts`, oldest first. Computed in i128: no input overflows
    /// (a window whose start is not an i64 is left out; the decoder keeps event time far from that).
    pub fn windows_for(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let (size, advance) = (i128::from(self.size_ms), i128::from(self.advance_ms).max(1));
        let ts = i128::from(ts);
        let last = ts.div_euclid(advance) * advance;
        let first = last - (size / advance - 1).max(0) * advance;
        (0..)
            .map(move |i| first + i * advance)
            .take_while(move |&s| s <= last)
            .filter(move |&s| ts < s + size)
            .filter_map(|s| i64::try_from(s).ok())
    }

    /// True when the window starting at `start` is closed at `stream_time`.
    pub fn is_closed(&self, start: i64, stream_time: i64) -> bool {
        start
            .saturating_add(self.size_ms)
            .saturating_add(self.grace_ms)
            <= stream_time
    }

    /// The exclusive upper bound of the starts of windows closed at `stream_time`.
    pub fn closed_before(&self, stream_time: i64) -> i64 {
        stream_time
            .saturating_sub(self.size_ms)
            .saturating_sub(self.grace_ms)
            .saturating_add(1)
    }
}

/// A decoded window store key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowKey {
    pub start: i64,
    pub key: String,
}

impl WindowKey {
    pub fn encode(start: i64, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + key.len());
        Self::encode_into(start, key, &mut out);
        out
    }

    /// [`WindowKey::encode`] into `out` (cleared first), reusing its memory.
    pub fn encode_into(start: i64, key: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&start_prefix(start));
        out.extend_from_slice(key.as_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Option<WindowKey> {
        if bytes.len() < 9 || bytes[0] != WINDOW_PREFIX {
            return None;
        }
        let start = (u64::from_be_bytes(bytes[1..9].try_into().ok()?) ^ (1 << 63)) as i64;
        Some(WindowKey {
            start,
            key: String::from_utf8(bytes[9..].to_vec()).ok()?,
        })
    }
}

/// The 9-byte prefix of every key of windows starting at `start`.
pub fn start_prefix(start: i64) -> [u8; 9] {
    let mut p = [0u8; 9];
    p[0] = WINDOW_PREFIX;
    p[1..].copy_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    p
}

/// The time (window start, or session end) of the first key of the time index at or after `from`.
pub(crate) fn first_time_from(
    store: &dyn StoreAccess,
    from: &[u8],
) -> Result<Option<i64>, StoreError> {
    Ok(store
        .first_key_from(from)?
        .and_then(|k| WindowKey::decode(&k))
        .map(|k| k.start))
}

/// The newest time of the time index (one key read).
pub(crate) fn last_time(store: &dyn StoreAccess) -> Result<Option<i64>, StoreError> {
    Ok(store
        .last_key_before(&[WINDOW_PREFIX + 1])?
        .and_then(|k| WindowKey::decode(&k))
        .map(|k| k.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn tumbling_assigns_one_window_hopping_several() {
        let tumbling = Windowing {
            size_ms: H,
            advance_ms: H,
            grace_ms: 0,
        };
        assert_eq!(tumbling.windows_for(H + 5).collect::<Vec<_>>(), vec![H]);
        assert_eq!(tumbling.windows_for(-1).collect::<Vec<_>>(), vec![-H]);
        let hopping = Windowing {
            size_ms: H,
            advance_ms: H / 4,
            grace_ms: 0,
        };
        let starts: Vec<i64> = hopping.windows_for(H + 1).collect();
        assert_eq!(starts, vec![H / 4, H / 2, 3 * H / 4, H]);
        assert!(starts.iter().all(|&s| s <= H + 1 && H + 1 < s + H));
    }

    #[test]
    fn keys_sort_by_window_start_even_below_zero() {
        let a = WindowKey::encode(-H, "z");
        let b = WindowKey::encode(0, "a");
        let c = WindowKey::encode(H, "a");
        assert!(a < b && b < c);
        assert_eq!(
            WindowKey::decode(&a),
            Some(WindowKey {
                start: -H,
                key: "z".into()
            })
        );
        assert!(META_STREAM_TIME < &a[..]);
    }

    #[test]
    fn no_event_time_overflows_window_arithmetic() {
        let hopping = Windowing {
            size_ms: H,
            advance_ms: H / 4,
            grace_ms: 36_500 * 24 * H,
        };
        for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let starts: Vec<i64> = hopping.windows_for(ts).collect();
            assert!(starts.len() <= 4, "{ts}: {starts:?}");
            assert!(starts.iter().all(|&s| s <= ts), "{ts}: {starts:?}");
            for &s in &starts {
                let _ = hopping.is_closed(s, ts);
            }
            let _ = hopping.closed_before(ts);
        }
        assert_eq!(hopping.windows_for(i64::MAX).count(), 4);
    }

    #[test]
    fn a_window_closes_at_end_plus_grace() {
        let w = Windowing {
            size_ms: H,
            advance_ms: H,
            grace_ms: 1000,
        };
        assert!(!w.is_closed(0, H + 999));
        assert!(w.is_closed(0, H + 1000));
        assert_eq!(w.closed_before(H + 1000), 1);
    }
}
