//! Interop with an independent implementation: Confluent's Python serializers and deserializers
//! (`confluent-kafka`), talking to the same in-process mock registry (with basic auth).
//!
//! For each format: records written by Python are read by our serdes and compared with the originals; records
//! written by our serdes are read by Python and compared; the same records written by both under the same
//! subject are the same bytes (JSON: the same header and the same parsed JSON). Avro also crosses versions:
//! Python writes with version 1, we read with a version 2 reader schema, and the other way round.

mod common;

use std::sync::Arc;

use common::python::{hex, unhex, Python};
use common::shop_proto;
use common::MockRegistry;
use prost_reflect::DynamicMessage;
use schema_registry::avro::{AvroSchema, AvroSerde, GenericAvroSerde};
use schema_registry::json::{JsonSchema, JsonSchemaSerde};
use schema_registry::protobuf::DynamicProtobufSerde;
use schema_registry::{wire, RegistryConfig, SchemaRegistryClient};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use state_store::serde::Serde;

const USER: &str = "interop";
const PASSWORD: &str = "interop-secret";

const ORDER_V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"price","type":"double"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"coupon","type":["null","string"],"default":null}]}"#;

const ORDER_V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"price","type":"double"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"coupon","type":["null","string"],"default":null},{"name":"note","type":"string","default":"none"}]}"#;

const JSON_SCHEMA: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#","title":"Order","type":"object","properties":{"id":{"type":"integer"},"item":{"type":"string"},"price":{"type":"number"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id","item","price"]}"#;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OrderV1 {
    id: i64,
    item: String,
    price: f64,
    tags: Vec<String>,
    coupon: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OrderV2 {
    id: i64,
    item: String,
    price: f64,
    tags: Vec<String>,
    coupon: Option<String>,
    note: String,
}

fn orders() -> Vec<OrderV1> {
    (0..5)
        .map(|i| OrderV1 {
            id: i * 1_000_000_007 - 3,
            item: format!("pizza n°{i}"),
            price: 9.25 * i as f64,
            tags: (0..i).map(|t| format!("tag{t}")).collect(),
            coupon: (i % 2 == 0).then(|| format!("C{i}")),
        })
        .collect()
}

fn client(registry: &MockRegistry) -> Arc<SchemaRegistryClient> {
    Arc::new(
        SchemaRegistryClient::new(
            RegistryConfig::new(&registry.url).with_basic_auth(USER, PASSWORD),
        )
        .unwrap(),
    )
}

fn request(registry: &MockRegistry, op: &str, format: &str, topic: &str) -> Value {
    json!({
        "op": op,
        "format": format,
        "url": registry.url,
        "auth": format!("{USER}:{PASSWORD}"),
        "topic": topic,
        "is_key": false,
    })
}

fn python_data(answer: &Value) -> Vec<Vec<u8>> {
    answer["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|h| unhex(h.as_str().expect("hex")))
        .collect()
}

fn python_records(answer: &Value) -> Vec<Value> {
    answer["records"].as_array().expect("records").clone()
}

#[test]
fn avro_interop_with_confluent_python() {
    let Some(python) = Python::find("avro_interop_with_confluent_python") else {
        return;
    };
    let registry = MockRegistry::start_with_auth(USER, PASSWORD);
    let client = client(&registry);
    let records = orders();
    let records_json = serde_json::to_value(&records).unwrap();

    // Python writes, we read.
    let mut req = request(&registry, "serialize", "avro", "py-orders");
    req["schema"] = json!(ORDER_V1);
    req["records"] = records_json.clone();
    let from_python = python_data(&python.run(&req));
    let ours = AvroSerde::<OrderV1>::value(
        client.clone(),
        "py-orders",
        AvroSchema::parse(ORDER_V1).unwrap(),
    );
    let read: Vec<OrderV1> = from_python
        .iter()
        .map(|b| ours.deserialize(b).unwrap())
        .collect();
    assert_eq!(read, records);

    // We write, Python reads.
    let ours = AvroSerde::<OrderV1>::value(
        client.clone(),
        "rs-orders",
        AvroSchema::parse(ORDER_V1).unwrap(),
    );
    let from_us: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let mut b = Vec::new();
            ours.serialize(r, &mut b).unwrap();
            b
        })
        .collect();
    let mut req = request(&registry, "deserialize", "avro", "rs-orders");
    req["data"] = json!(from_us.iter().map(|b| hex(b)).collect::<Vec<_>>());
    assert_eq!(
        python_records(&python.run(&req)),
        records_json.as_array().unwrap().clone()
    );

    // Same subject, same schema, same records: the same bytes.
    let mut req = request(&registry, "serialize", "avro", "rs-orders");
    req["schema"] = json!(ORDER_V1);
    req["records"] = records_json.clone();
    assert_eq!(python_data(&python.run(&req)), from_us);

    // Python writes version 1, we read with version 2; we write version 2, Python reads with version 1.
    let v2 = AvroSerde::<OrderV2>::value(
        client.clone(),
        "py-orders",
        AvroSchema::parse(ORDER_V2).unwrap(),
    );
    for (bytes, original) in from_python.iter().zip(&records) {
        let read = v2.deserialize(bytes).unwrap();
        assert_eq!(read.note, "none");
        assert_eq!((read.id, &read.coupon), (original.id, &original.coupon));
    }
    let newer = OrderV2 {
        id: 42,
        item: "calzone".into(),
        price: 12.0,
        tags: vec!["new".into()],
        coupon: None,
        note: "ring twice".into(),
    };
    let mut bytes = Vec::new();
    v2.serialize(&newer, &mut bytes).unwrap();
    let mut req = request(&registry, "deserialize", "avro", "py-orders");
    req["schema"] = json!(ORDER_V1);
    req["data"] = json!([hex(&bytes)]);
    assert_eq!(
        python_records(&python.run(&req)),
        [json!({"id": 42, "item": "calzone", "price": 12.0, "tags": ["new"], "coupon": null})]
    );
    // And a generic read of Python's bytes sees the writer's union branch.
    let generic = GenericAvroSerde::value(client, "py-orders", None);
    let apache_avro::types::Value::Record(fields) = generic.deserialize(&from_python[0]).unwrap()
    else {
        panic!("not a record");
    };
    assert_eq!(
        fields[4].1,
        apache_avro::types::Value::Union(
            1,
            Box::new(apache_avro::types::Value::String("C0".into()))
        )
    );
}

fn proto_records() -> Value {
    json!([
        {"id": "-7", "item": "pizza", "price": 9.5, "tags": ["hot", "veg"],
         "address": {"city": "Napoli", "zip": 80100}, "status": "PAID"},
        {"id": "9007199254740993", "item": "", "price": 0.0, "tags": [], "status": "NEW"},
        {"id": "1", "item": "calzone ü", "price": -1.25, "address": {"city": "Roma"}},
    ])
}

/// The message of a proto JSON record, as it reads back from the wire: proto3 fields set to their default are
/// not written, so they come back unset.
fn dynamic(descriptor: &prost_reflect::MessageDescriptor, value: &Value) -> DynamicMessage {
    let message =
        DynamicMessage::deserialize(descriptor.clone(), value.clone()).expect("proto JSON");
    DynamicMessage::decode(
        descriptor.clone(),
        prost::Message::encode_to_vec(&message).as_slice(),
    )
    .expect("round trip")
}

#[test]
fn protobuf_interop_with_confluent_python() {
    let Some(python) = Python::find("protobuf_interop_with_confluent_python") else {
        return;
    };
    let registry = MockRegistry::start_with_auth(USER, PASSWORD);
    let client = client(&registry);
    let order = shop_proto::message(false, "shop.Order");
    let descriptor_hex = hex(&order.parent_file().encode_to_vec());
    let records = proto_records();
    let expected: Vec<DynamicMessage> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| dynamic(&order, r))
        .collect();
    let proto_request = |op: &str, topic: &str, message: &str| {
        let mut req = request(&registry, op, "protobuf", topic);
        req["descriptor"] = json!(descriptor_hex);
        req["message"] = json!(message);
        req
    };

    // Python writes, we read.
    let mut req = proto_request("serialize", "py-orders", "shop.Order");
    req["records"] = records.clone();
    let from_python = python_data(&python.run(&req));
    let ours = DynamicProtobufSerde::value(client.clone(), "py-orders", order.clone());
    for (bytes, expected) in from_python.iter().zip(&expected) {
        assert_eq!(
            bytes[5], 0,
            "the first message's index is the single byte 0"
        );
        assert_eq!(&ours.deserialize(bytes).unwrap(), expected);
    }

    // We write, Python reads.
    let ours = DynamicProtobufSerde::value(client.clone(), "rs-orders", order.clone());
    let from_us: Vec<Vec<u8>> = expected
        .iter()
        .map(|m| {
            let mut b = Vec::new();
            ours.serialize(m, &mut b).unwrap();
            b
        })
        .collect();
    let mut req = proto_request("deserialize", "rs-orders", "shop.Order");
    req["data"] = json!(from_us.iter().map(|b| hex(b)).collect::<Vec<_>>());
    let read: Vec<DynamicMessage> = python_records(&python.run(&req))
        .iter()
        .map(|r| dynamic(&order, r))
        .collect();
    assert_eq!(read, expected);

    // Same subject, same descriptor: the same bytes.
    let mut req = proto_request("serialize", "rs-orders", "shop.Order");
    req["records"] = records.clone();
    assert_eq!(python_data(&python.run(&req)), from_us);

    // The second message of the file: message indexes [1], both ways.
    let refund = shop_proto::message(false, "shop.Refund");
    let refund_json = json!([{"order_id": "o-1", "amount": -250}]);
    let mut req = proto_request("serialize", "refunds", "shop.Refund");
    req["records"] = refund_json.clone();
    let python_refund = python_data(&python.run(&req));
    assert_eq!(&python_refund[0][5..7], &[2, 2]);
    let ours = DynamicProtobufSerde::value(client, "refunds", refund.clone());
    let expected_refund = dynamic(&refund, &refund_json[0]);
    assert_eq!(
        ours.deserialize(&python_refund[0]).unwrap(),
        expected_refund
    );
    let mut bytes = Vec::new();
    ours.serialize(&expected_refund, &mut bytes).unwrap();
    assert_eq!(bytes, python_refund[0]);
    let mut req = proto_request("deserialize", "refunds", "shop.Refund");
    req["data"] = json!([hex(&bytes)]);
    assert_eq!(
        python_records(&python.run(&req)),
        refund_json.as_array().unwrap().clone()
    );
}

#[test]
fn json_schema_interop_with_confluent_python() {
    let Some(python) = Python::find("json_schema_interop_with_confluent_python") else {
        return;
    };
    let registry = MockRegistry::start_with_auth(USER, PASSWORD);
    let client = client(&registry);
    let records = json!([
        {"id": 1, "item": "pizza", "price": 9.5, "tags": ["hot"]},
        {"id": -12345678901i64, "item": "calzone ü \"quoted\"", "price": 0.1},
        {"id": 3, "item": "", "price": 1e21, "tags": []},
    ]);
    let schema = || Some(JsonSchema::parse(JSON_SCHEMA).unwrap());

    // Python writes, we read.
    let mut req = request(&registry, "serialize", "json", "py-orders");
    req["schema"] = json!(JSON_SCHEMA);
    req["records"] = records.clone();
    let from_python = python_data(&python.run(&req));
    let ours = JsonSchemaSerde::<Value>::value(client.clone(), "py-orders", schema());
    let read: Vec<Value> = from_python
        .iter()
        .map(|b| ours.deserialize(b).unwrap())
        .collect();
    assert_eq!(read, records.as_array().unwrap().clone());

    // We write, Python reads.
    let ours = JsonSchemaSerde::<Value>::value(client, "rs-orders", schema());
    let from_us: Vec<Vec<u8>> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut b = Vec::new();
            ours.serialize(r, &mut b).unwrap();
            b
        })
        .collect();
    let mut req = request(&registry, "deserialize", "json", "rs-orders");
    req["schema"] = json!(JSON_SCHEMA);
    req["data"] = json!(from_us.iter().map(|b| hex(b)).collect::<Vec<_>>());
    assert_eq!(
        python_records(&python.run(&req)),
        records.as_array().unwrap().clone()
    );

    // Same subject: the same header and the same JSON.
    let mut req = request(&registry, "serialize", "json", "rs-orders");
    req["schema"] = json!(JSON_SCHEMA);
    req["records"] = records.clone();
    let python_same = python_data(&python.run(&req));
    for (theirs, ours) in python_same.iter().zip(&from_us) {
        let (their_id, their_json) = wire::read_header(theirs).unwrap();
        let (our_id, our_json) = wire::read_header(ours).unwrap();
        assert_eq!(their_id, our_id);
        assert_eq!(
            serde_json::from_slice::<Value>(their_json).unwrap(),
            serde_json::from_slice::<Value>(our_json).unwrap()
        );
    }

    // Python refuses what does not validate, like we do.
    let mut req = request(&registry, "serialize", "json", "py-orders");
    req["schema"] = json!(JSON_SCHEMA);
    req["records"] = json!([{"id": "one"}]);
    let err = python
        .try_run(&req)
        .expect_err("Python accepted an invalid record");
    assert!(
        err.contains("ValidationError") || err.contains("SerializationError"),
        "{err}"
    );
}
