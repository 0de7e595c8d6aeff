//! System prerequisites: what the build and the test broker need, installed when missing.

use std::process::{Command, Stdio};

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A libclang that bindgen will load, with its builtin headers (see `libclang.rs`).
fn libclang_present() -> bool {
    match crate::libclang::find(&crate::libclang::Search::from_env()) {
        crate::libclang::Found::Usable(_) => true,
        crate::libclang::Found::NoHeaders(lib) => {
            eprintln!(
                "xtask: {} has no builtin headers (clang/*/include/stddef.h) beside it",
                lib.display()
            );
            false
        }
        crate::libclang::Found::Missing => false,
    }
}

/// The major version `java -version` reports (`openjdk version "17.0.15"`, `"1.8.0_392"` is 8).
pub fn java_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

fn java_version() -> Option<u32> {
    let out = Command::new("java").arg("-version").output().ok()?;
    // `java -version` writes to stderr.
    java_major(&String::from_utf8_lossy(&out.stderr))
}

/// Debian's `python3` has the `venv` module but not `ensurepip` (that is `python3-venv`), so
/// `python3 -m venv --help` works and creating a venv fails: ask for what venv creation imports.
fn python_venv_works() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !has_command("apt-get") {
        return Err(format!("missing {packages:?} and apt-get is not available: install them with your package manager"));
    }
    let sudo = if is_root() { "" } else { "sudo " };
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    let script = format!(
        "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq {}",
        packages.join(" ")
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install {} failed ({status}); install it by hand and retry",
            packages.join(" ")
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// libclang for `librocksdb-sys`' bindgen; a C/C++ toolchain, make and perl for librdkafka and RocksDB.
pub fn ensure_build_prereqs() -> Result<(), String> {
    let mut missing = Vec::new();
    if !libclang_present() {
        missing.push("libclang-dev");
    }
    for (cmd, pkg) in [
        ("cc", "build-essential"),
        ("c++", "g++"),
        ("make", "make"),
        // OpenSSL's build (vendored, for librdkafka) runs its Perl Configure script.
        ("perl", "perl"),
        // librdkafka is built with CMake (its configure script misses the static libcurl).
        ("cmake", "cmake"),
    ] {
        if !has_command(cmd) {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        apt_install(&missing)
    }
}

/// Java 17+ runs the broker; Maven fetches it from Maven Central.
pub fn ensure_java_and_maven() -> Result<(), String> {
    let mut missing = Vec::new();
    // Kafka 4 brokers need Java 17 or later: an older `java` on the PATH is as good as none.
    match java_version() {
        Some(v) if v >= 17 => {}
        found => {
            if let Some(v) = found {
                eprintln!("xtask: java {v} is too old for Kafka 4 (17 or later)");
            }
            missing.push("openjdk-17-jre-headless");
        }
    }
    if !has_command("mvn") {
        missing.push("maven");
    }
    if !missing.is_empty() {
        apt_install(&missing).map_err(|e| {
            format!("{e}\nthe test broker needs Java 17+ (`java`) and Maven (`mvn`)")
        })?;
    }
    Ok(())
}

/// Prometheus and promtool (Debian package `prometheus`): the metrics tests scrape a worker with a
/// real Prometheus server and lint `/metrics` with `promtool check metrics`.
pub fn ensure_test_tools() -> Result<(), String> {
    if !(has_command("prometheus") && has_command("promtool")) {
        apt_install(&["--no-install-recommends", "prometheus"])?;
    }
    // The secured test broker's certificates.
    if !has_command("openssl") {
        apt_install(&["openssl"])?;
    }
    Ok(())
}

/// Python 3 with `venv` (Debian splits it into `python3-venv`): the Quix Streams peer of the
/// benchmark lives in a virtualenv.
pub fn ensure_python_venv() -> Result<(), String> {
    if python_venv_works() {
        return Ok(());
    }
    apt_install(&["python3", "python3-venv"])
}

#[cfg(test)]
mod tests {
    use super::java_major;

    #[test]
    fn java_versions() {
        let v17 = "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment";
        assert_eq!(java_major(v17), Some(17));
        assert_eq!(java_major("openjdk version \"1.8.0_392\""), Some(8));
        assert_eq!(java_major("openjdk version \"21\" 2023-09-19"), Some(21));
        assert_eq!(java_major("openjdk version \"11.0.2-ea\""), Some(11));
        assert_eq!(java_major("garbage"), None);
    }
}
