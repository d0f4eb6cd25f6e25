//! What the example binaries share: flags, logging, the broker (embedded unless `--bootstrap-servers` is given),
//! and a plain producer.

use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{EmbeddedAdmin, EmbeddedKafka, StreamsConfig};
use streams_dsl::StreamsError;

/// A record to produce: key and value, `None` for null.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
/// A record to produce with its timestamp (`None`: the producer's clock).
pub type TimedKeyValue = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

/// The command line of an example.
pub struct Args(Vec<String>);

impl Args {
    /// This process's arguments.
    pub fn from_env() -> Self {
        Args(std::env::args().collect())
    }

    /// The value after `name`, if given.
    pub fn value(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }

    /// Whether `name` is present.
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The port after `name`, or `default`; an invalid one is an error naming the flag.
    pub fn port(&self, name: &str, default: u16) -> Result<u16, StreamsError> {
        match self.value(name) {
            Some(p) => p.parse().map_err(|_| StreamsError::Config {
                key: name.into(),
                message: format!("expected a port number, got '{p}'"),
            }),
            None => Ok(default),
        }
    }
}

/// Library warnings (the embedded broker's limits, among others) on stderr; `RUST_LOG` overrides the level.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The broker an example talks to: the embedded one (with the example's topics created), or a cluster.
pub struct Cluster {
    embedded: Option<EmbeddedKafka>,
    bootstrap: String,
}

impl Cluster {
    /// The cluster named by `--bootstrap-servers` (its topics must exist), or an embedded broker with `topics`
    /// (name, partitions) created.
    pub fn from_args(args: &Args, topics: &[(&str, i32)]) -> Result<Cluster, StreamsError> {
        if let Some(bootstrap) = args.value("--bootstrap-servers") {
            return Ok(Cluster {
                embedded: None,
                bootstrap,
            });
        }
        let kafka = EmbeddedKafka::start()?;
        for (topic, partitions) in topics {
            kafka.create_topic(topic, *partitions)?;
        }
        Ok(Cluster {
            bootstrap: kafka.bootstrap_servers().to_string(),
            embedded: Some(kafka),
        })
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The configuration of application `app` (commits every 500 ms, state under `state_dir`), with the
    /// embedded broker's topic admin when there is one.
    pub fn config(
        &self,
        app: &str,
        state_dir: &Path,
    ) -> Result<(StreamsConfig, Option<EmbeddedAdmin>), StreamsError> {
        let mut config = StreamsConfig::new(app, self.bootstrap.as_str());
        config.set("commit.interval.ms", "500")?;
        config.set("state.dir", &state_dir.display().to_string())?;
        Ok((config, self.embedded.as_ref().map(EmbeddedKafka::admin)))
    }

    /// Writes `records` (key, value; `None` value = tombstone) to `topic` and waits for them to be delivered.
    pub fn produce(&self, topic: &str, records: &[KeyValue]) -> Result<(), StreamsError> {
        let stamped: Vec<TimedKeyValue> = records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), None))
            .collect();
        self.produce_at(topic, &stamped)
    }

    /// Writes `records` (key, value, timestamp in ms; `None` = the producer's clock) to `topic` and waits for
    /// them to be delivered.
    pub fn produce_at(&self, topic: &str, records: &[TimedKeyValue]) -> Result<(), StreamsError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(|e| StreamsError::processor(format!("producer: {e}")))?;
        for (k, v, ts) in records {
            let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(ts) = ts {
                r = r.timestamp(*ts);
            }
            if let Some(k) = k {
                r = r.key(k.as_slice());
            }
            if let Some(v) = v {
                r = r.payload(v.as_slice());
            }
            producer
                .send(r)
                .map_err(|(e, _)| StreamsError::processor(format!("send: {e}")))?;
        }
        producer
            .flush(Duration::from_secs(30))
            .map_err(|e| StreamsError::processor(format!("flush: {e}")))
    }
}

/// A temporary state directory for an example run.
pub fn state_dir() -> Result<tempfile::TempDir, StreamsError> {
    tempfile::tempdir().map_err(|source| StreamsError::Io {
        path: std::env::temp_dir().display().to_string(),
        source,
    })
}
