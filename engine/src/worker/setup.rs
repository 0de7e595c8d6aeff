//! Starting a worker: the input's partition count, the internal topics, the decoder and the
//! job's steps, the Kafka clients (producer, restore consumer, watermark client, group consumer)
//! and the core they share; the group subscribed.

use super::*;
use weir_config::GroupProtocol;

/// A started worker, ready for the poll loop.
pub(super) struct Started {
    pub core: Arc<Mutex<TaskManager>>,
    pub consumer: GroupConsumer,
    pub consumers: Consumers,
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
        let n = crate::kafka::partition_count_patiently(&brokers, job, t, health)?
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
    // No format of today's looks schemas up; a schema registry client, built from the job, goes here.
    let pipeline = Pipeline::compile(job, &weir_operators::formats::no_schemas())?;
    if let Some(w) = pipeline.window() {
        ensure_topic(
            &brokers,
            job,
            &w.changelog,
            partitions,
            job.state.changelog_replication_factor,
            true,
        )?;
    }
    let sink = crate::sink::build(job);
    sink.check(&brokers, job)?;
    let results_to = sink.describe();
    if let Some(t) = &job.processing.dead_letter_topic {
        if partition_count(&brokers, job, t)?.is_none() {
            bail!("topic {t} does not exist on {brokers}: create it first");
        }
    }
    let repartition = pipeline.repartition().map(str::to_string);
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
    set_tuned(&mut pc, job, "linger.ms");
    set_tuned(&mut pc, job, "compression.type");
    // Bounded memory: a commit of many dirty keys waits for acknowledgements rather than
    // queueing them all (librdkafka's default allows 1 GiB).
    set_tuned(&mut pc, job, "queue.buffering.max.kbytes");
    let commit_step: Box<dyn CommitStep + Send> = match job.processing.guarantee {
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
            let txn_timeout_ms = job.processing.transaction_timeout_ms();
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
                transaction_timeout: transaction_timeout(&pc),
            })
        }
    };
    let assign_budget = match job.processing.guarantee {
        Guarantee::AtLeastOnce => Duration::from_secs(60),
        Guarantee::ExactlyOnce => transaction_timeout(&pc) / 2,
    };
    let collector = RecordCollector::create(pc, pipeline.window().map(|w| w.changelog.clone()))
        .map_err(|e| creation_error("creating the producer", e))?
        .with_health(health.clone());
    let mut rc = client_config(&brokers, job);
    set_tuned(&mut rc, job, "fetch.queue.backoff.ms");
    let restore_consumer: BaseConsumer = rc
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
    let mut commit_step = commit_step;
    commit_step.start(&collector, health)?;
    let core = Arc::new(Mutex::new(TaskManager {
        job_name: name.clone(),
        pipeline,
        tasks: BTreeMap::new(),
        collector,
        sink,
        bad_records: BadRecords {
            policy: job.processing.bad_records,
            dead_letter_topic: job.processing.dead_letter_topic.clone(),
        },
        commit_step,
        transactional: job.processing.guarantee == Guarantee::ExactlyOnce,
        restorer: restore::ChangelogReader::new(restore_consumer, watermarks),
        stores: Stores {
            state_dir: PathBuf::from(&runtime.state_dir),
            resources: SharedResources::new(runtime.block_cache_bytes, runtime.write_buffer_bytes),
            cache_bytes: (runtime.block_cache_bytes as usize) / partitions.max(1),
        },
        rejoin_because: None,
        renew_producer: false,
        assign_budget,
        metrics: metrics.clone(),
        health: health.clone(),
        emits: Vec::new(),
        repartitioned: Vec::new(),
        fetched: BTreeMap::new(),
        fetch_hold: FetchHold::Never,
        batch_clock: (Instant::now(), now_ms()),
    }));

    // A task is partition p of every subscribed topic, so one member must own p of all of them.
    // The range assignor gives that for co-partitioned topics (each topic's partitions go to the
    // members in the same order); cooperative-sticky balances topic-partitions independently, so
    // it is kept for single-topic jobs, where it moves only the partitions that must move. Under
    // the consumer group protocol the coordinator assigns (its `range` and `uniform` assignors,
    // both sticky), and session and heartbeat are the broker's.
    let conflicts = weir_config::kafka_props::conflicts_under(job, runtime.group_protocol);
    if let Some(c) = conflicts.first() {
        bail!("{}", c.message);
    }
    let mut cc = client_config(&brokers, job);
    cc.set("group.id", &name)
        .set("group.protocol", runtime.group_protocol.name())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    match runtime.group_protocol {
        GroupProtocol::Classic => {
            cc.set(
                "partition.assignment.strategy",
                weir_config::kafka_props::assignment_strategy(job),
            );
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
        }
        GroupProtocol::Consumer => {
            cc.set(
                "group.remote.assignor",
                weir_config::kafka_props::remote_assignor(job),
            );
        }
    }
    for name in [
        "statistics.interval.ms",
        "queued.max.messages.kbytes",
        "fetch.queue.backoff.ms",
    ] {
        set_tuned(&mut cc, job, name);
    }
    if let Some(id) = &runtime.instance_id {
        cc.set("group.instance.id", id);
    }
    let consumers = Consumers {
        config: cc,
        core: core.clone(),
        metrics: metrics.clone(),
        topics: topics.clone(),
        instance_id: runtime.instance_id.clone(),
        session_timeout: runtime.session_timeout.std(),
    };
    let consumer = consumers.create()?;
    // A re-keyed job also consumes its repartition topic: partition p of both belongs to task p.
    let subscribed: Vec<String> = topics.iter().chain(repartition.iter()).cloned().collect();
    let names: Vec<&str> = subscribed.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing")?;
    tracing::info!(job = %name, brokers = %brokers, topics = ?topics, partitions, sink = %results_to, group_protocol = runtime.group_protocol.name(), "worker started");
    Ok(Started {
        core,
        consumer,
        consumers,
        name,
        subscribed,
    })
}

/// The producer's transaction timeout (the job's value, or what `kafka.properties` set).
fn transaction_timeout(pc: &rdkafka::ClientConfig) -> Duration {
    let ms: u64 = pc
        .get("transaction.timeout.ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    Duration::from_millis(ms)
}

/// What makes the worker's group consumer, kept to make a new one after the group fenced it.
pub(super) struct Consumers {
    config: rdkafka::ClientConfig,
    core: Arc<Mutex<TaskManager>>,
    metrics: Arc<Metrics>,
    topics: Vec<String>,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
}

impl Consumers {
    pub fn create(&self) -> anyhow::Result<GroupConsumer> {
        self.config
            .create_with_context(WorkerContext {
                core: self.core.clone(),
                metrics: self.metrics.clone(),
                topics: self.topics.clone(),
            })
            .map_err(|e| creation_error("creating the consumer", e))
    }
}
