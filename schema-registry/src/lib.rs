//! Serdes for topics whose records are registered in a Confluent Schema Registry: Avro, Protobuf and JSON
//! Schema in the Confluent wire format, readable and writable by Confluent's Java, Python and Go clients.
//!
//! | Confluent | here | feature |
//! |---|---|---|
//! | `CachedSchemaRegistryClient` | [`SchemaRegistryClient`] (blocking, cached) | always |
//! | `schema.registry.url`, `basic.auth.user.info`, ... | [`RegistryConfig`] | always |
//! | `auto.register.schemas`, `use.latest.version`, `*.subject.name.strategy` | [`SerdeConfig`] | always |
//! | `TopicNameStrategy`, `RecordNameStrategy`, `TopicRecordNameStrategy` | [`SubjectNameStrategy`] | always |
//! | `GenericAvroSerde`, `SpecificAvroSerde` | [`avro::GenericAvroSerde`], [`avro::AvroSerde`] | `avro` |
//! | `KafkaProtobufSerde` (dynamic and specific) | [`protobuf::DynamicProtobufSerde`], [`protobuf::ProtobufSerde`] | `protobuf` |
//! | `KafkaJsonSchemaSerde` | [`json::JsonSchemaSerde`] | `json-schema` |
//! | `MockSchemaRegistry` (`mock://` URLs) | [`mock::MockSchemaRegistry`], a real HTTP server on `127.0.0.1` | `mock` |
//!
//! # The wire format
//!
//! Every record starts with the magic byte `0` and the 4-byte big-endian id of its writer's schema; the payload
//! follows (Avro binary, Protobuf preceded by its message indexes, or JSON). See [`wire`].
//!
//! ```
//! use schema_registry::{wire, Error};
//!
//! let mut record = Vec::new();
//! wire::write_header(7, &mut record);
//! record.extend_from_slice(&[0x02, 0x61]); // Avro: the string "a"
//! assert_eq!(record, [0, 0, 0, 0, 7, 0x02, 0x61]);
//! assert_eq!(wire::read_header(&record).unwrap(), (7, &[0x02, 0x61][..]));
//!
//! // Anything else is a typed error naming the problem.
//! assert!(matches!(wire::read_header(b"{\"json\":1}"), Err(Error::BadMagicByte { found: b'{' })));
//! assert!(matches!(wire::read_header(&[0, 0, 7]), Err(Error::Truncated { .. })));
//! ```
//!
//! # Serdes
//!
//! A serde is made for one topic, for its keys or its values, from a shared [`SchemaRegistryClient`]. It
//! implements [`Serde`](state_store::serde::Serde), so it plugs into `Consumed`, `Produced`, `Materialized` like
//! any other. The first record registers (or looks up) the schema; later records reuse its id from memory.
//! Reading fetches each writer schema once, by the id in the record.
//!
//! ```no_run
//! # #[cfg(feature = "avro")] {
//! use std::sync::Arc;
//! use schema_registry::avro::{AvroSchema, AvroSerde};
//! use schema_registry::{RegistryConfig, SchemaRegistryClient, SerdeConfig};
//! use state_store::serde::Serde;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Order {
//!     id: i64,
//!     item: String,
//! }
//!
//! let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::from_pairs([
//!     ("schema.registry.url", "https://registry.example:8081"),
//!     ("basic.auth.user.info", "svc:s3cret"),
//!     ("ssl.ca.location", "/etc/registry/ca.pem"),
//! ])?)?);
//! let schema = AvroSchema::parse(r#"{"type":"record","name":"Order","namespace":"shop","fields":[
//!     {"name":"id","type":"long"},{"name":"item","type":"string"}]}"#)?;
//! let serde = AvroSerde::<Order>::value(client, "orders", schema)
//!     .with_config(SerdeConfig::from_pairs([("auto.register.schemas", "false")])?);
//!
//! let order = Order { id: 1, item: "pizza".into() };
//! let mut bytes = Vec::new();
//! serde.serialize(&order, &mut bytes).unwrap();
//! assert_eq!(serde.deserialize(&bytes).unwrap(), order);
//! # }
//! # Ok::<(), schema_registry::Error>(())
//! ```
//!
//! # Errors
//!
//! [`Error`] names what went wrong: an unknown schema id, an unreachable registry (with its URL, never the
//! credentials), refused credentials, an incompatible schema, a bad magic byte, a truncated record, data that
//! does not match its schema. Through the `Serde` trait it becomes a
//! [`SerdeError`](state_store::SerdeError) of kind `Other` carrying that message, which the runtime's
//! deserialization handler logs or puts in the dead-letter record's headers. The serdes' own `encode` and
//! `decode` methods return the typed [`Error`].
//!
//! Like Confluent's deserializers, a registry that cannot be reached makes deserialization fail; a
//! log-and-continue or dead-letter handler would then skip good records, so where the registry may be down prefer
//! the failing handler ([`Error::is_retriable`] tells the outage apart when calling `decode` directly).
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod subject;
pub mod wire;

#[cfg(feature = "avro")]
pub mod avro;
#[cfg(feature = "json-schema")]
pub mod json;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "protobuf")]
pub mod protobuf;

pub use client::{RegisteredSchema, Schema, SchemaReference, SchemaRegistryClient, SchemaType};
pub use config::{BasicAuth, RegistryConfig, SerdeConfig, TlsConfig};
pub use error::{Error, Result};
pub use subject::SubjectNameStrategy;

#[cfg(feature = "avro")]
pub use apache_avro;
#[cfg(feature = "json-schema")]
pub use jsonschema;
#[cfg(feature = "protobuf")]
pub use prost;
#[cfg(feature = "protobuf")]
pub use prost_reflect;
