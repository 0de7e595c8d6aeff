//! The comparison: preload, warm-up, interleaved rounds of every runner, restores, and the
//! results file.

use super::*;

pub(crate) fn compare(a: &Args) -> anyhow::Result<()> {
    let wanted = |name: &str| a.only.is_empty() || a.only.iter().any(|o| o == name);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let base = format!("bench-{stamp}");
    let input = format!("{base}-readings");
    create_topics(&a.bootstrap, std::slice::from_ref(&input), a.partitions)?;
    eprintln!(
        "weir-bench: preloading {} readings of {} meters into {input} ({} partitions)",
        a.records, a.meters, a.partitions
    );
    let t = Instant::now();
    let (oracle, total) = preload(a, &input)?;
    eprintln!(
        "weir-bench: preloaded in {:.1} s; {} windows expected",
        t.elapsed().as_secs_f64(),
        oracle.len()
    );
    let work = tempfile_dir(&base)?;
    let inp = Input {
        args: a,
        topic: &input,
        total,
        oracle: &oracle,
    };
    let me = std::env::current_exe()?;
    // The broker has just started and the input was just written: one untimed drain warms its
    // page cache and connections before anything is measured.
    measure(
        &inp,
        Run {
            name: "warm-up",
            command: bare_command(a, &me, &input, total),
            also: vec![],
            group: None,
            output: None,
            duplicates_allowed: false,
            metrics: None,
        },
    )?;
    // Interleaved rounds (bare, weir, peers, then again): noise and warm-up then spread over
    // every runner instead of favouring the ones measured last.
    let mut rounds: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut alos_state = None;
    let mut ks_alos = None;
    for round in 0..a.rounds.max(1) {
        eprintln!("weir-bench: round {} of {}", round + 1, a.rounds.max(1));

        if wanted("bare") {
            let c = bare_command(a, &me, &input, total);
            let r = measure(
                &inp,
                Run {
                    name: "bare",
                    command: c,
                    also: vec![],
                    group: None,
                    output: None,
                    duplicates_allowed: false,
                    metrics: None,
                },
            )?;
            rounds.entry("bare".into()).or_default().push(r);
        }
        for (key, eos) in [("weir_alos", false), ("weir_eos", true)] {
            if !(wanted(key) || key == "weir_alos" && wanted("restore")) {
                continue;
            }
            let name = format!("{base}-r{round}-{key}").replace('_', "-");
            let output = format!("{name}-out");
            create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
            let job = job_file(a, &work, &name, &input, &output, eos)?;
            let state = work.join(&name);
            let port = free_port();
            let also = (1..a.workers.max(1))
                .map(|w| {
                    let state = work.join(format!("{name}-w{w}"));
                    weir_command(a, &job, &state, Some(free_port()))
                })
                .collect();
            let r = measure(
                &inp,
                Run {
                    name: key,
                    command: weir_command(a, &job, &state, Some(port)),
                    also,
                    group: Some(name.clone()),
                    output: Some(output),
                    duplicates_allowed: !eos,
                    metrics: Some(port),
                },
            )?;
            rounds.entry(key.into()).or_default().push(r);
            // A restore reads one worker's state: measured with one worker only.
            if !eos && a.workers <= 1 {
                alos_state = Some((job, state, name));
            }
        }
        if let Some(jar) = &a.kafka_streams_jar {
            for (key, guarantee) in [
                ("kafka_streams_alos", "at_least_once"),
                ("kafka_streams_eos", "exactly_once_v2"),
            ] {
                if !wanted(key) {
                    continue;
                }
                let app = format!("{base}-r{round}-{key}").replace('_', "-");
                let output = format!("{app}-out");
                create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
                let c = kafka_streams_command(
                    a,
                    jar,
                    &input,
                    &output,
                    &app,
                    guarantee,
                    &work.join(&app),
                );
                if guarantee == "at_least_once" {
                    ks_alos = Some((output.clone(), app.clone()));
                }
                let r = measure(
                    &inp,
                    Run {
                        name: key,
                        command: c,
                        also: vec![],
                        group: Some(app),
                        output: Some(output),
                        duplicates_allowed: guarantee == "at_least_once",
                        metrics: None,
                    },
                )?;
                rounds.entry(key.into()).or_default().push(r);
            }
        }
        if let (Some(script), true) = (&a.quix_run, wanted("quix")) {
            let group = format!("{base}-r{round}-quix");
            let output = format!("{group}-out");
            create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
            let mut c = Command::new(script);
            c.env("BOOTSTRAP", &a.bootstrap)
                .env("INPUT_TOPIC", &input)
                .env("OUTPUT_TOPIC", &output)
                .env("CONSUMER_GROUP", &group)
                .env("GUARANTEE", "at-least-once")
                .env(
                    "COMMIT_INTERVAL_S",
                    format!("{}", a.commit_interval_ms as f64 / 1000.0),
                )
                .env("STATE_DIR", work.join(&group));
            let r = measure(
                &inp,
                Run {
                    name: "quix",
                    command: c,
                    also: vec![],
                    group: Some(group),
                    output: Some(output),
                    duplicates_allowed: true,
                    metrics: None,
                },
            )?;
            rounds.entry("quix".into()).or_default().push(r);
        }
    }
    let runs = summary::runs(&rounds);
    let ratios = summary::ratios(&rounds);

    let mut restore = serde_json::Map::new();
    if let (Some((job, state, name)), true) = (&alos_state, wanted("restore")) {
        // Warm restart: state intact.
        restore.insert(
            "weir_warm_restart".into(),
            time_to_ready(a, job, state, "warm")?,
        );
        // Full restore: local state wiped, everything replayed from the changelog.
        std::fs::remove_dir_all(state)?;
        let full = time_to_ready(a, job, state, "restore")?;
        // The same changelog read by the bare consumer: the limit for a restore.
        let changelog = format!("{name}-hourly_avg-changelog");
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &a.bootstrap)
            .create()?;
        let records: i64 = end_offsets(&c, &changelog, a.partitions)?.iter().sum();
        let cmd = bare_command(a, &me, &changelog, records as u64);
        let bare = measure(
            &Input {
                total: records as u64,
                topic: &changelog,
                ..inp
            },
            Run {
                name: "bare_changelog",
                command: cmd,
                also: vec![],
                group: None,
                output: None,
                duplicates_allowed: false,
                metrics: None,
            },
        )?;
        restore.insert("weir_full".into(), full);
        restore.insert("bare_changelog".into(), bare);
    }
    if let (Some(jar), Some((output, app)), true) =
        (&a.kafka_streams_jar, &ks_alos, wanted("restore"))
    {
        let state = work.join(app);
        let c = || kafka_streams_command(a, jar, &input, output, app, "at_least_once", &state);
        restore.insert(
            "kafka_streams_warm_restart".into(),
            kafka_streams_time_to_running(a, c(), "ks-warm")?,
        );
        std::fs::remove_dir_all(&state).ok();
        restore.insert(
            "kafka_streams_full".into(),
            kafka_streams_time_to_running(a, c(), "ks-restore")?,
        );
    }

    let latency = if wanted("latency") {
        latencies(a, &base, &work, &runs)?
    } else {
        serde_json::Map::new()
    };

    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let report = json!({
        "date": date_today(),
        "machine": machine,
        "records": total,
        "meters": a.meters,
        "partitions": a.partitions,
        "commit_interval_ms": a.commit_interval_ms,
        "rounds": a.rounds.max(1),
        "runs": runs,
        "ratios": ratios,
        "restore": restore,
        "latency": latency,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(out) = &a.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &text)?;
    }
    let failed: Vec<&String> = runs
        .iter()
        .filter(|(_, r)| r["verified"] != json!(true))
        .map(|(k, _)| k)
        .collect();
    if !failed.is_empty() {
        eprintln!("weir-bench: not verified (their figures do not count): {failed:?}");
    }
    // weir must be right; a peer that is not is reported as such.
    if failed
        .iter()
        .any(|k| k.starts_with("weir") || k.as_str() == "bare")
    {
        bail!("weir not verified: {failed:?}");
    }
    Ok(())
}

/// On-update latency of weir (both guarantees) and Kafka Streams at the same fixed rate, each on
/// its own input and output topics.
fn latencies(
    a: &Args,
    base: &str,
    work: &Path,
    runs: &serde_json::Map<String, Value>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let weir_max = runs
        .get("weir_alos")
        .and_then(|r| r["steady_records_per_s"].as_f64());
    let rate = a
        .latency_rate
        .unwrap_or_else(|| weir_max.map_or(50_000.0, |r| r / 2.0));
    let sched = latency::Schedule {
        t0_ms: steady::unix_ms() as i64,
        rate,
        meters: a.meters as u64,
        count: (rate * a.latency_seconds).max(1.0) as u64,
    };
    let mut out = serde_json::Map::new();
    out.insert(
        "rate_basis".into(),
        json!(if a.latency_rate.is_some() {
            "--latency-rate"
        } else if weir_max.is_some() {
            "half of weir_alos steady_records_per_s"
        } else {
            "default"
        }),
    );
    let mut runners = vec![("weir_alos", false), ("weir_eos", true)];
    if a.kafka_streams_jar.is_some() {
        runners.push(("kafka_streams_alos", false));
    }
    for (key, eos) in runners {
        let name = format!("{base}-lat-{key}").replace('_', "-");
        let (input, output) = (format!("{name}-in"), format!("{name}-out"));
        // The broker's clock on every reading: latency is measured from its append.
        create_topics_with(
            &a.bootstrap,
            std::slice::from_ref(&input),
            a.partitions,
            &[("message.timestamp.type", "LogAppendTime")],
        )?;
        create_topics(&a.bootstrap, std::slice::from_ref(&output), a.partitions)?;
        let state = work.join(&name);
        let command = match &a.kafka_streams_jar {
            Some(jar) if key == "kafka_streams_alos" => {
                let mut c =
                    kafka_streams_command(a, jar, &input, &output, &name, "at_least_once", &state);
                c.env("EMIT", "on_update").env("LINGER_MS", "5");
                c
            }
            _ => {
                let job = job_file(a, work, &name, &input, &output, eos)?;
                let text = std::fs::read_to_string(&job)?;
                if !text.contains("emit = \"on_close\"") {
                    bail!("{} has no emit = \"on_close\"", a.job.display());
                }
                std::fs::write(
                    &job,
                    text.replace("emit = \"on_close\"", "emit = \"on_update\""),
                )?;
                weir_command(a, &job, &state, None)
            }
        };
        out.insert(
            key.into(),
            latency::measure_latency(a, key, &input, &output, sched, command)?,
        );
    }
    Ok(out)
}
