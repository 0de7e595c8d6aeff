package dev.weir.peer.ks;

import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Process-wide tally of input records that were skipped because they could not be used
 * (unparseable value, missing or mistyped field, or no key). The first few are logged with their
 * reason, after that only every {@value #LOG_EVERY}th, so a topic full of garbage cannot flood the log.
 */
public final class BadRecords {
    private static final Logger LOG = LoggerFactory.getLogger(BadRecords.class);
    private static final long LOG_FIRST = 10;
    private static final long LOG_EVERY = 100_000;
    private static final AtomicLong COUNT = new AtomicLong();

    private BadRecords() {}

    /** Counts one skipped record and maybe logs why it was skipped. */
    public static void skip(String topic, String reason) {
        long n = COUNT.incrementAndGet();
        if (n <= LOG_FIRST || n % LOG_EVERY == 0) {
            LOG.warn("skipping input record #{} from topic {}: {}", n, topic, reason);
        }
    }

    public static long count() {
        return COUNT.get();
    }
}
