//! Running topologies against Kafka: [`KafkaStreams`], its configuration, and the embedded broker.
//!
//! Each stream thread owns a group consumer (group = `application.id`, range assignor, so partition `p` of every
//! co-partitioned topic lands on the same thread), a producer, and a restore consumer. Tasks are created when
//! partitions are assigned: their stores are restored from the changelog topics, starting from the task's
//! checkpoint file. Commits (every `commit.interval.ms`, and before partitions are given up) flush the caches,
//! the producer and the stores, write checkpoints atomically, then commit the consumed offsets: processing is
//! at-least-once. After a crash, the records processed since the last commit are processed again, and their
//! effect on state may apply twice.

mod admin;
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
mod record_collector;
mod restore;
mod security;
mod state_updater;
mod task_manager;
mod thread;
mod thread_metadata;

pub use config::{is_secret_key, ClientKind, ProcessingGuarantee, StreamsConfig};
pub use embedded::{EmbeddedAdmin, EmbeddedKafka, Fault};
pub use history::{MetricsSample, SAMPLES_KEPT, SAMPLE_INTERVAL};
#[cfg(feature = "http")]
pub use http::{
    QueryServer, QueryServerBuilder, RunningQueryServer, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT,
};
pub use kafka_streams::{IntoStreamsSetup, KafkaStreams, State, UncaughtErrorAction};
pub use metadata::{HostInfo, KeyQueryMetadata, StreamsMetadata};
pub use restore::{NoopRestoreListener, StateRestoreListener};
pub use thread_metadata::{
    PartitionOffsets, StoreRestoration, TaskMetadata, TaskState, ThreadMetadata,
};
