//! Restoring stores from their changelogs when a task is created.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use state_store::{BatchEntry, KeyValueStore, NO_TIMESTAMP};

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

/// Restores through the thread's restore consumer, starting from the task's checkpoint.
pub(crate) struct ChangelogRestorer<'a> {
    pub consumer: &'a BaseConsumer<StreamsClientContext>,
    pub checkpoint: BTreeMap<(String, i32), i64>,
    pub listener: Arc<dyn StateRestoreListener>,
    /// Where each changelog partition stands after restoration: the next offset to read.
    pub positions: BTreeMap<(String, i32), i64>,
    pub restored: u64,
    /// How long restoration retries through transient errors without progress (`task.timeout.ms`).
    pub timeout: Duration,
    /// Set when the restoration is no longer wanted (the task moved elsewhere): it stops after the current batch,
    /// keeping and checkpointing what it restored.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The application's committed offsets of the source topics that are changelogs of the task's stores.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Records of transactions this instance aborted: skipped (see [`AbortedRecords`]).
    pub aborted: Option<Arc<crate::runtime::record_collector::AbortedRecords>>,
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

impl ChangelogRestorer<'_> {
    /// Stops a cancelled restoration at `position`: what was restored is flushed and checkpointed (with the
    /// task's other stores' entries), so the next restoration resumes there.
    fn stop_cancelled(
        &mut self,
        changelog: &str,
        p: i32,
        dir: &Path,
        mut inner: Box<dyn KeyValueStore>,
        position: i64,
        restored: u64,
    ) -> StreamsError {
        let _ = self.consumer.unassign();
        self.restored += restored;
        let persistent = inner.persistent();
        let kept = inner.flush().and_then(|()| inner.close());
        drop(inner);
        if kept.is_ok() && persistent {
            let mut offsets = self.checkpoint.clone();
            offsets.extend(self.positions.clone());
            offsets.insert((changelog.to_string(), p), position);
            if let Some(task_dir) = dir.parent() {
                if let Err(e) = checkpoint::write(task_dir, &offsets) {
                    tracing::warn!(error = %e, "cannot checkpoint a cancelled restoration");
                }
            }
        }
        StreamsError::TaskMigrated(format!(
            "restoration of {changelog}-{p} cancelled at offset {position}"
        ))
    }

    /// The offset after the last record of the partition. Brokers report it as the high watermark, but some
    /// (tansu) report one past the base offset of the last batch instead; reading from just before the
    /// reported end finds the real one.
    fn true_end(&self, topic: &str, p: i32, low: i64, high: i64) -> Result<i64, StreamsError> {
        if high <= low {
            return Ok(high);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(high - 1))
            .map_err(|e| kafka("cannot assign the restore consumer", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka("cannot assign the restore consumer", e))?;
        let mut end = high;
        let started = Instant::now();
        let mut idle_since = Instant::now();
        loop {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    end = end.max(m.offset() + 1);
                    idle_since = Instant::now();
                }
                Some(Err(e)) if transient(&e) => {
                    tracing::warn!(topic, partition = p, error = %e, "reading the changelog's end: transient error");
                }
                Some(Err(e)) => {
                    return Err(kafka(&format!("cannot read changelog {topic}-{p}"), e))
                }
                None => {
                    let waited = idle_since.elapsed();
                    // Once something was read, a short quiet spell means the end; before, allow for the fetch.
                    if (end > high && waited > Duration::from_millis(200))
                        || waited > Duration::from_secs(2)
                    {
                        break;
                    }
                }
            }
            if started.elapsed() > TIMEOUT {
                break;
            }
        }
        self.consumer
            .unassign()
            .map_err(|e| kafka("cannot unassign the restore consumer", e))?;
        Ok(end)
    }
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
        let (low, high) = retrying(
            &format!("cannot read the offsets of changelog {changelog}-{p}"),
            self.timeout,
            || self.consumer.fetch_watermarks(changelog, p, TIMEOUT),
        )?;
        let mut high = self.true_end(changelog, p, low, high)?;
        let mut checkpoint = if inner.persistent() && !wiped {
            self.checkpoint.get(&(changelog.to_string(), p)).copied()
        } else {
            None
        };
        if format.source_topic {
            // A table's source topic: its state is what the application processed, up to the committed offset
            // (nothing when there is none); processing goes on from there.
            high = match self.committed.get(&(changelog.to_string(), p)) {
                Some(&c) => c.clamp(low, high),
                None => low,
            };
            if checkpoint.is_some_and(|c| c > high) {
                // The store went past the last commit before a crash: its newer entries would be processed
                // again on top of themselves. Start over.
                tracing::warn!(store, partition = p, ?checkpoint, committed = high, "the store is ahead of the committed offset of its source topic; restoring from the start");
                checkpoint = None;
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
        let total = (high - start).max(0) as u64;
        self.listener.on_restore_start(store, p, start, high);
        let mut restored = 0u64;
        if start < high {
            tracing::info!(store, partition = p, start, end = high, "restoring");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(changelog, p, Offset::Offset(start))
                .map_err(|e| kafka("cannot assign the restore consumer", e))?;
            self.consumer
                .assign(&tpl)
                .map_err(|e| kafka("cannot assign the restore consumer", e))?;
            let mut position = start;
            let mut last_progress = Instant::now();
            let mut last_log = Instant::now();
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let mut values: Vec<Option<Vec<u8>>> = Vec::new();
            // For a versioned store: each record's timestamp, the version's.
            let mut times: Vec<i64> = Vec::new();
            while position < high {
                keys.clear();
                values.clear();
                times.clear();
                let mut got = 0;
                while got < 10_000 && position < high {
                    let timeout = if got == 0 {
                        Duration::from_millis(500)
                    } else {
                        Duration::ZERO
                    };
                    match self.consumer.poll(timeout) {
                        Some(Ok(m)) => {
                            position = m.offset() + 1;
                            let aborted = self
                                .aborted
                                .as_ref()
                                .is_some_and(|a| a.contains(changelog, p, m.offset()));
                            if let Some(k) = m.key().filter(|_| !aborted) {
                                keys.push(k.to_vec());
                                times.push(m.timestamp().to_millis().unwrap_or(NO_TIMESTAMP));
                                values.push(m.payload().map(|v| {
                                    if format.timestamped && format.versioned.is_none() {
                                        // The changelog of a timestamped store carries the value's time as
                                        // the record's.
                                        let ts = m.timestamp().to_millis().unwrap_or(NO_TIMESTAMP);
                                        let mut stored = Vec::with_capacity(8 + v.len());
                                        stored.extend_from_slice(&ts.to_be_bytes());
                                        stored.extend_from_slice(v);
                                        stored
                                    } else {
                                        v.to_vec()
                                    }
                                }));
                            }
                            got += 1;
                            last_progress = Instant::now();
                        }
                        Some(Err(e)) if transient(&e) => {
                            // The consumer reconnects by itself; the no-progress bound below still holds.
                            tracing::warn!(store, partition = p, error = %e, "restoring: transient error");
                            if got > 0 {
                                break;
                            }
                            if last_progress.elapsed() > self.timeout {
                                return Err(kafka(
                                    &format!("cannot read changelog {changelog}-{p}"),
                                    e,
                                ));
                            }
                        }
                        Some(Err(e)) => {
                            return Err(kafka(&format!("cannot read changelog {changelog}-{p}"), e))
                        }
                        None => {
                            if got > 0 {
                                break;
                            }
                            // No record, but the consumer may have moved past control records (transaction
                            // markers), which are never delivered: the end is reached when its position is.
                            if let Some(at) = consumer_position(self.consumer, changelog, p) {
                                if at > position {
                                    position = at;
                                    last_progress = Instant::now();
                                    continue;
                                }
                            }
                            if last_progress.elapsed() > self.timeout {
                                return Err(kafka(
                                    &format!("restoring {changelog}-{p}"),
                                    format!(
                                        "no progress for {:?} (task.timeout.ms) at offset {position} of {high}",
                                        self.timeout
                                    ),
                                ));
                            }
                        }
                    }
                }
                metrics::counter!("streams_restored_records_total", "store" => store.to_string())
                    .increment(got as u64);
                metrics::gauge!("streams_restore_remaining_records", "store" => store.to_string(), "partition" => p.to_string())
                    .set((high - position).max(0) as f64);
                if last_log.elapsed() > Duration::from_secs(5) {
                    tracing::info!(
                        store,
                        partition = p,
                        restored = restored + got as u64,
                        total,
                        "restoring"
                    );
                    last_log = Instant::now();
                }
                if let Some(retention) = format.versioned {
                    // A versioned store's changelog holds versions: each is put at its timestamp, which
                    // rebuilds the history (out-of-order records included) and the store's bookkeeping.
                    for ((k, v), ts) in keys.iter().zip(&values).zip(&times) {
                        state_store::versioned::restore_version(
                            &mut *inner,
                            retention,
                            k,
                            v.as_deref(),
                            *ts,
                        )?;
                    }
                } else {
                    let batch: Vec<BatchEntry<'_>> = keys
                        .iter()
                        .zip(&values)
                        .map(|(k, v)| (k.as_slice(), v.as_deref()))
                        .collect();
                    inner.write_batch(&batch)?;
                }
                restored += got as u64;
                self.listener.on_batch_restored(store, p, restored, total);
                tracing::debug!(store, partition = p, restored, total, "restore progress");
                if self
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
                    && position < high
                {
                    self.listener.on_restore_suspended(store, p, restored);
                    return Err(self.stop_cancelled(changelog, p, dir, inner, position, restored));
                }
            }
            self.consumer
                .unassign()
                .map_err(|e| kafka("cannot unassign the restore consumer", e))?;
            inner.flush()?;
        }
        self.listener.on_restore_end(store, p, restored);
        self.restored += restored;
        self.positions.insert((changelog.to_string(), p), high);
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
