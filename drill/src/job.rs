//! The scenario's job for one drill run: its own name, topics and brokers (every drill run is
//! independent of every other), and the check that it computes what the oracle knows.

use crate::scenario::Plan;
use anyhow::{bail, Context as _};
use weir_config::{
    AggregateFn, Comparison, EmitMode, Format, Guarantee, Job, Operator, SinkKind, TimestampFormat,
    WindowKind,
};

pub fn guarantee_name(g: Guarantee) -> &'static str {
    match g {
        Guarantee::AtLeastOnce => "at_least_once",
        Guarantee::ExactlyOnce => "exactly_once",
    }
}

/// The names of one drill run's job and topics.
pub struct Names {
    pub job: String,
    pub input: String,
    pub output: String,
    pub dead_letters: Option<String>,
}

/// The scenario's job file with this drill's own name, topics and brokers (and the scenario's
/// overrides), so every drill run is independent of every other.
pub fn rewrite_job(
    plan: &Plan,
    text: &str,
    names: &Names,
    bootstrap: &str,
) -> anyhow::Result<String> {
    use toml::{Table, Value};
    let mut t: Table = text
        .parse()
        .with_context(|| format!("parsing {}", plan.job_file.display()))?;
    let table = |t: &mut Table, key: &str| -> anyhow::Result<Table> {
        match t.remove(key) {
            Some(Value::Table(x)) => Ok(x),
            None => Ok(Table::new()),
            Some(_) => bail!("{key} is not a table"),
        }
    };
    t.insert("name".into(), Value::String(names.job.clone()));
    let mut kafka = table(&mut t, "kafka")?;
    kafka.insert("bootstrap_servers".into(), Value::String(bootstrap.into()));
    t.insert("kafka".into(), Value::Table(kafka));
    let mut source = table(&mut t, "source")?;
    source.insert(
        "topics".into(),
        Value::Array(vec![Value::String(names.input.clone())]),
    );
    t.insert("source".into(), Value::Table(source));
    let mut sink = table(&mut t, "sink")?;
    sink.insert("topic".into(), Value::String(names.output.clone()));
    t.insert("sink".into(), Value::Table(sink));
    let mut processing = table(&mut t, "processing")?;
    if let Some(g) = plan.scenario.guarantee {
        processing.insert("guarantee".into(), Value::String(guarantee_name(g).into()));
    }
    if let Some(c) = plan.scenario.commit_interval {
        processing.insert(
            "commit_interval".into(),
            Value::String(format!("{}ms", c.as_millis())),
        );
    }
    if let Some(d) = &names.dead_letters {
        processing.insert("dead_letter_topic".into(), Value::String(d.clone()));
    }
    t.insert("processing".into(), Value::Table(processing));
    // Each worker gets its own --state-dir.
    if let Some(Value::Table(state)) = t.get_mut("state") {
        state.remove("dir");
    }
    Ok(toml::to_string(&t)?)
}

/// The oracle knows one computation: the flagship job's. Refuse a job that computes another.
pub fn check_job(job: &Job) -> anyhow::Result<()> {
    let plan = job.plan();
    let mut problems = Vec::new();
    if job.source.format != Format::Json
        || job.source.key_field.as_deref() != Some("meter_id")
        || job.source.timestamp_field.as_deref() != Some("ts")
        || job.source.timestamp_format != TimestampFormat::UnixMs
    {
        problems.push("it must read JSON readings keyed by meter_id with event time in ts (ms)");
    }
    let filter_ok = matches!(
        plan.steps.as_slice(),
        [Operator::Filter(f)] if f.field == "kwh" && f.op == Comparison::Ge && f.value == 0.0
    );
    if !filter_ok {
        problems.push("its only step before the window must be the filter kwh >= 0");
    }
    match &plan.window {
        Some((w, a))
            if w.kind == WindowKind::Tumbling
                && w.size_or_gap_ms() == 3_600_000
                && w.emit == EmitMode::OnClose
                && a.field == "kwh"
                && [AggregateFn::Count, AggregateFn::Avg, AggregateFn::Min, AggregateFn::Max]
                    .iter()
                    .all(|f| a.functions.contains(f)) => {}
        _ => problems.push(
            "it must aggregate kwh in 1h tumbling windows emitted on close, with count, avg, min and max",
        ),
    }
    if job.sink.kind != SinkKind::Kafka || job.sink.format != Format::Json {
        problems.push("it must write JSON to a Kafka topic");
    }
    if !problems.is_empty() {
        bail!(
            "the drill's oracle checks the flagship computation (per meter and hour: count, avg, min, max of kwh >= 0); this job differs: {}",
            problems.join("; ")
        );
    }
    Ok(())
}
