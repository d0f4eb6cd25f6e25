//! The stream thread: the poll loop of one group consumer. It hands records to the active tasks of its
//! [`TaskManager`], processes them, commits on the commit interval and applies rebalances. The hot path (poll a
//! batch, process, produce) is synchronous; restoration runs beside it on the [`StateUpdater`], and every record
//! leaves through the thread's [`StreamsRecordCollector`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use state_store::{RocksDbResources, SharedKeyValueStore};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::record::{Headers, RawRecordRef};
use crate::runtime::clients::{client_config, client_error, create_producer};
use crate::runtime::config::{ClientKind, GroupProtocol, StreamsConfig};
use crate::runtime::history::MetricsHistory;
use crate::runtime::kafka_error as kafka;
use crate::runtime::offset_metadata;
use crate::runtime::record_collector::StreamsRecordCollector;
use crate::runtime::restore::{retrying, transient, StateRestoreListener};
use crate::runtime::security::StreamsClientContext;
use crate::runtime::state_updater::StateUpdater;
use crate::runtime::task_manager::{add, CommitDone, CommitState, Routing, TaskManager};
use crate::runtime::thread_metadata::{self, TaskMetadata, ThreadMetadata, ThreadSnapshot};
use crate::task::{Task, TaskMetricsSnapshot};
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
    /// Some partitions were revoked (an incremental rebalance): their tasks close, the others keep processing.
    PartlyRevoked {
        revoked: HashSet<(String, i32)>,
        kept: Vec<(String, i32)>,
    },
    /// The partitions were lost (session timeout, `max.poll.interval.ms` exceeded, fencing, a rebalance error):
    /// another member may own them already, so the tasks are closed dirty.
    Lost,
    Assigned(Vec<(String, i32)>),
}

/// State shared by the thread's loop and its consumer's rebalance callbacks.
pub(crate) struct ThreadShared {
    pub name: String,
    pub shutdown: AtomicBool,
    pub state: Mutex<ThreadState>,
    events: Mutex<Vec<Event>>,
    pub(crate) commits: Mutex<CommitState>,
    callback_error: Mutex<Option<StreamsError>>,
    on_state_change: Arc<dyn Fn() + Send + Sync>,
    /// Counters of every task this thread ran, closed ones included.
    pub metrics: Mutex<TaskMetricsSnapshot>,
    /// What the thread's tasks are doing, refreshed at most once a second and at each commit, plus the partition
    /// ends its consumer's statistics report.
    pub(crate) snapshot: Mutex<ThreadSnapshot>,
    /// The instance's record of aborted transactions (see [`ThreadContext::aborted`]).
    aborted: Arc<crate::runtime::record_collector::AbortedRecords>,
    /// The consumer's member id in the group, as of its last assignment (standby placement predicts where the
    /// group's assignor would move a task from it).
    pub(crate) member_id: Mutex<Option<String>>,
}

/// The consumer's member id in its group, once it joined.
fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the consumer's live handle; librdkafka returns a NUL-terminated copy (or null) that the
    // caller frees with rd_kafka_mem_free, which happens right after it is copied.
    unsafe {
        let p = rdkafka::bindings::rd_kafka_memberid(rk);
        if p.is_null() {
            return None;
        }
        let id = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(rk, p.cast());
        Some(id).filter(|id| !id.is_empty())
    }
}

/// Sums counters.
pub(crate) fn sum_metrics(
    items: impl IntoIterator<Item = TaskMetricsSnapshot>,
) -> TaskMetricsSnapshot {
    items.into_iter().fold(TaskMetricsSnapshot::default(), add)
}

impl ThreadShared {
    /// The commit state, locked; an error when a panic poisoned it.
    fn commit_state(&self) -> Result<std::sync::MutexGuard<'_, CommitState>, StreamsError> {
        self.commits
            .lock()
            .map_err(|_| kafka("commit state", "poisoned"))
    }

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

    pub(crate) fn update_task(&self, id: TaskId, f: impl FnOnce(&mut TaskMetadata)) {
        if let Ok(mut s) = self.snapshot.lock() {
            if let Some(t) = s.tasks.get_mut(&id) {
                f(t);
            }
        }
    }

    /// The thread's lifecycle state.
    pub(crate) fn state(&self) -> ThreadState {
        self.state.lock().map_or(ThreadState::Dead, |s| *s)
    }

    fn set_state(&self, s: ThreadState) {
        if let Ok(mut st) = self.state.lock() {
            *st = s;
        }
        (self.on_state_change)();
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
            // Under exactly-once, what the lost tasks sent must never commit with a later transaction.
            if let Some(collector) = c.collector.clone().filter(|c| c.exactly_once()) {
                match collector.abort_transaction() {
                    Ok(records) => self.shared.aborted.add(records),
                    Err(e) => {
                        tracing::warn!(thread = %self.shared.name, error = %e, "cannot abort the open transaction")
                    }
                }
            }
            c.clear();
        }
        if let Ok(mut ev) = self.shared.events.lock() {
            ev.push(Event::Lost);
        }
        self.shared.set_state(ThreadState::PartitionsRevoked);
    }
}

impl StreamsConsumerContext {
    /// Under exactly-once, a commit before a revocation that failed in a way a transaction recovers from: the
    /// transaction is aborted (or the fenced producer created again) and the tasks are closed without
    /// committing, as if their partitions were lost; the next assignment creates them again from their last
    /// commit. False when `e` is not such a failure.
    fn abort_before_revocation(&self, e: &StreamsError) -> bool {
        let collector = match self.shared.commits.lock() {
            Ok(c) => c.collector.clone(),
            Err(_) => None,
        };
        let Some(collector) = collector.filter(|c| c.exactly_once()) else {
            return false;
        };
        if !matches!(
            e,
            StreamsError::TransactionAborted(_)
                | StreamsError::ProducerFenced(_)
                | StreamsError::TaskMigrated(_)
        ) && collector.transaction_failure().is_none()
        {
            return false;
        }
        tracing::warn!(thread = %self.shared.name, error = %e, "the commit before the revocation failed: aborting");
        let replace = |collector: &StreamsRecordCollector| {
            // What the fenced transaction wrote was aborted by whoever fenced it.
            self.shared
                .aborted
                .add(collector.take_transaction_offsets());
            collector.reinitialize()
        };
        let outcome = if matches!(e, StreamsError::ProducerFenced(_)) {
            replace(&collector)
        } else {
            match collector.abort_transaction() {
                Ok(records) => {
                    self.shared.aborted.add(records);
                    Ok(())
                }
                Err(StreamsError::ProducerFenced(_)) => replace(&collector),
                Err(other) => Err(other),
            }
        };
        if let Err(e) = outcome {
            if let Ok(mut slot) = self.shared.callback_error.lock() {
                slot.get_or_insert(e);
            }
        }
        self.on_lost("the transaction could not commit before the revocation");
        true
    }
}

impl StreamsConsumerContext {
    /// Partitions of a new assignment whose tasks this thread kept processed past their last commit: when the
    /// commit before the revocation was refused (a broker may refuse commits while the group rebalances), the
    /// consumer would start them at the group's committed offset and reprocess, with the kept stores already
    /// holding the effects, what the thread processed before the rebalance: every count of those records twice.
    /// Where the group's committed offset is still the one this thread committed last (nobody else committed
    /// progress meanwhile), such a partition starts where the thread stopped instead, and the next commit
    /// records it.
    fn resume_uncommitted(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let pending: Vec<UncommittedProgress> = match self.shared.commits.lock() {
            Ok(c) => tpl
                .elements()
                .iter()
                .filter_map(|e| {
                    let key = (e.topic().to_string(), e.partition());
                    let &(processed, _) = c.offsets.get(&key)?;
                    let committed = c.committed.get(&key).copied();
                    (committed != Some(processed)).then_some(UncommittedProgress {
                        topic: key.0,
                        partition: key.1,
                        processed,
                        committed,
                    })
                })
                .collect(),
            Err(_) => return,
        };
        // Nothing to resume for a thread on its way out; and a slow answer must not hold a closing group.
        if pending.is_empty() || self.shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let mut query = TopicPartitionList::new();
        for p in &pending {
            query.add_partition(&p.topic, p.partition);
        }
        let group = match consumer.committed_offsets(query, Duration::from_secs(10)) {
            Ok(group) => group,
            Err(e) => {
                tracing::warn!(thread = %self.shared.name, error = %e, "cannot read the committed offsets: partitions processed past their last commit are processed again from it");
                return;
            }
        };
        for p in pending {
            let in_group = match group
                .find_partition(&p.topic, p.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            if in_group != p.committed {
                tracing::warn!(thread = %self.shared.name, topic = %p.topic, partition = p.partition, processed = p.processed, committed = ?in_group, "another member committed this partition since this thread last did: processing again from the group's committed offset");
                continue;
            }
            match tpl.set_partition_offset(&p.topic, p.partition, Offset::Offset(p.processed)) {
                Ok(()) => {
                    tracing::info!(thread = %self.shared.name, topic = %p.topic, partition = p.partition, offset = p.processed, committed = ?in_group, "the commit before the rebalance did not happen: resuming where this thread stopped")
                }
                Err(e) => {
                    tracing::warn!(thread = %self.shared.name, error = %e, "cannot set the start offset")
                }
            }
        }
    }
}

/// A partition a thread processed past its last commit.
struct UncommittedProgress {
    topic: String,
    partition: i32,
    /// The next offset to process.
    processed: i64,
    /// The offset the thread committed last, if it ever did.
    committed: Option<i64>,
}

impl ConsumerContext for StreamsConsumerContext {
    /// The eager protocol (the `range` assignor) as rust-rdkafka implements it, except that partitions the thread
    /// processed past their last commit start where it stopped (see [`Self::resume_uncommitted`]). Under the
    /// consumer group protocol (`group.protocol=consumer`) the callbacks are incremental: an assignment adds
    /// partitions, a revocation takes away only those named.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assign {
            self.resume_uncommitted(consumer, tpl);
        }
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        if assign {
            if let Ok(mut id) = self.shared.member_id.lock() {
                *id = member_id(consumer);
            }
        }
        let applied = match (&rebalance, incremental(consumer)) {
            (Rebalance::Assign(tpl), true) => consumer.incremental_assign(tpl),
            (Rebalance::Assign(tpl), false) => consumer.assign(tpl),
            (Rebalance::Revoke(tpl), true) => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = applied {
            tracing::error!(thread = %self.shared.name, error = %e, "cannot apply the rebalance");
            if let Ok(mut slot) = self.shared.callback_error.lock() {
                slot.get_or_insert(kafka("applying the rebalance", e));
            }
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(_) if consumer.assignment_lost() => {
                self.on_lost(
                    "the assignment was lost (session timeout or max.poll.interval.ms exceeded)",
                );
            }
            Rebalance::Revoke(tpl) => {
                // Commit before giving the partitions up, so their next owner starts where we stopped; what
                // cached operators held back is forwarded first (a panic in a processor must not unwind into
                // the client library).
                let flushed =
                    std::panic::catch_unwind(crate::runtime::task_manager::flush_thread_processors)
                        .unwrap_or_else(|payload| {
                            Err(StreamsError::Panic {
                                thread: self.shared.name.clone(),
                                task: None,
                                processor: None,
                                message: crate::error::panic_message(&*payload),
                            })
                        });
                let r = match (flushed, self.shared.commits.lock()) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(mut c)) => c.commit_and_checkpoint(consumer),
                    (Ok(()), Err(_)) => Err(kafka("commit state", "poisoned")),
                };
                if let Err(e) = &r {
                    if self.abort_before_revocation(e) {
                        return;
                    }
                }
                if let Err(StreamsError::TaskMigrated(e)) = &r {
                    // Another member owns the partitions already: it reprocesses from the last commit.
                    tracing::warn!(thread = %self.shared.name, error = %e, "commit on revocation refused");
                } else if let Err(e) = r {
                    tracing::error!(thread = %self.shared.name, error = %e, "commit on revocation failed");
                    if let Ok(mut slot) = self.shared.callback_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
                if incremental(consumer) {
                    // Only these partitions move: the thread keeps the others, and their tasks go on processing.
                    let revoked: HashSet<(String, i32)> = partitions(tpl).into_iter().collect();
                    let kept = assigned(consumer)
                        .into_iter()
                        .filter(|p| !revoked.contains(p))
                        .collect();
                    if let Ok(mut ev) = self.shared.events.lock() {
                        ev.push(Event::PartlyRevoked { revoked, kept });
                    }
                    return;
                }
                if let Ok(mut ev) = self.shared.events.lock() {
                    ev.push(Event::Revoked);
                }
                self.shared.set_state(ThreadState::PartitionsRevoked);
            }
            Rebalance::Assign(tpl) => {
                let mut parts = partitions(tpl);
                if incremental(consumer) {
                    // The partitions kept from before, with the added ones: the whole assignment.
                    let added: HashSet<(String, i32)> = parts.iter().cloned().collect();
                    parts.extend(
                        assigned(consumer)
                            .into_iter()
                            .filter(|p| !added.contains(p)),
                    );
                }
                if let Ok(mut ev) = self.shared.events.lock() {
                    ev.push(Event::Assigned(parts));
                }
                self.shared.set_state(ThreadState::PartitionsAssigned);
            }
            // The consumer unassigns every partition after a rebalance error, without a revocation.
            Rebalance::Error(e) => self.on_lost(&format!("rebalance error: {e}")),
        }
    }

    /// Newly assigned partitions are paused at once, before anything is fetched for them: the loop resumes
    /// each once its task's state is restored. Records fetched for a task that does not exist yet would have
    /// nowhere to go.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.pause(tpl) {
                tracing::error!(thread = %self.shared.name, error = %e, "cannot pause the assigned partitions");
                if let Ok(mut slot) = self.shared.callback_error.lock() {
                    slot.get_or_insert(kafka("pausing the assigned partitions", e));
                }
            }
        }
    }
}

/// Whether the consumer's rebalance callbacks are incremental (the consumer group protocol of KIP-848).
fn incremental<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// The partitions of `tpl`.
fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// The consumer's current assignment (empty when it cannot be read).
fn assigned<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Vec<(String, i32)> {
    consumer
        .assignment()
        .map(|tpl| partitions(&tpl))
        .unwrap_or_default()
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
    /// Which sub-topology reads each topic, and the partition counts the tasks write to.
    pub routing: Routing,
    /// The instance's standby tasks, stopped before a thread restores one of their tasks as active.
    pub standbys: Arc<crate::runtime::standby::Standbys>,
    /// This process's id, kept in the state directory: under exactly-once each thread's transactional id is
    /// `<application.id>-<process id>-<thread number>`, the same after a restart.
    pub process_id: Arc<str>,
    /// Records of transactions this instance aborted, skipped when read back.
    pub aborted: Arc<crate::runtime::record_collector::AbortedRecords>,
    /// With `task.ownership=library`: the instance's member of the ownership protocol, which tells each thread
    /// its tasks (set once, before the threads start).
    pub ownership: std::sync::OnceLock<Arc<crate::runtime::ownership::Ownership>>,
}

impl ThreadContext {
    /// The source partitions of task `t`: one per topic its sub-topology reads.
    pub(crate) fn task_partitions(&self, t: TaskId) -> impl Iterator<Item = (String, i32)> + '_ {
        self.routing.sources[t.subtopology]
            .iter()
            .map(move |topic| (topic.clone(), t.partition))
    }

    /// Where the tasks' stores live.
    pub(crate) fn store_env(&self) -> crate::state_manager::StoreEnv {
        let app = &self.config.application_id;
        crate::state_manager::StoreEnv {
            application_id: Arc::from(app.as_str()),
            state_dir: self.config.state_dir.join(app),
            rocksdb: self.rocksdb.clone(),
            handed: Some(self.standbys.handed()),
        }
    }
}

/// Receives a thread's name and the partitions it owns after an assignment.
/// Its arguments: the thread's name, its partitions and its consumer's group member id.
pub(crate) type AssignmentHook =
    Arc<dyn Fn(&str, Vec<(String, i32)>, Option<String>) + Send + Sync>;

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
    let collector = if ctx.config.exactly_once() {
        Arc::new(StreamsRecordCollector::transactional(
            crate::runtime::record_collector::TransactionalSetup {
                thread: name.clone(),
                config: ctx.config.clone(),
                client_id: format!("{name}-producer"),
                transactional_id: format!(
                    "{}-{}-{index}",
                    ctx.config.application_id, ctx.process_id
                ),
            },
        )?)
    } else {
        let producer = create_producer(&ctx.config, &format!("{name}-producer"), None)?;
        Arc::new(StreamsRecordCollector::new(
            producer,
            ctx.config.task_timeout,
        ))
    };
    let shared = Arc::new(ThreadShared {
        name: name.clone(),
        shutdown: AtomicBool::new(false),
        state: Mutex::new(ThreadState::Starting),
        events: Mutex::new(Vec::new()),
        commits: Mutex::new(CommitState::new(collector.clone(), ctx.config.task_timeout)),
        callback_error: Mutex::new(None),
        on_state_change,
        metrics: Mutex::new(TaskMetricsSnapshot::default()),
        snapshot: Mutex::new(ThreadSnapshot::default()),
        member_id: Mutex::new(None),
        aborted: ctx.aborted.clone(),
    });
    let s2 = shared.clone();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let span = tracing::info_span!(
                "stream_thread",
                thread = %s2.name,
                process = %ctx.process_id
            );
            let _enter = span.enter();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(&ctx, &s2, collector)
            }))
            .unwrap_or_else(|payload| Err(thread_panic(&s2.name, &*payload)));
            // The thread's slot outlives it (its counters stay in the instance's totals): its producer must not.
            if let Ok(mut c) = s2.commits.lock() {
                c.release();
            }
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

/// How often the consumer reports statistics (and with them the partition ends lag is measured against),
/// unless `statistics.interval.ms` is configured.
const STATISTICS_INTERVAL_MS: &str = "3000";

/// How often a thread refreshes its published task snapshot between commits.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the consumers read: only committed transactions under exactly-once (they stop at the last stable
/// offset), everything otherwise.
pub(crate) fn isolation_level(config: &StreamsConfig) -> &'static str {
    if config.exactly_once() {
        "read_committed"
    } else {
        "read_uncommitted"
    }
}

/// How the group member id of stream thread `index`'s consumer will start: brokers make member ids from the group
/// instance id when there is one, else from the client id, followed by a dash and a random part.
pub(crate) fn member_id_prefix(config: &StreamsConfig, index: usize, process_id: &str) -> String {
    let name = format!("{}-StreamThread-{index}", config.application_id);
    let c = main_consumer_config(config, &name, process_id);
    let id = c
        .get("group.instance.id")
        .or_else(|| c.get("client.id"))
        .unwrap_or_default();
    format!("{id}-")
}

/// The main consumer's settings: the user's, then what the runtime manages (set last, so nothing overrides it).
/// A static membership id (`group.instance.id`) gets the thread's number appended, as in Kafka Streams: every
/// thread is its own member.
///
/// The consumer's `client.id` is `<prefix>-StreamThread-<n>-consumer`, the prefix being the configured
/// `client.id` or, as in Kafka Streams, `<application.id>-<process id>`. The broker makes the group member id
/// from it, and the range assignor orders members by member id: with the process id (kept in the state
/// directory) in front, an instance that restarts takes its old place in that order, so it is given back the
/// tasks whose state it holds instead of a random share.
pub(crate) fn main_consumer_config(
    config: &StreamsConfig,
    thread_name: &str,
    process_id: &str,
) -> ClientConfig {
    let mut c = client_config(config, ClientKind::MainConsumer);
    let prefix = c
        .get("client.id")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{process_id}", config.application_id));
    let thread = thread_name
        .strip_prefix(config.application_id.as_str())
        .and_then(|t| t.strip_prefix('-'))
        .unwrap_or(thread_name);
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
        .set("client.id", format!("{prefix}-{thread}-consumer"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", isolation_level(config))
        .set("enable.partition.eof", "false");
    match config.group_protocol {
        GroupProtocol::Classic => {
            c.set("partition.assignment.strategy", "range");
        }
        GroupProtocol::Consumer => {
            // The broker's range assignor keeps co-partitioned partitions together, and moves only what must.
            for broker_side in ["session.timeout.ms", "heartbeat.interval.ms"] {
                if c.get(broker_side).is_some() {
                    tracing::warn!(
                        setting = broker_side,
                        "ignored under group.protocol=consumer: the broker's group configuration sets it"
                    );
                    c.remove(broker_side);
                }
            }
            c.set("group.protocol", "consumer")
                .set("group.remote.assignor", "range");
        }
    }
    c
}

fn run(
    ctx: &Arc<ThreadContext>,
    shared: &Arc<ThreadShared>,
    collector: Arc<StreamsRecordCollector>,
) -> Result<(), StreamsError> {
    let c = main_consumer_config(&ctx.config, &shared.name, &ctx.process_id);
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
    let fatal = shared.clone();
    let updater = StateUpdater::start(
        ctx.clone(),
        &shared.name,
        crate::runtime::bulk_restore::STEP_TIME,
        move |e| {
            if let Ok(mut slot) = fatal.callback_error.lock() {
                slot.get_or_insert(e);
            }
        },
    )?;
    if let Some(ownership) = ctx.ownership.get() {
        // Library ownership: the thread assigns itself its tasks' partitions (see `follow_ownership`).
        ownership.register(&shared.name);
    } else {
        let topics: Vec<&str> = ctx.routing.readers.keys().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka("subscribe failed", e))?;
    }
    let mut t = StreamThread {
        ctx,
        shared,
        collector: collector.clone(),
        tasks: TaskManager::new(ctx.clone(), shared.clone(), collector, updater),
        last_route: None,
        paused: HashSet::new(),
        waiting: HashSet::new(),
        reported: HashMap::new(),
        counted: 0,
        last_snapshot: Instant::now(),
        loop_stats: LoopStats::new(),
        connection_failure_since: None,
        owned: BTreeSet::new(),
        ownership_version: 0,
        lease_incarnation: None,
    };
    // A panic in application code is caught per task (naming it); this catches the rest, so the thread stops as
    // on a returned error.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.main_loop(&consumer)))
        .unwrap_or_else(|payload| Err(thread_panic(&shared.name, &*payload)));
    let stopping = Instant::now();
    let shut = t.shutdown(&consumer, result.is_ok());
    let closed_tasks = stopping.elapsed();
    // Leaving the group: librdkafka revokes the assignment (through the rebalance callback) and sends LeaveGroup.
    drop(t);
    drop(consumer);
    let total = stopping.elapsed();
    if total > SLOW_SHUTDOWN {
        tracing::warn!(
            tasks_ms = closed_tasks.as_millis() as u64,
            leave_group_ms = (total - closed_tasks).as_millis() as u64,
            "the stream thread took {} ms to shut down",
            total.as_millis()
        );
    } else {
        tracing::debug!(
            tasks_ms = closed_tasks.as_millis() as u64,
            total_ms = total.as_millis() as u64,
            "stream thread shut down"
        );
    }
    shut?;
    result
}

/// A thread shutdown slower than this is logged with where its time went.
const SLOW_SHUTDOWN: Duration = Duration::from_secs(5);

/// The poll loop of one stream thread.
struct StreamThread<'a> {
    ctx: &'a Arc<ThreadContext>,
    shared: &'a Arc<ThreadShared>,
    collector: Arc<StreamsRecordCollector>,
    tasks: TaskManager,
    /// The route of the last record polled: records come in runs per partition, so most records skip the
    /// lookup (and the topic name's copy it needs).
    last_route: Option<(String, i32, (TaskId, usize))>,
    /// Partitions paused because their task's queue is full.
    paused: HashSet<(String, i32)>,
    /// Assigned partitions paused until their task's state is restored.
    waiting: HashSet<(String, i32)>,
    /// Processed and skipped counts already reported to the `metrics` facade, per task.
    reported: HashMap<TaskId, (u64, u64, u64)>,
    /// Records processed by this thread already added to the instance's history.
    counted: u64,
    /// When the task snapshot was last refreshed.
    last_snapshot: Instant,
    /// What the loop did since its last debug summary.
    loop_stats: LoopStats,
    /// When the consumer first reported a TLS or authentication failure that its error callback has not
    /// reported yet.
    connection_failure_since: Option<Instant>,
    /// With library ownership: the tasks this thread holds (restoring or running).
    owned: BTreeSet<TaskId>,
    /// With library ownership: the version of the wanted tasks applied last.
    ownership_version: u64,
    /// With library ownership: the instance's incarnation when this thread took its tasks on (see
    /// [`Ownership::lease`](crate::runtime::ownership::Ownership::lease)).
    lease_incarnation: Option<u64>,
}

/// What a stream thread's loop did since its last summary, logged at debug level once a second: rounds, records
/// polled and processed, paused and waiting partitions, whether a commit waits for acknowledgements, and the
/// slowest round with the time of each of its phases (what a latency spike is made of).
struct LoopStats {
    since: Instant,
    rounds: u64,
    polled: u64,
    processed_at_start: u64,
    /// The slowest round since the last summary: its phases (poll, process, bookkeeping, commit).
    slowest: RoundPhases,
}

/// How long each phase of one round of the loop took.
#[derive(Clone, Copy, Default, Debug)]
struct RoundPhases {
    poll: Duration,
    process: Duration,
    bookkeeping: Duration,
    commit: Duration,
}

impl RoundPhases {
    fn total(&self) -> Duration {
        self.poll + self.process + self.bookkeeping + self.commit
    }
}

impl LoopStats {
    fn new() -> LoopStats {
        LoopStats {
            since: Instant::now(),
            rounds: 0,
            polled: 0,
            processed_at_start: 0,
            slowest: RoundPhases::default(),
        }
    }
}

/// How often a stream thread's loop logs its summary at debug level.
const LOOP_SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a TLS or authentication failure polled from the consumer waits for the client's error callback to
/// report it in full.
const CALLBACK_ERROR_WAIT: Duration = Duration::from_secs(5);

/// Whether `e` is a connection failure (TLS, authentication) that the client's error callback reports too, with
/// the setting to check and the broker.
fn reported_by_callback(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::SSL | C::Authentication | C::SaslAuthenticationFailed)
    )
}

/// Consumer lag per partition for the idling rules, from what the consumer already knows (no request): the
/// high watermark of the last fetch response against the consumer's position, or, before the first record,
/// against the committed offset (or the log start).
struct Lags<'c> {
    consumer: &'c BaseConsumer<StreamsConsumerContext>,
    positions: Option<HashMap<(String, i32), i64>>,
}

impl<'c> Lags<'c> {
    fn new(consumer: &'c BaseConsumer<StreamsConsumerContext>) -> Self {
        Lags {
            consumer,
            positions: None,
        }
    }

    fn lag(&mut self, topic: &str, partition: i32, committed: i64) -> Option<i64> {
        let (low, high) = cached_watermarks(self.consumer, topic, partition)?;
        let consumer = self.consumer;
        let positions = self.positions.get_or_insert_with(|| {
            consumer
                .position()
                .map(|tpl| {
                    tpl.elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        });
        let start = positions
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(if committed >= 0 { committed } else { low });
        Some((high - start).max(0))
    }
}

/// The watermarks librdkafka cached from its last fetch response for the partition; `None` before any.
pub(crate) fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime, the topic is a NUL-terminated string that
    // outlives the call, and librdkafka only writes the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        && high >= 0
        && low >= 0)
        .then_some((low, high))
}

fn one_partition(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

impl StreamThread<'_> {
    fn main_loop(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let mut last_commit = Instant::now();
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            match self.round(consumer, &mut last_commit) {
                Ok(()) => {}
                Err(e) if self.recoverable(&e) => {
                    self.recover(consumer, e)?;
                    last_commit = Instant::now();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One round of the loop: poll a batch, process what is queued, commit when the interval is up.
    fn round(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        last_commit: &mut Instant,
    ) -> Result<(), StreamsError> {
        self.follow_ownership(consumer)?;
        let max_buffered = self.ctx.config.buffered_records_per_partition;
        let poll_batch = (max_buffered / 2).max(1);
        let idle = !self.tasks.tasks().values().any(Task::has_queued);
        let mut polled = 0usize;
        // When nothing is queued the first poll waits for a record: the round's work starts after it.
        let mut started = Instant::now();
        loop {
            let timeout = if polled == 0 && idle {
                self.ctx.config.poll_timeout
            } else {
                Duration::ZERO
            };
            let msg = consumer.poll(timeout);
            if polled == 0 && idle {
                started = Instant::now();
            }
            self.apply_events(consumer)?;
            let m = match msg {
                None => break,
                // A connection lost or a leader moving passes: librdkafka retries. A refusal that cannot
                // pass (an input topic the application may not read, a fatal client error) fails the thread,
                // for the uncaught error handler to decide: logged and skipped, it would stop the input for
                // good with nothing but a warning to show for it.
                Some(Err(e)) if transient(&e) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Some(Err(e)) if reported_by_callback(&e) => {
                    // The client's error callback reports a TLS or authentication failure with what to check
                    // (the setting, the broker); wait a little for it rather than failing with less.
                    let since = *self
                        .connection_failure_since
                        .get_or_insert_with(Instant::now);
                    if since.elapsed() > CALLBACK_ERROR_WAIT {
                        return Err(kafka("the stream thread's consumer failed", e));
                    }
                    tracing::debug!(error = %e, "consumer connection failure");
                    break;
                }
                Some(Err(e)) => return Err(kafka("the stream thread's consumer failed", e)),
                Some(Ok(m)) => m,
            };
            let route = match &self.last_route {
                Some((t, p, r)) if *p == m.partition() && t == m.topic() => Some(*r),
                _ => {
                    let r = self.tasks.route(m.topic(), m.partition());
                    if let Some(r) = r {
                        self.last_route = Some((m.topic().to_string(), m.partition(), r));
                    }
                    r
                }
            };
            let Some((task_id, input)) = route else {
                // A record of a partition whose task is not ready (its state is being restored): fetched
                // before the pause took effect. Rewind, so it is read again once the task runs.
                self.hold_back(consumer, m.topic(), m.partition(), m.offset())?;
                continue;
            };
            if self
                .ctx
                .aborted
                .contains(m.topic(), m.partition(), m.offset())
            {
                // A record of a transaction this instance aborted, shown by a broker that does not hide them
                // from read_committed consumers.
                continue;
            }
            let mut headers = Headers::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.add(header.key, header.value.map(<[u8]>::to_vec));
                }
            }
            let task = self
                .tasks
                .task_mut(task_id)
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
                consumer
                    .pause(&one_partition(m.topic(), m.partition()))
                    .map_err(|e| kafka("pause", e))?;
                self.paused.insert((m.topic().to_string(), m.partition()));
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
        self.take_restored(consumer)?;
        // Library ownership: a thread that slept past its instance's lease (paused, starved) must not process
        // what it polled: the tasks may run elsewhere already. The next round drops them.
        if self.lease_lost() {
            return Ok(());
        }
        let polled_at = Instant::now();
        // Process what is queued, a bounded slice per task so no task starves the others. A task with several
        // inputs waits while one of them is empty and may still receive earlier records (max.task.idle.ms).
        let now = now_ms();
        let mut lags = Lags::new(consumer);
        for task in self.tasks.tasks_mut() {
            task.catch_panics(&self.shared.name, |t| {
                for _ in 0..max_buffered {
                    if !t.processable(now, &mut |topic, p, committed| {
                        lags.lag(topic, p, committed)
                    }) || !t.process_one()?
                    {
                        break;
                    }
                }
                Ok(())
            })?;
        }
        let processed_at = Instant::now();
        self.collector.poll();
        self.tasks.record_offsets();
        self.publish_metrics();
        self.refresh_snapshot(consumer, false);
        self.resume_drained(consumer, max_buffered / 2)?;
        // Revoked tasks wait for the next assignment: their punctuations would write after the commit that
        // handed their partitions over.
        if !self.tasks.suspended {
            let now = now_ms();
            let name = &self.shared.name;
            for task in self.tasks.tasks_mut() {
                task.catch_panics(name, |t| t.set_wall_clock(now))?;
            }
        }
        self.collector.failure()?;
        let kept_at = Instant::now();
        self.loop_stats.rounds += 1;
        self.loop_stats.polled += polled as u64;
        if self.loop_stats.since.elapsed() >= LOOP_SUMMARY_INTERVAL {
            self.log_loop_summary(consumer);
        }
        let commit_started = Instant::now();
        // Library ownership: a thread whose instance lost its lease must not commit; the next round drops its
        // tasks.
        if self.lease_lost() {
            return Ok(());
        }
        let commit = if last_commit.elapsed() >= self.ctx.config.commit_interval {
            *last_commit = Instant::now();
            self.begin_commit(consumer)
        } else {
            self.finish_commit(consumer)
        };
        let phases = RoundPhases {
            poll: polled_at - started,
            process: processed_at - polled_at,
            bookkeeping: kept_at - processed_at,
            commit: commit_started.elapsed(),
        };
        if phases.total() > self.loop_stats.slowest.total() {
            self.loop_stats.slowest = phases;
        }
        match commit {
            // A rebalance is under way: the revocation callback commits before the partitions move.
            // (Under exactly-once the transaction is aborted instead: see `recover`.)
            Err(StreamsError::TaskMigrated(e)) if !self.collector.exactly_once() => {
                tracing::info!(error = %e, "commit postponed")
            }
            r => r?,
        }
        Ok(())
    }

    /// Under exactly-once, whether `e` is handled by aborting the transaction (or replacing a fenced producer)
    /// and going back to the last commit, rather than by failing the thread.
    fn recoverable(&self, e: &StreamsError) -> bool {
        self.collector.exactly_once()
            && (matches!(
                e,
                StreamsError::TransactionAborted(_)
                    | StreamsError::ProducerFenced(_)
                    | StreamsError::TaskMigrated(_)
            ) || self.collector.transaction_failure().is_some())
    }

    /// Aborts the open transaction (or, the producer being fenced, creates it again), closes every task without
    /// committing anything, and creates them again from their last commit: their stores hold only what was
    /// committed, and the input is read again from the committed offsets.
    fn recover(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        e: StreamsError,
    ) -> Result<(), StreamsError> {
        tracing::warn!(thread = %self.shared.name, error = %e, "going back to the last commit");
        let aborted = match e {
            StreamsError::ProducerFenced(_) => Err(e),
            _ => self.collector.abort_transaction(),
        };
        match aborted {
            Ok(records) => self.ctx.aborted.add(records),
            Err(StreamsError::ProducerFenced(why)) => {
                tracing::warn!(thread = %self.shared.name, reason = %why, "the producer was fenced: creating it again");
                // What the fenced transaction wrote was aborted by whoever fenced it.
                self.ctx
                    .aborted
                    .add(self.collector.take_transaction_offsets());
                self.collector.reinitialize()?;
            }
            Err(other) => return Err(other),
        }
        self.rewind(consumer)
    }

    /// Closes every task dirty and creates them again from their last commit, the consumer going back to the
    /// committed offsets of their partitions.
    fn rewind(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let parts = self.tasks.assigned().to_vec();
        // The offsets this thread committed last; the broker's committed offsets for partitions it never did.
        let mut ours = HashMap::new();
        if let Ok(mut c) = self.shared.commits.lock() {
            ours = c.committed.clone();
            c.tasks.clear();
            c.offsets.clear();
        }
        self.tasks.handle_lost();
        self.paused.clear();
        self.waiting.clear();
        self.last_route = None;
        if parts.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &parts {
            tpl.add_partition(topic, *p);
        }
        consumer.pause(&tpl).map_err(|e| kafka("pause", e))?;
        let committed = retrying(
            "cannot read the committed offsets",
            self.ctx.config.task_timeout,
            || consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)),
        )?;
        let latest = self
            .ctx
            .config
            .client_properties(ClientKind::MainConsumer)
            .get("auto.offset.reset")
            .is_some_and(|r| matches!(r.as_str(), "latest" | "largest" | "end"));
        let mut seek = TopicPartitionList::new();
        for e in committed.elements() {
            let to = match (
                ours.get(&(e.topic().to_string(), e.partition())),
                e.offset(),
            ) {
                (Some(&o), _) | (None, Offset::Offset(o)) => Offset::Offset(o),
                _ if latest => Offset::End,
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(e.topic(), e.partition(), to)
                .map_err(|e| kafka("rewind", e))?;
        }
        consumer
            .seek_partitions(seek, Duration::from_secs(10))
            .map_err(|e| kafka("rewind to the committed offsets", e))?;
        self.apply_assignment(consumer, parts)
    }

    /// Rewinds `topic`-`partition` to `offset` and keeps it paused until its task is ready.
    fn hold_back(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), StreamsError> {
        let key = (topic.to_string(), partition);
        if self.waiting.contains(&key) && self.paused.contains(&key) {
            return Ok(());
        }
        tracing::debug!(
            topic,
            partition,
            offset,
            "record of a task not ready: rewinding"
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| kafka("rewind", e))?;
        consumer
            .pause(&one_partition(topic, partition))
            .map_err(|e| kafka("pause", e))?;
        consumer
            .seek_partitions(tpl, Duration::from_secs(5))
            .map_err(|e| kafka("rewind", e))?;
        self.waiting.insert(key);
        Ok(())
    }

    /// Creates the tasks whose state is restored and resumes their partitions.
    fn take_restored(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let ready = self.tasks.take_restored()?;
        self.init_stream_times(consumer)?;
        self.resume_ready(consumer, ready)?;
        if !self.tasks.restoring() && self.shared.state() == ThreadState::PartitionsAssigned {
            self.shared.set_state(ThreadState::Running);
        }
        Ok(())
    }

    /// Gives each new task the partition times committed with its input offsets (see [`offset_metadata`]), so
    /// stream time continues where the previous owner left it.
    fn init_stream_times(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let created = self.tasks.take_created();
        if created.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for id in &created {
            for topic in &self.ctx.routing.sources[id.subtopology] {
                tpl.add_partition(topic, id.partition);
            }
        }
        let committed = retrying(
            "cannot read the committed offsets",
            self.ctx.config.task_timeout,
            || consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)),
        )?;
        for id in created {
            let starts: HashMap<String, (i64, Option<i64>)> = committed
                .elements()
                .iter()
                .filter(|e| e.partition() == id.partition)
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    };
                    (
                        e.topic().to_string(),
                        (offset, offset_metadata::decode(e.metadata())),
                    )
                })
                .collect();
            if let Some(task) = self.tasks.task_mut(id) {
                tracing::debug!(task = %id, ?starts, "starting from the committed offsets");
                task.init_from_committed(&starts);
                task.set_max_task_idle(self.ctx.config.max_task_idle_ms);
            }
        }
        Ok(())
    }

    fn resume_ready(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        ready: Vec<(String, i32)>,
    ) -> Result<(), StreamsError> {
        if ready.is_empty() {
            return Ok(());
        }
        self.last_route = None;
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &ready {
            self.waiting.remove(&(topic.clone(), *p));
            tpl.add_partition(topic, *p);
        }
        consumer.resume(&tpl).map_err(|e| kafka("resume", e))
    }

    fn publish_metrics(&mut self) {
        // Per-task counters go to the `metrics` facade as increments, once per loop round (not per record).
        for (id, task) in self.tasks.tasks() {
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
            self.tasks.closed_metrics,
            sum_metrics(self.tasks.tasks().values().map(Task::metrics)),
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
        for (id, task) in self.tasks.tasks() {
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

    fn resume_drained(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        low: usize,
    ) -> Result<(), StreamsError> {
        let drained: Vec<(String, i32)> = self
            .paused
            .iter()
            .filter(|k| !self.waiting.contains(*k))
            .filter(|k| match self.tasks.route_of(k) {
                Some((t, i)) => self
                    .tasks
                    .tasks()
                    .get(&t)
                    .is_none_or(|t| t.queued_at(i) <= low),
                None => true,
            })
            .cloned()
            .collect();
        for key in drained {
            self.paused.remove(&key);
            if self.tasks.route_of(&key).is_none() {
                // No task reads it any more, or its task is not ready: it stays paused until it is.
                continue;
            }
            consumer
                .resume(&one_partition(&key.0, key.1))
                .map_err(|e| kafka("resume", e))?;
        }
        Ok(())
    }

    /// Processors forward what they held back (cached aggregations and tables), before the stores flush, and
    /// the tasks' consumed offsets go to the commit state.
    fn prepare_commit(&mut self) -> Result<(), StreamsError> {
        let name = &self.shared.name;
        for task in self.tasks.tasks_mut() {
            task.catch_panics(name, Task::flush_processors)?;
        }
        self.tasks.record_offsets();
        Ok(())
    }

    /// Commits everything, waiting for the broker, and checkpoints every task's stores (see
    /// [`CommitState::commit_and_checkpoint`]).
    fn commit_and_checkpoint(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let span = tracing::debug_span!("commit", tasks = self.tasks.tasks().len());
        let _enter = span.enter();
        self.prepare_commit()?;
        let started = Instant::now();
        self.shared
            .commit_state()?
            .commit_and_checkpoint(consumer)?;
        let took = started.elapsed();
        self.committed(CommitDone { held: took, took });
        self.report_state(consumer);
        self.refresh_snapshot(consumer, true);
        Ok(())
    }

    /// The periodic commit: processors forward what they held back, then [`CommitState::begin`] (at least once,
    /// the offsets are committed once the broker acknowledged what was sent before; see
    /// [`StreamThread::finish_commit`]).
    fn begin_commit(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let span = tracing::debug_span!("commit", tasks = self.tasks.tasks().len());
        let _enter = span.enter();
        self.prepare_commit()?;
        let done = self.shared.commit_state()?.begin(consumer)?;
        if let Some(done) = done {
            self.committed(done);
        }
        self.report_state(consumer);
        self.refresh_snapshot(consumer, true);
        Ok(())
    }

    /// Finishes the periodic commit once what it waits for is acknowledged (a lock and a look when nothing is
    /// waiting).
    fn finish_commit(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let done = self.shared.commit_state()?.finish(consumer)?;
        if let Some(done) = done {
            self.committed(done);
        }
        Ok(())
    }

    /// The loop's summary at debug level (see [`LoopStats`]), with the consumer's position per partition.
    fn log_loop_summary(&mut self, consumer: &BaseConsumer<StreamsConsumerContext>) {
        let stats = std::mem::replace(&mut self.loop_stats, LoopStats::new());
        self.loop_stats.processed_at_start = self.counted;
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let positions: Vec<String> = consumer
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| format!("{}-{}@{:?}", e.topic(), e.partition(), e.offset()))
                    .collect()
            })
            .unwrap_or_default();
        let pending = self
            .shared
            .commits
            .lock()
            .map(|c| c.pending_for())
            .unwrap_or_default();
        tracing::debug!(
            rounds = stats.rounds,
            polled = stats.polled,
            processed = self.counted.saturating_sub(stats.processed_at_start),
            paused = ?self.paused,
            waiting = ?self.waiting,
            ?positions,
            commit_pending_ms = pending.map(|d| d.as_millis() as u64),
            slowest_round_ms = stats.slowest.total().as_secs_f64() * 1e3,
            slowest_round = ?stats.slowest,
            "loop summary"
        );
    }

    /// Records a finished commit: how long it held the thread (`streams_commit_latency_seconds`, the history),
    /// and how long its offsets waited for the broker's acknowledgements.
    fn committed(&self, done: CommitDone) {
        metrics::histogram!("streams_commit_latency_seconds", "thread" => self.shared.name.clone())
            .record(done.held.as_secs_f64());
        self.ctx.history.record_commit(done.held);
        tracing::trace!(
            held_us = done.held.as_micros() as u64,
            took_us = done.took.as_micros() as u64,
            "committed"
        );
    }

    /// Gauges refreshed at each commit: consumer lag per partition, store sizes and cache hit ratios.
    fn report_state(&self, consumer: &BaseConsumer<StreamsConsumerContext>) {
        if let Ok(positions) = consumer.position() {
            for e in positions.elements() {
                let Offset::Offset(position) = e.offset() else {
                    continue;
                };
                // The high watermark of the last fetch response: asking the broker would hold up processing
                // at every commit.
                if let Some((_, high)) = cached_watermarks(consumer, e.topic(), e.partition()) {
                    metrics::gauge!("streams_consumer_lag", "topic" => e.topic().to_string(), "partition" => e.partition().to_string())
                        .set((high - position).max(0) as f64);
                }
            }
        }
        for (id, task) in self.tasks.tasks() {
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

    /// Library ownership: applies the tasks the instance's ownership member wants this thread to run. Tasks
    /// given up are committed, flushed, checkpointed and closed first, their partitions unassigned; new ones are
    /// assigned paused, and resume once restored. Every other task keeps processing. When the instance's lease
    /// has lapsed, every task is dropped as lost (closed without committing).
    fn follow_ownership(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let Some(own) = self.ctx.ownership.get().cloned() else {
            return Ok(());
        };
        if self.lease_lost() {
            tracing::warn!(thread = %self.shared.name, tasks = ?self.owned, "the ownership lease lapsed (heartbeats not read back): dropping the tasks as lost");
            consumer.context().on_lost("the ownership lease lapsed");
            self.apply_events(consumer)?;
            consumer
                .unassign()
                .map_err(|e| kafka("unassigning the lost partitions", e))?;
            self.owned.clear();
            own.report_held(&self.shared.name, BTreeSet::new());
            self.ownership_version = 0;
            self.lease_incarnation = None;
            return Ok(());
        }
        if own.version() == self.ownership_version {
            return Ok(());
        }
        // Tasks are taken on under a current lease only; the thread keeps them while that incarnation lasts.
        let Some(incarnation) = own.lease() else {
            return Ok(());
        };
        self.lease_incarnation = Some(incarnation);
        let (version, wanted) = own.wanted(&self.shared.name);
        self.ownership_version = version;
        // No assignment for this instance yet: the thread is not told "no task", it waits (Starting).
        let Some(wanted) = wanted else {
            return Ok(());
        };
        let ctx = self.ctx.clone();
        let parts = |tasks: &mut dyn Iterator<Item = &TaskId>| -> Vec<(String, i32)> {
            tasks.flat_map(|&t| ctx.task_partitions(t)).collect()
        };
        let tpl = |parts: &[(String, i32)]| {
            let mut tpl = TopicPartitionList::new();
            for (topic, p) in parts {
                tpl.add_partition(topic, *p);
            }
            tpl
        };
        let revoked: Vec<(String, i32)> = parts(&mut self.owned.difference(&wanted));
        if !revoked.is_empty() {
            match self.commit_and_checkpoint(consumer) {
                Err(StreamsError::TaskMigrated(e)) => {
                    tracing::warn!(thread = %self.shared.name, error = %e, "commit before giving tasks up refused")
                }
                r => r?,
            }
            let kept = parts(&mut self.owned.intersection(&wanted));
            self.shared
                .events
                .lock()
                .map_err(|_| kafka("events", "poisoned"))?
                .push(Event::PartlyRevoked {
                    revoked: revoked.iter().cloned().collect(),
                    kept,
                });
            self.apply_events(consumer)?;
            consumer
                .incremental_unassign(&tpl(&revoked))
                .map_err(|e| kafka("unassigning the partitions of tasks given up", e))?;
            tracing::info!(thread = %self.shared.name, tasks = ?self.owned.difference(&wanted).collect::<Vec<_>>(), "tasks given up");
        }
        let added = parts(&mut wanted.difference(&self.owned));
        if !added.is_empty() {
            // As a consumer group's assignment would: Running again once nothing restores (see
            // `take_restored`).
            if self.shared.state() != ThreadState::Running {
                self.shared.set_state(ThreadState::PartitionsAssigned);
            }
            let added_tpl = tpl(&added);
            consumer
                .incremental_assign(&added_tpl)
                .map_err(|e| kafka("assigning the partitions of new tasks", e))?;
            consumer
                .pause(&added_tpl)
                .map_err(|e| kafka("pausing the partitions of new tasks", e))?;
            tracing::info!(thread = %self.shared.name, tasks = ?wanted.difference(&self.owned).collect::<Vec<_>>(), "tasks taken on");
            self.shared
                .events
                .lock()
                .map_err(|_| kafka("events", "poisoned"))?
                .push(Event::Assigned(parts(&mut wanted.iter())));
            self.apply_events(consumer)?;
        } else if !self.tasks.restoring()
            && matches!(
                self.shared.state(),
                ThreadState::Starting
                    | ThreadState::PartitionsRevoked
                    | ThreadState::PartitionsAssigned
            )
        {
            // Nothing to restore (assigned no task, or tasks given up, or the lease lapsed and came back): the
            // thread runs what it has.
            self.shared.set_state(ThreadState::Running);
        }
        self.owned = wanted;
        own.report_held(&self.shared.name, self.owned.clone());
        Ok(())
    }

    /// With library ownership: whether this thread holds tasks its instance's lease no longer covers (lapsed,
    /// or lapsed and renewed since the thread took them on: they may run elsewhere meanwhile).
    fn lease_lost(&self) -> bool {
        !self.owned.is_empty()
            && self
                .ctx
                .ownership
                .get()
                .is_some_and(|o| o.lease() != self.lease_incarnation)
    }

    fn apply_events(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
    ) -> Result<(), StreamsError> {
        let events = std::mem::take(
            &mut *self
                .shared
                .events
                .lock()
                .map_err(|_| kafka("events", "poisoned"))?,
        );
        for e in events {
            self.last_route = None;
            match e {
                Event::Revoked => {
                    self.tasks.handle_revocation();
                    self.paused.clear();
                    self.waiting.clear();
                }
                Event::PartlyRevoked { revoked, kept } => {
                    self.paused.retain(|p| !revoked.contains(p));
                    self.waiting.retain(|p| !revoked.contains(p));
                    self.apply_assignment(consumer, kept)?;
                }
                Event::Lost => {
                    // Closed tasks leave the snapshot; restorations go on and stay in it.
                    self.tasks.handle_lost();
                    self.paused.clear();
                    self.waiting.clear();
                }
                Event::Assigned(parts) => self.apply_assignment(consumer, parts)?,
            }
        }
        Ok(())
    }

    /// Applies the thread's whole assignment `parts`. Every newly assigned partition starts paused (see
    /// `post_rebalance`): those of ready tasks resume now, the others once their state is restored.
    fn apply_assignment(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        parts: Vec<(String, i32)>,
    ) -> Result<(), StreamsError> {
        self.waiting = parts.iter().cloned().collect();
        let ready = self.tasks.handle_assignment(parts)?;
        self.init_stream_times(consumer)?;
        self.resume_ready(consumer, ready)?;
        if !self.tasks.restoring() {
            self.shared.set_state(ThreadState::Running);
        }
        Ok(())
    }

    fn shutdown(
        &mut self,
        consumer: &BaseConsumer<StreamsConsumerContext>,
        clean: bool,
    ) -> Result<(), StreamsError> {
        self.shared.set_state(ThreadState::PendingShutdown);
        let mut result = Ok(());
        if !clean && self.collector.exactly_once() {
            // Nothing of the failed round may commit.
            if let Err(e) = self.collector.abort_transaction() {
                tracing::warn!(error = %e, "cannot abort the open transaction; it times out on the broker");
            }
        }
        if clean {
            result = match self.commit_and_checkpoint(consumer) {
                Err(StreamsError::TaskMigrated(e)) => {
                    tracing::warn!(error = %e, "final commit refused; the next owner reprocesses from the last commit");
                    Ok(())
                }
                r => r,
            };
        }
        self.publish_metrics();
        let closing = Instant::now();
        self.tasks.shutdown(clean);
        tracing::debug!(
            ms = closing.elapsed().as_millis() as u64,
            "tasks and state updater closed"
        );
        // Everything is committed and closed: the revocation that leaving the group triggers has nothing to do.
        if let Ok(mut c) = self.shared.commits.lock() {
            c.clear();
        }
        if let Ok(mut s) = self.shared.snapshot.lock() {
            s.tasks.clear();
        }
        if let Some(own) = self.ctx.ownership.get() {
            if let Err(e) = consumer.unassign() {
                tracing::debug!(error = %e, "unassigning at shutdown");
            }
            own.report_held(&self.shared.name, BTreeSet::new());
        } else {
            consumer.unsubscribe();
        }
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
        let one = main_consumer_config(&config, "app-StreamThread-1", "p1");
        let two = main_consumer_config(&config, "app-StreamThread-2", "p1");
        assert_eq!(one.get("group.instance.id"), Some("host-a-1"));
        assert_eq!(two.get("group.instance.id"), Some("host-a-2"));
        assert_eq!(one.get("auto.offset.reset"), Some("latest"));
        assert_eq!(one.get("group.id"), Some("app"));
        assert_eq!(one.get("enable.auto.commit"), Some("false"));
        assert_eq!(one.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(one.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(one.get("isolation.level"), Some("read_uncommitted"));

        let plain = main_consumer_config(
            &StreamsConfig::new("app", "b:9092"),
            "app-StreamThread-1",
            "p1",
        );
        assert_eq!(plain.get("group.instance.id"), None);
        assert_eq!(plain.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn the_consumer_group_protocol_uses_the_brokers_range_assignor_and_drops_broker_side_settings()
    {
        let mut config = StreamsConfig::new("app", "b:9092");
        config
            .set("main.consumer.session.timeout.ms", "6000")
            .unwrap();
        config
            .set("main.consumer.heartbeat.interval.ms", "500")
            .unwrap();
        let classic = main_consumer_config(&config, "app-StreamThread-1", "p1");
        assert_eq!(classic.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(classic.get("group.protocol"), None);
        assert_eq!(classic.get("session.timeout.ms"), Some("6000"));
        config.set("group.protocol", "consumer").unwrap();
        let c = main_consumer_config(&config, "app-StreamThread-1", "p1");
        assert_eq!(c.get("group.protocol"), Some("consumer"));
        assert_eq!(c.get("group.remote.assignor"), Some("range"));
        // librdkafka refuses these three with the consumer protocol.
        for refused in [
            "partition.assignment.strategy",
            "session.timeout.ms",
            "heartbeat.interval.ms",
        ] {
            assert_eq!(c.get(refused), None, "{refused}");
        }
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }

    /// Defect: the consumer's client id was the thread name alone, the same on every instance, so the range
    /// assignor ordered the members by the random part of their member ids, and an instance restarting was given
    /// a random share of the tasks (restoring from the changelog those it held no state for).
    #[test]
    fn finding_the_consumer_client_id_starts_with_the_process_id() {
        let config = StreamsConfig::new("app", "b:9092");
        let a = main_consumer_config(&config, "app-StreamThread-2", "6f1e");
        assert_eq!(a.get("client.id"), Some("app-6f1e-StreamThread-2-consumer"));
        let mut named = StreamsConfig::new("app", "b:9092");
        named.set("client.id", "orders").unwrap();
        let b = main_consumer_config(&named, "app-StreamThread-1", "6f1e");
        assert_eq!(b.get("client.id"), Some("orders-StreamThread-1-consumer"));
    }
}
