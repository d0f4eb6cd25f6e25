//! What the stream threads of an instance run now, as Kafka Streams' `ThreadMetadata` and `TaskMetadata`: tasks,
//! their input partitions with committed offset, position and end offset, and the progress of their restoration.
//!
//! Stream threads publish these snapshots at poll-batch and commit granularity (a lock per loop round, at most
//! once a second, never per record), and readers ([`crate::runtime::KafkaStreams::metadata_for_local_threads`],
//! the `/api/tasks` route of the query server) copy them.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::processor::TaskId;

/// What one stream thread runs now (Kafka Streams' `ThreadMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadMetadata {
    /// The thread's name, `<application.id>-StreamThread-<n>`.
    pub thread_name: String,
    /// The thread's state (`Starting`, `PartitionsRevoked`, `PartitionsAssigned`, `Running`,
    /// `PendingShutdown`, `Dead`), as Kafka Streams reports it: a string.
    pub thread_state: String,
    /// Its active tasks, by task id.
    pub active_tasks: Vec<TaskMetadata>,
    /// Its standby tasks: always empty, as standby copies (`num.standby.replicas`) run on the instance's own
    /// standby updater rather than in a stream thread; see
    /// [`KafkaStreams::standby_lags`](crate::runtime::KafkaStreams::standby_lags).
    pub standby_tasks: Vec<TaskMetadata>,
}

/// Where a task stands in its life on a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Its stores are being restored from their changelogs; it processes nothing yet.
    Restoring,
    /// Restored, processing records.
    Running,
}

impl TaskState {
    /// The state's name: `"restoring"` or `"running"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Restoring => "restoring",
            TaskState::Running => "running",
        }
    }
}

/// One task of a thread (Kafka Streams' `TaskMetadata`, with its restoration progress).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskMetadata {
    /// The task: sub-topology and partition number.
    pub task_id: TaskId,
    /// Restoring or running.
    pub state: TaskState,
    /// The source topic partitions it reads (full topic names), with their offsets.
    pub topic_partitions: Vec<PartitionOffsets>,
    /// Restoration of each of its changelogged stores, in the order they were restored (empty for a task
    /// without logged stores).
    pub restoration: Vec<StoreRestoration>,
    /// Records the task processed since it was created on this thread.
    pub records_processed: u64,
}

/// Offsets of one input partition of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOffsets {
    /// Topic (full name: internal topics carry the application id).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The last offset committed for the group (the next record to read after a restart), once the task
    /// committed.
    pub committed_offset: Option<i64>,
    /// The consumer's position: the next offset it fetches.
    pub position: Option<i64>,
    /// The end of the partition (high watermark) as the consumer last saw it; refreshed every few seconds from
    /// the consumer's statistics (`statistics.interval.ms`, 3 s unless configured).
    pub end_offset: Option<i64>,
}

impl PartitionOffsets {
    /// Records between the consumer's position (or, before it has one, the committed offset) and the end of the
    /// partition; 0 for an empty partition; `None` while either is unknown.
    pub fn lag(&self) -> Option<i64> {
        let end = self.end_offset?;
        if end <= 0 {
            return Some(0);
        }
        let at = self.position.or(self.committed_offset)?;
        Some((end - at).max(0))
    }
}

/// The restoration of one store of a task from its changelog partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreRestoration {
    /// Store name.
    pub store: String,
    /// The changelog partition (the task's partition number).
    pub partition: i32,
    /// Records applied so far.
    pub restored: u64,
    /// Records to apply in all: from the checkpoint (or the start) to the end of the changelog.
    pub total: u64,
    /// Whether the store is restored.
    pub done: bool,
}

/// The snapshots one thread publishes: its tasks, the offsets it committed, and the partition ends its
/// consumer's statistics reported.
#[derive(Debug, Default)]
pub(crate) struct ThreadSnapshot {
    pub tasks: BTreeMap<TaskId, TaskMetadata>,
    pub end_offsets: HashMap<(String, i32), i64>,
}

impl ThreadSnapshot {
    /// The tasks with the latest end offsets filled in.
    pub fn tasks(&self) -> Vec<TaskMetadata> {
        self.tasks
            .values()
            .map(|t| {
                let mut t = t.clone();
                for p in &mut t.topic_partitions {
                    if let Some(&end) = self.end_offsets.get(&(p.topic.clone(), p.partition)) {
                        p.end_offset = Some(end);
                    }
                }
                t
            })
            .collect()
    }
}

impl TaskMetadata {
    /// A task being created: restoring, nothing processed.
    pub(crate) fn restoring(task_id: TaskId, topics: impl IntoIterator<Item = String>) -> Self {
        TaskMetadata {
            task_id,
            state: TaskState::Restoring,
            topic_partitions: topics
                .into_iter()
                .map(|topic| PartitionOffsets {
                    topic,
                    partition: task_id.partition,
                    committed_offset: None,
                    position: None,
                    end_offset: None,
                })
                .collect(),
            restoration: Vec::new(),
            records_processed: 0,
        }
    }
}

#[derive(Deserialize)]
struct RawStats {
    #[serde(default)]
    topics: HashMap<String, RawTopic>,
}

#[derive(Deserialize)]
struct RawTopic {
    #[serde(default)]
    partitions: HashMap<String, RawPartition>,
}

#[derive(Deserialize)]
struct RawPartition {
    partition: i32,
    #[serde(default = "unknown")]
    hi_offset: i64,
}

fn unknown() -> i64 {
    -1
}

/// The high watermark of each partition in a librdkafka statistics document (the JSON of
/// `statistics.interval.ms`); partitions the client has not fetched yet (negative offsets) and librdkafka's
/// internal partition `-1` are left out. `None` for a document that does not parse.
pub(crate) fn high_watermarks(stats: &[u8]) -> Option<Vec<((String, i32), i64)>> {
    let raw: RawStats = serde_json::from_slice(stats).ok()?;
    Some(
        raw.topics
            .into_iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .into_values()
                    .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
                    .map(move |p| ((topic.clone(), p.partition), p.hi_offset))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermarks_come_from_the_statistics_partitions() {
        let doc = br#"{"name":"c","topics":{"share-holders":{"topic":"share-holders","partitions":{
            "0":{"partition":0,"hi_offset":12,"app_offset":7},
            "1":{"partition":1,"hi_offset":-1001},
            "-1":{"partition":-1,"hi_offset":0}}}}}"#;
        let mut w = high_watermarks(doc).unwrap();
        w.sort();
        assert_eq!(w, vec![(("share-holders".to_string(), 0), 12)]);
        assert_eq!(high_watermarks(b"{}"), Some(vec![]));
        assert_eq!(high_watermarks(b"not json"), None);
    }

    #[test]
    fn lag_is_measured_from_the_position_or_the_committed_offset() {
        let mut p = PartitionOffsets {
            topic: "t".into(),
            partition: 0,
            committed_offset: Some(3),
            position: None,
            end_offset: Some(10),
        };
        assert_eq!(p.lag(), Some(7));
        p.position = Some(9);
        assert_eq!(p.lag(), Some(1));
        p.position = Some(12);
        assert_eq!(p.lag(), Some(0), "never negative");
        p.end_offset = None;
        assert_eq!(p.lag(), None);
        p.position = None;
        p.committed_offset = None;
        p.end_offset = Some(5);
        assert_eq!(p.lag(), None, "nothing read yet: unknown");
        p.end_offset = Some(0);
        assert_eq!(p.lag(), Some(0), "an empty partition");
    }

    #[test]
    fn snapshots_fill_in_end_offsets() {
        let id = TaskId {
            subtopology: 0,
            partition: 2,
        };
        let mut s = ThreadSnapshot::default();
        s.tasks
            .insert(id, TaskMetadata::restoring(id, ["in".to_string()]));
        s.end_offsets.insert(("in".into(), 2), 40);
        s.end_offsets.insert(("in".into(), 1), 99);
        let tasks = s.tasks();
        assert_eq!(tasks[0].topic_partitions[0].end_offset, Some(40));
        assert_eq!(tasks[0].state.as_str(), "restoring");
    }
}
