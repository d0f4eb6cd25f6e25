//! The stream thread's record collector: every record a thread writes (sink records, changelog records) goes
//! through its one producer, and this is where delivery is tracked and waited for. Tasks see it through the
//! [`RecordCollector`](crate::task::RecordCollector) and [`ChangelogWriter`](crate::task::ChangelogWriter)
//! handles it gives out; the commit path flushes it and reads what the broker acknowledged.
//!
//! Under exactly-once the producer is transactional: a transaction begins with the first record sent after a
//! commit, and [`StreamsRecordCollector::commit_transaction`] adds the consumed offsets to it (with the consumer's
//! group metadata, so a member of an older generation is fenced) and commits it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use crate::error::StreamsError;
use crate::runtime::clients::{
    create_producer, DeliveryMark, ProducerChangelog, ProducerCollector, StreamsProducer,
};
use crate::runtime::config::StreamsConfig;
use crate::runtime::kafka_error as kafka;

/// How to create a thread's transactional producer again after it was fenced.
pub(crate) struct TransactionalSetup {
    /// The stream thread's name (the `thread` label of the transaction counters).
    pub thread: String,
    pub config: StreamsConfig,
    pub client_id: String,
    pub transactional_id: String,
}

/// The thread's producer and what it knows of deliveries.
pub(crate) struct StreamsRecordCollector {
    /// Replaced only under exactly-once, when the producer was fenced and is created again.
    producer: RwLock<Arc<StreamsProducer>>,
    /// How long a flush may go on without any record being acknowledged (`task.timeout.ms`).
    stall_timeout: Duration,
    /// Under exactly-once: how the producer was created.
    transactional: Option<TransactionalSetup>,
}

/// The lowest and highest offset per partition of the records of an aborted transaction.
pub(crate) type AbortedOffsets = HashMap<(String, i32), (i64, i64)>;

/// Whether a producer error means another producer took over: a newer one with the same transactional id, or
/// the group moved to a generation this member is not part of.
fn fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::RebalanceInProgress
    )
}

impl StreamsRecordCollector {
    pub(crate) fn new(producer: Arc<StreamsProducer>, stall_timeout: Duration) -> Self {
        StreamsRecordCollector {
            producer: RwLock::new(producer),
            stall_timeout,
            transactional: None,
        }
    }

    /// A collector whose producer is transactional (exactly-once), created with `setup`.
    pub(crate) fn transactional(setup: TransactionalSetup) -> Result<Self, StreamsError> {
        let producer = create_producer(
            &setup.config,
            &setup.client_id,
            Some(&setup.transactional_id),
        )?;
        Ok(StreamsRecordCollector {
            producer: RwLock::new(producer),
            stall_timeout: setup.config.task_timeout,
            transactional: Some(setup),
        })
    }

    /// Whether the producer is transactional (exactly-once).
    pub(crate) fn exactly_once(&self) -> bool {
        self.transactional.is_some()
    }

    /// The stream thread's name, for the transaction counters.
    fn thread(&self) -> String {
        self.transactional
            .as_ref()
            .map(|t| t.thread.clone())
            .unwrap_or_default()
    }

    fn producer(&self) -> Arc<StreamsProducer> {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Maps an error of a transactional call: fenced, to be aborted, or fatal.
    fn transaction_error(&self, what: &str, e: KafkaError) -> StreamsError {
        let producer = self.producer();
        if let Some((code, reason)) = producer.client().fatal_error() {
            return if fenced(code) {
                StreamsError::ProducerFenced(format!("{what}: {reason}"))
            } else {
                kafka(&format!("{what}: the producer failed for good"), reason)
            };
        }
        match &e {
            KafkaError::Transaction(t) if fenced(t.code()) => {
                StreamsError::ProducerFenced(format!("{what}: {e}"))
            }
            KafkaError::Transaction(t) if t.is_fatal() => {
                kafka(&format!("{what}: the producer failed for good"), e)
            }
            _ => StreamsError::TransactionAborted(format!("{what}: {e}")),
        }
    }

    /// Why the open transaction must be aborted, if it must.
    pub(crate) fn transaction_failure(&self) -> Option<String> {
        let producer = self.producer();
        let txn = producer.context().txn.as_ref()?;
        let failed = txn.error.lock().ok().and_then(|e| e.clone());
        failed.or_else(|| {
            producer
                .client()
                .fatal_error()
                .map(|(code, reason)| format!("{code:?}: {reason}"))
        })
    }

    /// Commits the open transaction with the consumed `offsets` (the next offset of each input partition),
    /// beginning one first when nothing was sent since the last commit but offsets moved. Every record sent
    /// inside it is delivered first (flushing the producer).
    pub(crate) fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: Option<ConsumerGroupMetadata>,
    ) -> Result<(), StreamsError> {
        let producer = self.producer();
        let Some(txn) = &producer.context().txn else {
            return Err(kafka("commit", "the producer is not transactional"));
        };
        if let Some(why) = txn.error.lock().ok().and_then(|e| e.clone()) {
            return Err(StreamsError::TransactionAborted(why));
        }
        if !txn.open.load(Ordering::Relaxed) {
            if offsets.count() == 0 {
                return Ok(());
            }
            producer
                .begin_transaction()
                .map_err(|e| self.transaction_error("cannot begin a transaction", e))?;
            txn.open.store(true, Ordering::Relaxed);
        }
        if offsets.count() > 0 {
            let group = group.ok_or_else(|| {
                StreamsError::TaskMigrated(
                    "the consumer has no group metadata to commit with".into(),
                )
            })?;
            self.retrying(
                &producer,
                "cannot add the consumed offsets to the transaction",
                |t| producer.send_offsets_to_transaction(offsets, &group, t),
            )?;
        }
        // Every record of the transaction is delivered first, waiting as long as the broker makes progress.
        self.flush()?;
        self.retrying(&producer, "cannot commit the transaction", |t| {
            producer.commit_transaction(t)
        })?;
        if let Some(why) = txn.error.lock().ok().and_then(|mut e| e.take()) {
            // A delivery failed after all, yet the transaction committed: librdkafka aborts a transaction with a
            // failed record, so this cannot be, but nothing is trusted that was not delivered.
            return Err(kafka("a record of a committed transaction failed", why));
        }
        txn.open.store(false, Ordering::Relaxed);
        if let Ok(mut o) = txn.offsets.lock() {
            o.clear();
        }
        metrics::counter!("streams_transactions_committed_total", "thread" => self.thread())
            .increment(1);
        Ok(())
    }

    /// Calls a transactional operation (with a timeout of a second) again while librdkafka says it may succeed on
    /// a retry (a timeout included: the operation goes on in the background), serving the producer's events in
    /// between, for up to `task.timeout.ms`.
    fn retrying(
        &self,
        producer: &StreamsProducer,
        what: &str,
        mut call: impl FnMut(Duration) -> Result<(), KafkaError>,
    ) -> Result<(), StreamsError> {
        let started = Instant::now();
        loop {
            match call(Duration::from_secs(1)) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && started.elapsed() < self.stall_timeout =>
                {
                    tracing::debug!(error = %e, "{what}: retrying");
                    producer.poll(Duration::from_millis(10));
                }
                Err(e) => return Err(self.transaction_error(what, e)),
            }
        }
    }

    /// Aborts the open transaction (if any) and returns the offsets its acknowledged records took, per partition.
    /// A fenced or failed producer cannot abort: its error is returned.
    pub(crate) fn abort_transaction(&self) -> Result<AbortedOffsets, StreamsError> {
        let producer = self.producer();
        let Some(txn) = &producer.context().txn else {
            return Ok(AbortedOffsets::new());
        };
        if txn.open.load(Ordering::Relaxed) {
            self.retrying(&producer, "cannot abort the transaction", |t| {
                producer.abort_transaction(t)
            })?;
            // Delivery reports (of the acknowledged records, whose offsets make the aborted ranges, and of
            // the purged ones) are served before the offsets are read.
            crate::runtime::clients::serve_delivery_reports(&producer);
            metrics::counter!("streams_transactions_aborted_total", "thread" => self.thread())
                .increment(1);
        }
        txn.open.store(false, Ordering::Relaxed);
        if let Ok(mut e) = txn.error.lock() {
            *e = None;
        }
        Ok(txn
            .offsets
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default())
    }

    /// The offsets taken by the records of the open transaction so far (which a fenced producer cannot abort:
    /// whoever fenced it did), forgetting them.
    pub(crate) fn take_transaction_offsets(&self) -> AbortedOffsets {
        let producer = self.producer();
        producer
            .context()
            .txn
            .as_ref()
            .and_then(|t| t.offsets.lock().ok().map(|mut o| std::mem::take(&mut *o)))
            .unwrap_or_default()
    }

    /// Creates the transactional producer again (it was fenced): registering it fences the old one for good and
    /// aborts what it left open.
    pub(crate) fn reinitialize(&self) -> Result<(), StreamsError> {
        let Some(setup) = &self.transactional else {
            return Ok(());
        };
        metrics::counter!("streams_producer_fenced_total", "thread" => setup.thread.clone())
            .increment(1);
        let producer = create_producer(
            &setup.config,
            &setup.client_id,
            Some(&setup.transactional_id),
        )?;
        let old = match self.producer.write() {
            Ok(mut p) => std::mem::replace(&mut *p, producer),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), producer),
        };
        drop(old);
        Ok(())
    }

    /// A collector for one task's sink records; `partitions` holds the partition counts known so far.
    pub(crate) fn task_collector(&self, partitions: HashMap<String, i32>) -> ProducerCollector {
        ProducerCollector {
            producer: self.producer(),
            partitions,
            refused: None,
        }
    }

    /// The writer of the thread's changelog records.
    pub(crate) fn changelog_writer(&self) -> ProducerChangelog {
        ProducerChangelog {
            producer: self.producer(),
        }
    }

    /// Serves delivery reports without waiting.
    pub(crate) fn poll(&self) {
        crate::runtime::clients::serve_delivery_reports(&self.producer());
    }

    /// Waits until every record sent so far is acknowledged (or failed), then reports the first failure.
    ///
    /// A slow broker is not an error: the wait goes on as long as records keep being acknowledged, and fails
    /// only after `task.timeout.ms` without progress (each record's own `delivery.timeout.ms` still bounds it).
    pub(crate) fn flush(&self) -> Result<(), StreamsError> {
        let producer = self.producer();
        let mut last_progress = Instant::now();
        let mut in_flight = producer.in_flight_count();
        loop {
            match crate::runtime::clients::flush_producer(&producer, Duration::from_secs(1)) {
                Ok(()) => break,
                Err(e) => {
                    let now = producer.in_flight_count();
                    if now < in_flight {
                        in_flight = now;
                        last_progress = Instant::now();
                    } else if last_progress.elapsed() >= self.stall_timeout {
                        return Err(kafka(
                            "producer flush failed",
                            format!(
                                "{e}: {now} records unacknowledged and none acknowledged for {:?} \
                                 (task.timeout.ms)",
                                self.stall_timeout
                            ),
                        ));
                    } else {
                        tracing::debug!(in_flight = now, "flush: waiting for the broker");
                    }
                }
            }
        }
        self.failure()
    }

    /// A mark after every record sent so far: see [`DeliveryMarks`](crate::runtime::clients::DeliveryMarks).
    pub(crate) fn mark(&self) -> DeliveryMark {
        self.producer().context().marks.mark()
    }

    /// Whether every record sent before `mark` was acknowledged or failed (serving delivery reports first).
    pub(crate) fn reached(&self, mark: DeliveryMark) -> bool {
        let producer = self.producer();
        crate::runtime::clients::serve_delivery_reports(&producer);
        producer.context().marks.reached(mark)
    }

    /// Closes `mark` without waiting for it.
    pub(crate) fn forget(&self, mark: DeliveryMark) {
        self.producer().context().marks.forget(mark);
    }

    /// The first delivery failure the producer reported, as an error: an undelivered record would be lost. Under
    /// exactly-once, a failed delivery fails the transaction instead ([`StreamsError::TransactionAborted`]).
    pub(crate) fn failure(&self) -> Result<(), StreamsError> {
        if let Some(why) = self.transaction_failure() {
            return Err(StreamsError::TransactionAborted(why));
        }
        match self
            .producer()
            .context()
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
        {
            Some(f) => Err(kafka("a record could not be delivered", f)),
            None => Ok(()),
        }
    }

    /// The highest acknowledged offset of each partition written, per topic (see [`acked_offset`]).
    pub(crate) fn acked(&self) -> Result<HashMap<String, HashMap<i32, i64>>, StreamsError> {
        self.producer()
            .context()
            .acked
            .lock()
            .map(|a| a.clone())
            .map_err(|_| kafka("delivery state", "poisoned"))
    }
}

/// The first and last offset of a run of records.
type OffsetRange = (i64, i64);

/// The records of transactions this instance aborted, by partition: what a read_committed consumer must not
/// see. Apache Kafka hides them itself; brokers that do not (librdkafka's mock cluster, tansu) show them, so the
/// instance skips the ones it knows of when it restores a changelog or reads a repartition topic. Records of
/// transactions aborted by another process are not known here.
#[derive(Default)]
pub(crate) struct AbortedRecords {
    /// Whether any range is known: the check on the hot path is one load while none is.
    any: std::sync::atomic::AtomicBool,
    ranges: std::sync::Mutex<HashMap<(String, i32), Vec<OffsetRange>>>,
}

impl AbortedRecords {
    /// Remembers the records of an aborted transaction.
    pub(crate) fn add(&self, aborted: AbortedOffsets) {
        if aborted.is_empty() {
            return;
        }
        if let Ok(mut r) = self.ranges.lock() {
            for (key, range) in aborted {
                r.entry(key).or_default().push(range);
            }
            self.any.store(true, Ordering::Release);
        }
    }

    /// Whether the record at `offset` of `topic`-`partition` belongs to an aborted transaction.
    #[inline]
    pub(crate) fn contains(&self, topic: &str, partition: i32, offset: i64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.ranges.lock().is_ok_and(|r| {
            r.get(&(topic.to_string(), partition))
                .is_some_and(|v| v.iter().any(|&(lo, hi)| lo <= offset && offset <= hi))
        })
    }
}

/// The highest offset of `acked` (from [`StreamsRecordCollector::acked`]) acknowledged for `partition`.
pub(crate) fn acked_offset(
    acked: &HashMap<String, HashMap<i32, i64>>,
    (topic, partition): &(String, i32),
) -> Option<i64> {
    acked.get(topic)?.get(partition).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_ranges_cover_exactly_their_offsets() {
        let a = AbortedRecords::default();
        assert!(!a.contains("t", 0, 5));
        a.add(HashMap::from([(("t".to_string(), 0), (3, 7))]));
        a.add(HashMap::from([(("t".to_string(), 0), (20, 20))]));
        let inside: Vec<i64> = (0..25).filter(|&o| a.contains("t", 0, o)).collect();
        assert_eq!(inside, vec![3, 4, 5, 6, 7, 20]);
        assert!(!a.contains("t", 1, 5));
        assert!(!a.contains("u", 0, 5));
    }

    /// Defect: after the input ended, an at-least-once commit waited ~30 s for delivery reports that had
    /// arrived long before. A loop round served one event of librdkafka's queue, and each event reports one
    /// batch of one partition; an idle thread runs ten rounds a second, so a backlog of batch reports (one per
    /// changelog and sink partition per linger) drained at ten a second and the commit's mark waited for it.
    /// Here: records to eight partitions, every one acknowledged by the broker, then one serving call must
    /// reach a mark taken after them.
    #[test]
    fn one_serving_call_serves_every_queued_delivery_report() {
        use crate::runtime::clients::{create_producer, send};
        use crate::runtime::config::StreamsConfig;
        use crate::runtime::embedded::EmbeddedKafka;
        use crate::task::OutgoingRecord;
        use rdkafka::config::ClientConfig;
        use rdkafka::consumer::{BaseConsumer, Consumer};

        const PARTITIONS: i32 = 8;
        let kafka = EmbeddedKafka::start().unwrap();
        kafka.create_topic("reports-out", PARTITIONS).unwrap();
        let config = StreamsConfig::new("reports-app", kafka.bootstrap_servers());
        let producer = create_producer(&config, "reports-app-producer", None).unwrap();
        let collector = StreamsRecordCollector::new(producer.clone(), Duration::from_secs(60));
        let headers = crate::record::Headers::new();
        for p in 0..PARTITIONS {
            // A pause between partitions: each batch is its own request and its own report.
            std::thread::sleep(Duration::from_millis(20));
            send(
                &producer,
                &OutgoingRecord {
                    topic: "reports-out",
                    partition: Some(p),
                    key: Some(b"k"),
                    value: Some(b"v"),
                    timestamp: 1,
                    headers: &headers,
                },
            )
            .unwrap();
        }
        let mark = collector.mark();
        // Wait until the broker holds every record, then give its answers time to reach the producer's queue.
        let watcher: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(0..PARTITIONS).all(|p| {
            watcher
                .fetch_watermarks("reports-out", p, Duration::from_secs(5))
                .is_ok_and(|(_, high)| high == 1)
        }) {
            assert!(
                Instant::now() < deadline,
                "the broker never held the records"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));

        collector.poll();
        let acked = collector.acked().unwrap();
        let reported = (0..PARTITIONS)
            .filter(|p| acked_offset(&acked, &("reports-out".to_string(), *p)) == Some(0))
            .count();
        assert_eq!(
            reported, PARTITIONS as usize,
            "one serving call left delivery reports queued"
        );
        assert!(
            producer.context().marks.reached(mark),
            "every record sent before the mark is acknowledged, yet the mark is not reached"
        );
    }

    #[test]
    fn fencing_errors_are_told_from_abortable_ones() {
        assert!(fenced(RDKafkaErrorCode::ProducerFenced));
        assert!(fenced(RDKafkaErrorCode::Fenced));
        assert!(fenced(RDKafkaErrorCode::InvalidProducerEpoch));
        assert!(!fenced(RDKafkaErrorCode::NotEnoughReplicas));
        assert!(!fenced(RDKafkaErrorCode::OutOfOrderSequenceNumber));
    }
}
