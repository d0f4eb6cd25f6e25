//! Records that cannot be deserialized, under each handler: fail (the default), log and continue, dead-letter.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::streams_core::{DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_TOPIC_HEADER};
use streams_dsl::*;
use tests::{consume_until, consume_with_headers, produce, Broker};

const GOOD: usize = 20;

/// 20 good records (8-byte values) and 5 bad ones (3-byte values) interleaved; returns the bad keys.
fn input(broker: &Broker) -> BTreeSet<String> {
    let mut records = Vec::new();
    let mut bad = BTreeSet::new();
    for i in 0..GOOD as i64 {
        records.push((
            format!("good{i}").into_bytes(),
            Some(i.to_be_bytes().to_vec()),
        ));
        if i % 4 == 0 {
            bad.insert(format!("bad{i}"));
            records.push((format!("bad{i}").into_bytes(), Some(vec![1, 2, 3])));
        }
    }
    produce(&broker.bootstrap(), "amounts", &records);
    bad
}

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("amounts", Consumed::with(Serdes::string(), Serdes::i64()))
        .map_values(|v| v + 1)
        .to("amounts-out", Produced::new());
    b.build().unwrap()
}

fn start(broker: &Broker, app: &str, handler: &str, dir: &std::path::Path) -> KafkaStreams {
    let (mut config, admin) = broker.config(app, dir);
    config
        .set("default.deserialization.exception.handler", handler)
        .unwrap();
    let streams = KafkaStreams::new(topology(), (config, admin)).unwrap();
    streams.start().unwrap();
    streams
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn handlers(broker: Broker) {
    broker.create_topic("amounts", 2);
    broker.create_topic("amounts-out", 2);
    broker.create_topic("amounts-dlq", 1);
    let bad = input(&broker);
    let dir = tempfile::tempdir().unwrap();

    // fail: the thread stops on the first bad record and the instance ends in Error, naming the record.
    let streams = start(&broker, "bad-fail", "fail", dir.path());
    assert!(
        wait_until(Duration::from_secs(60), || streams.state() == State::Error),
        "state {:?}",
        streams.state()
    );
    let errors = streams.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("cannot deserialize the value of the record at amounts-")),
        "{errors:?}"
    );

    // continue: every good record comes out, the bad ones are counted as skipped.
    let streams = start(&broker, "bad-continue", "continue", dir.path());
    assert!(
        wait_until(Duration::from_secs(60), || streams.metrics().processed
            as usize
            == GOOD
            && streams.metrics().skipped_records as usize == bad.len()),
        "{:?}",
        streams.metrics()
    );
    assert!(streams.close(Duration::from_secs(30)));
    let out = consume_until(
        &broker.bootstrap(),
        "amounts-out",
        Duration::from_secs(30),
        |r| r.len() >= GOOD,
    );
    let keys: BTreeSet<String> = out
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    assert_eq!(keys, (0..GOOD).map(|i| format!("good{i}")).collect());

    // dead-letter: the bad records land on the dead-letter topic with the error and their origin in headers.
    let streams = start(&broker, "bad-dlq", "dead-letter:amounts-dlq", dir.path());
    assert!(
        wait_until(Duration::from_secs(60), || streams.metrics().dead_lettered
            as usize
            == bad.len()),
        "{:?}",
        streams.metrics()
    );
    assert!(streams.close(Duration::from_secs(30)));
    let dlq = consume_with_headers(
        &broker.bootstrap(),
        "amounts-dlq",
        Duration::from_secs(30),
        bad.len(),
    );
    let dlq_keys: BTreeSet<String> = dlq
        .iter()
        .map(|(k, _, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    assert_eq!(dlq_keys, bad);
    for (_, value, headers) in &dlq {
        assert_eq!(
            value.as_deref(),
            Some(&[1u8, 2, 3][..]),
            "the raw value is kept"
        );
        let h = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(h(DLQ_TOPIC_HEADER).as_deref(), Some("amounts"));
        assert!(h(DLQ_ERROR_HEADER)
            .unwrap()
            .contains("expected 8 bytes, got 3"));
        assert!(h(DLQ_OFFSET_HEADER).unwrap().parse::<i64>().is_ok());
    }
}

#[test]
fn bad_records_under_each_handler_on_the_embedded_broker() {
    handlers(Broker::embedded());
}

#[test]
fn bad_records_under_each_handler_on_tansu() {
    handlers(Broker::tansu());
}
