package dev.weir.peer.ks;

/**
 * One meter reading as decoded from the input topic's JSON value.
 *
 * <p>{@code meterId} is informational only (grouping uses the record key) and may be null when the
 * JSON object has no {@code meter_id} field.
 */
public final class Reading {
    public final String meterId;
    /** Event time in unix milliseconds. */
    public final long ts;
    public final double kwh;

    public Reading(String meterId, long ts, double kwh) {
        this.meterId = meterId;
        this.ts = ts;
        this.kwh = kwh;
    }

    @Override
    public String toString() {
        return "Reading{meterId=" + meterId + ", ts=" + ts + ", kwh=" + kwh + "}";
    }
}
