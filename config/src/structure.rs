//! Every structural error of a TOML file, not just the first: unknown keys, wrong types and
//! missing required keys, each at its position in the file.
//!
//! serde stops at the first error. So the file is deserialized again and again: after each error
//! the offending entry is taken out of a working copy of the document (an unknown key is removed,
//! a wrong value or a missing key gets a stand-in of a type that deserializes) and the next error
//! is sought. Errors are located by their path in the document (`processing.commit_interval`,
//! `pipeline[2].window.size`), which the edits do not change, and reported at that path's span in
//! the original text. An error inside a stand-in is a consequence of the stand-in, not of the file:
//! it is fixed the same way and not reported.

use serde::de::DeserializeOwned;
use std::ops::Range;
use toml_edit::{Array, DocumentMut, ImDocument, InlineTable, Item, Table, Value};

/// The most errors (and repairs) one file is searched for.
const MAX_ROUNDS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

type Path = Vec<Seg>;

/// What part of an entry an offset falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

/// Deserializes `text` as `T`, or returns every structural error as (span in `text`, message).
/// A TOML syntax error is the only error returned: nothing after it can be read reliably.
pub fn deserialize_all<T: DeserializeOwned>(text: &str) -> Result<T, Vec<(Range<usize>, String)>> {
    let first = match toml::from_str::<T>(text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let Ok(original) = text.parse::<ImDocument<String>>() else {
        return Err(vec![(span_of(&first), first.message().to_string())]);
    };
    let mut work: DocumentMut = original.clone().into_mut();
    let mut stand_ins: Vec<Path> = Vec::new();
    let mut errors: Vec<(Range<usize>, String)> = Vec::new();
    let mut error = first;
    for _ in 0..MAX_ROUNDS {
        let shown = work.to_string();
        let message = error.message().to_string();
        let known = stand_ins.len();
        let repaired = if let Some(field) = missing_field(&message) {
            // The error's span may be taken for more than one table: the table that misses the
            // key is the one where adding it helps.
            tables_around(&shown, &error)
                .into_iter()
                .find(|table| {
                    let mut key_path = table.clone();
                    key_path.push(Seg::Key(field.to_string()));
                    let fixed =
                        try_stand_ins::<T>(&mut work, &key_path, &[], (table, &message), false);
                    if fixed {
                        stand_ins.push(key_path);
                    }
                    fixed
                })
                .map(|table| (table, Part::Value))
        } else {
            locate(&shown, &error).filter(|(path, part)| {
                repair::<T>(&mut work, path, *part, &message, &mut stand_ins)
            })
        };
        let Some((path, part)) = repaired else {
            // Nothing to point at or to repair: report it where it is, and stop looking.
            if errors.is_empty() {
                push(&mut errors, (span_of(&error), message));
            }
            break;
        };
        // An error inside a stand-in comes from the stand-in, not from the file.
        if !stand_ins[..known].iter().any(|s| path.starts_with(s)) {
            let span = span_at(original.as_table(), &path, part).unwrap_or(0..0);
            push(&mut errors, (span, message));
        }
        match toml::from_str::<T>(&work.to_string()) {
            Ok(_) => break,
            Err(e) => error = e,
        }
    }
    Err(errors)
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
}

fn push(errors: &mut Vec<(Range<usize>, String)>, e: (Range<usize>, String)) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

fn span_of(e: &toml::de::Error) -> Range<usize> {
    e.span().unwrap_or(0..0)
}

/// The path of the entry (and the part of it) where `error` points in `shown`. For a missing key,
/// the table that misses it.
fn locate(shown: &str, error: &toml::de::Error) -> Option<(Path, Part)> {
    let span = error.span()?;
    let doc = ImDocument::parse(shown).ok()?;
    let mut path = Vec::new();
    let part = find_in_table(doc.as_table(), span.start, &mut path)?;
    Some((path, part))
}

/// The tables whose span covers the error's, innermost first, the top table last.
fn tables_around(shown: &str, error: &toml::de::Error) -> Vec<Path> {
    let mut path = Vec::new();
    if let (Some(span), Ok(doc)) = (error.span(), ImDocument::parse(shown)) {
        table_around(doc.as_table(), &span, &mut path);
    }
    let mut chain = Vec::new();
    loop {
        if !matches!(path.last(), Some(Seg::Index(_))) {
            chain.push(path.clone());
        }
        if path.pop().is_none() {
            break;
        }
    }
    chain
}

fn covers(outer: Option<Range<usize>>, inner: &Range<usize>) -> bool {
    outer.is_some_and(|o| o.start <= inner.start && inner.end <= o.end)
}

/// Extends `path` to the innermost table (standard, inline, or one of an array of tables) whose
/// span covers `span`; the top table when none does.
fn table_around(table: &Table, span: &Range<usize>, path: &mut Path) {
    for (key, item) in table.iter() {
        match item {
            Item::Table(t) if covers(t.span(), span) => {
                path.push(Seg::Key(key.to_string()));
                return table_around(t, span, path);
            }
            Item::ArrayOfTables(tables) => {
                if let Some((i, t)) = tables
                    .iter()
                    .enumerate()
                    .find(|(_, t)| covers(t.span(), span))
                {
                    path.extend([Seg::Key(key.to_string()), Seg::Index(i)]);
                    return table_around(t, span, path);
                }
            }
            Item::Value(v) if covers(v.span(), span) => {
                path.push(Seg::Key(key.to_string()));
                return inline_table_around(v, span, path);
            }
            _ => {}
        }
    }
}

fn inline_table_around(value: &Value, span: &Range<usize>, path: &mut Path) {
    match value {
        Value::InlineTable(t) => {
            for (key, v) in t.iter() {
                if covers(v.span(), span) && matches!(v, Value::InlineTable(_) | Value::Array(_)) {
                    path.push(Seg::Key(key.to_string()));
                    return inline_table_around(v, span, path);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if covers(v.span(), span) {
                    path.push(Seg::Index(i));
                    return inline_table_around(v, span, path);
                }
            }
        }
        _ => {}
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn find_in_table(table: &Table, offset: usize, path: &mut Path) -> Option<Part> {
    for (key, item) in table.iter() {
        path.push(Seg::Key(key.to_string()));
        if contains(table.key(key).and_then(|k| k.span()), offset) {
            return Some(Part::Key);
        }
        let found = match item {
            Item::Value(v) => find_in_value(v, offset, path),
            Item::Table(t) => find_in_table(t, offset, path)
                .or_else(|| contains(t.span(), offset).then_some(Part::Value)),
            Item::ArrayOfTables(tables) => tables.iter().enumerate().find_map(|(i, t)| {
                path.push(Seg::Index(i));
                let found = find_in_table(t, offset, path)
                    .or_else(|| contains(t.span(), offset).then_some(Part::Value));
                if found.is_none() {
                    path.pop();
                }
                found
            }),
            Item::None => None,
        };
        if found.is_some() {
            return found;
        }
        path.pop();
    }
    None
}

fn find_in_value(value: &Value, offset: usize, path: &mut Path) -> Option<Part> {
    if !contains(value.span(), offset) {
        return None;
    }
    let inner = match value {
        Value::InlineTable(t) => t.iter().find_map(|(key, v)| {
            path.push(Seg::Key(key.to_string()));
            let found = if contains(t.key(key).and_then(|k| k.span()), offset) {
                Some(Part::Key)
            } else {
                find_in_value(v, offset, path)
            };
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            path.push(Seg::Index(i));
            let found = find_in_value(v, offset, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        _ => None,
    };
    inner.or(Some(Part::Value))
}

/// The span in `table`'s document of the entry at `path`.
fn span_at(table: &Table, path: &[Seg], part: Part) -> Option<Range<usize>> {
    if path.is_empty() {
        // The top table: the file's start.
        return Some(0..0);
    }
    let (Seg::Key(key), rest) = path.split_first()? else {
        return None;
    };
    let item = table.get(key)?;
    if rest.is_empty() {
        return match (part, item) {
            (Part::Key, _) => table.key(key)?.span(),
            (_, Item::Value(v)) => v.span(),
            (_, Item::Table(t)) => t.span(),
            _ => table.key(key)?.span(),
        };
    }
    match item {
        Item::Table(t) => span_at(t, rest, part),
        Item::Value(v) => span_in_value(v, rest, part),
        Item::ArrayOfTables(tables) => {
            let (Seg::Index(i), rest) = rest.split_first()? else {
                return None;
            };
            let t = tables.get(*i)?;
            if rest.is_empty() {
                t.span()
            } else {
                span_at(t, rest, part)
            }
        }
        Item::None => None,
    }
}

fn span_in_value(value: &Value, path: &[Seg], part: Part) -> Option<Range<usize>> {
    let Some((seg, rest)) = path.split_first() else {
        return value.span();
    };
    match (value, seg) {
        (Value::InlineTable(t), Seg::Key(key)) => {
            let v = t.get(key)?;
            if rest.is_empty() && part == Part::Key {
                t.key(key)?.span()
            } else {
                span_in_value(v, rest, part)
            }
        }
        (Value::Array(a), Seg::Index(i)) => span_in_value(a.get(*i)?, rest, part),
        _ => None,
    }
}

/// Takes the error at `path` out of the working document; false when nothing could be done.
fn repair<T: DeserializeOwned>(
    work: &mut DocumentMut,
    path: &[Seg],
    part: Part,
    message: &str,
    stand_ins: &mut Vec<Path>,
) -> bool {
    let expected = expected_names(message);
    if message.starts_with("unknown field") {
        return remove(work.as_table_mut(), path);
    }
    if part == Part::Key && message.starts_with("unknown variant") {
        // An externally tagged enum (a pipeline step) with an unknown tag: stand in a known one.
        let Some(name) = expected.first() else {
            return false;
        };
        if !remove(work.as_table_mut(), path) {
            return false;
        }
        let mut tag = path.to_vec();
        tag.pop();
        tag.push(Seg::Key(name.clone()));
        stand_ins.push(tag.clone());
        return set(
            work.as_table_mut(),
            &tag,
            Value::InlineTable(InlineTable::new()),
        );
    }
    // A value of the wrong type or out of range.
    stand_ins.push(path.to_vec());
    try_stand_ins::<T>(work, path, &expected, (path, message), true)
}

/// Puts the first stand-in value that moves the error elsewhere at `path`.
/// `before` is the error being repaired (its path and message): a candidate that leaves it where it
/// was is no repair.
fn try_stand_ins<T: DeserializeOwned>(
    work: &mut DocumentMut,
    path: &[Seg],
    expected: &[String],
    before: (&[Seg], &str),
    keep_fallback: bool,
) -> bool {
    let mut candidates: Vec<Value> = expected.iter().map(|n| Value::from(n.as_str())).collect();
    candidates.extend([
        Value::from("1s"),
        Value::from(1i64),
        Value::from(1.0f64),
        Value::from(true),
        Value::Array(Array::from_iter(["x"])),
        Value::Array(Array::new()),
        Value::InlineTable(InlineTable::new()),
        Value::from("x"),
    ]);
    // serde says what it expected ("invalid type: integer `5`, expected a string"): try that first.
    let wanted = before.1.rsplit_once("expected").map_or("", |(_, w)| w);
    let first = [
        ("duration", 0),
        ("string", 0),
        ("i64", 1),
        ("u64", 1),
        ("i16", 1),
        ("u32", 1),
        ("integer", 1),
        ("f64", 2),
        ("float", 2),
        ("boolean", 3),
        ("sequence", 4),
        ("map", 6),
        ("struct", 6),
    ]
    .iter()
    .find(|(word, _)| wanted.contains(word))
    .map(|(_, at)| expected.len() + at);
    if let Some(at) = first {
        let c = candidates.remove(at);
        candidates.insert(0, c);
    }
    let fallback = candidates[0].clone();
    let mut queue: std::collections::VecDeque<Value> = candidates.into();
    let mut tried = 0;
    while let Some(candidate) = queue.pop_front() {
        tried += 1;
        if tried > 16 {
            break;
        }
        let mut trial = work.clone();
        if !set(trial.as_table_mut(), path, candidate) {
            return false;
        }
        let text = trial.to_string();
        let e = match toml::from_str::<T>(&text) {
            Ok(_) => {
                *work = trial;
                return true;
            }
            Err(e) => e,
        };
        if missing_field(e.message()).is_some() {
            // Its span is a table, not an entry: another key missing means this one is done.
            if e.message() != before.1 {
                *work = trial;
                return true;
            }
            continue;
        }
        match locate(&text, &e) {
            Some((p, _)) if p == path => {
                // Wrong again, but an enum says what it takes: try those first.
                for name in expected_names(e.message()).into_iter().rev() {
                    queue.push_front(Value::from(name));
                }
            }
            Some((p, _)) if (p.as_slice(), e.message()) != before => {
                *work = trial;
                return true;
            }
            _ => {}
        }
    }
    // Nothing deserializes there: leave a value that at least parses, and let the next round
    // decide (the round limit ends a search that goes nowhere).
    keep_fallback && set(work.as_table_mut(), path, fallback)
}

/// The names serde lists after "expected one of".
fn expected_names(message: &str) -> Vec<String> {
    message
        .split_once("expected")
        .map(|(_, rest)| {
            rest.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the entry at `path`.
fn remove(table: &mut Table, path: &[Seg]) -> bool {
    edit(table, path, None)
}

/// Sets (or adds) the entry at `path`.
fn set(table: &mut Table, path: &[Seg], value: Value) -> bool {
    edit(table, path, Some(value))
}

fn edit(table: &mut Table, path: &[Seg], value: Option<Value>) -> bool {
    let Some((Seg::Key(key), rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return match value {
            Some(v) => {
                table.insert(key, Item::Value(v));
                true
            }
            None => table.remove(key).is_some(),
        };
    }
    match table.get_mut(key) {
        Some(Item::Table(t)) => edit(t, rest, value),
        Some(Item::ArrayOfTables(a)) => match rest.split_first() {
            Some((Seg::Index(i), rest)) => a.get_mut(*i).is_some_and(|t| edit(t, rest, value)),
            _ => false,
        },
        Some(Item::Value(v)) => edit_value(v, rest, value),
        _ => false,
    }
}

fn edit_value(target: &mut Value, path: &[Seg], value: Option<Value>) -> bool {
    let Some((seg, rest)) = path.split_first() else {
        return false;
    };
    match (target, seg) {
        (Value::InlineTable(t), Seg::Key(key)) => {
            if rest.is_empty() {
                match value {
                    Some(v) => {
                        t.insert(key, v);
                        true
                    }
                    None => t.remove(key).is_some(),
                }
            } else {
                t.get_mut(key).is_some_and(|v| edit_value(v, rest, value))
            }
        }
        (Value::Array(a), Seg::Index(i)) => {
            if rest.is_empty() {
                match value {
                    Some(v) if *i < a.len() => {
                        a.replace(*i, v);
                        true
                    }
                    _ => false,
                }
            } else {
                a.get_mut(*i).is_some_and(|v| edit_value(v, rest, value))
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    fn errors(text: &str) -> Vec<String> {
        match crate::parse_job("job.toml", text, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn two_unknown_keys_in_one_table() {
        let text = "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n[processing]\nbogus_option_xyz = 1\nanother_bogus_key_abc = 2\n";
        assert_eq!(
            errors(text),
            [
                "job.toml:7:1: unknown key `bogus_option_xyz`; expected one of guarantee, commit_interval, bad_records, dead_letter_topic, transaction_timeout",
                "job.toml:8:1: unknown key `another_bogus_key_abc`; expected one of guarantee, commit_interval, bad_records, dead_letter_topic, transaction_timeout",
            ]
        );
    }

    #[test]
    fn everything_at_once() {
        let text = r#"nme = "j"
[source]
topic = ["t"]
format = "jsn"
[[pipeline]]
windw = { type = "tumbling", size = "1h" }
[[pipeline]]
window = { type = "tumbling", size = 5, grase = "1m" }
[[pipeline]]
aggregate = { store = "s", field = "kwh", functions = ["avg", "median"] }
[processing]
commit_interval = true
"#;
        assert_eq!(
            errors(text),
            [
                "job.toml:1:1: unknown key `nme`; did you mean `name`?",
                "job.toml:1:1: missing field `name`",
                "job.toml:1:1: missing field `sink`",
                "job.toml:2:1: missing field `topics`",
                "job.toml:3:1: unknown key `topic`; did you mean `topics`?",
                "job.toml:4:10: unknown variant `jsn`, expected `json` or `csv`",
                "job.toml:6:1: unknown variant `windw`, expected one of `filter`, `map`, `select`, `key_by`, `window`, `aggregate`, `stamp`",
                "job.toml:8:38: invalid type: integer `5`, expected a duration string such as \"500ms\", \"30s\" or \"1h\"",
                "job.toml:8:41: unknown key `grase`; did you mean `grace`?",
                "job.toml:10:63: unknown variant `median`, expected one of `avg`, `sum`, `count`, `min`, `max`",
                "job.toml:12:19: invalid type: boolean `true`, expected a duration string such as \"500ms\", \"30s\" or \"1h\"",
            ]
        );
    }

    #[test]
    fn a_syntax_error_is_the_only_error() {
        let text = "name = \"j\"\nbogus = 1\n[source\ntopics = [\"t\"]\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("job.toml:3:"), "{errs:?}");
    }

    #[test]
    fn a_valid_file_has_no_errors_and_errors_never_loop() {
        assert!(
            errors("name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n").is_empty()
        );
        // Every key wrong, everywhere: the search ends, with one error per problem.
        let mut text = String::from(
            "name = 1\n[source]\ntopics = 2\nformat = 3\n[sink]\ntype = 4\n[processing]\n",
        );
        for i in 0..150 {
            text.push_str(&format!("bogus_{i} = {i}\n"));
        }
        let errs = errors(&text);
        assert!(errs.len() >= 100, "{}", errs.len());
        assert!(
            errs[0].starts_with("job.toml:1:8: invalid type: integer `1`"),
            "{errs:?}"
        );
    }
}
