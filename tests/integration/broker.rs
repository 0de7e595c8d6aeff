//! The real broker does what the rest of the suite relies on: partitions, group consumption with
//! manual commit, and transactions with read_committed isolation.

use crate::harness::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn real_broker_creates_a_topic_with_several_partitions_and_keeps_records_per_partition() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let topic = unique("parts");
    kafka.create_topic(&topic, 4);
    assert_eq!(partition_count(&b, &topic), Some(4));
    let p = producer(&b);
    for i in 0..40 {
        send(
            &p,
            &topic,
            Some(format!("k{i}").as_bytes()),
            format!("v{i}").as_bytes(),
            Some(i % 4),
        );
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let msgs = read_to_end(&b, &topic);
    assert_eq!(msgs.len(), 40);
    for m in &msgs {
        let i: i32 = std::str::from_utf8(m.payload().unwrap()).unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(m.partition(), i % 4);
    }
    for part in 0..4 {
        assert_eq!(end_offset(&b, &topic, part), 10);
    }
}

#[test]
fn real_broker_group_consumer_with_manual_commit_resumes_after_the_committed_offset() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let topic = unique("manual");
    let group = unique("group");
    kafka.create_topic(&topic, 1);
    let p = producer(&b);
    for i in 0..10 {
        send(&p, &topic, None, format!("{i}").as_bytes(), None);
    }
    p.flush(Duration::from_secs(30)).unwrap();

    let consumer = |g: &str| -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", g)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        c
    };
    let first = consumer(&group);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 6 {
        assert!(Instant::now() < deadline, "no records within 60 s");
        if let Some(m) = first.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            seen.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            if seen.len() == 6 {
                // Commit after processing the sixth record: the next member starts at 6.
                first.commit_message(&m, CommitMode::Sync).unwrap();
            }
        }
    }
    drop(first);
    assert_eq!(committed_offset(&b, &group, &topic, 0), Some(6));
    let second = consumer(&group);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rest = Vec::new();
    while rest.len() < 4 {
        assert!(Instant::now() < deadline, "the second member saw {rest:?}");
        if let Some(m) = second.poll(Duration::from_millis(200)) {
            rest.push(String::from_utf8(m.unwrap().payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(rest, vec!["6", "7", "8", "9"]);
}

#[test]
fn real_broker_read_committed_sees_committed_transactions_and_none_of_an_aborted_one() {
    let kafka = Kafka::real();
    let b = kafka.bootstrap();
    let topic = unique("txn");
    kafka.create_topic(&topic, 2);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("transactional.id", unique("txn-id"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    let write = |prefix: &str| {
        for i in 0..5 {
            let payload = format!("{prefix}-{i}");
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(&topic)
                        .partition(i % 2)
                        .payload(payload.as_bytes()),
                )
                .unwrap();
        }
    };
    producer.begin_transaction().unwrap();
    write("committed");
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    producer.begin_transaction().unwrap();
    write("aborted");
    producer.flush(Duration::from_secs(30)).unwrap();
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    write("later");
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();

    let values: BTreeSet<String> = read_to_end(&b, &topic)
        .iter()
        .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
        .collect();
    let want: BTreeSet<String> = (0..5)
        .flat_map(|i| [format!("committed-{i}"), format!("later-{i}")])
        .collect();
    assert_eq!(values, want);

    // A read_uncommitted reader does see the aborted records: the filter is the broker's doing.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", unique("g"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut aborted_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while aborted_seen < 5 && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if m.payload().unwrap().starts_with(b"aborted") {
                aborted_seen += 1;
            }
        }
    }
    assert_eq!(aborted_seen, 5);
}
