//! Starting a worker: the input's partition count, the internal topics, the decoder and the
//! job's steps, the Kafka clients (producer, restore consumer, watermark client, group consumer)
//! and the core they share; the group subscribed.

use super::*;

/// A started worker, ready for the poll loop.
pub(super) struct Started {
    pub core: Arc<Mutex<Core>>,
    pub consumer: GroupConsumer,
    pub name: String,
    /// The topics the group consumer reads (inputs and the repartition topic).
    pub subscribed: Vec<String>,
}

pub(super) fn start(
    job: &Job,
    runtime: &RuntimeConfig,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> anyhow::Result<Started> {
    let name = job.name.get_ref().clone();
    let brokers = runtime.brokers.clone();
    let topics = job.source.topics.clone();

    // Co-partitioned inputs: every input topic has the same number of partitions.
    let mut partitions = None;
    for t in &topics {
        let n = partition_count(&brokers, job, t)?
            .with_context(|| format!("input topic {t} does not exist on {brokers}"))?;
        match partitions {
            Some(m) if m != n => bail!(
                "input topics are not co-partitioned: {} has {m} partitions, {t} has {n}",
                topics[0]
            ),
            _ => partitions = Some(n),
        }
    }
    let partitions = partitions.context("the job names no input topic")?;
    let plan = job.plan();
    let program = plan.window.as_ref().map(|_| Program::compile(job));
    let window = match (&plan.window, job.changelog_topic()) {
        (Some((w, a)), Some(changelog)) => {
            ensure_topic(
                &brokers,
                job,
                &changelog,
                partitions,
                job.state.changelog_replication_factor,
                true,
            )?;
            Some(WindowSpec {
                window: w.clone(),
                functions: a.functions.clone(),
                idle_close: w.close_idle_after.map(|d| d.std()),
                store: a.store.get_ref().clone(),
                changelog,
                key_name: program
                    .as_ref()
                    .map_or_else(|| "key".into(), |p| p.key_name.clone()),
            })
        }
        _ => None,
    };
    let sink_topic = match job.sink.kind {
        SinkKind::Kafka => job.sink.topic.clone(),
        SinkKind::Stdout => None,
    };
    for t in sink_topic
        .iter()
        .chain(job.processing.dead_letter_topic.iter())
    {
        if partition_count(&brokers, job, t)?.is_none() {
            bail!("topic {t} does not exist on {brokers}: create it first");
        }
    }
    let forward = plan.window.is_none().then(|| Forward::compile(job));
    // A re-keyed job decodes its key from the key_by field.
    let mut source = job.source.clone();
    if let Some(k) = program.as_ref().and_then(|p| p.key_input_field.clone()) {
        source.key_field = Some(k);
    }
    let decoder = Decoder::new(
        &source,
        program
            .as_ref()
            .map(|p| p.input_fields.clone())
            .unwrap_or_default(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let repartition = job.repartition_topic();
    if let Some(t) = &repartition {
        ensure_topic(
            &brokers,
            job,
            t,
            partitions,
            job.state.changelog_replication_factor,
            false,
        )?;
    }

    let mut pc = client_config(&brokers, job);
    pc.set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random");
    set_default(&mut pc, job, "linger.ms", "5");
    set_default(&mut pc, job, "compression.type", "lz4");
    // Bounded memory: a commit of many dirty keys waits for acknowledgements rather than
    // queueing them all (librdkafka's default allows 1 GiB).
    set_default(&mut pc, job, "queue.buffering.max.kbytes", "32768");
    let commit: Box<dyn CommitStep + Send> = match job.processing.guarantee {
        Guarantee::AtLeastOnce => {
            // Never give up on a record: while Kafka is away the worker waits (and says it is not ready).
            set_default(&mut pc, job, "message.timeout.ms", "0");
            Box::new(AtLeastOnce)
        }
        Guarantee::ExactlyOnce => {
            // A stable id per worker identity lets a restarted worker fence its predecessor and
            // abort its open transaction at once; without --instance-id the id is unique per process
            // and a dead worker's open transaction ends at the transaction timeout.
            let id = match &runtime.instance_id {
                Some(i) => format!("{name}-{i}"),
                None => format!("{name}-{}-{}", std::process::id(), now_ms()),
            };
            tracing::info!(transactional_id = %id, "exactly-once");
            // A transaction stays open for a commit interval (and a revocation's commit within
            // it): its timeout must outlast that. A `kafka.properties` value wins.
            let txn_timeout_ms = (job.processing.commit_interval.as_millis() * 3).max(10_000);
            pc.set("transactional.id", &id);
            set_default(
                &mut pc,
                job,
                "transaction.timeout.ms",
                txn_timeout_ms.to_string(),
            );
            set_default(&mut pc, job, "message.timeout.ms", "10000");
            Box::new(ExactlyOnce {
                transactional_id: id,
            })
        }
    };
    let producer: BaseProducer<Deliveries> = pc
        .create_with_context(Deliveries::new(
            window.as_ref().map(|w| w.changelog.clone()),
        ))
        .map_err(|e| creation_error("creating the producer", e))?;
    let restore_consumer: BaseConsumer = client_config(&brokers, job)
        .set("group.id", format!("{name}-restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| creation_error("creating the restore consumer", e))?;

    let watermarks: BaseConsumer = client_config(&brokers, job)
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|e| creation_error("creating the watermark client", e))?;
    let state_dir = PathBuf::from(&runtime.state_dir);
    let mut commit = commit;
    commit.start(&producer)?;
    let core = Arc::new(Mutex::new(Core {
        job_name: name.clone(),
        decoder,
        program,
        forward,
        repartition: repartition.clone(),
        window,
        sink_topic,
        dead_letter_topic: job.processing.dead_letter_topic.clone(),
        policy: job.processing.bad_records,
        state_dir,
        cache_bytes: (runtime.block_cache_bytes as usize) / partitions.max(1),
        tasks: BTreeMap::new(),
        producer,
        restore_consumer,
        transactional: job.processing.guarantee == Guarantee::ExactlyOnce,
        watermarks,
        restore_assignment_stale: false,
        rejoin_because: None,
        resources: SharedResources::new(runtime.block_cache_bytes, runtime.write_buffer_bytes),
        metrics: metrics.clone(),
        health: health.clone(),
        emits: Vec::new(),
        repartitioned: Vec::new(),
        last_restore_log: Instant::now(),
        fetched: BTreeMap::new(),
        fetch_hold: FetchHold::Never,
        commit,
    }));

    // A task is partition p of every subscribed topic, so one member must own p of all of them.
    // The range assignor gives that for co-partitioned topics (each topic's partitions go to the
    // members in the same order); cooperative-sticky balances topic-partitions independently, so
    // it is kept for single-topic jobs, where it moves only the partitions that must move.
    let co_partitioned = topics.len() + usize::from(repartition.is_some()) > 1;
    let mut cc = client_config(&brokers, job);
    cc.set("group.id", &name)
        .set(
            "partition.assignment.strategy",
            if co_partitioned {
                "range"
            } else {
                "cooperative-sticky"
            },
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    set_default(
        &mut cc,
        job,
        "session.timeout.ms",
        runtime.session_timeout.as_millis().to_string(),
    );
    set_default(
        &mut cc,
        job,
        "heartbeat.interval.ms",
        (runtime.session_timeout.as_millis() / 5)
            .max(100)
            .to_string(),
    );
    set_default(&mut cc, job, "statistics.interval.ms", "5000");
    set_default(&mut cc, job, "queued.max.messages.kbytes", "4096");
    if let Some(id) = &runtime.instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: GroupConsumer = cc
        .create_with_context(WorkerContext {
            core: core.clone(),
            metrics: metrics.clone(),
            topics: topics.clone(),
        })
        .map_err(|e| creation_error("creating the consumer", e))?;
    // A re-keyed job also consumes its repartition topic: partition p of both belongs to task p.
    let subscribed: Vec<String> = topics.iter().chain(repartition.iter()).cloned().collect();
    let names: Vec<&str> = subscribed.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing")?;
    tracing::info!(job = %name, brokers = %brokers, topics = ?topics, partitions, "worker started");
    Ok(Started {
        core,
        consumer,
        name,
        subscribed,
    })
}
