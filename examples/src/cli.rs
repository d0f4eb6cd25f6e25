//! What the example binaries share: the connection flags (`--bootstrap-servers`, `--config FILE`, `-X KEY=VALUE`),
//! the processing guarantee (`--exactly-once`), logging, the broker (embedded unless bootstrap servers are given),
//! and a plain producer.
//!
//! Every example takes the same connection flags, so each runs against a managed cluster unchanged: put the
//! cluster's settings in a properties file and pass it with `--config`:
//!
//! ```text
//! # cluster.properties
//! bootstrap.servers=pkc-xxxxx.eu-west-1.aws.confluent.cloud:9092
//! security.protocol=SASL_SSL
//! sasl.mechanisms=PLAIN
//! sasl.username=API_KEY
//! sasl.password=API_SECRET
//! ```
//!
//! `cargo run -p examples --bin us_shareholders -- --config cluster.properties`
//!
//! `--exactly-once` runs the example with `processing.guarantee=exactly_once_v2` (on the embedded broker as on a
//! cluster): each commit is a Kafka transaction holding the output records, the changelog writes and the input
//! offsets, and the commit interval falls to 100 ms, Kafka Streams' default under exactly-once:
//!
//! `cargo run -p examples --bin word_count -- --exactly-once`

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{ClientKind, EmbeddedAdmin, EmbeddedKafka, StreamsConfig};
use streams_dsl::StreamsError;

/// A record to produce: key and value, `None` for null.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
/// A record to produce with its timestamp (`None`: the producer's clock).
pub type TimedKeyValue = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

/// Settings as `(key, value)` pairs, in the order given.
pub type Settings = Vec<(String, String)>;

/// The key choosing the processing guarantee.
pub const PROCESSING_GUARANTEE: &str = "processing.guarantee";
/// The value of [`PROCESSING_GUARANTEE`] that `--exactly-once` sets.
pub const EXACTLY_ONCE_V2: &str = "exactly_once_v2";

/// The connection flags every example takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// Kafka bootstrap servers (host:port[,host:port...]). Without them, and without `bootstrap.servers` in
    /// `--config`, the example starts an embedded broker in the process.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_servers: Option<String>,
    /// A properties file (`key=value` lines, `#` or `!` comments) with the cluster's settings, given to the
    /// application and to every client it creates: `security.protocol`, `ssl.ca.location`, `sasl.mechanisms`,
    /// `sasl.username`, `sasl.password`, ... and any Kafka Streams key.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One more setting as KEY=VALUE (repeatable); wins over the same key in `--config`.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Process exactly once (processing.guarantee=exactly_once_v2): every commit is a transaction holding the
    /// output records, the changelog writes and the input offsets, so after a crash nothing is processed twice
    /// as far as readers with isolation.level=read_committed see; commits every 100 ms instead of 500 ms. Without
    /// it: at_least_once. A processing.guarantee in --config or -X wins over this flag.
    #[arg(long)]
    pub exactly_once: bool,
}

impl ConnectionArgs {
    /// The settings of `--config` then `-X`, in order (later ones win), without `bootstrap.servers`, and the
    /// bootstrap servers (`--bootstrap-servers` first, then the last `bootstrap.servers` setting). With
    /// `--exactly-once`, `processing.guarantee=exactly_once_v2` comes first, unless a setting names a guarantee.
    pub fn settings(&self) -> Result<(Option<String>, Settings), StreamsError> {
        let mut settings = Vec::new();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).map_err(|source| StreamsError::Io {
                path: path.display().to_string(),
                source,
            })?;
            settings.extend(parse_properties(&text, &path.display().to_string())?);
        }
        for (i, p) in self.properties.iter().enumerate() {
            let (k, v) = p.split_once('=').ok_or_else(|| StreamsError::Config {
                key: "--property".into(),
                message: format!("argument {} is not KEY=VALUE: '{}'", i + 1, key_only(p)),
            })?;
            settings.push((k.trim().to_string(), v.trim().to_string()));
        }
        if self.exactly_once && !settings.iter().any(|(k, _)| k == PROCESSING_GUARANTEE) {
            settings.insert(0, (PROCESSING_GUARANTEE.into(), EXACTLY_ONCE_V2.into()));
        }
        let mut bootstrap = None;
        settings.retain(|(k, v)| {
            if k == "bootstrap.servers" {
                bootstrap = Some(v.clone());
                false
            } else {
                true
            }
        });
        Ok((self.bootstrap_servers.clone().or(bootstrap), settings))
    }
}

/// What can be shown of a malformed setting: the text before any separator (never a value, which may be secret).
fn key_only(s: &str) -> &str {
    s.split(['=', ':']).next().unwrap_or("").trim()
}

/// Reads Java-style properties: `key=value` or `key: value` per line, blank lines and lines starting with `#` or
/// `!` skipped, surrounding spaces trimmed. A line without a separator is an error naming `origin` and the line
/// number (its text is not shown: it could be a secret).
pub fn parse_properties(text: &str, origin: &str) -> Result<Settings, StreamsError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let at = line.find(['=', ':']).ok_or_else(|| StreamsError::Config {
            key: format!("{origin}:{}", n + 1),
            message: "expected key=value".into(),
        })?;
        let (k, v) = (line[..at].trim(), line[at + 1..].trim());
        if k.is_empty() {
            return Err(StreamsError::Config {
                key: format!("{origin}:{}", n + 1),
                message: "a setting without a key".into(),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
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
    settings: Settings,
}

impl Cluster {
    /// The cluster named by the connection flags (its topics must exist), or an embedded broker with `topics`
    /// (name, partitions) created.
    pub fn from_args(
        args: &ConnectionArgs,
        topics: &[(&str, i32)],
    ) -> Result<Cluster, StreamsError> {
        let (bootstrap, settings) = args.settings()?;
        if let Some(bootstrap) = bootstrap {
            let cluster = Cluster {
                embedded: None,
                bootstrap,
                settings,
            };
            // Settings are checked before anything connects.
            cluster
                .config("settings-check", Path::new("."))?
                .0
                .validate()?;
            return Ok(cluster);
        }
        let kafka = EmbeddedKafka::start()?;
        for (topic, partitions) in topics {
            kafka.create_topic(topic, *partitions)?;
        }
        Ok(Cluster {
            bootstrap: kafka.bootstrap_servers().to_string(),
            embedded: Some(kafka),
            settings,
        })
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Whether the application runs with `processing.guarantee=exactly_once_v2` (`--exactly-once`, or the
    /// setting given in `--config` or `-X`).
    pub fn exactly_once(&self) -> bool {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == PROCESSING_GUARANTEE)
            .is_some_and(|(_, v)| v == EXACTLY_ONCE_V2)
    }

    /// The processing guarantee the application runs with: `exactly_once_v2` or `at_least_once`.
    pub fn guarantee(&self) -> &'static str {
        if self.exactly_once() {
            EXACTLY_ONCE_V2
        } else {
            "at_least_once"
        }
    }

    /// The configuration of application `app` (commits every 500 ms under at-least-once, at the exactly-once
    /// default of 100 ms under exactly-once; state under `state_dir`; then the settings of `--exactly-once`,
    /// `--config` and `-X`), with the embedded broker's topic admin when there is one.
    pub fn config(
        &self,
        app: &str,
        state_dir: &Path,
    ) -> Result<(StreamsConfig, Option<EmbeddedAdmin>), StreamsError> {
        let mut config = StreamsConfig::new(app, self.bootstrap.as_str());
        if !self.exactly_once() {
            config.set("commit.interval.ms", "500")?;
        }
        config.set("state.dir", &state_dir.display().to_string())?;
        for (k, v) in &self.settings {
            config.set(k, v)?;
        }
        Ok((config, self.embedded.as_ref().map(EmbeddedKafka::admin)))
    }

    /// The settings of a plain producer for this cluster (bootstrap servers and the connection settings).
    pub fn producer_config(&self) -> Result<ClientConfig, StreamsError> {
        let (config, _) = self.config("producer", Path::new("."))?;
        let mut client = ClientConfig::new();
        for (k, v) in config.client_properties(ClientKind::Producer) {
            client.set(k, v);
        }
        client.set("bootstrap.servers", &self.bootstrap);
        Ok(client)
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
        let producer: BaseProducer = self
            .producer_config()?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_files_take_equals_and_colons_and_skip_comments() {
        let text =
            "# a cluster\n! also a comment\n\nsecurity.protocol = SASL_SSL\nsasl.username: key\n\
                    sasl.password=a=b:c\n";
        let got = parse_properties(text, "cluster.properties").unwrap();
        let want = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "key"),
            ("sasl.password", "a=b:c"),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
    }

    #[test]
    fn a_malformed_line_names_the_file_and_line_but_not_its_text() {
        let err = parse_properties("a=1\nsecret-without-separator\n", "x.properties").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x.properties:2"), "{text}");
        assert!(!text.contains("secret-without-separator"), "{text}");
    }

    #[test]
    fn flags_win_over_the_file_and_bootstrap_servers_come_from_either() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.properties");
        std::fs::write(&path, "bootstrap.servers=file:9092\nlinger.ms=5\n").unwrap();
        let args = ConnectionArgs {
            bootstrap_servers: None,
            config: Some(path.clone()),
            properties: vec!["linger.ms=7".into()],
            exactly_once: false,
        };
        let (bootstrap, settings) = args.settings().unwrap();
        assert_eq!(bootstrap.as_deref(), Some("file:9092"));
        assert_eq!(
            settings,
            vec![
                ("linger.ms".to_string(), "5".to_string()),
                ("linger.ms".into(), "7".into())
            ]
        );
        let args = ConnectionArgs {
            bootstrap_servers: Some("flag:9092".into()),
            ..args
        };
        assert_eq!(args.settings().unwrap().0.as_deref(), Some("flag:9092"));
        let bad = ConnectionArgs {
            properties: vec!["sasl.password".into()],
            ..Default::default()
        };
        assert!(bad.settings().is_err());
        let missing = ConnectionArgs {
            config: Some(dir.path().join("absent.properties")),
            ..Default::default()
        };
        assert!(missing
            .settings()
            .unwrap_err()
            .to_string()
            .contains("absent.properties"));
    }

    #[test]
    fn settings_reach_the_application_and_the_producer() {
        let args = ConnectionArgs {
            bootstrap_servers: Some("127.0.0.1:1".into()),
            config: None,
            properties: vec!["linger.ms=3".into(), "producer.acks=1".into()],
            exactly_once: false,
        };
        let cluster = Cluster::from_args(&args, &[]).unwrap();
        let (config, admin) = cluster.config("app", Path::new("/tmp")).unwrap();
        assert!(admin.is_none());
        assert_eq!(
            config.client_properties(ClientKind::MainConsumer)["linger.ms"],
            "3"
        );
        let producer = cluster.producer_config().unwrap();
        assert_eq!(producer.get("linger.ms"), Some("3"));
        assert_eq!(producer.get("acks"), Some("1"));
        assert_eq!(producer.get("bootstrap.servers"), Some("127.0.0.1:1"));
    }

    #[test]
    fn exactly_once_sets_the_guarantee_first_and_a_setting_wins_over_it() {
        let flag = ConnectionArgs {
            exactly_once: true,
            properties: vec!["linger.ms=3".into()],
            ..Default::default()
        };
        let (_, settings) = flag.settings().unwrap();
        assert_eq!(
            settings,
            vec![
                (
                    PROCESSING_GUARANTEE.to_string(),
                    EXACTLY_ONCE_V2.to_string()
                ),
                ("linger.ms".into(), "3".into())
            ]
        );
        let overridden = ConnectionArgs {
            exactly_once: true,
            properties: vec!["processing.guarantee=at_least_once".into()],
            ..Default::default()
        };
        assert_eq!(
            overridden.settings().unwrap().1,
            vec![(
                PROCESSING_GUARANTEE.to_string(),
                "at_least_once".to_string()
            )]
        );
        let without = ConnectionArgs::default();
        assert!(without.settings().unwrap().1.is_empty());
    }

    #[test]
    fn exactly_once_reaches_the_application_config_with_its_commit_interval() {
        let cluster = |exactly_once: bool, properties: Vec<String>| {
            let args = ConnectionArgs {
                bootstrap_servers: Some("127.0.0.1:1".into()),
                exactly_once,
                properties,
                ..Default::default()
            };
            Cluster::from_args(&args, &[]).unwrap()
        };
        let eos = cluster(true, vec![]);
        assert_eq!(eos.guarantee(), "exactly_once_v2");
        let (config, _) = eos.config("app", Path::new("/tmp")).unwrap();
        assert!(config.exactly_once());
        assert_eq!(config.commit_interval, Duration::from_millis(100));
        let alos = cluster(false, vec![]);
        assert_eq!(alos.guarantee(), "at_least_once");
        let (config, _) = alos.config("app", Path::new("/tmp")).unwrap();
        assert!(!config.exactly_once());
        assert_eq!(config.commit_interval, Duration::from_millis(500));
        // A commit interval given as a setting wins under either guarantee.
        let (config, _) = cluster(true, vec!["commit.interval.ms=250".into()])
            .config("app", Path::new("/tmp"))
            .unwrap();
        assert!(config.exactly_once());
        assert_eq!(config.commit_interval, Duration::from_millis(250));
    }

    #[test]
    fn the_flag_is_parsed_and_documented_in_the_help() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            connection: ConnectionArgs,
        }
        let cli = Cli::try_parse_from(["example", "--exactly-once"]).unwrap();
        assert!(cli.connection.exactly_once);
        assert!(
            !Cli::try_parse_from(["example"])
                .unwrap()
                .connection
                .exactly_once
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--exactly-once"), "{help}");
        assert!(help.contains("exactly_once_v2"), "{help}");
    }
}
