//! An in-process, deterministic driver for topologies: no broker, several partitions per topic.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use state_store::{ChangelogSink, RocksDbResources, Serde, SharedSerde, StoreError};

use crate::error::StreamsError;
use crate::global::GlobalStores;
use crate::handler::{
    DeserializationExceptionHandler, LogAndFail, LogAndFailProcessing, ProcessingExceptionHandler,
};
use crate::partitioner::default_partition;
use crate::record::{Headers, RawRecord, RawRecordRef};
use crate::state::ReadOnlyKeyValueStore;
use crate::task::{
    ChangelogWriter, OutgoingRecord, RecordCollector, Task, TaskEnv, TaskMetricsSnapshot,
};
use crate::topology::Topology;

/// A record piped into or read out of the test driver.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// Key.
    pub key: K,
    /// Value.
    pub value: V,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
    /// Partition: chosen by the caller when piping (`None` = by key), reported when reading.
    pub partition: Option<i32>,
}

impl<K, V> TestRecord<K, V> {
    /// A record with the given timestamp, no headers, partitioned by key.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        TestRecord {
            key,
            value,
            timestamp,
            headers: Headers::new(),
            partition: None,
        }
    }
    /// With headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
    /// Into an explicit partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

struct Produced {
    topic: String,
    partition: Option<i32>,
    record: RawRecord,
}

#[derive(Default)]
struct TopicLog {
    partitions: Vec<Vec<RawRecord>>,
    /// For a topic some task reads: (task index, input index) per partition.
    readers: Option<Vec<(usize, usize)>>,
    next_offsets: Vec<i64>,
    /// Append order across partitions: (partition, index in partition).
    order: Vec<(i32, usize)>,
    read_cursor: usize,
    round_robin: i32,
    /// For a topic feeding a global store: the store's index.
    global: Option<usize>,
}

struct DriverCollector {
    out: Rc<RefCell<Vec<Produced>>>,
    partitions: Rc<HashMap<String, i32>>,
    default_partitions: i32,
    /// Topics some task reads; when records are not retained, writes to other topics end here.
    read_topics: Rc<HashSet<String>>,
    retain: bool,
    discarded: Rc<Cell<u64>>,
    /// The last topic written and whether it is discarded, to skip the set lookup on repeated writes.
    last: Option<(String, bool)>,
}

impl RecordCollector for DriverCollector {
    fn send(&mut self, r: OutgoingRecord<'_>) -> Result<(), StreamsError> {
        if !self.retain {
            let discard = match &self.last {
                Some((t, d)) if t == r.topic => *d,
                _ => {
                    let d = !self.read_topics.contains(r.topic);
                    self.last = Some((r.topic.to_string(), d));
                    d
                }
            };
            if discard {
                self.discarded.set(self.discarded.get() + 1);
                return Ok(());
            }
        }
        self.out.borrow_mut().push(Produced {
            topic: r.topic.to_string(),
            partition: r.partition,
            record: RawRecord {
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
                offset: -1,
            },
        });
        Ok(())
    }
    fn partitions_for(&mut self, topic: &str) -> Result<i32, StreamsError> {
        Ok(*self
            .partitions
            .get(topic)
            .unwrap_or(&self.default_partitions))
    }
}

type ChangelogBuffer = Arc<Mutex<Vec<Produced>>>;

struct DriverChangelog {
    buffer: ChangelogBuffer,
    /// When records are not retained, changelog writes (which no task reads) are only counted.
    retain: bool,
    discarded: Arc<std::sync::atomic::AtomicU64>,
}

struct DriverChangelogSink {
    buffer: ChangelogBuffer,
    retain: bool,
    discarded: Arc<std::sync::atomic::AtomicU64>,
    topic: String,
    partition: i32,
    timestamp: Arc<AtomicI64>,
}

impl ChangelogSink for DriverChangelogSink {
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
        if !self.retain {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.buffer
            .lock()
            .map_err(|_| StoreError::Changelog {
                store: self.topic.clone(),
                message: "changelog buffer poisoned".into(),
            })?
            .push(Produced {
                topic: self.topic.clone(),
                partition: Some(self.partition),
                record: RawRecord {
                    key: Some(key.to_vec()),
                    value: value.map(<[u8]>::to_vec),
                    timestamp,
                    headers: Headers::new(),
                    offset: -1,
                },
            });
        Ok(())
    }
}

impl ChangelogWriter for DriverChangelog {
    fn sink(
        &self,
        _store: &str,
        topic: &str,
        partition: i32,
        timestamp: Arc<AtomicI64>,
    ) -> Box<dyn ChangelogSink> {
        Box::new(DriverChangelogSink {
            buffer: self.buffer.clone(),
            retain: self.retain,
            discarded: self.discarded.clone(),
            topic: topic.to_string(),
            partition,
            timestamp,
        })
    }
}

/// Settings of a [`TopologyTestDriver`].
pub struct TestDriverBuilder {
    topology: Topology,
    application_id: String,
    partitions: HashMap<String, i32>,
    default_partitions: i32,
    wall_clock: i64,
    cache_max_bytes: usize,
    state_dir: Option<PathBuf>,
    retain_records: bool,
    auto_commit: bool,
    handler: Arc<dyn DeserializationExceptionHandler>,
    processing_handler: Arc<dyn ProcessingExceptionHandler>,
    dead_letter_topic: Option<Arc<str>>,
}

impl TestDriverBuilder {
    /// Whether each pipe call ends with a commit (default true), and each record processed (piped, or read back
    /// from a repartition topic) is followed by a flush of its task's processors, as Kafka's `TopologyTestDriver`
    /// commits after each record: cached operators forward then. Turn it off to commit only with
    /// [`TopologyTestDriver::commit`], as a runtime commits on an interval rather than per poll.
    pub fn commit_after_each_pipe(mut self, enabled: bool) -> Self {
        self.auto_commit = enabled;
        self
    }

    /// The application id (prefix of internal topics); default `"test-app"`.
    pub fn application_id(mut self, id: impl Into<String>) -> Self {
        self.application_id = id.into();
        self
    }
    /// Gives `topic` `n` partitions.
    pub fn partitions(mut self, topic: impl Into<String>, n: i32) -> Self {
        self.partitions.insert(topic.into(), n);
        self
    }
    /// Partitions of every topic not named with [`TestDriverBuilder::partitions`]; default 1.
    pub fn default_partitions(mut self, n: i32) -> Self {
        self.default_partitions = n;
        self
    }
    /// Starting wall-clock time in ms; default 0.
    pub fn wall_clock(mut self, ms: i64) -> Self {
        self.wall_clock = ms;
        self
    }
    /// Bytes of record cache (`statestore.cache.max.bytes`), one budget shared by every cached store of every
    /// task, as a stream thread's cache is; default 1 MiB, 0 disables caching (every update is forwarded).
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }
    /// Where RocksDB stores live; default a temporary directory removed with the driver.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
    /// Whether records written to topics are kept for reading (default true). Benchmarks turn it off so memory
    /// stays flat; records still flow into the tasks that read those topics.
    pub fn retain_records(mut self, retain: bool) -> Self {
        self.retain_records = retain;
        self
    }
    /// What to do with records that cannot be deserialized; default [`LogAndFail`].
    pub fn deserialization_handler(
        mut self,
        handler: impl DeserializationExceptionHandler,
    ) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// What to do when a processor fails on a record; default [`LogAndFailProcessing`].
    pub fn processing_handler(mut self, handler: impl ProcessingExceptionHandler) -> Self {
        self.processing_handler = Arc::new(handler);
        self
    }

    /// `errors.dead.letter.queue.topic.name`: where the built-in handlers also write the failed source record.
    /// Read it with an output topic of that name.
    pub fn dead_letter_queue_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(Arc::from(topic.into()));
        self
    }

    /// Creates the tasks and their stores.
    pub fn build(self) -> Result<TopologyTestDriver, StreamsError> {
        TopologyTestDriver::from_builder(self)
    }
}

struct DriverState {
    topology: Topology,
    /// The record cache budget every cached store of every task shares.
    cache: state_store::CacheBudget,
    application_id: Arc<str>,
    partitions: Rc<HashMap<String, i32>>,
    default_partitions: i32,
    topic_ids: HashMap<String, usize>,
    logs: Vec<TopicLog>,
    last_topic: Option<(String, usize)>,
    tasks: Vec<Task>,
    /// Full topic name -> sub-topology reading it.
    readers: HashMap<String, usize>,
    /// (sub-topology, partition) -> index in `tasks`.
    task_index: HashMap<(usize, i32), usize>,
    outbox: Rc<RefCell<Vec<Produced>>>,
    spare: Vec<Produced>,
    discarded: Rc<Cell<u64>>,
    changelog_discarded: Arc<std::sync::atomic::AtomicU64>,
    changelog: ChangelogBuffer,
    wall_clock: i64,
    retain: bool,
    auto_commit: bool,
    globals: Arc<GlobalStores>,
    /// Full topic name -> index of the global store it feeds.
    global_topics: HashMap<String, usize>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl DriverState {
    fn partitions_of(&self, topic: &str) -> i32 {
        *self
            .partitions
            .get(topic)
            .unwrap_or(&self.default_partitions)
    }

    /// The log of `topic`, created on first use with its partition count and the tasks reading it.
    fn topic_id(&mut self, topic: &str) -> usize {
        if let Some((last, id)) = &self.last_topic {
            if last == topic {
                return *id;
            }
        }
        let id = match self.topic_ids.get(topic) {
            Some(&id) => id,
            None => {
                let n = self.partitions_of(topic);
                let readers = self.readers.get(topic).map(|&sub| {
                    (0..n)
                        .map(|p| {
                            let task = self.task_index[&(sub, p)];
                            let input = self.tasks[task]
                                .input_index(topic)
                                .expect("the task reads the topic");
                            (task, input)
                        })
                        .collect()
                });
                let global = self.global_topics.get(topic).copied();
                self.logs.push(TopicLog {
                    partitions: (0..n).map(|_| Vec::new()).collect(),
                    next_offsets: vec![0; n as usize],
                    readers,
                    global,
                    ..TopicLog::default()
                });
                self.topic_ids
                    .insert(topic.to_string(), self.logs.len() - 1);
                self.logs.len() - 1
            }
        };
        self.last_topic = Some((topic.to_string(), id));
        id
    }

    fn append(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        record: RawRecord,
    ) -> Result<(), StreamsError> {
        let view = RawRecordRef {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            timestamp: record.timestamp,
            headers: record.headers.clone(),
            offset: -1,
        };
        let retained = self.append_ref(topic, partition, view)?;
        if let Some((id, p, offset)) = retained {
            let log = &mut self.logs[id];
            log.order.push((p as i32, log.partitions[p].len()));
            log.partitions[p].push(RawRecord { offset, ..record });
        }
        Ok(())
    }

    /// Routes a borrowed record; returns where to retain it (topic id, partition, offset) when records are kept.
    fn append_ref(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        mut record: RawRecordRef<'_>,
    ) -> Result<Option<(usize, usize, i64)>, StreamsError> {
        let id = self.topic_id(topic);
        let log = &mut self.logs[id];
        let n = log.partitions.len() as i32;
        let partition = match (partition, record.key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            (Some(p), _) => {
                return Err(StreamsError::Config {
                    key: "partition".into(),
                    message: format!(
                        "topic '{topic}' has {n} partitions; partition {p} does not exist"
                    ),
                })
            }
            // One partition: where every key goes, without hashing it.
            (None, _) if n == 1 => 0,
            (None, Some(k)) => default_partition(k, n),
            (None, None) => {
                log.round_robin = (log.round_robin + 1) % n;
                log.round_robin
            }
        };
        let p = partition as usize;
        let offset = log.next_offsets[p];
        log.next_offsets[p] += 1;
        record.offset = offset;
        if let Some(g) = log.global {
            // A global store sees its topic's records at once, as the global thread would.
            if let Some(k) = record.key {
                crate::global::apply(&self.globals.slots()[g], &[(k, record.value)])?;
            }
        }
        if let Some(readers) = &log.readers {
            let (task, input) = readers[p];
            if let Err(e) = self.tasks[task].enqueue_at(input, record) {
                return Err(self.deliver_then(e));
            }
        }
        Ok(self.retain.then_some((id, p, offset)))
    }

    fn drain_outbox(&mut self) -> Result<(), StreamsError> {
        if self.outbox.borrow().is_empty() {
            return Ok(());
        }
        loop {
            // Swap with a spare buffer so both keep their capacity across records.
            let mut batch = std::mem::take(&mut self.spare);
            std::mem::swap(&mut batch, &mut *self.outbox.borrow_mut());
            if batch.is_empty() {
                self.spare = batch;
                return Ok(());
            }
            for p in batch.drain(..) {
                self.append(&p.topic, p.partition, p.record)?;
            }
            self.spare = batch;
        }
    }

    fn drain_changelog(&mut self) -> Result<(), StreamsError> {
        let batch = std::mem::take(&mut *self.changelog.lock().map_err(|_| {
            StreamsError::Store(StoreError::Changelog {
                store: "*".into(),
                message: "changelog buffer poisoned".into(),
            })
        })?);
        for p in batch {
            self.append(&p.topic, p.partition, p.record)?;
        }
        Ok(())
    }

    /// Delivers what was written before a task failed (a dead-letter record written by a handler that then
    /// failed, say), as a producer would, and hands back the task's error.
    fn deliver_then(&mut self, error: StreamsError) -> StreamsError {
        if let Err(e) = self.drain_outbox() {
            tracing::warn!(error = %e, "cannot deliver the records written before a task failed");
        }
        error
    }

    /// Processes until no task has queued records, delivering what sinks write as it goes; true when it
    /// processed anything.
    fn run(&mut self) -> Result<bool, StreamsError> {
        // Records sent while queueing input (dead letters of records that could not be deserialized) go out even
        // when nothing is processed after them.
        self.drain_outbox()?;
        let mut any = false;
        loop {
            let mut progressed = false;
            for t in 0..self.tasks.len() {
                loop {
                    match self.tasks[t].process_one() {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => return Err(self.deliver_then(e)),
                    }
                    // Kafka's TopologyTestDriver commits the task after each record it processes (piped or read
                    // back from an internal topic): what the processors held back goes downstream now.
                    if self.auto_commit {
                        if let Err(e) = self.tasks[t].flush_processors() {
                            return Err(self.deliver_then(e));
                        }
                    }
                    progressed = true;
                    self.drain_outbox()?;
                }
            }
            if !progressed {
                break;
            }
            any = true;
        }
        Ok(any)
    }

    /// Like a commit: processors forward what they held back (and whatever that writes to repartition topics is
    /// processed, and forwarded in turn), then caches and stores are flushed and changelog writes delivered.
    fn commit(&mut self) -> Result<(), StreamsError> {
        loop {
            for t in 0..self.tasks.len() {
                if let Err(e) = self.tasks[t].flush_processors() {
                    return Err(self.deliver_then(e));
                }
            }
            if !self.run()? {
                break;
            }
        }
        for t in &mut self.tasks {
            t.flush()?;
        }
        self.drain_changelog()
    }
}

/// Runs a topology in-process, like Kafka Streams' `TopologyTestDriver`, with several partitions per topic:
/// records are routed to partitions by Kafka's default partitioner (murmur2 of the key bytes), each partition of
/// each sub-topology is its own task with its own stores, and repartition topics are delivered internally.
/// Everything is synchronous and deterministic: a call to pipe input returns once every consequence has been
/// processed, and then the write-back caches are flushed as at a commit.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Serdes, SinkOptions, SourceOptions, StreamsError,
///     Topology, TopologyTestDriver};
///
/// struct Double;
/// impl Processor<String, i64> for Double {
///     type KOut = String;
///     type VOut = i64;
///     fn process(&mut self, r: Record<String, i64>, ctx: &mut ProcessorContext<String, i64>)
///         -> Result<(), StreamsError> {
///         let v = r.value * 2;
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source("src", &["in"], SourceOptions::new(Serdes::string(), Serdes::i64())).unwrap();
/// t.add_processor::<String, i64, _, _>("double", || Double, &["src"]).unwrap();
/// t.add_sink("sink", "out", SinkOptions::new(Serdes::string(), Serdes::i64()), &["double"]).unwrap();
///
/// let driver = TopologyTestDriver::builder(t).default_partitions(3).build().unwrap();
/// let input = driver.input_topic("in", Serdes::string(), Serdes::i64());
/// let output = driver.output_topic("out", Serdes::string(), Serdes::i64());
/// input.pipe_input("a".to_string(), 21).unwrap();
/// assert_eq!(output.read_key_value().unwrap(), Some(("a".to_string(), 42)));
/// ```
pub struct TopologyTestDriver {
    state: RefCell<DriverState>,
}

impl TopologyTestDriver {
    /// Settings for a driver running `topology`.
    pub fn builder(topology: Topology) -> TestDriverBuilder {
        TestDriverBuilder {
            topology,
            application_id: "test-app".into(),
            partitions: HashMap::new(),
            default_partitions: 1,
            wall_clock: 0,
            cache_max_bytes: 1 << 20,
            state_dir: None,
            retain_records: true,
            auto_commit: true,
            handler: Arc::new(LogAndFail),
            processing_handler: Arc::new(LogAndFailProcessing),
            dead_letter_topic: None,
        }
    }

    /// A driver with default settings (one partition per topic).
    pub fn new(topology: Topology) -> Result<Self, StreamsError> {
        Self::builder(topology).build()
    }

    fn from_builder(b: TestDriverBuilder) -> Result<Self, StreamsError> {
        let topology = b.topology;
        topology.validate()?;
        for (topic, &n) in &b.partitions {
            if n < 1 {
                return Err(StreamsError::Config {
                    key: format!("partitions({topic})"),
                    message: format!("a topic needs at least 1 partition, got {n}"),
                });
            }
        }
        if b.default_partitions < 1 {
            return Err(StreamsError::Config {
                key: "default_partitions".into(),
                message: format!(
                    "a topic needs at least 1 partition, got {}",
                    b.default_partitions
                ),
            });
        }
        let app: Arc<str> = Arc::from(b.application_id.as_str());
        let subs = topology.sub_topologies();
        let plan = topology.partition_plan(&app, |t| {
            Ok(*b.partitions.get(t).unwrap_or(&b.default_partitions))
        })?;
        let task_counts = plan.task_counts.clone();
        let mut partitions: HashMap<String, i32> = b.partitions.clone();
        partitions.extend(plan.topic_partitions);
        partitions.extend(plan.changelogs);
        let (temp_dir, state_dir) = match b.state_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().map_err(|source| StreamsError::Io {
                    path: std::env::temp_dir().display().to_string(),
                    source,
                })?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let partitions = Rc::new(partitions);
        let outbox = Rc::new(RefCell::new(Vec::new()));
        let changelog: ChangelogBuffer = Arc::new(Mutex::new(Vec::new()));
        let changelog_discarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let changelog_writer: Arc<dyn ChangelogWriter> = Arc::new(DriverChangelog {
            buffer: changelog.clone(),
            retain: b.retain_records,
            discarded: changelog_discarded.clone(),
        });
        let rocksdb = RocksDbResources::new(32 << 20, 16 << 20);
        // Global stores start empty: the driver's topics start empty.
        let (globals, _) = GlobalStores::open(
            &topology,
            &state_dir.join(&*app).join("global"),
            &rocksdb,
            |_| false,
            |_| Ok(()),
        )?;
        let globals = Arc::new(globals);
        let global_topics = crate::global::topic_index(&globals);
        let mut tasks = Vec::new();
        let mut task_index = HashMap::new();
        let mut readers = HashMap::new();
        for s in &subs {
            for t in &s.source_topics {
                readers.insert(topology.resolve_topic(&app, t), s.id);
            }
        }
        let read_topics: Rc<HashSet<String>> = Rc::new(
            readers
                .keys()
                .chain(global_topics.keys())
                .cloned()
                .collect(),
        );
        let discarded = Rc::new(Cell::new(0));
        // One record cache for the driver, as for one stream thread.
        let cache = state_store::CacheBudget::new(b.cache_max_bytes);
        for s in &subs {
            for p in 0..task_counts[s.id] {
                let env = TaskEnv {
                    application_id: app.clone(),
                    state_dir: state_dir.join(&*app),
                    rocksdb: rocksdb.clone(),
                    cache: Some(cache.clone()),
                    collector: Box::new(DriverCollector {
                        out: outbox.clone(),
                        partitions: partitions.clone(),
                        default_partitions: b.default_partitions,
                        read_topics: read_topics.clone(),
                        retain: b.retain_records,
                        discarded: discarded.clone(),
                        last: None,
                    }),
                    changelog: Some(changelog_writer.clone()),
                    deserialization_handler: b.handler.clone(),
                    processing_handler: b.processing_handler.clone(),
                    dead_letter_topic: b.dead_letter_topic.clone(),
                    wall_clock: b.wall_clock,
                    globals: globals.clone(),
                    exactly_once: false,
                };
                task_index.insert((s.id, p), tasks.len());
                tasks.push(Task::new(&topology, s, p, env, None)?);
            }
        }
        Ok(TopologyTestDriver {
            state: RefCell::new(DriverState {
                cache,
                topology,
                application_id: app,
                partitions,
                default_partitions: b.default_partitions,
                topic_ids: HashMap::new(),
                logs: Vec::new(),
                last_topic: None,
                tasks,
                readers,
                task_index,
                outbox,
                spare: Vec::new(),
                discarded,
                changelog_discarded,
                changelog,
                wall_clock: b.wall_clock,
                retain: b.retain_records,
                auto_commit: b.auto_commit,
                globals,
                global_topics,
                _temp_dir: temp_dir,
            }),
        })
    }

    /// The full name of `topic`: internal topics get the application id prefix.
    pub fn resolve_topic(&self, topic: &str) -> String {
        let st = self.state.borrow();
        st.topology.resolve_topic(&st.application_id, topic)
    }

    /// The number of partitions of `topic` (full name).
    pub fn partitions_of(&self, topic: &str) -> i32 {
        self.state.borrow().partitions_of(topic)
    }

    /// A typed handle to pipe records into `topic`. Records without an explicit timestamp get 0, then advance by
    /// nothing; see [`TestInputTopic::with_auto_advance`].
    pub fn input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestInputTopic<'_, K, V> {
        TestInputTopic {
            driver: self,
            topic: topic.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            next_timestamp: Cell::new(0),
            advance_ms: 0,
            key_buf: RefCell::new(Vec::new()),
            value_buf: RefCell::new(Vec::new()),
        }
    }

    /// A typed handle to read what was written to `topic` (a full topic name: pass
    /// [`TopologyTestDriver::resolve_topic`] for internal ones). Reading consumes records, shared by every handle
    /// of the topic.
    pub fn output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestOutputTopic<'_, K, V> {
        TestOutputTopic {
            driver: self,
            topic: topic.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Pipes raw records into `topic` in order, as one batch: all are queued first (like one poll), then
    /// everything that follows from them is processed, then caches are flushed (like one commit).
    pub fn pipe_raw(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (Option<i32>, RawRecord)>,
    ) -> Result<(), StreamsError> {
        self.pipe_raw_batch(records.into_iter().map(|(p, r)| (topic, p, r)))
    }

    /// Pipes raw records into several topics as one batch (see [`TopologyTestDriver::pipe_raw`]): a task reading
    /// several of them then picks records in timestamp order across its partitions.
    pub fn pipe_raw_batch<'t>(
        &self,
        records: impl IntoIterator<Item = (&'t str, Option<i32>, RawRecord)>,
    ) -> Result<(), StreamsError> {
        let mut st = self.state.borrow_mut();
        for (topic, partition, record) in records {
            st.append(topic, partition, record)?;
        }
        st.run()?;
        if st.auto_commit {
            st.commit()?;
        }
        Ok(())
    }

    /// Pipes borrowed records into `topic` as one batch, like [`TopologyTestDriver::pipe_raw`] without copying
    /// them in (they are copied only when records are retained). Benchmarks use it to feed the engine from one
    /// buffer, as the runtime does from the consumer's messages.
    pub fn pipe_raw_refs<'r>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (Option<i32>, RawRecordRef<'r>)>,
    ) -> Result<(), StreamsError> {
        let mut st = self.state.borrow_mut();
        for (partition, record) in records {
            if st.retain {
                let owned = RawRecord {
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    timestamp: record.timestamp,
                    headers: record.headers,
                    offset: -1,
                };
                st.append(topic, partition, owned)?;
            } else {
                st.append_ref(topic, partition, record)?;
            }
        }
        st.run()?;
        if st.auto_commit {
            st.commit()?;
        }
        Ok(())
    }

    /// Commits: flushes every store's cache (writing changelog records) and the stores themselves.
    pub fn commit(&self) -> Result<(), StreamsError> {
        self.state.borrow_mut().commit()
    }

    /// Bytes the record cache holds now, over every cached store of every task: never more than
    /// [`TestDriverBuilder::cache_max_bytes`] after a record is processed.
    ///
    /// ```
    /// use streams_core::{Serdes, SourceOptions, Topology, TopologyTestDriver};
    ///
    /// let mut topology = Topology::new();
    /// topology
    ///     .add_source("src", &["in"], SourceOptions::new(Serdes::string(), Serdes::string()))
    ///     .unwrap();
    /// let driver = TopologyTestDriver::builder(topology).cache_max_bytes(1000).build().unwrap();
    /// assert_eq!(driver.record_cache_bytes(), 0);
    /// ```
    pub fn record_cache_bytes(&self) -> usize {
        self.state.borrow().cache.used()
    }

    /// A read-only view of store `name` across all its partitions.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyKeyValueStore<K, V>, StreamsError> {
        let st = self.state.borrow();
        if st.topology.is_global_store(name) {
            let slot = st.globals.get(name).map(|s| s.store.clone());
            return ReadOnlyKeyValueStore::new(&st.topology, name, slot.into_iter().collect());
        }
        let parts = st
            .tasks
            .iter()
            .flat_map(|t| t.stores().iter())
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .collect();
        ReadOnlyKeyValueStore::new(&st.topology, name, parts)
    }

    /// A read-only view of versioned store `name` across all its partitions.
    pub fn versioned_key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlyVersionedKeyValueStore<K, V>, StreamsError> {
        let st = self.state.borrow();
        let parts = st
            .tasks
            .iter()
            .flat_map(|t| t.stores().iter())
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .collect();
        crate::ReadOnlyVersionedKeyValueStore::new(&st.topology, name, parts)
    }

    /// A read-only view of window store `name` (a time- or sliding-windowed aggregation's) across all its
    /// partitions.
    pub fn window_store<K: Clone + 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlyWindowStore<K, V>, StreamsError> {
        Ok(crate::ReadOnlyWindowStore::new(
            self.key_value_store::<state_store::Windowed<K>, V>(name)?,
        ))
    }

    /// A read-only view of session store `name` (a session-windowed aggregation's) across all its partitions.
    pub fn session_store<K: Clone + 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlySessionStore<K, V>, StreamsError> {
        Ok(crate::ReadOnlySessionStore::new(
            self.key_value_store::<state_store::Windowed<K>, V>(name)?,
        ))
    }

    /// Advances the mock wall clock, firing wall-clock punctuations, then processes what they produced.
    pub fn advance_wall_clock(&self, by: Duration) -> Result<(), StreamsError> {
        let mut st = self.state.borrow_mut();
        st.wall_clock = st
            .wall_clock
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let now = st.wall_clock;
        for t in 0..st.tasks.len() {
            if let Err(e) = st.tasks[t].set_wall_clock(now) {
                return Err(st.deliver_then(e));
            }
            st.drain_outbox()?;
        }
        st.run()?;
        st.commit()
    }

    /// The mock wall clock in ms.
    pub fn wall_clock(&self) -> i64 {
        self.state.borrow().wall_clock
    }

    /// Counters summed over every task.
    pub fn metrics(&self) -> TaskMetricsSnapshot {
        let st = self.state.borrow();
        st.tasks
            .iter()
            .map(Task::metrics)
            .fold(TaskMetricsSnapshot::default(), |a, m| TaskMetricsSnapshot {
                processed: a.processed + m.processed,
                skipped_records: a.skipped_records + m.skipped_records,
                dead_lettered: a.dead_lettered + m.dead_lettered,
                punctuations: a.punctuations + m.punctuations,
                dropped_records: a.dropped_records + m.dropped_records,
            })
    }

    /// Records written to topics no task reads and dropped because records are not retained
    /// (see [`TestDriverBuilder::retain_records`]).
    pub fn discarded_records(&self) -> u64 {
        let st = self.state.borrow();
        st.discarded.get() + st.changelog_discarded.load(Ordering::Relaxed)
    }

    /// Stream time of each task, by (sub-topology, partition).
    pub fn stream_times(&self) -> BTreeMap<(usize, i32), i64> {
        let st = self.state.borrow();
        st.tasks
            .iter()
            .map(|t| ((t.id().subtopology, t.id().partition), t.stream_time()))
            .collect()
    }

    /// Names of the topics each task reads, by (sub-topology, partition).
    pub fn task_inputs(&self) -> BTreeMap<(usize, i32), Vec<String>> {
        let st = self.state.borrow();
        st.tasks
            .iter()
            .map(|t| {
                (
                    (t.id().subtopology, t.id().partition),
                    t.input_topics().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    /// Closes every task (processors, then stores). Also done on drop.
    pub fn close(self) -> Result<(), StreamsError> {
        let mut st = self.state.into_inner();
        for t in &mut st.tasks {
            t.close()?;
        }
        Ok(())
    }
}

/// Pipes typed records into one topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<'a, K, V> {
    driver: &'a TopologyTestDriver,
    topic: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    next_timestamp: Cell<i64>,
    advance_ms: i64,
    key_buf: RefCell<Vec<u8>>,
    value_buf: RefCell<Vec<u8>>,
}

impl<K: 'static, V: 'static> TestInputTopic<'_, K, V> {
    /// Records piped without a timestamp start at `start_ms` and advance by `advance` each.
    pub fn with_auto_advance(mut self, start_ms: i64, advance: Duration) -> Self {
        self.next_timestamp.set(start_ms);
        self.advance_ms = i64::try_from(advance.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Moves the automatic timestamp forward.
    pub fn advance_time(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.next_timestamp
            .set(self.next_timestamp.get().saturating_add(by));
    }

    fn auto_timestamp(&self) -> i64 {
        let t = self.next_timestamp.get();
        self.next_timestamp.set(t.saturating_add(self.advance_ms));
        t
    }

    fn encode(&self, r: TestRecord<K, V>) -> Result<(Option<i32>, RawRecord), StreamsError> {
        let mut kb = self.key_buf.borrow_mut();
        let mut vb = self.value_buf.borrow_mut();
        let err = |role, source| StreamsError::Serialization {
            topic: self.topic.clone(),
            role,
            source,
        };
        let has_key = self
            .key_serde
            .serialize_nullable(&r.key, &mut kb)
            .map_err(|e| err("key", e))?;
        let has_value = self
            .value_serde
            .serialize_nullable(&r.value, &mut vb)
            .map_err(|e| err("value", e))?;
        Ok((
            r.partition,
            RawRecord {
                key: has_key.then(|| kb.clone()),
                value: has_value.then(|| vb.clone()),
                timestamp: r.timestamp,
                headers: r.headers,
                offset: -1,
            },
        ))
    }

    /// Pipes one record with the automatic timestamp.
    pub fn pipe_input(&self, key: K, value: V) -> Result<(), StreamsError> {
        let ts = self.auto_timestamp();
        self.pipe_record(TestRecord::new(key, value, ts))
    }

    /// Pipes one record at `timestamp`.
    pub fn pipe_input_at(&self, key: K, value: V, timestamp: i64) -> Result<(), StreamsError> {
        self.pipe_record(TestRecord::new(key, value, timestamp))
    }

    /// Pipes one record as given (headers, explicit partition).
    pub fn pipe_record(&self, record: TestRecord<K, V>) -> Result<(), StreamsError> {
        let raw = self.encode(record)?;
        self.driver.pipe_raw(&self.topic, [raw])
    }

    /// Pipes records in order; caches are flushed once at the end, as one commit.
    pub fn pipe_records(
        &self,
        records: impl IntoIterator<Item = TestRecord<K, V>>,
    ) -> Result<(), StreamsError> {
        let raws = records
            .into_iter()
            .map(|r| self.encode(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.driver.pipe_raw(&self.topic, raws)
    }

    /// Pipes key-value pairs with automatic timestamps.
    pub fn pipe_key_values(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), StreamsError> {
        let records: Vec<_> = pairs
            .into_iter()
            .map(|(k, v)| TestRecord::new(k, v, self.auto_timestamp()))
            .collect();
        self.pipe_records(records)
    }
}

/// Reads typed records from one topic of a [`TopologyTestDriver`], in the order they were written.
pub struct TestOutputTopic<'a, K, V> {
    driver: &'a TopologyTestDriver,
    topic: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

impl<K: 'static, V: 'static> TestOutputTopic<'_, K, V> {
    fn decode(&self, partition: i32, raw: &RawRecord) -> Result<TestRecord<K, V>, StreamsError> {
        let err = |role, source| StreamsError::Deserialization {
            topic: self.topic.clone(),
            partition,
            offset: raw.offset,
            role,
            source,
        };
        Ok(TestRecord {
            key: self
                .key_serde
                .deserialize_nullable(raw.key.as_deref())
                .map_err(|e| err("key", e))?,
            value: self
                .value_serde
                .deserialize_nullable(raw.value.as_deref())
                .map_err(|e| err("value", e))?,
            timestamp: raw.timestamp,
            headers: raw.headers.clone(),
            partition: Some(partition),
        })
    }

    /// The next unread record, or `None` when all have been read.
    pub fn read_record(&self) -> Result<Option<TestRecord<K, V>>, StreamsError> {
        let mut st = self.driver.state.borrow_mut();
        let Some(&id) = st.topic_ids.get(&self.topic) else {
            return Ok(None);
        };
        let log = &mut st.logs[id];
        let Some(&(p, i)) = log.order.get(log.read_cursor) else {
            return Ok(None);
        };
        log.read_cursor += 1;
        let raw = log.partitions[p as usize][i].clone();
        drop(st);
        self.decode(p, &raw).map(Some)
    }

    /// The next unread key and value.
    pub fn read_key_value(&self) -> Result<Option<(K, V)>, StreamsError> {
        Ok(self.read_record()?.map(|r| (r.key, r.value)))
    }

    /// The next unread value.
    pub fn read_value(&self) -> Result<Option<V>, StreamsError> {
        Ok(self.read_record()?.map(|r| r.value))
    }

    /// Every unread record.
    pub fn read_records_to_vec(&self) -> Result<Vec<TestRecord<K, V>>, StreamsError> {
        let mut out = Vec::new();
        while let Some(r) = self.read_record()? {
            out.push(r);
        }
        Ok(out)
    }

    /// Every unread key and value.
    pub fn read_key_values_to_vec(&self) -> Result<Vec<(K, V)>, StreamsError> {
        Ok(self
            .read_records_to_vec()?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// The latest unread value of each key (for a table's output, read values as `Option<_>` to see deletions).
    pub fn read_key_values_to_map(&self) -> Result<BTreeMap<K, V>, StreamsError>
    where
        K: Ord,
    {
        Ok(self
            .read_records_to_vec()?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// Records not read yet.
    pub fn queue_size(&self) -> usize {
        let st = self.driver.state.borrow();
        st.topic_ids
            .get(&self.topic)
            .map_or(0, |&id| st.logs[id].order.len() - st.logs[id].read_cursor)
    }

    /// Whether every record has been read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }
}
