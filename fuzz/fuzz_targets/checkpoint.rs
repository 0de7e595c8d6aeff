//! Checkpoint files: any bytes are a checkpoint or a clear error, never a panic or a huge
//! allocation; a decoded checkpoint encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_state::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(cp) = Checkpoint::decode(data) {
        assert_eq!(Checkpoint::decode(&cp.encode()).ok(), Some(cp));
    }
});
