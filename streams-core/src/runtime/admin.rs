//! Internal topics: repartition and changelog topics created at start, and validated when they exist.

use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::error::{ConnectionFailure, StreamsError};
use crate::runtime::clients::{client_config, client_error};
use crate::runtime::config::{ClientKind, StreamsConfig};
use crate::runtime::embedded::EmbeddedAdmin;
use crate::runtime::security::StreamsClientContext;
use crate::topology::PartitionPlan;

const TIMEOUT: Duration = Duration::from_secs(30);

enum Creator {
    Kafka(AdminClient<StreamsClientContext>),
    Embedded(EmbeddedAdmin),
}

/// Reads topic metadata and creates internal topics.
pub(crate) struct TopicManager {
    metadata: BaseConsumer<StreamsClientContext>,
    creator: Creator,
    replication: i32,
    bootstrap: String,
}

impl TopicManager {
    pub(crate) fn new(
        config: &StreamsConfig,
        embedded: Option<EmbeddedAdmin>,
    ) -> Result<Self, StreamsError> {
        let mut c = client_config(config, ClientKind::Admin);
        c.set("allow.auto.create.topics", "false");
        let metadata: BaseConsumer<StreamsClientContext> = c
            .create_with_context(StreamsClientContext::new(
                config,
                ClientKind::Admin,
                "admin client (metadata)",
            ))
            .map_err(|e| client_error(config, ClientKind::Admin, e))?;
        let creator = match embedded {
            Some(e) => Creator::Embedded(e),
            None => Creator::Kafka(
                client_config(config, ClientKind::Admin)
                    .create_with_context(StreamsClientContext::new(
                        config,
                        ClientKind::Admin,
                        "admin client",
                    ))
                    .map_err(|e| client_error(config, ClientKind::Admin, e))?,
            ),
        };
        Ok(TopicManager {
            metadata,
            creator,
            replication: config.replication_factor,
            bootstrap: config.bootstrap_servers.clone(),
        })
    }

    /// Waits until a broker answers a metadata request, for at most `timeout`. A TLS handshake or SASL
    /// authentication failure (which librdkafka would retry forever) ends the wait at once with a
    /// [`StreamsError::Connection`] naming the broker and the setting to check; no answer within `timeout` is
    /// [`ConnectionFailure::Unreachable`].
    pub(crate) fn check_connection(&self, timeout: Duration) -> Result<(), StreamsError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let attempt = self
                .metadata
                .fetch_metadata(None, left.min(Duration::from_secs(1)));
            // librdkafka reports TLS and SASL failures as events on the client's queue: serve them.
            for _ in 0..64 {
                let _ = self.metadata.poll(Duration::ZERO);
            }
            let error = match attempt {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if let Some(failure) = self.metadata.context().take_failure() {
                return Err(failure);
            }
            if start.elapsed() >= timeout {
                return Err(StreamsError::Connection {
                    failure: ConnectionFailure::Unreachable,
                    broker: self.bootstrap.clone(),
                    setting: format!(
                        "bootstrap.servers, security.protocol and the network (no broker answered within {} s)",
                        timeout.as_secs()
                    ),
                    detail: {
                        let context = self.metadata.context();
                        let error = context.redactor().scrub(&error.to_string());
                        match context.last_disconnect() {
                            Some(last) => format!("{error}; last connection failure: {last}"),
                            None => error,
                        }
                    },
                });
            }
        }
    }

    /// The partition count of `topic`, `None` when it does not exist.
    pub(crate) fn partitions(&self, topic: &str) -> Result<Option<i32>, StreamsError> {
        let md = self
            .metadata
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| {
                // A TLS or SASL failure seen meanwhile explains the timeout better.
                for _ in 0..64 {
                    let _ = self.metadata.poll(Duration::ZERO);
                }
                self.metadata
                    .context()
                    .take_failure()
                    .unwrap_or_else(|| StreamsError::Config {
                        key: "bootstrap.servers".into(),
                        message: format!("cannot read metadata of topic '{topic}': {e}"),
                    })
            })?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    }

    /// The partition count of an external source topic, which must exist.
    pub(crate) fn source_partitions(&self, topic: &str) -> Result<i32, StreamsError> {
        self.partitions(topic)?.ok_or_else(|| StreamsError::Config {
            key: format!("topic {topic}"),
            message: format!(
                "source topic '{topic}' does not exist; create it before starting the application"
            ),
        })
    }

    /// Creates every internal topic of `plan` that is missing and checks the partition count of those that exist.
    pub(crate) fn ensure(&self, plan: &PartitionPlan) -> Result<(), StreamsError> {
        for (topic, &n) in &plan.topic_partitions {
            self.ensure_topic(topic, n, false, None)?;
        }
        for (topic, &n) in &plan.changelogs {
            let lag = plan.changelog_min_compaction_lag_ms.get(topic).copied();
            self.ensure_topic(topic, n, true, lag)?;
        }
        Ok(())
    }

    /// Creates (or checks) a compacted single-partition topic, such as the metadata topic.
    pub(crate) fn ensure_compacted_topic(&self, topic: &str) -> Result<(), StreamsError> {
        self.ensure_topic(topic, 1, true, None)
    }

    fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
        min_compaction_lag_ms: Option<i64>,
    ) -> Result<(), StreamsError> {
        if let Some(existing) = self.partitions(topic)? {
            return check(topic, existing, partitions);
        }
        match &self.creator {
            Creator::Embedded(admin) => admin.create_topic(topic, partitions)?,
            Creator::Kafka(admin) => {
                let mut t =
                    NewTopic::new(topic, partitions, TopicReplication::Fixed(self.replication));
                if compacted {
                    t = t.set("cleanup.policy", "compact");
                }
                let lag = min_compaction_lag_ms.map(|l| l.to_string());
                if let Some(lag) = &lag {
                    t = t.set("min.compaction.lag.ms", lag);
                }
                let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
                let results = block_on(admin.create_topics([&t], &opts)).map_err(|e| {
                    StreamsError::Config {
                        key: format!("topic {topic}"),
                        message: format!("cannot create internal topic: {e}"),
                    }
                })?;
                for r in results {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => {
                            return Err(StreamsError::Config {
                                key: format!("topic {name}"),
                                message: format!("cannot create internal topic: {code}"),
                            })
                        }
                    }
                }
            }
        }
        tracing::info!(topic, partitions, compacted, "created internal topic");
        // Wait until the topic is visible with the expected partitions.
        let start = Instant::now();
        loop {
            if let Some(n) = self.partitions(topic)? {
                return check(topic, n, partitions);
            }
            if start.elapsed() > TIMEOUT {
                return Err(StreamsError::Config {
                    key: format!("topic {topic}"),
                    message: "created internal topic did not appear in metadata".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn check(topic: &str, existing: i32, expected: i32) -> Result<(), StreamsError> {
    if existing == expected {
        Ok(())
    } else {
        Err(StreamsError::Config {
            key: format!("topic {topic}"),
            message: format!(
                "internal topic '{topic}' has {existing} partitions but the topology needs {expected} (its source \
                 topics' partition count); delete it (or reset the application) so it is recreated"
            ),
        })
    }
}
