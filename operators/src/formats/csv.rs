//! CSV: a record is one line of comma-separated cells, named by `source.columns`. Cells are
//! trimmed; a cell that starts with `"` is quoted (RFC 4180: it may hold commas and line breaks,
//! and `""` inside it is one `"`). Output: the row's values in order, quoted where CSV needs it,
//! no header.

use super::{Decode, Encode, FieldNames, Fields, Object, RawRecord, Row, Value};
use crate::excerpt::quoted;
use crate::DecodeError;
use std::borrow::Cow;
use weir_config::SourceConfig;

#[derive(Debug)]
pub struct CsvDecode {
    names: FieldNames,
    columns: Vec<String>,
    /// The column index of the key, the timestamp and each value field.
    key: Option<usize>,
    ts: Option<usize>,
    values: Vec<usize>,
    /// The column of `source.key_field`, which forwarding keeps as text.
    key_column: Option<usize>,
}

/// One cell of a line.
#[derive(Debug, PartialEq)]
struct Cell<'a> {
    text: Cow<'a, str>,
    quoted: bool,
}

impl CsvDecode {
    pub fn new(source: &SourceConfig, names: &FieldNames) -> Result<CsvDecode, String> {
        let position = |name: &str| source.columns.iter().position(|c| c == name);
        let col = |name: &str| -> Result<usize, String> {
            position(name).ok_or_else(|| {
                format!(
                    "field {name:?} is not one of the csv columns {:?}",
                    source.columns
                )
            })
        };
        Ok(CsvDecode {
            key: names.key.as_deref().map(col).transpose()?,
            ts: names.timestamp.as_deref().map(col).transpose()?,
            values: names
                .values
                .iter()
                .map(|f| col(f))
                .collect::<Result<_, _>>()?,
            key_column: source.key_field.as_deref().and_then(position),
            names: names.clone(),
            columns: source.columns.clone(),
        })
    }
}

/// The cells of one line.
fn cells(payload: &[u8]) -> Result<Vec<Cell<'_>>, DecodeError> {
    let line = std::str::from_utf8(payload)
        .map_err(|_| DecodeError("CSV record is not UTF-8".into()))?
        .trim_end_matches(['\r', '\n']);
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        let start = rest.trim_start();
        if let Some(body) = start.strip_prefix('"') {
            let (text, after) = unquote(body)?;
            cells.push(Cell { text, quoted: true });
            let after = after.trim_start();
            if after.is_empty() {
                return Ok(cells);
            }
            rest = after.strip_prefix(',').ok_or_else(|| {
                DecodeError(format!(
                    "CSV record has text after a quoted cell: {}",
                    quoted(after)
                ))
            })?;
            continue;
        }
        let (cell, next) = match rest.split_once(',') {
            Some((cell, next)) => (cell, Some(next)),
            None => (rest, None),
        };
        cells.push(Cell {
            text: Cow::Borrowed(cell.trim()),
            quoted: false,
        });
        match next {
            Some(next) => rest = next,
            None => return Ok(cells),
        }
    }
}

/// A quoted cell's text (after its opening quote) and what follows its closing quote.
fn unquote(body: &str) -> Result<(Cow<'_, str>, &str), DecodeError> {
    let unterminated = || DecodeError("CSV record has a quoted cell that does not end".into());
    let end = body.find('"').ok_or_else(unterminated)?;
    if !body[end + 1..].starts_with('"') {
        return Ok((Cow::Borrowed(&body[..end]), &body[end + 1..]));
    }
    // Doubled quotes: the text is copied without them.
    let mut text = String::new();
    let mut rest = body;
    loop {
        let end = rest.find('"').ok_or_else(unterminated)?;
        text.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(r) => {
                text.push('"');
                rest = r;
            }
            None => return Ok((Cow::Owned(text), rest)),
        }
    }
}

impl Decode for CsvDecode {
    fn decode(&self, record: RawRecord<'_>, out: &mut Fields) -> Result<(), DecodeError> {
        let cols = cells(record.payload)?;
        let get = |i: usize| {
            cols.get(i).map(|c| &*c.text).ok_or_else(|| {
                DecodeError(format!(
                    "CSV record has {} columns, expected at least {}",
                    cols.len(),
                    i + 1
                ))
            })
        };
        if let Some(i) = self.key {
            out.key = Some(get(i)?.to_string());
        }
        if let Some(i) = self.ts {
            out.ts_ms = Some(self.names.ts_from_str(get(i)?)?);
        }
        for (slot, &i) in out.values.iter_mut().zip(&self.values) {
            let text = get(i)?;
            *slot = Some(text.parse::<f64>().map_err(|_| {
                DecodeError(format!("column {i} is not a number: {}", quoted(text)))
            })?);
        }
        Ok(())
    }

    /// Each column a field: a cell written as a number (JSON's syntax, unquoted) is a number,
    /// any other cell text, and so is the key column.
    fn object(&self, payload: &[u8]) -> Result<Object, DecodeError> {
        let cells = cells(payload)?;
        if cells.len() != self.columns.len() {
            return Err(DecodeError(format!(
                "CSV record has {} columns, source.columns names {}",
                cells.len(),
                self.columns.len()
            )));
        }
        let mut object = Object::new();
        for (i, (name, cell)) in self.columns.iter().zip(cells).enumerate() {
            let number = (!cell.quoted && self.key_column != Some(i))
                .then(|| serde_json::from_str::<serde_json::Number>(&cell.text).ok())
                .flatten();
            let value = match number {
                Some(n) => serde_json::Value::Number(n),
                None => serde_json::Value::String(cell.text.into_owned()),
            };
            object.insert(name.clone(), value);
        }
        Ok(object)
    }
}

/// CSV output.
#[derive(Debug)]
pub struct CsvEncode;

impl Encode for CsvEncode {
    fn encode(&self, row: &Row<'_>, out: &mut Vec<u8>) {
        for (i, (_, value)) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match value {
                Value::Null => {}
                Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Int(n) => number(out, n),
                // As JSON writes numbers; not finite: empty, as null.
                Value::Float(f) if f.is_finite() => number(out, f),
                Value::Float(_) => {}
                Value::Str(s) => cell(out, s),
                Value::Json(v) => cell(out, &v.to_string()),
            }
        }
    }

    fn positional(&self) -> bool {
        true
    }
}

fn number<T: serde::Serialize>(out: &mut Vec<u8>, n: &T) {
    serde_json::to_writer(&mut *out, n).expect("writing to memory");
}

/// Text as a cell: quoted when it holds a comma, a quote or a line break, when it is empty (an
/// empty cell is null) or when a reader would trim it.
fn cell(out: &mut Vec<u8>, text: &str) {
    let needs_quotes =
        text.is_empty() || text.contains([',', '"', '\r', '\n']) || text.trim() != text;
    if !needs_quotes {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests;
