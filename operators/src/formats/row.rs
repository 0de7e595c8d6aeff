//! What an encoder is given: a row of named values, in order. Results have a fixed row (the key,
//! the window's bounds, a value per function); forwarded records have the fields of their object.

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// An array, an object or a number no other variant holds, from a JSON input (forwarding):
    /// written as its JSON text.
    Json(&'a serde_json::Value),
}

/// The fields of one output record, in order.
pub type Row<'a> = [(&'a str, Value<'a>)];

impl<'a> Value<'a> {
    /// A JSON value as a row value.
    pub fn of_json(v: &'a serde_json::Value) -> Value<'a> {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Number(n) => match (n.as_i64(), n.is_f64()) {
                (Some(i), _) => Value::Int(i),
                (None, true) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                // Beyond i64.
                (None, false) => Value::Json(v),
            },
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => Value::Json(v),
        }
    }
}
