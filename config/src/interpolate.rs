//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` inside the string values of a job file.
//! `$$` writes a literal `$`.
//!
//! The file is parsed first; then every string value (a table's value, an array's element, an
//! inline table's value; never a key, a comment or a number) is resolved, and the value it resolves
//! to is taken verbatim: quotes, backslashes, `\u0041` and newlines in a variable are characters of
//! the value, never TOML. The resolved values are spliced back into the text as newly encoded
//! literals, and the text is deserialized; an [`OffsetMap`] takes every position in that text back
//! to the file, so errors point where the user wrote the value.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, Value};

/// An interpolation problem at a byte offset of the original text.
#[derive(Debug, PartialEq)]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

/// The text with every string value resolved, and what the resolution found.
#[derive(Debug)]
pub struct Resolved {
    /// Valid TOML when the file was; each rewritten literal is a one-line basic string.
    pub text: String,
    pub map: OffsetMap,
    /// Every value taken from the environment, in file order (defaults written in the file are not
    /// among them).
    pub from_env: Vec<String>,
    pub errors: Vec<InterpolationError>,
    /// Spans (in the original text) of the string literals that could not be resolved: they are
    /// left as written, and errors inside them are consequences, not news.
    pub unresolved: Vec<Range<usize>>,
}

/// Positions in the resolved text back to positions in the original text.
#[derive(Debug, Default)]
pub struct OffsetMap {
    /// (span in the resolved text, span in the original text) of each rewritten literal, in order.
    pieces: Vec<(Range<usize>, Range<usize>)>,
}

impl OffsetMap {
    /// The original offset of a resolved one. Inside a rewritten literal: where the literal starts.
    pub fn original(&self, offset: usize) -> usize {
        let at = self.pieces.partition_point(|(new, _)| new.start <= offset);
        match at.checked_sub(1).map(|i| &self.pieces[i]) {
            None => offset,
            Some((new, old)) if offset < new.end => old.start,
            Some((new, old)) => old.end + (offset - new.end),
        }
    }
}

/// Resolves every string value of `text`. Text that is not TOML comes back as it is: the parser
/// reports it.
pub fn resolve(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Resolved {
    let mut resolved = Resolved {
        text: text.to_string(),
        map: OffsetMap::default(),
        from_env: Vec::new(),
        errors: Vec::new(),
        unresolved: Vec::new(),
    };
    let Ok(doc) = ImDocument::parse(text) else {
        return resolved;
    };
    let mut strings = Vec::new();
    strings_in_table(doc.as_table(), &mut strings);
    strings.sort_by_key(|(span, _)| span.start);
    strings.dedup_by_key(|(span, _)| span.start);

    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (span, value) in strings {
        if !value.contains('$') || span.start < copied || text.get(span.clone()).is_none() {
            continue;
        }
        match substitute(&value, lookup) {
            Err(errs) => {
                let positions = text
                    .get(span.clone())
                    .and_then(|raw| decoded_positions(raw, &value));
                for (at, message) in errs {
                    let within = positions.as_ref().map_or(0, |p| p[at]);
                    resolved.errors.push(InterpolationError {
                        offset: span.start + within,
                        message,
                    });
                }
                resolved.unresolved.push(span);
            }
            Ok((new, env_values)) => {
                resolved.from_env.extend(env_values);
                if new == value {
                    continue;
                }
                out.push_str(&text[copied..span.start]);
                let start = out.len();
                out.push_str(&basic_string(&new));
                resolved.map.pieces.push((start..out.len(), span.clone()));
                copied = span.end;
            }
        }
    }
    if !resolved.map.pieces.is_empty() {
        out.push_str(&text[copied..]);
        resolved.text = out;
    }
    resolved
}

fn strings_in_table(table: &Table, out: &mut Vec<(Range<usize>, String)>) {
    for (_, item) in table.iter() {
        match item {
            Item::Value(v) => strings_in_value(v, out),
            Item::Table(t) => strings_in_table(t, out),
            Item::ArrayOfTables(tables) => {
                for t in tables.iter() {
                    strings_in_table(t, out);
                }
            }
            Item::None => {}
        }
    }
}

fn strings_in_value(value: &Value, out: &mut Vec<(Range<usize>, String)>) {
    match value {
        Value::String(s) => {
            if let Some(span) = s.span() {
                out.push((span, s.value().clone()));
            }
        }
        Value::Array(a) => a.iter().for_each(|v| strings_in_value(v, out)),
        Value::InlineTable(t) => t.iter().for_each(|(_, v)| strings_in_value(v, out)),
        _ => {}
    }
}

/// The value with every `${...}` and `$$` resolved, and the values taken from the environment; or
/// every problem, each at a byte offset of `value`.
#[allow(clippy::type_complexity)]
fn substitute(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), Vec<(usize, String)>> {
    let mut out = String::with_capacity(value.len());
    let mut from_env = Vec::new();
    let mut errors = Vec::new();
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let at = value.len() - rest.len() + dollar;
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            errors.push((
                at,
                "unterminated `${`: expected `}` before the end of the string".to_string(),
            ));
            rest = "";
            break;
        };
        let inner = &body[..close];
        rest = &body[close + 1..];
        let (name, rule) = match inner.find(':') {
            Some(p) => (&inner[..p], Some(&inner[p..])),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            errors.push((at, format!("bad variable name {name:?} in `${{{inner}}}`")));
            continue;
        }
        // Set to the empty string counts as unset, as `:-` and `:?` do in the shell.
        match (lookup(name).filter(|v| !v.is_empty()), rule) {
            (Some(v), None) => {
                out.push_str(&v);
                from_env.push(v);
            }
            (Some(v), Some(r)) if r.starts_with(":-") || r.starts_with(":?") => {
                out.push_str(&v);
                from_env.push(v);
            }
            (None, Some(r)) if r.starts_with(":-") => out.push_str(&r[2..]),
            (None, Some(r)) if r.starts_with(":?") => {
                let why = if r.len() > 2 { &r[2..] } else { "is required" };
                errors.push((at, format!("environment variable {name} is not set: {why}")));
            }
            (_, Some(r)) => errors.push((
                at,
                format!("unknown modifier {r:?} in `${{{inner}}}` (use :-default or :?message)"),
            )),
            (None, None) => errors.push((
                at,
                format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                ),
            )),
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok((out, from_env))
    } else {
        Err(errors)
    }
}

/// `value` as a one-line TOML basic string that reads back as exactly `value`.
fn basic_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// For each byte offset of the decoded `value` (and its end), the byte offset in `raw`, the literal
/// as written (quotes included) that decodes to it. `None` if decoding `raw` does not give `value`.
fn decoded_positions(raw: &str, value: &str) -> Option<Vec<usize>> {
    let (quote, multi) = if raw.starts_with("\"\"\"") {
        ('"', true)
    } else if raw.starts_with("'''") {
        ('\'', true)
    } else {
        (raw.chars().next()?, false)
    };
    let delim = if multi { 3 } else { 1 };
    if raw.len() < 2 * delim {
        return None;
    }
    let mut body = raw.get(delim..raw.len() - delim)?;
    let mut base = delim;
    if multi {
        // A newline right after the opening delimiter is not part of the value.
        for nl in ["\r\n", "\n"] {
            if let Some(b) = body.strip_prefix(nl) {
                base += nl.len();
                body = b;
                break;
            }
        }
    }
    let mut decoded = String::with_capacity(body.len());
    let mut positions = Vec::with_capacity(value.len() + 1);
    let mut push = |decoded: &mut String, c: char, at: usize| {
        decoded.push(c);
        positions.extend(std::iter::repeat_n(base + at, c.len_utf8()));
    };
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' || quote == '\'' {
            push(&mut decoded, c, at);
            continue;
        }
        let (_, e) = chars.next()?;
        let simple = match e {
            'b' => Some('\u{8}'),
            't' => Some('\t'),
            'n' => Some('\n'),
            'f' => Some('\u{c}'),
            'r' => Some('\r'),
            'e' => Some('\u{1b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(s) = simple {
            push(&mut decoded, s, at);
            continue;
        }
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        if digits > 0 {
            let mut code = 0u32;
            for _ in 0..digits {
                code = code * 16 + chars.next()?.1.to_digit(16)?;
            }
            push(&mut decoded, char::from_u32(code)?, at);
            continue;
        }
        if multi && e.is_whitespace() {
            // A line-ending backslash: the whitespace and newlines after it are not part of the value.
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            continue;
        }
        return None;
    }
    if decoded != value {
        return None;
    }
    positions.push(base + body.len());
    Some(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            "NASTY" => Some("a\"b\\u0041]\n[x]\ny = \"z".into()),
            _ => None,
        }
    }

    fn value_of(text: &str) -> String {
        let r = resolve(text, &env);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let table: toml::Table = toml::from_str(&r.text).unwrap();
        table["x"].as_str().unwrap().to_string()
    }

    #[test]
    fn substitutes_defaults_and_literals() {
        assert_eq!(
            value_of("x = \"a=${SET} b=${UNSET:-d} c=$$x d=$ e=${EMPTY:-e}\""),
            "a=value b=d c=$x d=$ e=e"
        );
        assert_eq!(value_of("x = '${SET}'"), "value");
        assert_eq!(value_of("x = \"\"\"\n${SET}\n\"\"\""), "value\n");
    }

    #[test]
    fn a_value_is_inserted_verbatim_and_injects_nothing() {
        let text = "x = \"<${NASTY}>\"\n";
        assert_eq!(value_of(text), "<a\"b\\u0041]\n[x]\ny = \"z>");
        let table: toml::Table = toml::from_str(&resolve(text, &env).text).unwrap();
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn any_value_reads_back_exactly() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "ab\"\\'{}$[]=#\n\r\t\u{0}\u{7f}\u{1b}é✓ ".chars().collect();
        for _ in 0..2_000 {
            // Empty counts as unset (tested above): at least one character.
            let len = 1 + (next() % 20) as usize;
            let v: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let env = |name: &str| (name == "V").then(|| v.clone());
            for text in ["x = \"${V}\"\n", "x = '${V}'\n", "x = [\"${V}\"]\n"] {
                let r = resolve(text, &env);
                assert!(r.errors.is_empty(), "{v:?}: {:?}", r.errors);
                let table: toml::Table =
                    toml::from_str(&r.text).unwrap_or_else(|e| panic!("{v:?}: {e}"));
                let got = match &table["x"] {
                    toml::Value::Array(a) => a[0].as_str().unwrap().to_string(),
                    x => x.as_str().unwrap().to_string(),
                };
                assert_eq!(got, v, "{text}");
            }
        }
    }

    #[test]
    fn only_string_values_are_resolved() {
        let text = "# ${UNSET} in a comment\n\"${KEY}\" = \"${SET}\"\n";
        let r = resolve(text, &env);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.text, "# ${UNSET} in a comment\n\"${KEY}\" = \"value\"\n");
        assert_eq!(r.from_env, ["value"]);
    }

    #[test]
    fn errors_point_at_the_dollar_inside_the_value() {
        // Escapes before the `${` count as written, not as decoded.
        let text = "a = \"\\u0041${UNSET:?give the password}\"\nb = [\"ok\", \"x${ALSO}\"]\nc = \"${OPEN\"\n";
        let r = resolve(text, &env);
        let at: Vec<(usize, &str)> = r
            .errors
            .iter()
            .map(|e| (e.offset, e.message.as_str()))
            .collect();
        assert_eq!(at.len(), 3, "{at:?}");
        assert_eq!(&text[at[0].0..at[0].0 + 2], "${");
        assert_eq!(
            at[0].1,
            "environment variable UNSET is not set: give the password"
        );
        assert_eq!(&text[at[1].0..at[1].0 + 7], "${ALSO}");
        assert_eq!(&text[at[2].0..at[2].0 + 6], "${OPEN");
        assert!(at[2].1.starts_with("unterminated `${`"), "{at:?}");
        assert_eq!(r.unresolved.len(), 3);
    }

    #[test]
    fn offsets_map_back_around_rewritten_literals() {
        let text = "x = \"${SET}\"\ny = 1\n";
        let r = resolve(text, &env);
        assert_eq!(r.text, "x = \"value\"\ny = 1\n");
        let y = r.text.find('y').unwrap();
        assert_eq!(r.map.original(y), text.find('y').unwrap());
        assert_eq!(r.map.original(6), 4);
        assert_eq!(r.map.original(0), 0);
    }

    #[test]
    fn decoded_positions_follow_escapes_and_multiline_rules() {
        let p = decoded_positions("\"a\\tb\"", "a\tb").unwrap();
        assert_eq!(p, [1, 2, 4, 5]);
        let p = decoded_positions("\"\"\"\nab \\\n   c\"\"\"", "ab c").unwrap();
        assert_eq!(p[3], 12);
        assert!(decoded_positions("\"ab\"", "xy").is_none());
    }
}
