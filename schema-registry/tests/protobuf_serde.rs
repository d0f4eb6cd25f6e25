//! Protobuf serdes against the in-process mock registry: message indexes, dynamic and prost messages,
//! evolution, caching and typed errors.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::shop_proto;
use common::{Call, MockRegistry};
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};
use schema_registry::protobuf::{message_indexes, DynamicProtobufSerde, ProtobufSerde};
use schema_registry::{wire, Error, RegistryConfig, SchemaRegistryClient};
use state_store::serde::Serde;

#[derive(Clone, PartialEq, prost::Message)]
struct Refund {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(int32, tag = "2")]
    amount: i32,
}

fn client(registry: &MockRegistry) -> Arc<SchemaRegistryClient> {
    Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap())
}

fn order(descriptor: &MessageDescriptor, id: i64) -> DynamicMessage {
    let mut m = DynamicMessage::new(descriptor.clone());
    m.set_field_by_name("id", Value::I64(id));
    m.set_field_by_name("item", Value::String(format!("pizza {id}")));
    m.set_field_by_name("price", Value::F64(9.5));
    m.set_field_by_name(
        "tags",
        Value::List(vec![Value::String("hot".into()), Value::String("x".into())]),
    );
    let address_desc = descriptor
        .get_field_by_name("address")
        .unwrap()
        .kind()
        .as_message()
        .unwrap()
        .clone();
    let mut address = DynamicMessage::new(address_desc);
    address.set_field_by_name("city", Value::String("Napoli".into()));
    address.set_field_by_name("zip", Value::I32(80100));
    m.set_field_by_name("address", Value::Message(address));
    m.set_field_by_name("status", Value::EnumNumber(1));
    m
}

#[test]
fn protobuf_message_indexes_follow_confluent() {
    assert_eq!(
        message_indexes(&shop_proto::message(false, "shop.Order")),
        [0]
    );
    assert_eq!(
        message_indexes(&shop_proto::message(false, "shop.Refund")),
        [1]
    );
    assert_eq!(
        message_indexes(&shop_proto::message(false, "shop.Order.Address")),
        [0, 0]
    );
}

#[test]
fn protobuf_dynamic_round_trip_writes_header_indexes_and_payload() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let descriptor = shop_proto::message(false, "shop.Order");
    let serde = DynamicProtobufSerde::value(client.clone(), "orders", descriptor.clone());
    let message = order(&descriptor, 7);
    let mut bytes = Vec::new();
    serde.serialize(&message, &mut bytes).unwrap();
    // Header, then the single 0 for the first message, then the payload.
    assert_eq!(&bytes[..6], &[0, 0, 0, 0, 1, 0]);
    assert_eq!(
        &bytes[6..],
        prost::Message::encode_to_vec(&message).as_slice()
    );
    assert_eq!(serde.deserialize(&bytes).unwrap(), message);
    assert_eq!(registry.subjects(), ["orders-value"]);

    // The registered schema is the base64 FileDescriptorProto of the file.
    let stored = client.schema_by_id(1).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&stored.schema)
        .unwrap();
    assert_eq!(decoded, descriptor.parent_file().encode_to_vec());

    // Nested and second messages carry their index paths.
    let address = shop_proto::message(false, "shop.Order.Address");
    let serde = DynamicProtobufSerde::value(client.clone(), "addresses", address.clone());
    let mut bytes = Vec::new();
    serde
        .serialize(&DynamicMessage::new(address), &mut bytes)
        .unwrap();
    assert_eq!(bytes, [0, 0, 0, 0, 1, 4, 0, 0]);
    let refund = shop_proto::message(false, "shop.Refund");
    let serde = DynamicProtobufSerde::value(client, "refunds", refund.clone());
    let mut bytes = Vec::new();
    serde
        .serialize(&DynamicMessage::new(refund.clone()), &mut bytes)
        .unwrap();
    assert_eq!(bytes, [0, 0, 0, 0, 1, 2, 2]);
    assert_eq!(serde.deserialize(&bytes).unwrap().descriptor(), refund);
}

#[test]
fn protobuf_prost_messages_match_dynamic_bytes() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let descriptor = shop_proto::message(false, "shop.Refund");
    let typed = ProtobufSerde::<Refund>::value(client.clone(), "refunds", descriptor.clone());
    let dynamic = DynamicProtobufSerde::value(client, "refunds", descriptor.clone());
    let refund = Refund {
        order_id: "o-1".into(),
        amount: -250,
    };
    let mut typed_bytes = Vec::new();
    typed.serialize(&refund, &mut typed_bytes).unwrap();
    let mut message = DynamicMessage::new(descriptor);
    message.set_field_by_name("order_id", Value::String("o-1".into()));
    message.set_field_by_name("amount", Value::I32(-250));
    let mut dynamic_bytes = Vec::new();
    dynamic.serialize(&message, &mut dynamic_bytes).unwrap();
    assert_eq!(typed_bytes, dynamic_bytes);
    assert_eq!(typed.deserialize(&dynamic_bytes).unwrap(), refund);
    assert_eq!(dynamic.deserialize(&typed_bytes).unwrap(), message);
}

#[test]
fn protobuf_reader_version_2_reads_version_1_and_back() {
    let registry = MockRegistry::start();
    let client = client(&registry);
    let v1 = shop_proto::message(false, "shop.Order");
    let v2 = shop_proto::message(true, "shop.Order");
    let writer_v1 = DynamicProtobufSerde::value(client.clone(), "orders", v1.clone());
    let serde_v2 = DynamicProtobufSerde::value(client.clone(), "orders", v2.clone());
    let mut bytes = Vec::new();
    writer_v1.serialize(&order(&v1, 1), &mut bytes).unwrap();
    let read = serde_v2.deserialize(&bytes).unwrap();
    assert_eq!(read.descriptor(), v2);
    assert_eq!(read.get_field_by_name("note").unwrap().as_str(), Some(""));
    assert_eq!(read.get_field_by_name("id").unwrap().as_i64(), Some(1));

    let mut newer = order(&v2, 2);
    newer.set_field_by_name("note", Value::String("ring twice".into()));
    let mut bytes = Vec::new();
    serde_v2.serialize(&newer, &mut bytes).unwrap();
    assert_eq!(wire::read_header(&bytes).unwrap().0, 2);
    let old = writer_v1.deserialize(&bytes).unwrap();
    assert_eq!(old.descriptor(), v1);
    assert_eq!(old.get_field_by_name("id").unwrap().as_i64(), Some(2));
}

#[test]
fn protobuf_serializing_1000_records_registers_once() {
    let registry = MockRegistry::start();
    let descriptor = shop_proto::message(false, "shop.Order");
    let serde = DynamicProtobufSerde::value(client(&registry), "orders", descriptor.clone());
    let reader = DynamicProtobufSerde::value(client(&registry), "orders", descriptor.clone());
    // Ids from 1: a proto3 zero is not written, and reads back as an unset field.
    for i in 1..=1000 {
        let mut bytes = Vec::new();
        let message = order(&descriptor, i);
        serde.serialize(&message, &mut bytes).unwrap();
        assert_eq!(reader.deserialize(&bytes).unwrap(), message);
    }
    assert_eq!(registry.calls(Call::Register), 1);
    assert_eq!(registry.calls(Call::SchemaById), 1);
}

#[test]
fn protobuf_bad_input_is_a_typed_error() {
    let registry = MockRegistry::start();
    let descriptor = shop_proto::message(false, "shop.Order");
    let serde = DynamicProtobufSerde::value(client(&registry), "orders", descriptor.clone());
    let mut bytes = Vec::new();
    serde.serialize(&order(&descriptor, 1), &mut bytes).unwrap();
    // Message index 5 of a file with two messages.
    let err = serde.decode(&[0, 0, 0, 0, 1, 2, 10, 8, 1]).unwrap_err();
    assert!(matches!(err, Error::BadMessageIndex { .. }), "{err}");
    // The index array cut short.
    let err = serde.decode(&[0, 0, 0, 0, 1, 4, 0]).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    // A payload that is not a valid message (a length-delimited field running past the end).
    let err = serde
        .decode(&[0, 0, 0, 0, 1, 0, 0x12, 0x7f, b'a'])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaMismatch {
                direction: "reading",
                ..
            }
        ),
        "{err}"
    );
    // A message of another type.
    let refund = DynamicMessage::new(shop_proto::message(false, "shop.Refund"));
    let err = serde.encode(&refund, &mut Vec::new()).unwrap_err();
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
    // A prost serde refuses records of another message type.
    let typed = ProtobufSerde::<Refund>::value(
        client(&registry),
        "orders",
        shop_proto::message(false, "shop.Refund"),
    );
    let err = typed.decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("shop.Order"), "{err}");
    // An Avro schema id.
    let avro_id = registry.put("x-value", "AVRO", r#""string""#);
    let mut avro = Vec::new();
    wire::write_header(avro_id, &mut avro);
    avro.extend_from_slice(&[0, 2, b'a']);
    let err = serde.decode(&avro).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTypeMismatch {
                expected: "PROTOBUF",
                ..
            }
        ),
        "{err}"
    );
}
