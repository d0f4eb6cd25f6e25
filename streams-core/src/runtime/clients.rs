//! Kafka clients of a stream thread: configuration, the producer with its delivery tracking, and the record
//! collector and changelog writer built on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use state_store::{ChangelogSink, StoreError};

use crate::error::StreamsError;
use crate::handler::{ProductionErrorContext, ProductionExceptionHandler, ProductionResponse};
use crate::record::Headers;
use crate::runtime::config::{is_secret_key, ClientKind, StreamsConfig};
use crate::runtime::security::{Redactor, StreamsClientContext};
use crate::task::{ChangelogWriter, OutgoingRecord, RecordCollector};

/// A librdkafka configuration for one kind of client: bootstrap servers, then passthrough properties. Every client
/// is created with a [`StreamsClientContext`] (or one wrapping it), which receives librdkafka's log lines.
pub(crate) fn client_config(config: &StreamsConfig, kind: ClientKind) -> ClientConfig {
    let mut c = ClientConfig::new();
    // librdkafka's log lines go to the client context, which passes them to `tracing` (which filters them).
    c.set_log_level(RDKafkaLogLevel::Debug);
    c.set("bootstrap.servers", &config.bootstrap_servers);
    for (k, v) in config.client_properties(kind) {
        c.set(k, v);
    }
    if matches!(
        kind,
        ClientKind::MainConsumer | ClientKind::RestoreConsumer | ClientKind::GlobalConsumer
    ) {
        c.set(
            "isolation.level",
            crate::runtime::thread::isolation_level(config),
        );
    }
    c
}

/// Maps a client creation error to a configuration error naming the property librdkafka rejected. No value is
/// shown: the rejected one could be a secret (under a misspelt key, say), and librdkafka's description, which can
/// quote it, is scrubbed of every secret value of the configuration.
pub(crate) fn client_error(
    config: &StreamsConfig,
    kind: ClientKind,
    e: KafkaError,
) -> StreamsError {
    let redactor = Redactor::new(config);
    match e {
        KafkaError::ClientConfig(_, description, key, value) => {
            let mut description = redactor.scrub(&description);
            if is_secret_key(&key) && !value.is_empty() {
                description = description.replace(&format!("\"{value}\""), "\"[redacted]\"");
            }
            StreamsError::Config {
                key,
                message: format!("librdkafka refused it ({kind:?} client): {description}"),
            }
        }
        other => StreamsError::Config {
            key: format!("{kind:?} client"),
            message: format!(
                "librdkafka could not create the client: {}",
                redactor.scrub(&other.to_string())
            ),
        },
    }
}

/// The clients of one of the application's one-partition internal topics (instance metadata, task ownership):
/// a producer, and a consumer assigned partition 0 of `topic` from its beginning. The consumer joins no group
/// (`<application.id>-<name>-reader` only names it) and commits nothing; `tune` adds consumer settings.
pub(crate) fn single_partition_clients(
    config: &StreamsConfig,
    topic: &str,
    name: &str,
    tune: &[(&str, &str)],
) -> Result<
    (
        BaseProducer<StreamsClientContext>,
        BaseConsumer<StreamsClientContext>,
    ),
    StreamsError,
> {
    let producer: BaseProducer<StreamsClientContext> = client_config(config, ClientKind::Producer)
        .create_with_context(StreamsClientContext::new(
            config,
            ClientKind::Producer,
            format!("{name} producer"),
        ))
        .map_err(|e| client_error(config, ClientKind::Producer, e))?;
    let mut c = client_config(config, ClientKind::RestoreConsumer);
    c.set(
        "group.id",
        format!("{}-{name}-reader", config.application_id),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false");
    for (k, v) in tune {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer<StreamsClientContext> = c
        .create_with_context(StreamsClientContext::new(
            config,
            ClientKind::RestoreConsumer,
            format!("{name} reader"),
        ))
        .map_err(|e| client_error(config, ClientKind::RestoreConsumer, e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| StreamsError::processor(format!("{name} reader of {topic}: {e}")))?;
    Ok((producer, consumer))
}

/// Tracks what the producer acknowledged: the highest offset per partition (changelog checkpoints need it) and
/// the first delivery failure (which fails the thread: an undelivered record would be lost). A broker refusing
/// the producer's certificate or credentials counts as a delivery failure too: nothing would ever be delivered.
pub(crate) struct DeliveryContext {
    /// Per topic, then per partition: a delivery looks its topic up by `&str`, so it allocates nothing once the
    /// topic is known.
    pub acked: Mutex<HashMap<String, HashMap<i32, i64>>>,
    pub failure: Mutex<Option<String>>,
    client: StreamsClientContext,
    /// Decides about sink records the broker refuses for a reason of their own.
    pub production_handler: Option<Arc<dyn ProductionExceptionHandler>>,
    /// Under exactly-once: the transaction of the producer.
    pub txn: Option<TxnTracker>,
    /// Marks in the sequence of records sent, for at-least-once commits that do not wait for the broker.
    pub marks: DeliveryMarks,
}

/// Marks in the sequence of records a producer sent. A mark is reached once every record sent before it has
/// been acknowledged or has failed, whatever the records sent after it are doing: an at-least-once commit takes
/// a mark where a flush would wait, goes on processing, and commits its offsets once the mark is reached.
///
/// Every record gets a sequence number as it is sent (its delivery opaque); a delivery report counts its record
/// off every mark it was sent before. A record librdkafka refused to queue counts as delivered here: its error
/// reaches the caller of `send` instead.
#[derive(Default)]
pub(crate) struct DeliveryMarks {
    /// The sequence number of the next record sent.
    next: AtomicUsize,
    state: Mutex<MarkState>,
}

#[derive(Default)]
struct MarkState {
    /// Records acknowledged, failed or refused so far.
    completed: usize,
    /// Open marks: (the sequence number the mark was taken at, records sent before it still unacknowledged).
    open: Vec<(usize, usize)>,
}

/// A mark taken by [`DeliveryMarks::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliveryMark(usize);

impl DeliveryMarks {
    /// The sequence number of a record about to be sent.
    fn next_sequence(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A record's delivery report (or its refusal): it no longer holds up the marks taken after it was sent.
    fn completed(&self, sequence: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.completed += 1;
            for (at, remaining) in s.open.iter_mut() {
                if sequence < *at {
                    *remaining = remaining.saturating_sub(1);
                }
            }
        }
    }

    /// A mark after every record sent so far.
    pub(crate) fn mark(&self) -> DeliveryMark {
        let at = self.next.load(Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            // Every record not yet completed was sent before this mark.
            let remaining = at.saturating_sub(s.completed);
            s.open.push((at, remaining));
        }
        DeliveryMark(at)
    }

    /// Whether every record sent before `mark` was acknowledged or failed; a reached mark is closed.
    pub(crate) fn reached(&self, mark: DeliveryMark) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        match s.open.iter().position(|(at, _)| *at == mark.0) {
            Some(i) if s.open[i].1 == 0 => {
                s.open.swap_remove(i);
                true
            }
            Some(_) => false,
            // Closed already (reached, or forgotten by a commit that flushed everything).
            None => true,
        }
    }

    /// How many records were acknowledged, failed or refused so far.
    fn completed_count(&self) -> usize {
        self.state.lock().map(|s| s.completed).unwrap_or(0)
    }

    /// Closes `mark` without waiting for it.
    pub(crate) fn forget(&self, mark: DeliveryMark) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(i) = s.open.iter().position(|(at, _)| *at == mark.0) {
                s.open.swap_remove(i);
            }
        }
    }
}

/// What a transactional producer knows of its current transaction.
#[derive(Default)]
pub(crate) struct TxnTracker {
    /// Whether a transaction is open (begun at the first send after a commit or an abort).
    pub open: std::sync::atomic::AtomicBool,
    /// The lowest and highest offset acknowledged per partition in the open transaction: if it aborts, the
    /// records in between are the aborted ones (the thread is the only writer of its changelog partitions).
    pub offsets: Mutex<HashMap<(String, i32), (i64, i64)>>,
    /// Why the open transaction must be aborted (a record that could not be sent or delivered), if it must.
    pub error: Mutex<Option<String>>,
}

impl TxnTracker {
    /// Marks the open transaction as failed: it can only be aborted now.
    pub(crate) fn fail(&self, why: String) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(why);
        }
    }
}

impl DeliveryContext {
    pub(crate) fn new(client: StreamsClientContext) -> Self {
        DeliveryContext {
            acked: Mutex::default(),
            failure: Mutex::default(),
            client,
            production_handler: None,
            txn: None,
            marks: DeliveryMarks::default(),
        }
    }
}

/// Whether a production error is about the record itself (its size, its content), so that dropping that one
/// record is a choice the production handler may make. Other errors (the broker unreachable, authorization,
/// a fenced producer) concern every record.
fn record_specific(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
        )
    )
}

/// Changelog records are never dropped: a lost one would leave a restored store different from the one that
/// wrote it.
fn is_changelog(topic: &str) -> bool {
    topic.ends_with("-changelog")
}

/// Asks `handler` about a refused sink record; true when it may be dropped (logged and counted).
fn may_drop(
    handler: &dyn ProductionExceptionHandler,
    e: &KafkaError,
    ctx: &ProductionErrorContext<'_>,
) -> bool {
    if is_changelog(ctx.topic) || !record_specific(e) {
        return false;
    }
    let drop = handler.handle(ctx, &e.to_string()) == ProductionResponse::Continue;
    if drop {
        metrics::counter!("streams_production_errors_skipped_total", "topic" => ctx.topic.to_string())
            .increment(1);
    }
    drop
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.client.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(e) = self.client.report(&error, reason) {
            if let Ok(mut f) = self.failure.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        self.marks.completed(sequence);
        match result {
            Ok(m) => {
                if let Ok(mut acked) = self.acked.lock() {
                    let partitions = match acked.get_mut(m.topic()) {
                        Some(p) => p,
                        None => acked.entry(m.topic().to_string()).or_default(),
                    };
                    let e = partitions.entry(m.partition()).or_insert(-1);
                    *e = (*e).max(m.offset());
                }
                if let Some(txn) = &self.txn {
                    if let Ok(mut offsets) = txn.offsets.lock() {
                        let o = m.offset();
                        let e = offsets
                            .entry((m.topic().to_string(), m.partition()))
                            .or_insert((o, o));
                        *e = (e.0.min(o), e.1.max(o));
                    }
                }
            }
            Err((e, m)) => {
                if let Some(handler) = &self.production_handler {
                    let ctx = ProductionErrorContext {
                        topic: m.topic(),
                        partition: Some(m.partition()),
                        key: m.key(),
                        value: m.payload(),
                    };
                    if may_drop(handler.as_ref(), e, &ctx) {
                        return;
                    }
                }
                let why = format!("delivery to {}-{} failed: {e}", m.topic(), m.partition());
                match &self.txn {
                    // Under exactly-once, the transaction is aborted and its records processed again.
                    Some(txn) => txn.fail(why),
                    None => {
                        if let Ok(mut f) = self.failure.lock() {
                            f.get_or_insert(why);
                        }
                    }
                }
            }
        }
    }
}

pub(crate) type StreamsProducer = BaseProducer<DeliveryContext>;

/// Waits until every record `producer` holds is acknowledged or has failed, for up to `timeout`, serving its
/// delivery reports. rdkafka's `BaseProducer::flush` waits in polls of 100 ms that always run to their end, so
/// a flush of a single record took 100 ms (and every at-least-once commit with it); this one polls in slices
/// of a millisecond.
pub(crate) fn flush_producer<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if std::time::Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The stream thread producer's settings: defaults, the user's settings, then what the runtime manages.
/// Idempotence keeps librdkafka's retries from reordering or duplicating records within a partition: a compacted
/// changelog must end on the latest value of each key.
///
/// Under exactly-once the producer is transactional (`transactional_id`), and its transactions time out after
/// 10 s unless configured otherwise, as in Kafka Streams: a crashed instance's open transaction stops holding
/// back read_committed readers soon.
pub(crate) fn producer_config(
    config: &StreamsConfig,
    client_id: &str,
    transactional_id: Option<&str>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set_log_level(RDKafkaLogLevel::Debug);
    c.set("bootstrap.servers", &config.bootstrap_servers);
    c.set("partitioner", "murmur2_random");
    c.set("linger.ms", "5");
    c.set("queue.buffering.max.messages", "1000000");
    if transactional_id.is_some() {
        c.set("transaction.timeout.ms", "10000");
    }
    for (k, v) in config.client_properties(ClientKind::Producer) {
        c.set(k, v);
    }
    c.set("client.id", client_id);
    c.set("enable.idempotence", "true");
    if let Some(id) = transactional_id {
        c.set("transactional.id", id);
    }
    c
}

/// Creates the producer of a stream thread. Partitioning by murmur2 of the key matches the Java client, so
/// co-partitioning holds with topics written by Java applications.
///
/// A transactional producer (`transactional_id`) is registered with its transaction coordinator before it is
/// returned: that fences any earlier producer of the same id and aborts its open transaction.
pub(crate) fn create_producer(
    config: &StreamsConfig,
    client_id: &str,
    transactional_id: Option<&str>,
) -> Result<Arc<StreamsProducer>, StreamsError> {
    let c = producer_config(config, client_id, transactional_id);
    let mut context = DeliveryContext::new(StreamsClientContext::new(
        config,
        ClientKind::Producer,
        format!("producer {client_id}"),
    ));
    context.production_handler = Some(config.production_handler.clone());
    if transactional_id.is_some() {
        context.txn = Some(TxnTracker::default());
    }
    let producer: StreamsProducer = c
        .create_with_context(context)
        .map_err(|e| client_error(config, ClientKind::Producer, e))?;
    if let Some(id) = transactional_id {
        let started = std::time::Instant::now();
        loop {
            match producer.init_transactions(Duration::from_secs(10)) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && started.elapsed() < config.task_timeout =>
                {
                    tracing::warn!(transactional_id = id, error = %e, "registering the transactional producer: retrying");
                }
                Err(e) => {
                    return Err(crate::runtime::kafka_error(
                        &format!("cannot register the transactional producer '{id}'"),
                        e,
                    ))
                }
            }
        }
    }
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

/// At most this many events are served by one [`serve_delivery_reports`].
const MAX_EVENTS_SERVED: usize = 10_000;

/// Serves every delivery report the producer has queued, without waiting for more. One `poll` serves one event
/// of librdkafka's queue, and an event reports one batch of one partition: a single poll per loop round would
/// leave reports waiting behind each other (a commit waiting for them would wait one round per batch), so
/// polls go on while they complete records, up to [`MAX_EVENTS_SERVED`].
pub(crate) fn serve_delivery_reports(producer: &StreamsProducer) {
    let marks = &producer.context().marks;
    for _ in 0..MAX_EVENTS_SERVED {
        let before = marks.completed_count();
        producer.poll(Duration::ZERO);
        if marks.completed_count() == before {
            break;
        }
    }
}

/// Sends a record, waiting (and serving delivery reports) while librdkafka's queue is full. A transactional
/// producer begins a transaction first if none is open; a failure to send then fails the transaction.
pub(crate) fn send(producer: &StreamsProducer, r: &OutgoingRecord<'_>) -> Result<(), KafkaError> {
    let Some(txn) = &producer.context().txn else {
        return send_record(producer, r);
    };
    if !txn.open.load(Ordering::Relaxed) {
        producer.begin_transaction().inspect_err(|e| {
            txn.fail(format!("cannot begin a transaction: {e}"));
        })?;
        txn.open.store(true, Ordering::Relaxed);
    }
    send_record(producer, r).inspect_err(|e| {
        if !record_specific(e) {
            txn.fail(format!("cannot send to {}: {e}", r.topic));
        }
    })
}

fn send_record(producer: &StreamsProducer, r: &OutgoingRecord<'_>) -> Result<(), KafkaError> {
    let sequence = producer.context().marks.next_sequence();
    let mut record: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(r.topic, sequence).timestamp(r.timestamp);
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
            Err((e, _)) => {
                // Never queued: no delivery report will come for it.
                producer.context().marks.completed(sequence);
                return Err(e);
            }
        }
    }
}

/// Delivers sink records through the thread's producer.
pub(crate) struct ProducerCollector {
    pub producer: Arc<StreamsProducer>,
    pub partitions: HashMap<String, i32>,
    /// Why the last record was refused (the production handler decided about it), until the task asks.
    pub refused: Option<crate::task::RefusedRecord>,
}

impl RecordCollector for ProducerCollector {
    fn send(&mut self, r: OutgoingRecord<'_>) -> Result<(), StreamsError> {
        match send(&self.producer, &r) {
            Ok(()) => Ok(()),
            Err(e) => {
                let ctx = ProductionErrorContext {
                    topic: r.topic,
                    partition: r.partition,
                    key: r.key,
                    value: r.value,
                };
                let handler = self.producer.context().production_handler.clone();
                // A record the handler decides about (dropped or not) goes to the dead-letter topic, if any.
                if handler.is_some() && record_specific(&e) && !is_changelog(r.topic) {
                    self.refused = Some(crate::task::RefusedRecord {
                        error_type: "rdkafka::error::KafkaError".into(),
                        message: e.to_string(),
                    });
                }
                if handler.is_some_and(|h| may_drop(h.as_ref(), &e, &ctx)) {
                    return Ok(());
                }
                Err(StreamsError::Processor {
                    node: String::new(),
                    message: format!(
                        "cannot send to topic '{}': {e} (default.production.exception.handler decides about \
                         records refused for their size or content)",
                        r.topic
                    ),
                })
            }
        }
    }

    fn take_refused(&mut self) -> Option<crate::task::RefusedRecord> {
        self.refused.take()
    }

    fn deliver_before_failing(&mut self) -> Result<(), StreamsError> {
        flush_producer(&self.producer, Duration::from_secs(10)).map_err(|e| {
            StreamsError::Processor {
                node: String::new(),
                message: format!("cannot deliver the dead letters written before failing: {e}"),
            }
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
        let timestamp = self.timestamp.load(Ordering::Relaxed);
        self.log_at(key, value, timestamp)
    }

    fn log_at(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let headers = Headers::new();
        let r = OutgoingRecord {
            topic: &self.topic,
            partition: Some(self.partition),
            key: Some(key),
            value,
            timestamp: timestamp.max(0),
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

    /// TLS and SASL settings (librdkafka is built with OpenSSL) reach the clients as librdkafka spells them.
    #[test]
    fn security_settings_reach_the_clients() {
        let mut config = StreamsConfig::new("app", "127.0.0.1:1");
        config.set("security.protocol", "SASL_SSL").unwrap();
        config.set("sasl.mechanism", "SCRAM-SHA-256").unwrap();
        config.set("sasl.username", "u").unwrap();
        config.set("sasl.password", "p").unwrap();
        for kind in ClientKind::ALL {
            let c = client_config(&config, kind);
            assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-256"), "{kind:?}");
            let consumer: Result<BaseConsumer, _> = c.create();
            assert!(consumer.is_ok(), "{kind:?}: {:?}", consumer.err());
        }
    }

    /// librdkafka's creation errors can quote the rejected value; the error never shows it.
    #[test]
    fn creation_errors_never_show_secret_values() {
        let secret = "Zq8-not-a-key-secret-value";
        let mut config = StreamsConfig::new("app", "127.0.0.1:1");
        config.set("security.protocol", "SSL").unwrap();
        config.set("ssl.key.pem", secret).unwrap();
        config
            .set("ssl.certificate.pem", "not a certificate")
            .unwrap();
        let e = client_config(&config, ClientKind::Admin)
            .create::<BaseConsumer>()
            .map(|_| ())
            .map_err(|e| client_error(&config, ClientKind::Admin, e))
            .unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret), "{shown}");

        // A secret under a misspelt key is not known to be one: the value is left out altogether.
        let mut config = StreamsConfig::new("app", "127.0.0.1:1");
        config.set("sasl.passwrod", secret).unwrap();
        let raw = client_config(&config, ClientKind::Producer)
            .create::<BaseConsumer>()
            .map(|_| ())
            .unwrap_err();
        assert!(
            raw.to_string().contains(secret),
            "rdkafka's own error quotes the value: {raw}"
        );
        let e = client_error(&config, ClientKind::Producer, raw);
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("sasl.passwrod"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[cfg(test)]
mod producer_config_tests {
    use super::*;

    /// Defect: the producer ran without idempotence, so a retried batch could land after a later one and a
    /// compacted changelog end on an older value.
    #[test]
    fn finding_the_producer_is_idempotent_whatever_is_configured() {
        let mut config = StreamsConfig::new("app", "b:9092");
        config.set("linger.ms", "20").unwrap();
        config.set("producer.client.id", "mine").unwrap();
        assert!(config.set("producer.enable.idempotence", "false").is_err());
        let c = producer_config(&config, "app-StreamThread-1-producer", None);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("client.id"), Some("app-StreamThread-1-producer"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
    }
}

#[cfg(test)]
mod delivery_mark_tests {
    use super::*;

    /// A mark waits for the records sent before it, in whatever order they complete, and never for those sent
    /// after it.
    #[test]
    fn a_mark_is_reached_once_every_record_sent_before_it_completed() {
        let marks = DeliveryMarks::default();
        let first: Vec<usize> = (0..3).map(|_| marks.next_sequence()).collect();
        let mark = marks.mark();
        let later = marks.next_sequence();
        assert!(!marks.reached(mark));
        // Out of order, as reports of different partitions come; a record sent after the mark does not count.
        marks.completed(later);
        marks.completed(first[2]);
        marks.completed(first[0]);
        assert!(
            !marks.reached(mark),
            "record {} is still in flight",
            first[1]
        );
        marks.completed(first[1]);
        assert!(marks.reached(mark));
        // A reached mark is closed; asking again is harmless.
        assert!(marks.reached(mark));
    }

    /// With nothing in flight a mark is reached at once; two marks count their own records.
    #[test]
    fn marks_count_only_the_records_in_flight_when_they_were_taken() {
        let marks = DeliveryMarks::default();
        let a = marks.next_sequence();
        marks.completed(a);
        let idle = marks.mark();
        assert!(marks.reached(idle), "nothing was in flight");

        let b = marks.next_sequence();
        let first = marks.mark();
        let c = marks.next_sequence();
        let second = marks.mark();
        marks.completed(b);
        assert!(marks.reached(first));
        assert!(!marks.reached(second), "record {c} is still in flight");
        marks.forget(second);
        // Forgotten: nothing holds it open any more.
        assert!(marks.reached(second));
        marks.completed(c);
    }
}
