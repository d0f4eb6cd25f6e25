//! Schema Registry serdes in a topology (through the test driver and the mock registry): Avro in, JSON Schema
//! out, and a record with an unknown schema id dead-lettered with the registry's error in its headers.

use std::sync::Arc;

use schema_registry::mock::{Call, MockSchemaRegistry};
use serde::{Deserialize, Serialize};
use streams_dsl::schema_registry::avro::{AvroSchema, AvroSerde};
use streams_dsl::schema_registry::json::{JsonSchema, JsonSchemaSerde};
use streams_dsl::schema_registry::{RegistryConfig, SchemaRegistryClient};
use streams_dsl::streams_core::{DeadLetterQueue, RawRecord, DLQ_ERROR_HEADER};
use streams_dsl::*;

const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"item","type":"string"},{"name":"count","type":"int"},{"name":"price","type":"double"}]}"#;

const TOTAL: &str = r#"{"title":"Total","type":"object","required":["item","total"],
    "properties":{"item":{"type":"string"},"total":{"type":"number","minimum":0}}}"#;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    item: String,
    count: i32,
    price: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Total {
    item: String,
    total: f64,
}

#[test]
fn avro_in_json_schema_out_and_unknown_ids_dead_lettered() {
    let registry = MockSchemaRegistry::start().unwrap();
    let client = Arc::new(SchemaRegistryClient::new(RegistryConfig::new(registry.url())).unwrap());
    let orders =
        || AvroSerde::<Order>::value(client.clone(), "orders", AvroSchema::parse(ORDER).unwrap());
    let totals = || {
        JsonSchemaSerde::<Total>::value(
            client.clone(),
            "totals",
            Some(JsonSchema::parse(TOTAL).unwrap()),
        )
    };

    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Consumed::with(Serdes::string(), orders()))
        .map_values(|o: Order| Total {
            item: o.item,
            total: f64::from(o.count) * o.price,
        })
        .to("totals", Produced::with(Serdes::string(), totals()));
    let driver = TopologyTestDriver::builder(builder.build().unwrap())
        .deserialization_handler(DeadLetterQueue::new("orders-dlq"))
        .build()
        .unwrap();

    let input = driver.input_topic("orders", Serdes::string(), orders());
    for (i, item) in ["margherita", "marinara", "diavola"].iter().enumerate() {
        input
            .pipe_input(
                format!("k{i}"),
                Order {
                    item: item.to_string(),
                    count: i as i32 + 1,
                    price: 7.5,
                },
            )
            .unwrap();
    }
    // A record whose schema id the registry does not know.
    driver
        .pipe_raw(
            "orders",
            [(
                None,
                RawRecord {
                    key: Some(b"bad".to_vec()),
                    value: Some(vec![0, 0, 0, 0, 99, 1, 2, 3]),
                    timestamp: 0,
                    headers: Headers::new(),
                    offset: 7,
                },
            )],
        )
        .unwrap();

    let out = driver.output_topic("totals", Serdes::string(), totals());
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![
            (
                "k0".to_string(),
                Total {
                    item: "margherita".into(),
                    total: 7.5
                }
            ),
            (
                "k1".to_string(),
                Total {
                    item: "marinara".into(),
                    total: 15.0
                }
            ),
            (
                "k2".to_string(),
                Total {
                    item: "diavola".into(),
                    total: 22.5
                }
            ),
        ]
    );
    assert_eq!(driver.metrics().dead_lettered, 1);
    let dlq = driver.output_topic("orders-dlq", Serdes::string(), Serdes::bytes());
    let dead = dlq.read_records_to_vec().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "bad");
    let error = dead[0]
        .headers
        .last(DLQ_ERROR_HEADER)
        .and_then(|h| h.value.clone())
        .unwrap();
    let error = String::from_utf8(error).unwrap();
    assert!(error.contains("schema id 99 is unknown"), "{error}");
    // One registration per subject, whatever the number of records.
    assert_eq!(registry.calls(Call::Register), 2);
    assert_eq!(registry.subjects(), ["orders-value", "totals-value"]);
}
