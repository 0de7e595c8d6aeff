//! `weir describe`: a job's topology as a reader checks it at a glance (text), or as Graphviz dot.
//! Secrets among the pass-through Kafka properties are shown as `[redacted]`.

use weir_config::{Comparison, EmitMode, Job, Operator, SinkKind};

fn comparison(c: Comparison) -> &'static str {
    match c {
        Comparison::Eq => "==",
        Comparison::Ne => "!=",
        Comparison::Lt => "<",
        Comparison::Le => "<=",
        Comparison::Gt => ">",
        Comparison::Ge => ">=",
    }
}

fn shown(key: &str, value: &str) -> String {
    // librdkafka's sensitive properties by name; values from the environment are redacted from
    // the whole output by the caller (`secrets::redact`).
    if weir_config::is_sensitive_property(key) {
        "[redacted]".into()
    } else {
        value.to_string()
    }
}

/// One line per step of the pipeline.
fn steps(job: &Job) -> Vec<String> {
    job.pipeline
        .iter()
        .map(|op| match op.get_ref() {
            Operator::Filter(f) => format!("filter {} {} {}", f.field, comparison(f.op), f.value),
            Operator::Stamp(s) => format!(
                "stamp {}",
                s.fields
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Operator::Map(m) => {
                let mut parts = Vec::new();
                if !m.rename.is_empty() {
                    parts.push(format!(
                        "rename {}",
                        m.rename
                            .iter()
                            .map(|(a, b)| format!("{a}->{b}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                for (name, e) in &m.derive {
                    parts.push(format!("{name} = {}", e.get_ref()));
                }
                if let Some(keep) = &m.select {
                    parts.push(format!("select {}", keep.join(", ")));
                }
                format!("map {}", parts.join("; "))
            }
            Operator::Select(keep) => format!("select {}", keep.join(", ")),
            Operator::KeyBy(k) => match job.repartition_topic() {
                Some(t) => format!("key_by {} -> repartition topic {t}", k.field.get_ref()),
                None if job.store_name().is_some() => format!(
                    "key_by {} (already partitioned by it: no repartition)",
                    k.field.get_ref()
                ),
                None => format!("key_by {} (results keyed by it)", k.field.get_ref()),
            },
            Operator::Window(w) => {
                let mut text = match (&w.size, &w.gap) {
                    (_, Some(gap)) => format!("window session, gap {}", gap.get_ref()),
                    (Some(size), _) => {
                        format!("window {:?} {}", w.kind, size.get_ref()).to_lowercase()
                    }
                    _ => "window ?".into(),
                };
                if let Some(a) = &w.advance {
                    text.push_str(&format!(" every {}", a.get_ref()));
                }
                let emit = match w.emit {
                    EmitMode::OnClose => "on_close",
                    EmitMode::OnUpdate => "on_update",
                };
                text.push_str(&format!(", grace {}, emit {emit}", w.grace));
                if let Some(i) = w.close_idle_after {
                    text.push_str(&format!(", idle close after {i}"));
                }
                text
            }
            Operator::Aggregate(a) => format!(
                "aggregate {} of {} -> store {} (changelog {}-{}-changelog, compacted)",
                a.functions
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                a.field,
                a.store.get_ref(),
                job.name.get_ref(),
                a.store.get_ref()
            ),
        })
        .collect()
}

fn sink(job: &Job) -> String {
    match job.sink.kind {
        SinkKind::Kafka => format!(
            "kafka topic {} ({:?}, keyed by {})",
            job.sink.topic.as_deref().unwrap_or("?"),
            job.sink.format,
            job.key_by()
                .or(job.source.key_field.as_deref())
                .unwrap_or("the input key")
        )
        .replace("Json", "json"),
        SinkKind::Stdout => "stdout".into(),
    }
}

/// The text form. `partitions`: the input's partition count when a broker was asked.
pub fn text(job: &Job, partitions: Option<usize>) -> String {
    let p = &job.processing;
    let mut out = String::new();
    out.push_str(&format!("job {}\n", job.name.get_ref()));
    out.push_str(&format!("  consumer group  {}\n", job.name.get_ref()));
    out.push_str(
        &format!(
            "  guarantee       {:?}, commit every {}\n",
            p.guarantee, p.commit_interval
        )
        .replace("AtLeastOnce", "at_least_once")
        .replace("ExactlyOnce", "exactly_once"),
    );
    let bad = match &p.dead_letter_topic {
        Some(t) => format!("dead_letter -> {t}"),
        None => format!("{:?}", p.bad_records).to_lowercase(),
    };
    out.push_str(&format!("  bad records     {bad}\n"));
    if let Some(b) = &job.kafka.bootstrap_servers {
        out.push_str(&format!("  kafka           {b}\n"));
    }
    for (k, v) in &job.kafka.properties {
        out.push_str(&format!("    {k} = {}\n", shown(k, v)));
    }
    let parts = partitions.map_or("partitions: ask a broker with --brokers".to_string(), |n| {
        format!("{n} partitions = {n} tasks")
    });
    out.push_str(
        &format!(
            "source  {} ({:?}; key {}; event time {}) [{parts}]\n",
            job.source.topics.join(", "),
            job.source.format,
            job.source.key_field.as_deref().unwrap_or("Kafka key"),
            job.source
                .timestamp_field
                .as_deref()
                .unwrap_or("Kafka timestamp"),
        )
        .replace("(Json;", "(json;")
        .replace("(Csv;", "(csv;"),
    );
    for s in steps(job) {
        out.push_str(&format!("  -> {s}\n"));
    }
    out.push_str(&format!("sink    {}\n", sink(job)));
    out
}

/// The Graphviz form: source -> operators -> sink, stores beside their aggregate.
pub fn dot(job: &Job) -> String {
    let esc = |s: &str| s.replace('"', "\\\"");
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
        esc(job.name.get_ref())
    );
    out.push_str(&format!(
        "  source [label=\"{}\", shape=cds];\n",
        esc(&job.source.topics.join("\\n"))
    ));
    let mut prev = "source".to_string();
    for (i, s) in steps(job).iter().enumerate() {
        let id = format!("op{i}");
        out.push_str(&format!(
            "  {id} [label=\"{}\"];\n  {prev} -> {id};\n",
            esc(s.split(" -> store").next().unwrap_or(s))
        ));
        if let Operator::Aggregate(a) = job.pipeline[i].get_ref() {
            out.push_str(&format!(
                "  store{i} [label=\"store {}\\n{}-{}-changelog\", shape=cylinder];\n  {id} -> store{i} [dir=both, style=dashed];\n",
                esc(a.store.get_ref()),
                esc(job.name.get_ref()),
                esc(a.store.get_ref())
            ));
        }
        prev = id;
    }
    out.push_str(&format!(
        "  sink [label=\"{}\", shape=cds];\n  {prev} -> sink;\n}}\n",
        esc(&sink(job))
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_topology_is_complete() {
        let text_in = format!("{}\n", crate::FLAGSHIP_JOB).replace("bootstrap_servers = \"${KAFKA_BOOTSTRAP:-127.0.0.1:9092}\"", "bootstrap_servers = \"b:9092\"\nproperties = { \"sasl.password\" = \"hunter2\", \"sasl.jaas.config\" = \"x\", \"security.protocol\" = \"SASL_SSL\" }");
        let job = weir_config::parse_job("j.toml", &text_in, &|_| None).unwrap();
        let t = text(&job, Some(4));
        assert!(
            !t.contains("hunter2")
                && t.contains("sasl.password = [redacted]")
                && t.contains("sasl.jaas.config = [redacted]"),
            "{t}"
        );
        assert!(t.contains("security.protocol = SASL_SSL"));
        assert!(
            t.contains(
                "meter-readings (json; key meter_id; event time ts) [4 partitions = 4 tasks]"
            ),
            "{t}"
        );
        assert!(
            t.contains("changelog meter-hourly-average-hourly_avg-changelog"),
            "{t}"
        );
        assert!(
            t.contains("sink    kafka topic meter-hourly-averages"),
            "{t}"
        );
        let d = dot(&job);
        assert!(
            d.starts_with("digraph")
                && d.contains("source -> op0")
                && d.contains("-> sink")
                && d.contains("shape=cylinder"),
            "{d}"
        );
        assert!(!d.contains("hunter2"));
    }
}
