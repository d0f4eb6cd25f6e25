//! JSON Schema serdes: [`JsonSchemaSerde`] for any `serde` type, `serde_json::Value` included.
//!
//! Values are written as compact JSON after the wire-format header. With `json.fail.invalid.schema` (the
//! default here), a value is validated against the serde's schema before it is written, and a record against
//! its writer's schema (fetched by id) before it is read; a value that does not validate is a
//! [`Error::SchemaMismatch`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use schema_registry::{json::{JsonSchema, JsonSchemaSerde}, RegistryConfig, SchemaRegistryClient};
//! use state_store::serde::Serde;
//!
//! let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::new("http://localhost:8081"))?);
//! let schema = JsonSchema::parse(r#"{"title":"Order","type":"object","required":["id"],
//!     "properties":{"id":{"type":"integer"}}}"#)?;
//! let serde = JsonSchemaSerde::<serde_json::Value>::value(client, "orders", Some(schema));
//! let mut bytes = Vec::new();
//! serde.serialize(&serde_json::json!({"id": 7}), &mut bytes).unwrap();
//! assert!(serde.serialize(&serde_json::json!({"id": "seven"}), &mut Vec::new()).is_err());
//! # Ok::<(), schema_registry::Error>(())
//! ```

use std::any::type_name;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use state_store::serde::Serde;
use state_store::SerdeError;

use crate::client::{Schema, SchemaRegistryClient, SchemaType};
use crate::config::SerdeConfig;
use crate::error::{Error, Result};
use crate::wire;

const FORMAT: &str = "JSON Schema";

/// A JSON Schema: its text (registered as given), the parsed document and a compiled validator.
#[derive(Clone)]
pub struct JsonSchema {
    text: String,
    document: serde_json::Value,
    validator: Arc<jsonschema::Validator>,
}

impl fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchema")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl JsonSchema {
    /// Parses and compiles a JSON Schema.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with_id(text, None)
    }

    fn parse_with_id(text: &str, id: Option<u32>) -> Result<Self> {
        let parse_error = |message: String| Error::SchemaParse {
            format: FORMAT,
            id,
            message,
        };
        let document: serde_json::Value =
            serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let validator =
            jsonschema::validator_for(&document).map_err(|e| parse_error(e.to_string()))?;
        Ok(JsonSchema {
            text: text.to_string(),
            document,
            validator: Arc::new(validator),
        })
    }

    /// The schema's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The schema's `title`, used as the record name by the record subject strategies.
    pub fn title(&self) -> Option<&str> {
        self.document.get("title").and_then(|t| t.as_str())
    }

    /// Validates `instance`; the error lists every violation.
    pub fn validate(&self, instance: &serde_json::Value) -> std::result::Result<(), String> {
        let violations: Vec<String> = self
            .validator
            .iter_errors(instance)
            .take(10)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("at {path}: {e}")
                }
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations.join("; "))
        }
    }
}

/// Confluent's JSON Schema serde, for any `serde` type `T` (use `serde_json::Value` for untyped JSON).
///
/// The schema is needed for writing (unless `use.latest.version`); reading works without one.
pub struct JsonSchemaSerde<T> {
    client: Arc<SchemaRegistryClient>,
    topic: String,
    is_key: bool,
    config: SerdeConfig,
    schema: Option<JsonSchema>,
    own_id: RwLock<Option<u32>>,
    writers: RwLock<HashMap<u32, JsonSchema>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> JsonSchemaSerde<T>
where
    T: Serialize + DeserializeOwned + 'static,
{
    /// A serde for the values of `topic`.
    pub fn value(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: Option<JsonSchema>,
    ) -> Self {
        Self::new(client, topic, false, schema)
    }

    /// A serde for the keys of `topic`.
    pub fn key(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        schema: Option<JsonSchema>,
    ) -> Self {
        Self::new(client, topic, true, schema)
    }

    /// A serde for `topic`'s keys (`is_key`) or values.
    pub fn new(
        client: Arc<SchemaRegistryClient>,
        topic: impl Into<String>,
        is_key: bool,
        schema: Option<JsonSchema>,
    ) -> Self {
        JsonSchemaSerde {
            client,
            topic: topic.into(),
            is_key,
            config: SerdeConfig::default(),
            schema,
            own_id: RwLock::new(None),
            writers: RwLock::new(HashMap::new()),
            _type: PhantomData,
        }
    }

    /// Replaces the serde configuration.
    pub fn with_config(mut self, config: SerdeConfig) -> Self {
        self.config = config;
        self
    }

    /// The subject this serde registers under.
    pub fn subject(&self) -> Result<String> {
        let title = self.schema.as_ref().and_then(JsonSchema::title);
        self.config
            .subject_name_strategy(self.is_key)
            .subject(&self.topic, self.is_key, title)
    }

    /// The id to write and the schema to validate against.
    fn writer(&self) -> Result<(u32, JsonSchema)> {
        if self.config.use_latest_version {
            let latest = self.client.latest_version(&self.subject()?)?;
            return Ok((latest.id, self.writer_schema(latest.id)?));
        }
        let Some(own) = &self.schema else {
            return Err(Error::Config {
                key: "use.latest.version".into(),
                message:
                    "this JSON Schema serde has no schema to write with; give it one or set use.latest.version"
                        .into(),
            });
        };
        let cached = *self.own_id.read().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = cached {
            return Ok((id, own.clone()));
        }
        let subject = self.subject()?;
        let schema = Schema::new(SchemaType::Json, own.as_str());
        let id = if self.config.auto_register_schemas {
            self.client
                .register(&subject, &schema, self.config.normalize_schemas)?
        } else {
            self.client
                .lookup(&subject, &schema, self.config.normalize_schemas)?
        };
        *self.own_id.write().unwrap_or_else(|e| e.into_inner()) = Some(id);
        Ok((id, own.clone()))
    }

    fn writer_schema(&self, id: u32) -> Result<JsonSchema> {
        if let Some(found) = self
            .writers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(found.clone());
        }
        let fetched = self.client.schema_by_id(id)?;
        if fetched.schema_type != SchemaType::Json {
            return Err(Error::SchemaTypeMismatch {
                id,
                expected: "JSON",
                found: fetched.schema_type.to_string(),
            });
        }
        if !fetched.references.is_empty() {
            return Err(Error::SchemaParse {
                format: FORMAT,
                id: Some(id),
                message: "the schema has references, which are not supported yet".into(),
            });
        }
        let schema = JsonSchema::parse_with_id(&fetched.schema, Some(id))?;
        self.writers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }

    /// Appends the wire-format encoding of `value` to `out`.
    pub fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        let (id, schema) = self.writer()?;
        if self.config.json_fail_invalid_schema {
            let json = serde_json::to_value(value).map_err(|e| mismatch("writing", Some(id), e))?;
            schema
                .validate(&json)
                .map_err(|e| mismatch("writing", Some(id), e))?;
        }
        let start = out.len();
        wire::write_header(id, out);
        serde_json::to_writer(&mut *out, value).map_err(|e| {
            out.truncate(start);
            mismatch("writing", Some(id), e)
        })
    }

    /// Decodes a record in the wire format.
    pub fn decode(&self, data: &[u8]) -> Result<T> {
        let (id, payload) = wire::read_header(data)?;
        let schema = self.writer_schema(id)?;
        let json: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| mismatch("reading", Some(id), e))?;
        if self.config.json_fail_invalid_schema {
            schema
                .validate(&json)
                .map_err(|e| mismatch("reading", Some(id), e))?;
        }
        serde_json::from_value(json).map_err(|e| mismatch("reading", Some(id), e))
    }
}

fn mismatch(direction: &'static str, id: Option<u32>, message: impl ToString) -> Error {
    Error::SchemaMismatch {
        format: FORMAT,
        direction,
        id,
        message: message.to_string(),
    }
}

impl<T> Serde<T> for JsonSchemaSerde<T>
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
