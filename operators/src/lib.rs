//! weir operators: what happens to a record between the source and the sink.
//!
//! # Layout
//! - `decode.rs`: JSON / CSV bytes to a [`Record`] holding only the fields the job uses;
//! - `time.rs`: event-time parsing and RFC 3339 formatting;
//! - `filter.rs`: numeric comparisons on fields;
//! - `stamp.rs`: the stateless forward-with-stamp path (auditing);
//! - `window.rs`: window assignment and the store's key layout;
//! - `aggregate.rs`: the aggregate value (count, sum, min, max) and its output record;
//! - `windowed.rs`: the windowed aggregation operator: a bounded cache in front of the task's store,
//!   stream time, grace, late records, on_close / on_update emission, expiry.

mod aggregate;
mod decode;
mod filter;
mod stamp;
pub mod time;
mod window;
mod windowed;

pub use aggregate::Agg;
pub use decode::{DecodeError, Decoder, Record};
pub use filter::Filter;
pub use stamp::Stamper;
pub use window::{WindowKey, Windowing};
pub use windowed::{Emit, StoreAccess, WindowedAggregate};
