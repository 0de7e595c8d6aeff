//! What a restore reads from the changelog: the `weir.offsets` header and store entries of every
//! kind of window. Any bytes are accepted or refused, never a panic; an accepted header
//! re-encodes to the same offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use weir_config::WindowKind;
use weir_operators::check_state_entry;
use weir_state::{decode_input_offsets, encode_input_offsets, written_by_committed_cycle};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let split = (pick as usize).min(rest.len());
    let (key, value) = rest.split_at(split);
    if let Some(offsets) = decode_input_offsets(rest) {
        let again = encode_input_offsets(offsets.iter().map(|(t, o)| (t.as_str(), *o)));
        assert_eq!(decode_input_offsets(again.as_bytes()), Some(offsets));
    }
    let committed: BTreeMap<String, i64> = [("in".to_string(), 100)].into();
    let _ = written_by_committed_cycle(Some(rest), &committed);
    for kind in [
        WindowKind::Tumbling,
        WindowKind::Hopping,
        WindowKind::Session,
    ] {
        let _ = check_state_entry(kind, key, value);
    }
});
