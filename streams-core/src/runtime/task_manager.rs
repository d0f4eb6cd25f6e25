//! The task manager: which active tasks a stream thread runs, how they are created (their state restored by the
//! [`StateUpdater`]), revoked, lost and closed, and what a commit covers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use state_store::SharedKeyValueStore;

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::checkpoint;
use crate::runtime::clients::DeliveryMark;
use crate::runtime::kafka_error as kafka;
use crate::runtime::offset_metadata;
use crate::runtime::record_collector::{acked_offset, StreamsRecordCollector};
use crate::runtime::restore::{transient, StateRestoreListener};
use crate::runtime::state_updater::{PendingRestore, RestoredTask, StateUpdater};
use crate::runtime::thread::{now_ms, ThreadContext, ThreadShared};
use crate::runtime::thread_metadata::{TaskMetadata, TaskState};
use crate::state_manager::StateManager;
use crate::task::{
    flush_stores, for_each_store, ProcessorFlusher, Task, TaskEnv, TaskMetricsSnapshot,
};

thread_local! {
    /// The processors of this stream thread's active tasks, for the consumer's revocation callback (run on this
    /// thread, inside `poll`): it flushes them before it commits, so what cached operators held back is
    /// forwarded before the offsets of the records behind it are committed.
    static FLUSHERS: std::cell::RefCell<BTreeMap<TaskId, ProcessorFlusher>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Flushes the processors of this thread's active tasks (see [`FLUSHERS`]).
pub(crate) fn flush_thread_processors() -> Result<(), StreamsError> {
    FLUSHERS.with(|f| {
        for flusher in f.borrow().values() {
            flusher.flush()?;
        }
        Ok(())
    })
}
use crate::topology::{PartitionPlan, SubTopology, Topology};

/// The topology's routing summary, computed once per instance: which sub-topology reads each topic, and the
/// partition count of every topic the tasks write.
pub(crate) struct Routing {
    /// Full source topic name -> sub-topology.
    pub readers: HashMap<String, usize>,
    /// Partition counts of repartition, changelog and external topics.
    pub partitions: HashMap<String, i32>,
    /// Full source topic names of each sub-topology.
    pub sources: Vec<Vec<String>>,
    /// Whether the tasks of each sub-topology have changelogged stores to restore.
    pub restores: Vec<bool>,
}

impl Routing {
    pub(crate) fn new(
        topology: &Topology,
        subs: &[SubTopology],
        plan: &PartitionPlan,
        application_id: &str,
    ) -> Routing {
        let mut readers = HashMap::new();
        let mut sources = Vec::with_capacity(subs.len());
        for s in subs {
            let names: Vec<String> = s
                .source_topics
                .iter()
                .map(|t| topology.resolve_topic(application_id, t))
                .collect();
            for n in &names {
                readers.insert(n.clone(), s.id);
            }
            sources.push(names);
        }
        let mut partitions: HashMap<String, i32> =
            plan.topic_partitions.clone().into_iter().collect();
        partitions.extend(plan.changelogs.clone());
        partitions.extend(plan.external.clone());
        let restores = subs
            .iter()
            .map(|s| s.stores.iter().any(|n| topology.stores[n].logging))
            .collect();
        Routing {
            readers,
            partitions,
            sources,
            restores,
        }
    }

    /// The tasks that the partitions `parts` make up.
    pub(crate) fn tasks_of(&self, parts: &[(String, i32)]) -> BTreeSet<TaskId> {
        parts
            .iter()
            .filter_map(|(topic, p)| {
                self.readers.get(topic).map(|&sub| TaskId {
                    subtopology: sub,
                    partition: *p,
                })
            })
            .collect()
    }

    /// Whether `topic`-`partition` is an input of task `id`.
    pub(crate) fn feeds(&self, topic: &str, partition: i32, id: TaskId) -> bool {
        partition == id.partition && self.readers.get(topic) == Some(&id.subtopology)
    }
}

/// What a commit needs to know about one task, reachable from the rebalance callback.
pub(crate) struct TaskCommit {
    pub dir: PathBuf,
    pub stores: Vec<(String, SharedKeyValueStore)>,
    /// Changelog partitions of the task's logged stores and the next offset each is restored up to.
    pub positions: BTreeMap<(String, i32), i64>,
    /// The positions of the last checkpoint written, and when (exactly-once does not checkpoint every commit).
    pub checkpointed: BTreeMap<(String, i32), i64>,
    pub checkpointed_at: Instant,
}

/// Commits (every 100 ms under exactly-once, every `commit.interval.ms` otherwise) do not each flush the stores
/// and write a checkpoint, as in Kafka Streams: a task checkpoints at the first commit its changelogs did not
/// move in, once they moved this many records past the last checkpoint (Kafka Streams' threshold) but at most
/// every [`CHECKPOINT_MIN_INTERVAL`], and at least every [`CHECKPOINT_MAX_INTERVAL`] while they move. A crash
/// restores about what the changelogs gained since. Closing a task or handing it over always checkpoints.
const CHECKPOINT_RECORDS: i64 = 10_000;
const CHECKPOINT_MIN_INTERVAL: Duration = Duration::from_secs(1);
const CHECKPOINT_MAX_INTERVAL: Duration = Duration::from_secs(5);

/// An at-least-once commit waiting for the records sent before it to be acknowledged.
struct PendingCommit {
    mark: DeliveryMark,
    /// The consumed offsets (and partition times) when the commit began.
    offsets: HashMap<(String, i32), (i64, i64)>,
    began: Instant,
    /// How long beginning it held the stream thread.
    held: Duration,
}

/// Everything a commit covers: the thread's record collector, the consumed offsets and each active task's stores
/// and changelog positions. Shared with the consumer's rebalance callback, which commits before a revocation.
pub(crate) struct CommitState {
    /// `None` once the thread stopped: its producer is released with it.
    pub collector: Option<Arc<StreamsRecordCollector>>,
    /// Next offset to commit and partition time, per input partition.
    pub offsets: HashMap<(String, i32), (i64, i64)>,
    /// The offsets of the last successful commit.
    pub committed: HashMap<(String, i32), i64>,
    pub tasks: BTreeMap<TaskId, TaskCommit>,
    /// How long offset commits may keep failing with errors that pass (`task.timeout.ms`).
    commit_timeout: Duration,
    /// Since when offset commits fail with errors that pass, if they do.
    failing_since: Option<Instant>,
    /// The at-least-once commit begun and not yet done, if any.
    pending: Option<PendingCommit>,
}

/// What a commit that did not wait for the producer did, when it is done.
pub(crate) struct CommitDone {
    /// How long it held the stream thread, beginning and finishing it together.
    pub held: Duration,
    /// From its beginning until its offsets were committed.
    pub took: Duration,
}

impl CommitState {
    pub(crate) fn new(
        collector: Arc<StreamsRecordCollector>,
        commit_timeout: Duration,
    ) -> CommitState {
        CommitState {
            collector: Some(collector),
            offsets: HashMap::new(),
            committed: HashMap::new(),
            tasks: BTreeMap::new(),
            commit_timeout,
            failing_since: None,
            pending: None,
        }
    }

    /// How long the commit begun and not yet done has been waiting, if one is.
    pub(crate) fn pending_for(&self) -> Option<Duration> {
        self.pending.as_ref().map(|p| p.began.elapsed())
    }

    /// Drops the thread's producer (the thread stopped) and forgets every task.
    pub(crate) fn release(&mut self) {
        self.clear();
        self.collector = None;
    }

    /// Forgets every task (their partitions were lost, or everything was committed and closed).
    pub(crate) fn clear(&mut self) {
        self.drop_pending();
        self.tasks.clear();
        self.offsets.clear();
        self.committed.clear();
    }

    /// Gives up the commit in progress: a commit of everything follows, or the partitions are gone, and its
    /// offsets must not be committed after either.
    fn drop_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            if let Some(c) = &self.collector {
                c.forget(p.mark);
            }
        }
    }

    /// Commits everything, waiting for the broker, and checkpoints every task (before the tasks close or their
    /// partitions move). At least once, in the order that keeps the guarantee: flush the caches (their writes go
    /// to the changelogs), flush the producer, commit the consumed offsets, then flush the stores and write the
    /// checkpoints. A store whose changelog is its source topic is checkpointed at the committed offset of that
    /// topic, which is why the checkpoints come after the commit: they never claim more than was committed. The
    /// periodic at-least-once commit is [`CommitState::begin`], which does not wait.
    pub(crate) fn commit_and_checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), StreamsError> {
        self.commit_with(consumer, true)
    }

    fn commit_with<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        force_checkpoint: bool,
    ) -> Result<(), StreamsError> {
        self.drop_pending();
        if let Some(collector) = self.collector.clone().filter(|c| c.exactly_once()) {
            return self.commit_transaction(consumer, &collector, force_checkpoint);
        }
        for t in self.tasks.values() {
            for_each_store(&t.stores, |s| s.flush_cache())?;
        }
        let collector = self
            .collector
            .clone()
            .ok_or_else(|| kafka("commit", "the stream thread stopped"))?;
        collector.flush()?;
        let offsets = self.offsets.clone();
        self.commit_offsets(consumer, &offsets)?;
        self.checkpoint_due(&collector, force_checkpoint)
    }

    /// Begins the periodic commit. Under exactly-once this is the whole commit (the transaction's). At least
    /// once, the caches' writes go to the changelogs and the consumed offsets are noted with a mark after every
    /// record sent so far; the offsets are committed by [`CommitState::finish`] once the broker acknowledged
    /// those records, and meanwhile the thread goes on processing (a flush would hold it for the broker's round
    /// trip, and the input would queue up behind it). A commit still waiting when the next one is due is left to
    /// finish; one waiting longer than `task.timeout.ms` becomes a flush, which reports what holds it up.
    ///
    /// Returns the commit finished by this call, if one was.
    pub(crate) fn begin<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<Option<CommitDone>, StreamsError> {
        let collector = self
            .collector
            .clone()
            .ok_or_else(|| kafka("commit", "the stream thread stopped"))?;
        if collector.exactly_once() {
            let began = Instant::now();
            self.commit_with(consumer, false)?;
            let took = began.elapsed();
            return Ok(Some(CommitDone { held: took, took }));
        }
        if let Some(p) = &self.pending {
            if p.began.elapsed() < self.commit_timeout {
                return self.finish(consumer);
            }
            let began = p.began;
            self.commit_with(consumer, false)?;
            return Ok(Some(CommitDone {
                held: began.elapsed(),
                took: began.elapsed(),
            }));
        }
        let began = Instant::now();
        for t in self.tasks.values() {
            for_each_store(&t.stores, |s| s.flush_cache())?;
        }
        collector.failure()?;
        self.pending = Some(PendingCommit {
            mark: collector.mark(),
            offsets: self.offsets.clone(),
            began,
            held: began.elapsed(),
        });
        self.finish(consumer)
    }

    /// Finishes the commit begun by [`CommitState::begin`] if every record sent before it was acknowledged:
    /// commits its offsets and writes the checkpoints that are due. Nothing when none is waiting or its records
    /// are still in flight. A failed delivery fails here, before any offset past it is committed.
    pub(crate) fn finish<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<Option<CommitDone>, StreamsError> {
        let (Some(p), Some(collector)) = (&self.pending, self.collector.clone()) else {
            return Ok(None);
        };
        if !collector.reached(p.mark) {
            return Ok(None);
        }
        let Some(p) = self.pending.take() else {
            return Ok(None);
        };
        collector.failure()?;
        let started = Instant::now();
        // Only partitions still held: a partition that moved since was committed by its revocation.
        let offsets: HashMap<(String, i32), (i64, i64)> = p
            .offsets
            .into_iter()
            .filter(|(k, _)| self.offsets.contains_key(k))
            .collect();
        self.commit_offsets(consumer, &offsets)?;
        self.checkpoint_due(&collector, false)?;
        Ok(Some(CommitDone {
            held: p.held + started.elapsed(),
            took: p.began.elapsed(),
        }))
    }

    /// Moves each task's changelog positions to what the producer has acknowledged (and, for a source topic
    /// serving as a changelog, to what is committed), then writes the checkpoints that are due (all of them
    /// when `force`d): the task's stores are flushed first, so a checkpoint never claims more than they hold
    /// on disk. Every acknowledged record was written to its store before it was sent, so the flush covers it.
    fn checkpoint_due(
        &mut self,
        collector: &StreamsRecordCollector,
        force: bool,
    ) -> Result<(), StreamsError> {
        let acked = collector.acked()?;
        for t in self.tasks.values_mut() {
            let mut moved = false;
            for (key, pos) in t.positions.iter_mut() {
                let before = *pos;
                if let Some(o) = acked_offset(&acked, key) {
                    *pos = (*pos).max(o + 1);
                }
                // A source topic serving as a changelog: the store holds what was processed and committed.
                if let Some(&o) = self.committed.get(key) {
                    *pos = (*pos).max(o);
                }
                moved |= *pos != before;
            }
            let behind: i64 = t
                .positions
                .iter()
                .map(|(k, p)| p - t.checkpointed.get(k).copied().unwrap_or(0))
                .sum();
            let since = t.checkpointed_at.elapsed();
            // A task whose changelogs stopped moving (idle, or between bursts) checkpoints at once: a crash
            // then restores nothing.
            let due = force
                || !moved
                || since >= CHECKPOINT_MAX_INTERVAL
                || (behind >= CHECKPOINT_RECORDS && since >= CHECKPOINT_MIN_INTERVAL);
            if !t.positions.is_empty() && t.positions != t.checkpointed && due {
                flush_stores(&t.stores)?;
                checkpoint::write(&t.dir, &t.positions)?;
                t.checkpointed = t.positions.clone();
                t.checkpointed_at = Instant::now();
            }
        }
        Ok(())
    }

    /// The exactly-once commit: the caches' writes go to the changelogs and the stores' held writes, the
    /// consumed offsets join the transaction, the transaction commits, and only then do the stores apply what
    /// they held. A checkpoint follows when one is due (see [`CHECKPOINT_RECORDS`]; always when `force`d): its
    /// stores hold nothing that was not committed.
    fn commit_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        collector: &StreamsRecordCollector,
        force: bool,
    ) -> Result<(), StreamsError> {
        // The caches' writes go to the changelogs and to the writes the stores hold for the transaction.
        for t in self.tasks.values() {
            for_each_store(&t.stores, |s| s.flush_cache())?;
        }
        // Offsets that did not move since the last commit need no transaction of their own.
        let tpl = self.offsets_to_commit(&self.offsets, true)?;
        collector.commit_transaction(&tpl, consumer.group_metadata())?;
        self.committed
            .extend(self.offsets.iter().map(|(k, (o, _))| (k.clone(), *o)));
        for t in self.tasks.values() {
            // The transaction committed: the stores apply what they held for it.
            for_each_store(&t.stores, |s| s.commit_transaction())?;
        }
        self.checkpoint_due(collector, force)
    }

    /// The consumed offsets to commit (only those that moved since the last commit when `changed`), with each
    /// partition's time in the metadata.
    fn offsets_to_commit(
        &self,
        offsets: &HashMap<(String, i32), (i64, i64)>,
        changed: bool,
    ) -> Result<TopicPartitionList, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), (o, time)) in offsets {
            if changed && self.committed.get(&(topic.clone(), *p)) == Some(o) {
                continue;
            }
            let mut e = tpl.add_partition(topic, *p);
            e.set_offset(Offset::Offset(*o))
                .map_err(|e| kafka("commit", e))?;
            if *time >= 0 {
                e.set_metadata(offset_metadata::encode(*time));
            }
        }
        Ok(tpl)
    }

    /// Commits consumed `offsets` (with each partition's time in the metadata).
    fn commit_offsets<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &HashMap<(String, i32), (i64, i64)>,
    ) -> Result<(), StreamsError> {
        if !offsets.is_empty() {
            let tpl = self.offsets_to_commit(offsets, false)?;
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
                return match e {
                    KafkaError::ConsumerCommit(
                        C::RebalanceInProgress | C::IllegalGeneration | C::UnknownMemberId,
                    ) => Err(StreamsError::TaskMigrated(format!(
                        "offset commit refused: {e}"
                    ))),
                    // The coordinator moving or out of reach (a broker restarting, a network outage): the
                    // offsets stay uncommitted, which at-least-once allows (their records are processed again
                    // after a failure), and the next commit tries again, for up to task.timeout.ms.
                    e if transient(&e)
                        && self
                            .failing_since
                            .get_or_insert_with(Instant::now)
                            .elapsed()
                            < self.commit_timeout =>
                    {
                        tracing::warn!(error = %e, "offset commit failed; retrying at the next commit");
                        Ok(())
                    }
                    e => Err(kafka(
                        &format!(
                            "offset commit failed{}",
                            self.failing_since.map_or(String::new(), |t| format!(
                                " (commits failing for {:?}; task.timeout.ms is {:?})",
                                t.elapsed(),
                                self.commit_timeout
                            ))
                        ),
                        e,
                    )),
                };
            }
            self.failing_since = None;
            self.committed
                .extend(offsets.iter().map(|(k, (o, _))| (k.clone(), *o)));
        }
        Ok(())
    }
}

/// Adds two counter snapshots.
pub(crate) fn add(a: TaskMetricsSnapshot, b: TaskMetricsSnapshot) -> TaskMetricsSnapshot {
    TaskMetricsSnapshot {
        processed: a.processed + b.processed,
        skipped_records: a.skipped_records + b.skipped_records,
        dead_lettered: a.dead_lettered + b.dead_lettered,
        punctuations: a.punctuations + b.punctuations,
        dropped_records: a.dropped_records + b.dropped_records,
    }
}

/// What changed in a thread's task set for a new assignment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AssignmentDiff {
    /// Active tasks to close (their partitions went elsewhere).
    pub close: Vec<TaskId>,
    /// Restorations to cancel.
    pub cancel: Vec<TaskId>,
    /// Tasks to create (restore first).
    pub create: Vec<TaskId>,
}

/// Compares the tasks a thread has (`active`, `restoring`) with the tasks an assignment makes (`wanted`).
pub(crate) fn diff_assignment(
    active: &BTreeSet<TaskId>,
    restoring: &BTreeSet<TaskId>,
    wanted: &BTreeSet<TaskId>,
) -> AssignmentDiff {
    AssignmentDiff {
        close: active.difference(wanted).copied().collect(),
        cancel: restoring.difference(wanted).copied().collect(),
        create: wanted
            .iter()
            .filter(|id| !active.contains(id) && !restoring.contains(id))
            .copied()
            .collect(),
    }
}

/// The active tasks of a stream thread and those whose state is being restored.
pub(crate) struct TaskManager {
    ctx: Arc<ThreadContext>,
    shared: Arc<ThreadShared>,
    collector: Arc<StreamsRecordCollector>,
    updater: StateUpdater,
    tasks: BTreeMap<TaskId, Task>,
    restoring: BTreeMap<TaskId, PendingRestore>,
    /// The thread's current assignment.
    assigned: Vec<(String, i32)>,
    /// (topic, partition) -> (task, input index), for active tasks only.
    routes: HashMap<(String, i32), (TaskId, usize)>,
    /// The thread's record cache budget, shared by the cached stores of all its tasks.
    cache: state_store::CacheBudget,
    /// Counters of closed tasks.
    pub closed_metrics: TaskMetricsSnapshot,
    /// The partitions were revoked and not yet assigned again: the tasks are committed and wait to be closed or
    /// resumed, so their wall-clock punctuations must not run.
    pub suspended: bool,
    /// Tasks created since the last [`TaskManager::take_created`].
    created: Vec<TaskId>,
}

impl TaskManager {
    pub(crate) fn new(
        ctx: Arc<ThreadContext>,
        shared: Arc<ThreadShared>,
        collector: Arc<StreamsRecordCollector>,
        updater: StateUpdater,
    ) -> TaskManager {
        // One record cache per stream thread, its share of `statestore.cache.max.bytes`, for all its tasks.
        let cache = state_store::CacheBudget::new(
            ctx.config.cache_max_bytes / ctx.config.num_stream_threads.max(1),
        );
        TaskManager {
            ctx,
            shared,
            collector,
            updater,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            assigned: Vec::new(),
            routes: HashMap::new(),
            cache,
            closed_metrics: TaskMetricsSnapshot::default(),
            suspended: false,
            created: Vec::new(),
        }
    }

    /// The active tasks.
    pub(crate) fn tasks(&self) -> &BTreeMap<TaskId, Task> {
        &self.tasks
    }

    /// The active tasks, mutably.
    pub(crate) fn tasks_mut(&mut self) -> impl Iterator<Item = &mut Task> {
        self.tasks.values_mut()
    }

    /// The active task and input index fed by `topic`-`partition`.
    #[inline]
    pub(crate) fn route(&self, topic: &str, partition: i32) -> Option<(TaskId, usize)> {
        self.routes.get(&(topic.to_string(), partition)).copied()
    }

    /// The route of a partition, by key.
    pub(crate) fn route_of(&self, key: &(String, i32)) -> Option<(TaskId, usize)> {
        self.routes.get(key).copied()
    }

    pub(crate) fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }

    /// Whether some task's state is still being restored.
    pub(crate) fn restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// The partitions were revoked (eager rebalance): the consumer fetches from the committed offsets again,
    /// so what is queued is dropped; the tasks wait for the next assignment.
    pub(crate) fn handle_revocation(&mut self) {
        for t in self.tasks.values_mut() {
            t.clear_queues();
        }
        self.suspended = true;
    }

    /// Closes every active task dirty (see [`Task::close_dirty`]): the partitions were lost, the commit state
    /// already forgot them, and the next assignment creates the tasks again from their last checkpoints.
    /// Restorations go on: they only read changelogs.
    pub(crate) fn handle_lost(&mut self) {
        FLUSHERS.with(|f| f.borrow_mut().clear());
        for (id, mut t) in std::mem::take(&mut self.tasks) {
            tracing::info!(task = %id, "closing task dirty: its partitions were lost");
            self.closed_metrics = add(self.closed_metrics, t.metrics());
            t.close_dirty();
            if let Ok(mut s) = self.shared.snapshot.lock() {
                s.tasks.remove(&id);
            }
        }
        self.routes.clear();
        self.assigned.clear();
        self.suspended = true;
    }

    /// Applies a new assignment: closes the tasks whose partitions went elsewhere, cancels their restorations,
    /// and queues the restoration of new tasks. Returns the partitions whose tasks are ready to process.
    pub(crate) fn handle_assignment(
        &mut self,
        parts: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32)>, StreamsError> {
        self.suspended = false;
        let wanted = self.ctx.routing.tasks_of(&parts);
        let active: BTreeSet<TaskId> = self.tasks.keys().copied().collect();
        let restoring: BTreeSet<TaskId> = self.restoring.keys().copied().collect();
        let diff = diff_assignment(&active, &restoring, &wanted);
        for id in diff.close {
            FLUSHERS.with(|f| f.borrow_mut().remove(&id));
            if let Some(mut t) = self.tasks.remove(&id) {
                tracing::info!(task = %id, "closing task");
                self.closed_metrics = add(self.closed_metrics, t.metrics());
                t.close()?;
            }
            if let Ok(mut c) = self.shared.commits.lock() {
                c.tasks.remove(&id);
                let routing = &self.ctx.routing;
                c.offsets
                    .retain(|(topic, p), _| !routing.feeds(topic, *p, id));
                c.committed
                    .retain(|(topic, p), _| !routing.feeds(topic, *p, id));
            }
            if let Ok(mut s) = self.shared.snapshot.lock() {
                s.tasks.remove(&id);
            }
        }
        for id in diff.cancel {
            if let Some(r) = self.restoring.remove(&id) {
                tracing::info!(task = %id, "cancelling restoration: the task moved elsewhere");
                r.cancel.store(true, Ordering::Relaxed);
            }
            if let Ok(mut s) = self.shared.snapshot.lock() {
                s.tasks.remove(&id);
            }
        }
        for id in diff.create {
            if let Ok(mut s) = self.shared.snapshot.lock() {
                let topics = self.ctx.routing.sources[id.subtopology].iter().cloned();
                s.tasks.insert(id, TaskMetadata::restoring(id, topics));
            }
            if !self.ctx.routing.restores[id.subtopology] {
                // Nothing to restore: the task starts at once instead of queueing behind restorations.
                let env = self.ctx.store_env();
                let sub = &self.ctx.subs[id.subtopology];
                let state = StateManager::open(&self.ctx.topology, sub, id, &env, None)?;
                self.create_task(
                    id,
                    RestoredTask {
                        state,
                        positions: BTreeMap::new(),
                        restored: 0,
                    },
                )?;
                continue;
            }
            // A standby copy of the task here goes first: the restoration starts from its checkpoint.
            self.ctx.standbys.release(id);
            let listener: Arc<dyn StateRestoreListener> = Arc::new(TaskRestoreProgress {
                inner: self.ctx.restore_listener.clone(),
                shared: self.shared.clone(),
                task: id,
            });
            let pending = self.updater.add(id, listener)?;
            self.restoring.insert(id, pending);
        }
        self.assigned = parts;
        self.rebuild_routes();
        let member = self.shared.member_id.lock().ok().and_then(|m| m.clone());
        (self.ctx.on_assignment)(&self.shared.name, self.assigned.clone(), member);
        Ok(self.routes.keys().cloned().collect())
    }

    fn rebuild_routes(&mut self) {
        self.routes.clear();
        for (id, task) in &self.tasks {
            for (topic, p) in &self.assigned {
                if self.ctx.routing.feeds(topic, *p, *id) {
                    if let Some(i) = task.input_index(topic) {
                        self.routes.insert((topic.clone(), *p), (*id, i));
                    }
                }
            }
        }
    }

    /// Takes the restorations that finished: their tasks are created and become active. Returns the partitions
    /// that became ready to process. A failed restoration fails the thread.
    pub(crate) fn take_restored(&mut self) -> Result<Vec<(String, i32)>, StreamsError> {
        let mut ready = Vec::new();
        for outcome in self.updater.drain() {
            let current = self
                .restoring
                .get(&outcome.task)
                .is_some_and(|r| r.job == outcome.job);
            match outcome.result {
                Ok(Some(restored)) if current => {
                    self.restoring.remove(&outcome.task);
                    self.create_task(outcome.task, restored)?;
                    ready.extend(
                        self.assigned
                            .iter()
                            .filter(|(t, p)| self.ctx.routing.feeds(t, *p, outcome.task))
                            .cloned(),
                    );
                }
                Ok(Some(stale)) => stale.state.close(),
                Ok(None) => {}
                Err(e) if current => {
                    self.restoring.remove(&outcome.task);
                    if let Ok(mut s) = self.shared.snapshot.lock() {
                        s.tasks.remove(&outcome.task);
                    }
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(task = %outcome.task, error = %e, "a cancelled restoration failed")
                }
            }
        }
        if !ready.is_empty() {
            self.rebuild_routes();
        }
        Ok(ready)
    }

    fn create_task(&mut self, id: TaskId, restored: RestoredTask) -> Result<(), StreamsError> {
        let span = tracing::info_span!("task", task = %id);
        let _enter = span.enter();
        let app = &self.ctx.config.application_id;
        let state_dir = self.ctx.config.state_dir.join(app);
        let task_dir = restored.state.task_dir.clone();
        let sub = &self.ctx.subs[id.subtopology];
        let env = TaskEnv {
            application_id: Arc::from(app.as_str()),
            state_dir,
            rocksdb: self.ctx.rocksdb.clone(),
            cache: Some(self.cache.clone()),
            collector: Box::new(
                self.collector
                    .task_collector(self.ctx.routing.partitions.clone()),
            ),
            changelog: Some(Arc::new(self.collector.changelog_writer())),
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
            exactly_once: self.ctx.config.exactly_once(),
        };
        let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Task::with_state(&self.ctx.topology, sub, env, restored.state)
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
        tracing::info!(task = %id, restored = restored.restored, "task created");
        let stores = task.stores().to_vec();
        if let Ok(mut c) = self.shared.commits.lock() {
            c.tasks.insert(
                id,
                TaskCommit {
                    dir: task_dir,
                    stores,
                    // The restoration did not write one: the first commit whose changelogs are idle, or one
                    // within CHECKPOINT_MAX_INTERVAL, does.
                    checkpointed: BTreeMap::new(),
                    checkpointed_at: Instant::now(),
                    positions: restored.positions,
                },
            );
        }
        // Queries read the task's stores from here on, no longer the standby copy it was restored from.
        self.ctx.standbys.started(id);
        FLUSHERS.with(|f| f.borrow_mut().insert(id, task.processor_flusher()));
        self.tasks.insert(id, task);
        self.created.push(id);
        Ok(())
    }

    /// The thread's current assignment.
    pub(crate) fn assigned(&self) -> &[(String, i32)] {
        &self.assigned
    }

    /// The tasks created since the last call (their stream time is still to be initialized).
    pub(crate) fn take_created(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.created)
    }

    /// Records the next offset to commit of every input that processed something.
    pub(crate) fn record_offsets(&self) {
        if let Ok(mut c) = self.shared.commits.lock() {
            for task in self.tasks.values() {
                for (topic, p, o, time) in task.consumed_offsets() {
                    c.offsets.insert((topic.to_string(), p), (o, time));
                }
            }
        }
    }

    /// Closes every task (dirty unless `clean`: after an error nothing since the last commit is trusted) and
    /// stops the state updater.
    pub(crate) fn shutdown(&mut self, clean: bool) {
        for r in self.restoring.values() {
            r.cancel.store(true, Ordering::Relaxed);
        }
        self.restoring.clear();
        self.updater.shutdown();
        FLUSHERS.with(|f| f.borrow_mut().clear());
        for (id, mut t) in std::mem::take(&mut self.tasks) {
            self.closed_metrics = add(self.closed_metrics, t.metrics());
            if !clean {
                // A task may have applied half a record. Flushing it would publish that, and the next owner
                // would apply it again on top.
                t.close_dirty();
            } else if let Err(e) = t.close() {
                tracing::warn!(task = %id, error = %e, "error closing task");
            }
        }
        self.routes.clear();
    }
}

/// Passes restoration progress to the application's listener and into the thread's task snapshot.
struct TaskRestoreProgress {
    inner: Arc<dyn StateRestoreListener>,
    shared: Arc<ThreadShared>,
    task: TaskId,
}

impl TaskRestoreProgress {
    fn update(
        &self,
        store: &str,
        partition: i32,
        f: impl FnOnce(&mut crate::runtime::thread_metadata::StoreRestoration),
    ) {
        use crate::runtime::thread_metadata::StoreRestoration;
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

    fn on_restore_suspended(&self, store: &str, partition: i32, restored: u64) {
        self.update(store, partition, |r| r.restored = restored);
        self.inner.on_restore_suspended(store, partition, restored);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sub: usize, p: i32) -> TaskId {
        TaskId {
            subtopology: sub,
            partition: p,
        }
    }

    #[test]
    fn an_assignment_closes_what_left_cancels_restorations_that_left_and_creates_the_rest() {
        let active: BTreeSet<_> = [t(0, 0), t(0, 1)].into();
        let restoring: BTreeSet<_> = [t(1, 0), t(1, 1)].into();
        let wanted: BTreeSet<_> = [t(0, 1), t(1, 1), t(0, 2)].into();
        let d = diff_assignment(&active, &restoring, &wanted);
        assert_eq!(d.close, vec![t(0, 0)]);
        assert_eq!(d.cancel, vec![t(1, 0)]);
        // A task still restoring is not restored a second time; an active one is kept as it is.
        assert_eq!(d.create, vec![t(0, 2)]);
    }

    /// The periodic at-least-once commit does not hold the stream thread while the broker acknowledges: begun
    /// while a sent record is held up (its Produce requests fail and are retried for seconds), it returns at once
    /// and commits nothing; the offsets are committed once the record is acknowledged, and not before.
    #[test]
    fn a_periodic_commit_commits_once_what_was_sent_is_acknowledged_without_waiting_for_it() {
        use crate::runtime::clients::{create_producer, send};
        use crate::runtime::config::StreamsConfig;
        use crate::runtime::embedded::{EmbeddedKafka, Fault};
        use crate::task::OutgoingRecord;
        use rdkafka::config::ClientConfig;
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        let kafka = EmbeddedKafka::start().unwrap();
        kafka.create_topic("commit-in", 1).unwrap();
        kafka.create_topic("commit-out", 1).unwrap();
        let config = StreamsConfig::new("commit-app", kafka.bootstrap_servers());
        let producer = create_producer(&config, "commit-app-producer", None).unwrap();
        let collector = Arc::new(StreamsRecordCollector::new(
            producer.clone(),
            Duration::from_secs(60),
        ));
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", "commit-app")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("commit-in", 0);
        consumer.assign(&tpl).unwrap();
        let committed = || {
            let c = consumer
                .committed_offsets(tpl.clone(), Duration::from_secs(10))
                .unwrap();
            c.elements()[0].offset()
        };
        let mut state = CommitState::new(collector.clone(), Duration::from_secs(60));
        let key = ("commit-in".to_string(), 0);

        // Nothing in flight: the commit is done within `begin`.
        state.offsets.insert(key.clone(), (3, 0));
        assert!(state.begin(&consumer).unwrap().is_some());
        assert_eq!(committed(), Offset::Offset(3));

        // The broker refuses the next Produce requests (retried with backoff: seconds).
        kafka
            .inject(Fault::RequestErrors {
                api: RDKafkaApiKey::Produce,
                errors: vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 6],
            })
            .unwrap();
        let headers = crate::record::Headers::new();
        send(
            &producer,
            &OutgoingRecord {
                topic: "commit-out",
                partition: Some(0),
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp: 1,
                headers: &headers,
            },
        )
        .unwrap();
        state.offsets.insert(key.clone(), (8, 0));
        assert!(
            state.begin(&consumer).unwrap().is_none(),
            "the commit waits for the record"
        );
        assert!(
            collector.acked().unwrap().is_empty(),
            "begin returned before the broker acknowledged the record"
        );
        assert_eq!(committed(), Offset::Offset(3), "nothing committed yet");
        // The thread goes on: a later input position does not join the commit under way.
        state.offsets.insert(key.clone(), (9, 0));
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            if let Some(done) = state.finish(&consumer).unwrap() {
                break done;
            }
            assert!(
                collector.acked().unwrap().is_empty(),
                "acknowledged, yet the commit did not finish"
            );
            assert!(
                Instant::now() < deadline,
                "the record was never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(done.took >= done.held);
        assert_eq!(
            acked_offset(&collector.acked().unwrap(), &("commit-out".to_string(), 0)),
            Some(0)
        );
        assert_eq!(committed(), Offset::Offset(8));
        // The next one takes the later position.
        assert!(state.begin(&consumer).unwrap().is_some());
        assert_eq!(committed(), Offset::Offset(9));
    }
}
