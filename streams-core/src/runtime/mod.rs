//! Running topologies against Kafka: [`KafkaStreams`], its configuration, and the embedded broker.
//!
//! Inside, the parts a Kafka Streams engineer expects, one module each:
//!
//! - the **stream thread** (`thread.rs`): the poll loop of one group consumer (group = `application.id`, range
//!   assignor, so partition `p` of every co-partitioned topic lands on the same thread). It routes polled records
//!   to tasks, processes them (respecting `max.task.idle.ms` for tasks with several inputs), commits every
//!   `commit.interval.ms` and applies rebalances; newly assigned partitions start paused and resume once their
//!   task is ready.
//! - the **task manager** (`task_manager.rs`): the thread's active tasks and those being restored; assignment,
//!   revocation (tasks suspended until the next assignment), loss (tasks closed dirty: nothing flushed,
//!   checkpointed or committed), clean and dirty close; and what a commit covers.
//! - the **state manager** (`crate::state_manager`): a task's stores opened in its directory; missing or empty
//!   stores never trust a checkpoint; only corrupt ones are wiped, after their checkpoint entry is forgotten; a
//!   store held by another thread is waited for.
//! - the **state updater** (`state_updater.rs`): restores new tasks' stores on its own thread with its own restore
//!   consumer, from each task's checkpoint to the end offset, while the stream thread keeps processing.
//! - the **standbys** ([`standby`]): copies of tasks' stores following their changelogs on other instances
//!   (`num.standby.replicas`), placed by every instance alike from the metadata announcements; a task moving to
//!   an instance holding its copy restores only what the copy missed, on the copy's stores handed over open;
//!   a starting instance warms up the tasks it will be given before its threads join the group.
//! - the **record collector** (`record_collector.rs`): the thread's one producer (idempotent) through which every
//!   sink and changelog record goes; delivery tracking, the production exception handler, and the flush a commit
//!   waits for.
//!
//! A commit flushes the caches, the producer and the stores, writes checkpoints atomically, then commits the
//! consumed offsets with each partition's stream time in the offset metadata: processing is at-least-once. After
//! a crash, the records processed since the last commit are processed again, and their effect on state may apply
//! twice.

/// An error of a Kafka client call (`what` failed with `e`), as the runtime reports it.
pub(crate) fn kafka_error(what: &str, e: impl std::fmt::Display) -> crate::error::StreamsError {
    crate::error::StreamsError::Processor {
        node: String::new(),
        message: format!("{what}: {e}"),
    }
}

mod admin;
mod assignor;
mod bulk_restore;
mod checkpoint;
mod clients;
mod config;
mod embedded;
mod global;
mod history;
#[cfg(feature = "http")]
mod http;
mod kafka_streams;
mod metadata;
mod offset_metadata;
pub mod ownership;
mod record_collector;
mod restore;
mod security;
pub mod standby;
mod state_updater;
mod task_manager;
mod thread;
mod thread_metadata;

pub use config::{
    is_secret_key, ClientKind, GroupProtocol, ProcessingGuarantee, StreamsConfig, TaskOwnership,
};
pub use embedded::{EmbeddedAdmin, EmbeddedKafka, Fault};
pub use history::{MetricsSample, SAMPLES_KEPT, SAMPLE_INTERVAL};
#[cfg(feature = "http")]
pub use http::{
    QueryServer, QueryServerBuilder, RunningQueryServer, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT,
};
pub use kafka_streams::{
    IntoStreamsSetup, KafkaStreams, State, StoreQueryParameters, UncaughtErrorAction,
};
pub use metadata::{HostInfo, KeyQueryMetadata, LagInfo, StreamsMetadata};
pub use restore::{NoopRestoreListener, StateRestoreListener};
pub use thread_metadata::{
    PartitionOffsets, StoreRestoration, TaskMetadata, TaskState, ThreadMetadata,
};
