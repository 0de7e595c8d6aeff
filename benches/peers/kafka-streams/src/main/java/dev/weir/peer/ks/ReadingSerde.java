package dev.weir.peer.ks;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * JSON serde for {@link Reading}. The deserializer walks the token stream once and keeps only
 * {@code meter_id}, {@code ts} and {@code kwh}; other fields are skipped.
 *
 * <p>A value that cannot be used (not a JSON object, {@code ts} missing or not a non-negative
 * integer, {@code kwh} missing or not a finite number) deserializes to {@code null} and is counted
 * in {@link BadRecords}; the topology drops null values. A null (tombstone) value also yields null.
 */
public final class ReadingSerde implements Serde<Reading> {
    private static final JsonFactory JSON = JsonFactory.builder().build();

    @Override
    public Serializer<Reading> serializer() {
        return (topic, r) -> r == null ? null : encode(r);
    }

    @Override
    public Deserializer<Reading> deserializer() {
        return ReadingSerde::decodeOrSkip;
    }

    static byte[] encode(Reading r) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(64);
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartObject();
            if (r.meterId != null) {
                g.writeStringField("meter_id", r.meterId);
            }
            g.writeNumberField("ts", r.ts);
            g.writeNumberField("kwh", r.kwh);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    static Reading decodeOrSkip(String topic, byte[] data) {
        if (data == null) {
            BadRecords.skip(topic, "null value");
            return null;
        }
        try {
            return decode(data);
        } catch (JsonProcessingException e) {
            BadRecords.skip(topic, "invalid JSON: " + e.getOriginalMessage());
            return null;
        } catch (IOException | IllegalArgumentException e) {
            BadRecords.skip(topic, e.getMessage());
            return null;
        }
    }

    /** Decodes one reading; throws with a short reason when the value is unusable. */
    static Reading decode(byte[] data) throws IOException {
        try (JsonParser p = JSON.createParser(data)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new IllegalArgumentException("value is not a JSON object");
            }
            String meterId = null;
            long ts = 0;
            double kwh = 0;
            boolean haveTs = false;
            boolean haveKwh = false;
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken v = p.nextToken();
                switch (name) {
                    case "meter_id":
                        if (v == JsonToken.VALUE_STRING) {
                            meterId = p.getText();
                        } else {
                            p.skipChildren();
                        }
                        break;
                    case "ts":
                        if (v != JsonToken.VALUE_NUMBER_INT) {
                            throw new IllegalArgumentException("field ts is not an integer");
                        }
                        ts = p.getLongValue();
                        if (ts < 0) {
                            throw new IllegalArgumentException("field ts is negative");
                        }
                        haveTs = true;
                        break;
                    case "kwh":
                        if (v != JsonToken.VALUE_NUMBER_INT && v != JsonToken.VALUE_NUMBER_FLOAT) {
                            throw new IllegalArgumentException("field kwh is not a number");
                        }
                        kwh = p.getDoubleValue();
                        if (!Double.isFinite(kwh)) {
                            throw new IllegalArgumentException("field kwh is not finite");
                        }
                        haveKwh = true;
                        break;
                    default:
                        p.skipChildren();
                }
            }
            if (t != JsonToken.END_OBJECT) {
                throw new IllegalArgumentException("malformed JSON object");
            }
            if (!haveTs) {
                throw new IllegalArgumentException("field ts is missing");
            }
            if (!haveKwh) {
                throw new IllegalArgumentException("field kwh is missing");
            }
            return new Reading(meterId, ts, kwh);
        }
    }
}
