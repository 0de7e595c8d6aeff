package dev.weir.peer.ks;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Event time from the already deserialized {@link Reading}'s {@code ts}; the Kafka record
 * timestamp is ignored.
 *
 * <p>A record whose value did not deserialize carries no event time. It gets the partition's
 * current stream time (or 0 before the partition has any), which neither advances stream time nor
 * makes Kafka Streams log it as a negative-timestamp drop; the topology then filters it out.
 */
public final class ReadingTimestampExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
        Object value = record.value();
        if (value instanceof Reading) {
            return ((Reading) value).ts;
        }
        return Math.max(partitionTime, 0L);
    }
}
