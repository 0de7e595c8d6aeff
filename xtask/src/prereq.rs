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

fn libclang_present() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let out = Command::new("sh")
        .args(["-c", "ldconfig -p | grep -q 'libclang.*\\.so'"])
        .status();
    if matches!(out, Ok(s) if s.success()) {
        return true;
    }
    // Debian keeps libclang outside the linker cache.
    std::fs::read_dir("/usr/lib")
        .map(|entries| {
            entries.flatten().any(|e| {
                let lib = e.path().join("lib");
                e.file_name().to_string_lossy().starts_with("llvm-")
                    && std::fs::read_dir(lib)
                        .map(|l| {
                            l.flatten()
                                .any(|f| f.file_name().to_string_lossy().starts_with("libclang"))
                        })
                        .unwrap_or(false)
            })
        })
        .unwrap_or(false)
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
        ("perl", "perl"),
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
    if !has_command("java") {
        missing.push("openjdk-17-jre-headless");
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
    if has_command("prometheus") && has_command("promtool") {
        return Ok(());
    }
    apt_install(&["--no-install-recommends", "prometheus"])
}

/// Python 3 with `venv` (Debian splits it into `python3-venv`): the Quix Streams peer of the
/// benchmark lives in a virtualenv.
pub fn ensure_python_venv() -> Result<(), String> {
    let works = std::process::Command::new("python3")
        .args(["-m", "venv", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    apt_install(&["python3", "python3-venv"])
}
