//! The job files shipped with weir: every job in `jobs/` loads, and every file in
//! `tests/jobs-broken/` gives exactly the `FILE:LINE:COL: message` errors its `# expect:` lines
//! name (each line: a position, and a part of the message).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn every_shipped_job_loads() {
    let files = toml_files(&repo().join("jobs"));
    assert!(files.len() >= 4);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = weir_config::parse_job(&file.display().to_string(), &text, &no_env) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_broken_job_gives_the_errors_it_expects_and_no_others() {
    let files = toml_files(&repo().join("tests/jobs-broken"));
    assert!(files.len() >= 8);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expected.is_empty(), "{} expects nothing", file.display());
        let errors = match weir_config::parse_job("f.toml", &text, &no_env) {
            Ok(_) => panic!("{} loads", file.display()),
            Err(e) => e.0,
        };
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        for want in &expected {
            let (position, message) = want.split_once(": ").unwrap_or((want, ""));
            let prefix = format!("f.toml:{position}: ");
            assert!(
                shown
                    .iter()
                    .any(|l| l.starts_with(&prefix) && l.contains(message.trim())),
                "{}: no error {want:?} among\n{}",
                file.display(),
                shown.join("\n")
            );
        }
        assert_eq!(
            shown.len(),
            expected.len(),
            "{}: every error, and only those:\n{}",
            file.display(),
            shown.join("\n")
        );
    }
}
