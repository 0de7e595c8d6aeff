package dev.weir.peer.ks;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * Global state restore listener that reports, for every store changelog partition whose
 * restoration completes, one stdout line
 * {@code kafka-streams peer: restored <N> records of <store> partition <P> in <MS> ms}, where N is
 * the total Kafka Streams reports at the end of that partition's restoration and MS the wall time
 * between its start and end callbacks.
 *
 * <p>The callbacks come from whichever threads restore state (stream threads or the state updater),
 * so the start times live in a concurrent map and each line is written and flushed under the
 * {@code System.out} lock. The offset range of each restoration, and any restoration suspended by
 * a rebalance, are reported on stderr.
 */
final class RestoreReporter implements StateRestoreListener {
    private record Key(String store, TopicPartition changelog) {}

    private final Map<Key, Long> startedAtNanos = new ConcurrentHashMap<>();

    @Override
    public void onRestoreStart(TopicPartition changelog, String storeName, long startingOffset, long endingOffset) {
        startedAtNanos.put(new Key(storeName, changelog), System.nanoTime());
        System.err.printf("kafka-streams peer: restoring %s partition %d from %s, offsets %d to %d%n",
                storeName, changelog.partition(), changelog.topic(), startingOffset, endingOffset);
    }

    @Override
    public void onBatchRestored(TopicPartition changelog, String storeName, long batchEndOffset, long numRestored) {
        // Only the per-partition total is reported, at the end.
    }

    @Override
    public void onRestoreEnd(TopicPartition changelog, String storeName, long totalRestored) {
        long end = System.nanoTime();
        Long start = startedAtNanos.remove(new Key(storeName, changelog));
        long ms = start == null ? 0 : (end - start) / 1_000_000;
        String line = "kafka-streams peer: restored " + totalRestored + " records of " + storeName
                + " partition " + changelog.partition() + " in " + ms + " ms";
        synchronized (System.out) {
            System.out.println(line);
            System.out.flush();
        }
    }

    @Override
    public void onRestoreSuspended(TopicPartition changelog, String storeName, long totalRestored) {
        // The task moved away mid-restore; if it comes back, a new start callback begins a new
        // measurement, so the partial one is dropped here.
        startedAtNanos.remove(new Key(storeName, changelog));
        System.err.printf("kafka-streams peer: restoration of %s partition %d suspended after %d records%n",
                storeName, changelog.partition(), totalRestored);
    }
}
