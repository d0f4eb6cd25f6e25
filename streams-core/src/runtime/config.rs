//! Configuration of a `KafkaStreams` instance: typed fields that also accept Kafka Streams' dotted keys, and
//! librdkafka properties passed through to every client or, with a prefix, to one kind of client.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StreamsError;
use crate::handler::{
    DeadLetterQueue, DeserializationExceptionHandler, LogAndContinue, LogAndFail,
};

/// Delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// Every input record is processed at least once; after a crash, records processed since the last commit
    /// are processed again.
    #[default]
    AtLeastOnce,
}

/// Which clients a passthrough property goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientKind {
    /// The group consumer of each stream thread.
    MainConsumer,
    /// The consumer that restores stores from changelogs.
    RestoreConsumer,
    /// The producer of each stream thread.
    Producer,
    /// The admin client that creates internal topics.
    Admin,
}

impl ClientKind {
    const PREFIXES: [(&'static str, &'static [ClientKind]); 5] = [
        ("main.consumer.", &[ClientKind::MainConsumer]),
        ("restore.consumer.", &[ClientKind::RestoreConsumer]),
        (
            "consumer.",
            &[ClientKind::MainConsumer, ClientKind::RestoreConsumer],
        ),
        ("producer.", &[ClientKind::Producer]),
        ("admin.", &[ClientKind::Admin]),
    ];
}

/// Whether a property holds a secret that must never be printed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("sasl.oauthbearer.config")
        || k.ends_with("ssl.key.pem")
}

/// The configuration of a `KafkaStreams` instance.
///
/// ```
/// use streams_core::runtime::StreamsConfig;
///
/// let mut config = StreamsConfig::new("word-count", "localhost:9092");
/// config.set("num.stream.threads", "2").unwrap();
/// config.set("commit.interval.ms", "1000").unwrap();
/// config.set("sasl.password", "hunter2").unwrap(); // passed to every client, never printed
/// config.set("producer.linger.ms", "5").unwrap(); // producer only
/// assert_eq!(config.num_stream_threads, 2);
/// assert!(!format!("{config:?}").contains("hunter2"));
/// config.validate().unwrap();
/// ```
#[derive(Clone)]
pub struct StreamsConfig {
    /// `application.id`: consumer group, prefix of internal topics and of the state directory.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `num.stream.threads` (default 1).
    pub num_stream_threads: usize,
    /// `commit.interval.ms` (default 30 s, as Kafka Streams under at-least-once).
    pub commit_interval: Duration,
    /// `state.dir` (default `<temp dir>/kafka-streams`).
    pub state_dir: PathBuf,
    /// `statestore.cache.max.bytes`: write-back cache for the whole instance, split over its stores
    /// (default 10 MiB).
    pub cache_max_bytes: usize,
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
    /// `replication.factor` of internal topics (default -1: the broker's default).
    pub replication_factor: i32,
    /// `buffered.records.per.partition`: records queued per partition before it is paused (default 1000).
    pub buffered_records_per_partition: usize,
    /// `poll.ms`: longest a thread blocks waiting for records (default 100 ms).
    pub poll_timeout: Duration,
    /// `rocksdb.memory.bytes`: memory for all RocksDB stores of the instance (default 64 MiB).
    pub rocksdb_memory_bytes: usize,
    /// `application.server`: `host:port` where this instance answers interactive queries.
    pub application_server: Option<String>,
    /// `default.deserialization.exception.handler`: `fail` (default), `continue`, or `dead-letter:<topic>`; or a
    /// handler of your own.
    pub deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    deserialization_handler_name: String,
    /// librdkafka properties by client kind (`None` = every client).
    client_properties: BTreeMap<(Option<ClientKind>, String), String>,
}

impl fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<String, &str> = self
            .client_properties
            .iter()
            .map(|((kind, k), v)| {
                let key = match kind {
                    Some(kind) => format!("{kind:?}:{k}"),
                    None => k.clone(),
                };
                (
                    key,
                    if is_secret_key(k) {
                        "[redacted]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("StreamsConfig")
            .field("application_id", &self.application_id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("num_stream_threads", &self.num_stream_threads)
            .field("commit_interval", &self.commit_interval)
            .field("state_dir", &self.state_dir)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("processing_guarantee", &self.processing_guarantee)
            .field("replication_factor", &self.replication_factor)
            .field(
                "buffered_records_per_partition",
                &self.buffered_records_per_partition,
            )
            .field("poll_timeout", &self.poll_timeout)
            .field("rocksdb_memory_bytes", &self.rocksdb_memory_bytes)
            .field("application_server", &self.application_server)
            .field(
                "deserialization_handler",
                &self.deserialization_handler_name,
            )
            .field("client_properties", &props)
            .finish()
    }
}

fn invalid(key: &str, message: impl Into<String>) -> StreamsError {
    StreamsError::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str, what: &str) -> Result<T, StreamsError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("expected {what}, got '{value}'")))
}

impl StreamsConfig {
    /// A configuration with Kafka Streams' defaults.
    pub fn new(application_id: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        StreamsConfig {
            application_id: application_id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            num_stream_threads: 1,
            commit_interval: Duration::from_secs(30),
            state_dir: std::env::temp_dir().join("kafka-streams"),
            cache_max_bytes: 10 << 20,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            replication_factor: -1,
            buffered_records_per_partition: 1000,
            poll_timeout: Duration::from_millis(100),
            rocksdb_memory_bytes: 64 << 20,
            application_server: None,
            deserialization_handler: Arc::new(LogAndFail),
            deserialization_handler_name: "fail".into(),
            client_properties: BTreeMap::new(),
        }
    }

    /// Builds a configuration from `key = value` pairs (Kafka Streams keys and librdkafka properties).
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, StreamsError> {
        let mut c = StreamsConfig::new("", "");
        for (k, v) in props {
            c.set(k, v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets one property. Kafka Streams keys set the typed fields; `main.consumer.`, `restore.consumer.`,
    /// `consumer.`, `producer.` and `admin.` prefixes pass a librdkafka property to those clients only; any other
    /// key is passed to every client (librdkafka rejects unknown ones when the clients are created).
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, StreamsError> {
        match key {
            "application.id" => self.application_id = value.to_string(),
            "bootstrap.servers" => self.bootstrap_servers = value.to_string(),
            "num.stream.threads" => self.num_stream_threads = parse(key, value, "a number of threads")?,
            "commit.interval.ms" => self.commit_interval = Duration::from_millis(parse(key, value, "milliseconds")?),
            "state.dir" => self.state_dir = PathBuf::from(value),
            "statestore.cache.max.bytes" | "cache.max.bytes.buffering" => {
                self.cache_max_bytes = parse(key, value, "a number of bytes")?
            }
            "processing.guarantee" => {
                self.processing_guarantee = match value {
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    "exactly_once" | "exactly_once_v2" | "exactly_once_beta" => {
                        return Err(invalid(
                            key,
                            "exactly-once processing is not supported yet; use at_least_once",
                        ))
                    }
                    other => return Err(invalid(key, format!("expected at_least_once, got '{other}'"))),
                }
            }
            "replication.factor" => self.replication_factor = parse(key, value, "a replication factor")?,
            "buffered.records.per.partition" => {
                self.buffered_records_per_partition = parse(key, value, "a number of records")?
            }
            "poll.ms" => self.poll_timeout = Duration::from_millis(parse(key, value, "milliseconds")?),
            "rocksdb.memory.bytes" => self.rocksdb_memory_bytes = parse(key, value, "a number of bytes")?,
            "application.server" => self.application_server = Some(value.to_string()),
            "default.deserialization.exception.handler" | "deserialization.exception.handler" => {
                let h: Arc<dyn DeserializationExceptionHandler> = match value {
                    "fail" | "LogAndFailExceptionHandler" => Arc::new(LogAndFail),
                    "continue" | "LogAndContinueExceptionHandler" => Arc::new(LogAndContinue),
                    other => match other.strip_prefix("dead-letter:") {
                        Some(topic) if !topic.is_empty() => Arc::new(DeadLetterQueue::new(topic)),
                        _ => {
                            return Err(invalid(
                                key,
                                format!(
                                    "expected 'fail', 'continue' or 'dead-letter:<topic>', got '{other}' (or set \
                                     a handler of your own with with_deserialization_handler)"
                                ),
                            ))
                        }
                    },
                };
                self.deserialization_handler = h;
                self.deserialization_handler_name = value.to_string();
            }
            "default.key.serde" | "default.value.serde" => {
                return Err(invalid(
                    key,
                    "serdes are chosen per type in the DSL (Consumed, Produced, Grouped, Materialized); \
                     remove this key",
                ))
            }
            "group.id" | "enable.auto.commit" | "partition.assignment.strategy" | "enable.auto.offset.store" => {
                return Err(invalid(key, "is managed by the library and cannot be set"))
            }
            _ => {
                let mut kinds: Option<&[ClientKind]> = None;
                let mut prop = key;
                for (prefix, k) in ClientKind::PREFIXES {
                    if let Some(rest) = key.strip_prefix(prefix) {
                        kinds = Some(k);
                        prop = rest;
                        break;
                    }
                }
                if prop.is_empty() {
                    return Err(invalid(key, "a client prefix needs a property after it"));
                }
                match kinds {
                    Some(kinds) => {
                        for kind in kinds {
                            self.client_properties.insert((Some(*kind), prop.to_string()), value.to_string());
                        }
                    }
                    None => {
                        self.client_properties.insert((None, prop.to_string()), value.to_string());
                    }
                }
            }
        }
        Ok(self)
    }

    /// Sets a deserialization handler of your own.
    pub fn with_deserialization_handler(
        mut self,
        handler: impl DeserializationExceptionHandler,
    ) -> Self {
        self.deserialization_handler = Arc::new(handler);
        self.deserialization_handler_name =
            std::any::type_name_of_val(&*self.deserialization_handler).to_string();
        self
    }

    /// The librdkafka properties of one kind of client: those for every client, then the prefixed ones.
    pub fn client_properties(&self, kind: ClientKind) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for ((k, prop), v) in &self.client_properties {
            if k.is_none() {
                out.insert(prop.clone(), v.clone());
            }
        }
        for ((k, prop), v) in &self.client_properties {
            if *k == Some(kind) {
                out.insert(prop.clone(), v.clone());
            }
        }
        out
    }

    /// Checks every setting; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), StreamsError> {
        if self.application_id.is_empty() {
            return Err(invalid(
                "application.id",
                "is required (it names the consumer group and internal topics)",
            ));
        }
        if !self
            .application_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "application.id",
                format!(
                    "'{}' may only contain ASCII letters, digits, '.', '_' and '-' (it prefixes topic names)",
                    self.application_id
                ),
            ));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "bootstrap.servers",
                "is required, e.g. localhost:9092",
            ));
        }
        if self.num_stream_threads == 0 {
            return Err(invalid("num.stream.threads", "must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(invalid("commit.interval.ms", "must be at least 1"));
        }
        if self.buffered_records_per_partition == 0 {
            return Err(invalid(
                "buffered.records.per.partition",
                "must be at least 1",
            ));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(invalid(
                "replication.factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        if let Some(server) = &self.application_server {
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid(
                    "application.server",
                    format!("expected host:port, got '{server}'"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_set_typed_fields_and_prefixes_route_properties() {
        let c = StreamsConfig::from_properties([
            ("application.id", "app"),
            ("bootstrap.servers", "b:9092"),
            ("num.stream.threads", "3"),
            ("commit.interval.ms", "250"),
            ("statestore.cache.max.bytes", "0"),
            ("security.protocol", "SASL_SSL"),
            ("producer.linger.ms", "5"),
            ("consumer.fetch.min.bytes", "10"),
            ("restore.consumer.fetch.min.bytes", "20"),
        ])
        .unwrap();
        assert_eq!(c.num_stream_threads, 3);
        assert_eq!(c.commit_interval, Duration::from_millis(250));
        assert_eq!(c.cache_max_bytes, 0);
        let p = c.client_properties(ClientKind::Producer);
        assert_eq!(p.get("linger.ms").map(String::as_str), Some("5"));
        assert_eq!(
            p.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert!(!p.contains_key("fetch.min.bytes"));
        assert_eq!(
            c.client_properties(ClientKind::MainConsumer)["fetch.min.bytes"],
            "10"
        );
        assert_eq!(
            c.client_properties(ClientKind::RestoreConsumer)["fetch.min.bytes"],
            "20"
        );
        assert!(!c
            .client_properties(ClientKind::Admin)
            .contains_key("linger.ms"));
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = StreamsConfig::new("app", "b:9092");
        let e = c.set("num.stream.threads", "many").unwrap_err();
        assert!(
            e.to_string().contains("num.stream.threads") && e.to_string().contains("many"),
            "{e}"
        );
        let e = c
            .set("processing.guarantee", "exactly_once_v2")
            .unwrap_err();
        assert!(e.to_string().contains("at_least_once"), "{e}");
        let e = c.set("group.id", "x").unwrap_err();
        assert!(e.to_string().contains("managed by the library"), "{e}");
        assert!(StreamsConfig::new("", "b")
            .validate()
            .unwrap_err()
            .to_string()
            .contains("application.id"));
        assert!(StreamsConfig::new("bad id", "b").validate().is_err());
        let mut c = StreamsConfig::new("app", "b:1");
        c.set("application.server", "nohost").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("host:port"));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = StreamsConfig::new("app", "b:9092");
        c.set("sasl.password", "hunter2").unwrap();
        c.set("producer.ssl.key.password", "s3cret").unwrap();
        c.set("sasl.username", "alice").unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("alice"));
        assert_eq!(
            c.client_properties(ClientKind::Producer)["ssl.key.password"],
            "s3cret"
        );
    }
}
