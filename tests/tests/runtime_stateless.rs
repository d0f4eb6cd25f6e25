//! A stateless pipeline end to end through a broker: every kept input record reaches the output once.

use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::*;
use tests::{consume_until, produce, Broker};

fn run(broker: Broker) {
    broker.create_topic("numbers", 3);
    broker.create_topic("odd-doubled", 3);
    let b = StreamsBuilder::new();
    b.stream("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .filter(|_, v| v % 2 != 0)
        .map_values(|v| v * 2)
        .to("odd-doubled", Produced::new());
    let dir = tempfile::tempdir().unwrap();
    let streams =
        KafkaStreams::new(b.build().unwrap(), broker.config("stateless", dir.path())).unwrap();
    streams.start().unwrap();
    let input: Vec<(String, i64)> = (0..300).map(|i| (format!("k{}", i % 17), i)).collect();
    let raw: Vec<_> = input
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.to_be_bytes().to_vec())))
        .collect();
    produce(&broker.bootstrap(), "numbers", &raw);
    let mut expected: Vec<(String, i64)> = input
        .iter()
        .filter(|(_, v)| v % 2 != 0)
        .map(|(k, v)| (k.clone(), v * 2))
        .collect();
    let got = consume_until(
        &broker.bootstrap(),
        "odd-doubled",
        Duration::from_secs(60),
        |r| r.len() >= expected.len(),
    );
    let mut got: Vec<(String, i64)> = got
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                i64::from_be_bytes(v.unwrap().try_into().unwrap()),
            )
        })
        .collect();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(30)),
        "state {:?}",
        streams.state()
    );
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(streams.state(), State::NotRunning);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn stateless_pipeline_on_the_embedded_broker() {
    run(Broker::embedded());
}

#[test]
fn stateless_pipeline_on_tansu() {
    run(Broker::tansu());
}
