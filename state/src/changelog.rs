//! Changelog records: key = the store key, value = the full new value (never a delta), or a
//! tombstone (no value) when the entry is deleted. Replaying any suffix twice is harmless.
//!
//! Each record also carries, in the header [`INPUT_OFFSETS_HEADER`], the input offsets its commit
//! cycle was about to commit. A crash after the changelog was written but before the offsets were
//! committed leaves records that describe input the group will process again; a restore skips them
//! (see [`written_by_committed_cycle`]), so state never counts a record twice.

use std::collections::BTreeMap;

/// Header naming the input offsets of the commit cycle that wrote a changelog record:
/// `topic=offset[,topic=offset...]`.
pub const INPUT_OFFSETS_HEADER: &str = "weir.offsets";

pub fn encode_input_offsets<'a>(offsets: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    offsets
        .into_iter()
        .map(|(t, o)| format!("{t}={o}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the header; `None` when it is not in the expected form.
pub fn decode_input_offsets(bytes: &[u8]) -> Option<Vec<(String, i64)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (t, o) = pair.rsplit_once('=')?;
            Some((t.to_string(), o.parse().ok()?))
        })
        .collect()
}

/// True when the record's cycle committed: none of its input offsets is past the group's
/// committed offset. Records without the header (or topics without a committed offset) are kept:
/// losing state is worse than counting one interval twice.
pub fn written_by_committed_cycle(
    header: Option<&[u8]>,
    committed: &BTreeMap<String, i64>,
) -> bool {
    let Some(offsets) = header.and_then(decode_input_offsets) else {
        return true;
    };
    offsets
        .iter()
        .all(|(topic, off)| committed.get(topic).is_none_or(|c| off <= c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let h = encode_input_offsets([("in-a", 10), ("in.b", 7)]);
        assert_eq!(h, "in-a=10,in.b=7");
        assert_eq!(
            decode_input_offsets(h.as_bytes()),
            Some(vec![("in-a".into(), 10), ("in.b".into(), 7)])
        );
        assert_eq!(decode_input_offsets(b"garbage"), None);
    }

    #[test]
    fn records_of_an_uncommitted_cycle_are_recognised() {
        let committed: BTreeMap<String, i64> = [("in".to_string(), 100)].into();
        assert!(written_by_committed_cycle(Some(b"in=100"), &committed));
        assert!(written_by_committed_cycle(Some(b"in=40"), &committed));
        assert!(!written_by_committed_cycle(Some(b"in=101"), &committed));
        assert!(
            written_by_committed_cycle(None, &committed),
            "no header: kept"
        );
        assert!(
            written_by_committed_cycle(Some(b"other=500"), &committed),
            "no committed offset for it: kept"
        );
    }
}
