//! The US-shareholders query of the design document, checked against a direct evaluation of
//! `select distinct(client) from open_positions where exchange = 'NASDAQ'` after every step.

use std::collections::{BTreeMap, BTreeSet};

use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use streams_dsl::{Serdes, StoreKind, TopologyTestDriver};

/// The query evaluated directly on the set of open positions.
fn reference(open: &BTreeMap<String, Position>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in open.values().filter(|p| p.exchange == "NASDAQ") {
        out.entry(p.client.clone())
            .or_default()
            .insert(p.id.clone());
    }
    out
}

fn run(kind: StoreKind, partitions: i32) {
    let driver = TopologyTestDriver::builder(topology(kind).unwrap())
        .default_partitions(partitions)
        .build()
        .unwrap();
    let input = driver.input_topic(
        POSITIONS_TOPIC,
        Serdes::string(),
        Serdes::option(Serdes::json::<Position>()),
    );
    let store = driver
        .key_value_store::<String, BTreeSet<String>>(STORE)
        .unwrap();
    let mut open = BTreeMap::new();
    let state = || store.all().unwrap().into_iter().collect::<BTreeMap<_, _>>();

    for p in sample_positions() {
        open.insert(p.id.clone(), p.clone());
        input.pipe_input(p.id.clone(), Some(p)).unwrap();
        assert_eq!(state(), reference(&open));
    }
    let after_samples = state();
    assert_eq!(
        after_samples.len(),
        2,
        "client1 and client2 hold NASDAQ shares: {after_samples:?}"
    );

    // Position 4 is closed: client2 no longer holds US shares.
    open.remove("4");
    input.pipe_input("4".to_string(), None).unwrap();
    assert_eq!(state(), reference(&open));
    assert!(!state().contains_key("client2"));

    // Position 3 moves to LON: client1 keeps only position 1.
    let moved = Position::new("3", "client1", "FB", 33, "LON");
    open.insert("3".into(), moved.clone());
    input.pipe_input("3".to_string(), Some(moved)).unwrap();
    assert_eq!(state(), reference(&open));
    assert_eq!(state().get("client1").map(|s| s.len()), Some(1));

    // Closing an already closed position changes nothing.
    input.pipe_input("4".to_string(), None).unwrap();
    assert_eq!(state(), reference(&open));
}

#[test]
fn us_shareholders_in_memory_one_partition() {
    run(StoreKind::InMemory, 1);
}

#[test]
fn us_shareholders_in_memory_three_partitions() {
    run(StoreKind::InMemory, 3);
}

#[test]
fn us_shareholders_rocksdb_four_partitions() {
    run(StoreKind::RocksDb, 4);
}
