//! Avro serdes against the in-process mock registry: round trips, subjects, registration modes, caching, schema
//! evolution and typed errors.

mod common;

use std::sync::Arc;

use apache_avro::types::Value;
use common::{Call, MockRegistry};
use schema_registry::avro::{AvroSchema, AvroSerde, GenericAvroSerde};
use schema_registry::{wire, Error, RegistryConfig, SchemaRegistryClient, SerdeConfig};
use serde::{Deserialize, Serialize};
use state_store::serde::Serde;
use state_store::SerdeErrorKind;

pub const ORDER_V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},
    {"name":"item","type":"string"},
    {"name":"price","type":"double"},
    {"name":"tags","type":{"type":"array","items":"string"}}]}"#;

pub const ORDER_V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},
    {"name":"item","type":"string"},
    {"name":"price","type":"double"},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"note","type":"string","default":"none"},
    {"name":"coupon","type":["null","string"],"default":null}]}"#;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OrderV1 {
    id: i64,
    item: String,
    price: f64,
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OrderV2 {
    id: i64,
    item: String,
    price: f64,
    tags: Vec<String>,
    note: String,
    coupon: Option<String>,
}

fn order(id: i64) -> OrderV1 {
    OrderV1 {
        id,
        item: format!("pizza {id}"),
        price: 9.5 + id as f64,
        tags: vec!["hot".into(), format!("t{id}")],
    }
}

fn client(registry: &MockRegistry) -> Arc<SchemaRegistryClient> {
    Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap())
}

fn schema(text: &str) -> AvroSchema {
    AvroSchema::parse(text).unwrap()
}

#[test]
fn avro_typed_round_trip_registers_under_the_topic_value_subject() {
    let registry = MockRegistry::start();
    let serde = AvroSerde::<OrderV1>::value(client(&registry), "orders", schema(ORDER_V1));
    let mut bytes = Vec::new();
    serde.serialize(&order(1), &mut bytes).unwrap();
    let (id, payload) = wire::read_header(&bytes).unwrap();
    assert_eq!(id, 1);
    // The payload is plain Avro binary: the id 1 as a zig-zag varint first.
    assert_eq!(payload[0], 2);
    assert_eq!(serde.deserialize(&bytes).unwrap(), order(1));
    assert_eq!(registry.subjects(), ["orders-value"]);
}

#[test]
fn avro_generic_values_round_trip_and_match_typed_bytes() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let generic = GenericAvroSerde::value(client.clone(), "orders", Some(schema(ORDER_V1)));
    let typed = AvroSerde::<OrderV1>::value(client, "orders", schema(ORDER_V1));
    let value = Value::Record(vec![
        ("id".into(), Value::Long(1)),
        ("item".into(), Value::String("pizza 1".into())),
        ("price".into(), Value::Double(10.5)),
        (
            "tags".into(),
            Value::Array(vec![
                Value::String("hot".into()),
                Value::String("t1".into()),
            ]),
        ),
    ]);
    let mut from_generic = Vec::new();
    generic.serialize(&value, &mut from_generic).unwrap();
    let mut from_typed = Vec::new();
    typed.serialize(&order(1), &mut from_typed).unwrap();
    assert_eq!(from_generic, from_typed);
    assert_eq!(generic.deserialize(&from_typed).unwrap(), value);
}

#[test]
fn avro_key_serde_registers_under_the_key_subject() {
    let registry = MockRegistry::start();
    let serde = GenericAvroSerde::key(
        client(&registry),
        "orders",
        Some(schema(r#"{"type":"string"}"#)),
    );
    let mut bytes = Vec::new();
    serde
        .serialize(&Value::String("k1".into()), &mut bytes)
        .unwrap();
    assert_eq!(bytes, [0, 0, 0, 0, 1, 4, b'k', b'1']);
    assert_eq!(registry.subjects(), ["orders-key"]);
}

#[test]
fn avro_record_name_strategies_name_subjects_after_the_record() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    for (strategy, topic) in [
        ("RecordNameStrategy", "a"),
        (
            "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
            "b",
        ),
    ] {
        let serde = AvroSerde::<OrderV1>::value(client.clone(), topic, schema(ORDER_V1))
            .with_config(
                SerdeConfig::from_pairs([("value.subject.name.strategy", strategy)]).unwrap(),
            );
        serde.serialize(&order(1), &mut Vec::new()).unwrap();
    }
    assert_eq!(registry.subjects(), ["b-shop.Order", "shop.Order"]);
    // A record strategy with an unnamed schema is a configuration error naming the key.
    let serde = GenericAvroSerde::value(client, "c", Some(schema(r#"{"type":"string"}"#)))
        .with_config(
            SerdeConfig::from_pairs([("subject.name.strategy", "RecordNameStrategy")]).unwrap(),
        );
    let err = serde
        .encode(&Value::String("x".into()), &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "value.subject.name.strategy"),
        "{err}"
    );
}

#[test]
fn avro_serializing_1000_records_registers_once_and_reading_them_fetches_once() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let serde = AvroSerde::<OrderV1>::value(client.clone(), "orders", schema(ORDER_V1));
    let mut records = Vec::new();
    for i in 0..1000 {
        let mut bytes = Vec::new();
        serde.serialize(&order(i), &mut bytes).unwrap();
        records.push(bytes);
    }
    assert_eq!(registry.calls(Call::Register), 1);
    // A fresh serde on a fresh client must fetch the writer schema by id, once.
    let reader = AvroSerde::<OrderV1>::value(
        Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap()),
        "orders",
        schema(ORDER_V1),
    );
    for (i, bytes) in records.iter().enumerate() {
        assert_eq!(reader.deserialize(bytes).unwrap(), order(i as i64));
    }
    assert_eq!(registry.calls(Call::SchemaById), 1);
    assert_eq!(registry.calls(Call::Register), 1);
    assert_eq!(registry.calls(Call::Lookup), 0);
    assert_eq!(client.requests_sent(), 1);
}

#[test]
fn avro_reader_schema_v2_reads_v1_records_with_defaults() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let v1 = AvroSerde::<OrderV1>::value(client.clone(), "orders", schema(ORDER_V1));
    let mut bytes = Vec::new();
    v1.serialize(&order(3), &mut bytes).unwrap();

    let v2 = AvroSerde::<OrderV2>::value(client.clone(), "orders", schema(ORDER_V2));
    let read = v2.deserialize(&bytes).unwrap();
    assert_eq!(
        read,
        OrderV2 {
            id: 3,
            item: "pizza 3".into(),
            price: 12.5,
            tags: vec!["hot".into(), "t3".into()],
            note: "none".into(),
            coupon: None,
        }
    );
    // And the other way: a v2 record read with the v1 schema drops the new fields.
    let mut v2_bytes = Vec::new();
    v2.serialize(
        &OrderV2 {
            note: "ring twice".into(),
            coupon: Some("HALF".into()),
            ..read
        },
        &mut v2_bytes,
    )
    .unwrap();
    assert_eq!(wire::read_header(&v2_bytes).unwrap().0, 2);
    assert_eq!(v1.deserialize(&v2_bytes).unwrap(), order(3));
    // Generic reads without a reader schema see what the writer wrote.
    let generic = GenericAvroSerde::value(client, "orders", None);
    let Value::Record(fields) = generic.deserialize(&v2_bytes).unwrap() else {
        panic!("not a record");
    };
    assert_eq!(fields.len(), 6);
    assert_eq!(
        fields[5].1,
        Value::Union(1, Box::new(Value::String("HALF".into())))
    );
}

#[test]
fn avro_without_auto_registration_looks_the_schema_up() {
    let registry = MockRegistry::start();
    let config = SerdeConfig::from_pairs([("auto.register.schemas", "false")]).unwrap();
    let serde = AvroSerde::<OrderV1>::value(client(&registry), "orders", schema(ORDER_V1))
        .with_config(config.clone());
    let err = serde.encode(&order(1), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::SchemaNotFound { ref subject, .. } if subject == "orders-value"),
        "{err}"
    );
    // Registered by someone else (whitespace differs), the lookup finds it.
    let id = registry.put("orders-value", "AVRO", &ORDER_V1.replace('\n', ""));
    let mut bytes = Vec::new();
    serde.encode(&order(1), &mut bytes).unwrap();
    assert_eq!(wire::read_header(&bytes).unwrap().0, id);
    assert_eq!(registry.calls(Call::Register), 0);
    assert_eq!(registry.calls(Call::Lookup), 2);
}

#[test]
fn avro_use_latest_version_writes_with_the_latest_schema() {
    let registry = MockRegistry::start();
    registry.put("orders-value", "AVRO", ORDER_V1);
    let latest = registry.put("orders-value", "AVRO", ORDER_V2);
    let config = SerdeConfig::from_pairs([
        ("auto.register.schemas", "false"),
        ("use.latest.version", "true"),
    ])
    .unwrap();
    // The serde's own schema is v1; values are written with v2 (defaults filled in) and its id.
    let serde = AvroSerde::<OrderV1>::value(client(&registry), "orders", schema(ORDER_V1))
        .with_config(config);
    let mut bytes = Vec::new();
    serde.encode(&order(5), &mut bytes).unwrap();
    let (id, _) = wire::read_header(&bytes).unwrap();
    assert_eq!(id, latest);
    assert_eq!(registry.calls(Call::Register), 0);
    let v2 = AvroSerde::<OrderV2>::value(client(&registry), "orders", schema(ORDER_V2));
    assert_eq!(v2.deserialize(&bytes).unwrap().note, "none");
}

#[test]
fn avro_data_not_matching_the_schema_is_a_typed_error() {
    let registry = MockRegistry::start();
    let serde = GenericAvroSerde::value(client(&registry), "orders", Some(schema(ORDER_V1)));
    // Writing: a record missing fields.
    let err = serde
        .encode(
            &Value::Record(vec![("id".into(), Value::Long(1))]),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaMismatch {
                direction: "writing",
                ..
            }
        ),
        "{err}"
    );
    // Reading: a payload cut short.
    let mut bytes = Vec::new();
    AvroSerde::<OrderV1>::value(client(&registry), "orders", schema(ORDER_V1))
        .encode(&order(1), &mut bytes)
        .unwrap();
    let err = serde.decode(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaMismatch {
                direction: "reading",
                id: Some(1),
                ..
            }
        ),
        "{err}"
    );
    // Through the Serde trait: kind Other, the message names the cause.
    let err = serde.deserialize(&bytes[..bytes.len() - 3]).unwrap_err();
    assert_eq!(err.kind, SerdeErrorKind::Other);
    assert!(err.message.contains("does not match schema id 1"), "{err}");
    let err = serde.deserialize(b"not avro").unwrap_err();
    assert!(err.message.contains("magic byte"), "{err}");
    let err = serde.deserialize(&[0, 0]).unwrap_err();
    assert!(err.message.contains("truncated"), "{err}");
}

#[test]
fn avro_serde_refuses_a_schema_of_another_type() {
    let registry = MockRegistry::start();
    let id = registry.put("other-value", "JSON", r#"{"type":"object"}"#);
    let serde = GenericAvroSerde::value(client(&registry), "other", None);
    let mut bytes = Vec::new();
    wire::write_header(id, &mut bytes);
    bytes.extend_from_slice(b"{}");
    let err = serde.decode(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::SchemaTypeMismatch { expected: "AVRO", ref found, .. } if found == "JSON"),
        "{err}"
    );
}
