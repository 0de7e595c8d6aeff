//! The state entries the operators keep, as a restore reads them back from the changelog: each
//! is checked before it is applied, and one that does not decode is damaged state, never taken as
//! absent.

use crate::aggregate::Agg;
use crate::window::{WindowKey, META_REPARTITION_SEEN_PREFIX, META_STREAM_TIME};
use weir_state::StoreError;

/// An entry of the store that does not decode: damaged state, never taken as absent (a window
/// would start again at count 1, or stream time go back and closed windows reopen).
pub(crate) fn undecodable(what: &str, key: &[u8], value: &[u8]) -> StoreError {
    StoreError(format!(
        "Corruption: {what} does not decode ({} bytes){}{}",
        value.len(),
        weir_state::CONTENT_MARK,
        String::from_utf8_lossy(key).escape_debug(),
    ))
}

/// Checks that one state entry (as a changelog record carries it) decodes for a store of this kind
/// of window: a restore applies nothing it could not read back.
pub fn check_state_entry(
    kind: weir_config::WindowKind,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    let bad = |what: &str| Err(undecodable(what, key, value));
    if key == META_STREAM_TIME {
        return if value.len() == 8 {
            Ok(())
        } else {
            bad("the stream time entry")
        };
    }
    if let Some(p) = key.strip_prefix(META_REPARTITION_SEEN_PREFIX) {
        return if p.len() == 4 && value.len() == 8 {
            Ok(())
        } else {
            bad("a repartition de-duplication entry")
        };
    }
    let session = kind == weir_config::WindowKind::Session;
    match key.first() {
        Some(0x01) if WindowKey::decode(key).is_none() => bad("a window key"),
        Some(0x01) if session => {
            if value.is_empty() {
                Ok(())
            } else {
                bad("a session end index entry")
            }
        }
        Some(0x01) => match Agg::decode(value) {
            Some(_) => Ok(()),
            None => bad("a window aggregate"),
        },
        Some(0x03) if session => crate::session::check_sessions(key, value),
        _ => bad("an entry of no known kind"),
    }
}

#[cfg(test)]
mod state_entry_tests {
    use super::*;
    use weir_config::WindowKind;

    #[test]
    fn every_kind_of_state_entry_is_checked() {
        let agg = Agg::new(1.5).encode();
        let wk = WindowKey::encode(3_600_000, "m1");
        assert!(check_state_entry(WindowKind::Tumbling, &wk, &agg).is_ok());
        assert!(check_state_entry(WindowKind::Tumbling, &wk, b"junk").is_err());
        assert!(check_state_entry(
            WindowKind::Tumbling,
            b"\x00stream_time",
            &7i64.to_be_bytes()
        )
        .is_ok());
        assert!(check_state_entry(WindowKind::Hopping, b"\x00stream_time", b"123").is_err());
        assert!(check_state_entry(WindowKind::Tumbling, b"\x09what", b"").is_err());
        // Window keys whose record key is not UTF-8.
        let mut bad_key = WindowKey::encode(0, "");
        bad_key.push(0xff);
        assert!(check_state_entry(WindowKind::Tumbling, &bad_key, &agg).is_err());
        // Sessions: the end index is empty, the session list is bincode.
        assert!(check_state_entry(WindowKind::Session, &wk, b"").is_ok());
        assert!(check_state_entry(WindowKind::Session, &wk, &agg).is_err());
        assert!(check_state_entry(WindowKind::Session, b"\x03m1", b"\xff\xff").is_err());
        assert!(check_state_entry(WindowKind::Tumbling, b"\x03m1", b"").is_err());
        let mut seen = META_REPARTITION_SEEN_PREFIX.to_vec();
        seen.extend_from_slice(&2i32.to_be_bytes());
        assert!(check_state_entry(WindowKind::Tumbling, &seen, &9i64.to_be_bytes()).is_ok());
        assert!(check_state_entry(WindowKind::Tumbling, &seen, b"1").is_err());
    }
}
