//! Tasks: one sub-topology instantiated for one partition, with its stores, input queues and punctuations.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use state_store::{
    share, CacheBudget, CachingKeyValueStore, ChangeLoggingKeyValueStore, ChangelogSink,
    KeyValueStore, RocksDbResources, SharedKeyValueStore, StoreError, TransactionalKeyValueStore,
    TypedKeyValueStore,
};

use crate::error::{panic_message, StreamsError};
use crate::global::GlobalStores;
use crate::handler::{
    add_error_headers_text, DeserializationExceptionHandler, FailedSource, ProcessingAction,
    ProcessingErrorContext, ProcessingExceptionHandler,
};
use crate::idle::{IdleState, InputState};
use crate::node::{BuildCtx, BuiltNode, NodeControl, SourceInput};
use crate::processor::{PunctuationType, ScheduleId, TaskId};
use crate::record::{Headers, RawRecordRef, RecordMetadata};
use crate::state_manager::{StateManager, StoreEnv};
use crate::topology::{NodeKind, SubTopology, Topology};

/// A record on its way out of a task: to a sink topic (partition `None` means "by the default partitioner").
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// Destination topic (full name).
    pub topic: &'a str,
    /// Explicit partition, or `None` for murmur2 of the key (round-robin for null keys).
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: Option<&'a [u8]>,
    /// Timestamp.
    pub timestamp: i64,
    /// Headers.
    pub headers: &'a Headers,
}

/// Where a task's sinks deliver records: the Kafka producer in the runtime, in-memory topics in the test driver.
pub trait RecordCollector {
    /// Sends one record.
    fn send(&mut self, record: OutgoingRecord<'_>) -> Result<(), StreamsError>;
    /// The partition count of `topic`.
    fn partitions_for(&mut self, topic: &str) -> Result<i32, StreamsError>;
    /// Whether the last record [`send`](RecordCollector::send) was refused for a reason of its own (too large,
    /// invalid) and the production exception handler decided about it (dropping it, when `send` returned `Ok`, or
    /// failing), and why; answered once. The task then writes the source record to the dead-letter topic, when one
    /// is configured. By default no record is ever refused.
    fn take_refused(&mut self) -> Option<RefusedRecord> {
        None
    }
    /// Delivers what was sent so far, before the task fails on an error a handler wrote dead letters for (a
    /// thread that fails does not flush its producer otherwise). By default there is nothing to wait for.
    fn deliver_before_failing(&mut self) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// Why a collector refused a record (see [`RecordCollector::take_refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecord {
    /// The error's type, for the `__streams.errors.exception` header (e.g. `rdkafka::error::KafkaError`).
    pub error_type: String,
    /// The error message.
    pub message: String,
}

/// Opens the changelog sink of one store of one task.
pub trait ChangelogWriter: Send + Sync {
    /// A sink writing to `changelog_topic` partition `partition`; `timestamp` holds the current record's time.
    fn sink(
        &self,
        store: &str,
        changelog_topic: &str,
        partition: i32,
        timestamp: Arc<AtomicI64>,
    ) -> Box<dyn ChangelogSink>;
}

/// How a store's changelog is read back into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChangelogFormat {
    /// The store keeps values with timestamps, which its changelog carries as record timestamps (each restored
    /// value gets its record's timestamp in front).
    pub timestamped: bool,
    /// The store is versioned with this history retention: each record is a version, put at its timestamp.
    pub versioned: Option<i64>,
    /// The changelog is the source topic the store is a table of: it is read up to the application's committed
    /// offset, where processing resumes, not to its end.
    pub source_topic: bool,
}

/// Brings a store up to date from its changelog before its task starts (the runtime's restoration).
pub(crate) trait StateRestorer {
    /// Restores `inner` (just opened, not yet wrapped) of `store` from partition `task.partition` of
    /// `changelog`. `wiped`: the store was just recreated empty (its checkpoint no longer applies). May wipe it:
    /// drop it, clear `dir`, and call `reopen`. `format` says how the changelog's records become entries.
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &str,
        dir: &std::path::Path,
        inner: Box<dyn KeyValueStore>,
        wiped: bool,
        format: ChangelogFormat,
        reopen: &mut dyn FnMut() -> Result<Box<dyn KeyValueStore>, StreamsError>,
    ) -> Result<Box<dyn KeyValueStore>, StreamsError>;

    /// Forgets the checkpointed offset of partition `task.partition` of `changelog` (the store in `dir` is about
    /// to be wiped): done first, so a crash while the store is rebuilt never leaves an offset the rebuilt store
    /// has not reached.
    fn discard_checkpoint(
        &mut self,
        task: TaskId,
        changelog: &str,
        dir: &std::path::Path,
    ) -> Result<(), StreamsError>;
}

/// Whether `dir` holds anything: a persistent store whose directory is missing or empty starts from nothing,
/// whatever the checkpoint says.
pub(crate) fn has_files(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// Counters of one task.
#[derive(Debug, Default)]
pub(crate) struct TaskMetrics {
    pub processed: Cell<u64>,
    pub skipped_records: Cell<u64>,
    pub dead_lettered: Cell<u64>,
    pub punctuations: Cell<u64>,
    pub dropped_records: Cell<u64>,
}

/// A snapshot of a task's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetricsSnapshot {
    /// Records processed.
    pub processed: u64,
    /// Records skipped: undeserializable records the handler let pass, records whose processing failed and the
    /// processing handler continued (once per failing processor), records with an invalid timestamp the
    /// extractor skips, and null keys on table sources.
    pub skipped_records: u64,
    /// Dead-letter records written (for skipped records, and for failures the handlers answered with dead
    /// letters).
    pub dead_lettered: u64,
    /// Punctuations fired.
    pub punctuations: u64,
    /// Records operators dropped on purpose, each logged: records too late for their window's grace period,
    /// records with a negative timestamp reaching a windowed operator, records without a key reaching a join or
    /// an aggregation.
    pub dropped_records: u64,
}

pub(crate) struct Schedule {
    pub id: ScheduleId,
    pub node: usize,
    pub interval_ms: i64,
    pub kind: PunctuationType,
    pub next: i64,
    pub cancelled: bool,
}

struct StoreSlot {
    store: SharedKeyValueStore,
    /// Bytes of the cache budget the store's write-back cache shares (0: the store has no cache).
    cache_bytes: usize,
    serdes: crate::topology::ErasedSerdes,
    key_type: &'static str,
    value_type: &'static str,
}

/// The node running now, as its topology index: one word, read and written whole. (As an `Option<usize>` it was
/// two words, written by two stores on entry to a node and read back by one wider load in the next node, which
/// the processor cannot serve from its store buffer: a stall of several nanoseconds on every operator a record
/// crossed.)
#[derive(Debug)]
pub(crate) struct CurrentNode(Cell<usize>);

impl Default for CurrentNode {
    fn default() -> Self {
        CurrentNode(Cell::new(Self::NONE))
    }
}

impl CurrentNode {
    const NONE: usize = usize::MAX;

    #[inline(always)]
    fn encode(node: Option<usize>) -> usize {
        node.unwrap_or(Self::NONE)
    }

    #[inline(always)]
    fn decode(raw: usize) -> Option<usize> {
        (raw != Self::NONE).then_some(raw)
    }

    /// Sets the running node; returns the previous one.
    #[inline(always)]
    pub(crate) fn replace(&self, node: Option<usize>) -> Option<usize> {
        Self::decode(self.0.replace(Self::encode(node)))
    }

    /// Sets the running node.
    #[inline(always)]
    pub(crate) fn set(&self, node: Option<usize>) {
        self.0.set(Self::encode(node));
    }

    /// The running node, leaving none.
    #[inline(always)]
    pub(crate) fn take(&self) -> Option<usize> {
        self.replace(None)
    }
}

/// State shared by every node of a task.
pub(crate) struct TaskShared {
    pub task_id: TaskId,
    pub application_id: Arc<str>,
    topics: RefCell<Vec<Arc<str>>>,
    pub(crate) current: Cell<Option<(u32, i64)>>,
    /// The node (index in the topology) running now: set on entry to a node and restored on its return, so after
    /// a panic it names the innermost node that was running.
    pub current_node: CurrentNode,
    pub current_timestamp: Arc<AtomicI64>,
    pub stream_time: Cell<i64>,
    pub wall_clock: Cell<i64>,
    pub collector: RefCell<Box<dyn RecordCollector>>,
    stores: HashMap<String, StoreSlot>,
    node_stores: HashMap<usize, Vec<String>>,
    pub schedules: RefCell<Vec<Schedule>>,
    pub next_schedule_id: Cell<u64>,
    pub deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    pub processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// `errors.dead.letter.queue.topic.name`.
    pub dead_letter_topic: Option<Arc<str>>,
    /// Whether sources keep each record's bytes and headers until it is processed (for the processing handler).
    pub keep_source: bool,
    /// The bytes and headers of the record being processed, when kept.
    pub current_source: RefCell<Option<Box<SourceBytes>>>,
    /// Set when an error on its way up must not reach the processing handler again (a handler chose to fail, or
    /// the error is not about the record); cleared at each record.
    pub error_settled: Cell<bool>,
    pub metrics: TaskMetrics,
    /// The instance's global stores, readable by every processor.
    pub globals: Arc<GlobalStores>,
}

/// A source record as read, kept while it is queued for the processing handler and dead-letter records.
#[derive(Debug, Default)]
pub(crate) struct SourceBytes {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
}

impl TaskShared {
    pub(crate) fn register_topic(&self, topic: Arc<str>) -> u32 {
        let mut topics = self.topics.borrow_mut();
        topics.push(topic);
        (topics.len() - 1) as u32
    }

    #[inline]
    pub(crate) fn begin_record(&self, topic: u32, offset: i64, timestamp: i64) {
        self.current.set(Some((topic, offset)));
        self.error_settled.set(false);
        self.current_timestamp.store(timestamp, Ordering::Relaxed);
        if timestamp > self.stream_time.get() {
            self.stream_time.set(timestamp);
        }
    }

    pub(crate) fn clear_record(&self) {
        self.current.set(None);
        self.error_settled.set(false);
        if self.keep_source {
            self.current_source.borrow_mut().take();
        }
    }

    /// Routes an error of processor `node` (`name`) to the processing handler: `Ok` when the handler continues
    /// (the record is skipped there and counted), the error otherwise. Errors already settled further down, and
    /// errors that are not about the record, pass through untouched.
    pub(crate) fn on_processing_error(
        &self,
        name: &str,
        error: StreamsError,
        punctuation_time: Option<i64>,
    ) -> Result<(), StreamsError> {
        if self.error_settled.get() || !handleable(&error) {
            self.error_settled.set(true);
            return Err(error);
        }
        let error = match error {
            StreamsError::Processor { node, message } if node.is_empty() => {
                StreamsError::Processor {
                    node: name.to_string(),
                    message,
                }
            }
            other => other,
        };
        let metadata = if punctuation_time.is_some() {
            None
        } else {
            self.record_metadata()
        };
        let source = if metadata.is_some() {
            self.current_source.borrow_mut().take()
        } else {
            None
        };
        let ctx = ProcessingErrorContext {
            processor: name,
            task: self.task_id,
            topic: metadata.as_ref().map(|m| &*m.topic),
            partition: metadata.as_ref().map(|m| m.partition),
            offset: metadata.as_ref().map(|m| m.offset),
            timestamp: punctuation_time
                .unwrap_or_else(|| self.current_timestamp.load(Ordering::Relaxed)),
            headers: source.as_ref().map(|s| &s.headers),
            source_key: source.as_ref().and_then(|s| s.key.as_deref()),
            source_value: source.as_ref().and_then(|s| s.value.as_deref()),
            dead_letter_topic: self.dead_letter_topic.as_deref(),
        };
        let handler = &self.processing_handler;
        // The handler is application code too: a panic in it fails the thread, and must not reach the processing
        // handler of a processor further up.
        let response = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.handle(&ctx, &error)
        })) {
            Ok(r) => r,
            Err(payload) => {
                self.error_settled.set(true);
                return Err(StreamsError::Panic {
                    thread: current_thread_name(),
                    task: Some(self.task_id),
                    processor: Some(name.to_string()),
                    message: format!(
                        "the processing exception handler panicked ({}) while handling: {error}",
                        panic_message(&*payload)
                    ),
                });
            }
        };
        let written = response.dead_letters.len() as u64;
        for r in &response.dead_letters {
            let sent = self.collector.borrow_mut().send(OutgoingRecord {
                topic: &r.topic,
                partition: None,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                timestamp: r.timestamp.max(0),
                headers: &r.headers,
            });
            if let Err(e) = sent {
                self.error_settled.set(true);
                return Err(e);
            }
        }
        let m = &self.metrics;
        m.dead_lettered.set(m.dead_lettered.get() + written);
        // Put the bytes back: a sibling branch may fail on the same record.
        if let Some(s) = source {
            *self.current_source.borrow_mut() = Some(s);
        }
        match response.action {
            ProcessingAction::Continue => {
                m.skipped_records.set(m.skipped_records.get() + 1);
                Ok(())
            }
            _ => {
                self.error_settled.set(true);
                if written > 0 {
                    self.deliver_before_failing();
                }
                Err(error)
            }
        }
    }

    pub(crate) fn record_metadata(&self) -> Option<RecordMetadata> {
        let (topic, offset) = self.current.get()?;
        Some(RecordMetadata {
            topic: self.topics.borrow()[topic as usize].clone(),
            partition: self.task_id.partition,
            offset,
        })
    }

    /// Bytes of cache in front of `store`, when the store is connected to `node`; 0 otherwise.
    pub(crate) fn store_cache_bytes(&self, node: usize, store: &str) -> usize {
        let connected = self
            .node_stores
            .get(&node)
            .is_some_and(|s| s.iter().any(|x| x == store));
        match self.stores.get(store) {
            Some(slot) if connected => slot.cache_bytes,
            _ => 0,
        }
    }

    /// What opens store `store` as a window or session store of the Processor API, if it is one.
    pub(crate) fn windowed_parts(
        &self,
        store: &str,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.stores.get(store)?.serdes.windowed.clone()
    }

    pub(crate) fn key_value_store<K: 'static, V: 'static>(
        &self,
        node: usize,
        node_name: &str,
        store: &str,
    ) -> Result<TypedKeyValueStore<K, V>, StreamsError> {
        let (slot, serdes) = self.store_slot::<K, V>(node, node_name, store)?;
        if slot.serdes.versioned().is_some() {
            return Err(StreamsError::StoreAccess {
                processor: node_name.to_string(),
                store: store.to_string(),
                reason: "the store is versioned: read it with versioned_key_value_store".into(),
            });
        }
        Ok(TypedKeyValueStore::with_shared_serdes(
            slot.store.clone(),
            serdes.key.clone(),
            serdes.value.clone(),
        ))
    }

    pub(crate) fn versioned_key_value_store<K: 'static, V: 'static>(
        &self,
        node: usize,
        node_name: &str,
        store: &str,
    ) -> Result<state_store::VersionedKeyValueStore<K, V>, StreamsError> {
        let (slot, serdes) = self.store_slot::<K, V>(node, node_name, store)?;
        let Some(retention) = slot.serdes.versioned() else {
            return Err(StreamsError::StoreAccess {
                processor: node_name.to_string(),
                store: store.to_string(),
                reason: "the store is not versioned: read it with key_value_store".into(),
            });
        };
        Ok(state_store::VersionedKeyValueStore::with_shared_serdes(
            slot.store.clone(),
            serdes.key.clone(),
            serdes.value.clone(),
            retention,
        ))
    }

    #[allow(clippy::type_complexity)]
    fn store_slot<K: 'static, V: 'static>(
        &self,
        node: usize,
        node_name: &str,
        store: &str,
    ) -> Result<(&StoreSlot, &crate::topology::StoreSerdes<K, V>), StreamsError> {
        let err = |reason: String| StreamsError::StoreAccess {
            processor: node_name.to_string(),
            store: store.to_string(),
            reason,
        };
        if !self
            .node_stores
            .get(&node)
            .is_some_and(|s| s.iter().any(|x| x == store))
        {
            return Err(err(
                "the store is not connected to this processor (connect it when adding the store)"
                    .into(),
            ));
        }
        let slot = self
            .stores
            .get(store)
            .ok_or_else(|| err("no such store in this task".into()))?;
        let serdes = slot.serdes.get::<K, V>().ok_or_else(|| {
            err(format!(
                "the store holds <{}, {}> but <{}, {}> was requested",
                slot.key_type,
                slot.value_type,
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ))
        })?;
        Ok((slot, serdes))
    }
}

impl TaskShared {
    /// Delivers the dead letters just written before the task fails (logged if that fails: the task's own error
    /// is the one to report).
    pub(crate) fn deliver_before_failing(&self) {
        if let Err(e) = self.collector.borrow_mut().deliver_before_failing() {
            tracing::warn!(task = %self.task_id, error = %e, "cannot deliver the dead letters written before failing");
        }
    }

    /// Writes the record being processed to the dead-letter topic (when one is configured and the record was
    /// kept) because a sink's record derived from it was refused, whatever the production handler decided
    /// (KIP-1034: Kafka Streams' handlers write dead letters when they fail too).
    pub(crate) fn dead_letter_refused(
        &self,
        sink_topic: &str,
        dropped: RefusedRecord,
    ) -> Result<(), StreamsError> {
        let Some(dlq) = self.dead_letter_topic.as_deref() else {
            return Ok(());
        };
        let (Some(meta), Some(source)) = (
            self.record_metadata(),
            self.current_source
                .borrow()
                .as_ref()
                .map(|s| (s.key.clone(), s.value.clone(), s.headers.clone())),
        ) else {
            tracing::warn!(sink_topic, error = %dropped.message,
                "a refused record has no source record (it came from a punctuation); nothing is dead-lettered");
            return Ok(());
        };
        let (key, value, mut headers) = source;
        let message = format!("cannot send to topic '{sink_topic}': {}", dropped.message);
        add_error_headers_text(
            &mut headers,
            &dropped.error_type,
            &message,
            &message,
            FailedSource {
                topic: Some(&meta.topic),
                partition: Some(meta.partition),
                offset: Some(meta.offset),
            },
        );
        self.collector.borrow_mut().send(OutgoingRecord {
            topic: dlq,
            partition: None,
            key: key.as_deref(),
            value: value.as_deref(),
            timestamp: self.current_timestamp.load(Ordering::Relaxed).max(0),
            headers: &headers,
        })?;
        let m = &self.metrics.dead_lettered;
        m.set(m.get() + 1);
        Ok(())
    }
}

/// Whether the processing handler may decide about `error`: not when the task moved to another instance, nor when
/// a changelog write failed or a store is unusable after a panic (every later record would fail the same way, and
/// a changelog missing a write would make a restored store differ).
fn handleable(error: &StreamsError) -> bool {
    !matches!(
        error,
        StreamsError::TaskMigrated(_)
            | StreamsError::TransactionAborted(_)
            | StreamsError::ProducerFenced(_)
            | StreamsError::Store(StoreError::Changelog { .. })
            | StreamsError::Store(StoreError::Poisoned { .. })
    )
}

/// The name of the running thread (stream threads are named after the thread they run).
pub(crate) fn current_thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed thread")
        .to_string()
}

/// Flushes each store of a list (cache, then changelog writes, then the store itself).
pub(crate) fn flush_stores(stores: &[(String, SharedKeyValueStore)]) -> Result<(), StreamsError> {
    for_each_store(stores, |s| s.flush())
}

/// Calls `f` on each store of a list in turn, stopping at the first error.
pub(crate) fn for_each_store(
    stores: &[(String, SharedKeyValueStore)],
    mut f: impl FnMut(&mut dyn KeyValueStore) -> Result<(), StoreError>,
) -> Result<(), StreamsError> {
    for (name, store) in stores {
        let mut store = store.lock().map_err(|_| StoreError::Poisoned {
            store: name.clone(),
        })?;
        f(&mut **store)?;
    }
    Ok(())
}

/// Flushes the processors of a task without holding the task: see [`Task::processor_flusher`].
pub(crate) struct ProcessorFlusher {
    shared: std::rc::Weak<TaskShared>,
    controls: Vec<std::rc::Weak<RefCell<dyn NodeControl>>>,
}

impl ProcessorFlusher {
    /// Flushes the processors in topological order; nothing when the task was dropped. Fails when a processor
    /// is busy (called from inside the task's own processing).
    pub(crate) fn flush(&self) -> Result<(), StreamsError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        shared.clear_record();
        for c in &self.controls {
            if let Some(c) = c.upgrade() {
                c.try_borrow_mut()
                    .map_err(|_| {
                        StreamsError::processor("a processor was flushed while it was running")
                    })?
                    .flush()?;
            }
        }
        Ok(())
    }
}

/// Everything a task needs from its surroundings.
pub(crate) struct TaskEnv {
    pub application_id: Arc<str>,
    pub state_dir: PathBuf,
    pub rocksdb: RocksDbResources,
    /// The record cache budget the task's cached stores share (Kafka's per-thread cache); `None` or a budget of
    /// 0 bytes: no store is cached.
    pub cache: Option<CacheBudget>,
    pub collector: Box<dyn RecordCollector>,
    pub changelog: Option<Arc<dyn ChangelogWriter>>,
    pub deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    pub processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// `errors.dead.letter.queue.topic.name`.
    pub dead_letter_topic: Option<Arc<str>>,
    pub wall_clock: i64,
    /// The instance's global stores.
    pub globals: Arc<GlobalStores>,
    /// Under exactly-once, each store holds the writes of the running transaction until it commits (see
    /// [`state_store::TransactionalKeyValueStore`]).
    pub exactly_once: bool,
}

struct Input {
    topic: Arc<str>,
    source: Rc<RefCell<dyn SourceInput>>,
    slot: usize,
    /// Offset after the last processed record (what to commit); -1 before the first.
    next_offset: i64,
    /// The highest timestamp processed from this partition (Kafka's partition time); -1 before the first. It is
    /// committed with the offset, so stream time survives a restart.
    partition_time: i64,
    /// The committed offset the task started from; -1 when none.
    committed: i64,
}

/// One sub-topology instantiated for one partition.
pub(crate) struct Task {
    id: TaskId,
    shared: Rc<TaskShared>,
    controls: Vec<Option<Rc<RefCell<dyn NodeControl>>>>,
    inputs: Vec<Input>,
    stores: Vec<(String, SharedKeyValueStore)>,
    next_stream_punctuation: i64,
    closed: bool,
    /// Node names by topology index, to name the node a panic came from.
    node_names: Vec<Rc<str>>,
    /// Whether each node (by topology index) is a processor, whose errors and panics go to the processing
    /// exception handler.
    processors: Vec<bool>,
    /// `max.task.idle.ms` and the wait it imposes on a task with several inputs.
    idle: IdleState,
}

/// Wraps an opened store in its changelog and cache layers.
fn wrap_store(
    topology: &Topology,
    name: &str,
    id: TaskId,
    env: &TaskEnv,
    timestamp: &Arc<AtomicI64>,
    mut store: Box<dyn KeyValueStore>,
) -> StoreSlot {
    let def = &topology.stores[name];
    if env.exactly_once {
        // Below the changelog layer: the store applies a write only once the transaction that carries its
        // changelog record has committed.
        store = Box::new(TransactionalKeyValueStore::new(store));
    }
    // A store whose changelog is its source topic writes nothing: the topic already holds every change.
    if def.logging && def.source_changelog.is_none() {
        if let Some(writer) = &env.changelog {
            let topic = Topology::changelog_topic(&env.application_id, name);
            let mut sink = writer.sink(name, &topic, id.partition, timestamp.clone());
            store = if def.serdes.versioned().is_some() {
                // As Kafka Streams writes a versioned store's changelog: one record per version, with the plain
                // key and value (a tombstone version as a null value) stamped with the version's timestamp. The
                // store's bookkeeping entries and the deletes of expired versions are not logged: restoring
                // rebuilds the one and redoes the other.
                Box::new(ChangeLoggingKeyValueStore::new(
                    store,
                    move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> {
                        match v.and_then(|v| state_store::versioned::decode_changelog_entry(k, v)) {
                            Some((key, value, ts)) => sink.log_at(key, value, ts),
                            None => Ok(()),
                        }
                    },
                ))
            } else if def.serdes.timestamped() {
                // As Kafka Streams writes a timestamped store's changelog: the plain value, stamped with the
                // value's timestamp.
                Box::new(ChangeLoggingKeyValueStore::new(
                    store,
                    move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> {
                        match v.and_then(|v| v.split_first_chunk::<8>()) {
                            Some((ts, value)) => {
                                sink.log_at(k, Some(value), i64::from_be_bytes(*ts))
                            }
                            None => sink.log(k, v),
                        }
                    },
                ))
            } else {
                Box::new(ChangeLoggingKeyValueStore::new(
                    store,
                    move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> { sink.log(k, v) },
                ))
            };
        }
    }
    let budget = env
        .cache
        .as_ref()
        .filter(|b| def.caching && def.serdes.versioned().is_none() && b.max() > 0);
    let cache_bytes = budget.map_or(0, CacheBudget::max);
    if let Some(budget) = budget {
        store = Box::new(CachingKeyValueStore::with_budget(store, budget.clone()));
    }
    StoreSlot {
        store: share(store),
        cache_bytes,
        serdes: def.serdes.clone(),
        key_type: def.key_type,
        value_type: def.value_type,
    }
}

impl Task {
    /// Opens the task's stores (restoring them through `restorer`) and builds the task.
    pub(crate) fn new(
        topology: &Topology,
        sub: &SubTopology,
        partition: i32,
        env: TaskEnv,
        restorer: Option<&mut dyn StateRestorer>,
    ) -> Result<Task, StreamsError> {
        let id = TaskId {
            subtopology: sub.id,
            partition,
        };
        let state = StateManager::open(
            topology,
            sub,
            id,
            &StoreEnv {
                application_id: env.application_id.clone(),
                state_dir: env.state_dir.clone(),
                rocksdb: env.rocksdb.clone(),
                handed: None,
            },
            restorer,
        )?;
        Task::with_state(topology, sub, env, state)
    }

    /// Builds the task on stores already opened and restored.
    pub(crate) fn with_state(
        topology: &Topology,
        sub: &SubTopology,
        env: TaskEnv,
        state: StateManager,
    ) -> Result<Task, StreamsError> {
        let id = state.task;
        let timestamp = Arc::new(AtomicI64::new(0));
        let mut stores = HashMap::new();
        let mut store_list = Vec::new();
        for opened in state.stores {
            let slot = wrap_store(topology, &opened.name, id, &env, &timestamp, opened.store);
            store_list.push((opened.name.clone(), slot.store.clone()));
            stores.insert(opened.name, slot);
        }
        let node_stores = sub
            .nodes
            .iter()
            .filter(|&&i| !topology.nodes[i].stores.is_empty())
            .map(|&i| (i, topology.nodes[i].stores.clone()))
            .collect();
        let shared = Rc::new(TaskShared {
            task_id: id,
            application_id: env.application_id.clone(),
            topics: RefCell::new(Vec::new()),
            current: Cell::new(None),
            current_node: CurrentNode::default(),
            current_timestamp: timestamp,
            stream_time: Cell::new(-1),
            wall_clock: Cell::new(env.wall_clock),
            collector: RefCell::new(env.collector),
            stores,
            node_stores,
            schedules: RefCell::new(Vec::new()),
            next_schedule_id: Cell::new(0),
            deserialization_handler: env.deserialization_handler,
            keep_source: env.dead_letter_topic.is_some()
                || env.processing_handler.uses_source_bytes(),
            processing_handler: env.processing_handler,
            dead_letter_topic: env.dead_letter_topic,
            current_source: RefCell::new(None),
            error_settled: Cell::new(false),
            metrics: TaskMetrics::default(),
            globals: env.globals,
        });

        let mut built: HashMap<usize, BuiltNode> = HashMap::new();
        let mut controls: Vec<Option<Rc<RefCell<dyn NodeControl>>>> =
            vec![None; topology.nodes.len()];
        let mut sources = Vec::new();
        let mut order = sub.nodes.clone();
        order.sort_unstable();
        for &i in order.iter().rev() {
            let def = &topology.nodes[i];
            // A stateless only child with no other parent was built to be owned by this node.
            let mut inline_child = None;
            if let [c] = def.children[..] {
                if topology.nodes[c].inlined_into_parent(&topology.nodes) {
                    let owned =
                        built
                            .get_mut(&c)
                            .and_then(|b| b.owned.take())
                            .ok_or_else(|| {
                                StreamsError::InvalidTopology(format!(
                                    "node '{}' was not built for its parent",
                                    topology.nodes[c].name
                                ))
                            })?;
                    inline_child = Some((Rc::from(topology.nodes[c].name.as_str()), owned));
                }
            }
            // Children shared through `input` handles: none when the only child is owned.
            let shared_children: &[usize] = if inline_child.is_some() {
                &[]
            } else {
                &def.children
            };
            let children = shared_children
                .iter()
                .map(|c| {
                    let name: Rc<str> = Rc::from(topology.nodes[*c].name.as_str());
                    let input = built
                        .get(c)
                        .and_then(|b| b.input.as_deref())
                        .ok_or_else(|| {
                            StreamsError::InvalidTopology(format!("node '{name}' has no input"))
                        })?;
                    Ok((name, input))
                })
                .collect::<Result<Vec<_>, StreamsError>>()?;
            let topics = match &def.kind {
                NodeKind::Source { topics } => topics
                    .iter()
                    .map(|t| Arc::from(topology.resolve_topic(&env.application_id, t)))
                    .collect(),
                NodeKind::Sink { topic } => vec![Arc::from(
                    topology.resolve_topic(&env.application_id, topic),
                )],
                NodeKind::Processor => Vec::new(),
            };
            let node = def.factory.build(BuildCtx {
                node: i,
                name: Rc::from(def.name.as_str()),
                children,
                shared: &shared,
                topics,
                inline_child,
                owned: def.inlined_into_parent(&topology.nodes),
            })?;
            if let Some(c) = &node.control {
                controls[i] = Some(c.clone());
            }
            if let Some(s) = &node.source {
                sources.push(s.clone());
            }
            built.insert(i, node);
        }
        let mut inputs = Vec::new();
        for source in sources.into_iter().rev() {
            let topics: Vec<Arc<str>> = source.borrow().topics().to_vec();
            for (slot, topic) in topics.into_iter().enumerate() {
                inputs.push(Input {
                    topic,
                    source: source.clone(),
                    slot,
                    next_offset: -1,
                    partition_time: -1,
                    committed: -1,
                });
            }
        }
        let idle = IdleState::new(0, inputs.len());
        let mut task = Task {
            idle,
            id,
            shared,
            controls,
            inputs,
            stores: store_list,
            next_stream_punctuation: i64::MAX,
            closed: false,
            node_names: topology
                .nodes
                .iter()
                .map(|n| Rc::from(n.name.as_str()))
                .collect(),
            processors: topology
                .nodes
                .iter()
                .map(|n| matches!(n.kind, crate::topology::NodeKind::Processor))
                .collect(),
        };
        for c in task.controls.iter().flatten() {
            c.borrow_mut().init()?;
        }
        task.recompute_next_stream_punctuation();
        Ok(task)
    }

    pub(crate) fn id(&self) -> TaskId {
        self.id
    }

    /// Full names of the topics this task reads.
    pub(crate) fn input_topics(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| &*i.topic)
    }

    /// Records queued on input `index`.
    pub(crate) fn queued_at(&self, index: usize) -> usize {
        let i = &self.inputs[index];
        i.source.borrow().queued(i.slot)
    }

    /// Drops every queued record.
    pub(crate) fn clear_queues(&mut self) {
        for i in &self.inputs {
            i.source.borrow_mut().clear();
        }
    }

    /// (topic, partition, next offset to commit, partition time) of each input that processed something.
    pub(crate) fn consumed_offsets(&self) -> impl Iterator<Item = (&str, i32, i64, i64)> {
        self.inputs.iter().filter(|i| i.next_offset >= 0).map(|i| {
            (
                &*i.topic,
                self.id.partition,
                i.next_offset,
                i.partition_time,
            )
        })
    }

    /// Starts the task where its previous owner committed: `committed` maps each input topic to the committed
    /// offset and the partition time in its metadata. The task's stream time becomes the highest partition time,
    /// as in Kafka Streams.
    pub(crate) fn init_from_committed(&mut self, committed: &HashMap<String, (i64, Option<i64>)>) {
        for i in &mut self.inputs {
            if let Some(&(offset, time)) = committed.get(&*i.topic) {
                i.committed = offset;
                if let Some(t) = time {
                    i.partition_time = i.partition_time.max(t);
                    if t > self.shared.stream_time.get() {
                        self.shared.stream_time.set(t);
                    }
                }
            }
        }
        self.recompute_next_stream_punctuation();
    }

    /// Sets `max.task.idle.ms` (see [`crate::idle`]).
    pub(crate) fn set_max_task_idle(&mut self, ms: i64) {
        self.idle = IdleState::new(ms, self.inputs.len());
    }

    /// Whether the task may process now: always with one input; with several, when each has records queued or
    /// the idling rules allow it. `lag(topic, partition, committed)` tells how many records the broker holds
    /// beyond what was polled (`None`: unknown).
    pub(crate) fn processable(
        &mut self,
        now: i64,
        lag: &mut dyn FnMut(&str, i32, i64) -> Option<i64>,
    ) -> bool {
        if self.inputs.len() <= 1 || self.idle.disabled() {
            return true;
        }
        let mut all = true;
        let mut any = false;
        for i in &self.inputs {
            let queued = i.source.borrow().queued(i.slot) > 0;
            all &= queued;
            any |= queued;
        }
        if all {
            return true;
        }
        if !any {
            return false;
        }
        let partition = self.id.partition;
        let states: Vec<InputState> = self
            .inputs
            .iter()
            .map(|i| {
                if i.source.borrow().queued(i.slot) > 0 {
                    InputState::Buffered
                } else {
                    InputState::Empty {
                        lag: lag(&i.topic, partition, i.committed),
                    }
                }
            })
            .collect();
        self.idle.ready(now, &states)
    }

    /// Whether any input has queued records.
    pub(crate) fn has_queued(&self) -> bool {
        (0..self.inputs.len()).any(|i| self.queued_at(i) > 0)
    }

    /// The index of `topic` among this task's inputs.
    pub(crate) fn input_index(&self, topic: &str) -> Option<usize> {
        self.inputs.iter().position(|i| &*i.topic == topic)
    }

    /// Queues a record of input `index` (see [`Task::input_index`]); false when it was skipped.
    #[inline]
    pub(crate) fn enqueue_at(
        &mut self,
        index: usize,
        raw: RawRecordRef<'_>,
    ) -> Result<bool, StreamsError> {
        let input = &self.inputs[index];
        input.source.borrow_mut().enqueue(input.slot, raw)
    }

    /// Processes the queued record with the lowest timestamp; false when every queue is empty.
    #[inline]
    pub(crate) fn process_one(&mut self) -> Result<bool, StreamsError> {
        let chosen = if self.inputs.len() == 1 {
            0
        } else {
            let mut best: Option<(usize, i64)> = None;
            for (n, i) in self.inputs.iter().enumerate() {
                if let Some(ts) = i.source.borrow().head_timestamp(i.slot) {
                    if best.is_none_or(|(_, b)| ts < b) {
                        best = Some((n, ts));
                    }
                }
            }
            match best {
                Some((n, _)) => n,
                None => return Ok(false),
            }
        };
        let input = &self.inputs[chosen];
        // A panic of a processor goes to the processing exception handler; the unwinding guard costs nothing
        // while nothing panics (one per record; the engine bench runs as fast with it as without it).
        let processed = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            input.source.borrow_mut().process_next(input.slot)
        })) {
            Ok(r) => r?,
            Err(payload) => {
                self.on_record_panic(&*payload)?;
                true
            }
        };
        if !processed {
            return Ok(false);
        }
        let input = &mut self.inputs[chosen];
        if let Some((_, offset)) = self.shared.current.get() {
            input.next_offset = offset + 1;
            input.partition_time = input
                .partition_time
                .max(self.shared.current_timestamp.load(Ordering::Relaxed));
        }
        let m = &self.shared.metrics.processed;
        m.set(m.get() + 1);
        if self.shared.stream_time.get() >= self.next_stream_punctuation {
            self.punctuate(PunctuationType::StreamTime, self.shared.stream_time.get())?;
        }
        Ok(true)
    }

    /// A panic while a record was processed: a processor's goes to the processing exception handler (`Ok` when it
    /// continues: the rest of the record's processing is skipped), any other node's (a sink's serializer) fails.
    #[cold]
    fn on_record_panic(
        &mut self,
        payload: &(dyn std::any::Any + Send),
    ) -> Result<(), StreamsError> {
        let node = self.shared.current_node.take();
        let name = node.and_then(|n| self.node_names.get(n)).cloned();
        let error = StreamsError::Panic {
            thread: current_thread_name(),
            task: Some(self.id),
            processor: name.as_ref().map(|n| n.to_string()),
            message: panic_message(payload),
        };
        let processor = node.is_some_and(|n| self.processors.get(n).copied().unwrap_or(false));
        match name {
            Some(name) if processor && !self.shared.error_settled.get() => {
                self.shared.on_processing_error(&name, error, None)
            }
            _ => {
                self.shared.clear_record();
                Err(error)
            }
        }
    }

    fn recompute_next_stream_punctuation(&mut self) {
        self.next_stream_punctuation = self
            .shared
            .schedules
            .borrow()
            .iter()
            .filter(|s| s.kind == PunctuationType::StreamTime && !s.cancelled)
            .map(|s| s.next)
            .min()
            .unwrap_or(i64::MAX);
    }

    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<(), StreamsError> {
        let due: Vec<(usize, ScheduleId)> = {
            let mut schedules = self.shared.schedules.borrow_mut();
            schedules.retain(|s| !s.cancelled);
            schedules
                .iter_mut()
                .filter(|s| s.kind == kind && now >= s.next)
                .map(|s| {
                    // Fire once however many intervals passed, then realign on the schedule's grid.
                    let missed = (now - s.next) / s.interval_ms + 1;
                    s.next = s.next.saturating_add(missed.saturating_mul(s.interval_ms));
                    (s.node, s.id)
                })
                .collect()
        };
        for (node, id) in due {
            let cancelled = self.shared.schedules.borrow().iter().all(|s| s.id != id);
            if cancelled {
                continue;
            }
            if let Some(c) = &self.controls[node] {
                c.borrow_mut().punctuate(id, now)?;
                let m = &self.shared.metrics.punctuations;
                m.set(m.get() + 1);
            }
        }
        self.recompute_next_stream_punctuation();
        Ok(())
    }

    /// Advances the wall clock to `now` and fires due wall-clock punctuations.
    pub(crate) fn set_wall_clock(&mut self, now: i64) -> Result<(), StreamsError> {
        self.shared.wall_clock.set(now);
        self.punctuate(PunctuationType::WallClockTime, now)
    }

    /// Flushes every store: caches, then changelog writes, then the stores themselves.
    pub(crate) fn flush(&mut self) -> Result<(), StreamsError> {
        flush_stores(&self.stores)
    }

    /// A handle that flushes this task's processors (as [`Task::flush_processors`]) from where the task itself
    /// is out of reach (the consumer's revocation callback); it does nothing once the task is gone.
    pub(crate) fn processor_flusher(&self) -> ProcessorFlusher {
        ProcessorFlusher {
            shared: Rc::downgrade(&self.shared),
            controls: self.controls.iter().flatten().map(Rc::downgrade).collect(),
        }
    }

    /// Calls [`crate::Processor::flush`] on every processor in topological order (a parent before its
    /// children), so the updates processors held back are forwarded before the stores are flushed at a commit.
    pub(crate) fn flush_processors(&mut self) -> Result<(), StreamsError> {
        if self.closed {
            return Ok(());
        }
        self.shared.clear_record();
        // Node indices are topological: a node's children have higher indices (they are built first).
        for c in self.controls.iter().flatten() {
            c.borrow_mut().flush()?;
        }
        Ok(())
    }

    pub(crate) fn stores(&self) -> &[(String, SharedKeyValueStore)] {
        &self.stores
    }

    pub(crate) fn metrics(&self) -> TaskMetricsSnapshot {
        let m = &self.shared.metrics;
        TaskMetricsSnapshot {
            processed: m.processed.get(),
            skipped_records: m.skipped_records.get(),
            dead_lettered: m.dead_lettered.get(),
            punctuations: m.punctuations.get(),
            dropped_records: m.dropped_records.get(),
        }
    }

    pub(crate) fn stream_time(&self) -> i64 {
        self.shared.stream_time.get()
    }

    /// Runs `f` on this task; a panic in it (application code: a processor, a punctuation, a serde, a timestamp
    /// extractor) becomes [`StreamsError::Panic`] naming `thread`, this task and the node that was running.
    pub(crate) fn catch_panics<T>(
        &mut self,
        thread: &str,
        f: impl FnOnce(&mut Task) -> Result<T, StreamsError>,
    ) -> Result<T, StreamsError> {
        self.shared.current_node.set(None);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(payload) => {
                let processor = self
                    .shared
                    .current_node
                    .take()
                    .and_then(|n| self.node_names.get(n))
                    .map(|n| n.to_string());
                self.shared.clear_record();
                Err(StreamsError::Panic {
                    thread: thread.to_string(),
                    task: Some(self.id),
                    processor,
                    message: panic_message(&*payload),
                })
            }
        }
    }

    /// Closes the task without writing anything, for partitions lost to another member (a session timeout, an
    /// exceeded `max.poll.interval.ms`, fencing): caches are dropped unflushed, so nothing reaches the changelogs
    /// or the stores below them; queued records are dropped; processors are not closed (a close may forward or
    /// write). The caller writes no checkpoint and commits no offsets: the new owner may already be writing.
    pub(crate) fn close_dirty(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.shared.clear_record();
        self.clear_queues();
        for (name, store) in &self.stores {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = s.close_dirty() {
                tracing::warn!(task = %self.id, store = %name, error = %e, "error while dropping a store");
            }
        }
    }

    /// Closes processors, then flushes and closes stores.
    pub(crate) fn close(&mut self) -> Result<(), StreamsError> {
        if self.closed {
            return Ok(());
        }
        // A clean close forwards what processors held back first, as a commit does.
        let mut first_err = self.flush_processors().err();
        self.closed = true;
        self.shared.clear_record();
        for c in self.controls.iter().flatten() {
            if let Err(e) = c.borrow_mut().close() {
                first_err.get_or_insert(e);
            }
        }
        for (name, store) in &self.stores {
            let r = store
                .lock()
                .map_err(|_| StoreError::Poisoned {
                    store: name.clone(),
                })
                .and_then(|mut s| s.close());
            if let Err(e) = r {
                first_err.get_or_insert(e.into());
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(task = %self.id, error = %e, "error while closing task");
        }
    }
}
