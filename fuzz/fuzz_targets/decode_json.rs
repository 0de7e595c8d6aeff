//! JSON records: any bytes decode to a record or an error, never a panic, and a record's event
//! time lies within `max_event_time_skew` of processing time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_config::{EventTimeSkew, Format};
use weir_operators::Decoder;

#[path = "source.rs"]
mod source;
use source::{source, NOW};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(&source(Format::Json, pick), vec!["kwh".into(), "v".into()]).unwrap();
    d.set_processing_time(NOW);
    let skew = EventTimeSkew::default();
    if let Ok(r) = d.decode(payload, Some(b"key"), Some(NOW)) {
        assert!(r.ts_ms <= NOW + skew.future.as_millis() as i64);
        assert!(r.ts_ms >= NOW - skew.past.as_millis() as i64);
        assert_eq!(r.values.len(), 2);
    }
});
