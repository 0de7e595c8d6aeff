//! CSV records: any bytes decode to a record or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_config::Format;
use weir_operators::Decoder;

#[path = "source.rs"]
mod source;
use source::{source, NOW};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let mut d = Decoder::new(&source(Format::Csv, pick), vec!["kwh".into(), "v".into()]).unwrap();
    d.set_processing_time(NOW);
    if let Ok(r) = d.decode(payload, None, Some(NOW)) {
        assert_eq!(r.values.len(), 2);
    }
});
