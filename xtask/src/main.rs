//! Project tasks, run as `cargo xtask <task>`.
//!
//! This crate has no dependencies at all, so it builds in seconds on a fresh machine, before the
//! C/C++ of RocksDB and librdkafka. It installs what the build needs, fetches and runs a real
//! Apache Kafka broker for the tests, and wraps the two commands of the README.
//!
//! # Layout
//! - `main.rs`: the command line and the `test` / `demo` tasks;
//! - `prereq.rs`: checks and installs system prerequisites (libclang, Java, Maven);
//! - `libclang.rs`: finds a libclang the way bindgen does (and its builtin headers);
//! - `kafka.rs`: fetch, configure, start, wait for, and stop KRaft broker processes;
//! - `secure.rs`: the secured broker's certificates, TLS/SASL listeners, SCRAM users and ACLs;
//! - `fuzz.rs`: the fuzz targets of `fuzz/` (cargo-fuzz, nightly Rust);
//! - `wire.rs`: a minimal Kafka Metadata request, to know when a broker really serves clients.

mod fuzz;
mod kafka;
mod libclang;
mod prereq;
mod secure;
mod wire;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo [ARGS...]            install what is missing, then run `weir demo` (ARGS go to weir demo)
  test [-- CARGO_TEST_ARGS]  install what is missing, start Kafka, run every test and the benchmark
                            smoke run, stop Kafka
  bench [--records N] [--meters M] [--partitions P] [--rounds R] [--only RUNS]
                            the side-by-side benchmark (release build, its own broker); results in
                            bench/results/latest.json and bench/results/<date>.json
  bench --smoke             the same with 20,000 records and the dev build: every runner works and
                            verifies
  fuzz [TARGET] [--runs N | --seconds N]
                            the fuzz targets (nightly Rust; cargo-fuzz installed when missing),
                            1,000,000 runs each by default; `test` runs each for 5 s
  kafka start [--brokers 1|3] [--secure]
                            --secure: also TLS (client certificates) and SASL_SSL (SCRAM,
                            OAUTHBEARER) listeners under ACLs; see xtask/src/secure.rs
  kafka stop
  kafka status
  prereq                    install missing system packages (libclang-dev, Java, Maven, Prometheus)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["demo", rest @ ..] => demo(rest),
        ["test", rest @ ..] => test(rest),
        ["bench", rest @ ..] => bench(rest),
        ["fuzz", rest @ ..] => fuzz::command(rest),
        ["kafka", "start", rest @ ..] => {
            parse_start(rest).and_then(|(n, secure)| kafka::start(n, secure).map(|_| ()))
        }
        ["kafka", "stop"] => kafka::stop(),
        ["kafka", "status"] => kafka::status(),
        ["prereq"] => prereq::ensure_build_prereqs()
            .and_then(|_| prereq::ensure_java_and_maven())
            .and_then(|_| prereq::ensure_test_tools()),
        ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown task {:?}\n\n{USAGE}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_start(args: &[&str]) -> Result<(usize, bool), String> {
    let secure = args.contains(&"--secure");
    let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "--secure").collect();
    match rest.as_slice() {
        [] | ["--brokers", "1"] => Ok((1, secure)),
        ["--brokers", "3"] => Ok((3, secure)),
        _ => Err(format!(
            "kafka start takes `--brokers 1`, `--brokers 3` and `--secure`, got {args:?}"
        )),
    }
}

/// The workspace root (the parent of this crate's directory).
/// Read at run time (`cargo run` sets CARGO_MANIFEST_DIR): the compiled-in path is the clone the
/// binary was first built in, which a shared target directory reuses for every clone.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where fetched and compiled artefacts are kept between runs: outside the clone, so that a fresh
/// clone on the same machine reuses them. `WEIR_CACHE_DIR` overrides it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("weir")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed with {status}", cmd.get_program()))
    }
}

fn demo(args: &[&str]) -> Result<(), String> {
    prereq::ensure_build_prereqs()?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "weir",
            "--bin",
            "weir",
            "--",
            "demo",
        ])
        .args(args))
}

/// Installs what is missing, starts a real single-node Kafka, runs the whole test suite against it,
/// and stops Kafka whatever the tests did.
fn test(args: &[&str]) -> Result<(), String> {
    let extra: Vec<&str> = match args {
        ["--", rest @ ..] => rest.to_vec(),
        rest => rest.to_vec(),
    };
    prereq::ensure_build_prereqs()?;
    prereq::ensure_java_and_maven()?;
    prereq::ensure_test_tools()?;
    // Build first: a compile error should not cost a broker start, and the build's minutes
    // should not count against test timeouts.
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    // With the secured listeners: the TLS, SCRAM and ACL tests use them.
    let bootstrap = kafka::start(1, true)?;
    // One test at a time: each real-broker test runs several worker processes and a JVM shares the
    // same two cores; parallel tests starve each other's session heartbeats and commit cycles.
    let mut args: Vec<&str> = extra.clone();
    if !args.contains(&"--") {
        args.push("--");
    }
    args.push("--test-threads=1");
    let result = run_tests(
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&args)
            .env("WEIR_TEST_BOOTSTRAP", &bootstrap),
    );
    // The benchmarks' short versions, so that none rots: each micro-benchmark once, and the
    // side-by-side comparison on 20,000 records.
    let smoke = if extra.is_empty() {
        run(cargo().args([
            "test",
            "-p",
            "weir-operators",
            "-p",
            "weir-state",
            "--benches",
        ]))
        .and_then(|_| run_bench(&bootstrap, true, &[]))
    } else {
        Ok(())
    };
    let stopped = kafka::stop();
    // The fuzz targets' short run: a few seconds each, where nightly Rust is installed.
    let fuzzed = if extra.is_empty() {
        fuzz::run_targets(&fuzz::Budget::Seconds(5), None, true)
    } else {
        Ok(())
    };
    result?;
    smoke?;
    stopped?;
    fuzzed
}

/// `cargo xtask bench`: builds weir and the peers, starts a broker, runs the comparison.
fn bench(args: &[&str]) -> Result<(), String> {
    let smoke = args.contains(&"--smoke");
    let rest: Vec<&str> = args.iter().copied().filter(|a| *a != "--smoke").collect();
    prereq::ensure_build_prereqs()?;
    prereq::ensure_java_and_maven()?;
    let bootstrap = kafka::start(1, false)?;
    let result = run_bench(&bootstrap, smoke, &rest);
    let stopped = kafka::stop();
    result?;
    stopped
}

/// Builds what the benchmark runs (weir and the runner; the Kafka Streams jar; the Quix venv) and
/// runs `weir-bench` against `bootstrap`. The smoke version uses the dev build and 20,000 records.
fn run_bench(bootstrap: &str, smoke: bool, args: &[&str]) -> Result<(), String> {
    prereq::ensure_python_venv()?;
    let root = workspace_root();
    let profile = if smoke { "debug" } else { "release" };
    let mut build = cargo();
    build.args(["build", "-p", "weir", "-p", "weir-bench"]);
    if !smoke {
        build.arg("--release");
    }
    run(&mut build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(profile);
    let peers = root.join("benches/peers");
    run(Command::new("mvn")
        .args(["-q", "-f"])
        .arg(peers.join("kafka-streams/pom.xml"))
        .args(["package", "-DskipTests"]))?;
    run(&mut Command::new(peers.join("quix/setup.sh")))?;
    let out = if smoke {
        std::env::temp_dir().join("weir-bench-smoke.json")
    } else {
        root.join("bench/results/latest.json")
    };
    let mut cmd = Command::new(target.join("weir-bench"));
    cmd.arg("--bootstrap")
        .arg(bootstrap)
        .arg("--weir")
        .arg(target.join("weir"))
        .arg("--job")
        .arg(root.join("jobs/meter-hourly-average.toml"))
        .arg("--kafka-streams-jar")
        .arg(peers.join("kafka-streams/target/weir-peer-kafka-streams.jar"))
        .arg("--quix-run")
        .arg(peers.join("quix/run.sh"))
        .arg("--out")
        .arg(&out);
    if smoke {
        cmd.args([
            "--records",
            "20000",
            "--meters",
            "1000",
            "--timeout-s",
            "180",
            "--rounds",
            "1",
            "--latency-seconds",
            "3",
        ]);
    }
    cmd.args(args);
    run(&mut cmd)?;
    if !smoke {
        // A dated copy beside latest.json.
        let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
        let date = text
            .split("\"date\": \"")
            .nth(1)
            .and_then(|r| r.get(..10))
            .unwrap_or("undated")
            .to_string();
        std::fs::write(root.join(format!("bench/results/{date}.json")), text)
            .map_err(|e| e.to_string())?;
    }
    println!("bench: results in {}", out.display());
    Ok(())
}

/// Runs `cargo test`, echoing its output, and ends with one line summing every test binary's
/// result (`tests: N passed, N failed`), so the last line says what ran.
fn run_tests(cmd: &mut Command) -> Result<(), String> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start cargo test: {e}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match label {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}
