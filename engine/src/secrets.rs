//! Secrets are never printed. Once a job is loaded its secret values are registered here (values
//! that came from `${VAR}`, and those of properties librdkafka marks sensitive: see
//! `weir_config::secret`); weir's log writer, its printed errors, its panic messages, `/readyz`
//! reasons and dead-letter headers pass through [`redact`].

use std::io::Write;
use std::sync::RwLock;
use weir_config::Job;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds the job's secrets to those redacted from every output of this process.
pub fn register(job: &Job) {
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for s in job.secrets() {
        if !all.contains(&s) {
            all.push(s);
        }
    }
}

/// `text` without any registered secret.
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if secrets.is_empty() {
        return text.to_string();
    }
    weir_config::redact(text, &secrets)
}

/// The log's writer: standard error, each event redacted (the formatter writes an event at once).
#[derive(Clone, Copy, Default)]
pub struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Panic messages are redacted too (a panic may quote a value it failed on).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if SECRETS.read().map(|s| s.is_empty()).unwrap_or(false) {
            return default(info);
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        eprintln!(
            "thread '{}' panicked{at}:\n{}",
            thread.name().unwrap_or("<unnamed>"),
            redact(&message)
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted_everywhere_they_appear() {
        let job = weir_config::parse_job(
            "j.toml",
            "name = \"j\"\n[kafka.properties]\n\"sasl.password\" = \"hunter2-sasl\"\n\"ssl.key.password\" = \"${KEYPW}\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n",
            &|v| (v == "KEYPW").then(|| "hunter2-key".to_string()),
        )
        .unwrap();
        register(&job);
        let said = redact("sasl.password hunter2-sasl; key hunter2-key; \"hunter2-key\"");
        assert!(!said.contains("hunter2"), "{said}");
        let mut w = RedactedStderr;
        assert_eq!(w.write(b"hunter2-sasl\n").unwrap(), 13);
    }
}
