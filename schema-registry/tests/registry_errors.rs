//! The registry client's typed errors and caches: unknown schema ids, a registry that is down, incompatible
//! schemas, refused credentials (never shown), and requests saved by the caches.

mod common;

use std::sync::Arc;

use common::{Call, MockRegistry};
use schema_registry::avro::{AvroSchema, GenericAvroSerde};
use schema_registry::{
    Error, RegistryConfig, Schema, SchemaRegistryClient, SchemaType, SerdeConfig,
};
use state_store::serde::Serde;

const PASSWORD: &str = "pa55-w0rd-XYZ";

fn string_schema() -> Option<AvroSchema> {
    Some(AvroSchema::parse(r#"{"type":"string"}"#).unwrap())
}

#[test]
fn unknown_schema_id_is_a_typed_error() {
    let registry = MockRegistry::start();
    let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap());
    let err = client.schema_by_id(99).unwrap_err();
    assert!(
        matches!(err, Error::UnknownSchemaId { id: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&registry.url), "{err}");

    let serde = GenericAvroSerde::value(client, "t", None);
    let err = serde.decode(&[0, 0, 0, 0, 42, 2, b'a']).unwrap_err();
    assert!(
        matches!(err, Error::UnknownSchemaId { id: 42, .. }),
        "{err}"
    );
    let err = serde.deserialize(&[0, 0, 0, 0, 42, 2, b'a']).unwrap_err();
    assert!(err.message.contains("schema id 42 is unknown"), "{err}");
}

#[test]
fn registry_down_is_unreachable_and_names_the_url_without_credentials() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = RegistryConfig::from_pairs([(
        "schema.registry.url",
        format!("http://svc:{PASSWORD}@127.0.0.1:{port}"),
    )])
    .unwrap();
    let client = Arc::new(SchemaRegistryClient::new(config).unwrap());
    let err = client.schema_by_id(1).unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { ref url, .. } if url == &format!("http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_retriable());
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    assert!(!format!("{err:?}").contains(PASSWORD));
    assert!(!format!("{client:?}").contains(PASSWORD));

    let serde = GenericAvroSerde::value(client, "t", string_schema());
    let err = serde
        .serialize(
            &apache_avro::types::Value::String("x".into()),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(err.message.contains("unreachable"), "{err}");
    assert!(!err.message.contains(PASSWORD), "{err}");
}

#[test]
fn second_url_is_tried_when_the_first_is_down() {
    let registry = MockRegistry::start();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = SchemaRegistryClient::new(RegistryConfig::new(&format!(
        "http://127.0.0.1:{port},{}",
        registry.url
    )))
    .unwrap();
    let id = client
        .register(
            "t-value",
            &Schema::new(SchemaType::Avro, r#""string""#),
            false,
        )
        .unwrap();
    assert_eq!(id, 1);
}

#[test]
fn incompatible_schema_on_auto_register_is_a_typed_error() {
    let registry = MockRegistry::start();
    registry.put("orders-value", "AVRO", r#"{"type":"string"}"#);
    registry.make_incompatible("orders-value");
    let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap());
    let serde = GenericAvroSerde::value(
        client,
        "orders",
        Some(AvroSchema::parse(r#"{"type":"long"}"#).unwrap()),
    );
    let err = serde
        .encode(&apache_avro::types::Value::Long(1), &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, Error::IncompatibleSchema { ref subject, .. } if subject == "orders-value"),
        "{err}"
    );
    assert!(!err.is_retriable());
}

#[test]
fn wrong_password_is_unauthorized_and_never_shown() {
    let registry = MockRegistry::start_with_auth("svc", "right-password");
    let user_info = format!("svc:{PASSWORD}");
    let config = RegistryConfig::from_pairs([
        ("schema.registry.url", registry.url.as_str()),
        ("basic.auth.user.info", user_info.as_str()),
    ])
    .unwrap();
    assert!(!format!("{config:?}").contains(PASSWORD));
    let client = Arc::new(SchemaRegistryClient::new(config).unwrap());
    let err = client.schema_by_id(1).unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains(PASSWORD));
    assert!(!format!("{err:?}").contains(PASSWORD));
    let serde = GenericAvroSerde::value(client, "orders", string_schema());
    let err = serde
        .serialize(
            &apache_avro::types::Value::String("x".into()),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(err.message.contains("HTTP 401"), "{err}");
    assert!(!err.message.contains(PASSWORD), "{err}");
    assert_eq!(registry.calls(Call::Register), 0);
    assert_eq!(registry.calls(Call::Unauthorized), 2);
}

#[test]
fn right_password_is_accepted() {
    let registry = MockRegistry::start_with_auth("svc", PASSWORD);
    let client = Arc::new(
        SchemaRegistryClient::new(
            RegistryConfig::new(&registry.url).with_basic_auth("svc", PASSWORD),
        )
        .unwrap(),
    );
    let serde = GenericAvroSerde::value(client.clone(), "orders", string_schema());
    let mut bytes = Vec::new();
    serde
        .serialize(&apache_avro::types::Value::String("x".into()), &mut bytes)
        .unwrap();
    assert_eq!(
        serde.deserialize(&bytes).unwrap(),
        apache_avro::types::Value::String("x".into())
    );
    assert_eq!(client.subjects().unwrap(), ["orders-value"]);
}

#[test]
fn client_caches_ids_schemas_and_versions() {
    let registry = MockRegistry::start();
    let client = SchemaRegistryClient::new(RegistryConfig::new(&registry.url)).unwrap();
    let schema = Schema::new(SchemaType::Avro, r#"{"type":"string"}"#);
    for _ in 0..10 {
        assert_eq!(client.register("a-value", &schema, false).unwrap(), 1);
        assert_eq!(client.schema_by_id(1).unwrap().schema, schema.schema);
        assert_eq!(client.version("a-value", 1).unwrap().id, 1);
        assert_eq!(client.latest_version("a-value").unwrap().version, Some(1));
    }
    // Registering put the schema in the id cache: no GET /schemas/ids at all.
    assert_eq!(registry.calls(Call::Register), 1);
    assert_eq!(registry.calls(Call::SchemaById), 0);
    assert_eq!(registry.calls(Call::Version), 2);
    assert_eq!(client.requests_sent(), 3);
    // The same schema under another subject keeps its id.
    assert_eq!(client.register("b-value", &schema, false).unwrap(), 1);
    // Unknown versions and subjects are typed.
    let err = client.version("a-value", 7).unwrap_err();
    assert!(matches!(err, Error::SchemaNotFound { .. }), "{err}");
    let err = client.latest_version("nope").unwrap_err();
    assert!(matches!(err, Error::SchemaNotFound { .. }), "{err}");
}

#[test]
fn latest_version_cache_expires_after_its_ttl() {
    let registry = MockRegistry::start();
    registry.put("a-value", "AVRO", r#"{"type":"string"}"#);
    let mut config = RegistryConfig::new(&registry.url);
    config.set("latest.cache.ttl.sec", "0").unwrap();
    let client = SchemaRegistryClient::new(config).unwrap();
    assert_eq!(client.latest_version("a-value").unwrap().id, 1);
    registry.put("a-value", "AVRO", r#"{"type":"long"}"#);
    assert_eq!(client.latest_version("a-value").unwrap().id, 2);
    assert_eq!(registry.calls(Call::Version), 2);
}

#[test]
fn configuration_errors_name_the_key() {
    let err = SchemaRegistryClient::new(RegistryConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Config { ref key, .. } if key == "schema.registry.url"));
    let mut config = RegistryConfig::new("http://127.0.0.1:1");
    config
        .set("ssl.ca.location", "/nonexistent/ca.pem")
        .unwrap();
    let err = SchemaRegistryClient::new(config).unwrap_err();
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "ssl.ca.location"),
        "{err}"
    );
    let err = SerdeConfig::from_pairs([("use.latest.version", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("use.latest.version"));
}
