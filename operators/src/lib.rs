//! weir operators: what happens to a record between the source and the sink.
//!
//! # Layout
//! - `decode.rs`: JSON / CSV bytes to a [`Record`] holding only the fields the job uses;
//! - `excerpt.rs`: bounded quotes of record contents in errors (logs, dead letters, `/readyz`);
//! - `time.rs`: event-time parsing and RFC 3339 formatting;
//! - `program.rs`: the per-record steps (filter, map, select, stamp, key_by), compiled to slots for
//!   stateful jobs or applied to JSON objects for stateless ones;
//! - `window.rs`: window assignment and the store's key layout;
//! - `aggregate.rs`: the aggregate value (count, sum, min, max) and its output record;
//! - `windowed.rs`: the windowed aggregation operator: a bounded cache in front of the task's store,
//!   stream time, grace, late records, on_close / on_update emission, expiry;
//! - `closing.rs`: bounded closing (a batch per commit cycle, from a cursor), for both operators;
//! - `session.rs`: session windows (gap-separated, merging), same cache and commit discipline.

mod aggregate;
mod closing;
mod decode;
pub mod excerpt;
mod program;
mod session;
pub mod time;
mod window;
mod windowed;

pub use aggregate::Agg;
pub use closing::CLOSE_BATCH;
pub use decode::{DecodeError, Decoder, Record};
pub use program::{Forward, Forwarded, Program};
pub use session::SessionAggregate;
pub use window::{WindowKey, Windowing, META_REPARTITION_SEEN_PREFIX};
pub use windowed::{Emit, StoreAccess, WindowedAggregate};

/// Checks that one state entry (as a changelog record carries it) decodes for a store of this kind
/// of window: a restore applies nothing it could not read back.
pub fn check_state_entry(
    kind: weir_config::WindowKind,
    key: &[u8],
    value: &[u8],
) -> Result<(), weir_state::StoreError> {
    let bad = |what: &str| Err(windowed::undecodable(what, key, value));
    if key == window::META_STREAM_TIME {
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
        Some(0x03) if session => session::check_sessions(key, value),
        _ => bad("an entry of no known kind"),
    }
}

/// A windowed aggregation as the engine drives it: time windows or sessions.
pub trait WindowAggregate: Send {
    /// Adds one record; false when it was late (dropped). Results due now go to `out`.
    fn process(
        &mut self,
        store: &dyn StoreAccess,
        key: &str,
        ts: i64,
        value: f64,
        out: &mut Vec<Emit>,
    ) -> Result<bool, weir_state::StoreError>;
    /// Wall-clock idle close: every open window closes now.
    fn close_all(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), weir_state::StoreError>;
    /// True while windows that have closed wait for the next commit cycle to be emitted (a cycle
    /// closes a bounded number, so that memory stays bounded when millions close at once).
    fn close_pending(&self) -> bool;
    /// Closes the next batch of pending windows (after a commit).
    fn close_due(
        &mut self,
        store: &dyn StoreAccess,
        out: &mut Vec<Emit>,
    ) -> Result<(), weir_state::StoreError>;
    /// The commit's writes (changelog and store), each changed entry once; on_update results.
    fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<weir_state::WriteOp>;
    /// Forgets every change not yet committed.
    fn discard_uncommitted(
        &mut self,
        store: &dyn StoreAccess,
    ) -> Result<(), weir_state::StoreError>;
    fn late_records(&self) -> u64;
}

macro_rules! delegate_window_aggregate {
    ($t:ty) => {
        impl WindowAggregate for $t {
            fn process(
                &mut self,
                store: &dyn StoreAccess,
                key: &str,
                ts: i64,
                value: f64,
                out: &mut Vec<Emit>,
            ) -> Result<bool, weir_state::StoreError> {
                <$t>::process(self, store, key, ts, value, out)
            }
            fn close_all(
                &mut self,
                store: &dyn StoreAccess,
                out: &mut Vec<Emit>,
            ) -> Result<(), weir_state::StoreError> {
                <$t>::close_all(self, store, out)
            }
            fn close_pending(&self) -> bool {
                <$t>::close_pending(self)
            }
            fn close_due(
                &mut self,
                store: &dyn StoreAccess,
                out: &mut Vec<Emit>,
            ) -> Result<(), weir_state::StoreError> {
                <$t>::close_due(self, store, out)
            }
            fn take_dirty(&mut self, out: &mut Vec<Emit>) -> Vec<weir_state::WriteOp> {
                <$t>::take_dirty(self, out)
            }
            fn discard_uncommitted(
                &mut self,
                store: &dyn StoreAccess,
            ) -> Result<(), weir_state::StoreError> {
                <$t>::discard_uncommitted(self, store)
            }
            fn late_records(&self) -> u64 {
                <$t>::late_records(self)
            }
        }
    };
}

delegate_window_aggregate!(WindowedAggregate);
delegate_window_aggregate!(SessionAggregate);

/// Opens the job's window aggregation over a task's (restored) store.
pub fn open_window_aggregate(
    store: &dyn StoreAccess,
    window: &weir_config::WindowOp,
    functions: Vec<weir_config::AggregateFn>,
    key_name: String,
    cache_bytes: usize,
) -> Result<Box<dyn WindowAggregate>, weir_state::StoreError> {
    Ok(match window.kind {
        weir_config::WindowKind::Session => Box::new(SessionAggregate::open(
            store,
            window.size_or_gap_ms(),
            window.grace.as_millis() as i64,
            window.emit,
            functions,
            key_name,
            cache_bytes,
        )?),
        _ => Box::new(WindowedAggregate::open(
            store,
            Windowing::from_config(window),
            window.emit,
            functions,
            key_name,
            cache_bytes,
        )?),
    })
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
