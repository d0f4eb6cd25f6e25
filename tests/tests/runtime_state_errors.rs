//! Loud failures of state and internal topics: a checkpoint beyond the end of its changelog, and an existing
//! internal topic whose partition count differs from what the topology needs.

use std::time::{Duration, Instant};

use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::*;
use tests::{produce, Broker};

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("event-counts"));
    b.build().unwrap()
}

#[test]
fn a_checkpoint_ahead_of_the_changelog_stops_the_instance_with_a_clear_error() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..20)
        .map(|i| (format!("k{}", i % 3).into_bytes(), Some(b"e".to_vec())))
        .collect();
    produce(&broker.bootstrap(), "events", &records);
    let streams = KafkaStreams::new(topology(), broker.config("ahead", dir.path())).unwrap();
    streams.start().unwrap();
    let start = Instant::now();
    while streams.metrics().processed < 20 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(streams.close(Duration::from_secs(30)));
    let checkpoint = dir.path().join("ahead/0_0/.checkpoint");
    let text = std::fs::read_to_string(&checkpoint).expect("a clean close writes a checkpoint");
    assert!(
        text.starts_with("ahead-event-counts-changelog 0 "),
        "{text}"
    );
    std::fs::write(&checkpoint, "ahead-event-counts-changelog 0 100000\n").unwrap();

    let streams = KafkaStreams::new(topology(), broker.config("ahead", dir.path())).unwrap();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Error, Duration::from_secs(60)),
        "state {:?}",
        streams.state()
    );
    let errors = streams.errors().join("\n");
    assert!(
        errors.contains("checkpoint says offset 100000, beyond the end"),
        "{errors}"
    );
    assert!(
        errors.contains("ahead-event-counts-changelog-0"),
        "{errors}"
    );
}

#[test]
fn an_internal_topic_with_the_wrong_partition_count_is_rejected_at_start() {
    let broker = Broker::embedded();
    broker.create_topic("events", 2);
    broker.create_topic("mismatch-event-counts-changelog", 5);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("mismatch", dir.path())).unwrap();
    let err = streams.start().unwrap_err().to_string();
    assert!(
        err.contains("'mismatch-event-counts-changelog' has 5 partitions but the topology needs 2"),
        "{err}"
    );
}

#[test]
fn a_missing_source_topic_is_rejected_at_start() {
    let broker = Broker::tansu();
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("missing", dir.path())).unwrap();
    let err = streams.start().unwrap_err().to_string();
    assert!(
        err.contains("source topic 'events' does not exist"),
        "{err}"
    );
}

#[test]
fn a_corrupt_store_is_wiped_and_restored_from_its_changelog() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..30)
        .map(|i| (format!("k{}", i % 3).into_bytes(), Some(b"e".to_vec())))
        .collect();
    produce(&broker.bootstrap(), "events", &records);
    let streams = KafkaStreams::new(topology(), broker.config("corrupt", dir.path())).unwrap();
    streams.start().unwrap();
    let start = Instant::now();
    while streams.metrics().processed < 30 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(streams.close(Duration::from_secs(30)));
    // Damage the RocksDB store so that it cannot be opened.
    std::fs::write(
        dir.path().join("corrupt/0_0/event-counts/CURRENT"),
        b"garbage\n",
    )
    .unwrap();

    let restored = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let streams = KafkaStreams::new(topology(), broker.config("corrupt", dir.path())).unwrap();
    streams.set_restore_listener(tests::CountingRestores(restored.clone()));
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?} {:?}",
        streams.state(),
        streams.errors()
    );
    assert!(
        restored.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "restored from the changelog"
    );
    let counts = streams
        .store::<String, i64>("event-counts")
        .unwrap()
        .all()
        .unwrap();
    assert_eq!(
        counts,
        vec![
            ("k0".to_string(), 10),
            ("k1".to_string(), 10),
            ("k2".to_string(), 10)
        ]
    );
    assert!(streams.close(Duration::from_secs(30)));
}
