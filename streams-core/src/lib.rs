//! The engine: records, serdes, the Processor API, the topology graph, tasks, and an in-process test driver.
//!
//! Most applications use the typed DSL of the `streams-dsl` crate, which compiles into a [`Topology`] of this
//! crate. Use this crate directly to write your own [`Processor`]s, or to build a topology node by node.
//!
//! # How records move
//!
//! A topology is split into sub-topologies at topic boundaries (repartition topics); each sub-topology runs as
//! one task per partition. Inside a task, a source deserializes records into typed queues, the task picks the
//! queued record with the lowest timestamp across its partitions (so joins and windows are deterministic), and
//! the record travels down the processor graph by direct calls: each processor hands its output to its children
//! through [`ProcessorContext::forward`]. Records are moved, not boxed; a record is cloned only when it fans out
//! to several children.
//!
//! Each node hop costs one virtual call: the graph is assembled at run time from named nodes (it has to be, to
//! support the Processor API, fan-out, merges and named children), so a node's children are trait objects. What
//! runs inside a node — the closures of `filter`, `map`, aggregations — is generic and monomorphised, with no
//! boxing of records and no allocation beyond what the user's types need.
//!
//! # Testing
//!
//! [`TopologyTestDriver`] runs a topology in-process with no broker, with several partitions per topic, and
//! repartition topics delivered internally; see its documentation.
#![warn(missing_docs)]

mod error;
mod global;
mod handler;
mod idle;
mod node;
mod partitioner;
mod processor;
mod record;
pub mod runtime;
mod state;
mod state_manager;
mod task;
mod test_driver;
mod timestamp;
mod topology;
mod window_stores;

pub use error::{ConnectionFailure, ErrorClass, StreamsError};
pub use global::GlobalStoreDescription;
pub use handler::{
    DeadLetterQueue, DeadLetterRecord, DeserializationExceptionHandler, DeserializationResponse,
    ErrorContext, LogAndContinue, LogAndFail, DLQ_ERROR_HEADER, DLQ_EXCEPTION_HEADER,
    DLQ_MESSAGE_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_ROLE_HEADER,
    DLQ_STACKTRACE_HEADER, DLQ_TOPIC_HEADER,
};
pub use handler::{
    DefaultProductionExceptionHandler, LogAndContinueProduction, ProductionErrorContext,
    ProductionExceptionHandler, ProductionResponse,
};
pub use handler::{
    LogAndContinueProcessing, LogAndFailProcessing, ProcessingAction, ProcessingErrorContext,
    ProcessingExceptionHandler, ProcessingResponse,
};
pub use node::StreamPartitioner;
pub use partitioner::{default_partition, murmur2};
pub use processor::{
    Data, Processor, ProcessorContext, PunctuationType, RecordPosition, ScheduleId, TaskId,
};
pub use record::{Header, Headers, RawRecord, RawRecordRef, Record, RecordMetadata};
pub use state::{
    ReadOnlyKeyValueStore, ReadOnlySessionStore, ReadOnlyVersionedKeyValueStore,
    ReadOnlyWindowStore,
};
pub use task::{
    ChangelogWriter, OutgoingRecord, RecordCollector, RefusedRecord, TaskMetricsSnapshot,
};
pub use test_driver::{
    TestDriverBuilder, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver,
};
pub use timestamp::{
    FailOnInvalidTimestamp, InvalidTimestampAction, LogAndSkipOnInvalidTimestamp, RecordTimestamp,
    TimestampExtractor, UsePartitionTimeOnInvalid,
};
pub use topology::{
    InternalTopic, KeyValueStoreBuilder, NodeDescription, NodeDescriptionKind, PartitionPlan,
    SinkOptions, SourceOptions, SubTopology, SubTopologyDescription, Topology, TopologyDescription,
    VersionedKeyValueStoreBuilder,
};
pub use window_stores::{SessionStoreBuilder, WindowStoreBuilder};

/// Serdes: re-exported from `state-store`, where typed stores need them without depending on Kafka.
pub use state_store::serde;
pub use state_store::serde::{default_serde, Serde, Serdes, SharedSerde};
pub use state_store::{
    KeyValueStoreSupplier, SessionStore, StoreKind, ValueAndTimestamp, VersionedKeyValueStore,
    VersionedPut, VersionedRecord, Window, WindowStore, Windowed,
};
