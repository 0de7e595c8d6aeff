package dev.weir.peer.ks;

import java.nio.ByteBuffer;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Running aggregate of one meter's readings in one window: count, sum, min and max of kwh.
 * Instances are mutable; {@link #add} updates in place and returns {@code this}.
 */
public final class HourlyAgg {
    /** Size of the fixed binary encoding: count, sum, min, max as 8 bytes each, big-endian. */
    static final int ENCODED_SIZE = 32;

    public long count;
    public double sum;
    public double min;
    public double max;

    public HourlyAgg(long count, double sum, double min, double max) {
        this.count = count;
        this.sum = sum;
        this.min = min;
        this.max = max;
    }

    /** The aggregate of no readings. */
    public static HourlyAgg empty() {
        return new HourlyAgg(0, 0.0, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY);
    }

    public HourlyAgg add(double kwh) {
        count++;
        sum += kwh;
        if (kwh < min) {
            min = kwh;
        }
        if (kwh > max) {
            max = kwh;
        }
        return this;
    }

    public double avg() {
        return sum / count;
    }

    /** Serde with a fixed 32-byte binary layout, used for the window store and its changelog. */
    public static final class AggSerde implements Serde<HourlyAgg> {
        @Override
        public Serializer<HourlyAgg> serializer() {
            return (topic, a) -> {
                if (a == null) {
                    return null;
                }
                return ByteBuffer.allocate(ENCODED_SIZE)
                        .putLong(a.count)
                        .putDouble(a.sum)
                        .putDouble(a.min)
                        .putDouble(a.max)
                        .array();
            };
        }

        @Override
        public Deserializer<HourlyAgg> deserializer() {
            return (topic, data) -> {
                if (data == null) {
                    return null;
                }
                if (data.length != ENCODED_SIZE) {
                    throw new SerializationException(
                            "aggregate of " + data.length + " bytes, expected " + ENCODED_SIZE);
                }
                ByteBuffer b = ByteBuffer.wrap(data);
                return new HourlyAgg(b.getLong(), b.getDouble(), b.getDouble(), b.getDouble());
            };
        }
    }
}
