//! Kafka client errors as a user can act on them: authentication and TLS failures name the listener
//! and the mechanism, authorization failures the resource and the operation the job's principal
//! needs, and configuration errors the property but never its value (rust-rdkafka's own message
//! quotes the value, which may be a password).

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::sync::Mutex;
use weir_config::Job;

/// A client context that keeps the first error that no retry will cure (authentication, TLS), so
/// that a call which only times out can say why.
#[derive(Default)]
pub struct Watched {
    hopeless: Mutex<Option<String>>,
}

impl Watched {
    /// The authentication or TLS failure seen so far, if any.
    pub fn hopeless(&self) -> Option<String> {
        self.hopeless.lock().unwrap().clone()
    }
}

/// Errors that mean the client's settings, not the network, are wrong.
pub fn is_hopeless(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::SSL
        )
    )
}

impl ClientContext for Watched {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_hopeless(error.rdkafka_error_code()) {
            self.hopeless
                .lock()
                .unwrap()
                .get_or_insert_with(|| reason.to_string());
        } else {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Watched {}

/// An authentication or TLS failure reported by librdkafka (`reason`, e.g. `sasl_ssl://host:port/
/// bootstrap: SASL authentication error: ...`), said with the job's protocol and mechanism.
pub fn explain_hopeless(job: &Job, reason: &str) -> String {
    let prop = |k: &str| job.kafka.properties.get(k).map(String::as_str);
    let protocol = prop("security.protocol").unwrap_or("plaintext");
    let (listener, detail) = reason.split_once(": ").unwrap_or(("the broker", reason));
    let listener = listener.split('/').take(3).collect::<Vec<_>>().join("/");
    if protocol.to_ascii_lowercase().starts_with("sasl") {
        let mechanism = prop("sasl.mechanism")
            .or(prop("sasl.mechanisms"))
            .unwrap_or("GSSAPI");
        format!(
            "authentication failed at the Kafka listener {listener} ({protocol}, SASL mechanism {mechanism}): {detail}; check sasl.username and sasl.password in [kafka.properties]"
        )
    } else {
        format!(
            "the TLS connection to the Kafka listener {listener} ({protocol}) failed: {detail}; check the ssl.* settings in [kafka.properties]"
        )
    }
}

/// What a principal lacks when the broker answers `code`, for `what` (e.g. `Topic:orders`).
/// A missing ACL (no retry, nor a new client, helps).
pub fn is_authorization(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

pub fn explain_authorization(
    code: RDKafkaErrorCode,
    what: &str,
    operation: &str,
) -> Option<String> {
    let resource = match code {
        RDKafkaErrorCode::TopicAuthorizationFailed => what.to_string(),
        RDKafkaErrorCode::GroupAuthorizationFailed => what.to_string(),
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => what.to_string(),
        RDKafkaErrorCode::ClusterAuthorizationFailed => "Cluster:kafka-cluster".to_string(),
        _ => return None,
    };
    Some(format!(
        "not authorized: the job's principal needs {operation} on {resource} (Kafka answered {code})"
    ))
}

/// A client that could not be created: the property and librdkafka's reason, never the value.
pub fn creation_error(what: &str, e: KafkaError) -> anyhow::Error {
    match e {
        KafkaError::ClientConfig(_, desc, key, _value) => {
            anyhow::anyhow!("{what}: kafka property {key:?}: {desc}")
        }
        other => anyhow::anyhow!("{what}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;

    #[test]
    fn a_rejected_property_is_named_without_its_value() {
        let e = ClientConfig::new()
            .set("ssl.key.password", "hunter2-ssl")
            .set("no.such.property", "hunter2-ssl")
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .expect("an unknown property is refused");
        assert!(
            format!("{e}").contains("hunter2-ssl"),
            "the library quotes it"
        );
        let said = format!("{:#}", creation_error("creating the producer", e));
        assert!(!said.contains("hunter2"), "{said}");
        assert!(said.contains("no.such.property"), "{said}");
    }

    #[test]
    fn this_build_has_tls_sasl_and_every_codec() {
        // librdkafka lists what it was built with; a missing one means a production cluster (or a
        // topic written with that codec) is out of reach.
        let c = ClientConfig::new()
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "u")
            .set("sasl.password", "p")
            .set("compression.type", "zstd")
            .create::<rdkafka::producer::BaseProducer>();
        assert!(c.is_ok(), "SASL_SSL with SCRAM and zstd: {:?}", c.err());
        let oidc = ClientConfig::new()
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("sasl.oauthbearer.method", "oidc")
            .set("sasl.oauthbearer.client.id", "x")
            .set("sasl.oauthbearer.client.secret", "y")
            .set(
                "sasl.oauthbearer.token.endpoint.url",
                "https://127.0.0.1:1/token",
            )
            .create::<rdkafka::producer::BaseProducer>();
        assert!(oidc.is_ok(), "OAUTHBEARER with OIDC: {:?}", oidc.err());
        for codec in ["snappy", "lz4", "gzip"] {
            let c = ClientConfig::new()
                .set("compression.type", codec)
                .create::<rdkafka::producer::BaseProducer>();
            assert!(c.is_ok(), "{codec}: {:?}", c.err());
        }
    }

    #[test]
    fn authentication_failures_name_the_listener_and_the_mechanism() {
        let job = weir_config::parse_job(
            "j.toml",
            "name = \"j\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n[source]\ntopics = [\"t\"]\n[sink]\ntopic = \"o\"\n",
            &|_| None,
        )
        .unwrap();
        let said = explain_hopeless(&job, "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512");
        assert!(said.contains("sasl_ssl://127.0.0.1:9093"), "{said}");
        assert!(
            said.contains("SASL_SSL, SASL mechanism SCRAM-SHA-512"),
            "{said}"
        );
        assert!(!said.contains("/bootstrap"), "{said}");
    }
}
