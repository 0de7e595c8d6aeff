//! What a decoder extracts, whatever the format: the job's fields ([`FieldNames`]: the key, the
//! event time and the numeric fields it uses) and, per record, what the payload held of them
//! ([`Fields`]). Timestamps are read here, the same for every format.

use crate::excerpt::quoted;
use crate::time::parse_rfc3339_ms;
use crate::DecodeError;
use weir_config::{SourceConfig, TimestampFormat};

/// The fields a job reads from its records.
#[derive(Debug, Clone, Default)]
pub struct FieldNames {
    /// `None`: the key is the Kafka record's key.
    pub key: Option<String>,
    /// `None`: event time is the Kafka record's timestamp.
    pub timestamp: Option<String>,
    pub timestamp_format: TimestampFormat,
    /// The numeric fields, in the order [`Fields::values`] holds them.
    pub values: Vec<String>,
}

/// What a record's payload held of the job's fields; the decoder fills in the rest (the Kafka
/// key and timestamp) and says what is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub key: Option<String>,
    pub ts_ms: Option<i64>,
    /// By the index of [`FieldNames::values`].
    pub values: Vec<Option<f64>>,
}

/// The part a field name plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Key,
    Timestamp,
    Value(usize),
    Other,
}

impl FieldNames {
    /// The source's key and timestamp fields, and `values`.
    pub fn of(source: &SourceConfig, values: Vec<String>) -> FieldNames {
        FieldNames {
            key: source.key_field.clone(),
            timestamp: source.timestamp_field.clone(),
            timestamp_format: source.timestamp_format,
            values,
        }
    }

    /// Nothing as fields (forwarding reads whole records).
    pub fn none() -> FieldNames {
        FieldNames::default()
    }

    /// Before a record is read: nothing found yet.
    pub fn empty(&self) -> Fields {
        Fields {
            key: None,
            ts_ms: None,
            values: vec![None; self.values.len()],
        }
    }

    pub fn role(&self, name: &str) -> Role {
        if self.key.as_deref() == Some(name) {
            Role::Key
        } else if self.timestamp.as_deref() == Some(name) {
            Role::Timestamp
        } else if let Some(i) = self.values.iter().position(|f| f == name) {
            Role::Value(i)
        } else {
            Role::Other
        }
    }

    /// A timestamp written as a number.
    pub fn ts_from_number(&self, n: f64) -> Result<i64, DecodeError> {
        if !n.is_finite() {
            return Err(DecodeError("timestamp is not a finite number".into()));
        }
        match self.timestamp_format {
            TimestampFormat::UnixMs => Ok(n as i64),
            TimestampFormat::UnixS => Ok((n * 1000.0).round() as i64),
            TimestampFormat::Rfc3339 => Err(DecodeError(format!(
                "timestamp {n} is a number, expected an RFC 3339 string"
            ))),
        }
    }

    /// A timestamp written as text.
    pub fn ts_from_str(&self, s: &str) -> Result<i64, DecodeError> {
        match self.timestamp_format {
            TimestampFormat::Rfc3339 => parse_rfc3339_ms(s)
                .ok_or_else(|| DecodeError(format!("timestamp {} is not RFC 3339", quoted(s)))),
            _ => s
                .parse::<f64>()
                .map_err(|_| DecodeError(format!("timestamp {} is not a number", quoted(s))))
                .and_then(|n| self.ts_from_number(n)),
        }
    }
}
