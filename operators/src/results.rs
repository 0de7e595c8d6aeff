//! What the window operators emit: one result per key and window (or session), with the key,
//! the window's bounds and a value per aggregate function.

use crate::aggregate::Agg;
use crate::formats::{self, Encode};
use std::sync::Arc;
use weir_config::{AggregateFn, EmitMode};

/// A result record for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub key: String,
    pub window_start: i64,
    pub value: Vec<u8>,
}

/// How an operator's results are made: when (`emit`), what they hold, and in what format.
pub struct Results {
    emit: EmitMode,
    functions: Vec<AggregateFn>,
    key_name: String,
    encoder: Arc<dyn Encode>,
}

impl Results {
    /// JSON results (see [`Results::set_encoder`]).
    pub fn new(emit: EmitMode, functions: Vec<AggregateFn>, key_name: String) -> Self {
        Results {
            emit,
            functions,
            key_name,
            encoder: formats::json(),
        }
    }

    pub fn set_encoder(&mut self, encoder: Arc<dyn Encode>) {
        self.encoder = encoder;
    }

    /// `on_update`: changed windows are emitted at each commit (and when they close).
    pub fn on_update(&self) -> bool {
        self.emit == EmitMode::OnUpdate
    }

    /// The result of the window `[start, end]` of `key`.
    pub fn result(&self, key: String, start: i64, end: i64, agg: &Agg) -> Emit {
        let mut value = Vec::new();
        let key_field = (self.key_name.as_str(), key.as_str());
        agg.encode_result(
            &*self.encoder,
            key_field,
            (start, end),
            &self.functions,
            &mut value,
        );
        Emit {
            key,
            window_start: start,
            value,
        }
    }
}

#[cfg(test)]
mod tests;
