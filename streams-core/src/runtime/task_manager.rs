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

/// Under exactly-once, commits (every 100 ms) do not each flush the stores and write a checkpoint: a task
/// checkpoints at the first commit its changelogs did not move in, once they moved this many records past the
/// last checkpoint (Kafka Streams' threshold) but at most every [`CHECKPOINT_MIN_INTERVAL`], and at least every
/// [`CHECKPOINT_MAX_INTERVAL`] while they move. A crash restores about what the changelogs gained since.
const CHECKPOINT_RECORDS: i64 = 10_000;
const CHECKPOINT_MIN_INTERVAL: Duration = Duration::from_secs(1);
const CHECKPOINT_MAX_INTERVAL: Duration = Duration::from_secs(5);

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
        }
    }

    /// Drops the thread's producer (the thread stopped) and forgets every task.
    pub(crate) fn release(&mut self) {
        self.collector = None;
        self.clear();
    }

    /// Forgets every task (their partitions were lost, or everything was committed and closed).
    pub(crate) fn clear(&mut self) {
        self.tasks.clear();
        self.offsets.clear();
        self.committed.clear();
    }

    /// Commits in the order that keeps at-least-once: flush caches (their writes go to the changelogs), flush
    /// the producer, flush the stores, commit the consumed offsets, then write checkpoints. A store whose
    /// changelog is its source topic is checkpointed at the committed offset of that topic, which is why the
    /// checkpoints come after the commit: they never claim more than was committed.
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), StreamsError> {
        self.commit_with(consumer, false)
    }

    /// [`CommitState::commit`], and under exactly-once a checkpoint of every task whatever its progress (before
    /// the tasks close or their partitions move).
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
        if let Some(collector) = self.collector.clone().filter(|c| c.exactly_once()) {
            return self.commit_transaction(consumer, &collector, force_checkpoint);
        }
        for t in self.tasks.values() {
            flush_stores(&t.stores)?;
        }
        let collector = self
            .collector
            .as_ref()
            .ok_or_else(|| kafka("commit", "the stream thread stopped"))?;
        collector.flush()?;
        let acked = collector.acked()?;
        for t in self.tasks.values_mut() {
            for (key, pos) in t.positions.iter_mut() {
                if let Some(o) = acked_offset(&acked, key) {
                    *pos = (*pos).max(o + 1);
                }
            }
        }
        self.commit_offsets(consumer)?;
        for t in self.tasks.values_mut() {
            for (key, pos) in t.positions.iter_mut() {
                // A source topic serving as a changelog: the store holds what was processed and committed.
                if let Some(&o) = self.committed.get(key) {
                    *pos = (*pos).max(o);
                }
            }
            if !t.positions.is_empty() {
                checkpoint::write(&t.dir, &t.positions)?;
            }
        }
        Ok(())
    }

    /// The exactly-once commit: the caches' writes go to the changelogs and the stores' held writes, the
    /// consumed offsets join the transaction, the transaction commits, and only then do the stores apply what
    /// they held. A checkpoint follows when a task's stores moved [`CHECKPOINT_RECORDS`] past the last one (or
    /// when `force`d): its stores are flushed first, so the checkpoint never claims more than they hold on disk,
    /// and they hold nothing that was not committed.
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
        let tpl = self.offsets_to_commit(true)?;
        collector.commit_transaction(&tpl, consumer.group_metadata())?;
        self.committed
            .extend(self.offsets.iter().map(|(k, (o, _))| (k.clone(), *o)));
        let acked = collector.acked()?;
        for t in self.tasks.values_mut() {
            // The transaction committed: the stores apply what they held for it.
            for_each_store(&t.stores, |s| s.commit_transaction())?;
            let mut moved = false;
            for (key, pos) in t.positions.iter_mut() {
                let before = *pos;
                if let Some(o) = acked_offset(&acked, key) {
                    *pos = (*pos).max(o + 1);
                }
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

    /// The consumed offsets to commit (only those that moved since the last commit when `changed`), with each
    /// partition's time in the metadata.
    fn offsets_to_commit(&self, changed: bool) -> Result<TopicPartitionList, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), (o, time)) in &self.offsets {
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

    /// Commits the consumed offsets (with each partition's time in the metadata).
    fn commit_offsets<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), StreamsError> {
        if !self.offsets.is_empty() {
            let tpl = self.offsets_to_commit(false)?;
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
                .extend(self.offsets.iter().map(|(k, (o, _))| (k.clone(), *o)));
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
                    checkpointed: restored.positions.clone(),
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
}
