package dev.weir.peer.ks;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Entry point: reads the environment, builds {@link MeterTopology}, runs it until SIGTERM/SIGINT
 * (clean close, exit 0) or until Kafka Streams enters ERROR (exit 1). A configuration error exits 2.
 */
public final class PeerApp {
    private static final Logger LOG = LoggerFactory.getLogger(PeerApp.class);

    static final String DEFAULT_INPUT_TOPIC = "meter-readings";
    static final String DEFAULT_OUTPUT_TOPIC = "meter-hourly-averages";
    static final String DEFAULT_APPLICATION_ID = "weir-peer-kafka-streams";
    static final long DEFAULT_CACHE_MAX_BYTES = 64L * 1024 * 1024;
    static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

    private PeerApp() {}

    /** A configuration problem reported to the user without a stack trace. */
    static final class ConfigException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        ConfigException(String message) {
            super(message);
        }
    }

    /** The settings taken from the environment. */
    static final class Settings {
        String bootstrap;
        String inputTopic;
        String outputTopic;
        String applicationId;
        String guarantee;
        long commitIntervalMs;
        Path stateDir;
        boolean stateDirIsTemporary;
        int threads;
        int replicationFactor;
        long cacheMaxBytes;
        long emitIntervalMs;
        boolean onUpdate;
        long lingerMs;
        /** Static group membership prefix ({@code group.instance.id}); null for dynamic membership. */
        String instanceId;

        static Settings fromEnv() {
            Settings s = new Settings();
            s.bootstrap = env("BOOTSTRAP", null);
            if (s.bootstrap == null) {
                throw new ConfigException("BOOTSTRAP is required (host:port[,host:port...])");
            }
            s.inputTopic = env("INPUT_TOPIC", DEFAULT_INPUT_TOPIC);
            s.outputTopic = env("OUTPUT_TOPIC", DEFAULT_OUTPUT_TOPIC);
            s.applicationId = env("APPLICATION_ID", DEFAULT_APPLICATION_ID);
            String g = env("GUARANTEE", "at_least_once").toLowerCase(Locale.ROOT);
            if (g.equals("at_least_once")) {
                s.guarantee = StreamsConfig.AT_LEAST_ONCE;
            } else if (g.equals("exactly_once_v2")) {
                s.guarantee = StreamsConfig.EXACTLY_ONCE_V2;
            } else {
                throw new ConfigException("GUARANTEE must be at_least_once or exactly_once_v2, got " + g);
            }
            s.commitIntervalMs = longEnv("COMMIT_INTERVAL_MS", 1000, 1);
            String dir = env("STATE_DIR", null);
            if (dir != null) {
                s.stateDir = Path.of(dir);
            } else {
                try {
                    s.stateDir = Files.createTempDirectory("weir-peer-ks-state-");
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
                s.stateDirIsTemporary = true;
            }
            s.threads = (int) longEnv("THREADS", Runtime.getRuntime().availableProcessors(), 1);
            s.replicationFactor = (int) longEnv("REPLICATION_FACTOR", 1, 1);
            s.cacheMaxBytes = longEnv("CACHE_MAX_BYTES", DEFAULT_CACHE_MAX_BYTES, 0);
            s.emitIntervalMs = longEnv("EMIT_INTERVAL_MS", 0, 0);
            String emit = env("EMIT", "on_close").toLowerCase(Locale.ROOT);
            if (!emit.equals("on_close") && !emit.equals("on_update")) {
                throw new IllegalArgumentException("EMIT must be on_close or on_update, not " + emit);
            }
            s.onUpdate = emit.equals("on_update");
            s.lingerMs = longEnv("LINGER_MS", 100, 0);
            s.instanceId = env("INSTANCE_ID", null);
            return s;
        }

        Properties toProperties() {
            Properties p = new Properties();
            p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
            p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
            p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
            p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
            p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
            p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, replicationFactor);
            p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, cacheMaxBytes);
            p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.OPTIMIZE);
            // Wall-clock throttle between checks for closed windows under onWindowClose (see README).
            p.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION, emitIntervalMs);

            p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
            if (instanceId != null) {
                // Static membership: Kafka Streams gives each stream thread's main consumer the id
                // <INSTANCE_ID>-<thread index>, which is what lets close() remove the members from
                // the group (see the shutdown hook).
                p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), instanceId);
            }

            // Changelog and result writes: larger batches, same compression as the weir engine.
            p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), lingerMs);
            p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 128 * 1024);
            p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
            return p;
        }

        @Override
        public String toString() {
            return "bootstrap=" + bootstrap + " input=" + inputTopic + " output=" + outputTopic
                    + " application.id=" + applicationId + " guarantee=" + guarantee
                    + " commit.interval.ms=" + commitIntervalMs + " state.dir=" + stateDir
                    + " threads=" + threads + " replication.factor=" + replicationFactor
                    + " cache.max.bytes=" + cacheMaxBytes + " emit.interval.ms=" + emitIntervalMs
                    + " emit=" + (onUpdate ? "on_update" : "on_close") + " linger.ms=" + lingerMs
                    + " group.instance.id=" + (instanceId == null ? "(dynamic membership)" : instanceId + "-<thread>");
        }
    }

    public static void main(String[] args) {
        Settings settings;
        try {
            settings = Settings.fromEnv();
        } catch (ConfigException e) {
            System.err.println("kafka-streams peer: " + e.getMessage());
            System.exit(2);
            return;
        }
        System.err.println("kafka-streams peer: " + settings);

        Topology topology = MeterTopology.build(settings.inputTopic, settings.outputTopic, settings.onUpdate);
        KafkaStreams streams = new KafkaStreams(topology, settings.toProperties());

        AtomicBoolean announcedRunning = new AtomicBoolean(false);
        CountDownLatch failed = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(0);

        streams.setStateListener((newState, oldState) -> {
            // The first RUNNING of this process: every stream thread has its tasks and no active
            // task is still restoring (so every "restored" line of the start-up precedes it).
            if (newState == KafkaStreams.State.RUNNING && announcedRunning.compareAndSet(false, true)) {
                synchronized (System.out) {
                    System.out.println("kafka-streams peer: RUNNING");
                    System.out.flush();
                }
            } else if (newState == KafkaStreams.State.ERROR) {
                failed.countDown();
            }
        });
        streams.setGlobalStateRestoreListener(new RestoreReporter());
        streams.setUncaughtExceptionHandler(e -> {
            // Kafka Streams logs the stack trace itself; one line here says what the peer does next.
            LOG.error("stream thread failed ({}); shutting the client down", e.toString());
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });

        // Runs on SIGTERM/SIGINT and on the System.exit below. Ends the JVM with halt() so that a
        // signal-triggered shutdown reports exitCode (0 after a clean close) instead of 128+signal.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            double dropped = droppedRecords(streams);
            // LEAVE_GROUP (KIP-1153): the stream threads' consumers leave the group on close, so a
            // restart gets its partitions at once instead of after the session timeout.
            boolean closed = streams.close(CloseOptions.timeout(CLOSE_TIMEOUT)
                    .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP));
            if (!closed) {
                System.err.println("kafka-streams peer: close did not finish within " + CLOSE_TIMEOUT);
                exitCode.compareAndSet(0, 3);
            }
            if (settings.stateDirIsTemporary && closed) {
                deleteTree(settings.stateDir);
            }
            System.err.printf("kafka-streams peer: stopped; unusable input records skipped: %d,"
                    + " late records dropped by Kafka Streams in open tasks: %.0f%n",
                    BadRecords.count(), dropped);
            System.out.flush();
            System.err.flush();
            Runtime.getRuntime().halt(exitCode.get());
        }, "peer-shutdown"));

        streams.start();

        try {
            failed.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("kafka-streams peer: Kafka Streams entered ERROR state, exiting");
        exitCode.set(1);
        System.exit(1);
    }

    /**
     * Sum of the task-level dropped-records-total metric over the tasks currently open. Keyless and
     * unusable records never reach Kafka Streams' aggregation (the topology filters them out), so
     * what remains counted here are readings that arrived after their window had closed.
     */
    static double droppedRecords(KafkaStreams streams) {
        double total = 0;
        for (Metric m : streams.metrics().values()) {
            MetricName n = m.metricName();
            if (n.name().equals("dropped-records-total") && n.group().equals("stream-task-metrics")) {
                Object v = m.metricValue();
                if (v instanceof Number) {
                    total += ((Number) v).doubleValue();
                }
            }
        }
        return total;
    }

    private static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? fallback : v.trim();
    }

    private static long longEnv(String name, long fallback, long min) {
        String v = env(name, null);
        if (v == null) {
            return fallback;
        }
        long n;
        try {
            n = Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new ConfigException(name + " must be an integer, got " + v);
        }
        if (n < min) {
            throw new ConfigException(name + " must be at least " + min + ", got " + n);
        }
        return n;
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // Best effort: a leftover file in a temporary directory is harmless.
                }
            });
        } catch (IOException ignored) {
            // Best effort, as above.
        }
    }
}
