//! JSON Schema serdes against the in-process mock registry: round trips, validation on both sides, subjects and
//! caching.

mod common;

use std::sync::Arc;

use common::{Call, MockRegistry};
use schema_registry::json::{JsonSchema, JsonSchemaSerde};
use schema_registry::{wire, Error, RegistryConfig, SchemaRegistryClient, SerdeConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use state_store::serde::Serde;

pub const ORDER_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "item": {"type": "string"},
    "price": {"type": "number", "minimum": 0},
    "tags": {"type": "array", "items": {"type": "string"}}
  },
  "required": ["id", "item", "price"]
}"#;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: i64,
    item: String,
    price: f64,
    tags: Vec<String>,
}

fn client(registry: &MockRegistry) -> Arc<SchemaRegistryClient> {
    Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap())
}

fn schema() -> Option<JsonSchema> {
    Some(JsonSchema::parse(ORDER_SCHEMA).unwrap())
}

#[test]
fn json_schema_round_trip_writes_compact_json_after_the_header() {
    let registry = MockRegistry::start();
    let serde = JsonSchemaSerde::<Order>::value(client(&registry), "orders", schema());
    let order = Order {
        id: 1,
        item: "pizza".into(),
        price: 9.5,
        tags: vec!["hot".into()],
    };
    let mut bytes = Vec::new();
    serde.serialize(&order, &mut bytes).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1]);
    assert_eq!(
        std::str::from_utf8(&bytes[5..]).unwrap(),
        r#"{"id":1,"item":"pizza","price":9.5,"tags":["hot"]}"#
    );
    assert_eq!(serde.deserialize(&bytes).unwrap(), order);
    // Untyped values read the same record.
    let untyped = JsonSchemaSerde::<serde_json::Value>::value(client(&registry), "orders", None);
    assert_eq!(
        untyped.deserialize(&bytes).unwrap(),
        json!({"id": 1, "item": "pizza", "price": 9.5, "tags": ["hot"]})
    );
    assert_eq!(registry.subjects(), ["orders-value"]);
}

#[test]
fn json_schema_validates_when_writing_and_reading() {
    let registry = MockRegistry::start();
    let serde = JsonSchemaSerde::<serde_json::Value>::value(client(&registry), "orders", schema());
    let err = serde
        .encode(
            &json!({"id": "one", "item": "pizza", "price": -1}),
            &mut Vec::new(),
        )
        .unwrap_err();
    let Error::SchemaMismatch {
        direction: "writing",
        ref message,
        ..
    } = err
    else {
        panic!("{err}");
    };
    assert!(message.contains("/id"), "{message}");
    assert!(message.contains("/price"), "{message}");

    // A record written by a producer that did not validate is refused when read...
    let mut bytes = Vec::new();
    serde
        .encode(&json!({"id": 1, "item": "pizza", "price": 1}), &mut bytes)
        .unwrap();
    let mut bad = bytes[..5].to_vec();
    bad.extend_from_slice(br#"{"id":1,"price":1}"#);
    let err = serde.deserialize(&bad).unwrap_err();
    assert!(err.message.contains("item"), "{err}");
    // ...unless validation is off.
    let lenient = JsonSchemaSerde::<serde_json::Value>::value(client(&registry), "orders", None)
        .with_config(SerdeConfig::from_pairs([("json.fail.invalid.schema", "false")]).unwrap());
    assert_eq!(
        lenient.deserialize(&bad).unwrap(),
        json!({"id": 1, "price": 1})
    );
    // Not JSON at all.
    let mut garbage = bytes[..5].to_vec();
    garbage.extend_from_slice(b"{oops");
    assert!(matches!(
        serde.decode(&garbage),
        Err(Error::SchemaMismatch {
            direction: "reading",
            ..
        })
    ));
}

#[test]
fn json_schema_title_names_the_record_subject() {
    let registry = MockRegistry::start();
    let serde = JsonSchemaSerde::<serde_json::Value>::value(client(&registry), "orders", schema())
        .with_config(
            SerdeConfig::from_pairs([("subject.name.strategy", "TopicRecordNameStrategy")])
                .unwrap(),
        );
    serde
        .serialize(&json!({"id": 1, "item": "x", "price": 0}), &mut Vec::new())
        .unwrap();
    assert_eq!(registry.subjects(), ["orders-Order"]);
}

#[test]
fn json_schema_serializing_1000_records_registers_once() {
    let registry = MockRegistry::start();
    let serde = JsonSchemaSerde::<Order>::value(client(&registry), "orders", schema());
    let reader = JsonSchemaSerde::<Order>::value(client(&registry), "orders", None);
    for i in 0..1000 {
        let order = Order {
            id: i,
            item: format!("item {i}"),
            price: i as f64,
            tags: Vec::new(),
        };
        let mut bytes = Vec::new();
        serde.serialize(&order, &mut bytes).unwrap();
        assert_eq!(reader.deserialize(&bytes).unwrap(), order);
    }
    assert_eq!(registry.calls(Call::Register), 1);
    assert_eq!(registry.calls(Call::SchemaById), 1);
}

#[test]
fn json_schema_without_a_schema_needs_use_latest_version_to_write() {
    let registry = MockRegistry::start();
    let id = registry.put("orders-value", "JSON", ORDER_SCHEMA);
    let serde = JsonSchemaSerde::<serde_json::Value>::value(client(&registry), "orders", None);
    let err = serde
        .encode(&json!({"id": 1, "item": "x", "price": 0}), &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let serde = serde.with_config(
        SerdeConfig::from_pairs([
            ("use.latest.version", "true"),
            ("auto.register.schemas", "false"),
        ])
        .unwrap(),
    );
    let mut bytes = Vec::new();
    serde
        .encode(&json!({"id": 1, "item": "x", "price": 0}), &mut bytes)
        .unwrap();
    assert_eq!(wire::read_header(&bytes).unwrap().0, id);
    // The latest schema validates too.
    assert!(serde.encode(&json!({"id": 1}), &mut Vec::new()).is_err());
}
