use super::*;

const GOOD: &str = r#"
name = "meter-hourly-average"
[kafka]
bootstrap_servers = "${BROKERS:-127.0.0.1:9092}"
[source]
topics = ["meter-readings"]
key_field = "meter_id"
timestamp_field = "ts"
[[pipeline]]
window = { type = "tumbling", size = "1h", grace = "5m" }
[[pipeline]]
aggregate = { store = "hourly", field = "kwh", functions = ["avg", "count", "min", "max"] }
[sink]
topic = "meter-hourly"
"#;

/// Every operator but stamp: renames, derivations, a re-key and session windows.
const GOOD_OPERATORS: &str = r#"
name = "sessions-by-site"
[source]
topics = ["readings"]
timestamp_field = "ts"
[[pipeline]]
map = { rename = { kwh = "energy" }, derive = { wh = "energy * 1000" }, select = ["site", "ts", "wh"] }
[[pipeline]]
filter = { field = "wh", op = ">", value = 0.0 }
[[pipeline]]
key_by = { field = "site" }
[[pipeline]]
window = { type = "session", gap = "30m", grace = "5m" }
[[pipeline]]
aggregate = { store = "sessions", field = "wh", functions = ["sum", "max"] }
[sink]
topic = "out"
"#;

#[test]
fn sessions_maps_and_key_by_load_and_plan() {
    let job = parse_job("job.toml", GOOD_OPERATORS, &no_env).unwrap();
    let plan = job.plan();
    assert_eq!(plan.steps.len(), 3);
    assert_eq!(plan.window.unwrap().0.size_or_gap_ms(), 1_800_000);
    assert_eq!(job.key_by_input_field().as_deref(), Some("site"));
    assert_eq!(
        job.repartition_topic().as_deref(),
        Some("sessions-by-site-repartition")
    );
    // Already partitioned by the key: no repartition topic.
    let keyed = GOOD_OPERATORS.replace("[source]\n", "[source]\nkey_field = \"site\"\n");
    let job = parse_job("job.toml", &keyed, &no_env).unwrap();
    assert_eq!(job.repartition_topic(), None);
}

#[test]
fn fields_removed_by_select_or_rename_are_errors_where_they_are_used() {
    let text = GOOD_OPERATORS.replace("field = \"wh\", op", "field = \"energy\", op");
    let err = parse_job("job.toml", &text, &no_env).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].line, 8);
    assert!(err.0[0].message.contains("field `energy` is not available"));
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn a_good_job_loads_with_defaults() {
    let job = parse_job("job.toml", GOOD, &no_env).unwrap();
    assert_eq!(
        job.kafka.bootstrap_servers.as_deref(),
        Some("127.0.0.1:9092")
    );
    assert_eq!(
        job.changelog_topic().as_deref(),
        Some("meter-hourly-average-hourly-changelog")
    );
    assert_eq!(job.processing.commit_interval.as_millis(), 1000);
    assert!(job.plan().window.is_some());
}

#[test]
fn an_unknown_key_names_its_position_and_the_closest_key() {
    let text = GOOD.replace("key_field", "key_feild");
    let err = parse_job("job.toml", &text, &no_env).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(
        err.0[0].to_string(),
        "job.toml:7:1: unknown key `key_feild`; did you mean `key_field`?"
    );
}

#[test]
fn every_semantic_error_is_reported_with_its_position() {
    let text = GOOD
        .replace("name = \"meter-hourly-average\"", "name = \"bad name!\"")
        .replace(
            "type = \"tumbling\", size = \"1h\"",
            "type = \"hopping\", size = \"1h\", advance = \"2h\"",
        );
    let err = parse_job("job.toml", &text, &no_env).unwrap_err();
    let lines: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("job.toml:2:8: bad job name"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("job.toml:10:53: advance (2h) must be"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_duration_points_at_the_value() {
    let err = parse_job("j.toml", &GOOD.replace("\"1h\"", "\"1 hour\""), &no_env).unwrap_err();
    assert!(err.0[0].to_string().starts_with("j.toml:10:"), "{err}");
    assert!(err.0[0].message.contains("unknown unit"), "{err}");
}

#[test]
fn dead_letter_without_a_topic_is_a_contradiction() {
    let text = format!("{GOOD}[processing]\nbad_records = \"dead_letter\"\n");
    let err = parse_job("j.toml", &text, &no_env).unwrap_err();
    assert_eq!(err.0[0].line, 16);
    assert!(err.0[0].message.contains("needs `dead_letter_topic`"));
}

fn errors_of(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match parse_job("j.toml", text, env) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Quotes, a TOML escape, brackets and newlines: all characters of the value, none TOML.
const NASTY: &str = "p\"w\\u0041]\n[kafka.properties]\n\"enable.auto.commit\" = \"true";

#[test]
fn a_variable_comes_through_verbatim_and_injects_nothing() {
    let text = r#"name = "j"
[kafka.properties]
"sasl.password" = "${NASTY}"
"security.protocol" = "SASL_SSL"
[source]
topics = ["${NASTY}", "plain"]
[sink]
topic = "o"
"#;
    let env = |v: &str| (v == "NASTY").then(|| NASTY.to_string());
    let job = parse_job("j.toml", text, &env).unwrap_or_else(|e| panic!("{e}"));
    let props: Vec<&str> = job.kafka.properties.keys().map(String::as_str).collect();
    assert_eq!(props, ["sasl.password", "security.protocol"]);
    assert_eq!(job.kafka.properties["sasl.password"], NASTY);
    assert_eq!(job.source.topics, [NASTY, "plain"]);
}

#[test]
fn a_csv_sink_needs_fixed_columns() {
    let forward = |source: &str, pipeline: &str| {
        format!("name = \"j\"\n[source]\ntopics = [\"t\"]\n{source}{pipeline}[sink]\ntopic = \"o\"\nformat = \"csv\"\n")
    };
    let stamp = "[[pipeline]]\nstamp = { fields = { at = \"{offset}\" } }\n";
    // JSON records have whatever fields they have.
    assert_eq!(
            errors_of(&forward("", stamp), &no_env),
            ["j.toml:8:1: a csv sink writes the same columns for every record, and this job forwards JSON records with the fields each one has: end the pipeline with a `select` naming the columns, in order"]
        );
    // A select fixes them, and so do a CSV source's columns.
    let select = "[[pipeline]]\nselect = [\"a\", \"b\"]\n";
    let job = parse_job("j.toml", &forward("", &format!("{select}{stamp}")), &no_env).unwrap();
    assert_eq!(job.forwarded_fields().unwrap(), ["a", "b", "at"]);
    let csv = "format = \"csv\"\ncolumns = [\"m\", \"kwh\"]\n";
    let renamed =
        "[[pipeline]]\nmap = { rename = { m = \"meter\" }, derive = { wh = \"kwh * 1000\" } }\n";
    let job = parse_job("j.toml", &forward(csv, renamed), &no_env).unwrap();
    assert_eq!(job.forwarded_fields().unwrap(), ["meter", "kwh", "wh"]);
    // A windowed job's results have fixed columns; the plan carries the sink's format.
    let windowed = GOOD.replace(
        "topic = \"meter-hourly\"",
        "topic = \"meter-hourly\"\nformat = \"csv\"",
    );
    let job = parse_job("job.toml", &windowed, &no_env).unwrap();
    assert_eq!(job.plan().window.unwrap().0.result_format, Format::Csv);
}

#[test]
fn an_unterminated_variable_is_reported_where_it_is() {
    let text = "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"out-${SUFFIX\"\n[processing]\ncommit_interval = \"2s\"\n";
    assert_eq!(
        errors_of(text, &no_env),
        ["j.toml:5:14: unterminated `${`: expected `}` before the end of the string"]
    );
}

#[test]
fn every_unset_variable_is_reported_at_its_dollar_with_the_other_errors() {
    let text = r#"name = "${NAME:?name the job}"
[source]
topics = ["a", "${TOPIC}"]
format = "jsn"
[sink]
topic = "${OUT}-x-${ALSO}"
"#;
    assert_eq!(
            errors_of(text, &no_env),
            [
                "j.toml:1:9: environment variable NAME is not set: name the job",
                "j.toml:3:17: environment variable TOPIC is not set (write ${TOPIC:-default} to give a default)",
                "j.toml:4:10: unknown variant `jsn`, expected `json` or `csv`",
                "j.toml:6:10: environment variable OUT is not set (write ${OUT:-default} to give a default)",
                "j.toml:6:19: environment variable ALSO is not set (write ${ALSO:-default} to give a default)",
            ]
        );
    // The `${NAME}` left in place is no bad job name: only the variable is reported.
    let text = "name = \"${NAME}\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n";
    assert_eq!(
            errors_of(text, &no_env),
            ["j.toml:1:9: environment variable NAME is not set (write ${NAME:-default} to give a default)"]
        );
    let text = "name = \"j\"\n[source]\ntopics = [\"${bad-name}\"]\n[sink]\ntopic = \"o\"\n";
    assert_eq!(
        errors_of(text, &no_env),
        ["j.toml:3:12: bad variable name \"bad-name\" in `${bad-name}`"]
    );
}

#[test]
fn defaults_dollars_and_secrets() {
    let text = r#"name = "j"
[kafka]
bootstrap_servers = "${BROKERS:-localhost:9092}"
[kafka.properties]
"sasl.password" = "written-in-the-file"
"sasl.username" = "${USER_NAME:-weir}"
[source]
topics = ["t"]
[sink]
topic = "${OUT:-results}-$$v"
"#;
    let job = parse_job("j.toml", text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        job.kafka.bootstrap_servers.as_deref(),
        Some("localhost:9092")
    );
    assert_eq!(job.sink.topic.as_deref(), Some("results-$v"));
    // Defaults are written in the file: not secret. Sensitive properties are.
    assert_eq!(job.secrets(), ["written-in-the-file", "weir"]);

    let env = |v: &str| match v {
        "OUT" => Some("production".to_string()),
        "BROKERS" => Some("kafka-0:9092".to_string()),
        "USER_NAME" => Some("svc-weir".to_string()),
        _ => None,
    };
    let job = parse_job("j.toml", text, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job.sink.topic.as_deref(), Some("production-$v"));
    assert_eq!(
        job.secrets(),
        [
            "written-in-the-file",
            "kafka-0:9092",
            "production",
            "svc-weir"
        ]
    );
    assert_eq!(
        crate::redact("writing to production-$v", &job.secrets()),
        "writing to ***-$v"
    );
}

#[test]
fn values_from_the_environment_are_redacted_from_errors() {
    let text = format!("{GOOD}[processing]\nguarantee = \"${{G}}\"\n");
    let env = |v: &str| (v == "G").then(|| "exactly-once".to_string());
    let errors = errors_of(&text, &env);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("j.toml:16:13: unknown variant `***`"),
        "{errors:?}"
    );
}

#[test]
fn newlines_in_a_variable_keep_later_lines_true() {
    let text = "name = \"j\"\n[source]\ntopics = [\"t\"]\n[[pipeline]]\nstamp = { fields = { note = \"${MULTI}\" } }\n[sink]\ntopic = \"o\"\nbogus = 1\n";
    let env = |v: &str| (v == "MULTI").then(|| "line one\nline two\n".to_string());
    assert_eq!(
        errors_of(text, &env),
        ["j.toml:8:1: unknown key `bogus`; expected one of type, topic, format"]
    );
    let ok = text.replace("bogus = 1\n", "");
    let job = parse_job("j.toml", &ok, &env).unwrap();
    match job.pipeline[0].get_ref() {
        Operator::Stamp(s) => assert_eq!(s.fields["note"], "line one\nline two\n"),
        other => panic!("{other:?}"),
    }
}

const EXACTLY_ONCE: &str = r#"name = "j"
[source]
topics = ["t"]
[sink]
topic = "o"
[processing]
guarantee = "exactly_once"
[kafka.properties]
"linger.ms" = "100"
"isolation.level" = "read_uncommitted"
"enable.idempotence" = "TRUE"
"group.id" = "j"
"request.required.acks" = "1"
"#;

#[test]
fn a_property_weir_needs_is_an_error_naming_both_values() {
    assert_eq!(
            errors_of(EXACTLY_ONCE, &no_env),
            [
                "j.toml:10:1: kafka.properties.\"isolation.level\" = \"read_uncommitted\" conflicts with exactly-once, which needs read_committed (weir sets it)",
                "j.toml:13:1: kafka.properties.\"request.required.acks\" = \"1\" conflicts with the idempotent producer (enable.idempotence = true), which needs all",
            ]
        );
}

#[test]
fn the_same_value_and_tunable_properties_are_allowed() {
    let text = EXACTLY_ONCE
        .replace("read_uncommitted", "READ_COMMITTED")
        .replace("\"request.required.acks\" = \"1\"", "acks = \"all\"");
    let job = parse_job("j.toml", &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job.kafka.properties["linger.ms"], "100");
    assert_eq!(
        crate::kafka_props::user_value(&job.kafka.properties, "queue.buffering.max.ms"),
        Some(("linger.ms", "100"))
    );
}

#[test]
fn conflicts_point_at_the_key_however_the_table_is_written() {
    let base = "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n";
    let inline = format!("{base}[kafka]\nbootstrap_servers = \"b:9092\"\nproperties = {{ \"security.protocol\" = \"SSL\", \"bootstrap.servers\" = \"other:9092\" }}\n");
    assert_eq!(
            errors_of(&inline, &no_env),
            ["j.toml:8:45: kafka.properties.\"bootstrap.servers\" = \"other:9092\" conflicts with the brokers weir connects to, which needs \"b:9092\" (kafka.bootstrap_servers) (weir sets it); set kafka.bootstrap_servers instead"]
        );
    let dotted = format!("kafka.properties.\"group.id\" = \"other\"\n{base}");
    assert_eq!(
            errors_of(&dotted, &no_env),
            ["j.toml:1:18: kafka.properties.\"group.id\" = \"other\" conflicts with the job's consumer group, which needs \"j\" (the job's `name`) (weir sets it); the group is named after the job: rename the job instead"]
        );
    let at_least_once = format!("{base}[kafka.properties]\n\"transactional.id\" = \"t\"\n");
    let errors = errors_of(&at_least_once, &no_env);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
            errors[0].starts_with("j.toml:7:1: kafka.properties.\"transactional.id\" = \"t\" conflicts with at-least-once"),
            "{errors:?}"
        );
}

/// Arbitrary bytes and mutated job files: errors, never a panic.
#[test]
fn any_input_gives_errors_never_a_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"[]{}=\"'#,.:-_ \n\tabcdefghijklmnopqrstuvwxyz0123456789${}?\\\xff\xc3";
    for round in 0..20_000 {
        let text = if round % 2 == 0 {
            // Random text over characters TOML cares about.
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            // A valid job with a few random edits.
            let base = if round % 4 == 1 { GOOD } else { GOOD_OPERATORS };
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                    _ => bytes[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let result = std::panic::catch_unwind(|| {
            parse_job("fuzz.toml", &text, &|v| {
                (v == "SET").then(|| "x".to_string())
            })
        });
        let outcome = result.unwrap_or_else(|_| panic!("panic on input {text:?}"));
        if let Err(errors) = outcome {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(
                    e.line >= 1 && e.col >= 1 && e.line <= text.lines().count().max(1) + 1,
                    "{e} for {text:?}"
                );
            }
        }
    }
}
