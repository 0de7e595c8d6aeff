use super::*;

fn job(extra: &str) -> Job {
    let text = format!(
        "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n{extra}\n[kafka.properties]\n"
    );
    crate::parse_job("j.toml", &text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn values_are_compared_as_librdkafka_reads_them() {
    assert!(Need::Bool(false).accepts("FALSE"));
    assert!(Need::Bool(false).accepts("0"));
    assert!(!Need::Bool(false).accepts("no"));
    assert!(Need::Word(&["earliest", "smallest", "beginning"]).accepts("Smallest"));
    assert!(!Need::Word(&["read_committed"]).accepts("read_uncommitted"));
    assert!(Need::AtMost(5).accepts(" 5"));
    assert!(!Need::AtMost(5).accepts("6"));
    assert!(!Need::AtLeast(1).accepts("many"));
    assert!(!Need::AtRunTime("x").accepts("anything"));
}

#[test]
fn user_value_finds_a_property_under_any_of_its_names() {
    let props: BTreeMap<String, String> = [("queue.buffering.max.ms", "50"), ("acks", "all")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        user_value(&props, "linger.ms"),
        Some(("queue.buffering.max.ms", "50"))
    );
    assert_eq!(
        user_value(&props, "request.required.acks"),
        Some(("acks", "all"))
    );
    assert_eq!(user_value(&props, "compression.type"), None);
    assert_eq!(user_value(&props, "unknown.property"), None);
}

#[test]
fn the_assignment_strategy_follows_the_topics_a_task_reads() {
    assert_eq!(assignment_strategy(&job("")), "cooperative-sticky");
    let text = "name = \"j\"\n[source]\ntopics = [\"a\", \"b\"]\n[sink]\ntopic = \"o\"\n";
    let two = crate::parse_job("j.toml", text, &|_| None).unwrap();
    assert_eq!(assignment_strategy(&two), "range");
}

#[test]
fn idle_close_needs_the_consumer_statistics() {
    let stats = |job: &Job| {
        required(job)
            .into_iter()
            .find(|r| r.name == "statistics.interval.ms")
    };
    assert_eq!(stats(&job("")), None);
    let text = "name = \"j\"\n[source]\ntopics = [\"t\"]\n[[pipeline]]\nwindow = { type = \"tumbling\", size = \"1h\", close_idle_after = \"10m\" }\n[[pipeline]]\naggregate = { store = \"s\", field = \"kwh\", functions = [\"sum\"] }\n[sink]\ntopic = \"o\"\n[kafka.properties]\n\"statistics.interval.ms\" = \"0\"\n";
    let err = crate::parse_job("j.toml", text, &|_| None).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.0[0].to_string().starts_with("j.toml:11:1: kafka.properties.\"statistics.interval.ms\" = \"0\" conflicts with close_idle_after"), "{err}");
    let slower = text.replace("\"0\"", "\"30000\"");
    assert!(crate::parse_job("j.toml", &slower, &|_| None).is_ok());
}

#[test]
fn transactional_ids_are_weirs_under_either_guarantee() {
    let alo = job("");
    let r = required(&alo);
    let t = r.iter().find(|r| r.name == "transactional.id").unwrap();
    assert_eq!(t.need, Need::Unset);
    let eos = job("[processing]\nguarantee = \"exactly_once\"");
    let r = required(&eos);
    let t = r.iter().find(|r| r.name == "transactional.id").unwrap();
    assert!(matches!(t.need, Need::AtRunTime(_)));
}

#[test]
fn the_consumer_group_protocol_assigns_on_the_broker_and_takes_no_session_settings() {
    let classic = job("");
    assert!(conflicts_under(&classic, GroupProtocol::Classic).is_empty());
    let j = crate::parse_job(
        "j.toml",
        "name = \"j\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n[kafka.properties]\n\"session.timeout.ms\" = \"20000\"\n",
        &|_| None,
    )
    .unwrap();
    assert!(conflicts_under(&j, GroupProtocol::Classic).is_empty());
    // WEIR_GROUP_PROTOCOL=consumer at run time: the worker refuses what that protocol does not take.
    let c = conflicts_under(&j, GroupProtocol::Consumer);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].message.contains("group.consumer.session.timeout.ms"),
        "{}",
        c[0].message
    );

    let text = "name = \"j\"\n[source]\ntopics = [\"a\", \"b\"]\n[sink]\ntopic = \"o\"\n[runtime]\ngroup_protocol = \"consumer\"\n";
    let two = crate::parse_job("j.toml", text, &|_| None).unwrap();
    let r = required(&two);
    let need = |name: &str| r.iter().find(|r| r.name == name).map(|r| r.need.clone());
    assert_eq!(
        need("group.remote.assignor"),
        Some(Need::Exact("range".into(), "for this job's input topics"))
    );
    assert_eq!(need("partition.assignment.strategy"), Some(Need::Unset));
    assert_eq!(
        need("group.protocol"),
        Some(Need::Exact("consumer".into(), "runtime.group_protocol"))
    );
    assert_eq!(remote_assignor(&job("")), "uniform");

    let bad = format!("{text}[kafka.properties]\n\"partition.assignment.strategy\" = \"range\"\n\"group.protocol\" = \"classic\"\n");
    let err = crate::parse_job("j.toml", &bad, &|_| None).unwrap_err();
    let msgs: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with(
            "j.toml:9:1: kafka.properties.\"partition.assignment.strategy\" = \"range\" conflicts"
        ),
        "{msgs:?}"
    );
    assert!(
        msgs[0].contains("weir sets group.remote.assignor instead"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].starts_with(
            "j.toml:10:1: kafka.properties.\"group.protocol\" = \"classic\" conflicts"
        ),
        "{msgs:?}"
    );

    let timed = text.replace(
        "group_protocol",
        "session_timeout = \"20s\"\ngroup_protocol",
    );
    let err = crate::parse_job("j.toml", &timed, &|_| None).unwrap_err();
    assert!(
        err.to_string().contains(
            "j.toml:7:1: session_timeout does not apply under group_protocol = \"consumer\""
        ),
        "{err}"
    );
}
