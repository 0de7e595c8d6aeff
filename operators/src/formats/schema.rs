//! Writer schemas by id. Records in a schema registry's wire format (Confluent: a zero byte, a
//! 4-byte big-endian schema id, then the encoded record) name the schema they were written with;
//! a decoder for such a format looks it up here (a registry client caches what it fetched). JSON
//! and CSV carry no schema, and jobs without a registry get [`NoSchemas`].

use crate::DecodeError;
use std::sync::Arc;

pub trait SchemaResolver: Send + Sync {
    /// The schema registered under `id`, as the registry holds it (an Avro schema's JSON, a
    /// Protobuf file).
    fn writer_schema(&self, id: u32) -> Result<Arc<str>, DecodeError>;
}

/// No schema registry: every lookup fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSchemas;

impl SchemaResolver for NoSchemas {
    fn writer_schema(&self, id: u32) -> Result<Arc<str>, DecodeError> {
        Err(DecodeError(format!(
            "record names schema {id}, and the job has no schema registry"
        )))
    }
}
