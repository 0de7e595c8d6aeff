//! Stream time, shared by time windows and sessions: the largest event time the task has seen,
//! persisted under `META_STREAM_TIME` with the commit and read back when the operator opens.
//! What is open is measured against it: an entry whose time (a window's start, a session's end)
//! lies more than `span + grace` behind stream time is closed, and records for it are late.

use crate::entries::undecodable;
use crate::window::META_STREAM_TIME;
use crate::StoreAccess;
use weir_state::{StoreError, WriteOp};

#[derive(Debug)]
pub struct StreamClock {
    /// `i64::MIN`: no record yet.
    time: i64,
    /// Moved since the last commit.
    dirty: bool,
    /// The window size (time windows) or the gap (sessions).
    span_ms: i64,
    grace_ms: i64,
}

/// Stream time as last committed to the store (`i64::MIN`: none yet).
fn stored(store: &dyn StoreAccess) -> Result<i64, StoreError> {
    Ok(match store.get(META_STREAM_TIME)? {
        Some(b) if b.len() == 8 => i64::from_be_bytes(b[..8].try_into().unwrap()),
        Some(b) => return Err(undecodable("the stream time entry", META_STREAM_TIME, &b)),
        None => i64::MIN,
    })
}

impl StreamClock {
    /// The clock as last committed to `store`.
    pub fn open(store: &dyn StoreAccess, span_ms: i64, grace_ms: i64) -> Result<Self, StoreError> {
        Ok(StreamClock {
            time: stored(store)?,
            dirty: false,
            span_ms,
            grace_ms,
        })
    }

    /// Back to the committed time (uncommitted work is forgotten).
    pub fn restore(&mut self, store: &dyn StoreAccess) -> Result<(), StoreError> {
        self.time = stored(store)?;
        self.dirty = false;
        Ok(())
    }

    /// Stream time; `i64::MIN` before the first record.
    pub fn now(&self) -> i64 {
        self.time
    }

    pub fn get(&self) -> Option<i64> {
        (self.time != i64::MIN).then_some(self.time)
    }

    /// A record's event time; true when stream time moved.
    pub fn advance(&mut self, ts: i64) -> bool {
        if ts > self.time {
            self.time = ts;
            self.dirty = true;
            return true;
        }
        false
    }

    /// Idle close: stream time moves past `span + grace` after `newest`, so everything up to it
    /// closes, and later records for it are late.
    pub fn advance_past(&mut self, newest: i64) {
        self.advance(
            newest
                .saturating_add(self.span_ms)
                .saturating_add(self.grace_ms),
        );
    }

    /// Entries whose time lies before this bound are closed.
    pub fn closed_before(&self) -> i64 {
        self.time
            .saturating_sub(self.span_ms)
            .saturating_sub(self.grace_ms)
            .saturating_add(1)
    }

    /// At commit: the stream time entry, when it moved.
    pub fn take_write(&mut self) -> Option<WriteOp> {
        std::mem::take(&mut self.dirty).then(|| {
            (
                META_STREAM_TIME.to_vec(),
                Some(self.time.to_be_bytes().to_vec()),
            )
        })
    }
}
