//! Kafka clients of a stream thread: configuration, the producer with its delivery tracking, and the record
//! collector and changelog writer built on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use state_store::{ChangelogSink, StoreError};

use crate::error::StreamsError;
use crate::record::Headers;
use crate::runtime::config::{ClientKind, StreamsConfig};
use crate::task::{ChangelogWriter, OutgoingRecord, RecordCollector};

/// A librdkafka configuration for one kind of client: bootstrap servers, then passthrough properties.
pub(crate) fn client_config(config: &StreamsConfig, kind: ClientKind) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers);
    for (k, v) in config.client_properties(kind) {
        c.set(k, v);
    }
    c
}

/// Maps a client creation error to a configuration error naming the property librdkafka rejected.
pub(crate) fn client_error(kind: ClientKind, e: KafkaError) -> StreamsError {
    StreamsError::Config {
        key: format!("{kind:?} client"),
        message: format!("librdkafka refused the configuration: {e}"),
    }
}

/// Tracks what the producer acknowledged: the highest offset per partition (changelog checkpoints need it) and
/// the first delivery failure (which fails the thread: an undelivered record would be lost).
#[derive(Default)]
pub(crate) struct DeliveryContext {
    pub acked: Mutex<HashMap<(String, i32), i64>>,
    pub failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if let Ok(mut acked) = self.acked.lock() {
                    let e = acked
                        .entry((m.topic().to_string(), m.partition()))
                        .or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, m)) => {
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert_with(|| {
                        format!("delivery to {}-{} failed: {e}", m.topic(), m.partition())
                    });
                }
            }
        }
    }
}

pub(crate) type StreamsProducer = BaseProducer<DeliveryContext>;

/// Creates the producer of a stream thread. Partitioning by murmur2 of the key matches the Java client, so
/// co-partitioning holds with topics written by Java applications.
pub(crate) fn create_producer(
    config: &StreamsConfig,
    client_id: &str,
) -> Result<Arc<StreamsProducer>, StreamsError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers);
    c.set("client.id", client_id);
    c.set("partitioner", "murmur2_random");
    c.set("linger.ms", "5");
    c.set("queue.buffering.max.messages", "1000000");
    for (k, v) in config.client_properties(ClientKind::Producer) {
        c.set(k, v);
    }
    let producer: StreamsProducer = c
        .create_with_context(DeliveryContext::default())
        .map_err(|e| client_error(ClientKind::Producer, e))?;
    Ok(Arc::new(producer))
}

fn kafka_headers(headers: &Headers) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for header in headers {
        h = h.insert(KafkaHeader {
            key: &header.key,
            value: header.value.as_deref(),
        });
    }
    Some(h)
}

/// Sends a record, waiting (and serving delivery reports) while librdkafka's queue is full.
pub(crate) fn send(producer: &StreamsProducer, r: &OutgoingRecord<'_>) -> Result<(), KafkaError> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(r.topic).timestamp(r.timestamp);
    if let Some(k) = r.key {
        record = record.key(k);
    }
    if let Some(v) = r.value {
        record = record.payload(v);
    }
    if let Some(p) = r.partition {
        record = record.partition(p);
    }
    if let Some(h) = kafka_headers(r.headers) {
        record = record.headers(h);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Delivers sink records through the thread's producer.
pub(crate) struct ProducerCollector {
    pub producer: Arc<StreamsProducer>,
    pub partitions: HashMap<String, i32>,
}

impl RecordCollector for ProducerCollector {
    fn send(&mut self, r: OutgoingRecord<'_>) -> Result<(), StreamsError> {
        send(&self.producer, &r).map_err(|e| StreamsError::Processor {
            node: String::new(),
            message: format!("cannot send to topic '{}': {e}", r.topic),
        })
    }

    fn partitions_for(&mut self, topic: &str) -> Result<i32, StreamsError> {
        if let Some(&n) = self.partitions.get(topic) {
            return Ok(n);
        }
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| StreamsError::Processor {
                node: String::new(),
                message: format!("cannot read metadata of topic '{topic}': {e}"),
            })?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
            .ok_or_else(|| StreamsError::UnknownTopic(topic.to_string()))?;
        self.partitions.insert(topic.to_string(), n);
        Ok(n)
    }
}

/// Writes store changes to their changelog partitions through the thread's producer.
pub(crate) struct ProducerChangelog {
    pub producer: Arc<StreamsProducer>,
}

struct ProducerChangelogSink {
    producer: Arc<StreamsProducer>,
    topic: String,
    partition: i32,
    timestamp: Arc<AtomicI64>,
}

impl ChangelogSink for ProducerChangelogSink {
    fn log(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let headers = Headers::new();
        let r = OutgoingRecord {
            topic: &self.topic,
            partition: Some(self.partition),
            key: Some(key),
            value,
            timestamp: self.timestamp.load(Ordering::Relaxed).max(0),
            headers: &headers,
        };
        send(&self.producer, &r).map_err(|e| StoreError::Changelog {
            store: self.topic.clone(),
            message: e.to_string(),
        })
    }
}

impl ChangelogWriter for ProducerChangelog {
    fn sink(
        &self,
        _store: &str,
        topic: &str,
        partition: i32,
        timestamp: Arc<AtomicI64>,
    ) -> Box<dyn ChangelogSink> {
        Box::new(ProducerChangelogSink {
            producer: self.producer.clone(),
            topic: topic.to_string(),
            partition,
            timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    /// The default librdkafka build accepts SASL/PLAIN settings passed through the configuration (TLS needs an
    /// SSL-enabled build).
    #[test]
    fn sasl_plain_settings_reach_the_clients() {
        let mut config = StreamsConfig::new("app", "127.0.0.1:1");
        config.set("security.protocol", "SASL_PLAINTEXT").unwrap();
        config.set("sasl.mechanism", "PLAIN").unwrap();
        config.set("sasl.username", "u").unwrap();
        config.set("sasl.password", "p").unwrap();
        let consumer: Result<BaseConsumer, _> =
            client_config(&config, ClientKind::MainConsumer).create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        config
            .set("admin.sasl.mechanism", "NOT-A-MECHANISM")
            .unwrap();
        let admin: Result<BaseConsumer, _> = client_config(&config, ClientKind::Admin).create();
        assert!(
            admin.is_err(),
            "an invalid passthrough value is refused by librdkafka"
        );
    }
}
