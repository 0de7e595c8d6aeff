//! `weir demo`: zero set-up, prints hourly averages and verifies them.

use std::process::Command;

#[test]
fn mock_demo_prints_hourly_averages_and_verifies_them() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "demo",
            "--duration",
            "12s",
            "--meters",
            "10",
            "--hours",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("meter-") && l.contains("avg"))
            .count()
            >= 30,
        "{stdout}"
    );
    assert!(stdout.contains("verified 30 windows"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("verified 30 windows")),
        "the verdict is the last line:\n{stdout}"
    );
    // A successful run is quiet: no librdkafka or weir warning or error, on either stream.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let noisy: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(
        noisy.is_empty(),
        "a successful demo printed:\n{}",
        noisy.join("\n")
    );
}

#[test]
fn every_command_is_in_the_help_and_a_missing_drill_scenario_is_a_clear_error() {
    {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["drill", "x.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "2: the drill could not run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("x.toml:1:1: cannot read"), "{err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["run", "validate", "describe", "demo", "drill"] {
        assert!(text.contains(cmd), "{text}");
    }
}
