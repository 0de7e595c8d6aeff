//! The job loader: any text is a job or a list of `FILE:LINE:COL` errors, never a panic, and a
//! structural error search that ends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match weir_config::parse_job("fuzz.toml", text, &|v| (v == "SET").then(|| "x".into())) {
        Ok(job) => {
            let _ = job.plan();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.line >= 1 && e.col >= 1);
            }
        }
    }
});
