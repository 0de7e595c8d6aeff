//! Loading a job file: read, parse, resolve `${VAR}` in string values, validate. Every problem found is reported,
//! each with the file, line and column it comes from.

use crate::expr::Expr;
use crate::interpolate::resolve;
use crate::job::*;
use crate::secret::redact;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml_edit::ImDocument;

/// One problem in a job file, displayed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a job file, resolving `${VAR}` from the process environment.
pub fn load_job(path: &Path) -> Result<Job, ConfigErrors> {
    let file = path.display().to_string();
    let bytes = read_bounded(path).map_err(|message| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 1,
            col: 1,
            message,
        }])
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, col) = line_col(&String::from_utf8_lossy(&e.into_bytes()), at);
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line,
            col,
            message: "the file is not valid UTF-8".into(),
        }])
    })?;
    parse_job(&file, &text, &|name| std::env::var(name).ok())
}

/// The largest job file read: a real one is a few KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a regular file of at most `MAX_FILE_BYTES`: never a device that reads for ever
/// (`/dev/zero`), a FIFO that blocks, or a runaway file.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    let too_big = || {
        format!(
            "cannot read: larger than {} KiB, the most a job file may be",
            MAX_FILE_BYTES >> 10
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Parses and validates job text; `file` names it in errors, `env` resolves `${VAR}` in string
/// values. Every problem is reported: unresolvable variables, then (with those strings left as
/// written) structural errors, and when the file deserializes, semantic ones. Values taken from
/// the environment are secret: error messages show them as `***`.
pub fn parse_job(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, ConfigErrors> {
    let resolved = resolve(text, env);
    let secrets = resolved.from_env.clone();
    // An error inside a string whose variables did not resolve comes from the `${...}` left there.
    let consequence = |offset: usize| {
        resolved
            .unresolved
            .iter()
            .any(|s| s.start <= offset && offset < s.end)
    };
    let mut errors: Vec<ConfigError> = resolved
        .errors
        .iter()
        .map(|e| error_at(file, text, e.offset, redact(&e.message, &secrets)))
        .collect();
    let mut report = |span: Range<usize>, message: String| {
        let offset = resolved.map.original(span.start);
        if !consequence(offset) {
            errors.push(error_at(file, text, offset, redact(&message, &secrets)));
        }
    };
    let job = match crate::structure::deserialize_all::<Job>(&resolved.text) {
        Ok(mut job) => {
            validate(&job, &resolved.text, &mut report);
            job.from_env = EnvValues(resolved.from_env.clone());
            Some(job)
        }
        Err(errs) => {
            for (span, message) in errs {
                report(span, tidy_toml_message(&message));
            }
            None
        }
    };
    match job {
        Some(job) if errors.is_empty() => Ok(job),
        _ => {
            errors.sort_by_key(|e| (e.line, e.col));
            errors.dedup();
            Err(ConfigErrors(errors))
        }
    }
}

/// An error at a byte offset of `text`, for other TOML files read like job files (drill scenarios).
pub fn error_at(file: &str, text: &str, offset: usize, message: String) -> ConfigError {
    let (line, col) = line_col(text, offset);
    ConfigError {
        file: file.to_string(),
        line,
        col,
        message,
    }
}

/// Deserializes a TOML file read like job files (job files, drill scenarios): every unknown key,
/// wrong type and missing key as a `FILE:LINE:COL` error in file order, worded as the job loader
/// words them (unknown keys come with the closest known key).
pub fn deserialize_toml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigErrors> {
    crate::structure::deserialize_all(text).map_err(|errs| {
        let mut errs: Vec<ConfigError> = errs
            .into_iter()
            .map(|(span, message)| error_at(file, text, span.start, tidy_toml_message(&message)))
            .collect();
        errs.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(errs)
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut offset = offset;
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|p| p + 1).unwrap_or(0);
    (line, text[line_start..offset].chars().count() + 1)
}

fn tidy_toml_message(message: &str) -> String {
    // One line per error: the parser's multi-line explanations are joined.
    let mut m = message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(rest) = m.strip_prefix("unknown field ") {
        // serde lists the expected keys; add the closest one as a suggestion.
        let unknown = rest.split('`').nth(1).unwrap_or_default().to_string();
        let expected: Vec<&str> = rest.split('`').skip(3).step_by(2).collect();
        if let Some(best) = closest(&unknown, &expected) {
            m = format!("unknown key `{unknown}`; did you mean `{best}`?");
        } else {
            m = format!(
                "unknown key `{unknown}`; expected one of {}",
                expected.join(", ")
            );
        }
    }
    m
}

/// The candidate within edit distance 2 of `word`, if any.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The byte span of `key = ...` inside `[table]`, or of the table header, or of the file start.
/// Used for errors about values that carry no span of their own.
fn locate(text: &str, table: &str, key: &str) -> Range<usize> {
    let mut offset = 0;
    let mut in_table = table.is_empty();
    let mut header = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_table = trimmed
                .trim_end()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                == table;
            if in_table && header.is_none() {
                header = Some(offset..offset + line.len());
            }
        } else if in_table {
            let name = trimmed.split('=').next().unwrap_or_default().trim();
            if name == key && trimmed.contains('=') {
                let start = offset + (line.len() - trimmed.len());
                return start..start + trimmed.len();
            }
        }
        offset += line.len();
    }
    header.unwrap_or(0..0)
}

fn valid_name(name: &str) -> bool {
    // `.` and `..` would be directories above the state directory.
    !name.is_empty()
        && !name.chars().all(|c| c == '.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn validate(job: &Job, text: &str, report: &mut dyn FnMut(Range<usize>, String)) {
    if !valid_name(job.name.get_ref()) {
        report(
            job.name.span(),
            format!(
                "bad job name {:?}: use 1 to 200 of [a-zA-Z0-9._-], not only dots",
                job.name.get_ref()
            ),
        );
    }
    if job.source.topics.is_empty() {
        report(
            locate(text, "source", "topics"),
            "source.topics is empty: name at least one topic".into(),
        );
    }
    if job.source.format == Format::Csv && job.source.columns.is_empty() {
        report(
            locate(text, "source", "format"),
            "csv sources need `columns` (the column names, in order)".into(),
        );
    }

    let mut window: Option<&WindowOp> = None;
    let mut window_span = 0..0;
    let mut stores = 0;
    let mut key_bys = 0;
    let mut names = Names::default();
    for op in &job.pipeline {
        let span = op.span();
        if window.is_some() || stores > 0 {
            if let Operator::Filter(_)
            | Operator::Stamp(_)
            | Operator::Map(_)
            | Operator::Select(_)
            | Operator::KeyBy(_) = op.get_ref()
            {
                report(span.clone(), "this operator must come before `window`: a window is followed only by its aggregate".into());
            }
        }
        match op.get_ref() {
            Operator::Filter(f) => names.need(&f.field, span, report),
            Operator::Stamp(s) => {
                for name in s.fields.keys() {
                    names.add(name, false);
                }
            }
            Operator::Map(m) => {
                for (from, to) in &m.rename {
                    names.need(from, span.clone(), report);
                    names.rename(from, to);
                }
                for (name, text) in &m.derive {
                    match Expr::parse(text.get_ref()) {
                        // The span includes the opening quote.
                        Err(e) => report(
                            text.span().start + 1 + e.offset..text.span().end,
                            format!("derive {name}: {}", e.message),
                        ),
                        Ok(expr) => {
                            for f in expr.fields() {
                                names.need(f, text.span(), report);
                            }
                        }
                    }
                }
                for name in m.derive.keys() {
                    names.add(name, true);
                }
                if let Some(keep) = &m.select {
                    names.select(keep, span, report);
                }
            }
            Operator::Select(keep) => names.select(keep, span, report),
            Operator::KeyBy(k) => {
                key_bys += 1;
                if key_bys > 1 {
                    report(span, "only one `key_by` per job is supported".into());
                }
                names.need(k.field.get_ref(), k.field.span(), report);
                if names.derived.contains(k.field.get_ref()) {
                    report(
                        k.field.span(),
                        format!(
                            "key_by needs a field of the input record (possibly renamed); `{}` is derived",
                            k.field.get_ref()
                        ),
                    );
                }
            }
            Operator::Window(w) => {
                if window.is_some() || stores > 0 {
                    report(
                        op.span(),
                        "only one window + aggregate per job is supported".into(),
                    );
                }
                check_window(w, op.span(), report);
                window = Some(w);
                window_span = op.span();
            }
            Operator::Aggregate(a) => {
                stores += 1;
                if window.take().is_none() {
                    report(
                        op.span(),
                        "`aggregate` must directly follow a `window`".into(),
                    );
                }
                if !valid_name(a.store.get_ref()) {
                    report(
                        a.store.span(),
                        format!(
                            "bad store name {:?}: use [a-zA-Z0-9._-], not only dots",
                            a.store.get_ref()
                        ),
                    );
                }
                names.need(&a.field, op.span(), report);
                if a.functions.is_empty() {
                    report(
                        op.span(),
                        "aggregate.functions is empty: list some of avg, sum, count, min, max"
                            .into(),
                    );
                }
            }
        }
    }
    if window.is_some() {
        report(
            window_span,
            "`window` must be followed by an `aggregate`".into(),
        );
    }
    let has_stamp = job
        .pipeline
        .iter()
        .any(|op| matches!(op.get_ref(), Operator::Stamp(_)));
    if has_stamp && stores > 0 {
        report(
            locate(text, "", "pipeline"),
            "`stamp` forwards records and cannot be combined with an aggregate".into(),
        );
    }

    if job.sink.kind == SinkKind::Kafka && job.sink.topic.as_deref().unwrap_or("").is_empty() {
        report(
            locate(text, "sink", "type"),
            "kafka sinks need `topic`".into(),
        );
    }
    if job.sink.format == Format::Csv && stores == 0 && job.forwarded_fields().is_none() {
        report(
            locate(text, "sink", "format"),
            "a csv sink writes the same columns for every record, and this job forwards JSON records with the fields each one has: end the pipeline with a `select` naming the columns, in order".into(),
        );
    }
    let p = &job.processing;
    if p.commit_interval.as_millis() == 0 {
        report(
            locate(text, "processing", "commit_interval"),
            "commit_interval must be greater than zero".into(),
        );
    }
    if let Some(t) = p.transaction_timeout {
        // A transaction is open for a commit interval, then committed; a revocation commits
        // within it. Less than three intervals leaves no room for a slow commit or a rebalance.
        if t.as_millis() < 3 * p.commit_interval.as_millis() {
            report(
                locate(text, "processing", "transaction_timeout"),
                format!(
                    "transaction_timeout ({}) must be at least three commit intervals ({} ms): a transaction stays open for an interval and its commit",
                    t,
                    3 * p.commit_interval.as_millis()
                ),
            );
        }
    }
    match (p.bad_records, &p.dead_letter_topic) {
        (BadRecordPolicy::DeadLetter, None) => {
            report(locate(text, "processing", "bad_records"), "bad_records = \"dead_letter\" needs `dead_letter_topic`".into())
        }
        (BadRecordPolicy::Fail | BadRecordPolicy::Skip, Some(_)) => report(
            locate(text, "processing", "dead_letter_topic"),
            "dead_letter_topic is set but bad_records is not \"dead_letter\": nothing would be sent there".into(),
        ),
        _ => {}
    }
    if let Some(rf) = job.state.changelog_replication_factor {
        if rf < 1 {
            report(
                locate(text, "state", "changelog_replication_factor"),
                "changelog_replication_factor must be at least 1".into(),
            );
        }
    }
    if job.runtime.group_protocol == Some(crate::GroupProtocol::Consumer)
        && job.runtime.session_timeout.is_some()
    {
        report(
            locate(text, "runtime", "session_timeout"),
            format!(
                "session_timeout {}",
                crate::runtime::NO_SESSION_UNDER_CONSUMER
            ),
        );
    }
    let conflicts = crate::kafka_props::conflicts(job);
    if !conflicts.is_empty() {
        let doc = ImDocument::parse(text).ok();
        for c in conflicts {
            let span = doc
                .as_ref()
                .and_then(|d| property_key_span(d, &c.key))
                .unwrap_or_else(|| locate(text, "kafka.properties", &c.key));
            report(span, c.message);
        }
    }
}

/// Where `[kafka.properties]` (as a table, an inline table or dotted keys) writes `key`.
fn property_key_span(doc: &ImDocument<&str>, key: &str) -> Option<Range<usize>> {
    let properties = doc.get("kafka")?.as_table_like()?.get("properties")?;
    let (k, item) = properties.as_table_like()?.get_key_value(key)?;
    k.span().or_else(|| item.span())
}

/// The fields known to exist at a point of the pipeline: the input's are open-ended (any name may
/// exist) until a `select` closes the set; renames remove names.
#[derive(Default)]
struct Names {
    /// `Some`: after a select, exactly these.
    closed: Option<std::collections::BTreeSet<String>>,
    /// Open world: names known to be gone (renamed away).
    removed: std::collections::BTreeSet<String>,
    derived: std::collections::BTreeSet<String>,
}

impl Names {
    fn has(&self, name: &str) -> bool {
        match &self.closed {
            Some(set) => set.contains(name),
            None => !self.removed.contains(name),
        }
    }

    fn need(&self, name: &str, span: Range<usize>, report: &mut dyn FnMut(Range<usize>, String)) {
        if !self.has(name) {
            report(
                span,
                format!("field `{name}` is not available here: an earlier `map` renamed it or did not select it"),
            );
        }
    }

    fn add(&mut self, name: &str, derived: bool) {
        self.removed.remove(name);
        if let Some(set) = &mut self.closed {
            set.insert(name.to_string());
        }
        if derived {
            self.derived.insert(name.to_string());
        } else {
            self.derived.remove(name);
        }
    }

    fn rename(&mut self, from: &str, to: &str) {
        let derived = self.derived.remove(from);
        if let Some(set) = &mut self.closed {
            set.remove(from);
        }
        self.removed.insert(from.to_string());
        self.add(to, derived);
    }

    fn select(
        &mut self,
        keep: &[String],
        span: Range<usize>,
        report: &mut dyn FnMut(Range<usize>, String),
    ) {
        for name in keep {
            self.need(name, span.clone(), report);
        }
        self.closed = Some(keep.iter().cloned().collect());
    }
}

/// Hopping windows put each record in size / advance windows: each is a state update per record.
pub const MAX_WINDOWS_PER_RECORD: u64 = 1_000;

fn check_window(w: &WindowOp, span: Range<usize>, report: &mut dyn FnMut(Range<usize>, String)) {
    if w.kind == WindowKind::Session {
        match &w.gap {
            None => report(
                span.clone(),
                "session windows need `gap` (the silence that ends a session)".into(),
            ),
            Some(g) if g.get_ref().as_millis() == 0 => {
                report(g.span(), "gap must be greater than zero".into())
            }
            Some(_) => {}
        }
        if let Some(s) = &w.size {
            report(
                s.span(),
                "session windows have no `size`: they last while records come closer than `gap`"
                    .into(),
            );
        }
        if let Some(a) = &w.advance {
            report(a.span(), "`advance` is for hopping windows".into());
        }
        return;
    }
    if let Some(g) = &w.gap {
        report(g.span(), "`gap` is for session windows".into());
    }
    let Some(size_spanned) = &w.size else {
        report(span, "tumbling and hopping windows need `size`".into());
        return;
    };
    let size = size_spanned.get_ref().as_millis();
    if size == 0 {
        report(
            size_spanned.span(),
            "window size must be greater than zero".into(),
        );
    }
    match (w.kind, &w.advance) {
        (WindowKind::Tumbling, Some(a)) => report(
            a.span(),
            "`advance` is for hopping windows; tumbling windows advance by their size".into(),
        ),
        (WindowKind::Hopping, None) => report(span, "hopping windows need `advance`".into()),
        (WindowKind::Hopping, Some(a)) => {
            let adv = a.get_ref().as_millis();
            if adv == 0 || adv > size {
                report(
                    a.span(),
                    format!(
                        "advance ({}) must be greater than zero and at most the size ({})",
                        a.get_ref(),
                        size_spanned.get_ref()
                    ),
                );
            } else if size / adv > MAX_WINDOWS_PER_RECORD {
                report(
                    a.span(),
                    format!(
                        "a window of {} advancing by {} holds every record in {} windows; at most {MAX_WINDOWS_PER_RECORD}",
                        size_spanned.get_ref(),
                        a.get_ref(),
                        size / adv
                    ),
                );
            } else if !size.is_multiple_of(adv) {
                report(
                    a.span(),
                    format!(
                        "size ({}) must be a multiple of advance ({})",
                        size_spanned.get_ref(),
                        a.get_ref()
                    ),
                );
            }
        }
        (WindowKind::Tumbling, None) | (WindowKind::Session, _) => {}
    }
}

#[cfg(test)]
mod tests;
