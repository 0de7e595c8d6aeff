//! Which configuration values are secret, and how text is cleaned of them before it is shown.
//!
//! A value is secret when it came from the environment through `${VAR}` (a default written in the
//! file is not: the file is no secret), or when it is the value of a librdkafka property that is
//! sensitive (see [`is_sensitive_property`]).

/// The properties librdkafka 2.12 flags `_RK_SENSITIVE` (it redacts them from its own dumps),
/// and the aliases that reach them.
pub const LIBRDKAFKA_SENSITIVE: &[&str] = &[
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// Words that make any property name sensitive, librdkafka's or not (a Java-style
/// `sasl.jaas.config`, a property of a newer librdkafka).
const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "jaas",
    "token",
    "private.key",
    "credential",
];

/// Names the words above would catch but that hold public material: a certificate (not its key),
/// an endpoint's URL.
const NOT_SENSITIVE: &[&str] = &[
    "ssl.certificate.pem",
    "https.ca.pem",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.client.credentials.client.id",
];

/// Whether the value of this librdkafka property must never be shown: librdkafka's sensitive
/// properties, and any name containing `password`, `passphrase`, `secret`, `jaas`, `token`,
/// `private.key` or `credential`, or ending in `.pem` (the public certificates `ssl.certificate.pem`
/// and `https.ca.pem` excepted, as are the token endpoint's URL and the client id).
pub fn is_sensitive_property(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("topic.").unwrap_or(&name);
    if LIBRDKAFKA_SENSITIVE.contains(&name) {
        return true;
    }
    if NOT_SENSITIVE.contains(&name) {
        return false;
    }
    SENSITIVE_WORDS.iter().any(|w| name.contains(w)) || name.ends_with(".pem")
}

/// Secrets shorter than this many characters are not looked for in free text: replacing every `a`
/// of a log line helps no one. Such values are still never printed where weir knows what they are
/// (a sensitive property's value, shown by name).
pub const MIN_REDACTED_CHARS: usize = 4;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// `text` with every occurrence of every secret (of at least [`MIN_REDACTED_CHARS`] characters)
/// replaced by `***`. At each position the longest matching secret wins, so a secret that contains
/// another is replaced whole. A secret is also found in the escaped form `{:?}` and JSON give it
/// (`\"`, `\\`, `\n`).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut needles: Vec<String> = Vec::new();
    for s in secrets {
        if s.chars().count() < MIN_REDACTED_CHARS {
            continue;
        }
        let escaped = format!("{s:?}");
        let escaped = &escaped[1..escaped.len() - 1];
        needles.push(s.clone());
        if escaped != s {
            needles.push(escaped.to_string());
        }
    }
    if needles.is_empty() {
        return text.to_string();
    }
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        for n in &needles {
            if let Some(after) = rest.strip_prefix(n.as_str()) {
                out.push_str(REDACTED);
                rest = after;
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn librdkafka_sensitive_properties_are_sensitive() {
        for p in LIBRDKAFKA_SENSITIVE {
            assert!(is_sensitive_property(p), "{p}");
        }
        assert!(is_sensitive_property("SASL.PASSWORD"));
    }

    #[test]
    fn defensive_patterns_catch_secrets_by_name_but_not_public_material() {
        for p in [
            "sasl.jaas.config",
            "ssl.truststore.password",
            "some.future.token",
            "https.client.key.pem",
            "vendor.api.secret",
            "topic.sasl.password",
        ] {
            assert!(is_sensitive_property(p), "{p}");
        }
        for p in [
            "security.protocol",
            "sasl.mechanism",
            "ssl.certificate.pem",
            "ssl.certificate.location",
            "https.ca.pem",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.oauthbearer.client.id",
            "bootstrap.servers",
            "ssl.keystore.location",
        ] {
            assert!(!is_sensitive_property(p), "{p}");
        }
    }

    #[test]
    fn every_occurrence_of_every_secret_is_replaced_longest_first() {
        let secrets = s(&["hunter2", "hunter2-and-more", "s3cr3t"]);
        assert_eq!(
            redact(
                "a=hunter2 b=hunter2-and-more c=s3cr3ts3cr3t d=hunter",
                &secrets
            ),
            "a=*** b=*** c=****** d=hunter"
        );
    }

    #[test]
    fn short_secrets_are_not_looked_for() {
        // A one-letter password must not make every `x` vanish.
        assert_eq!(
            redact("x marks the spot", &s(&["x", "", "abc"])),
            "x marks the spot"
        );
        assert_eq!(redact("abcd", &s(&["abcd"])), "***");
    }

    #[test]
    fn escaped_forms_are_found_too() {
        let secrets = s(&["pa\"ss\\word"]);
        assert_eq!(redact("raw pa\"ss\\word", &secrets), "raw ***");
        assert_eq!(
            redact(&format!("debug {:?}", "pa\"ss\\word"), &secrets),
            "debug \"***\""
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged_including_multibyte_text() {
        assert_eq!(redact("zählt ✓", &s(&["geheim"])), "zählt ✓");
        assert_eq!(redact("zählt geheim ✓", &s(&["geheim"])), "zählt *** ✓");
    }
}
