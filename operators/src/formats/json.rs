//! JSON: a record is an object; only the job's fields are extracted (the rest is skipped without
//! allocating). Output: an object with its keys in byte order, a repeated name's last value (as
//! a serde_json map writes it, so results stay byte for byte what they were).

use super::{Decode, Encode, FieldNames, Fields, Object, RawRecord, Role, Row, Value};
use crate::excerpt::{excerpt, quoted, MESSAGE_MAX_CHARS};
use crate::DecodeError;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

#[derive(Debug)]
pub struct JsonDecode {
    names: FieldNames,
}

impl JsonDecode {
    pub fn new(names: &FieldNames) -> JsonDecode {
        JsonDecode {
            names: names.clone(),
        }
    }
}

fn invalid(what: &str, e: serde_json::Error) -> DecodeError {
    DecodeError(format!(
        "invalid {what}: {}",
        excerpt(&e.to_string(), MESSAGE_MAX_CHARS)
    ))
}

impl Decode for JsonDecode {
    fn decode(&self, record: RawRecord<'_>, out: &mut Fields) -> Result<(), DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(record.payload);
        ExtractSeed {
            names: &self.names,
            out,
        }
        .deserialize(&mut de)
        .and_then(|_| de.end())
        .map_err(|e| invalid("JSON", e))
    }

    fn object(&self, payload: &[u8]) -> Result<Object, DecodeError> {
        serde_json::from_slice(payload).map_err(|e| invalid("JSON object", e))
    }
}

/// JSON output.
#[derive(Debug)]
pub struct JsonEncode;

impl Encode for JsonEncode {
    fn encode(&self, row: &Row<'_>, out: &mut Vec<u8>) {
        out.push(b'{');
        if row.windows(2).all(|p| p[0].0 < p[1].0) {
            // In order already (forwarded objects): no sorting.
            for (i, (name, value)) in row.iter().enumerate() {
                field(out, i, name, value);
            }
        } else {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by_key(|&i| row[i].0);
            let last_of_each = order
                .iter()
                .enumerate()
                .filter(|&(n, &i)| order.get(n + 1).is_none_or(|&j| row[j].0 != row[i].0));
            for (written, (_, &i)) in last_of_each.enumerate() {
                field(out, written, row[i].0, &row[i].1);
            }
        }
        out.push(b'}');
    }
}

fn field(out: &mut Vec<u8>, index: usize, name: &str, value: &Value<'_>) {
    if index > 0 {
        out.push(b',');
    }
    write(out, &name);
    out.push(b':');
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => write(out, b),
        Value::Int(i) => write(out, i),
        // Not finite: `null`, as a serde_json number built from it.
        Value::Float(f) => write(out, f),
        Value::Str(s) => write(out, s),
        Value::Json(v) => write(out, v),
    }
}

fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(&mut *out, v).expect("writing JSON to memory");
}

struct ExtractSeed<'a> {
    names: &'a FieldNames,
    out: &'a mut Fields,
}

struct FieldSeed<'a>(&'a FieldNames);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Role;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Role, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Role;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Role, E> {
        Ok(self.0.role(name))
    }
}

/// A JSON scalar as the decoder needs it.
enum Scalar {
    Num(f64),
    Int(i64),
    Str(String),
    Null,
    Bool,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool)
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for ExtractSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ExtractSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let names = self.names;
        while let Some(role) = map.next_key_seed(FieldSeed(names))? {
            match role {
                Role::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
                Role::Key => {
                    self.out.key = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Str(s) => Some(s),
                        Scalar::Int(i) => Some(i.to_string()),
                        _ => {
                            return Err(de::Error::custom(
                                "the key field must be a string or an integer",
                            ))
                        }
                    }
                }
                Role::Timestamp => {
                    let ts = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Int(i) => names.ts_from_number(i as f64),
                        Scalar::Num(n) => names.ts_from_number(n),
                        Scalar::Str(s) => names.ts_from_str(&s),
                        _ => Err(DecodeError(
                            "the timestamp field must be a number or a string".into(),
                        )),
                    };
                    self.out.ts_ms = Some(ts.map_err(|e| de::Error::custom(e.0))?);
                }
                Role::Value(i) => {
                    let v = match map.next_value_seed(ScalarSeed)? {
                        Scalar::Int(n) => n as f64,
                        Scalar::Num(n) => n,
                        Scalar::Str(s) => s.parse::<f64>().map_err(|_| {
                            de::Error::custom(format!(
                                "field {:?} is not a number: {}",
                                names.values[i],
                                quoted(&s)
                            ))
                        })?,
                        Scalar::Null | Scalar::Bool => {
                            return Err(de::Error::custom(format!(
                                "field {:?} must be a number",
                                names.values[i]
                            )))
                        }
                    };
                    self.out.values[i] = Some(v);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
