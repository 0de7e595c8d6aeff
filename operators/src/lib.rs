//! weir operators: what happens to a record between the source and the sink.
//!
//! # Layout
//! - `formats/`: record formats ([`formats::Decode`], [`formats::Encode`]), JSON and CSV, a file
//!   each, and the registration of a source's or a sink's format;
//! - `decode.rs`: a record's bytes to a [`Record`] holding only the fields the job uses: the
//!   source's format, then what every format shares (Kafka key and timestamp, event-time skew);
//! - `excerpt.rs`: bounded quotes of record contents in errors (logs, dead letters, `/readyz`);
//! - `time.rs`: event-time parsing and RFC 3339 formatting;
//! - `program.rs`: the per-record steps (filter, map, select, key_by) of stateful jobs, compiled to
//!   slots;
//! - `forward.rs`: the steps of stateless jobs (also stamp), applied to each record's object,
//!   which the sink's format writes;
//! - `stateful.rs`: [`StatefulOperator`], the lifecycle hooks the engine drives a stateful
//!   operator through (process, tick, prepare commit, post commit, abort);
//! - `store.rs`: [`StoreAccess`], what an operator reads of its task's store;
//! - `operator.rs`: [`WindowOperator`], the one discipline of windows and sessions, over:
//!   - `cache.rs`: the bounded cache in front of the store, with dirty tracking for the commit;
//!   - `clock.rs`: stream time (persisted), span and grace: what is closed and what is late;
//!   - `closing.rs`: bounded closing (a batch per commit cycle, from a cursor);
//!   - `results.rs`: the result records ([`Emit`]), in the sink's format;
//! - `windowed.rs`: time windows (tumbling, hopping): window assignment and the aggregate per
//!   key and window;
//! - `session.rs`: session windows (gap-separated, merging);
//! - `window.rs`: window assignment and the store's key layout;
//! - `aggregate.rs`: the aggregate value (count, sum, min, max) and its output record;
//! - `entries.rs`: the state entries, checked as a restore reads them back.

mod aggregate;
mod cache;
mod clock;
mod closing;
mod decode;
mod entries;
pub mod excerpt;
pub mod formats;
mod forward;
mod operator;
mod program;
mod results;
mod session;
mod stateful;
mod store;
pub mod time;
mod window;
mod windowed;

pub use aggregate::Agg;
pub use closing::CLOSE_BATCH;
pub use decode::{DecodeError, Decoder, Record};
pub use entries::check_state_entry;
pub use forward::{Forward, Forwarded};
pub use operator::WindowOperator;
pub use program::Program;
pub use results::Emit;
pub use session::SessionAggregate;
pub use stateful::StatefulOperator;
/// The name the engine knew the stateful operator trait by.
pub use stateful::StatefulOperator as WindowAggregate;
pub use store::StoreAccess;
pub use window::{WindowKey, Windowing, META_REPARTITION_SEEN_PREFIX};
pub use windowed::WindowedAggregate;

/// Opens the job's window aggregation over a task's (restored) store, its results in the format
/// the job's plan gave the window (the sink's).
pub fn open_window_aggregate(
    store: &dyn StoreAccess,
    window: &weir_config::WindowOp,
    functions: Vec<weir_config::AggregateFn>,
    key_name: String,
    cache_bytes: usize,
) -> Result<Box<dyn StatefulOperator>, weir_state::StoreError> {
    let results = ResultSpec {
        functions,
        key_name,
        encoder: formats::encoder(window.result_format, &formats::no_schemas()),
    };
    open_window_aggregate_with(store, window, results, cache_bytes)
}

/// What an operator's results hold and the format they are written in.
pub struct ResultSpec {
    pub functions: Vec<weir_config::AggregateFn>,
    /// The key's name in results.
    pub key_name: String,
    pub encoder: std::sync::Arc<dyn formats::Encode>,
}

/// [`open_window_aggregate`], its results as `results` says (an encoder built by the caller,
/// say with a schema registry).
pub fn open_window_aggregate_with(
    store: &dyn StoreAccess,
    window: &weir_config::WindowOp,
    results: ResultSpec,
    cache_bytes: usize,
) -> Result<Box<dyn StatefulOperator>, weir_state::StoreError> {
    let ResultSpec {
        functions,
        key_name,
        encoder,
    } = results;
    Ok(match window.kind {
        weir_config::WindowKind::Session => Box::new(
            SessionAggregate::open(
                store,
                window.size_or_gap_ms(),
                window.grace.as_millis() as i64,
                window.emit,
                functions,
                key_name,
                cache_bytes,
            )?
            .with_encoder(encoder),
        ),
        _ => Box::new(
            WindowedAggregate::open(
                store,
                Windowing::from_config(window),
                window.emit,
                functions,
                key_name,
                cache_bytes,
            )?
            .with_encoder(encoder),
        ),
    })
}
