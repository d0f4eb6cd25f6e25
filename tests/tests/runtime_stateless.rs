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

/// A topology slower than its input, with a 10-record partition buffer: the thread polls at most half a buffer
/// per round and processes what it queued before polling again, so memory stays bounded, and every record
/// still comes out once.
#[test]
fn a_small_partition_buffer_keeps_every_record() {
    let broker = Broker::embedded();
    broker.create_topic("slow-in", 2);
    broker.create_topic("slow-out", 2);
    let b = StreamsBuilder::new();
    b.stream("slow-in", Consumed::with(Serdes::string(), Serdes::i64()))
        .peek(|_, _| std::thread::sleep(Duration::from_micros(200)))
        .to("slow-out", Produced::new());
    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config("slow", dir.path());
    config.set("buffered.records.per.partition", "10").unwrap();
    let streams = KafkaStreams::new(b.build().unwrap(), (config, admin)).unwrap();
    streams.start().unwrap();
    let input: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..2000i64)
        .map(|i| {
            (
                format!("k{}", i % 13).into_bytes(),
                Some(i.to_be_bytes().to_vec()),
            )
        })
        .collect();
    produce(&broker.bootstrap(), "slow-in", &input);
    let got = consume_until(
        &broker.bootstrap(),
        "slow-out",
        Duration::from_secs(90),
        |r| r.len() >= input.len(),
    );
    assert!(streams.close(Duration::from_secs(30)));
    let mut got: Vec<_> = got.into_iter().collect();
    let mut expected = input.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

/// The async API: start and close awaited from a tokio runtime.
#[test]
fn async_start_and_close() {
    let broker = Broker::embedded();
    broker.create_topic("async-in", 1);
    let b = StreamsBuilder::new();
    b.stream(
        "async-in",
        Consumed::with(Serdes::string(), Serdes::string()),
    )
    .to("async-out", Produced::new());
    let dir = tempfile::tempdir().unwrap();
    let streams =
        KafkaStreams::new(b.build().unwrap(), broker.config("async", dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        streams.start_async().await.unwrap();
        assert!(matches!(
            streams.state(),
            State::Rebalancing | State::Running
        ));
        assert!(streams.close_async(Duration::from_secs(30)).await);
    });
    assert_eq!(streams.state(), State::NotRunning);
}
