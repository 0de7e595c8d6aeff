//! Window arithmetic on any i64 event time and any window the validator admits: no overflow, no
//! endless iteration, every window returned holds the time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_operators::Windowing;

/// The longest duration a job may name (`weir_config::Duration::MAX_MS`).
const MAX_MS: i64 = 36_500 * 86_400_000;

fuzz_target!(|input: (i64, u64, u64, u64, i64)| {
    let (ts, size, advance, grace, stream_time) = input;
    let size_ms = 1 + (size % MAX_MS as u64) as i64;
    // Hopping windows: advance divides size, at most 1,000 windows per record (validation).
    let per_record = 1 + (advance % 1000) as i64;
    let advance_ms = if size_ms % per_record == 0 {
        size_ms / per_record
    } else {
        size_ms
    };
    let w = Windowing {
        size_ms,
        advance_ms,
        grace_ms: (grace % MAX_MS as u64) as i64,
    };
    let mut n = 0;
    for start in w.windows_for(ts) {
        n += 1;
        assert!(n <= 1000, "more windows than size / advance");
        assert!(i128::from(start) <= i128::from(ts));
        assert!(i128::from(ts) < i128::from(start) + i128::from(size_ms));
        let _ = w.is_closed(start, stream_time);
    }
    let _ = w.closed_before(stream_time);
});
