package dev.weir.peer.ks;

import java.time.Duration;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The hourly meter aggregate: drop readings with kwh &lt; 0, group by record key, 1-hour tumbling
 * event-time windows (epoch aligned) with 5 minutes of grace, count/sum/min/max per window, and
 * one result per meter and window once the window has closed ({@code onUpdate} false), or the
 * window's latest value each time the record cache forwards it ({@code onUpdate} true: no
 * suppression, Kafka Streams' default emit strategy, like weir's {@code emit = "on_update"}).
 */
public final class MeterTopology {
    public static final Duration WINDOW_SIZE = Duration.ofHours(1);
    public static final Duration GRACE = Duration.ofMinutes(5);
    public static final String STORE_NAME = "hourly-agg";

    private MeterTopology() {}

    public static Topology build(String inputTopic, String outputTopic, boolean onUpdate) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(
                        inputTopic,
                        Consumed.with(Serdes.String(), new ReadingSerde())
                                .withTimestampExtractor(new ReadingTimestampExtractor())
                                .withName("readings"))
                .filter(MeterTopology::usable, Named.as("drop-unusable-and-negative"))
                .groupByKey(Grouped.with(Serdes.String(), new ReadingSerde()))
                .windowedBy(TimeWindows.ofSizeAndGrace(WINDOW_SIZE, GRACE))
                .emitStrategy(onUpdate ? EmitStrategy.onWindowUpdate() : EmitStrategy.onWindowClose())
                .aggregate(
                        HourlyAgg::empty,
                        (meter, reading, agg) -> agg.add(reading.kwh),
                        Named.as("hourly-aggregate"),
                        Materialized.<String, HourlyAgg, WindowStore<Bytes, byte[]>>as(STORE_NAME)
                                .withKeySerde(Serdes.String())
                                .withValueSerde(new HourlyAgg.AggSerde()))
                .toStream(Named.as("closed-windows"))
                .map(
                        (window, agg) -> KeyValue.pair(
                                window.key(),
                                ResultJson.encode(
                                        window.key(), window.window().start(), window.window().end(), agg)),
                        Named.as("to-result-json"))
                .to(outputTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("results"));
        return builder.build();
    }

    /**
     * Keeps records that have a key and a decoded value with kwh &gt;= 0. A missing value was
     * already counted by the deserializer; a missing key is counted here.
     */
    private static boolean usable(String meter, Reading reading) {
        if (reading == null) {
            return false;
        }
        if (meter == null) {
            BadRecords.skip("input", "record has no key");
            return false;
        }
        return reading.kwh >= 0;
    }
}
