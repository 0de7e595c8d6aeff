//! CSV records: any bytes decode to a record or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_config::{EventTimeSkew, Format, SourceConfig, TimestampFormat};
use weir_operators::Decoder;

const NOW: i64 = 1_764_547_200_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let ts_format = [TimestampFormat::UnixMs, TimestampFormat::UnixS, TimestampFormat::Rfc3339]
        [pick as usize % 3];
    let source = SourceConfig {
        topics: vec!["t".into()],
        format: Format::Csv,
        columns: vec!["meter_id".into(), "ts".into(), "kwh".into(), "v".into()],
        key_field: Some("meter_id".into()),
        timestamp_field: (pick & 4 == 0).then(|| "ts".into()),
        timestamp_format: ts_format,
        max_event_time_skew: EventTimeSkew::default(),
    };
    let mut d = Decoder::new(&source, vec!["kwh".into(), "v".into()]).unwrap();
    d.set_processing_time(NOW);
    if let Ok(r) = d.decode(payload, None, Some(NOW)) {
        assert_eq!(r.values.len(), 2);
    }
});
