//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` with cargo-fuzz on nightly Rust (libFuzzer).
//! A short run of every target is part of `cargo xtask test` where nightly Rust is installed.

use crate::{cache_dir, run, workspace_root};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const TARGETS: &[&str] = &[
    "decode_json",
    "decode_csv",
    "changelog",
    "checkpoint",
    "window",
    "job_loader",
];

/// How long each target runs.
pub enum Budget {
    Seconds(u64),
    Runs(u64),
}

fn nightly_present() -> bool {
    Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cargo_fuzz_present() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every target (or `only`) for `budget`. The short run (`optional`: part of `cargo xtask
/// test`) only reads the committed corpus (`fuzz/corpus/<target>`) and puts new inputs in a
/// scratch directory; the long run adds them to the corpus and minimises it (`cargo fuzz cmin`),
/// to be committed. Without nightly Rust, the short run says so and passes.
pub fn run_targets(budget: &Budget, only: Option<&str>, optional: bool) -> Result<(), String> {
    if !nightly_present() {
        let why = "nightly Rust is not installed (`rustup toolchain install nightly`)";
        if optional {
            println!("fuzz: skipped: {why}");
            return Ok(());
        }
        return Err(format!("fuzz: {why}"));
    }
    if !cargo_fuzz_present() {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let root = workspace_root();
    let target_dir = cache_dir().join("fuzz-target");
    let scratch = std::env::temp_dir().join(format!("weir-fuzz-{}", std::process::id()));
    for target in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        let corpus: PathBuf = root.join("fuzz/corpus").join(target);
        let new_inputs = scratch.join(target);
        std::fs::create_dir_all(&new_inputs).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        let limit = match budget {
            Budget::Seconds(s) => format!("-max_total_time={s}"),
            Budget::Runs(n) => format!("-runs={n}"),
        };
        println!("fuzz: {target} ({limit})");
        let started = std::time::Instant::now();
        // libFuzzer reports every new input on stderr: kept in a log, shown when it fails.
        let log = scratch.join(format!("{target}.log"));
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let status = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", "--target-dir"])
            .arg(&target_dir)
            .arg(target)
            .args(if optional {
                vec![new_inputs.clone(), corpus.clone()]
            } else {
                vec![corpus.clone()]
            })
            .args([
                "--",
                &limit,
                "-rss_limit_mb=2048",
                "-max_len=4096",
                "-print_final_stats=1",
            ])
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .status()
            .map_err(|e| format!("could not start cargo fuzz: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            eprintln!("{text}");
            return Err(format!(
                "fuzz target {target} failed ({status}); the input is saved under fuzz/artifacts/{target}/"
            ));
        }
        let stat = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map_or("?".to_string(), |v| v.trim().to_string())
        };
        println!(
            "fuzz: {target}: {} executions, 0 crashes, {:.0?} (with the build), peak RSS {} MB",
            stat("number_of_executed_units"),
            started.elapsed(),
            stat("peak_rss_mb")
        );
        if !optional {
            let minimised = Command::new("cargo")
                .current_dir(root.join("fuzz"))
                .args(["+nightly", "fuzz", "cmin", "--target-dir"])
                .arg(&target_dir)
                .arg(target)
                .arg(&corpus)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("could not start cargo fuzz cmin: {e}"))?;
            let files = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
            println!(
                "fuzz: {target}: corpus minimised ({minimised}): {files} inputs in {}",
                corpus.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `cargo xtask fuzz [TARGET] [--seconds N | --runs N]`.
pub fn command(args: &[&str]) -> Result<(), String> {
    let mut budget = Budget::Runs(1_000_000);
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--seconds" | "--runs" => {
                let n: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{a} takes a number"))?;
                budget = if *a == "--seconds" {
                    Budget::Seconds(n)
                } else {
                    Budget::Runs(n)
                };
            }
            t if TARGETS.contains(&t) => only = Some(t),
            other => {
                return Err(format!(
                    "fuzz: unknown argument {other:?}; targets: {}",
                    TARGETS.join(", ")
                ))
            }
        }
    }
    run_targets(&budget, only, false)
}
