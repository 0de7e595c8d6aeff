//! The job file, one struct per table. Every table rejects keys it does not know.

use crate::Duration;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;

/// A whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Application id: the consumer group, the prefix of internal topics and of the state directory.
    pub name: Spanned<String>,
    #[serde(default)]
    pub kafka: KafkaConfig,
    pub source: SourceConfig,
    #[serde(default)]
    pub pipeline: Vec<Spanned<Operator>>,
    pub sink: SinkConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub processing: ProcessingConfig,
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The values `${VAR}` took from the environment (see [`Job::secrets`]).
    #[serde(skip)]
    pub(crate) from_env: EnvValues,
}

/// Values taken from the environment. Never shown: its `Debug` counts them.
#[derive(Clone, Default)]
pub(crate) struct EnvValues(pub(crate) Vec<String>);

impl std::fmt::Debug for EnvValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} values from the environment", self.0.len())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`; `--brokers` and `WEIR_BROKERS` override it.
    pub bootstrap_servers: Option<String>,
    /// Any librdkafka property, passed through as given (e.g. `security.protocol`, `sasl.*`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Milliseconds since the Unix epoch, as an integer.
    #[default]
    UnixMs,
    /// Seconds since the Unix epoch, integer or fractional.
    UnixS,
    /// An RFC 3339 string such as `2026-11-25T10:00:00Z`.
    Rfc3339,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub topics: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// For `csv`: the column names, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The field holding the key (e.g. the meter id); absent = the Kafka record key.
    pub key_field: Option<String>,
    /// The field holding event time; absent = the Kafka record timestamp.
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// How far event time may be from processing time; a record outside is a bad record.
    #[serde(default)]
    pub max_event_time_skew: EventTimeSkew,
}

/// The plausible range of event time around processing time (the wall clock when the record is
/// read). A record outside it, say a timestamp in microseconds where milliseconds were expected,
/// would move stream time far ahead and make every later record late: it is a bad record instead,
/// under the job's `bad_records` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSkew {
    /// How far behind processing time (replays of old data stay well inside the default 100 years).
    #[serde(default = "default_skew_past")]
    pub past: Duration,
    /// How far ahead of processing time (producers' clocks drift; default 1 day).
    #[serde(default = "default_skew_future")]
    pub future: Duration,
}

fn default_skew_past() -> Duration {
    Duration::from_millis(Duration::MAX_MS)
}

fn default_skew_future() -> Duration {
    Duration::from_millis(86_400_000)
}

impl Default for EventTimeSkew {
    fn default() -> Self {
        EventTimeSkew {
            past: default_skew_past(),
            future: default_skew_future(),
        }
    }
}

/// One step of the pipeline, written as a table with a single key naming the operator:
/// `[[pipeline]]` then `window = { type = "tumbling", size = "1h" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Operator {
    Filter(FilterOp),
    /// Rename, derive (arithmetic) and project fields: `map = { rename = { kwh = "energy" },
    /// derive = { wh = "energy * 1000" }, select = ["meter_id", "ts", "wh"] }`, applied in that order.
    Map(MapOp),
    /// Shorthand for `map = { select = [...] }`: keep only these fields.
    Select(Vec<String>),
    /// Re-key the records by a field; before an aggregate, records go through an internal
    /// repartition topic so that each key's state lives in one task.
    KeyBy(KeyByOp),
    Window(WindowOp),
    Aggregate(AggregateOp),
    /// Adds fields to every record (e.g. an audit stamp) and forwards it: the stateless path.
    Stamp(StampOp),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterOp {
    pub field: String,
    pub op: Comparison,
    pub value: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapOp {
    /// `old = "new"`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `name = "expression"` over numeric fields (see `Expr`); evaluated after the renames.
    #[serde(default)]
    pub derive: BTreeMap<String, Spanned<String>>,
    /// The fields kept (after renames and derivations); absent = all.
    pub select: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyByOp {
    /// A field of the input record (possibly renamed), string or integer.
    pub field: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Comparison {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Comparison {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Eq => left == right,
            Comparison::Ne => left != right,
            Comparison::Lt => left < right,
            Comparison::Le => left <= right,
            Comparison::Gt => left > right,
            Comparison::Ge => left >= right,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Tumbling,
    Hopping,
    /// Per key: records closer than `gap` to each other form one session.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// At each commit, the latest value of every (key, window) that changed since the last commit.
    OnUpdate,
    /// Once per key and window, when stream time passes the window's end plus grace.
    #[default]
    OnClose,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowOp {
    #[serde(rename = "type")]
    pub kind: WindowKind,
    /// Tumbling and hopping windows: their length.
    pub size: Option<Spanned<Duration>>,
    /// Session windows: the silence that ends a session.
    pub gap: Option<Spanned<Duration>>,
    /// Hopping windows only: how far each window starts after the previous one.
    pub advance: Option<Spanned<Duration>>,
    /// How long after a window's end records for it are still accepted.
    #[serde(default)]
    pub grace: Duration,
    #[serde(default)]
    pub emit: EmitMode,
    /// Wall-clock silence after which a task closes all its open windows (silent meters).
    pub close_idle_after: Option<Duration>,
    /// The format the window's results are written in: the sink's (`sink.format`), filled in by
    /// [`Job::plan`]; not a key of job files.
    #[serde(skip)]
    pub result_format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    Avg,
    Sum,
    Count,
    Min,
    Max,
}

impl AggregateFn {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFn::Avg => "avg",
            AggregateFn::Sum => "sum",
            AggregateFn::Count => "count",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateOp {
    /// The state store's name; its changelog topic is `<job>-<store>-changelog`.
    pub store: Spanned<String>,
    /// The numeric field aggregated.
    pub field: String,
    pub functions: Vec<AggregateFn>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampOp {
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    #[default]
    Kafka,
    Stdout,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type", default)]
    pub kind: SinkKind,
    /// Required for `kafka` sinks.
    pub topic: Option<String>,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Root of local state; tasks live in `<dir>/<job>/<partition>/`. `--state-dir` overrides it.
    pub dir: Option<String>,
    /// Replication factor of changelog topics weir creates; absent = the broker's default.
    pub changelog_replication_factor: Option<i16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

/// The consumer group protocol a worker joins with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The classic protocol: the group's leader assigns; session and heartbeat are the client's.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+ brokers): the coordinator assigns, incrementally; session timeout and
    /// heartbeat interval are the broker's `group.consumer.*` settings.
    Consumer,
}

impl GroupProtocol {
    pub fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

impl std::str::FromStr for GroupProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(format!(
                "unknown group protocol {other:?}: \"classic\" or \"consumer\""
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Stop the task with an error naming topic/partition/offset; nothing after it is committed.
    #[default]
    Fail,
    /// Count, log with provenance, continue.
    Skip,
    /// Send the original bytes to `dead_letter_topic` with provenance headers, continue.
    DeadLetter,
}

fn default_commit_interval() -> Duration {
    Duration::from_millis(1000)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    #[serde(default)]
    pub guarantee: Guarantee,
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Duration,
    #[serde(default)]
    pub bad_records: BadRecordPolicy,
    pub dead_letter_topic: Option<String>,
    /// Exactly-once: how long the transaction coordinator lets a transaction stay open before it
    /// aborts it (`transaction.timeout.ms`). `None`: three commit intervals, at least 10 s.
    pub transaction_timeout: Option<Duration>,
}

impl ProcessingConfig {
    /// The transaction timeout the producer gets, unless `kafka.properties` sets one.
    pub fn transaction_timeout_ms(&self) -> u64 {
        self.transaction_timeout
            .map(|d| d.as_millis())
            .unwrap_or_else(|| (self.commit_interval.as_millis() * 3).max(10_000))
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            guarantee: Guarantee::default(),
            commit_interval: default_commit_interval(),
            bad_records: BadRecordPolicy::default(),
            dead_letter_topic: None,
            transaction_timeout: None,
        }
    }
}

/// Per-process settings that may also be written in the job file (`[runtime]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Static membership: this worker's `group.instance.id`.
    pub instance_id: Option<String>,
    pub session_timeout: Option<Duration>,
    /// The consumer group protocol (`classic` by default; `consumer` is KIP-848).
    pub group_protocol: Option<GroupProtocol>,
    /// Shared RocksDB block cache of the worker, bytes.
    pub block_cache_bytes: Option<u64>,
    /// Shared RocksDB write-buffer budget of the worker, bytes.
    pub write_buffer_bytes: Option<u64>,
    /// Address of `/metrics`, `/livez`, `/readyz`.
    pub http: Option<String>,
}

impl WindowOp {
    /// The window length in ms (tumbling, hopping), or the gap (sessions).
    pub fn size_or_gap_ms(&self) -> i64 {
        self.size
            .as_ref()
            .or(self.gap.as_ref())
            .map_or(0, |d| d.get_ref().as_millis() as i64)
    }
}

/// The pipeline, checked and put in the shape the engine runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per-record steps (filter, map, select, stamp, key_by) in file order; for stateful jobs
    /// these are the steps before the window.
    pub steps: Vec<Operator>,
    pub window: Option<(WindowOp, AggregateOp)>,
}

impl Job {
    /// The job's secret values, longest first, each once: every value `${VAR}` took from the
    /// environment (defaults written in the file are not secret) and the value of every sensitive
    /// `[kafka.properties]` entry (see [`crate::is_sensitive_property`]). Give them to
    /// [`crate::redact`] before showing text that may hold them.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .from_env
            .0
            .iter()
            .cloned()
            .chain(
                self.kafka
                    .properties
                    .iter()
                    .filter(|(k, _)| crate::is_sensitive_property(k))
                    .map(|(_, v)| v.clone()),
            )
            .filter(|v| !v.is_empty())
            .collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        all
    }

    /// The name of the state store, if the job keeps state.
    pub fn store_name(&self) -> Option<&str> {
        self.pipeline.iter().find_map(|op| match op.get_ref() {
            Operator::Aggregate(a) => Some(a.store.get_ref().as_str()),
            _ => None,
        })
    }

    /// The `key_by` field, if the pipeline re-keys records.
    pub fn key_by(&self) -> Option<&str> {
        self.pipeline.iter().find_map(|op| match op.get_ref() {
            Operator::KeyBy(k) => Some(k.field.get_ref().as_str()),
            _ => None,
        })
    }

    /// The input field the `key_by` key comes from, following renames back to the source.
    pub fn key_by_input_field(&self) -> Option<String> {
        let at = self
            .pipeline
            .iter()
            .position(|op| matches!(op.get_ref(), Operator::KeyBy(_)))?;
        let mut name = self.key_by()?.to_string();
        for op in self.pipeline[..at].iter().rev() {
            if let Operator::Map(m) = op.get_ref() {
                if let Some((from, _)) = m.rename.iter().find(|(_, to)| **to == name) {
                    name = from.clone();
                }
            }
        }
        Some(name)
    }

    /// `<job>-repartition`, when a `key_by` re-keys records ahead of an aggregate by something else
    /// than the source key (records then cross an internal topic to the task owning their new key).
    pub fn repartition_topic(&self) -> Option<String> {
        self.store_name()?;
        let input = self.key_by_input_field()?;
        (self.source.key_field.as_deref() != Some(input.as_str()))
            .then(|| format!("{}-repartition", self.name.get_ref()))
    }

    /// `<job>-<store>-changelog`.
    pub fn changelog_topic(&self) -> Option<String> {
        self.store_name()
            .map(|s| format!("{}-{s}-changelog", self.name.get_ref()))
    }

    /// The validated pipeline (see `load::validate` for the rules that make this infallible).
    pub fn plan(&self) -> Plan {
        let mut plan = Plan {
            steps: Vec::new(),
            window: None,
        };
        let mut window = None;
        for op in &self.pipeline {
            match op.get_ref() {
                Operator::Window(w) => {
                    window = Some(WindowOp {
                        result_format: self.sink.format,
                        ..w.clone()
                    })
                }
                Operator::Aggregate(a) => {
                    if let Some(w) = window.take() {
                        plan.window = Some((w, a.clone()));
                    }
                }
                step => plan.steps.push(step.clone()),
            }
        }
        plan
    }
}

impl Job {
    /// The fields of a stateless job's records as they leave it, in order, when the job fixes
    /// them: a CSV source's columns, or a `select`, and what renames, derivations and stamps
    /// after it make of them. `None`: the fields are the input's, whatever each record holds.
    pub fn forwarded_fields(&self) -> Option<Vec<String>> {
        let mut fields = (self.source.format == Format::Csv).then(|| self.source.columns.clone());
        let add = |fields: &mut Option<Vec<String>>, name: &String| {
            if let Some(f) = fields.as_mut().filter(|f| !f.contains(name)) {
                f.push(name.clone());
            }
        };
        for step in self.plan().steps {
            match step {
                Operator::Map(m) => {
                    for (from, to) in m.rename.iter().filter(|(from, to)| from != to) {
                        // The renamed field takes the old one's place; one already named `to`
                        // is replaced.
                        if let Some(f) = fields.as_mut().filter(|f| f.contains(from)) {
                            f.retain(|n| n != to);
                            if let Some(at) = f.iter().position(|n| n == from) {
                                f[at] = to.clone();
                            }
                        }
                    }
                    for name in m.derive.keys() {
                        add(&mut fields, name);
                    }
                    if let Some(keep) = m.select {
                        fields = Some(keep);
                    }
                }
                Operator::Select(keep) => fields = Some(keep),
                Operator::Stamp(s) => {
                    for name in s.fields.keys() {
                        add(&mut fields, name);
                    }
                }
                Operator::Filter(_)
                | Operator::KeyBy(_)
                | Operator::Window(_)
                | Operator::Aggregate(_) => {}
            }
        }
        fields
    }
}

/// `docs/config-reference.md` against the schema: every key the deserializers accept is
/// documented, and every documented key is accepted. The accepted keys are read from the
/// deserializers themselves (the list in their unknown-key error), not from a copy.
#[cfg(test)]
mod reference_doc;
