//! One measured run: spawn, sample the group's committed offsets until the input is drained,
//! then verify the output against the oracle.

use super::*;

pub(crate) struct Run {
    pub(crate) name: &'static str,
    pub(crate) command: Command,
    /// Further processes of the same run (more workers of one group), measured with it.
    pub(crate) also: Vec<Command>,
    /// `Some(group)`: drained when the group committed the end offsets; `None`: when it exits.
    pub(crate) group: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) duplicates_allowed: bool,
    /// A weir run's HTTP port: its commit figures are read from `/metrics` at the end.
    pub(crate) metrics: Option<u16>,
}

pub(crate) struct Input<'a> {
    pub(crate) args: &'a Args,
    pub(crate) topic: &'a str,
    pub(crate) total: u64,
    pub(crate) oracle: &'a Oracle,
}

pub(crate) fn measure(input: &Input, mut run: Run) -> anyhow::Result<Value> {
    let a = input.args;
    eprintln!("weir-bench: {} ...", run.name);
    let log = std::env::temp_dir().join(format!("weir-bench-{}.log", run.name));
    let started = Instant::now();
    let spawned_unix_ms = steady::unix_ms();
    let mut steady = Steady::new(input.total);
    let mut child = run
        .command
        // The bare consumer reports its own marks on stdout (a runner with a group is sampled).
        .stdout(if run.group.is_none() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", run.name))?;
    let bare_out = child.stdout.take();
    let pid = child.id();
    let mut others = Vec::new();
    for (i, c) in run.also.iter_mut().enumerate() {
        let log = std::env::temp_dir().join(format!("weir-bench-{}-{}.log", run.name, i + 1));
        others.push(
            c.stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("starting {} worker {}", run.name, i + 1))?,
        );
    }
    let pids: Vec<u32> = std::iter::once(pid)
        .chain(others.iter().map(Child::id))
        .collect();
    let timeout = Duration::from_secs(a.timeout_s);
    // Per process: CPU seconds and peak RSS as last seen (summed for the run).
    let mut cpu = vec![0.0; pids.len()];
    let mut peaks = vec![0; pids.len()];
    let usage = |cpu: &mut [f64], peaks: &mut [u64]| {
        for (i, &p) in pids.iter().enumerate() {
            cpu[i] = cpu_seconds(p).max(cpu[i]);
            peaks[i] = peak_rss_bytes(p).max(peaks[i]);
        }
    };
    let (mut peak_threads, mut peak_files) = (0, 0);
    let mut exited = None;
    let progress = match &run.group {
        Some(g) => Some(Progress::new(&a.bootstrap, g, input.topic, a.partitions)?),
        None => None,
    };
    let drained = loop {
        usage(&mut cpu, &mut peaks);
        let (threads, files) = pids
            .iter()
            .map(|&p| threads_and_files(p))
            .fold((0, 0), |(t, f), (t1, f1)| (t + t1, f + f1));
        peak_threads = peak_threads.max(threads);
        peak_files = peak_files.max(files);
        if let Some(e) = reaped(pid) {
            if run.group.is_none() && e.success {
                exited = Some(e);
                break true;
            }
            bail!("{} exited early; its log: {}", run.name, log.display());
        }
        if pids[1..].iter().any(|&p| reaped(p).is_some()) {
            bail!("a further worker of {} exited early", run.name);
        }
        if let Some(progress) = &progress {
            let c = progress.committed_total();
            steady.observe(started.elapsed().as_secs_f64(), c.max(0) as u64);
            // Drained: every input offset committed and as many output records as windows
            // (windows that close at once are emitted over several commit cycles, after the
            // offsets that closed them; under exactly-once the count includes commit markers,
            // which the verification below allows for).
            if c as u64 >= input.total
                && run
                    .output
                    .as_deref()
                    .is_none_or(|t| progress.output_total(t) >= input.oracle.len() as i64)
            {
                break true;
            }
        }
        if started.elapsed() > timeout {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let drain_s = started.elapsed().as_secs_f64();
    usage(&mut cpu, &mut peaks);
    let cpu_s: f64 = cpu.iter().sum();
    let peak: u64 = peaks.iter().sum();
    if let Some(out) = bare_out {
        let marks = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| steady::parse_bare_line(&l, spawned_unix_ms));
        if let Some((t10, t90)) = marks {
            steady.t10 = Some(t10);
            steady.t90 = Some(t90);
        }
    }
    let mut result = json!({
        "drain_s": round(drain_s),
        "records_per_s": (input.total as f64 / drain_s).round(),
        "steady_records_per_s": steady.rate().map(f64::round),
        "steady_span_s": steady.span_s().map(round),
        "to_10_percent_s": steady.t10.map(round),
        "cpu_s": round(cpu_s),
        "peak_rss_bytes": peak,
        "peak_threads": peak_threads,
        "peak_open_files": peak_files,
    });
    let verified = match &run.output {
        _ if !drained => {
            result["error"] = json!(format!("not drained within {} s", a.timeout_s));
            false
        }
        Some(topic) => {
            // The last cycles' results may still be on their way (see the drain condition).
            let mut results = read_results(&a.bootstrap, topic, a.partitions)?;
            let mut checked = verify(&results, input.oracle);
            for _ in 0..5 {
                if checked.0 == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
                results = read_results(&a.bootstrap, topic, a.partitions)?;
                checked = verify(&results, input.oracle);
            }
            let (missing, duplicated, wrong) = checked;
            result["windows_expected"] = json!(input.oracle.len());
            result["windows_missing"] = json!(missing);
            result["windows_duplicated"] = json!(duplicated);
            result["windows_wrong"] = json!(wrong);
            missing == 0 && wrong == 0 && (run.duplicates_allowed || duplicated == 0)
        }
        // The bare consumer verifies itself: it exits once it has read every record.
        None => true,
    };
    if let Some((200, text)) = run
        .metrics
        .and_then(|port| scrape::http_get(port, "/metrics"))
    {
        result["engine"] = scrape::engine_figures(&text, drain_s);
    }
    // Stopped only now: the verification above may wait for the last results.
    match exited {
        Some(e) => result["cpu_s"] = json!(round(e.cpu_s)),
        None => {
            stop(child);
        }
    }
    for c in others {
        stop(c);
    }
    if pids.len() > 1 {
        result["workers"] = json!(pids.len());
    }
    result["verified"] = json!(verified);
    run.output.take();
    eprintln!("weir-bench: {} {result}", run.name);
    Ok(result)
}
