//! Dead-letter records (KIP-1034) on the embedded broker: with `errors.dead.letter.queue.topic.name` set and the
//! three built-in handlers on `continue`, a record that cannot be deserialized, one whose processing panics and
//! one whose result the producer refuses (too large) each land on the dead-letter topic as the source record's
//! bytes, with Kafka Streams' `__streams.errors.*` headers; every other record is processed.
//! The scenario follows Kafka Streams' `DeadLetterQueueIntegrationTest`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::*;
use tests::{consume_until, consume_with_headers, produce, Broker};

/// What the source record makes the application do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    /// Not UTF-8: the string serde refuses it.
    Undeserializable,
    /// The map closure panics on it.
    Panics,
    /// The map closure makes a value larger than the producer's `message.max.bytes`.
    TooLarge,
}

fn input() -> Vec<(String, Vec<u8>, Kind)> {
    (0..40)
        .map(|i| {
            let key = format!("order{i}");
            match i % 10 {
                3 => (key, vec![0xff, 0xfe, 0x00], Kind::Undeserializable),
                5 => (key, b"boom".to_vec(), Kind::Panics),
                8 => (key, b"big".to_vec(), Kind::TooLarge),
                _ => (key, format!("item{i}").into_bytes(), Kind::Good),
            }
        })
        .collect()
}

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v: String| match v.as_str() {
            "boom" => panic!("cannot process order value 'boom'"),
            "big" => "x".repeat(20_000),
            _ => v.to_uppercase(),
        })
        .to("orders-out", Produced::new());
    b.build().unwrap()
}

#[test]
fn dead_letter_records_land_on_the_topic_with_kafka_headers() {
    let broker = Broker::embedded();
    broker.create_topic("orders", 1);
    broker.create_topic("orders-out", 1);
    broker.create_topic("orders-dlq", 1);
    let records = input();
    let raw: Vec<(Vec<u8>, Option<Vec<u8>>)> = records
        .iter()
        .map(|(k, v, _)| (k.clone().into_bytes(), Some(v.clone())))
        .collect();
    produce(&broker.bootstrap(), "orders", &raw);

    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config("dlq-app", dir.path());
    config
        .set("default.deserialization.exception.handler", "continue")
        .unwrap();
    config
        .set("processing.exception.handler", "continue")
        .unwrap();
    config
        .set("default.production.exception.handler", "continue")
        .unwrap();
    config
        .set("errors.dead.letter.queue.topic.name", "orders-dlq")
        .unwrap();
    config.set("producer.message.max.bytes", "10000").unwrap();
    let streams = KafkaStreams::new(topology(), (config, admin)).unwrap();
    streams.start().unwrap();

    let bad = records.iter().filter(|(_, _, k)| *k != Kind::Good).count();
    let start = Instant::now();
    while streams.metrics().dead_lettered < bad as u64 && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = streams.metrics();
    assert_eq!(m.dead_lettered, bad as u64, "{m:?}");
    assert!(streams.close(Duration::from_secs(30)));

    // Every good record went through, and only those.
    let good: BTreeMap<String, String> = records
        .iter()
        .filter(|(_, _, k)| *k == Kind::Good)
        .map(|(k, v, _)| {
            (
                k.clone(),
                String::from_utf8(v.clone()).unwrap().to_uppercase(),
            )
        })
        .collect();
    let out: BTreeMap<String, String> = consume_until(
        &broker.bootstrap(),
        "orders-out",
        Duration::from_secs(30),
        |r| r.len() >= good.len(),
    )
    .into_iter()
    .map(|(k, v)| {
        (
            String::from_utf8(k).unwrap(),
            String::from_utf8(v.unwrap()).unwrap(),
        )
    })
    .collect();
    assert_eq!(out, good);

    // The dead-letter topic holds exactly the bad source records, as read, with the error headers.
    let dlq = consume_with_headers(
        &broker.bootstrap(),
        "orders-dlq",
        Duration::from_secs(10),
        bad + 1,
    );
    assert_eq!(dlq.len(), bad, "nothing else is dead-lettered");
    let expected: BTreeMap<Vec<u8>, (usize, &Vec<u8>, Kind)> = records
        .iter()
        .enumerate()
        .filter(|(_, (_, _, k))| *k != Kind::Good)
        .map(|(offset, (key, value, kind))| (key.clone().into_bytes(), (offset, value, *kind)))
        .collect();
    for (key, value, headers) in &dlq {
        let (offset, source_value, kind) = expected[key];
        assert_eq!(
            value.as_ref(),
            Some(source_value),
            "the source bytes, as read"
        );
        let h = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                .unwrap_or_else(|| panic!("header {name} missing: {headers:?}"))
        };
        let exception = match kind {
            Kind::Undeserializable => "streams_core::StreamsError::Deserialization",
            Kind::Panics => "streams_core::StreamsError::Panic",
            Kind::TooLarge => "rdkafka::error::KafkaError",
            Kind::Good => unreachable!(),
        };
        assert_eq!(h("__streams.errors.exception"), exception);
        assert_eq!(h("__streams.errors.topic"), "orders");
        assert_eq!(h("__streams.errors.partition"), "0");
        assert_eq!(h("__streams.errors.offset"), offset.to_string());
        let message = h("__streams.errors.message");
        let expected_text = match kind {
            Kind::Undeserializable => "cannot deserialize the value of the record at orders-0@",
            Kind::Panics => "cannot process order value 'boom'",
            Kind::TooLarge => "cannot send to topic 'orders-out'",
            Kind::Good => unreachable!(),
        };
        assert!(message.contains(expected_text), "{kind:?}: {message}");
        assert!(h("__streams.errors.stacktrace").starts_with(&message));
    }
}

/// Under the default `fail` processing handler, the failing record is dead-lettered (delivered before the thread
/// stops), and the instance ends in `Error`, as Kafka Streams' `LogAndFailProcessingExceptionHandler` does.
#[test]
fn the_fail_handler_dead_letters_the_record_then_stops() {
    let broker = Broker::embedded();
    broker.create_topic("orders", 1);
    broker.create_topic("orders-out", 1);
    broker.create_topic("orders-dlq", 1);
    let raw: Vec<(Vec<u8>, Option<Vec<u8>>)> = ["a", "b", "boom", "c"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("order{i}").into_bytes(),
                Some(v.as_bytes().to_vec()),
            )
        })
        .collect();
    produce(&broker.bootstrap(), "orders", &raw);
    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config("dlq-fail-app", dir.path());
    config
        .set("errors.dead.letter.queue.topic.name", "orders-dlq")
        .unwrap();
    let streams = KafkaStreams::new(topology(), (config, admin)).unwrap();
    streams.start().unwrap();
    let start = Instant::now();
    while streams.state() != streams_dsl::streams_core::runtime::State::Error
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        streams.state(),
        streams_dsl::streams_core::runtime::State::Error
    );
    let errors = streams.errors().join("\n");
    assert!(
        errors.contains("cannot process order value 'boom'")
            && errors.contains("at processor 'KSTREAM-MAP"),
        "{errors}"
    );
    let dlq = consume_with_headers(
        &broker.bootstrap(),
        "orders-dlq",
        Duration::from_secs(10),
        2,
    );
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let (key, value, headers) = &dlq[0];
    assert_eq!(
        (key.as_slice(), value.as_deref()),
        (&b"order2"[..], Some(&b"boom"[..]))
    );
    let h = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(
        h("__streams.errors.exception").as_deref(),
        Some("streams_core::StreamsError::Panic")
    );
    assert_eq!(h("__streams.errors.offset").as_deref(), Some("2"));
}
