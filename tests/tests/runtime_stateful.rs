//! Stateful applications through a broker: group_by + count through a repartition topic, the US-shareholders
//! query through real topics, and clean restarts that restore state from the checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use examples::us_shareholders::{self, Position};
use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::*;
use tests::{consume_until, produce, Broker};

fn word_counts() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by(|_user, page| page.clone(), Grouped::as_name("by-page"))
        .count(Materialized::as_store("page-counts"))
        .to_stream()
        .to("page-counts", Produced::new());
    b.build().unwrap()
}

fn clicks(from: usize, n: usize) -> Vec<(String, String)> {
    (from..from + n)
        .map(|i| {
            (
                format!("user{}", i % 7),
                format!("/page/{}", (i * 7919) % 23),
            )
        })
        .collect()
}

/// Latest count per page on the output topic, once it equals `expected` (or whatever it is after the timeout).
fn await_counts(broker: &Broker, expected: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let latest = |records: &[(Vec<u8>, Option<Vec<u8>>)]| -> BTreeMap<String, i64> {
        records
            .iter()
            .filter_map(|(k, v)| {
                let v = v.as_ref()?;
                Some((
                    String::from_utf8(k.clone()).ok()?,
                    i64::from_be_bytes(v.as_slice().try_into().ok()?),
                ))
            })
            .collect()
    };
    let records = consume_until(
        &broker.bootstrap(),
        "page-counts",
        Duration::from_secs(60),
        |r| &latest(r) == expected,
    );
    latest(&records)
}

fn produce_clicks(broker: &Broker, clicks: &[(String, String)]) {
    let raw: Vec<_> = clicks
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
        .collect();
    produce(&broker.bootstrap(), "clicks", &raw);
}

fn reference(clicks: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (_, page) in clicks {
        *m.entry(page.clone()).or_default() += 1;
    }
    m
}

fn start(broker: &Broker, dir: &std::path::Path, restored: &Arc<AtomicU64>) -> KafkaStreams {
    let streams = KafkaStreams::new(word_counts(), broker.config("page-views", dir)).unwrap();
    streams.set_restore_listener(tests::CountingRestores(restored.clone()));
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "state {:?}, errors {:?}",
        streams.state(),
        streams.errors()
    );
    streams
}

fn group_by_count_and_restarts(broker: Broker) {
    broker.create_topic("clicks", 3);
    broker.create_topic("page-counts", 3);
    let dir = tempfile::tempdir().unwrap();
    let restored = Arc::new(AtomicU64::new(0));

    // First run.
    let streams = start(&broker, dir.path(), &restored);
    let first = clicks(0, 400);
    produce_clicks(&broker, &first);
    assert_eq!(await_counts(&broker, &reference(&first)), reference(&first));
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(
        restored.load(Ordering::Relaxed),
        0,
        "nothing to restore on a first run"
    );

    // Clean restart on the same state directory: the checkpoint covers the whole changelog.
    let streams = start(&broker, dir.path(), &restored);
    assert_eq!(
        restored.load(Ordering::Relaxed),
        0,
        "a clean restart restores nothing"
    );
    let second = clicks(400, 300);
    produce_clicks(&broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(await_counts(&broker, &reference(&all)), reference(&all));
    assert!(streams.close(Duration::from_secs(30)));

    // A new machine (empty state directory): the state comes back from the changelog.
    let fresh = tempfile::tempdir().unwrap();
    let streams = start(&broker, fresh.path(), &restored);
    let restored_now = restored.load(Ordering::Relaxed);
    assert!(
        restored_now > 0,
        "an empty state directory restores from the changelog"
    );
    assert!(
        restored_now <= all.len() as u64,
        "restored {restored_now} records for {} inputs",
        all.len()
    );
    let third = clicks(700, 100);
    produce_clicks(&broker, &third);
    let all: Vec<_> = all.iter().chain(&third).cloned().collect();
    assert_eq!(await_counts(&broker, &reference(&all)), reference(&all));
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn group_by_count_and_restarts_on_the_embedded_broker() {
    group_by_count_and_restarts(Broker::embedded());
}

#[test]
fn group_by_count_and_restarts_on_tansu() {
    group_by_count_and_restarts(Broker::tansu());
}

fn us_shareholders_through_topics(broker: Broker) {
    broker.create_topic(us_shareholders::POSITIONS_TOPIC, 2);
    let out = "us-share-holders-out";
    broker.create_topic(out, 2);
    // The example's topology, with its table's changes written out to check them from outside.
    let topology = us_shareholders::topology_with_changes(StoreKind::RocksDb, Some(out)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config("us-shareholders", dir.path());
    // Two threads share the tasks of the two sub-topologies.
    config.set("num.stream.threads", "2").unwrap();
    let streams = KafkaStreams::new(topology, (config, admin)).unwrap();
    streams.start().unwrap();

    let json = |p: &Position| Some(serde_json::to_vec(p).unwrap());
    let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = us_shareholders::sample_positions()
        .iter()
        .map(|p| (p.id.as_bytes().to_vec(), json(p)))
        .collect();
    records.push((b"4".to_vec(), None));
    let moved = Position::new("3", "client1", "FB", 33, "LON");
    records.push((b"3".to_vec(), json(&moved)));
    produce(
        &broker.bootstrap(),
        us_shareholders::POSITIONS_TOPIC,
        &records,
    );

    // Reference: the query over the final open positions.
    let mut open: BTreeMap<String, Position> = BTreeMap::new();
    for p in us_shareholders::sample_positions() {
        open.insert(p.id.clone(), p);
    }
    open.remove("4");
    open.insert("3".into(), moved);
    let mut expected: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for p in open.values().filter(|p| p.exchange == "NASDAQ") {
        expected
            .entry(p.client.clone())
            .or_insert_with(|| Some(BTreeSet::new()))
            .as_mut()
            .unwrap()
            .insert(p.id.clone());
    }
    // client2's last NASDAQ position closed: the table has no row for it. Whether a tombstone was written
    // depends on whether its row went downstream before (the record cache forwards neither a row created and
    // deleted between two commits nor its deletion, as Kafka Streams' cache does), so the output is compared as
    // a table: a tombstone removes the row.
    let latest = |r: &[(Vec<u8>, Option<Vec<u8>>)]| -> BTreeMap<String, Option<BTreeSet<String>>> {
        let mut table = BTreeMap::new();
        for (k, v) in r {
            let k = String::from_utf8(k.clone()).unwrap();
            match v {
                Some(v) => {
                    table.insert(k, Some(serde_json::from_slice(v).unwrap()));
                }
                None => {
                    table.remove(&k);
                }
            }
        }
        table
    };
    let got = consume_until(&broker.bootstrap(), out, Duration::from_secs(60), |r| {
        latest(r) == expected
    });
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(latest(&got), expected);
}

#[test]
fn us_shareholders_through_topics_on_the_embedded_broker() {
    us_shareholders_through_topics(Broker::embedded());
}

#[test]
fn us_shareholders_through_topics_on_tansu() {
    us_shareholders_through_topics(Broker::tansu());
}
