//! What the drill asks Kafka: topics, end offsets, the group's committed offsets, the output read
//! with read_committed.

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Short timeouts: while a broker is away the monitor keeps its last values rather than block.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

pub fn create_topics(bootstrap: &str, topics: &[(&str, u32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating an admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, n)| NewTopic::new(name, *n as i32, TopicReplication::Fixed(-1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(admin.create_topics(
        new.iter(),
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    let probe = Probe::new(bootstrap, None)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, n) in topics {
        while probe.partition_count(name) != Some(*n as usize) {
            if Instant::now() > deadline {
                bail!("topic {name} did not show in the cluster's metadata within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// One client for the drill's questions about offsets. Not `Sync`: one per thread.
pub struct Probe {
    uncommitted: BaseConsumer,
    committed: BaseConsumer,
    group: Option<String>,
}

impl Probe {
    /// `group`: the consumer group whose committed offsets are read (never joined).
    pub fn new(bootstrap: &str, group: Option<&str>) -> anyhow::Result<Probe> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("enable.auto.commit", "false");
        if let Some(g) = group {
            c.set("group.id", g);
        }
        Ok(Probe {
            uncommitted: c
                .clone()
                .set("isolation.level", "read_uncommitted")
                .create()?,
            committed: c.set("isolation.level", "read_committed").create()?,
            group: group.map(str::to_string),
        })
    }

    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        let md = self
            .uncommitted
            .fetch_metadata(Some(topic), QUERY_TIMEOUT)
            .ok()?;
        md.topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|&n| n > 0)
    }

    /// High watermark of each partition (`None` if any could not be read).
    pub fn end_offsets(&self, topic: &str, partitions: u32) -> Option<Vec<i64>> {
        (0..partitions as i32)
            .map(|p| {
                self.uncommitted
                    .fetch_watermarks(topic, p, QUERY_TIMEOUT)
                    .ok()
                    .map(|(_, h)| h)
            })
            .collect()
    }

    /// Last stable offset of each partition (the end a read_committed reader sees).
    pub fn stable_offsets(&self, topic: &str, partitions: u32) -> Option<Vec<i64>> {
        (0..partitions as i32)
            .map(|p| {
                self.committed
                    .fetch_watermarks(topic, p, QUERY_TIMEOUT)
                    .ok()
                    .map(|(_, h)| h)
            })
            .collect()
    }

    /// The group's committed offset of each partition (0 where none), or `None` when Kafka did not
    /// answer.
    pub fn committed_offsets(&self, topic: &str, partitions: u32) -> Option<Vec<i64>> {
        self.group.as_ref()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition(topic, p);
        }
        let res = self
            .uncommitted
            .committed_offsets(tpl, QUERY_TIMEOUT)
            .ok()?;
        (0..partitions as i32)
            .map(|p| {
                let e = res.find_partition(topic, p)?;
                if e.error().is_err() {
                    return None;
                }
                Some(match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
            })
            .collect()
    }

    /// Leader node id of a partition, asked again for up to 30 s (metadata right after a broker
    /// came back may not have it yet).
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader_now(topic, partition) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn leader_now(&self, topic: &str, partition: i32) -> Option<i32> {
        let md = self
            .uncommitted
            .fetch_metadata(Some(topic), QUERY_TIMEOUT)
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        let p = t.partitions().iter().find(|p| p.id() == partition)?;
        (p.leader() >= 0).then_some(p.leader())
    }

    /// Broker ids in the cluster's metadata, and whether every partition of `topics` has its full
    /// set of in-sync replicas and a leader.
    pub fn cluster_health(&self, topics: &[&str]) -> Option<(Vec<i32>, bool)> {
        let md = self.uncommitted.fetch_metadata(None, QUERY_TIMEOUT).ok()?;
        let brokers: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
        let healthy = md
            .topics()
            .iter()
            .filter(|t| topics.contains(&t.name()))
            .all(|t| {
                t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.isr().len() == p.replicas().len())
            });
        Some((brokers, healthy))
    }
}

/// Every record of `topic` up to its last stable offset, read with read_committed.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-verifier"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions as i32 {
        let (_, stable) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("end offset of {topic}[{p}]"))?;
        ends.insert(p, stable);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let positions = c.position()?;
        let done = ends.iter().all(|(p, end)| {
            *end == 0
                || matches!(positions.find_partition(topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *end)
        });
        if done {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!(
                "reading {topic} to its end took over {}s",
                timeout.as_secs()
            );
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
            Some(Err(e)) => tracing::debug!("reading {topic}: {e}"),
            None => {}
        }
    }
}

/// Deletes a verified drill's topics (and its changelog); failures are only logged.
pub fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let result = (|| -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(admin.delete_topics(topics, &AdminOptions::new()))?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!("deleting the drill's topics: {e:#}");
    }
}
