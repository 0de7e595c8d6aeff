//! The job files users submit: every shipped job validates; every broken job in `tests/jobs-broken/`
//! yields the `FILE:LINE:COL: message` written in its `# expect:` lines; `describe` shows the topology.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    crate::harness::repo_root()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn weir(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env_remove("WEIR_SURELY_UNSET_BROKERS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_shipped_job_file_validates() {
    let files = toml_files(&root().join("jobs"));
    assert!(files.len() >= 4);
    let args: Vec<String> = std::iter::once("validate".to_string())
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = weir(&args);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn every_broken_job_file_names_file_line_and_column_of_each_problem() {
    let files = toml_files(&root().join("tests/jobs-broken"));
    assert!(files.len() >= 8);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let path = file.display().to_string();
        let (code, out) = weir(&["validate", &path]);
        assert_eq!(code, 1, "{path}: {out}");
        assert!(
            !out.contains("panicked") && !out.contains("RUST_BACKTRACE"),
            "{out}"
        );
        for want in &expected {
            let (position, message) =
                want.split_at(want.find(": ").map(|i| i + 2).unwrap_or(want.len()));
            let prefix = format!("{path}:{position}");
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(message.trim())),
                "{path}: expected a line starting {prefix:?} containing {message:?}, got:\n{out}"
            );
        }
        assert_eq!(
            out.lines().filter(|l| l.starts_with(&path)).count(),
            expected.len(),
            "{path}: every error, and only those:\n{out}"
        );
    }
}

#[test]
fn validate_reports_every_file_and_fails_if_any_is_broken() {
    let good = root()
        .join("jobs/meter-hourly-average.toml")
        .display()
        .to_string();
    let bad = root()
        .join("tests/jobs-broken/misspelled-key.toml")
        .display()
        .to_string();
    let (code, out) = weir(&["validate", &good, &bad]);
    assert_eq!(code, 1);
    assert!(
        out.contains("misspelled-key.toml:5:1:") && !out.contains("meter-hourly-average.toml:"),
        "{out}"
    );
}

#[test]
fn describe_shows_the_flagship_topology_as_text_and_dot() {
    let flagship = root()
        .join("jobs/meter-hourly-average.toml")
        .display()
        .to_string();
    let (code, text) = weir(&["describe", &flagship]);
    assert_eq!(code, 0, "{text}");
    for part in [
        "consumer group  meter-hourly-average",
        "source  meter-readings",
        "-> window tumbling 1h",
        "store hourly_avg (changelog meter-hourly-average-hourly_avg-changelog",
        "sink    kafka topic meter-hourly-averages",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    let (code, dot) = weir(&["describe", "--format", "dot", &flagship]);
    assert_eq!(code, 0);
    assert!(
        dot.starts_with("digraph") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
}

#[test]
fn validate_refuses_devices_fifos_and_huge_files_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("job.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "# padding\n".repeat(200_000)).unwrap();
    for (path, want) in [
        (
            "/dev/zero".to_string(),
            "/dev/zero:1:1: cannot read: not a regular file",
        ),
        (
            fifo.display().to_string(),
            "job.fifo:1:1: cannot read: not a regular file",
        ),
        (
            huge.display().to_string(),
            "huge.toml:1:1: cannot read: larger than 1024 KiB",
        ),
    ] {
        // A FIFO with no writer would block a reader for ever: the test would hang, not fail.
        let (code, out) = weir(&["validate", &path]);
        assert_eq!(code, 1, "{path}: {out}");
        assert!(out.contains(want), "{path}: {out}");
    }
}
