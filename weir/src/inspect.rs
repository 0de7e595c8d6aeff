//! `weir validate` and `weir describe`: job files read, checked and shown, nothing run.

use std::path::PathBuf;
use std::process::ExitCode;
use weir_config::load_job;

pub fn describe(file: &std::path::Path, format: &str, brokers: Option<&str>) -> ExitCode {
    let job = match load_job(file) {
        Ok(j) => {
            weir_engine::secrets::register(&j);
            j
        }
        Err(errors) => {
            println!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match format {
        "text" => {
            let partitions = brokers.and_then(|b| {
                weir_engine::kafka::partition_count(b, &job, &job.source.topics[0])
                    .ok()
                    .flatten()
            });
            print!(
                "{}",
                weir_engine::secrets::redact(&weir_engine::describe::text(&job, partitions))
            );
        }
        "dot" => print!(
            "{}",
            weir_engine::secrets::redact(&weir_engine::describe::dot(&job))
        ),
        other => {
            eprintln!("weir describe: unknown --format {other:?} (text or dot)");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

pub fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        if let Err(errors) = load_job(f) {
            ok = false;
            println!("{errors}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
