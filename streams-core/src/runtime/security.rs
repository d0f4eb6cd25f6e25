//! Connection security at run time: the client context every client of the runtime is created with, which
//! turns librdkafka's TLS and SASL failures into [`StreamsError::Connection`] errors naming the broker and the
//! setting to check, and keeps secrets out of every message it passes on.
//!
//! librdkafka reports a failed TLS handshake or SASL authentication through the client's error callback and
//! then retries the connection forever; nothing fails on its own. The runtime therefore checks the connection
//! when it starts (see `TopicManager::check_connection`), and a stream thread whose consumer is refused its
//! certificate or credentials later stops with the error instead of retrying silently.

use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use crate::error::{ConnectionFailure, StreamsError};
use crate::runtime::config::{ClientKind, StreamsConfig};

/// Removes the values of secret properties from text that may echo them (librdkafka's error strings and log
/// lines). Values shorter than [`Redactor::MIN_LEN`] characters are not searched for: replacing every occurrence
/// of one or two characters would make messages unreadable without protecting anything.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub(crate) const MIN_LEN: usize = 4;

    pub(crate) fn new(config: &StreamsConfig) -> Self {
        let mut secrets = Vec::new();
        for value in config.secret_values() {
            // An inline PEM key could be echoed a line at a time: search for each line of its body too.
            if value.contains('\n') {
                for line in value.lines().map(str::trim) {
                    if line.len() >= 16 && !line.starts_with("-----") {
                        secrets.push(line.to_string());
                    }
                }
            }
            if value.len() >= Self::MIN_LEN {
                secrets.push(value);
            }
        }
        // Longest first, so a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }
}

type FatalHook = Arc<dyn Fn(StreamsError) + Send + Sync>;

/// The context of every client the runtime creates: librdkafka's log lines go to `tracing` (target
/// `librdkafka`) without secrets, and TLS and SASL failures are classified, logged at error level with the
/// setting to check, and kept for [`StreamsClientContext::take_failure`].
pub(crate) struct StreamsClientContext {
    client: String,
    bootstrap: String,
    /// The client's SASL mechanism, which decides the settings an authentication failure points to.
    mechanism: Option<String>,
    redactor: Redactor,
    failure: Mutex<Option<StreamsError>>,
    /// librdkafka's last description of a failed connection (its `FAIL` log lines).
    last_disconnect: Mutex<Option<String>>,
    on_fatal: Option<FatalHook>,
}

impl StreamsClientContext {
    /// A context for a client of `kind`, described by `client` in log lines (e.g. "admin client").
    pub(crate) fn new(config: &StreamsConfig, kind: ClientKind, client: impl Into<String>) -> Self {
        StreamsClientContext {
            client: client.into(),
            bootstrap: config.bootstrap_servers.clone(),
            mechanism: config.client_properties(kind).remove("sasl.mechanisms"),
            redactor: Redactor::new(config),
            failure: Mutex::new(None),
            last_disconnect: Mutex::new(None),
            on_fatal: None,
        }
    }

    /// Also calls `hook` with the error when the broker refuses the certificate or the credentials: failures
    /// that retrying cannot fix.
    pub(crate) fn on_fatal(mut self, hook: impl Fn(StreamsError) + Send + Sync + 'static) -> Self {
        self.on_fatal = Some(Arc::new(hook));
        self
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// librdkafka's last description of a failed connection, without secrets.
    pub(crate) fn last_disconnect(&self) -> Option<String> {
        self.last_disconnect.lock().ok().and_then(|d| d.clone())
    }

    /// The last TLS or SASL failure reported since the last call.
    pub(crate) fn take_failure(&self) -> Option<StreamsError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// Classifies an error librdkafka reported; returns the connection error it stands for, if it is one.
    pub(crate) fn report(&self, error: &KafkaError, reason: &str) -> Option<StreamsError> {
        let reason = self.redactor.scrub(reason);
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            // The end of a partition, reported to a consumer asking for it (a restore consumer): news, not trouble.
            tracing::debug!(client = %self.client, "{reason}");
            return None;
        }
        let classified = code.and_then(|c| classify(c, &reason, self.mechanism.as_deref()));
        let Some((failure, setting)) = classified else {
            tracing::warn!(client = %self.client, error = %self.redactor.scrub(&error.to_string()), "{reason}");
            return None;
        };
        self.record(failure, setting, reason)
    }

    /// Logs a classified failure, keeps it for [`StreamsClientContext::take_failure`], and returns it when it
    /// is one retrying cannot fix (after calling the fatal hook).
    fn record(
        &self,
        failure: ConnectionFailure,
        setting: &'static str,
        reason: String,
    ) -> Option<StreamsError> {
        let broker = broker_of(&reason).unwrap_or_else(|| self.bootstrap.clone());
        tracing::error!(client = %self.client, %broker, check = setting, "{reason}");
        let make = || StreamsError::Connection {
            failure,
            broker: broker.clone(),
            setting: setting.to_string(),
            detail: reason.clone(),
        };
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(make());
        }
        let fatal = matches!(
            failure,
            ConnectionFailure::Certificate | ConnectionFailure::Authentication
        );
        if fatal {
            if let Some(hook) = &self.on_fatal {
                hook(make());
            }
            return Some(make());
        }
        None
    }
}

impl ClientContext for StreamsClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(&self.redactor, &self.client, level, fac, log_message);
        if fac == "FAIL" {
            let message = self.redactor.scrub(log_message);
            // With TLS 1.3 a broker refuses the client certificate after the handshake: librdkafka sees an
            // alert on the first read and reports a transport failure, not a TLS error.
            let lower = message.to_ascii_lowercase();
            if lower.contains("alert")
                && (lower.contains("certificate") || lower.contains("unknown ca"))
            {
                self.record(ConnectionFailure::Tls, CLIENT_CERTIFICATE, message.clone());
            }
            if let Ok(mut d) = self.last_disconnect.lock() {
                *d = Some(message);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason);
    }
}

impl ConsumerContext for StreamsClientContext {}

impl ProducerContext for StreamsClientContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Sends one librdkafka log line to `tracing`, without secrets.
pub(crate) fn forward_log(
    redactor: &Redactor,
    client: &str,
    level: RDKafkaLogLevel,
    fac: &str,
    message: &str,
) {
    let message = redactor.scrub(message);
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", client, fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", client, fac, "{message}"),
    }
}

const CLIENT_CERTIFICATE: &str = "ssl.certificate.location and ssl.key.location (or ssl.certificate.pem and \
                                  ssl.key.pem): the broker refused the client certificate, or wants one";

/// What a librdkafka error says about the connection, and the settings to check; `None` for errors that are
/// not about TLS or SASL (librdkafka retries those). `mechanism` is the client's SASL mechanism.
pub(crate) fn classify(
    code: RDKafkaErrorCode,
    reason: &str,
    mechanism: Option<&str>,
) -> Option<(ConnectionFailure, &'static str)> {
    let r = reason.to_ascii_lowercase();
    let auth = |setting| Some((ConnectionFailure::Authentication, setting));
    match code {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::UnsupportedSASLMechanism => {
            if code == RDKafkaErrorCode::UnsupportedSASLMechanism
                || r.contains("unsupported sasl mechanism")
                || r.contains("mechanism handshake failed")
                || r.contains("not supported by broker")
            {
                auth("sasl.mechanism (the broker does not offer it, or closed the connection when asked)")
            } else if mechanism == Some("OAUTHBEARER")
                || r.contains("oauthbearer")
                || r.contains("oidc")
            {
                auth(
                    "sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret, \
                     sasl.oauthbearer.token.endpoint.url and sasl.oauthbearer.scope (and that the broker accepts \
                     the token's principal)",
                )
            } else {
                auth("sasl.username and sasl.password (and sasl.mechanism)")
            }
        }
        RDKafkaErrorCode::SSL => Some(
            if r.contains("certificate verify failed") || r.contains("could not be verified") {
                if r.contains("hostname mismatch") || r.contains("ip address mismatch") {
                    (
                        ConnectionFailure::Certificate,
                        "the broker address against the names in its certificate, or \
                         ssl.endpoint.identification.algorithm",
                    )
                } else {
                    (
                        ConnectionFailure::Certificate,
                        "ssl.ca.location (or ssl.ca.pem): the CA that signed the broker's certificate",
                    )
                }
            } else if r.contains("alert") {
                (ConnectionFailure::Tls, CLIENT_CERTIFICATE)
            } else if r.contains("ssl.key")
                || r.contains("private key")
                || r.contains("bad decrypt")
            {
                (
                    ConnectionFailure::Tls,
                    "ssl.key.location or ssl.key.pem, and ssl.key.password",
                )
            } else if r.contains("wrong version number") || r.contains("packet length too long") {
                (
                    ConnectionFailure::Tls,
                    "security.protocol (the broker's listener does not speak TLS)",
                )
            } else {
                (
                    ConnectionFailure::Tls,
                    "security.protocol and the ssl.* settings",
                )
            },
        ),
        _ => None,
    }
}

/// The broker address at the start of a librdkafka error string (`ssl://127.0.0.1:9093/1: ...`).
pub(crate) fn broker_of(reason: &str) -> Option<String> {
    let (_, rest) = reason.split_once("://")?;
    let end = rest.find(['/', ':', ' '].as_slice()).and_then(|i| {
        // host:port: skip the port's colon.
        if rest[i..].starts_with(':') {
            rest[i + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map(|j| i + 1 + j)
        } else {
            Some(i)
        }
    })?;
    let addr = &rest[..end];
    (!addr.is_empty() && addr.contains(':')).then(|| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the warnings and errors logged while it is the subscriber.
    #[derive(Default)]
    struct Alarms(std::sync::atomic::AtomicUsize);

    impl tracing::Subscriber for Alarms {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() <= tracing::Level::WARN {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Defect: every restore consumer reaching the end of a changelog partition logged a warning (librdkafka
    /// reports the end through the error callback to a consumer that asked for it).
    #[test]
    fn the_end_of_a_partition_is_not_a_warning() {
        let config = StreamsConfig::new("eof-app", "127.0.0.1:9");
        let ctx =
            StreamsClientContext::new(&config, ClientKind::RestoreConsumer, "restore consumer");
        let alarms = std::sync::Arc::new(Alarms::default());
        tracing::subscriber::with_default(alarms.clone(), || {
            let eof = KafkaError::Global(RDKafkaErrorCode::PartitionEOF);
            assert!(ctx.report(&eof, "Fetch reached end of partition").is_none());
        });
        assert_eq!(alarms.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        // A real failure is still one.
        tracing::subscriber::with_default(alarms.clone(), || {
            let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
            ctx.report(&down, "1/1 brokers are down");
        });
        assert_eq!(alarms.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(ctx.take_failure().is_none());
    }

    #[test]
    fn broker_addresses_are_read_from_librdkafka_reasons() {
        assert_eq!(
            broker_of("ssl://127.0.0.1:40123/bootstrap: SSL handshake failed: x").as_deref(),
            Some("127.0.0.1:40123")
        );
        assert_eq!(
            broker_of("sasl_ssl://broker-1.example.com:9096/2: SASL authentication error")
                .as_deref(),
            Some("broker-1.example.com:9096")
        );
        assert_eq!(broker_of("1/1 brokers are down"), None);
    }

    #[test]
    fn tls_and_sasl_failures_name_the_setting_to_check() {
        let (f, s) = classify(
            RDKafkaErrorCode::SSL,
            "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate \
             verify failed: broker certificate could not be verified",
            None,
        )
        .unwrap();
        assert_eq!(f, ConnectionFailure::Certificate);
        assert!(s.contains("ssl.ca.location"), "{s}");
        let (f, s) = classify(
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://h:1/1: SASL authentication error: Authentication failed during authentication due to \
             invalid credentials with SASL mechanism SCRAM-SHA-256",
            Some("SCRAM-SHA-256"),
        )
        .unwrap();
        assert_eq!(f, ConnectionFailure::Authentication);
        assert!(
            s.contains("sasl.username") && s.contains("sasl.password"),
            "{s}"
        );
        let (_, s) = classify(
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://h:1/bootstrap: SASL authentication error: SASL Authentication failed.",
            Some("OAUTHBEARER"),
        )
        .unwrap();
        assert!(s.contains("sasl.oauthbearer.client.id"), "{s}");
        let (_, s) = classify(
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://h:1/bootstrap: SASL PLAIN mechanism handshake failed: Local: Broker transport failure: \
             broker's supported mechanisms: (n/a)",
            Some("PLAIN"),
        )
        .unwrap();
        assert!(s.starts_with("sasl.mechanism"), "{s}");
        assert!(classify(
            RDKafkaErrorCode::AllBrokersDown,
            "1/1 brokers are down",
            None
        )
        .is_none());
    }

    #[test]
    fn secrets_are_scrubbed_from_text() {
        let mut c = StreamsConfig::new("app", "b:1");
        c.set("sasl.password", "Pa55-w0rd-XYZ").unwrap();
        c.set("producer.ssl.key.password", "keypass-123").unwrap();
        c.set(
            "ssl.key.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let r = Redactor::new(&c);
        let text = r.scrub(
            "bad value Pa55-w0rd-XYZ and keypass-123; line MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww",
        );
        assert!(
            !text.contains("Pa55") && !text.contains("keypass") && !text.contains("MIIFHD"),
            "{text}"
        );
        assert_eq!(text.matches("[redacted]").count(), 3, "{text}");
    }
}
