//! Restoration as a bulk load: every changelog partition that the state updater's tasks must read is assigned
//! to the restore consumer at once, so librdkafka fetches them together, and the records are routed to their
//! stores in large write batches. A partition is done once it reached its end; a task once all of its
//! partitions are; tasks planned while others restore join the same assignment.
//!
//! The end of an open-ended partition (a changelog) is the larger of the end the broker listed when the task
//! was planned and the high watermark of the fetch responses: a partition is only done after a fetch response
//! for it was seen (a record, or the end-of-partition event) and its position reached both.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use state_store::{BatchEntry, KeyValueStore, NO_TIMESTAMP};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::checkpoint;
use crate::runtime::kafka_error as kafka;
use crate::runtime::record_collector::AbortedRecords;
use crate::runtime::restore::{
    cached_high_watermark, transient, PlannedRestore, StateRestoreListener,
};
use crate::runtime::security::StreamsClientContext;
use crate::runtime::state_updater::{RestoreOutcome, RestoredTask};
use crate::state_manager::StateManager;

/// Records buffered for one partition before they are written to its store in one batch.
const BATCH_RECORDS: usize = 10_000;
/// Records taken from the consumer in one step before the buffers are written and the jobs looked at.
const STEP_RECORDS: usize = 100_000;
/// How long a partition at its listed end may go without a record or an end-of-partition event before it is
/// taken as ended.
const QUIET_END: Duration = Duration::from_secs(2);
/// The longest one step polls: cancellations and new tasks are looked at between steps.
pub(crate) const STEP_TIME: Duration = Duration::from_millis(100);
/// How often a standby task that read something flushes its stores and writes its checkpoint.
pub(crate) const STANDBY_CHECKPOINT: Duration = Duration::from_secs(5);

/// A task whose stores are open and whose restoration is planned.
pub(crate) struct BulkJob {
    pub task: TaskId,
    /// The job's number (see `StateUpdater::add`).
    pub number: u64,
    pub cancel: Arc<AtomicBool>,
    pub listener: Arc<dyn StateRestoreListener>,
    pub state: StateManager,
    /// The task's checkpoint as planning left it (entries of wiped stores forgotten).
    pub checkpoint: BTreeMap<(String, i32), i64>,
    /// Partitions with nothing to read and where they stand.
    pub positions: BTreeMap<(String, i32), i64>,
    pub plans: Vec<PlannedRestore>,
    /// A standby task's shared state (`None` for a restoration): its changelogs are followed until it is
    /// cancelled, never finished, and what was read is checkpointed every [`STANDBY_CHECKPOINT`].
    pub progress: Option<StandbyProgress>,
}

pub(crate) use crate::runtime::standby::StandbyProgress;

/// Records of one partition waiting to be written: keys and values side by side in one buffer.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    entries: Vec<(Range<usize>, Option<Range<usize>>, i64)>,
}

impl Batch {
    fn push(&mut self, key: &[u8], value: Option<&[u8]>, ts: i64, timestamped: bool) {
        let k = self.data.len()..self.data.len() + key.len();
        self.data.extend_from_slice(key);
        let v = value.map(|v| {
            let from = self.data.len();
            if timestamped {
                // The changelog of a timestamped store carries the value's time as the record's.
                self.data.extend_from_slice(&ts.to_be_bytes());
            }
            self.data.extend_from_slice(v);
            from..self.data.len()
        });
        self.entries.push((k, v, ts));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }
}

struct Part {
    plan: PlannedRestore,
    /// Index of the partition's store in the task's state.
    store: usize,
    /// The next offset to read.
    position: i64,
    /// The position at the end of the previous step: a task whose positions do not move makes no progress.
    settled: i64,
    restored: u64,
    /// A fetch response for the partition was seen: a record of it, or an end-of-partition event.
    fetched: bool,
    /// When the partition last moved (or was planned): a partition at its listed end that hears nothing for
    /// [`QUIET_END`] is taken as ended, as a bound in case no end-of-partition event comes.
    moved: Instant,
    done: bool,
    batch: Batch,
}

impl Part {
    fn total(&self, high: i64) -> u64 {
        (self.plan.end.max(high) - self.plan.start).max(0) as u64
    }
}

struct Active {
    job: BulkJob,
    parts: Vec<Part>,
    restored: u64,
    last_progress: Instant,
    /// A standby's records applied by its last checkpoint, and when that was.
    restored_at_checkpoint: u64,
    checkpointed: Instant,
}

/// The restorations in progress on one state updater.
pub(crate) struct BulkRestore {
    active: Vec<Active>,
    /// Topic -> partition -> (index in `active`, index in its parts).
    route: HashMap<String, HashMap<i32, (usize, usize)>>,
    /// The set of partitions to read changed since the consumer was assigned.
    reassign: bool,
    aborted: Option<Arc<AbortedRecords>>,
    /// How long a task may go without progress (`task.timeout.ms`).
    timeout: Duration,
    last_log: Instant,
    /// The longest one step polls.
    step_time: Duration,
}

impl BulkRestore {
    pub(crate) fn new(aborted: Option<Arc<AbortedRecords>>, timeout: Duration) -> BulkRestore {
        BulkRestore {
            active: Vec::new(),
            route: HashMap::new(),
            reassign: false,
            aborted,
            timeout,
            last_log: Instant::now(),
            step_time: STEP_TIME,
        }
    }

    /// Polls at most `step_time` per step instead of [`STEP_TIME`]: how long a cancellation may wait.
    pub(crate) fn with_step_time(mut self, step_time: Duration) -> BulkRestore {
        self.step_time = step_time;
        self
    }

    /// Whether no task is restoring.
    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Starts reading the partitions of `job`. The consumer is assigned again at the next step (planning may
    /// have used it).
    pub(crate) fn add(&mut self, job: BulkJob) -> Result<(), StreamsError> {
        let mut parts = Vec::with_capacity(job.plans.len());
        for plan in &job.plans {
            let store = job
                .state
                .stores
                .iter()
                .position(|s| s.name == plan.store)
                .ok_or_else(|| {
                    StreamsError::processor(format!(
                        "restoring task {}: store '{}' is not open",
                        job.task, plan.store
                    ))
                })?;
            tracing::info!(store = %plan.store, partition = plan.partition, start = plan.start, end = plan.end, "restoring");
            parts.push(Part {
                plan: plan.clone(),
                store,
                position: plan.start,
                settled: plan.start,
                restored: 0,
                fetched: false,
                moved: Instant::now(),
                done: false,
                batch: Batch::default(),
            });
        }
        self.active.push(Active {
            job,
            parts,
            restored: 0,
            last_progress: Instant::now(),
            restored_at_checkpoint: 0,
            checkpointed: Instant::now(),
        });
        self.reassign = true;
        Ok(())
    }

    /// Reads for a while and reports the tasks that finished, were cancelled or failed. After a failure
    /// (reported for one task) every other task's stores are closed and nothing is left to restore.
    pub(crate) fn step(
        &mut self,
        consumer: &BaseConsumer<StreamsClientContext>,
    ) -> Vec<RestoreOutcome> {
        let mut out = Vec::new();
        if let Err(e) = self.try_step(consumer, &mut out) {
            let mut error = Some(e);
            for a in self.active.drain(..) {
                match error.take() {
                    Some(e) => out.push(RestoreOutcome {
                        task: a.job.task,
                        job: a.job.number,
                        result: Err(e),
                    }),
                    None => a.job.state.close(),
                }
            }
            self.route.clear();
            let _ = consumer.unassign();
        }
        out
    }

    /// Stops every restoration, keeping and checkpointing what was restored (the updater is shutting down).
    pub(crate) fn suspend_all(&mut self, consumer: &BaseConsumer<StreamsClientContext>) {
        for a in std::mem::take(&mut self.active) {
            if let Err(e) = suspend(a) {
                tracing::warn!(error = %e, "cannot keep a suspended restoration");
            }
        }
        self.route.clear();
        let _ = consumer.unassign();
    }

    /// Ends the cancelled restorations (their tasks moved elsewhere), keeping and checkpointing what they
    /// restored and closing their stores. Done before new tasks are planned: a task cancelled and assigned again
    /// must find its stores closed, not wait for their lock.
    pub(crate) fn end_cancelled(&mut self) -> Vec<RestoreOutcome> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].job.cancel.load(Ordering::Relaxed) {
                let a = self.active.remove(i);
                let (task, job) = (a.job.task, a.job.number);
                tracing::info!(%task, restored = a.restored, "restoration cancelled");
                let result = suspend(a).map(|()| None);
                out.push(RestoreOutcome { task, job, result });
                self.reassign = true;
            } else {
                i += 1;
            }
        }
        if self.reassign {
            self.route.clear();
        }
        out
    }

    fn try_step(
        &mut self,
        consumer: &BaseConsumer<StreamsClientContext>,
        out: &mut Vec<RestoreOutcome>,
    ) -> Result<(), StreamsError> {
        // Cancelled tasks first: they moved elsewhere.
        for o in self.end_cancelled() {
            let failed = o.result.is_err();
            out.push(o);
            if failed {
                return Ok(());
            }
        }
        if self.reassign {
            self.assign(consumer)?;
        }
        let reading = self.active.iter().any(|a| a.parts.iter().any(|p| !p.done));
        if reading {
            self.poll(consumer)?;
        }
        self.settle(consumer, out)
    }

    /// Assigns the consumer every partition still to read, each at its position.
    fn assign(
        &mut self,
        consumer: &BaseConsumer<StreamsClientContext>,
    ) -> Result<(), StreamsError> {
        self.route.clear();
        let mut tpl = TopicPartitionList::new();
        for (ai, a) in self.active.iter().enumerate() {
            for (pi, p) in a.parts.iter().enumerate().filter(|(_, p)| !p.done) {
                tpl.add_partition_offset(
                    &p.plan.changelog,
                    p.plan.partition,
                    Offset::Offset(p.position),
                )
                .map_err(|e| kafka("cannot assign the restore consumer", e))?;
                self.route
                    .entry(p.plan.changelog.clone())
                    .or_default()
                    .insert(p.plan.partition, (ai, pi));
            }
        }
        if tpl.count() == 0 {
            consumer.unassign()
        } else {
            consumer.assign(&tpl)
        }
        .map_err(|e| kafka("cannot assign the restore consumer", e))?;
        self.reassign = false;
        Ok(())
    }

    /// Takes records for up to the step time or [`STEP_RECORDS`], writing full batches as they fill.
    fn poll(&mut self, consumer: &BaseConsumer<StreamsClientContext>) -> Result<(), StreamsError> {
        let started = Instant::now();
        let mut taken = 0usize;
        // The clock is read once every 1,024 records.
        let step_time = self.step_time;
        while taken < STEP_RECORDS && (!taken.is_multiple_of(1024) || started.elapsed() < step_time)
        {
            let wait = if taken == 0 {
                step_time.saturating_sub(started.elapsed())
            } else {
                Duration::ZERO
            };
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    taken += 1;
                    self.take(&m)?;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The event names the partition, not the topic: every changelog of that number looks again.
                    for a in &mut self.active {
                        for p in a.parts.iter_mut() {
                            if p.plan.partition == partition {
                                p.fetched = true;
                            }
                        }
                    }
                }
                Some(Err(e)) if transient(&e) => {
                    // The consumer reconnects by itself; the no-progress bound still holds.
                    tracing::warn!(error = %e, "restoring: transient error");
                    break;
                }
                Some(Err(e)) => return Err(kafka("cannot read the changelogs to restore", e)),
            }
        }
        Ok(())
    }

    /// Buffers one record for its store.
    fn take(&mut self, m: &BorrowedMessage<'_>) -> Result<(), StreamsError> {
        let Some(&(ai, pi)) = self
            .route
            .get(m.topic())
            .and_then(|parts| parts.get(&m.partition()))
        else {
            return Ok(());
        };
        let a = &mut self.active[ai];
        let part = &mut a.parts[pi];
        let offset = m.offset();
        // Records from before a new assignment, or past the end of a source topic's committed offset.
        if part.done || offset < part.position || (!part.plan.open_ended && offset >= part.plan.end)
        {
            return Ok(());
        }
        part.position = offset + 1;
        part.fetched = true;
        let aborted = self
            .aborted
            .as_ref()
            .is_some_and(|r| r.contains(&part.plan.changelog, part.plan.partition, offset));
        if let Some(key) = m.key().filter(|_| !aborted) {
            let ts = m.timestamp().to_millis().unwrap_or(NO_TIMESTAMP);
            let format = part.plan.format;
            part.batch.push(
                key,
                m.payload(),
                ts,
                format.timestamped && format.versioned.is_none(),
            );
        }
        if part.batch.len() >= BATCH_RECORDS {
            let store = &mut a.job.state.stores[part.store].store;
            a.restored += write(part, &mut **store, &*a.job.listener, None)?;
        }
        Ok(())
    }

    /// Writes what is buffered, moves positions past what the consumer skipped (transaction markers), and
    /// reports the tasks whose partitions all reached their end.
    fn settle(
        &mut self,
        consumer: &BaseConsumer<StreamsClientContext>,
        out: &mut Vec<RestoreOutcome>,
    ) -> Result<(), StreamsError> {
        let positions = if self.route.is_empty() {
            None
        } else {
            consumer.position().ok()
        };
        let log = self.last_log.elapsed() > Duration::from_secs(5);
        if log {
            self.last_log = Instant::now();
        }
        let mut finished = Vec::new();
        for (ai, a) in self.active.iter_mut().enumerate() {
            for part in a.parts.iter_mut().filter(|p| !p.done) {
                let (topic, partition) = (part.plan.changelog.clone(), part.plan.partition);
                let topic = topic.as_str();
                let high = cached_high_watermark(consumer, topic, partition);
                if part.batch.len() > 0 {
                    let store = &mut a.job.state.stores[part.store].store;
                    a.restored += write(part, &mut **store, &*a.job.listener, high)?;
                }
                let at = positions
                    .as_ref()
                    .and_then(|l| l.find_partition(topic, partition))
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                if let Some(at) = at.filter(|&at| at > part.position) {
                    part.position = if part.plan.open_ended {
                        at
                    } else {
                        at.min(part.plan.end)
                    };
                }
                if part.position != part.settled {
                    part.settled = part.position;
                    part.moved = Instant::now();
                    a.last_progress = Instant::now();
                }
                let reached = if part.plan.open_ended {
                    (part.fetched || part.moved.elapsed() > QUIET_END)
                        && part.position >= part.plan.end
                        && high.is_none_or(|h| part.position >= h)
                } else {
                    part.position >= part.plan.end
                };
                metrics::gauge!("streams_restore_remaining_records", "store" => part.plan.store.clone(), "partition" => partition.to_string())
                    .set((part.plan.end.max(high.unwrap_or(0)) - part.position).max(0) as f64);
                if log && !reached && a.job.progress.is_none() {
                    tracing::info!(store = %part.plan.store, partition, restored = part.restored, total = part.total(high.unwrap_or(0)), "restoring");
                }
                if reached && !(a.job.progress.is_some() && part.plan.open_ended) {
                    part.done = true;
                    a.last_progress = Instant::now();
                    a.job
                        .listener
                        .on_restore_end(&part.plan.store, partition, part.restored);
                    a.job
                        .positions
                        .insert((topic.to_string(), partition), part.position);
                    self.reassign = true;
                }
            }
            if a.job.progress.is_some() {
                if let Some(Ok(mut progress)) = a.job.progress.as_ref().map(|p| p.positions.lock())
                {
                    // A lag is reported once a fetch response told the partition's end.
                    for part in &a.parts {
                        let (changelog, p) = (&part.plan.changelog, part.plan.partition);
                        if let Some(high) = cached_high_watermark(consumer, changelog, p) {
                            let end = high.max(part.plan.end).max(part.position);
                            progress.insert((part.plan.store.clone(), p), (part.position, end));
                        }
                    }
                }
                // Followed until cancelled; no progress is expected when nothing is written.
                if a.restored > a.restored_at_checkpoint
                    && a.checkpointed.elapsed() >= STANDBY_CHECKPOINT
                {
                    checkpoint_standby(a)?;
                }
            } else if a.parts.iter().all(|p| p.done) {
                finished.push(ai);
            } else if a.last_progress.elapsed() > self.timeout {
                let part = a.parts.iter().find(|p| !p.done).expect("a part is left");
                return Err(kafka(
                    &format!("restoring {}-{}", part.plan.changelog, part.plan.partition),
                    format!(
                        "no progress for {:?} (task.timeout.ms) at offset {} of {}",
                        self.timeout, part.position, part.plan.end
                    ),
                ));
            }
        }
        for ai in finished.into_iter().rev() {
            let mut a = self.active.remove(ai);
            // What was restored is on disk before the task reports its positions.
            for part in &a.parts {
                if part.restored > 0 {
                    a.job.state.stores[part.store].store.flush()?;
                }
            }
            out.push(RestoreOutcome {
                task: a.job.task,
                job: a.job.number,
                result: Ok(Some(RestoredTask {
                    state: a.job.state,
                    positions: a.job.positions,
                    restored: a.restored,
                })),
            });
            self.reassign = true;
        }
        if self.reassign {
            // Indices moved; the next step assigns again.
            self.route.clear();
        }
        Ok(())
    }
}

/// Writes one partition's buffered records to its store; returns how many there were.
fn write(
    part: &mut Part,
    store: &mut dyn KeyValueStore,
    listener: &dyn StateRestoreListener,
    high: Option<i64>,
) -> Result<u64, StreamsError> {
    let b = &part.batch;
    if let Some(retention) = part.plan.format.versioned {
        // A versioned store's changelog holds versions: each is put at its timestamp, which rebuilds the
        // history (out-of-order records included) and the store's bookkeeping.
        for (k, v, ts) in &b.entries {
            state_store::versioned::restore_version(
                store,
                retention,
                &b.data[k.clone()],
                v.clone().map(|v| &b.data[v]),
                *ts,
            )?;
        }
    } else {
        // In key order, the latest record of each key only: the store ends the same, and sorted inserts are
        // much cheaper for RocksDB (each memtable insert starts its search where the previous one ended).
        let mut batch: Vec<BatchEntry<'_>> = b
            .entries
            .iter()
            .map(|(k, v, _)| (&b.data[k.clone()], v.clone().map(|v| &b.data[v])))
            .collect();
        // A stable sort keeps the records of one key in changelog order; the last of them wins.
        batch.sort_by(|x, y| x.0.cmp(y.0));
        let mut latest: Vec<BatchEntry<'_>> = Vec::with_capacity(batch.len());
        for e in batch {
            match latest.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => latest.push(e),
            }
        }
        store.write_batch(&latest)?;
    }
    let n = b.len() as u64;
    part.batch.clear();
    part.restored += n;
    metrics::counter!("streams_restored_records_total", "store" => part.plan.store.clone())
        .increment(n);
    let total = part.total(high.unwrap_or(0));
    listener.on_batch_restored(&part.plan.store, part.plan.partition, part.restored, total);
    tracing::debug!(store = %part.plan.store, partition = part.plan.partition, restored = part.restored, total, "restore progress");
    Ok(n)
}

/// Flushes a standby task's stores and checkpoints the changelog offsets they reached, so the task starts from
/// there when it becomes active on this instance (or the standby starts again after a restart).
fn checkpoint_standby(a: &mut Active) -> Result<(), StreamsError> {
    let mut offsets = a.job.checkpoint.clone();
    offsets.extend(a.job.positions.clone());
    for part in a.parts.iter_mut() {
        let store = &mut a.job.state.stores[part.store].store;
        if part.batch.len() > 0 {
            a.restored += write(part, &mut **store, &*a.job.listener, None)?;
        }
        if store.persistent() {
            offsets.insert(
                (part.plan.changelog.clone(), part.plan.partition),
                part.position,
            );
        }
    }
    if !a.job.state.stores.iter().any(|s| s.store.persistent()) {
        return Ok(());
    }
    for s in &mut a.job.state.stores {
        s.store.flush()?;
    }
    checkpoint::write(&a.job.state.task_dir, &offsets)?;
    a.restored_at_checkpoint = a.restored;
    a.checkpointed = Instant::now();
    tracing::debug!(task = %a.job.task, ?offsets, "standby checkpointed");
    Ok(())
}

/// Stops a task's restoration where it stands: what was read is written, flushed and checkpointed (with the
/// task's other entries), so the next restoration resumes there; the stores are closed.
fn suspend(mut a: Active) -> Result<(), StreamsError> {
    let mut offsets = a.job.checkpoint.clone();
    offsets.extend(a.job.positions.clone());
    let mut kept = true;
    for part in a.parts.iter_mut() {
        let store = &mut a.job.state.stores[part.store].store;
        if part.batch.len() > 0 {
            write(part, &mut **store, &*a.job.listener, None)?;
        }
        if !part.done {
            a.job.listener.on_restore_suspended(
                &part.plan.store,
                part.plan.partition,
                part.restored,
            );
        }
        if store.persistent() {
            offsets.insert(
                (part.plan.changelog.clone(), part.plan.partition),
                part.position,
            );
        }
    }
    for s in &mut a.job.state.stores {
        if let Err(e) = s.store.flush() {
            tracing::warn!(store = %s.name, error = %e, "cannot flush a suspended restoration");
            kept = false;
        }
    }
    let task_dir = a.job.state.task_dir.clone();
    let persistent = a.job.state.stores.iter().any(|s| s.store.persistent());
    // A standby handed to its active task on this instance leaves its stores open, once checkpointed.
    if let Some(progress) = a.job.progress.as_ref().filter(|p| kept && p.handing_over()) {
        if persistent {
            checkpoint::write(&task_dir, &offsets)?;
        }
        progress.leave_open(a.job.state);
        return Ok(());
    }
    a.job.state.close();
    if kept && persistent {
        checkpoint::write(&task_dir, &offsets)?;
    }
    Ok(())
}
