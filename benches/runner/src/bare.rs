//! The bare consumer: the physical limit every runner is compared with.

use super::*;

/// The physical limit: read every record of `topic` (all partitions, from the start) and nothing else.
pub(crate) fn bare_consumer(bootstrap: &str, topic: &str, expect: u64) -> anyhow::Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-bare")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // As weir's consumers: librdkafka's default (1000 ms) leaves a drained queue empty for
        // most of a second, which would make the limit a false one.
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut n = 0u64;
    let mut bytes = 0u64;
    // The clock is read at the two marks only, not per record.
    let marks = Steady::new(expect);
    let (mut t10, mut t90) = (0, 0);
    while n < expect {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            bytes += m?.payload_len() as u64;
            n += 1;
            if n == marks.low() {
                t10 = steady::unix_ms();
            }
            if n == marks.high() {
                t90 = steady::unix_ms();
            }
        }
    }
    println!("{n} records, {bytes} bytes");
    println!("{}", steady::bare_line(t10, t90));
    Ok(())
}
