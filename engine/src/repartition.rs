//! Records on a job's repartition topic (`<job>-repartition`, the hop a `key_by` adds), and the
//! de-duplication that keeps the second hop exact under at-least-once.
//!
//! Record: key = the new key; value = event time (i64), the aggregated value (f64), and where the
//! record came from: source partition (i32) and source offset (i64), big-endian, 28 bytes.
//!
//! Under at-least-once, a first hop that crashes before committing its input offsets reads those
//! records again and produces them again, at new offsets of the repartition topic, which the
//! second hop's committed offsets do not cover. Each source partition's records reach a
//! repartition partition in source-offset order (one task produces them, in order), and a replay
//! starts below what was produced before. So the second hop keeps, per source partition, the
//! highest source offset it has applied, and skips any record at or below it. That map is state:
//! written with the window state at each commit (changelog and store, keys
//! `weir_operators::META_REPARTITION_SEEN_PREFIX | source partition`), restored with it, and
//! rewound with it.

use std::collections::{BTreeMap, BTreeSet};
use weir_operators::{DecodeError, META_REPARTITION_SEEN_PREFIX};
use weir_state::{Store, StoreError, WriteOp};

/// What the second hop reads from a repartition record.
pub struct Repartitioned<'a> {
    pub key: &'a str,
    pub ts: i64,
    pub value: f64,
    /// Source partition and offset (absent in records of the 16-byte format before them).
    pub source: Option<(i32, i64)>,
}

pub fn encode(ts: i64, value: f64, source_partition: i32, source_offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
    out.extend_from_slice(&source_partition.to_be_bytes());
    out.extend_from_slice(&source_offset.to_be_bytes());
    out
}

pub fn decode<'a>(key: Option<&'a [u8]>, payload: &[u8]) -> Result<Repartitioned<'a>, DecodeError> {
    let bad = |what: &str| DecodeError(format!("repartition record: {what}"));
    let key = std::str::from_utf8(key.ok_or_else(|| bad("no key"))?)
        .map_err(|_| bad("key is not UTF-8"))?;
    if payload.len() != 28 && payload.len() != 16 {
        return Err(bad("value is neither 28 nor 16 bytes"));
    }
    let i64_at = |at: usize| i64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    let source = (payload.len() == 28).then(|| {
        let p = i32::from_be_bytes(payload[16..20].try_into().expect("4 bytes"));
        (p, i64_at(20))
    });
    Ok(Repartitioned {
        key,
        ts: i64_at(0),
        value: f64::from_bits(i64_at(8) as u64),
        source,
    })
}

/// Per source partition, the highest source offset the task has applied.
#[derive(Debug, Default)]
pub struct Seen {
    highest: BTreeMap<i32, i64>,
    dirty: BTreeSet<i32>,
}

fn store_key(source_partition: i32) -> Vec<u8> {
    let mut k = META_REPARTITION_SEEN_PREFIX.to_vec();
    k.extend_from_slice(&source_partition.to_be_bytes());
    k
}

impl Seen {
    /// As committed to the store.
    pub fn load(store: &Store) -> Result<Seen, StoreError> {
        let mut end = META_REPARTITION_SEEN_PREFIX.to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        let mut highest = BTreeMap::new();
        for (k, v) in store.scan(META_REPARTITION_SEEN_PREFIX, &end, usize::MAX)? {
            let p = k[META_REPARTITION_SEEN_PREFIX.len()..]
                .try_into()
                .map(i32::from_be_bytes);
            let off = v.as_slice().try_into().map(i64::from_be_bytes);
            match (p, off) {
                (Ok(p), Ok(off)) => {
                    highest.insert(p, off);
                }
                _ => {
                    return Err(StoreError(format!(
                        "Corruption: a repartition de-duplication entry of {} + {} bytes",
                        k.len(),
                        v.len()
                    )))
                }
            }
        }
        Ok(Seen {
            highest,
            dirty: BTreeSet::new(),
        })
    }

    /// True when the record from `source` is new (and is now counted as applied); false for a
    /// copy produced again by a first hop replaying its input.
    pub fn admit(&mut self, source: Option<(i32, i64)>) -> bool {
        let Some((p, offset)) = source else {
            return true;
        };
        if self.highest.get(&p).is_some_and(|&h| offset <= h) {
            return false;
        }
        self.highest.insert(p, offset);
        self.dirty.insert(p);
        true
    }

    /// The entries changed since the last commit, as state writes.
    pub fn take_dirty(&mut self) -> Vec<WriteOp> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|p| (store_key(p), Some(self.highest[&p].to_be_bytes().to_vec())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_old_format_still_reads() {
        let r = encode(1_700_000_000_000, 0.25, 3, 12_345);
        let d = decode(Some(b"meter-1"), &r).unwrap();
        assert_eq!(
            (d.key, d.ts, d.value, d.source),
            ("meter-1", 1_700_000_000_000, 0.25, Some((3, 12_345)))
        );
        let old = &r[..16];
        assert_eq!(decode(Some(b"m"), old).unwrap().source, None);
        assert!(decode(Some(b"m"), &r[..20]).is_err());
        assert!(decode(None, &r).is_err());
    }

    #[test]
    fn a_replayed_copy_is_skipped_and_new_records_pass() {
        let mut seen = Seen::default();
        for off in 10..20 {
            assert!(seen.admit(Some((0, off))));
        }
        assert!(seen.admit(Some((1, 5))), "partitions are apart");
        // The first hop crashed and replays from its committed offset 12.
        for off in 12..20 {
            assert!(!seen.admit(Some((0, off))), "{off} was applied before");
        }
        assert!(seen.admit(Some((0, 20))));
        let writes = seen.take_dirty();
        assert_eq!(writes.len(), 2);
        assert!(seen.take_dirty().is_empty());
        assert!(
            seen.admit(None),
            "records without provenance are never skipped"
        );
    }
}
