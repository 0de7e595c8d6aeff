//! `stamp`: forward each JSON record unchanged but for added fields, such as an audit stamp.
//! Values are literal strings, except `{partition}`, `{offset}` and `{processed_at}`, which become
//! the record's source partition, source offset and the processing time (RFC 3339).

use crate::time::format_rfc3339_ms;
use crate::DecodeError;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Stamper {
    fields: BTreeMap<String, String>,
}

impl Stamper {
    pub fn new(fields: BTreeMap<String, String>) -> Stamper {
        Stamper { fields }
    }

    pub fn stamp(
        &self,
        payload: &[u8],
        partition: i32,
        offset: i64,
        now_ms: i64,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload)
                .map_err(|e| DecodeError(format!("invalid JSON object: {e}")))?;
        for (name, template) in &self.fields {
            let value = match template.as_str() {
                "{partition}" => serde_json::Value::from(partition),
                "{offset}" => serde_json::Value::from(offset),
                "{processed_at}" => serde_json::Value::from(format_rfc3339_ms(now_ms)),
                literal => serde_json::Value::from(literal),
            };
            object.insert(name.clone(), value);
        }
        Ok(serde_json::to_vec(&object).expect("a JSON map serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_fields_and_keeps_the_rest() {
        let s = Stamper::new(
            [
                ("audited_by".to_string(), "weir".to_string()),
                ("source_offset".to_string(), "{offset}".to_string()),
            ]
            .into(),
        );
        let out = s
            .stamp(br#"{"meter_id":"m-1","kwh":0.5}"#, 0, 41, 0)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["meter_id"], "m-1");
        assert_eq!(v["audited_by"], "weir");
        assert_eq!(v["source_offset"], 41);
        assert!(s.stamp(b"[1]", 0, 0, 0).is_err());
    }
}
