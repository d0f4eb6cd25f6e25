//! Avro serdes: [`GenericAvroSerde`] for `apache_avro::types::Value` (Confluent's `GenericAvroSerde`) and
//! [`AvroSerde`] for any `serde` type (through `apache_avro::to_value` / `from_value`).
//!
//! Writing: the serde's schema is registered (or looked up, or replaced by the subject's latest version, as
//! [`SerdeConfig`] says) once; its id is then written in front of every record. Reading: the writer's schema is
//! fetched by the id in the record (once per id) and, when the serde has a schema of its own, the data is resolved
//! from the writer's schema to it (Avro schema evolution: added fields with defaults, removed fields, promoted
//! types).
//!
//! ```no_run
//! use std::sync::Arc;
//! use apache_avro::types::Value;
//! use schema_registry::{avro::{AvroSchema, GenericAvroSerde}, RegistryConfig, SchemaRegistryClient};
//! use state_store::serde::Serde;
//!
//! let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::new("http://localhost:8081"))?);
//! let schema = AvroSchema::parse(
//!     r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
//! )?;
//! let serde = GenericAvroSerde::value(client, "orders", Some(schema));
//! let mut bytes = Vec::new();
//! serde.serialize(&Value::Record(vec![("id".into(), Value::Long(7))]), &mut bytes).unwrap();
//! assert_eq!(bytes[0], 0); // magic byte, then the schema id
//! # Ok::<(), schema_registry::Error>(())
//! ```

use std::any::type_name;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use state_store::serde::Serde;
use state_store::SerdeError;

use crate::client::{Schema, SchemaRegistryClient, SchemaType};
use crate::config::SerdeConfig;
use crate::error::{Error, Result};
use crate::wire;

const FORMAT: &str = "Avro";

/// An Avro schema: the text the registry keeps and the parsed form.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    text: String,
    parsed: apache_avro::Schema,
}

impl AvroSchema {
    /// Parses an Avro schema; the text is registered as given.
    pub fn parse(text: &str) -> Result<Self> {
        let parsed = apache_avro::Schema::parse_str(text).map_err(|e| Error::SchemaParse {
            format: FORMAT,
            id: None,
            message: e.to_string(),
        })?;
        Ok(AvroSchema {
            text: text.to_string(),
            parsed,
        })
    }

    /// Wraps an already parsed schema; its JSON form is what gets registered.
    pub fn from_schema(parsed: apache_avro::Schema) -> Result<Self> {
        let text = serde_json::to_string(&parsed).map_err(|e| Error::SchemaParse {
            format: FORMAT,
            id: None,
            message: e.to_string(),
        })?;
        Ok(AvroSchema { text, parsed })
    }

    /// The parsed schema.
    pub fn schema(&self) -> &apache_avro::Schema {
        &self.parsed
    }

    /// The schema's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The fully-qualified name of a named schema (record, enum, fixed), used by the record subject strategies.
    pub fn full_name(&self) -> Option<String> {
        self.parsed.name().map(|name| name.fullname(None))
    }
}

/// A writer's schema fetched by id, with the schemas it references.
struct WriterSchema {
    schema: apache_avro::Schema,
    references: Vec<apache_avro::Schema>,
}

/// What the Avro serdes share: the registry, the subject, the serde's own schema and the caches.
struct AvroCore {
    client: Arc<SchemaRegistryClient>,
    topic: String,
    is_key: bool,
    config: SerdeConfig,
    schema: Option<AvroSchema>,
    /// The id the serde's own schema has under its subject, once known.
    own_id: RwLock<Option<u32>>,
    /// Writer schemas by id (records read, and latest versions written with).
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl AvroCore {
    fn new(
        client: Arc<SchemaRegistryClient>,
        topic: String,
        is_key: bool,
        schema: Option<AvroSchema>,
    ) -> Self {
        AvroCore {
            client,
            topic,
            is_key,
            config: SerdeConfig::default(),
            schema,
            own_id: RwLock::new(None),
            writers: RwLock::new(HashMap::new()),
        }
    }

    fn subject(&self) -> Result<String> {
        let record_name = self.schema.as_ref().and_then(AvroSchema::full_name);
        self.config.subject_name_strategy(self.is_key).subject(
            &self.topic,
            self.is_key,
            record_name.as_deref(),
        )
    }

    /// The id to write and the schema to encode with.
    fn writer(&self) -> Result<(u32, WriterRef<'_>)> {
        if self.config.use_latest_version {
            let latest = self.client.latest_version(&self.subject()?)?;
            let writer = self.writer_schema(latest.id)?;
            return Ok((latest.id, WriterRef::Fetched(writer)));
        }
        let Some(own) = &self.schema else {
            return Err(Error::Config {
                key: "use.latest.version".into(),
                message: "this Avro serde has no schema to write with; give it one or set use.latest.version"
                    .into(),
            });
        };
        let cached = *self.own_id.read().unwrap_or_else(|e| e.into_inner());
        let id = match cached {
            Some(id) => id,
            None => {
                let subject = self.subject()?;
                let schema = Schema::new(SchemaType::Avro, own.as_str());
                let id = if self.config.auto_register_schemas {
                    self.client
                        .register(&subject, &schema, self.config.normalize_schemas)?
                } else {
                    self.client
                        .lookup(&subject, &schema, self.config.normalize_schemas)?
                };
                *self.own_id.write().unwrap_or_else(|e| e.into_inner()) = Some(id);
                id
            }
        };
        Ok((id, WriterRef::Own(own.schema())))
    }

    fn encode(&self, value: Value, out: &mut Vec<u8>) -> Result<()> {
        let (id, writer) = self.writer()?;
        let value = match &writer {
            WriterRef::Own(schema) => resolve_for_writing(value, schema, id)?,
            WriterRef::Fetched(w) => resolve_for_writing(value, &w.schema, id)?,
        };
        let encoded = match &writer {
            WriterRef::Own(schema) => apache_avro::to_avro_datum(schema, value),
            WriterRef::Fetched(w) => {
                apache_avro::to_avro_datum_schemata(&w.schema, w.references.iter().collect(), value)
            }
        }
        .map_err(|e| mismatch("writing", Some(id), &e))?;
        wire::write_header(id, out);
        out.extend_from_slice(&encoded);
        Ok(())
    }

    fn decode(&self, data: &[u8]) -> Result<Value> {
        let (id, mut payload) = wire::read_header(data)?;
        let writer = self.writer_schema(id)?;
        let reader = self.schema.as_ref().map(AvroSchema::schema);
        let result = if writer.references.is_empty() {
            apache_avro::from_avro_datum(&writer.schema, &mut payload, reader)
        } else {
            apache_avro::from_avro_datum_schemata(
                &writer.schema,
                writer.references.iter().collect(),
                &mut payload,
                reader,
            )
        };
        result.map_err(|e| mismatch("reading", Some(id), &e))
    }

    /// The schema with this id, fetched once.
    fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>> {
        if let Some(found) = self
            .writers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(found.clone());
        }
        let fetched = self.client.schema_by_id(id)?;
        if fetched.schema_type != SchemaType::Avro {
            return Err(Error::SchemaTypeMismatch {
                id,
                expected: "AVRO",
                found: fetched.schema_type.to_string(),
            });
        }
        let parse_error = |e: apache_avro::Error| Error::SchemaParse {
            format: FORMAT,
            id: Some(id),
            message: e.to_string(),
        };
        let writer = if fetched.references.is_empty() {
            WriterSchema {
                schema: apache_avro::Schema::parse_str(&fetched.schema).map_err(parse_error)?,
                references: Vec::new(),
            }
        } else {
            let texts = self.referenced_texts(&fetched)?;
            let (schema, references) =
                apache_avro::Schema::parse_str_with_list(&fetched.schema, &texts)
                    .map_err(parse_error)?;
            WriterSchema { schema, references }
        };
        let writer = Arc::new(writer);
        self.writers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, writer.clone());
        Ok(writer)
    }

    /// The texts of every schema `schema` references, directly or not, dependencies first.
    fn referenced_texts(&self, schema: &Schema) -> Result<Vec<String>> {
        let mut texts = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.collect_references(schema, &mut seen, &mut texts, 0)?;
        Ok(texts)
    }

    fn collect_references(
        &self,
        schema: &Schema,
        seen: &mut std::collections::HashSet<(String, i32)>,
        texts: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            return Err(Error::SchemaParse {
                format: FORMAT,
                id: None,
                message: "schema references nest deeper than 32 levels".into(),
            });
        }
        for reference in &schema.references {
            if !seen.insert((reference.subject.clone(), reference.version)) {
                continue;
            }
            let referenced = self.client.version(&reference.subject, reference.version)?;
            self.collect_references(&referenced.schema, seen, texts, depth + 1)?;
            texts.push(referenced.schema.schema.clone());
        }
        Ok(())
    }
}

enum WriterRef<'a> {
    Own(&'a apache_avro::Schema),
    Fetched(Arc<WriterSchema>),
}

/// Brings a value into the writer schema's shape: records given as maps, `Option`s into unions, ints into longs.
/// A value that already matches is left as it is.
fn resolve_for_writing(value: Value, schema: &apache_avro::Schema, id: u32) -> Result<Value> {
    if value.validate(schema) {
        return Ok(value);
    }
    value
        .resolve(schema)
        .map_err(|e| mismatch("writing", Some(id), &e))
}

fn mismatch(direction: &'static str, id: Option<u32>, error: &apache_avro::Error) -> Error {
    let mut message = error.to_string();
    if message.len() > 2000 {
        let mut end = 2000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    Error::SchemaMismatch {
        format: FORMAT,
        direction,
        id,
        message,
    }
}

/// Confluent's `GenericAvroSerde`: Avro values as `apache_avro::types::Value`.
///
/// Give it a schema to write with (and to read into: the reader schema of schema evolution), or none to read
/// records as their writers wrote them (and to write with the subject's latest version, with
/// `use.latest.version`).
pub struct GenericAvroSerde {
    core: AvroCore,
}

impl GenericAvroSerde {
    /// A serde for the values of `topic`.
    pub fn value(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: Option<AvroSchema>,
    ) -> Self {
        Self::new(client, topic, false, schema)
    }

    /// A serde for the keys of `topic`.
    pub fn key(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: Option<AvroSchema>,
    ) -> Self {
        Self::new(client, topic, true, schema)
    }

    /// A serde for `topic`'s keys (`is_key`) or values.
    pub fn new(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        is_key: bool,
        schema: Option<AvroSchema>,
    ) -> Self {
        GenericAvroSerde {
            core: AvroCore::new(client, topic.into(), is_key, schema),
        }
    }

    /// Replaces the serde configuration (registration, subject name strategy, ...).
    pub fn with_config(mut self, config: SerdeConfig) -> Self {
        self.core.config = config;
        self
    }

    /// The subject this serde registers under.
    pub fn subject(&self) -> Result<String> {
        self.core.subject()
    }

    /// Appends the wire-format encoding of `value` to `out`.
    pub fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<()> {
        self.core.encode(value.clone(), out)
    }

    /// Decodes a record in the wire format.
    pub fn decode(&self, data: &[u8]) -> Result<Value> {
        self.core.decode(data)
    }
}

impl Serde<Value> for GenericAvroSerde {
    fn serialize(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.encode(value, out)
            .map_err(|e| e.into_serde_error(type_name::<Value>()))
    }

    fn deserialize(&self, data: &[u8]) -> Result<Value, SerdeError> {
        self.decode(data)
            .map_err(|e| e.into_serde_error(type_name::<Value>()))
    }
}

/// Avro for any `serde` type `T` (Confluent's `SpecificAvroSerde`, with `serde` in place of generated classes).
///
/// The schema is required: values are written with it and read into it.
pub struct AvroSerde<T> {
    core: AvroCore,
    _type: PhantomData<fn() -> T>,
}

impl<T> AvroSerde<T>
where
    T: Serialize + DeserializeOwned + 'static,
{
    /// A serde for the values of `topic`.
    pub fn value(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: AvroSchema,
    ) -> Self {
        Self::new(client, topic, false, schema)
    }

    /// A serde for the keys of `topic`.
    pub fn key(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: AvroSchema,
    ) -> Self {
        Self::new(client, topic, true, schema)
    }

    /// A serde for `topic`'s keys (`is_key`) or values.
    pub fn new(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        is_key: bool,
        schema: AvroSchema,
    ) -> Self {
        AvroSerde {
            core: AvroCore::new(client, topic.into(), is_key, Some(schema)),
            _type: PhantomData,
        }
    }

    /// Replaces the serde configuration.
    pub fn with_config(mut self, config: SerdeConfig) -> Self {
        self.core.config = config;
        self
    }

    /// The subject this serde registers under.
    pub fn subject(&self) -> Result<String> {
        self.core.subject()
    }

    /// Appends the wire-format encoding of `value` to `out`.
    pub fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        let value = apache_avro::to_value(value).map_err(|e| mismatch("writing", None, &e))?;
        self.core.encode(value, out)
    }

    /// Decodes a record in the wire format.
    pub fn decode(&self, data: &[u8]) -> Result<T> {
        let value = self.core.decode(data)?;
        apache_avro::from_value(&value).map_err(|e| mismatch("reading", None, &e))
    }
}

impl<T> Serde<T> for AvroSerde<T>
where
    T: Serialize + DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.encode(value, out)
            .map_err(|e| e.into_serde_error(type_name::<T>()))
    }

    fn deserialize(&self, data: &[u8]) -> Result<T, SerdeError> {
        self.decode(data)
            .map_err(|e| e.into_serde_error(type_name::<T>()))
    }
}
