//! `weir drill` on the real broker: the quick version of every shipped scenario is verified, and a
//! deliberately broken run (a worker that drops a result) is caught.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

struct Outcome {
    code: i32,
    report: serde_json::Value,
    stdout: String,
}

/// Runs `weir drill jobs/drills/<scenario>.toml --quick` with `extra` arguments.
fn drill(scenario: &str, extra: &[&str]) -> Outcome {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("drill")
        .arg(root.join("jobs/drills").join(format!("{scenario}.toml")))
        .args(["--quick", "--brokers", &Kafka::real().bootstrap()])
        .arg("--report")
        .arg(&report)
        .args(extra)
        .env("WEIR_LOG", "warn")
        .output()
        .expect("running weir drill");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = match std::fs::read_to_string(&report) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(_) => panic!("no report from weir drill {scenario}:\n{stdout}\n{stderr}"),
    };
    Outcome {
        code: out.status.code().unwrap_or(-1),
        report,
        stdout: format!("{stdout}\n{stderr}"),
    }
}

fn assert_verified(scenario: &str, extra: &[&str]) -> Outcome {
    let o = drill(scenario, extra);
    assert_eq!(o.report["verified"], true, "{scenario}:\n{}", o.stdout);
    assert_eq!(o.code, 0, "{scenario}:\n{}", o.stdout);
    assert_eq!(o.report["windows_missing"], 0);
    assert_eq!(o.report["windows_wrong"], 0);
    assert!(o.report["records_in"].as_u64().unwrap() > 0);
    assert!(o.report["windows_expected"].as_u64().unwrap() > 0);
    let faults = o.report["faults"].as_array().unwrap();
    assert!(!faults.is_empty(), "{scenario}: faults were injected");
    for f in faults {
        assert!(
            f["recovery_s"].is_number(),
            "{scenario}: recovery measured for {f}:\n{}",
            o.stdout
        );
    }
    eprintln!("{}", o.stdout);
    o
}

#[test]
fn real_drill_kill_restart_quick_is_verified_exactly_once() {
    let o = assert_verified("kill-restart", &[]);
    assert_eq!(o.report["guarantee"], "exactly_once");
    assert_eq!(o.report["windows_duplicated"], 0);
    assert_eq!(o.report["faults"].as_array().unwrap().len(), 3);
}

#[test]
fn real_drill_rolling_restart_quick_is_verified() {
    assert_verified("rolling-restart", &[]);
}

#[test]
fn real_drill_scale_out_quick_is_verified_and_new_workers_restore_moved_state() {
    let o = assert_verified("scale-out", &[]);
    let restored: u64 = o.report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["restores"].as_u64().unwrap())
        .sum();
    assert!(
        restored > 0,
        "partitions moved to the new workers:\n{}",
        o.stdout
    );
}

#[test]
fn real_drill_crash_without_restart_quick_is_verified_the_survivors_take_over() {
    let o = assert_verified("crash-without-restart", &[]);
    assert_eq!(o.report["windows_duplicated"], 0);
}

#[test]
fn real_drill_corrupted_state_quick_is_verified_and_every_damage_is_detected() {
    let o = assert_verified("corrupted-state", &[]);
    for f in o.report["faults"].as_array().unwrap() {
        assert!(
            f["restores_wiped"].as_u64().unwrap() >= 1,
            "the damaged store was wiped and restored: {f}\n{}",
            o.stdout
        );
    }
}

/// A broker drill on whatever cluster the tests run against: the three-broker cluster when one
/// runs (a bounce), the single CI broker otherwise (a full outage and recovery). Under
/// exactly-once with static membership: no duplicate, every broker back, and no worker exits on
/// its own (a fenced producer or consumer is recovered from, not a stop).
fn assert_broker_drill(scenario: &str) -> Outcome {
    let kafka_dir: PathBuf = repo_root().join(".weir-kafka");
    let o = assert_verified(scenario, &["--kafka-dir", kafka_dir.to_str().unwrap()]);
    assert_eq!(o.report["guarantee"], "exactly_once");
    assert_eq!(o.report["static_membership"], true);
    assert_eq!(o.report["windows_duplicated"], 0, "{}", o.stdout);
    for f in o.report["faults"].as_array().unwrap() {
        if f["kind"] == "broker_restart" {
            assert!(f["broker_back_s"].is_number(), "the broker came back: {f}");
        }
    }
    let exited: Vec<&serde_json::Value> = o.report["worker_exits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["expected"] == false)
        .collect();
    assert!(
        exited.is_empty(),
        "workers exited on their own: {exited:?}\n{}",
        o.stdout
    );
    assert_eq!(o.report["workers_stopped_cleanly"], true, "{}", o.stdout);
    o
}

#[test]
fn real_drill_broker_bounce_quick_restarts_a_broker_of_the_test_cluster_and_is_verified() {
    assert_broker_drill("broker-bounce");
}

#[test]
fn real_drill_an_outage_longer_than_the_transaction_timeout_is_ridden_through_exactly_once() {
    let o = assert_broker_drill("broker-outage");
    let f = &o.report["faults"][0];
    assert!(
        f["broker_back_s"].as_f64().unwrap() > 10.0,
        "the outage outlasted the 10 s transaction timeout: {f}"
    );
}

#[test]
fn real_drill_a_rolling_restart_of_the_brokers_is_verified_exactly_once() {
    let o = assert_broker_drill("broker-rolling-restart");
    assert_eq!(o.report["faults"].as_array().unwrap().len(), 3);
}

/// The soak's short version: its kills and bounces verified, and every worker process's memory
/// and open files sampled (judged only in the full run).
#[test]
fn real_drill_soak_quick_is_verified_and_samples_the_workers_resources() {
    let o = assert_broker_drill("soak");
    let resources = o.report["resources"].as_array().unwrap();
    for slot in 0..2 {
        let r = resources
            .iter()
            .find(|r| r["worker"] == slot)
            .unwrap_or_else(|| panic!("w{slot} sampled: {resources:?}"));
        assert!(r["samples"].as_u64().unwrap() > 100, "{r}");
        assert!(r["rss_peak_mib"].as_f64().unwrap() > 1.0, "{r}");
        assert!(r["rss_growth_pct"].is_number(), "{r}");
        assert!(r["outside_cache_growth_pct"].is_number(), "{r}");
        // The stores' cache is sampled too: the job keeps windows in RocksDB.
        assert!(r["cache_peak_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(
        resources.iter().filter(|r| r["worker"] == 2).count() > 1,
        "the killed worker came back as new processes: {resources:?}"
    );
}

#[test]
fn real_drill_a_worker_that_drops_a_result_makes_the_drill_fail() {
    let o = drill(
        "kill-restart",
        &["--worker-env", "WEIR_FAILPOINT=drop_output:5"],
    );
    assert_eq!(o.report["verified"], false, "{}", o.stdout);
    assert_ne!(o.code, 0);
    assert!(
        o.report["windows_missing"].as_u64().unwrap() >= 1,
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("NOT VERIFIED"));
}

#[test]
fn drill_scenario_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "job = \"x.toml\"\nworkers = 1\n[input]\nmeters = 1\nhours = 1\nrate = 10\nseed = 1\nspeed = 3\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("drill")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:8:1: unknown key `speed`"),
        "{stderr}"
    );
}
