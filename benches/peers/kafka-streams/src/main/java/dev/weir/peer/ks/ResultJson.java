package dev.weir.peer.ks;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/**
 * Encodes one closed window's result as the output JSON value:
 * {@code {"meter_id", "window_start_ms", "window_end_ms", "avg", "count", "min", "max"}}.
 */
public final class ResultJson {
    private static final JsonFactory JSON = JsonFactory.builder().build();

    private ResultJson() {}

    public static byte[] encode(String meterId, long windowStartMs, long windowEndMs, HourlyAgg agg) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(160);
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartObject();
            g.writeStringField("meter_id", meterId);
            g.writeNumberField("window_start_ms", windowStartMs);
            g.writeNumberField("window_end_ms", windowEndMs);
            g.writeNumberField("avg", agg.avg());
            g.writeNumberField("count", agg.count);
            g.writeNumberField("min", agg.min);
            g.writeNumberField("max", agg.max);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }
}
