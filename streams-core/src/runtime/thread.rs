//! A stream thread: one group consumer, one producer, one restore consumer, and the active tasks of the
//! partitions assigned to it. The hot path (poll a batch, process, produce) is synchronous.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::producer::Producer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use state_store::{RocksDbResources, SharedKeyValueStore};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::record::{Headers, RawRecordRef};
use crate::runtime::checkpoint;
use crate::runtime::clients::{
    client_config, client_error, create_producer, ProducerChangelog, ProducerCollector,
    StreamsProducer,
};
use crate::runtime::config::{ClientKind, StreamsConfig};
use crate::runtime::history::MetricsHistory;
use crate::runtime::restore::{ChangelogRestorer, StateRestoreListener};
use crate::runtime::security::StreamsClientContext;
use crate::runtime::thread_metadata::{
    self, StoreRestoration, TaskMetadata, TaskState, ThreadMetadata, ThreadSnapshot,
};
use crate::task::{flush_stores, Task, TaskEnv, TaskMetricsSnapshot};
use crate::topology::{PartitionPlan, SubTopology, Topology};

/// Lifecycle of one stream thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadState {
    Starting,
    PartitionsRevoked,
    PartitionsAssigned,
    Running,
    PendingShutdown,
    Dead,
}

enum Event {
    Revoked,
    /// The partitions were lost (session timeout, `max.poll.interval.ms` exceeded, fencing, a rebalance error):
    /// another member may own them already, so the tasks are closed dirty.
    Lost,
    Assigned(Vec<(String, i32)>),
}

/// What a commit needs to know about one task, reachable from the rebalance callback.
struct TaskCommit {
    dir: PathBuf,
    stores: Vec<(String, SharedKeyValueStore)>,
    /// Changelog partitions of the task's logged stores and the next offset each is restored up to.
    positions: BTreeMap<(String, i32), i64>,
}

/// State shared by the thread's loop and its consumer's rebalance callbacks.
pub(crate) struct ThreadShared {
    pub name: String,
    pub shutdown: AtomicBool,
    pub state: Mutex<ThreadState>,
    events: Mutex<Vec<Event>>,
    commits: Mutex<CommitState>,
    callback_error: Mutex<Option<StreamsError>>,
    on_state_change: Arc<dyn Fn() + Send + Sync>,
    /// Counters of every task this thread ran, closed ones included.
    pub metrics: Mutex<TaskMetricsSnapshot>,
    /// What the thread's tasks are doing, refreshed at most once a second and at each commit, plus the partition
    /// ends its consumer's statistics report.
    snapshot: Mutex<ThreadSnapshot>,
}

fn add(a: TaskMetricsSnapshot, b: TaskMetricsSnapshot) -> TaskMetricsSnapshot {
    TaskMetricsSnapshot {
        processed: a.processed + b.processed,
        skipped_records: a.skipped_records + b.skipped_records,
        dead_lettered: a.dead_lettered + b.dead_lettered,
        punctuations: a.punctuations + b.punctuations,
        dropped_records: a.dropped_records + b.dropped_records,
    }
}

/// Sums counters.
pub(crate) fn sum_metrics(
    items: impl IntoIterator<Item = TaskMetricsSnapshot>,
) -> TaskMetricsSnapshot {
    items.into_iter().fold(TaskMetricsSnapshot::default(), add)
}

struct CommitState {
    producer: Arc<StreamsProducer>,
    offsets: HashMap<(String, i32), i64>,
    /// The offsets of the last successful commit.
    committed: HashMap<(String, i32), i64>,
    tasks: BTreeMap<TaskId, TaskCommit>,
}

impl ThreadShared {
    /// Handles on the stores called `name` of this thread's tasks.
    pub(crate) fn stores_named(&self, name: &str) -> Vec<SharedKeyValueStore> {
        self.commits.lock().map_or_else(
            |_| Vec::new(),
            |c| {
                c.tasks
                    .values()
                    .flat_map(|t| t.stores.iter())
                    .filter(|(n, _)| n == name)
                    .map(|(_, s)| s.clone())
                    .collect()
            },
        )
    }

    /// The thread's tasks as they stand now.
    pub(crate) fn thread_metadata(&self) -> ThreadMetadata {
        let thread_state = self
            .state
            .lock()
            .map_or_else(|_| "Dead".to_string(), |s| format!("{:?}", *s));
        let active_tasks = self.snapshot.lock().map(|s| s.tasks()).unwrap_or_default();
        ThreadMetadata {
            thread_name: self.name.clone(),
            thread_state,
            active_tasks,
            standby_tasks: Vec::new(),
        }
    }

    fn update_task(&self, id: TaskId, f: impl FnOnce(&mut TaskMetadata)) {
        if let Ok(mut s) = self.snapshot.lock() {
            if let Some(t) = s.tasks.get_mut(&id) {
                f(t);
            }
        }
    }

    fn set_state(&self, s: ThreadState) {
        if let Ok(mut st) = self.state.lock() {
            *st = s;
        }
        (self.on_state_change)();
    }
}

fn kafka(what: &str, e: impl std::fmt::Display) -> StreamsError {
    StreamsError::Processor {
        node: String::new(),
        message: format!("{what}: {e}"),
    }
}

/// Commits in the order that keeps at-least-once: flush caches (their writes go to the changelogs), flush the
/// producer, flush the stores, write checkpoints, then commit the consumed offsets.
fn commit<C: ConsumerContext>(
    state: &mut CommitState,
    consumer: &BaseConsumer<C>,
) -> Result<(), StreamsError> {
    for t in state.tasks.values() {
        flush_stores(&t.stores)?;
    }
    state
        .producer
        .flush(Duration::from_secs(60))
        .map_err(|e| kafka("producer flush failed", e))?;
    delivery_failure(&state.producer)?;
    {
        let acked = state
            .producer
            .context()
            .acked
            .lock()
            .map_err(|_| kafka("delivery state", "poisoned"))?;
        for t in state.tasks.values_mut() {
            for (key, pos) in t.positions.iter_mut() {
                if let Some(&o) = acked.get(key) {
                    *pos = (*pos).max(o + 1);
                }
            }
            if !t.positions.is_empty() {
                checkpoint::write(&t.dir, &t.positions)?;
            }
        }
    }
    if !state.offsets.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), o) in &state.offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .map_err(|e| kafka("commit", e))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
            return Err(match e {
                KafkaError::ConsumerCommit(
                    C::RebalanceInProgress | C::IllegalGeneration | C::UnknownMemberId,
                ) => StreamsError::TaskMigrated(format!("offset commit refused: {e}")),
                e => kafka("offset commit failed", e),
            });
        }
        let CommitState {
            offsets, committed, ..
        } = state;
        committed.extend(offsets.iter().map(|(k, v)| (k.clone(), *v)));
    }
    Ok(())
}

/// The first delivery failure the producer reported, as an error: an undelivered record would be lost.
fn delivery_failure(producer: &StreamsProducer) -> Result<(), StreamsError> {
    match producer
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

pub(crate) struct StreamsConsumerContext {
    shared: Arc<ThreadShared>,
    client: StreamsClientContext,
}

impl ClientContext for StreamsConsumerContext {
    /// The consumer's statistics (every `statistics.interval.ms`) carry the high watermark of each partition it
    /// fetches: the cheap source of the partition ends that consumer lag is measured against.
    fn stats_raw(&self, statistics: &[u8]) {
        let Some(ends) = thread_metadata::high_watermarks(statistics) else {
            tracing::debug!("unreadable consumer statistics");
            return;
        };
        if let Ok(mut s) = self.shared.snapshot.lock() {
            s.end_offsets.extend(ends);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.client.log(level, fac, log_message);
    }

    /// A broker refusing the certificate or the credentials stops the thread (the uncaught error handler
    /// decides what follows) instead of letting librdkafka retry forever.
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(e) = self.client.report(&error, reason) {
            if let Ok(mut slot) = self.shared.callback_error.lock() {
                slot.get_or_insert(e);
            }
        }
    }
}

impl StreamsConsumerContext {
    /// The assignment is lost: nothing may be flushed, checkpointed or committed for it (the new owner may already
    /// be writing its changelogs), so the commit state forgets every task and the loop closes them dirty.
    fn on_lost(&self, why: &str) {
        tracing::warn!(thread = %self.shared.name, reason = why, "partitions lost: closing their tasks without flushing, checkpointing or committing");
        if let Ok(mut c) = self.shared.commits.lock() {
            c.tasks.clear();
            c.offsets.clear();
            c.committed.clear();
        }
        if let Ok(mut ev) = self.shared.events.lock() {
            ev.push(Event::Lost);
        }
        self.shared.set_state(ThreadState::PartitionsRevoked);
    }
}

impl ConsumerContext for StreamsConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(_) if consumer.assignment_lost() => {
                self.on_lost(
                    "the assignment was lost (session timeout or max.poll.interval.ms exceeded)",
                );
            }
            Rebalance::Revoke(_) => {
                // Commit before giving the partitions up, so their next owner starts where we stopped.
                let r = match self.shared.commits.lock() {
                    Ok(mut c) => commit(&mut c, consumer),
                    Err(_) => Err(kafka("commit state", "poisoned")),
                };
                if let Err(StreamsError::TaskMigrated(e)) = &r {
                    // Another member owns the partitions already: it reprocesses from the last commit.
                    tracing::warn!(thread = %self.shared.name, error = %e, "commit on revocation refused");
                } else if let Err(e) = r {
                    tracing::error!(thread = %self.shared.name, error = %e, "commit on revocation failed");
                    if let Ok(mut slot) = self.shared.callback_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
                if let Ok(mut ev) = self.shared.events.lock() {
                    ev.push(Event::Revoked);
                }
                self.shared.set_state(ThreadState::PartitionsRevoked);
            }
            Rebalance::Assign(tpl) => {
                let parts = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                if let Ok(mut ev) = self.shared.events.lock() {
                    ev.push(Event::Assigned(parts));
                }
                self.shared.set_state(ThreadState::PartitionsAssigned);
            }
            // The consumer unassigns every partition after a rebalance error, without a revocation.
            Rebalance::Error(e) => self.on_lost(&format!("rebalance error: {e}")),
        }
    }
}

/// Everything a thread needs, shared by all threads of an instance.
pub(crate) struct ThreadContext {
    pub topology: Arc<Topology>,
    pub subs: Arc<Vec<SubTopology>>,
    pub plan: Arc<PartitionPlan>,
    pub config: StreamsConfig,
    pub rocksdb: RocksDbResources,
    pub restore_listener: Arc<dyn StateRestoreListener>,
    /// Told the partitions a thread owns after each assignment.
    pub on_assignment: AssignmentHook,
    /// The instance's global stores, kept up to date by the global thread.
    pub globals: Arc<crate::global::GlobalStores>,
    /// The instance's throughput and commit-latency samples.
    pub history: Arc<MetricsHistory>,
}

/// Receives a thread's name and the partitions it owns after an assignment.
pub(crate) type AssignmentHook = Arc<dyn Fn(&str, Vec<(String, i32)>) + Send + Sync>;

/// Called with the thread's result when it ends.
pub(crate) type ExitHook = Arc<dyn Fn(&Arc<ThreadShared>, Result<(), StreamsError>) + Send + Sync>;

/// Spawns a stream thread.
pub(crate) fn spawn(
    ctx: Arc<ThreadContext>,
    index: usize,
    on_state_change: Arc<dyn Fn() + Send + Sync>,
    on_exit: ExitHook,
) -> Result<(Arc<ThreadShared>, std::thread::JoinHandle<()>), StreamsError> {
    let name = format!("{}-StreamThread-{index}", ctx.config.application_id);
    let producer = create_producer(&ctx.config, &format!("{name}-producer"))?;
    let shared = Arc::new(ThreadShared {
        name: name.clone(),
        shutdown: AtomicBool::new(false),
        state: Mutex::new(ThreadState::Starting),
        events: Mutex::new(Vec::new()),
        commits: Mutex::new(CommitState {
            producer: producer.clone(),
            offsets: HashMap::new(),
            committed: HashMap::new(),
            tasks: BTreeMap::new(),
        }),
        callback_error: Mutex::new(None),
        on_state_change,
        metrics: Mutex::new(TaskMetricsSnapshot::default()),
        snapshot: Mutex::new(ThreadSnapshot::default()),
    });
    let s2 = shared.clone();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let span = tracing::info_span!("stream_thread", thread = %s2.name);
            let _enter = span.enter();
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ctx, &s2, producer)))
                    .unwrap_or_else(|payload| Err(thread_panic(&s2.name, &*payload)));
            s2.set_state(ThreadState::Dead);
            on_exit(&s2, r);
        })
        .map_err(|source| StreamsError::Io { path: name, source })?;
    Ok((shared, handle))
}

/// A panic outside any task, as an error.
fn thread_panic(thread: &str, payload: &(dyn std::any::Any + Send)) -> StreamsError {
    StreamsError::Panic {
        thread: thread.to_string(),
        task: None,
        processor: None,
        message: crate::error::panic_message(payload),
    }
}

struct Loop<'a> {
    ctx: &'a ThreadContext,
    shared: &'a Arc<ThreadShared>,
    restore_consumer: BaseConsumer<StreamsClientContext>,
    producer: Arc<StreamsProducer>,
    tasks: BTreeMap<TaskId, Task>,
    /// (topic, partition) -> (task, input index).
    routes: HashMap<(String, i32), (TaskId, usize)>,
    /// The route of the last record polled: records come in runs per partition, so most records skip the
    /// lookup (and the topic name's copy it needs).
    last_route: Option<(String, i32, (TaskId, usize))>,
    /// Full source topic name -> sub-topology.
    readers: HashMap<String, usize>,
    paused: HashSet<(String, i32)>,
    cache_per_store: usize,
    /// Counters of closed tasks.
    closed_metrics: TaskMetricsSnapshot,
    /// Processed and skipped counts already reported to the `metrics` facade, per task.
    reported: HashMap<TaskId, (u64, u64, u64)>,
    /// Records processed by this thread already added to the instance's history.
    counted: u64,
    /// When the task snapshot was last refreshed.
    last_snapshot: Instant,
    /// The partitions were revoked and not yet assigned again: the tasks are committed and wait to be closed or
    /// resumed, so their wall-clock punctuations must not run.
    suspended: bool,
}

/// How often the consumer reports statistics (and with them the partition ends lag is measured against),
/// unless `statistics.interval.ms` is configured.
const STATISTICS_INTERVAL_MS: &str = "3000";

/// How often a thread refreshes its published task snapshot between commits.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Passes restoration progress to the application's listener and into the thread's task snapshot.
struct TaskRestoreProgress {
    inner: Arc<dyn StateRestoreListener>,
    shared: Arc<ThreadShared>,
    task: TaskId,
}

impl TaskRestoreProgress {
    fn update(&self, store: &str, partition: i32, f: impl FnOnce(&mut StoreRestoration)) {
        self.shared.update_task(self.task, |t| {
            let i = match t
                .restoration
                .iter()
                .position(|r| r.store == store && r.partition == partition)
            {
                Some(i) => i,
                None => {
                    t.restoration.push(StoreRestoration {
                        store: store.to_string(),
                        partition,
                        restored: 0,
                        total: 0,
                        done: false,
                    });
                    t.restoration.len() - 1
                }
            };
            f(&mut t.restoration[i]);
        });
    }
}

impl StateRestoreListener for TaskRestoreProgress {
    fn on_restore_start(&self, store: &str, partition: i32, start: i64, end: i64) {
        self.update(store, partition, |r| {
            r.total = (end - start).max(0) as u64;
            r.restored = 0;
            r.done = false;
        });
        self.inner.on_restore_start(store, partition, start, end);
    }

    fn on_batch_restored(&self, store: &str, partition: i32, restored: u64, total: u64) {
        self.update(store, partition, |r| {
            r.restored = restored;
            r.total = total;
        });
        self.inner
            .on_batch_restored(store, partition, restored, total);
    }

    fn on_restore_end(&self, store: &str, partition: i32, restored: u64) {
        self.update(store, partition, |r| {
            r.restored = restored;
            r.done = true;
        });
        self.inner.on_restore_end(store, partition, restored);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The main consumer's settings: the user's, then what the runtime manages (set last, so nothing overrides it).
/// A static membership id (`group.instance.id`) gets the thread's number appended, as in Kafka Streams: every
/// thread is its own member.
pub(crate) fn main_consumer_config(config: &StreamsConfig, thread_name: &str) -> ClientConfig {
    let mut c = client_config(config, ClientKind::MainConsumer);
    if c.get("statistics.interval.ms").is_none() {
        // Partition ends for consumer lag (see `StreamsConsumerContext::stats_raw`), unless configured otherwise.
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    if c.get("auto.offset.reset").is_none() {
        c.set("auto.offset.reset", "earliest");
    }
    if let Some(id) = c.get("group.instance.id").map(str::to_string) {
        let thread = thread_name.rsplit('-').next().unwrap_or(thread_name);
        c.set("group.instance.id", format!("{id}-{thread}"));
    }
    c.set("group.id", &config.application_id)
        .set("client.id", format!("{thread_name}-consumer"))
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_uncommitted")
        .set("enable.partition.eof", "false");
    c
}

fn run(
    ctx: &ThreadContext,
    shared: &Arc<ThreadShared>,
    producer: Arc<StreamsProducer>,
) -> Result<(), StreamsError> {
    let app = &ctx.config.application_id;
    let c = main_consumer_config(&ctx.config, &shared.name);
    let consumer: BaseConsumer<StreamsConsumerContext> = c
        .create_with_context(StreamsConsumerContext {
            shared: shared.clone(),
            client: StreamsClientContext::new(
                &ctx.config,
                ClientKind::MainConsumer,
                format!("main consumer {}-consumer", shared.name),
            ),
        })
        .map_err(|e| client_error(&ctx.config, ClientKind::MainConsumer, e))?;
    let mut rc = client_config(&ctx.config, ClientKind::RestoreConsumer);
    rc.set("group.id", format!("{app}-restore"))
        .set("client.id", format!("{}-restore-consumer", shared.name))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    let fatal = shared.clone();
    let restore_context = StreamsClientContext::new(
        &ctx.config,
        ClientKind::RestoreConsumer,
        format!("restore consumer {}-restore-consumer", shared.name),
    )
    .on_fatal(move |e| {
        if let Ok(mut slot) = fatal.callback_error.lock() {
            slot.get_or_insert(e);
        }
    });
    let restore_consumer: BaseConsumer<StreamsClientContext> = rc
        .create_with_context(restore_context)
        .map_err(|e| client_error(&ctx.config, ClientKind::RestoreConsumer, e))?;

    let mut readers = HashMap::new();
    for s in ctx.subs.iter() {
        for t in &s.source_topics {
            readers.insert(ctx.topology.resolve_topic(app, t), s.id);
        }
    }
    let topics: Vec<&str> = readers.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka("subscribe failed", e))?;
    let store_instances: usize = ctx
        .subs
        .iter()
        .map(|s| s.stores.len() * ctx.plan.task_counts[s.id].max(0) as usize)
        .sum();
    let mut l = Loop {
        ctx,
        shared,
        restore_consumer,
        producer,
        tasks: BTreeMap::new(),
        routes: HashMap::new(),
        last_route: None,
        readers,
        paused: HashSet::new(),
        cache_per_store: ctx.config.cache_max_bytes / store_instances.max(1),
        closed_metrics: TaskMetricsSnapshot::default(),
        reported: HashMap::new(),
        counted: 0,
        last_snapshot: Instant::now(),
        suspended: false,
    };
    // A panic in application code is caught per task (naming it); this catches the rest, so the thread stops as
    // on a returned error.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.main_loop(&consumer)))
        .unwrap_or_else(|payload| Err(thread_panic(&shared.name, &*payload)));
    l.shutdown(&consumer, result.is_ok())?;
    result
}

impl Loop<'_> {
    fn main_loop(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let mut last_commit = Instant::now();
        let max_buffered = self.ctx.config.buffered_records_per_partition;
        let poll_batch = (max_buffered / 2).max(1);
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            let idle = !self.tasks.values().any(Task::has_queued);
            let mut polled = 0usize;
            loop {
                let timeout = if polled == 0 && idle {
                    self.ctx.config.poll_timeout
                } else {
                    Duration::ZERO
                };
                let msg = consumer.poll(timeout);
                self.apply_events()?;
                let m = match msg {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let route = match &self.last_route {
                    Some((t, p, r)) if *p == m.partition() && t == m.topic() => Some(*r),
                    _ => {
                        let key = (m.topic().to_string(), m.partition());
                        let r = self.routes.get(&key).copied();
                        if let Some(r) = r {
                            self.last_route = Some((key.0, key.1, r));
                        }
                        r
                    }
                };
                let Some((task_id, input)) = route else {
                    continue;
                };
                let mut headers = Headers::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.add(header.key, header.value.map(<[u8]>::to_vec));
                    }
                }
                let task = self
                    .tasks
                    .get_mut(&task_id)
                    .expect("routes point at live tasks");
                let raw = RawRecordRef {
                    key: m.key(),
                    value: m.payload(),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                    headers,
                    offset: m.offset(),
                };
                task.catch_panics(&self.shared.name, |t| t.enqueue_at(input, raw))?;
                if task.queued_at(input) >= max_buffered
                    && !self
                        .paused
                        .contains(&(m.topic().to_string(), m.partition()))
                {
                    let key = (m.topic().to_string(), m.partition());
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&key.0, key.1);
                    consumer.pause(&tpl).map_err(|e| kafka("pause", e))?;
                    self.paused.insert(key);
                }
                polled += 1;
                // Poll at most half a partition buffer per round: everything queued is processed before the next
                // poll, so in steady state no partition fills up. Pausing is for a slow topology only, because
                // librdkafka drops what it prefetched for a paused partition and fetches it again on resume.
                if polled >= poll_batch {
                    break;
                }
            }
            if let Some(e) = self
                .shared
                .callback_error
                .lock()
                .ok()
                .and_then(|mut e| e.take())
            {
                return Err(e);
            }
            // Process what is queued, a bounded slice per task so no task starves the others.
            for task in self.tasks.values_mut() {
                task.catch_panics(&self.shared.name, |t| {
                    for _ in 0..max_buffered {
                        if !t.process_one()? {
                            break;
                        }
                    }
                    Ok(())
                })?;
            }
            self.producer.poll(Duration::ZERO);
            self.record_offsets();
            self.publish_metrics();
            self.refresh_snapshot(consumer, false);
            self.resume_drained(consumer, max_buffered / 2)?;
            // Revoked tasks wait for the next assignment: their punctuations would write after the commit that
            // handed their partitions over.
            if !self.suspended {
                let now = now_ms();
                for task in self.tasks.values_mut() {
                    task.catch_panics(&self.shared.name, |t| t.set_wall_clock(now))?;
                }
            }
            delivery_failure(&self.producer)?;
            if last_commit.elapsed() >= self.ctx.config.commit_interval {
                match self.commit(consumer) {
                    // A rebalance is under way: the revocation callback commits before the partitions move.
                    Err(StreamsError::TaskMigrated(e)) => {
                        tracing::info!(error = %e, "commit postponed")
                    }
                    r => r?,
                }
                last_commit = Instant::now();
            }
        }
        Ok(())
    }

    fn publish_metrics(&mut self) {
        // Per-task counters go to the `metrics` facade as increments, once per loop round (not per record).
        for (id, task) in &self.tasks {
            let m = task.metrics();
            let seen = self.reported.entry(*id).or_insert((0, 0, 0));
            if m.processed > seen.0 {
                metrics::counter!("streams_records_processed_total", "thread" => self.shared.name.clone(), "task" => id.to_string())
                    .increment(m.processed - seen.0);
            }
            if m.skipped_records > seen.1 {
                metrics::counter!("streams_records_skipped_total", "thread" => self.shared.name.clone(), "task" => id.to_string())
                    .increment(m.skipped_records - seen.1);
            }
            if m.dropped_records > seen.2 {
                metrics::counter!("streams_dropped_records_total", "thread" => self.shared.name.clone(), "task" => id.to_string())
                    .increment(m.dropped_records - seen.2);
            }
            *seen = (m.processed, m.skipped_records, m.dropped_records);
        }
        let total = add(
            self.closed_metrics,
            sum_metrics(self.tasks.values().map(Task::metrics)),
        );
        self.ctx
            .history
            .add_processed(total.processed.saturating_sub(self.counted));
        self.counted = total.processed;
        if let Ok(mut m) = self.shared.metrics.lock() {
            *m = total;
        }
    }

    /// Refreshes the published task snapshot (records processed, consumer positions, committed offsets): at
    /// most once a second unless `force`d.
    fn refresh_snapshot(&mut self, consumer: &BaseConsumer<StreamsConsumerContext>, force: bool) {
        if !force && self.last_snapshot.elapsed() < SNAPSHOT_INTERVAL {
            return;
        }
        self.last_snapshot = Instant::now();
        let mut positions: HashMap<(String, i32), i64> = HashMap::new();
        if let Ok(tpl) = consumer.position() {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    positions.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        let committed = self
            .shared
            .commits
            .lock()
            .map(|c| c.committed.clone())
            .unwrap_or_default();
        let Ok(mut snap) = self.shared.snapshot.lock() else {
            return;
        };
        for (id, task) in &self.tasks {
            let Some(meta) = snap.tasks.get_mut(id) else {
                continue;
            };
            meta.records_processed = task.metrics().processed;
            for p in &mut meta.topic_partitions {
                let key = (p.topic.clone(), p.partition);
                p.position = positions.get(&key).copied().or(p.position);
                p.committed_offset = committed.get(&key).copied().or(p.committed_offset);
            }
        }
    }

    fn record_offsets(&mut self) {
        if let Ok(mut c) = self.shared.commits.lock() {
            for task in self.tasks.values() {
                for (topic, p, o) in task.consumed_offsets() {
                    c.offsets.insert((topic.to_string(), p), o);
                }
            }
        }
    }

    fn resume_drained(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        low: usize,
    ) -> Result<(), StreamsError> {
        let drained: Vec<(String, i32)> = self
            .paused
            .iter()
            .filter(|k| match self.routes.get(*k) {
                Some((t, i)) => self.tasks.get(t).is_none_or(|t| t.queued_at(*i) <= low),
                None => true,
            })
            .cloned()
            .collect();
        for key in drained {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            consumer.resume(&tpl).map_err(|e| kafka("resume", e))?;
            self.paused.remove(&key);
        }
        Ok(())
    }

    fn commit(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let span = tracing::debug_span!("commit", tasks = self.tasks.len());
        let _enter = span.enter();
        self.record_offsets();
        let started = Instant::now();
        {
            let mut c = self
                .shared
                .commits
                .lock()
                .map_err(|_| kafka("commit state", "poisoned"))?;
            commit(&mut c, consumer)?;
        }
        let latency = started.elapsed();
        metrics::histogram!("streams_commit_latency_seconds", "thread" => self.shared.name.clone())
            .record(latency.as_secs_f64());
        self.ctx.history.record_commit(latency);
        self.report_state(consumer);
        self.refresh_snapshot(consumer, true);
        Ok(())
    }

    /// Gauges refreshed at each commit: consumer lag per partition, store sizes and cache hit ratios.
    fn report_state(&self, consumer: &BaseConsumer<StreamsConsumerContext>) {
        if let Ok(positions) = consumer.position() {
            for e in positions.elements() {
                let Offset::Offset(position) = e.offset() else {
                    continue;
                };
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_millis(200))
                {
                    metrics::gauge!("streams_consumer_lag", "topic" => e.topic().to_string(), "partition" => e.partition().to_string())
                        .set((high - position).max(0) as f64);
                }
            }
        }
        for (id, task) in &self.tasks {
            for (name, store) in task.stores() {
                let Ok(s) = store.lock() else { continue };
                if let Ok(n) = s.approximate_num_entries() {
                    metrics::gauge!("streams_store_entries", "store" => name.clone(), "task" => id.to_string()).set(n as f64);
                }
                if let Some(c) = s.cache_stats() {
                    metrics::gauge!("streams_cache_hit_ratio", "store" => name.clone(), "task" => id.to_string()).set(c.hit_ratio());
                }
            }
        }
    }

    fn apply_events(&mut self) -> Result<(), StreamsError> {
        let events = std::mem::take(
            &mut *self
                .shared
                .events
                .lock()
                .map_err(|_| kafka("events", "poisoned"))?,
        );
        for e in events {
            match e {
                Event::Revoked => {
                    // The consumer fetches from the committed offsets again: drop what is queued.
                    for t in self.tasks.values_mut() {
                        t.clear_queues();
                    }
                    self.paused.clear();
                    self.suspended = true;
                }
                Event::Lost => self.close_lost(),
                Event::Assigned(parts) => self.assign(parts)?,
            }
        }
        Ok(())
    }

    /// Closes every task dirty (see [`Task::close_dirty`]): the partitions were lost, the commit state already
    /// forgot them, and the next assignment creates the tasks again from their last checkpoints.
    fn close_lost(&mut self) {
        for (id, mut t) in std::mem::take(&mut self.tasks) {
            tracing::info!(task = %id, "closing task dirty: its partitions were lost");
            self.closed_metrics = add(self.closed_metrics, t.metrics());
            t.close_dirty();
        }
        self.routes.clear();
        self.last_route = None;
        self.paused.clear();
        self.suspended = true;
        if let Ok(mut s) = self.shared.snapshot.lock() {
            s.tasks.clear();
        }
    }

    fn assign(&mut self, parts: Vec<(String, i32)>) -> Result<(), StreamsError> {
        self.suspended = false;
        let mut wanted: BTreeMap<TaskId, ()> = BTreeMap::new();
        for (topic, p) in &parts {
            if let Some(&sub) = self.readers.get(topic) {
                wanted.insert(
                    TaskId {
                        subtopology: sub,
                        partition: *p,
                    },
                    (),
                );
            }
        }
        let gone: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut t) = self.tasks.remove(&id) {
                tracing::info!(task = %id, "closing task");
                self.closed_metrics = add(self.closed_metrics, t.metrics());
                t.close()?;
            }
            if let Ok(mut c) = self.shared.commits.lock() {
                c.tasks.remove(&id);
                let owned = |topic: &String, p: &i32| {
                    self.readers.get(topic) == Some(&id.subtopology) && *p == id.partition
                };
                c.offsets.retain(|(topic, p), _| !owned(topic, p));
                c.committed.retain(|(topic, p), _| !owned(topic, p));
            }
            if let Ok(mut s) = self.shared.snapshot.lock() {
                s.tasks.remove(&id);
            }
        }
        for id in wanted.keys() {
            if !self.tasks.contains_key(id) {
                self.create_task(*id)?;
            }
        }
        self.routes.clear();
        self.last_route = None;
        for (id, task) in &self.tasks {
            for (topic, p) in &parts {
                if *p == id.partition && self.readers.get(topic) == Some(&id.subtopology) {
                    if let Some(i) = task.input_index(topic) {
                        self.routes.insert((topic.clone(), *p), (*id, i));
                    }
                }
            }
        }
        (self.ctx.on_assignment)(&self.shared.name, parts);
        self.shared.set_state(ThreadState::Running);
        Ok(())
    }

    fn create_task(&mut self, id: TaskId) -> Result<(), StreamsError> {
        let span = tracing::info_span!("task", task = %id);
        let _enter = span.enter();
        let app = &self.ctx.config.application_id;
        let state_dir = self.ctx.config.state_dir.join(app);
        let task_dir = state_dir.join(id.to_string());
        let checkpoint = checkpoint::read(&task_dir)?;
        let sub = &self.ctx.subs[id.subtopology];
        if let Ok(mut s) = self.shared.snapshot.lock() {
            let topics = sub
                .source_topics
                .iter()
                .map(|t| self.ctx.topology.resolve_topic(app, t));
            s.tasks.insert(id, TaskMetadata::restoring(id, topics));
        }
        let mut restorer = ChangelogRestorer {
            consumer: &self.restore_consumer,
            checkpoint,
            listener: Arc::new(TaskRestoreProgress {
                inner: self.ctx.restore_listener.clone(),
                shared: self.shared.clone(),
                task: id,
            }),
            positions: BTreeMap::new(),
            timeout: self.ctx.config.task_timeout,
            restored: 0,
        };
        let mut partitions: HashMap<String, i32> =
            self.ctx.plan.topic_partitions.clone().into_iter().collect();
        partitions.extend(self.ctx.plan.changelogs.clone());
        partitions.extend(self.ctx.plan.external.clone());
        let env = TaskEnv {
            application_id: Arc::from(app.as_str()),
            state_dir,
            rocksdb: self.ctx.rocksdb.clone(),
            cache_bytes_per_store: self.cache_per_store,
            collector: Box::new(ProducerCollector {
                producer: self.producer.clone(),
                partitions,
                refused: None,
            }),
            changelog: Some(Arc::new(ProducerChangelog {
                producer: self.producer.clone(),
            })),
            deserialization_handler: self.ctx.config.deserialization_handler.clone(),
            processing_handler: self.ctx.config.processing_handler.clone(),
            dead_letter_topic: self
                .ctx
                .config
                .dead_letter_queue_topic
                .as_deref()
                .map(Arc::from),
            wall_clock: now_ms(),
            globals: self.ctx.globals.clone(),
        };
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Task::new(
                &self.ctx.topology,
                sub,
                id.partition,
                env,
                Some(&mut restorer),
            )
        }))
        .unwrap_or_else(|payload| {
            Err(StreamsError::Panic {
                thread: self.shared.name.clone(),
                task: Some(id),
                processor: None,
                message: crate::error::panic_message(&*payload),
            })
        });
        let task = match created {
            Ok(t) => t,
            Err(e) => {
                if let Ok(mut s) = self.shared.snapshot.lock() {
                    s.tasks.remove(&id);
                }
                return Err(e);
            }
        };
        self.shared
            .update_task(id, |t| t.state = TaskState::Running);
        tracing::info!(task = %id, restored = restorer.restored, "task created");
        let stores = task.stores().to_vec();
        if let Ok(mut c) = self.shared.commits.lock() {
            c.tasks.insert(
                id,
                TaskCommit {
                    dir: task_dir,
                    stores,
                    positions: restorer.positions,
                },
            );
        }
        self.tasks.insert(id, task);
        Ok(())
    }

    fn shutdown(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        clean: bool,
    ) -> Result<(), StreamsError> {
        self.shared.set_state(ThreadState::PendingShutdown);
        let mut result = Ok(());
        if clean {
            result = match self.commit(consumer) {
                Err(StreamsError::TaskMigrated(e)) => {
                    tracing::warn!(error = %e, "final commit refused; the next owner reprocesses from the last commit");
                    Ok(())
                }
                r => r,
            };
        }
        self.publish_metrics();
        for (id, mut t) in std::mem::take(&mut self.tasks) {
            if !clean {
                // After an error or a panic nothing since the last commit is trusted: a task may have applied half
                // a record. Flushing it would publish that, and the next owner would apply it again on top.
                t.close_dirty();
            } else if let Err(e) = t.close() {
                tracing::warn!(task = %id, error = %e, "error closing task");
            }
        }
        // Everything is committed and closed: the revocation that leaving the group triggers has nothing to do.
        if let Ok(mut c) = self.shared.commits.lock() {
            c.tasks.clear();
            c.offsets.clear();
            c.committed.clear();
        }
        if let Ok(mut s) = self.shared.snapshot.lock() {
            s.tasks.clear();
        }
        consumer.unsubscribe();
        result
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    /// Defects: `group.instance.id` was given unchanged to every thread's consumer (two members with one static
    /// id fence each other), and the user's prefixed properties were applied after the managed ones.
    #[test]
    fn finding_each_thread_is_its_own_static_member_and_managed_settings_come_last() {
        let mut config = StreamsConfig::new("app", "b:9092");
        config.set("group.instance.id", "host-a").unwrap();
        config
            .set("main.consumer.auto.offset.reset", "latest")
            .unwrap();
        let one = main_consumer_config(&config, "app-StreamThread-1");
        let two = main_consumer_config(&config, "app-StreamThread-2");
        assert_eq!(one.get("group.instance.id"), Some("host-a-1"));
        assert_eq!(two.get("group.instance.id"), Some("host-a-2"));
        assert_eq!(one.get("auto.offset.reset"), Some("latest"));
        assert_eq!(one.get("group.id"), Some("app"));
        assert_eq!(one.get("enable.auto.commit"), Some("false"));
        assert_eq!(one.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(one.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(one.get("isolation.level"), Some("read_uncommitted"));

        let plain =
            main_consumer_config(&StreamsConfig::new("app", "b:9092"), "app-StreamThread-1");
        assert_eq!(plain.get("group.instance.id"), None);
        assert_eq!(plain.get("auto.offset.reset"), Some("earliest"));
    }
}
