//! Restoring stores from their changelogs when a task is created.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use state_store::KeyValueStore;

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::checkpoint;
use crate::runtime::kafka_error as kafka;
use crate::runtime::security::StreamsClientContext;
use crate::task::StateRestorer;

/// Told about restoration progress, per store and partition.
pub trait StateRestoreListener: Send + Sync + 'static {
    /// Restoration of `store` partition `partition` starts at `start` and must reach `end`.
    fn on_restore_start(&self, _store: &str, _partition: i32, _start: i64, _end: i64) {}
    /// `restored` records applied so far, of `total`.
    fn on_batch_restored(&self, _store: &str, _partition: i32, _restored: u64, _total: u64) {}
    /// Done: `restored` records applied.
    fn on_restore_end(&self, _store: &str, _partition: i32, _restored: u64) {}
    /// Stopped before the end, `restored` records applied, because the task moved to another instance or
    /// thread (Kafka's `onRestoreSuspended`). What was restored is kept and checkpointed.
    fn on_restore_suspended(&self, _store: &str, _partition: i32, _restored: u64) {}
}

/// A listener that does nothing (progress still goes to `tracing`).
#[derive(Debug, Default)]
pub struct NoopRestoreListener;
impl StateRestoreListener for NoopRestoreListener {}

/// Plans a task's restoration through the thread's restore consumer, starting from the task's checkpoint: each
/// logged store's changelog partition, where its reading starts and ends. [`BulkRestore`] then reads them.
pub(crate) struct ChangelogRestorer<'a> {
    pub consumer: &'a BaseConsumer<StreamsClientContext>,
    pub checkpoint: BTreeMap<(String, i32), i64>,
    pub listener: Arc<dyn StateRestoreListener>,
    /// Partitions with nothing to read: the next offset of each.
    pub positions: BTreeMap<(String, i32), i64>,
    /// Partitions to read.
    pub plans: Vec<PlannedRestore>,
    /// How long restoration retries through transient errors without progress (`task.timeout.ms`).
    pub timeout: Duration,
    /// The application's committed offsets of the source topics that are changelogs of the task's stores.
    pub committed: BTreeMap<(String, i32), i64>,
}

/// Whether a consumer error can pass: broker connections lost, leaders moving, requests timing out. Refused
/// credentials or permissions, and librdkafka's fatal errors, cannot.
pub(crate) fn transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    if matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_)) {
        return false;
    }
    !matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::SSL
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}

/// Calls `f` until it succeeds, a non-transient error comes, or `timeout` passes, backing off between tries.
pub(crate) fn retrying<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, rdkafka::error::KafkaError>,
) -> Result<T, StreamsError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && started.elapsed() < timeout => {
                tracing::warn!(error = %e, "{what}: retrying in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(kafka(what, e)),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// One changelog partition a store must read before its task runs, as planned when the task's stores were
/// opened; the [`BulkRestore`] reads it together with every other planned partition of the thread.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRestore {
    pub store: String,
    pub changelog: String,
    pub partition: i32,
    /// The first offset to read.
    pub start: i64,
    /// The end the broker listed (or the committed offset of a source topic).
    pub end: i64,
    /// Whether `end` is only a lower bound that the high watermark seen in fetch responses may raise. Brokers
    /// list the end of a partition as its high watermark, but some (tansu) list one past the base offset of
    /// the last batch instead; the fetch responses carry the right one. A source topic stops at the committed
    /// offset and is not open-ended.
    pub open_ended: bool,
    pub format: crate::task::ChangelogFormat,
}

impl ChangelogRestorer<'_> {
    /// Whether offset `at` of `topic`-`p` exists, found by reading it; and the high watermark the fetch gave.
    /// Needed where the listed end lies below an offset the task already reached (a checkpoint, a committed
    /// offset): either the changelog was recreated or the broker lists ends wrongly (tansu).
    fn probe(&self, topic: &str, p: i32, at: i64) -> Result<Option<i64>, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(at))
            .map_err(|e| kafka("cannot assign the restore consumer", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka("cannot assign the restore consumer", e))?;
        let started = Instant::now();
        let mut found = None;
        while started.elapsed() < Duration::from_secs(5) {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) if m.topic() == topic && m.partition() == p => {
                    if m.offset() == at {
                        let hw = cached_high_watermark(self.consumer, topic, p).unwrap_or(at + 1);
                        found = Some(hw.max(at + 1));
                    }
                    break;
                }
                Some(Err(e)) if transient(&e) => {
                    tracing::warn!(topic, partition = p, error = %e, "probing the changelog: transient error");
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => {
                    return Err(kafka(&format!("cannot read changelog {topic}-{p}"), e))
                }
                _ => {}
            }
        }
        self.consumer
            .unassign()
            .map_err(|e| kafka("cannot unassign the restore consumer", e))?;
        Ok(found)
    }
}

/// The high watermark librdkafka last saw for `topic`-`partition` in a fetch response, if any.
pub(crate) fn cached_high_watermark<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    crate::runtime::thread::cached_watermarks(consumer, topic, partition).map(|(_, high)| high)
}

/// The consumer's position (the next offset it will read) in `topic`-`partition`, once it has one.
pub(crate) fn consumer_position<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

impl StateRestorer for ChangelogRestorer<'_> {
    /// Plans the restoration of one store: decides where it starts (its checkpoint, or the start after a wipe)
    /// and where it ends, wipes the store when it must, and leaves the reading to [`BulkRestore`].
    fn restore(
        &mut self,
        task: TaskId,
        store: &str,
        changelog: &str,
        dir: &Path,
        mut inner: Box<dyn KeyValueStore>,
        wiped: bool,
        format: crate::task::ChangelogFormat,
        reopen: &mut dyn FnMut() -> Result<Box<dyn KeyValueStore>, StreamsError>,
    ) -> Result<Box<dyn KeyValueStore>, StreamsError> {
        let p = task.partition;
        let (low, listed) = retrying(
            &format!("cannot read the offsets of changelog {changelog}-{p}"),
            self.timeout,
            || self.consumer.fetch_watermarks(changelog, p, TIMEOUT),
        )?;
        let mut checkpoint = if inner.persistent() && !wiped {
            self.checkpoint.get(&(changelog.to_string(), p)).copied()
        } else {
            None
        };
        // The end as far as is known now; `confirmed` once a read showed the offset below it exists.
        let mut high = listed;
        let mut open_ended = true;
        if format.source_topic {
            // A table's source topic: its state is what the application processed, up to the committed offset
            // (nothing when there is none); processing goes on from there.
            open_ended = false;
            high = match self.committed.get(&(changelog.to_string(), p)) {
                Some(&c) if c > listed => match self.probe(changelog, p, c - 1)? {
                    Some(_) => c,
                    None => listed,
                },
                Some(&c) => c.max(low),
                None => low,
            };
            if checkpoint.is_some_and(|c| c > high) {
                // The store went past the last commit before a crash: its newer entries would be processed
                // again on top of themselves. Start over.
                tracing::warn!(store, partition = p, ?checkpoint, committed = high, "the store is ahead of the committed offset of its source topic; restoring from the start");
                checkpoint = None;
            }
        } else if let Some(c) = checkpoint.filter(|&c| c > listed && c > low) {
            // Past the listed end: the changelog was recreated, or the broker lists ends wrongly.
            if let Some(hw) = self.probe(changelog, p, c - 1)? {
                high = hw.max(c);
            }
        }
        let mut wipe = !inner.persistent();
        let start = match checkpoint {
            Some(c) if c > high => {
                return Err(StreamsError::Processor {
                    node: String::new(),
                    message: format!(
                        "store '{store}' of task {task}: the checkpoint says offset {c}, beyond the end ({high}) of \
                         changelog {changelog}-{p}; the changelog was deleted or recreated. Delete the task \
                         directory {} to restore from scratch",
                        dir.parent().unwrap_or(dir).display()
                    ),
                })
            }
            Some(c) if c < low => {
                tracing::warn!(store, partition = p, checkpoint = c, low, "changelog truncated below the checkpoint; restoring from the start");
                wipe = true;
                low
            }
            Some(c) => c,
            None => {
                // No checkpoint: whatever the store holds is of unknown age.
                wipe = true;
                low
            }
        };
        // Restoring from the start: the checkpoint's offset goes first, so a crash part way never leaves an offset
        // that the half-restored store would be trusted to have reached.
        if wipe && self.checkpoint.contains_key(&(changelog.to_string(), p)) {
            self.discard_checkpoint(task, changelog, dir)?;
        }
        if wipe && inner.persistent() {
            inner.close()?;
            drop(inner);
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|source| StreamsError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            inner = reopen()?;
        }
        self.listener.on_restore_start(store, p, start, high);
        if !open_ended && start >= high {
            self.listener.on_restore_end(store, p, 0);
            self.positions.insert((changelog.to_string(), p), start);
        } else {
            self.plans.push(PlannedRestore {
                store: store.to_string(),
                changelog: changelog.to_string(),
                partition: p,
                start,
                end: high,
                open_ended,
                format,
            });
        }
        Ok(inner)
    }

    fn discard_checkpoint(
        &mut self,
        task: TaskId,
        changelog: &str,
        dir: &Path,
    ) -> Result<(), StreamsError> {
        let entry = (changelog.to_string(), task.partition);
        self.checkpoint.remove(&entry);
        match dir.parent() {
            Some(task_dir) => checkpoint::forget(task_dir, &[entry]),
            None => Ok(()),
        }
    }
}
