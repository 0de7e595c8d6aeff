//! The per-record steps of a job (`filter`, `map`, `select`, `stamp`, `key_by`), compiled once.
//!
//! Two forms, for the two kinds of job:
//! - [`Program`] (stateful jobs): field names are resolved to slots of a `Vec<f64>` when the job
//!   starts, so the decoder extracts only the numeric input fields used and each record costs a
//!   few array reads; renames and selects cost nothing at run time.
//! - [`Forward`](crate::Forward) (stateless jobs, `forward.rs`): records are objects that leave
//!   the job transformed, so the steps edit the object itself.

use crate::DecodeError;
use std::collections::HashMap;
use weir_config::{Comparison, Expr, Job, Operator};

/// Evaluates a derivation; a missing field or a non-finite result (division by zero) is a bad record.
pub(crate) fn derive<F>(
    name: &str,
    expr: &Expr<F>,
    get: &impl Fn(&F) -> Option<f64>,
) -> Result<f64, DecodeError> {
    match expr.eval(get) {
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(DecodeError(format!("derive {name}: the result is {v}"))),
        None => Err(DecodeError(format!(
            "derive {name}: a numeric field it reads is missing"
        ))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Input(usize),
    Derived(usize),
}

/// A step over slots `S` (while compiling: input or derived; then: an index into the values).
#[derive(Debug, Clone)]
enum Step<S = usize> {
    Filter(S, Comparison, f64),
    Derive(String, Expr<S>),
}

/// The steps ahead of a stateful job's window, over slots.
#[derive(Debug, Clone)]
pub struct Program {
    /// The numeric input fields to decode, in slot order.
    pub input_fields: Vec<String>,
    /// The input field holding the key the aggregate groups by (`key_by` followed back through
    /// renames); `None` = the source's key.
    pub key_input_field: Option<String>,
    /// The name of the key in results.
    pub key_name: String,
    /// The slot of the aggregated field.
    pub value_slot: usize,
    steps: Vec<Step>,
}

impl Program {
    /// Compiles the steps before the window of a validated stateful job.
    pub fn compile(job: &Job) -> Program {
        let mut inputs: Vec<String> = Vec::new();
        let mut derived = 0;
        let mut env: HashMap<String, Slot> = HashMap::new();
        let mut resolve = |env: &mut HashMap<String, Slot>, name: &str| -> Slot {
            *env.entry(name.to_string()).or_insert_with(|| {
                inputs.push(name.to_string());
                Slot::Input(inputs.len() - 1)
            })
        };
        let mut steps: Vec<Step<Slot>> = Vec::new();
        let mut value = None;
        for op in &job.pipeline {
            match op.get_ref() {
                Operator::Filter(f) => {
                    let s = resolve(&mut env, &f.field);
                    steps.push(Step::Filter(s, f.op, f.value));
                }
                Operator::Map(m) => {
                    let renamed: Vec<(String, Slot)> = m
                        .rename
                        .iter()
                        .map(|(from, to)| (to.clone(), resolve(&mut env, from)))
                        .collect();
                    for from in m.rename.keys() {
                        env.remove(from);
                    }
                    env.extend(renamed);
                    let mut new = Vec::new();
                    for (name, text) in &m.derive {
                        let expr = Expr::parse(text.get_ref()).expect("validated");
                        let e = expr.map_fields(&mut |f: &String| resolve(&mut env, f));
                        let out = Slot::Derived(derived);
                        derived += 1;
                        steps.push(Step::Derive(name.clone(), e));
                        new.push((name.clone(), out));
                    }
                    env.extend(new);
                }
                Operator::Aggregate(a) => value = Some(resolve(&mut env, &a.field)),
                Operator::Select(_)
                | Operator::KeyBy(_)
                | Operator::Stamp(_)
                | Operator::Window(_) => {}
            }
        }
        let n = inputs.len();
        let index = |s: Slot| match s {
            Slot::Input(i) => i,
            Slot::Derived(j) => n + j,
        };
        Program {
            key_input_field: job.key_by_input_field(),
            key_name: job
                .key_by()
                .map(str::to_string)
                .or_else(|| job.source.key_field.clone())
                .unwrap_or_else(|| "key".into()),
            value_slot: index(value.expect("a stateful job has an aggregate")),
            steps: steps
                .into_iter()
                .map(|step| match step {
                    Step::Filter(s, c, v) => Step::Filter(index(s), c, v),
                    Step::Derive(name, e) => {
                        Step::Derive(name, e.map_fields(&mut |s: &Slot| index(*s)))
                    }
                })
                .collect(),
            input_fields: inputs,
        }
    }

    /// Runs the steps over the decoded input values (derived values are appended). `Ok(false)`:
    /// a filter dropped the record.
    pub fn run(&self, values: &mut Vec<f64>) -> Result<bool, DecodeError> {
        for step in &self.steps {
            match step {
                Step::Filter(i, c, v) => {
                    if !c.holds(values[*i], *v) {
                        return Ok(false);
                    }
                }
                Step::Derive(name, e) => {
                    let v = derive(name, e, &|i: &usize| values.get(*i).copied())?;
                    values.push(v);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weir_config::parse_job;

    pub(crate) fn job(pipeline: &str) -> Job {
        let text = format!(
            "name = \"j\"\n[source]\ntopics = [\"in\"]\nkey_field = \"meter_id\"\ntimestamp_field = \"ts\"\n{pipeline}\n[sink]\ntopic = \"out\"\n"
        );
        parse_job("j.toml", &text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_stateful_program_resolves_renames_and_derivations_to_slots() {
        let j = job(r#"
[[pipeline]]
map = { rename = { kwh = "energy" }, derive = { wh = "energy * 1000", half = "energy / 2" } }
[[pipeline]]
filter = { field = "wh", op = ">", value = 100.0 }
[[pipeline]]
key_by = { field = "site" }
[[pipeline]]
window = { type = "tumbling", size = "1h" }
[[pipeline]]
aggregate = { store = "s", field = "wh", functions = ["sum"] }
"#);
        let p = Program::compile(&j);
        assert_eq!(p.input_fields, vec!["kwh"]);
        assert_eq!(p.key_input_field.as_deref(), Some("site"));
        assert_eq!(p.key_name, "site");
        let mut values = vec![0.5];
        assert!(p.run(&mut values).unwrap());
        assert_eq!(values[p.value_slot], 500.0);
        let mut small = vec![0.05];
        assert!(!p.run(&mut small).unwrap(), "filtered on the derived field");
        assert_eq!(j.repartition_topic().as_deref(), Some("j-repartition"));
    }

    #[test]
    fn a_derivation_that_divides_by_zero_is_a_bad_record() {
        let j = job(r#"
[[pipeline]]
map = { derive = { ratio = "kwh / peak" } }
[[pipeline]]
window = { type = "session", gap = "30m" }
[[pipeline]]
aggregate = { store = "s", field = "ratio", functions = ["avg"] }
"#);
        let p = Program::compile(&j);
        assert_eq!(p.input_fields, vec!["kwh", "peak"]);
        let err = p.run(&mut vec![1.0, 0.0]).unwrap_err();
        assert!(err.0.contains("derive ratio: the result is inf"), "{err}");
        assert_eq!(j.repartition_topic(), None, "no key_by: no repartition");
    }
}
