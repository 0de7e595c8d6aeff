// Test and measurement helper for the Kafka Streams peer. Runs as a single-file Java program with the
// peer's shaded jar on the class path (it supplies kafka-clients and Jackson):
//
//   java -cp target/weir-peer-kafka-streams.jar harness/PeerCheck.java <command> ...
//
// Commands (BOOTSTRAP must be set in the environment):
//   create <topic> <partitions>                         create a topic (replication factor 1)
//   delete <topic>|group:<group>...                     delete topics and consumer groups
//   list [prefix]                                       list topics whose names start with prefix
//   produce <topic> <meters> <hours> <interval-min> <seed> [extras]
//       one reading per meter every interval-min minutes of event time over the given hours,
//       starting 2026-01-01T00:00Z (or at BASE_TS_MS from the environment), each with a random offset of up to min(interval, 5 min) inside
//       its slot; then one sentinel per partition (key sentinel-<p>, ts = max ts + 1 day, or + the
//       environment's SENTINEL_GAP_MS, kwh 0, sent to partition p). extras = 1 also mixes in about 1% negative readings, 5 unparseable
//       values, 3 values without ts and 10 readings more than an hour late (which must be dropped).
//   wait-group <group> <topic> <timeout-s>              wait until the group's committed offsets on
//       topic equal the end offsets; prints the wall-clock ms at which that was first seen
//   offsets <topic>                                     print each partition's earliest and end offset
//       ("partition <p> earliest <e> end <n>") and a total line "total <sum of end - earliest>"
//   verify <input-topic> <output-topic>                 recompute the expected hourly results from
//       the input topic and compare them with the output topic read with read_committed
//
// The expected results model Kafka Streams' window semantics per partition: records in offset order,
// stream time = max event time of the records that reach the aggregation (parsed, keyed, kwh >= 0),
// and a record is dropped when its window's end is not after stream time minus the grace period.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class PeerCheck {
    static final long HOUR = 3_600_000L;
    static final long GRACE = 300_000L;
    static final long BASE_TS = 1_767_225_600_000L; // 2026-01-01T00:00:00Z

    /** Event time of the first slot: BASE_TS_MS from the environment when set, else BASE_TS. */
    static long baseTs() {
        String v = System.getenv("BASE_TS_MS");
        return v == null || v.isBlank() ? BASE_TS : Long.parseLong(v.trim());
    }
    static final ObjectMapper JSON = new ObjectMapper();

    static String bootstrap() {
        String b = System.getenv("BOOTSTRAP");
        if (b == null || b.isBlank()) {
            throw new IllegalStateException("BOOTSTRAP must be set");
        }
        return b.trim();
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        return Admin.create(p);
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            System.err.println("usage: PeerCheck create|delete|list|produce|wait-group|offsets|verify ...");
            System.exit(2);
        }
        switch (args[0]) {
            case "create" -> create(args[1], Integer.parseInt(args[2]));
            case "delete" -> delete(List.of(args).subList(1, args.length));
            case "list" -> list(args.length > 1 ? args[1] : "");
            case "produce" -> produce(args[1], Integer.parseInt(args[2]), Integer.parseInt(args[3]),
                    Integer.parseInt(args[4]), Long.parseLong(args[5]), args.length > 6 && args[6].equals("1"));
            case "wait-group" -> System.exit(waitGroup(args[1], args[2], Long.parseLong(args[3])) ? 0 : 1);
            case "offsets" -> offsets(args[1]);
            case "verify" -> System.exit(verify(args[1], args[2]) ? 0 : 1);
            default -> {
                System.err.println("unknown command " + args[0]);
                System.exit(2);
            }
        }
    }

    static void create(String topic, int partitions) throws Exception {
        try (Admin a = admin()) {
            a.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        System.out.println("created " + topic + " with " + partitions + " partitions");
    }

    static void delete(List<String> names) throws Exception {
        List<String> groups = names.stream().filter(n -> n.startsWith("group:")).map(n -> n.substring(6))
                .collect(Collectors.toList());
        List<String> topics = names.stream().filter(n -> !n.startsWith("group:")).collect(Collectors.toList());
        try (Admin a = admin()) {
            if (!groups.isEmpty()) {
                a.deleteConsumerGroups(groups).all().get();
            }
            if (!topics.isEmpty()) {
                a.deleteTopics(topics).all().get();
            }
        }
        System.out.println("deleted topics " + topics + " groups " + groups);
    }

    static void list(String prefix) throws Exception {
        try (Admin a = admin()) {
            a.listTopics().names().get().stream().filter(n -> n.startsWith(prefix)).sorted()
                    .forEach(System.out::println);
        }
    }

    static int partitionCount(String topic) throws Exception {
        try (Admin a = admin()) {
            return a.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
        }
    }

    static String reading(String meter, long ts, double kwh) {
        return "{\"meter_id\":\"" + meter + "\",\"ts\":" + ts + ",\"kwh\":" + kwh + "}";
    }

    static void produce(String topic, int meters, int hours, int intervalMin, long seed, boolean extras)
            throws Exception {
        int partitions = partitionCount(topic);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, 20);
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 256 * 1024);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        SplittableRandom rnd = new SplittableRandom(seed);
        long interval = intervalMin * 60_000L;
        long jitter = Math.min(interval, GRACE);
        long slots = hours * HOUR / interval;
        long base = baseTs();
        long maxTs = 0;
        long sent = 0;
        AtomicReference<Exception> failure = new AtomicReference<>();
        long t0 = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (long s = 0; s < slots; s++) {
                long slotStart = base + s * interval;
                for (int m = 0; m < meters; m++) {
                    String meter = String.format("meter-%05d", m);
                    long ts = slotStart + rnd.nextLong(jitter);
                    double kwh = rnd.nextDouble() * 2.0;
                    String value;
                    if (extras && rnd.nextInt(100) == 0) {
                        kwh = -kwh - 0.001;
                    }
                    value = reading(meter, ts, kwh);
                    maxTs = Math.max(maxTs, ts);
                    producer.send(new ProducerRecord<>(topic, meter, value), (md, e) -> {
                        if (e != null) {
                            failure.compareAndSet(null, e);
                        }
                    });
                    sent++;
                }
                if (extras && s == slots / 2) {
                    for (int i = 0; i < 5; i++) {
                        producer.send(new ProducerRecord<>(topic, String.format("meter-%05d", i), "{not json " + i));
                        sent++;
                    }
                    for (int i = 0; i < 3; i++) {
                        producer.send(new ProducerRecord<>(topic, String.format("meter-%05d", i),
                                "{\"meter_id\":\"meter-x\",\"kwh\":1.0}"));
                        sent++;
                    }
                    for (int i = 0; i < 10; i++) {
                        String meter = String.format("meter-%05d", i);
                        producer.send(new ProducerRecord<>(topic, meter, reading(meter, slotStart - HOUR - 60_000, 5.0)));
                        sent++;
                    }
                }
            }
            String gap = System.getenv("SENTINEL_GAP_MS");
            long sentinelTs = maxTs + (gap == null || gap.isBlank() ? 24 * HOUR : Long.parseLong(gap.trim()));
            for (int part = 0; part < partitions; part++) {
                String key = "sentinel-" + part;
                producer.send(new ProducerRecord<>(topic, part, key, reading(key, sentinelTs, 0.0)));
                sent++;
            }
            producer.flush();
        }
        if (failure.get() != null) {
            throw failure.get();
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        System.out.printf("produced %d records (%d partitions, max ts %d) in %.1f s%n", sent, partitions, maxTs, secs);
    }

    static void offsets(String topic) throws Exception {
        try (Admin a = admin()) {
            var desc = a.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (var pi : desc.partitions()) {
                TopicPartition tp = new TopicPartition(topic, pi.partition());
                earliest.put(tp, OffsetSpec.earliest());
                latest.put(tp, OffsetSpec.latest());
            }
            var lo = a.listOffsets(earliest).all().get();
            var hi = a.listOffsets(latest).all().get();
            long total = 0;
            for (int part = 0; part < desc.partitions().size(); part++) {
                TopicPartition tp = new TopicPartition(topic, part);
                long e = lo.get(tp).offset();
                long n = hi.get(tp).offset();
                total += n - e;
                System.out.println("partition " + part + " earliest " + e + " end " + n);
            }
            System.out.println("total " + total);
        }
    }

    static boolean waitGroup(String group, String topic, long timeoutS) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutS * 1000;
        try (Admin a = admin()) {
            var desc = a.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
            for (var pi : desc.partitions()) {
                specs.put(new TopicPartition(topic, pi.partition()), OffsetSpec.latest());
            }
            Map<TopicPartition, Long> ends = new HashMap<>();
            a.listOffsets(specs).all().get().forEach((tp, info) -> ends.put(tp, info.offset()));
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            long lastPrint = 0;
            while (System.currentTimeMillis() < deadline) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                long done = 0;
                boolean all = true;
                for (var e : ends.entrySet()) {
                    OffsetAndMetadata om = committed.get(e.getKey());
                    long c = om == null ? 0 : om.offset();
                    done += Math.min(c, e.getValue());
                    if (c < e.getValue()) {
                        all = false;
                    }
                }
                long now = System.currentTimeMillis();
                if (all) {
                    System.out.println("caught-up-at-ms " + now + " committed " + done + " of " + total);
                    return true;
                }
                if (now - lastPrint > 5000) {
                    System.err.println("  committed " + done + " of " + total);
                    lastPrint = now;
                }
                Thread.sleep(100);
            }
            System.out.println("timed out waiting for group " + group);
            return false;
        }
    }

    record Key(String meter, long windowStart) implements Comparable<Key> {
        public int compareTo(Key o) {
            int c = meter.compareTo(o.meter);
            return c != 0 ? c : Long.compare(windowStart, o.windowStart);
        }
    }

    static final class Agg {
        long count;
        double sum;
        double min = Double.POSITIVE_INFINITY;
        double max = Double.NEGATIVE_INFINITY;

        void add(double v) {
            count++;
            sum += v;
            min = Math.min(min, v);
            max = Math.max(max, v);
        }
    }

    /** Reads every partition of topic from the beginning to its end offset. */
    static Map<Integer, List<ConsumerRecord<String, byte[]>>> readAll(String topic, boolean readCommitted)
            throws Exception {
        int partitions = partitionCount(topic);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, readCommitted ? "read_committed" : "read_uncommitted");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 5000);
        Map<Integer, List<ConsumerRecord<String, byte[]>>> out = new TreeMap<>();
        try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
                out.put(i, new ArrayList<>());
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            long idleSince = System.currentTimeMillis();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp) < ends.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    break;
                }
                var batch = c.poll(Duration.ofMillis(500));
                if (batch.isEmpty()) {
                    if (System.currentTimeMillis() - idleSince > 30_000) {
                        throw new IllegalStateException("no progress reading " + topic);
                    }
                } else {
                    idleSince = System.currentTimeMillis();
                }
                for (ConsumerRecord<String, byte[]> r : batch) {
                    out.get(r.partition()).add(r);
                }
            }
        }
        return out;
    }

    static Map<Key, Agg> expected(String input) throws Exception {
        Map<Key, Agg> exp = new HashMap<>();
        long total = 0, unusable = 0, negative = 0, late = 0;
        for (var part : readAll(input, false).values()) {
            long streamTime = Long.MIN_VALUE;
            for (ConsumerRecord<String, byte[]> r : part) {
                total++;
                JsonNode v;
                try {
                    v = JSON.readTree(r.value());
                } catch (Exception e) {
                    unusable++;
                    continue;
                }
                if (r.key() == null || v == null || !v.isObject() || !v.path("ts").isIntegralNumber()
                        || !v.path("kwh").isNumber()) {
                    unusable++;
                    continue;
                }
                long ts = v.get("ts").asLong();
                double kwh = v.get("kwh").asDouble();
                if (kwh < 0) {
                    negative++;
                    continue;
                }
                streamTime = Math.max(streamTime, ts);
                long start = Math.floorDiv(ts, HOUR) * HOUR;
                if (start + HOUR <= streamTime - GRACE) {
                    late++;
                    continue;
                }
                if (r.key().startsWith("sentinel-")) {
                    continue;
                }
                exp.computeIfAbsent(new Key(r.key(), start), k -> new Agg()).add(kwh);
            }
        }
        System.out.printf("input: %d records, %d unusable, %d negative, %d late; expecting %d results%n",
                total, unusable, negative, late, exp.size());
        return exp;
    }

    static boolean verify(String input, String output) throws Exception {
        Map<Key, Agg> exp = expected(input);
        Map<Key, Integer> seen = new HashMap<>();
        List<String> problems = new ArrayList<>();
        long outputs = 0, sentinels = 0;
        for (var part : readAll(output, true).values()) {
            for (ConsumerRecord<String, byte[]> r : part) {
                outputs++;
                JsonNode v = JSON.readTree(r.value());
                String meter = v.path("meter_id").asText();
                if (meter.startsWith("sentinel-")) {
                    sentinels++;
                    continue;
                }
                if (!meter.equals(r.key())) {
                    problems.add("key " + r.key() + " differs from meter_id " + meter);
                }
                long start = v.path("window_start_ms").asLong();
                long end = v.path("window_end_ms").asLong();
                Key k = new Key(meter, start);
                if (seen.merge(k, 1, Integer::sum) > 1) {
                    problems.add("duplicate result for " + k);
                    continue;
                }
                if (start % HOUR != 0 || end != start + HOUR) {
                    problems.add("bad window bounds for " + k + ": " + start + ".." + end);
                }
                Agg a = exp.get(k);
                if (a == null) {
                    problems.add("unexpected result " + k + " " + v);
                    continue;
                }
                double avg = a.sum / a.count;
                if (v.path("count").asLong() != a.count
                        || Math.abs(v.path("avg").asDouble() - avg) > 1e-9
                        || v.path("min").asDouble() != a.min
                        || v.path("max").asDouble() != a.max) {
                    problems.add("mismatch for " + k + ": got " + v + ", expected count=" + a.count
                            + " avg=" + avg + " min=" + a.min + " max=" + a.max);
                }
            }
        }
        List<Key> missing = exp.keySet().stream().filter(k -> !seen.containsKey(k)).sorted()
                .collect(Collectors.toList());
        for (Key k : missing) {
            problems.add("missing result " + k);
        }
        System.out.printf("output: %d records (%d sentinel), %d distinct results, %d expected, %d missing, %d problems%n",
                outputs, sentinels, seen.size(), exp.size(), missing.size(), problems.size());
        for (String s : problems.subList(0, Math.min(20, problems.size()))) {
            System.out.println("  " + s);
        }
        boolean ok = problems.isEmpty();
        System.out.println(ok ? "VERIFY OK" : "VERIFY FAILED");
        return ok;
    }
}
