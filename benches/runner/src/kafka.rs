//! The broker side of a comparison: topics, the preloaded input and its oracle, committed
//! offsets, and the results read back and verified.

use super::*;

pub(crate) fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

pub(crate) fn create_topics(
    bootstrap: &str,
    names: &[String],
    partitions: i32,
) -> anyhow::Result<()> {
    create_topics_with(bootstrap, names, partitions, &[])
}

/// [`create_topics`] with topic configuration (`(name, value)` pairs).
pub(crate) fn create_topics_with(
    bootstrap: &str,
    names: &[String],
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let a = admin(bootstrap)?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            config.iter().fold(
                NewTopic::new(n, partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    for r in rt.block_on(a.create_topics(&topics, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Produces the readings and one sentinel per partition; returns the oracle of what was acknowledged.
pub(crate) fn preload(args: &Args, topic: &str) -> anyhow::Result<(Oracle, u64)> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let per_hour = 12u64;
    let hours = args.records.div_ceil(args.meters as u64 * per_hour) as i64;
    // Event time ends an hour before now: changelogs of windowed stores (Kafka Streams') delete
    // records older than window + retention, and brokers refuse timestamps an hour or more ahead,
    // so old or future event times would make restores and sentinels say nothing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let spec = GeneratorSpec {
        meters: args.meters,
        hours: hours as u32,
        readings_per_hour: per_hour as u32,
        start_ms: now - now.rem_euclid(HOUR) - (hours + 1) * HOUR,
        ..Default::default()
    };
    let mut oracle = Oracle::new();
    let mut max_ts = 0;
    // A full queue drains as the broker acknowledges: wait and send again.
    let send = |mut rec: BaseRecord<'_, [u8], [u8]>| loop {
        match p.send(rec) {
            Ok(()) => break,
            Err((_, back)) => {
                p.poll(Duration::from_millis(10));
                rec = back;
            }
        }
    };
    for r in spec.readings().take(args.records as usize) {
        let payload = r.to_json();
        send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(r.meter_id.as_bytes())
                .payload(&payload),
        );
        max_ts = max_ts.max(r.ts_ms);
        if r.kwh >= 0.0 {
            let e = oracle
                .entry((r.meter_id, r.ts_ms - r.ts_ms.rem_euclid(HOUR)))
                .or_insert((0, 0.0, f64::MAX, f64::MIN));
            e.0 += 1;
            e.1 += r.kwh;
            e.2 = e.2.min(r.kwh);
            e.3 = e.3.max(r.kwh);
        }
    }
    // Sentinels: stream time of every partition passes the last window's end + grace (5 min),
    // still in the past.
    let sentinel_ts = max_ts - max_ts.rem_euclid(HOUR) + HOUR + 10 * 60_000;
    for part in 0..args.partitions {
        let key = format!("sentinel-{part}");
        let payload = format!(r#"{{"meter_id":"{key}","ts":{sentinel_ts},"kwh":0.0}}"#);
        send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_bytes())
                .partition(part),
        );
    }
    // An idempotent producer with infinite retries either delivers everything or fails the flush.
    p.flush(Duration::from_secs(300))
        .context("not every reading was acknowledged")?;
    Ok((oracle, args.records + args.partitions as u64))
}

pub(crate) fn end_offsets(
    c: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<i64>> {
    (0..partitions)
        .map(|p| Ok(c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))
        .collect()
}

/// The sum of `topic`'s end offsets (0 when they cannot be asked).
/// One client that samples a run's progress every 50 ms: creating a client per sample (threads,
/// connections, metadata) took a third of a core from the runner being measured.
pub(crate) struct Progress {
    client: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl Progress {
    /// `group`: whose committed offsets on `topic` are read.
    pub(crate) fn new(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<Progress> {
        Ok(Progress {
            client: ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .create()?,
            topic: topic.to_string(),
            partitions,
        })
    }

    /// The group's committed offsets on the topic, summed (0 while there are none).
    pub(crate) fn committed_total(&self) -> i64 {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        self.client
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|t| {
                t.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Records in `topic` (the sum of its end offsets).
    pub(crate) fn output_total(&self, topic: &str) -> i64 {
        end_offsets(&self.client, topic, self.partitions)
            .map(|ends| ends.iter().sum())
            .unwrap_or(0)
    }
}

/// Every result in `topic` (read_committed), without the sentinels' windows.
pub(crate) fn read_results(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Value>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-verify")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let ends = end_offsets(&c, topic, partitions)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut next = vec![0i64; partitions as usize];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        if Instant::now() > deadline {
            bail!("reading {topic}: stuck before its end offsets {ends:?} (at {next:?})");
        }
        // A transaction marker ends a partition without a record: the position says where it is.
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m?;
            next[m.partition() as usize] = m.offset() + 1;
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                .with_context(|| format!("{topic}: a result is not JSON"))?;
            if !v["meter_id"]
                .as_str()
                .unwrap_or("")
                .starts_with("sentinel-")
            {
                out.push(v);
            }
        } else if let Ok(pos) = c.position() {
            for e in pos.elements() {
                if let Offset::Offset(o) = e.offset() {
                    next[e.partition() as usize] = next[e.partition() as usize].max(o);
                }
            }
        }
    }
    Ok(out)
}

/// Compares results with the oracle: (missing, duplicated, wrong).
pub(crate) fn verify(results: &[Value], oracle: &Oracle) -> (u64, u64, u64) {
    let mut seen: HashMap<(String, i64), u32> = HashMap::new();
    let mut wrong = 0;
    for v in results {
        let key = (
            v["meter_id"].as_str().unwrap_or("").to_string(),
            v["window_start_ms"].as_i64().unwrap_or(i64::MIN),
        );
        *seen.entry(key.clone()).or_default() += 1;
        let ok = oracle.get(&key).is_some_and(|&(n, sum, min, max)| {
            v["count"].as_u64() == Some(n)
                && v["avg"]
                    .as_f64()
                    .is_some_and(|a| (a - sum / n as f64).abs() < 1e-9)
                && v["min"].as_f64() == Some(min)
                && v["max"].as_f64() == Some(max)
        });
        if !ok {
            wrong += 1;
        }
    }
    let missing = oracle.keys().filter(|k| !seen.contains_key(*k)).count() as u64;
    let duplicated = seen.values().filter(|&&n| n > 1).count() as u64;
    (missing, duplicated, wrong)
}
