//! The steps of a stateless job (`filter`, `map`, `select`, `stamp`, `key_by`) over each
//! record's object, as the source's format reads it; the sink's format writes what is left.

use crate::formats::{self, Decode, Encode, FieldNames, Object, SchemaResolver, Value};
use crate::program::derive;
use crate::time::format_rfc3339_ms;
use crate::DecodeError;
use std::collections::HashMap;
use std::sync::Arc;
use weir_config::{Expr, Job, Operator};

/// The steps of a stateless job, over the record's object.
pub struct Forward {
    steps: Vec<Operator>,
    /// Derivations parsed once, by step index and name.
    exprs: HashMap<(usize, String), Expr>,
    input: Box<dyn Decode>,
    output: Arc<dyn Encode>,
    /// The forwarded fields in order, for a positional output (see `Job::forwarded_fields`).
    columns: Option<Vec<String>>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("steps", &self.steps)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// A forwarded record: its key (`None` = the input record's key) and its value, encoded.
pub type Forwarded = (Option<String>, Vec<u8>);

impl Forward {
    /// In the source's and the sink's formats, without a schema registry.
    pub fn compile(job: &Job) -> Forward {
        Forward::with_schemas(job, &formats::no_schemas()).expect("a JSON or CSV decoder")
    }

    /// In the source's and the sink's formats, their schemas looked up with `schemas`.
    pub fn with_schemas(job: &Job, schemas: &Arc<dyn SchemaResolver>) -> Result<Forward, String> {
        let input = formats::decoder(&job.source, &FieldNames::none(), schemas)?;
        Ok(Forward::with_formats(
            job,
            input,
            formats::encoder(job.sink.format, schemas),
        ))
    }

    /// Records read with `input` and written with `output`.
    pub fn with_formats(job: &Job, input: Box<dyn Decode>, output: Arc<dyn Encode>) -> Forward {
        let steps: Vec<Operator> = job.plan().steps;
        let mut exprs = HashMap::new();
        for (i, op) in steps.iter().enumerate() {
            if let Operator::Map(m) = op {
                for (name, text) in &m.derive {
                    exprs.insert(
                        (i, name.clone()),
                        Expr::parse(text.get_ref()).expect("validated"),
                    );
                }
            }
        }
        let columns = output
            .positional()
            .then(|| job.forwarded_fields())
            .flatten();
        Forward {
            steps,
            exprs,
            input,
            output,
            columns,
        }
    }

    /// Applies every step; `Ok(None)`: a filter dropped the record.
    pub fn apply(
        &self,
        payload: &[u8],
        partition: i32,
        offset: i64,
        now_ms: i64,
    ) -> Result<Option<Forwarded>, DecodeError> {
        let mut object = self.input.object(payload)?;
        let mut key = None;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Operator::Filter(f) => {
                    let v = object
                        .get(&f.field)
                        .and_then(|v| v.as_f64())
                        .ok_or_else(|| {
                            DecodeError(format!("missing numeric field {:?}", f.field))
                        })?;
                    if !f.op.holds(v, f.value) {
                        return Ok(None);
                    }
                }
                Operator::Map(m) => {
                    for (from, to) in &m.rename {
                        if let Some(v) = object.remove(from) {
                            object.insert(to.clone(), v);
                        }
                    }
                    let mut derived = Vec::new();
                    for name in m.derive.keys() {
                        let e = &self.exprs[&(i, name.clone())];
                        let v = derive(name, e, &|f: &String| {
                            object.get(f).and_then(|v| v.as_f64())
                        })?;
                        derived.push((name.clone(), v));
                    }
                    for (name, v) in derived {
                        object.insert(name, v.into());
                    }
                    if let Some(keep) = &m.select {
                        object.retain(|k, _| keep.contains(k));
                    }
                }
                Operator::Select(keep) => object.retain(|k, _| keep.contains(k)),
                Operator::Stamp(s) => {
                    for (name, template) in &s.fields {
                        let value = match template.as_str() {
                            "{partition}" => serde_json::Value::from(partition),
                            "{offset}" => serde_json::Value::from(offset),
                            "{processed_at}" => serde_json::Value::from(format_rfc3339_ms(now_ms)),
                            literal => serde_json::Value::from(literal),
                        };
                        object.insert(name.clone(), value);
                    }
                }
                Operator::KeyBy(k) => {
                    let field = k.field.get_ref();
                    key = Some(match object.get(field) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v @ serde_json::Value::Number(_)) => v.to_string(),
                        _ => {
                            return Err(DecodeError(format!(
                                "key_by: field {field:?} is missing or not a string or number"
                            )))
                        }
                    });
                }
                Operator::Window(_) | Operator::Aggregate(_) => {}
            }
        }
        Ok(Some((key, self.encode(&object))))
    }

    /// The object's fields (or the job's fixed ones, for a positional output), encoded.
    fn encode(&self, object: &Object) -> Vec<u8> {
        let row: Vec<(&str, Value)> = match &self.columns {
            Some(columns) => columns
                .iter()
                .map(|c| {
                    (
                        c.as_str(),
                        object.get(c).map_or(Value::Null, Value::of_json),
                    )
                })
                .collect(),
            None => object
                .iter()
                .map(|(k, v)| (k.as_str(), Value::of_json(v)))
                .collect(),
        };
        let mut out = Vec::new();
        self.output.encode(&row, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::tests::job;

    #[test]
    fn forwarding_filters_maps_selects_stamps_and_rekeys_json_objects() {
        let j = job(r#"
[[pipeline]]
filter = { field = "kwh", op = ">=", value = 0.0 }
[[pipeline]]
map = { rename = { meter_id = "meter" }, derive = { wh = "kwh * 1000" }, select = ["meter", "site", "wh"] }
[[pipeline]]
stamp = { fields = { at = "{offset}" } }
[[pipeline]]
key_by = { field = "site" }
"#);
        let f = Forward::compile(&j);
        let (key, value) = f
            .apply(
                br#"{"meter_id":"m1","site":"north","kwh":0.25,"ts":5}"#,
                0,
                7,
                0,
            )
            .unwrap()
            .unwrap();
        assert_eq!(key.as_deref(), Some("north"));
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"meter": "m1", "site": "north", "wh": 250.0, "at": 7})
        );
        assert!(f.apply(br#"{"kwh":-1}"#, 0, 0, 0).unwrap().is_none());
        assert!(f.apply(br#"{"meter_id":"m"}"#, 0, 0, 0).is_err());
    }

    fn job_with(source: &str, pipeline: &str, sink_format: &str) -> Job {
        let text = format!(
            "name = \"j\"\n[source]\ntopics = [\"in\"]\n{source}\n{pipeline}\n[sink]\ntopic = \"out\"\nformat = \"{sink_format}\"\n"
        );
        weir_config::parse_job("j.toml", &text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn forward(job: &Job, payload: &[u8]) -> String {
        let (_, value) = Forward::compile(job)
            .apply(payload, 3, 7, 0)
            .unwrap()
            .unwrap();
        String::from_utf8(value).unwrap()
    }

    const CSV: &str =
        "format = \"csv\"\ncolumns = [\"meter_id\", \"ts\", \"kwh\"]\nkey_field = \"meter_id\"";
    const STEPS: &str = "[[pipeline]]\nfilter = { field = \"kwh\", op = \">\", value = 0.0 }\n[[pipeline]]\nmap = { rename = { meter_id = \"meter\" }, derive = { wh = \"kwh * 1000\" } }\n[[pipeline]]\nstamp = { fields = { at = \"{offset}\" } }";

    #[test]
    fn csv_records_forward_as_json_objects() {
        let j = job_with(CSV, STEPS, "json");
        assert_eq!(
            forward(&j, b"0042, 1764547200000, 0.25"),
            r#"{"at":7,"kwh":0.25,"meter":"0042","ts":1764547200000,"wh":250.0}"#
        );
        let f = Forward::compile(&j);
        assert!(f.apply(b"m, 1, -1", 0, 0, 0).unwrap().is_none(), "filtered");
        assert!(f.apply(b"m, 1", 0, 0, 0).is_err(), "a column short");
    }

    #[test]
    fn forwarded_records_are_csv_lines_of_the_fixed_columns() {
        // CSV in: the columns, as the steps change them.
        let j = job_with(CSV, STEPS, "csv");
        assert_eq!(
            forward(&j, br#""m, 1", 1764547200000, 0.25"#),
            r#""m, 1",1764547200000,0.25,250.0,7"#
        );
        // JSON in: the selected fields, in the select's order; one a record lacks is empty.
        let select = "[[pipeline]]\nselect = [\"kwh\", \"meter_id\", \"note\"]";
        let j = job_with("", select, "csv");
        assert_eq!(
            forward(&j, br#"{"meter_id":"m1","kwh":0.5,"extra":[1]}"#),
            "0.5,m1,"
        );
        // The same job to JSON: the fields the record has, nothing added.
        let j = job_with("", select, "json");
        assert_eq!(
            forward(&j, br#"{"meter_id":"m1","kwh":0.5,"extra":[1]}"#),
            r#"{"kwh":0.5,"meter_id":"m1"}"#
        );
        // Values JSON alone has are written as JSON text.
        let j = job_with("", "[[pipeline]]\nselect = [\"v\", \"big\"]", "csv");
        assert_eq!(
            forward(&j, br#"{"v":{"a":[1,"x"]},"big":18446744073709551615}"#),
            r#""{""a"":[1,""x""]}",18446744073709551615"#
        );
    }
}
