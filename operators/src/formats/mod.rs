//! Record formats, a seam between the bytes on Kafka and the operators. A source's format
//! decodes ([`Decode`]): the job's fields for stateful jobs, the whole record for forwarding. A
//! sink's format encodes ([`Encode`]) results and forwarded records, given as a [`Row`]. What
//! every format shares (the Kafka key and timestamp when the job names no field, the plausible
//! event times, what is missing) is the [`Decoder`](crate::Decoder)'s, once.
//!
//! A format is its own file and one line in [`decoder`] and [`encoder`] (and its name in
//! `weir_config::Format`, with what validation refuses of it). Formats whose records carry a
//! schema id (Avro, Protobuf with a schema registry) look writer schemas up through the
//! [`SchemaResolver`] they are built with.
//!
//! # Layout
//! - `mod.rs`: the traits and the registration;
//! - `fields.rs`: the job's fields and what a record held of them, timestamps;
//! - `row.rs`: what an encoder is given;
//! - `schema.rs`: writer schemas by id;
//! - `json.rs`, `csv.rs`: the formats.

mod csv;
mod fields;
mod json;
mod row;
mod schema;

pub use fields::{FieldNames, Fields, Role};
pub use row::{Row, Value};
pub use schema::{NoSchemas, SchemaResolver};

use crate::DecodeError;
use std::sync::Arc;
use weir_config::{Format, SourceConfig};

/// A record as forwarding sees it: named values.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// A Kafka record as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub timestamp: Option<i64>,
}

/// A source format.
pub trait Decode: Send + Sync {
    /// The job's fields (see [`FieldNames`]) that one record holds, into `out` (whose slots are
    /// empty on entry). The Kafka key and timestamp are there for formats that read them; where
    /// the job names no field, the decoder takes them itself.
    fn decode(&self, record: RawRecord<'_>, out: &mut Fields) -> Result<(), DecodeError>;
    /// The whole record, for a stateless job's steps.
    fn object(&self, payload: &[u8]) -> Result<Object, DecodeError>;
}

/// A sink format.
pub trait Encode: Send + Sync {
    /// One result or forwarded record, appended to `out`.
    fn encode(&self, row: &Row<'_>, out: &mut Vec<u8>);
    /// True when fields are told apart by their position (CSV), not their name: every row of a
    /// job carries the same fields in the same order, an absent field as [`Value::Null`].
    fn positional(&self) -> bool {
        false
    }
}

/// The decoder of the source's format, for these fields.
pub fn decoder(
    source: &SourceConfig,
    fields: &FieldNames,
    schemas: &Arc<dyn SchemaResolver>,
) -> Result<Box<dyn Decode>, String> {
    // JSON and CSV records carry no schema id.
    let _ = schemas;
    Ok(match source.format {
        Format::Json => Box::new(json::JsonDecode::new(fields)),
        Format::Csv => Box::new(csv::CsvDecode::new(source, fields)?),
    })
}

/// The encoder of a sink format.
pub fn encoder(format: Format, schemas: &Arc<dyn SchemaResolver>) -> Arc<dyn Encode> {
    let _ = schemas;
    match format {
        Format::Json => Arc::new(json::JsonEncode),
        Format::Csv => Arc::new(csv::CsvEncode),
    }
}

/// JSON output, the default.
pub fn json() -> Arc<dyn Encode> {
    encoder(Format::Json, &no_schemas())
}

/// A resolver for jobs without a schema registry.
pub fn no_schemas() -> Arc<dyn SchemaResolver> {
    Arc::new(NoSchemas)
}

/// A payload alone, as a record without Kafka key or timestamp.
#[cfg(test)]
fn raw(payload: &str) -> RawRecord<'_> {
    RawRecord {
        payload: payload.as_bytes(),
        key: None,
        timestamp: None,
    }
}
