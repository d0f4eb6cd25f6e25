//! The typed DSL: describe a stream-processing application as operators on streams and tables, in the style of
//! Kafka Streams, and get a [`Topology`] to run.
//!
//! | Kafka Streams | here |
//! |---|---|
//! | `StreamsBuilder` | [`StreamsBuilder`] |
//! | `KStream` (`filter`, `map`, `mapValues`, `flatMap`, `selectKey`, `peek`, `foreach`, `split`, `merge`, `to`, `repartition`, `process`, `groupBy`, `groupByKey`) | [`KStream`] |
//! | `KStream#processValues`, `FixedKeyProcessor` | [`KStream::process_values`], [`FixedKeyProcessor`] |
//! | `KTable#transformValues`, `ValueTransformerWithKey` | [`KTable::transform_values`], [`KTable::transform_values_materialized`], [`ValueTransformerWithKey`] |
//! | `KStream#split`, `BranchedKStream`, `Branched` (`as`, `withFunction`, `withConsumer`) | [`KStream::split`], [`BranchedKStream`], [`Branched`] |
//! | `KStream#to(TopicNameExtractor, Produced)`, `RecordContext` | [`KStream::to_dynamic`], [`TopicNameExtractor`], [`RecordContext`] |
//! | `KGroupedStream#cogroup`, `CogroupedKStream` (`cogroup`, `aggregate`, `windowedBy` with time, sliding or session windows) | [`KGroupedStream::cogroup`], [`CogroupedKStream`], [`TimeWindowedCogroupedKStream`], [`SessionWindowedCogroupedKStream`] |
//! | `Named` (every operator) | [`KStream::named`], [`KTable::named`], [`KGroupedStream::named`], [`KGroupedTable::named`], [`TimeWindowedKStream::named`], [`SessionWindowedKStream::named`], and [`KStream::to_table_named`], [`KStream::process_values_named`], [`KTable::transform_values_named`], [`CogroupedKStream::aggregate_named`] |
//! | `KStream#toTable` | [`KStream::to_table`], [`KStream::to_table_materialized`], [`KStream::to_table_with_deletes`] |
//! | `KTable` (`filter`, `filterNot`, `mapValues`, `toStream`, `groupBy`) | [`KTable`] |
//! | `GlobalKTable`, `KStream#join`/`leftJoin` with a `GlobalKTable` | [`GlobalKTable`], [`KStream::join_global`], [`KStream::left_join_global`] |
//! | `KTable` foreign-key `join`, `leftJoin` (KIP-213) | [`KTable::join_foreign_key`], [`KTable::left_join_foreign_key`] |
//! | `KGroupedStream` (`count`, `reduce`, `aggregate`) | [`KGroupedStream`] |
//! | `KGroupedTable` (`count`, `reduce`, `aggregate` with adder and subtractor) | [`KGroupedTable`] |
//! | `KGroupedStream#windowedBy` with `TimeWindows`, `SlidingWindows`, `SessionWindows` | [`KGroupedStream::windowed_by`], [`TimeWindowedKStream`], [`SessionWindowedKStream`], [`Windowed`] |
//! | `KTable#suppress(Suppressed.untilWindowCloses(..))`, `Suppressed.untilTimeLimit`, `BufferConfig` | [`KTable::suppress`], [`Suppressed`], [`BufferConfig`] |
//! | `TimeWindowedKStream#emitStrategy(EmitStrategy.onWindowClose())` (KIP-825) | [`TimeWindowedKStream::emit_strategy`], [`EmitStrategy`] |
//! | `KStream#join`/`leftJoin`/`outerJoin` with a `KStream`, `JoinWindows`, `StreamJoined` | [`KStream::join_stream`], [`KStream::left_join_stream`], [`KStream::outer_join_stream`], [`JoinWindows`], [`StreamJoined`] |
//! | `Consumed`, `Produced`, `Grouped`, `Materialized`, `Repartitioned` | same names |
//! | `KStream#join`/`leftJoin` with a `KTable`, `KTable#join`/`leftJoin`/`outerJoin`, `Joined` | [`KStream::join`], [`KStream::left_join`], [`KTable::join`], [`KTable::left_join`], [`KTable::outer_join`], [`Joined`] |
//! | `TopologyTestDriver` | [`TopologyTestDriver`] |
//!
//! An application depends on this crate alone: it re-exports the serdes, the Processor API, the test driver and
//! the store kinds. The features `avro`, `protobuf` and `json-schema` add Confluent Schema Registry serdes as
//! `streams_dsl::schema_registry` (none is on by default).
//!
//! # Costs
//!
//! Operators take closures as generic parameters: each operator's processor is monomorphised for its closure,
//! so a `filter` or `map` runs the closure inline with no boxing. Between operators, a record is moved (not
//! boxed, not copied) through one virtual call per operator; the graph has to be assembled at run time to be
//! named, described, split into sub-topologies and extended with the Processor API. A record is cloned only
//! where a stream fans out to several operators. `split` holds its predicates as trait objects (a list of
//! closures of different types). Aggregations read and write their store through a write-back cache.
//!
//! # Example
//!
//! ```
//! use streams_dsl::*;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("page-views", Consumed::with(Serdes::string(), Serdes::string()))
//!     .filter(|_user, page| !page.starts_with("/static"))
//!     .group_by(|_user, page| page.clone(), Grouped::new())
//!     .count(Materialized::as_store("views-per-page").in_memory());
//! let topology = builder.build().unwrap();
//!
//! let driver = TopologyTestDriver::new(topology).unwrap();
//! let views = driver.input_topic("page-views", Serdes::string(), Serdes::string());
//! views.pipe_input("ann".into(), "/home".into()).unwrap();
//! views.pipe_input("bob".into(), "/home".into()).unwrap();
//! views.pipe_input("bob".into(), "/static/logo.png".into()).unwrap();
//! let counts = driver.key_value_store::<String, i64>("views-per-page").unwrap();
//! assert_eq!(counts.get(&"/home".to_string()).unwrap(), Some(2));
//! ```
#![warn(missing_docs)]

mod builder;
mod change;
mod cogrouped;
mod fixed_key;
mod fk_join;
mod global_table;
mod grouped;
mod join;
mod kstream;
mod ktable;
mod named;
mod ops;
mod params;
mod routing;
mod stream_join;
mod suppressed;
mod transformer;
mod windowed;
mod windows;

pub use builder::StreamsBuilder;
pub use cogrouped::{
    CogroupWindowedBy, CogroupedKStream, SessionWindowedCogroupedKStream,
    TimeWindowedCogroupedKStream,
};
pub use fixed_key::{FixedKeyProcessor, FixedKeyProcessorContext, FixedKeyRecord};
pub use global_table::GlobalKTable;
pub use grouped::{KGroupedStream, KGroupedTable};
pub use kstream::{Branched, BranchedKStream, KStream};
pub use ktable::KTable;
pub use named::Named;
pub use params::Joined;
pub use params::{Consumed, Grouped, Materialized, Produced, Repartitioned, TopologyOptimization};
pub use routing::{RecordContext, TopicNameExtractor};
pub use state_store::{SessionWindowedSerde, TimeWindowedSerde, Window, Windowed};
pub use stream_join::StreamJoined;
pub use suppressed::{BufferConfig, BufferFullStrategy, Suppressed};
pub use transformer::{ValueTransformerContext, ValueTransformerWithKey};
pub use windowed::{EmitStrategy, SessionWindowedKStream, TimeWindowedKStream, WindowedBy};
pub use windows::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};

#[cfg(any(feature = "avro", feature = "protobuf", feature = "json-schema"))]
pub use schema_registry;
pub use state_store;
pub use state_store::lazy::{Lazy, LazySerde};
pub use streams_core;
pub use streams_core::{
    default_partition, serde::JsonSerde, serde::OptionSerde, ConnectionFailure, Data,
    DeserializationExceptionHandler, Headers, KeyValueStoreBuilder, LogAndContinue,
    LogAndContinueProcessing, LogAndFail, LogAndFailProcessing, ProcessingExceptionHandler,
    Processor, ProcessorContext, PunctuationType, ReadOnlyKeyValueStore, ReadOnlySessionStore,
    ReadOnlyWindowStore, Record, RecordMetadata, ScheduleId, Serde, Serdes, StoreKind,
    StreamsError, TestInputTopic, TestOutputTopic, TestRecord, TimestampExtractor, Topology,
    TopologyTestDriver, ValueAndTimestamp,
};
pub use streams_core::{
    ReadOnlyVersionedKeyValueStore, VersionedKeyValueStore, VersionedKeyValueStoreBuilder,
    VersionedPut, VersionedRecord,
};
