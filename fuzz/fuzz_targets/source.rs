//! The source both decoder targets read with: the first input byte picks the timestamp format and
//! whether key and time come from fields.

use weir_config::{EventTimeSkew, Format, SourceConfig, TimestampFormat};

pub const NOW: i64 = 1_764_547_200_000;

pub fn source(format: Format, pick: u8) -> SourceConfig {
    let timestamp_format = [
        TimestampFormat::UnixMs,
        TimestampFormat::UnixS,
        TimestampFormat::Rfc3339,
    ][pick as usize % 3];
    SourceConfig {
        topics: vec!["t".into()],
        format,
        columns: vec!["meter_id".into(), "ts".into(), "kwh".into(), "v".into()],
        key_field: (format == Format::Csv || pick & 4 == 0).then(|| "meter_id".into()),
        timestamp_field: (pick & 8 == 0).then(|| "ts".into()),
        timestamp_format,
        max_event_time_skew: EventTimeSkew::default(),
    }
}
