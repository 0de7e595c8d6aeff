//! Secrets never reach any output: a run's log, `/metrics`, `/readyz`, `weir describe`,
//! `weir validate`, and the error of a client that cannot be created. The secrets are the values
//! of properties librdkafka marks sensitive and values that came from `${VAR}`.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;
use weir_engine::generator::GeneratorSpec;

const OAUTH: &str = "principal=weir clientSecret=hunter2-oauth";
const KEY_PASSWORD: &str = "hunter2-key-password";
const PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIhunter2pemhunter2pem\n-----END PRIVATE KEY-----\n";

fn with_properties(job: &std::path::Path, lines: &str) {
    let mut text = std::fs::read_to_string(job).unwrap();
    text.push_str("\n[kafka.properties]\n");
    text.push_str(lines);
    std::fs::write(job, text).unwrap();
}

fn output(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_TEST_KEY_PASSWORD", KEY_PASSWORD)
        .env("WEIR_LOG", "debug")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in ["hunter2-oauth", KEY_PASSWORD, "hunter2pem"] {
        assert!(!text.contains(secret), "{what} printed {secret:?}:\n{text}");
    }
}

#[test]
fn real_no_secret_in_any_output_of_a_run_describe_or_validate() {
    let s = setup(
        "secrets",
        2,
        GeneratorSpec {
            meters: 5,
            hours: 2,
            ..GeneratorSpec::default()
        },
    );
    let job = s.job(&[]);
    // Plaintext listener: the SASL and TLS settings are carried but not used.
    with_properties(
        &job,
        &format!(
            "\"sasl.oauthbearer.config\" = {OAUTH:?}\n\"ssl.key.password\" = \"${{WEIR_TEST_KEY_PASSWORD}}\"\n\"ssl.key.pem\" = {PEM:?}\n"
        ),
    );
    produce_readings(&s.bootstrap, &s.input, &s.readings);
    let worker = Worker::start_with(
        &job,
        &s.bootstrap,
        &s.state("a"),
        &[
            ("WEIR_TEST_KEY_PASSWORD", KEY_PASSWORD),
            ("WEIR_LOG", "debug"),
        ],
    );
    s.await_results_equal_oracle(&oracle(&s.readings), &[&worker]);
    assert_no_secret("/metrics", &worker.metrics());
    let readyz = http_get(&worker.http, "/readyz")
        .map(|r| r.1)
        .unwrap_or_default();
    assert_no_secret("/readyz", &readyz);
    let log = worker.log.clone();
    assert_eq!(worker.stop(), 0);
    assert_no_secret("the run's log", &std::fs::read_to_string(log).unwrap());

    let (ok, describe) = output(&["describe", job.to_str().unwrap()]);
    assert!(ok, "{describe}");
    assert!(
        describe.contains("sasl.oauthbearer.config") && describe.contains("ssl.key.pem"),
        "describe lists the properties: {describe}"
    );
    assert_no_secret("weir describe", &describe);
    let (ok, validate) = output(&["validate", job.to_str().unwrap()]);
    assert!(ok, "{validate}");
    assert_no_secret("weir validate", &validate);
}

#[test]
fn real_no_secret_in_the_error_of_a_client_that_cannot_be_created() {
    let s = setup("secrets-refused", 1, GeneratorSpec::default());
    let job = s.job(&[]);
    // A key librdkafka cannot load, and a property value it refuses.
    with_properties(
        &job,
        &format!(
            "\"security.protocol\" = \"SSL\"\n\"ssl.key.pem\" = {PEM:?}\n\"ssl.key.password\" = \"${{WEIR_TEST_KEY_PASSWORD}}\"\n"
        ),
    );
    let state = s.state("a");
    let run = |job: &std::path::Path| {
        output(&[
            "run",
            job.to_str().unwrap(),
            "--brokers",
            &s.bootstrap,
            "--state-dir",
            state.to_str().unwrap(),
        ])
    };
    let started = std::time::Instant::now();
    let (ok, out) = run(&job);
    assert!(!ok, "a key that cannot be loaded fails the run: {out}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        out.contains("ssl.key"),
        "the error names the property: {out}"
    );
    assert_no_secret("weir run", &out);

    let job = s.job(&[]);
    with_properties(
        &job,
        &format!("\"ssl.key.password\" = \"${{WEIR_TEST_KEY_PASSWORD}}\"\n\"enable.sasl.oauthbearer.unsecure.jwt\" = \"{KEY_PASSWORD}\"\n"),
    );
    let (ok, out) = run(&job);
    assert!(!ok, "a refused value fails the run: {out}");
    assert!(
        out.contains("enable.sasl.oauthbearer.unsecure.jwt"),
        "the error names the property: {out}"
    );
    assert_no_secret("weir run", &out);
}
