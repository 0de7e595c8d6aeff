//! `filter`: keep a record only when every comparison on its numeric fields holds.

use weir_config::{Comparison, FilterOp};

#[derive(Debug, Clone)]
pub struct Filter {
    /// Index into [`crate::Record::values`], comparison, right-hand value.
    checks: Vec<(usize, Comparison, f64)>,
}

impl Filter {
    /// `field_index` maps a field name to its index in the decoder's value fields.
    pub fn new(ops: &[FilterOp], field_index: impl Fn(&str) -> usize) -> Filter {
        Filter {
            checks: ops
                .iter()
                .map(|op| (field_index(&op.field), op.op, op.value))
                .collect(),
        }
    }

    pub fn keeps(&self, values: &[f64]) -> bool {
        self.checks
            .iter()
            .all(|&(i, cmp, v)| cmp.holds(values[i], v))
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_comparisons_must_hold() {
        let ops = vec![
            FilterOp {
                field: "kwh".into(),
                op: Comparison::Ge,
                value: 0.0,
            },
            FilterOp {
                field: "volts".into(),
                op: Comparison::Lt,
                value: 250.0,
            },
        ];
        let f = Filter::new(&ops, |name| if name == "kwh" { 0 } else { 1 });
        assert!(f.keeps(&[0.0, 230.0]));
        assert!(!f.keeps(&[-1.0, 230.0]));
        assert!(!f.keeps(&[1.0, 250.0]));
    }
}
