//! Against the secured listeners of the test broker (`cargo xtask kafka start --secure`, see
//! xtask/src/secure.rs): the flagship job under exactly-once over SASL_SSL/SCRAM with ACLs, and
//! over TLS with a client certificate; a wrong password and a missing ACL fail fast with an error
//! that says what is wrong; no secret appears in any output.

use crate::harness::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_engine::generator::GeneratorSpec;

/// What `client.properties` of the secure broker says.
struct SecureBroker(BTreeMap<String, String>);

impl SecureBroker {
    fn get() -> SecureBroker {
        let file = repo_root().join(".weir-kafka/secure/client.properties");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "no secure test broker ({} missing): run the tests with `cargo xtask test`, or start one with `cargo xtask kafka start --secure`",
                file.display()
            )
        });
        SecureBroker(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn get_value(&self, key: &str) -> &str {
        &self.0[key]
    }
}

/// Topics and a job named after the ACL prefixes: `secure-in-*` readable, `secure-out-*`
/// writable, `secure-job-*` (the job's group, transactional ids and internal topics) owned.
struct SecureSetup {
    plain: String,
    name: String,
    input: String,
    output: String,
    dir: tempfile::TempDir,
    readings: Vec<weir_engine::generator::Reading>,
}

fn secure_setup(meters: u32, hours: u32) -> SecureSetup {
    let kafka = Kafka::real();
    let name = unique("secure-job");
    let input = format!("secure-in-{name}");
    let output = format!("secure-out-{name}");
    kafka.create_topic(&input, 2);
    kafka.create_topic(&output, 2);
    SecureSetup {
        plain: kafka.bootstrap(),
        name,
        input,
        output,
        dir: tempfile::tempdir().unwrap(),
        readings: GeneratorSpec {
            meters,
            hours,
            ..GeneratorSpec::default()
        }
        .readings()
        .collect(),
    }
}

impl SecureSetup {
    /// The flagship job under `guarantee`, with `properties` as its `[kafka.properties]`.
    fn job(&self, guarantee: &str, properties: &[(&str, &str)]) -> PathBuf {
        let path = write_job(
            self.dir.path(),
            &self.name,
            &self.input,
            &self.output,
            &[(
                "guarantee = \"at_least_once\"",
                &format!("guarantee = \"{guarantee}\""),
            )],
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n[kafka.properties]\n");
        for (k, v) in properties {
            text.push_str(&format!("{k:?} = {v:?}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn scram(b: &SecureBroker, user_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".into()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        ("sasl.username", b.get_value(user_key).into()),
        ("sasl.password", "${WEIR_TEST_SASL_PASSWORD}".into()),
        ("ssl.ca.location", b.get_value("ca").into()),
    ]
}

fn refs<'a>(props: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    props.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Every known secret that must never be printed, and where it was found.
fn leaks(text: &str, secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| text.contains(*s))
        .map(|s| format!("{s:?} printed"))
        .collect()
}

fn weir(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .envs(env.iter().copied())
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // At most a minute: a process that keeps retrying a hopeless connection fails the test.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status.and_then(|s| s.code()), text, started.elapsed())
}

/// `weir run` of `job` against `bootstrap` with its own state directory, as [`weir`] reports it.
fn weir_run(
    s: &SecureSetup,
    job: &Path,
    bootstrap: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, String, Duration) {
    let state = s.dir.path().join("state");
    weir(
        &[
            "run",
            job.to_str().unwrap(),
            "--brokers",
            bootstrap,
            "--state-dir",
            state.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ],
        env,
    )
}

fn run_to_oracle(s: &SecureSetup, job: &Path, bootstrap: &str, env: &[(&str, &str)]) -> String {
    produce_readings(&s.plain, &s.input, &s.readings);
    let worker = Worker::start_with(job, bootstrap, &s.dir.path().join("state"), env);
    let expected = oracle(&s.readings);
    // Read back over the plaintext listener (read_committed), every emission checked.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let outputs = parse_outputs(&read_to_end(&s.plain, &s.output));
        let problems = compare_emissions(&outputs, &expected);
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "results differ from the oracle ({} problems, first {:?})\n{}",
            problems.len(),
            &problems[..problems.len().min(3)],
            worker.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut seen = worker.metrics();
    seen.push_str(
        &http_get(&worker.http, "/readyz")
            .map(|r| r.1)
            .unwrap_or_default(),
    );
    let log = worker.log.clone();
    assert_eq!(worker.stop(), 0);
    seen + &std::fs::read_to_string(&log).unwrap()
}

#[test]
fn real_secure_flagship_job_under_exactly_once_over_sasl_ssl_scram_with_acls() {
    let b = SecureBroker::get();
    let s = secure_setup(20, 3);
    let props = scram(&b, "job_user");
    let job = s.job("exactly_once", &refs(&props));
    let password = b.get_value("job_password");
    let env = [("WEIR_TEST_SASL_PASSWORD", password)];
    let seen = run_to_oracle(&s, &job, b.get_value("sasl_bootstrap"), &env);
    assert!(
        seen.contains("exactly-once"),
        "the run was transactional: {seen}"
    );
    // Neither the run (logs, /metrics, /readyz) nor describe nor validate print the password.
    let (code, describe, _) = weir(&["describe", job.to_str().unwrap()], &env);
    assert_eq!(code, Some(0), "{describe}");
    assert!(describe.contains("sasl.password"), "{describe}");
    let (code, validate, _) = weir(&["validate", job.to_str().unwrap()], &env);
    assert_eq!(code, Some(0), "{validate}");
    let all = format!("{seen}{describe}{validate}");
    assert_eq!(leaks(&all, &[password]), Vec::<String>::new());
}

#[test]
fn real_secure_job_over_tls_with_a_client_certificate() {
    let b = SecureBroker::get();
    let s = secure_setup(10, 2);
    let job = s.job(
        "at_least_once",
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", b.get_value("ca")),
            ("ssl.certificate.location", b.get_value("client_cert")),
            ("ssl.key.location", b.get_value("client_key")),
        ],
    );
    let key = std::fs::read_to_string(b.get_value("client_key")).unwrap();
    let key_body: String = key.lines().nth(1).unwrap().to_string();
    let seen = run_to_oracle(&s, &job, b.get_value("ssl_bootstrap"), &[]);
    assert_eq!(leaks(&seen, &[&key_body]), Vec::<String>::new());
}

#[test]
fn real_secure_wrong_password_fails_fast_naming_the_listener_and_mechanism() {
    let b = SecureBroker::get();
    let s = secure_setup(2, 1);
    let props = scram(&b, "job_user");
    let job = s.job("exactly_once", &refs(&props));
    let wrong = "not-the-password-5f1e";
    let bootstrap = b.get_value("sasl_bootstrap");
    let (code, out, took) = weir_run(&s, &job, bootstrap, &[("WEIR_TEST_SASL_PASSWORD", wrong)]);
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {out}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {out}");
    for needed in ["authentication", "SCRAM-SHA-512", bootstrap] {
        assert!(
            out.to_lowercase().contains(&needed.to_lowercase()),
            "the error names {needed:?}: {out}"
        );
    }
    assert_eq!(leaks(&out, &[wrong]), Vec::<String>::new(), "{out}");
}

#[test]
fn real_secure_missing_create_acl_names_the_topic_and_the_operation() {
    let b = SecureBroker::get();
    let s = secure_setup(2, 1);
    let props = scram(&b, "nocreate_user");
    let job = s.job("at_least_once", &refs(&props));
    let password = b.get_value("nocreate_password");
    let (code, out, _) = weir_run(
        &s,
        &job,
        b.get_value("sasl_bootstrap"),
        &[("WEIR_TEST_SASL_PASSWORD", password)],
    );
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {out}");
    let changelog = format!("{}-hourly_avg-changelog", s.name);
    assert!(
        out.contains("CREATE") && out.contains(&changelog),
        "the error names the operation and {changelog}: {out}"
    );
    assert_eq!(leaks(&out, &[password]), Vec::<String>::new(), "{out}");
}

#[test]
fn real_secure_job_over_sasl_ssl_oauthbearer() {
    // The test broker takes unsecured tokens (its default validator): the principal is the
    // token's subject, under the same ACLs as the SCRAM user.
    let b = SecureBroker::get();
    let s = secure_setup(10, 2);
    let job = s.job(
        "at_least_once",
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=weir-job"),
            ("ssl.ca.location", b.get_value("ca")),
        ],
    );
    run_to_oracle(&s, &job, b.get_value("sasl_bootstrap"), &[]);
}
