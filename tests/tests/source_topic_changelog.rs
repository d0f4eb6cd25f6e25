//! A source table whose topic is its changelog (`TopologyOptimization::ReuseSourceTopics`, Kafka's
//! `reuse.ktable.source.topics`): no changelog topic is created, and a new machine restores the table from the
//! source topic up to the committed offset, so processing resumes exactly where the state stands. A downstream
//! regrouping count checks that: it subtracts each account's old region, which it could only get wrong if the
//! table were restored past the commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use streams_dsl::streams_core::runtime::{KafkaStreams, State, StateRestoreListener};
use streams_dsl::*;
use tests::{consume_until, produce, Broker};

/// Records restored, per store.
#[derive(Clone, Default)]
struct PerStore(Arc<Mutex<BTreeMap<String, u64>>>);

impl PerStore {
    fn of(&self, store: &str) -> u64 {
        self.0.lock().unwrap().get(store).copied().unwrap_or(0)
    }
}

impl StateRestoreListener for PerStore {
    fn on_restore_end(&self, store: &str, _partition: i32, restored: u64) {
        *self.0.lock().unwrap().entry(store.to_string()).or_default() += restored;
    }
}

const APP: &str = "accounts-app";

fn topology() -> Topology {
    let b = StreamsBuilder::new().with_optimization(TopologyOptimization::ReuseSourceTopics);
    b.table(
        "accounts",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("accounts-store"),
    )
    .group_by(
        |_account, region| (region.clone(), ()),
        Grouped::with(Serdes::string(), Serdes::unit()),
    )
    .count(Materialized::as_store("accounts-per-region"))
    .to_stream()
    .to(
        "accounts-per-region",
        Produced::with(Serdes::string(), OptionSerde::new(Serdes::i64())),
    );
    b.build().unwrap()
}

/// Account `i`'s region in round `round`: accounts move between regions from round to round, and the number
/// of regions grows with the rounds, so every round has different counts.
fn updates(round: usize, accounts: usize) -> Vec<(String, String)> {
    (0..accounts)
        .map(|i| (format!("acct-{i}"), format!("region-{}", i % (round + 3))))
        .collect()
}

/// Accounts per region after `updates`, computed directly.
fn reference(updates: &[(String, String)]) -> BTreeMap<String, i64> {
    let latest: BTreeMap<&String, &String> = updates.iter().map(|(a, r)| (a, r)).collect();
    let mut counts = BTreeMap::new();
    for region in latest.values() {
        *counts.entry((*region).clone()).or_insert(0) += 1;
    }
    counts
}

/// The latest count per region on the output topic, once it equals `expected` (or whatever it is at the timeout).
fn await_counts(broker: &Broker, expected: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let latest = |records: &[(Vec<u8>, Option<Vec<u8>>)]| -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for (k, v) in records {
            let k = String::from_utf8(k.clone()).unwrap();
            match v {
                Some(v) => m.insert(k, i64::from_be_bytes(v.as_slice().try_into().unwrap())),
                None => m.remove(&k),
            };
        }
        m.retain(|_, n| *n != 0);
        m
    };
    let records = consume_until(
        &broker.bootstrap(),
        "accounts-per-region",
        Duration::from_secs(60),
        |r| &latest(r) == expected,
    );
    latest(&records)
}

fn produce_updates(broker: &Broker, updates: &[(String, String)]) {
    let raw: Vec<_> = updates
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
        .collect();
    produce(&broker.bootstrap(), "accounts", &raw);
}

fn start(broker: &Broker, dir: &std::path::Path, restored: &PerStore) -> KafkaStreams {
    let streams = KafkaStreams::new(topology(), broker.config(APP, dir)).unwrap();
    streams.set_restore_listener(restored.clone());
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "state {:?}, errors {:?}",
        streams.state(),
        streams.errors()
    );
    streams
}

fn topics(broker: &Broker) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

fn restarts_from_the_source_topic(broker: Broker) {
    broker.create_topic("accounts", 3);
    broker.create_topic("accounts-per-region", 3);
    let restored = PerStore::default();

    // First run: every account in its first region.
    let dir = tempfile::tempdir().unwrap();
    let streams = start(&broker, dir.path(), &restored);
    let mut all = updates(0, 300);
    produce_updates(&broker, &all);
    assert_eq!(await_counts(&broker, &reference(&all)), reference(&all));
    assert!(streams.close(Duration::from_secs(30)));
    let names = topics(&broker);
    assert!(
        !names.iter().any(|t| t.contains("accounts-store")),
        "no changelog topic for the source table: {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|t| t == &format!("{APP}-accounts-per-region-changelog")),
        "the aggregate keeps its changelog: {names:?}"
    );

    // While no instance runs, every account moves twice: these updates are past the committed offset.
    let mut moves = updates(1, 300);
    moves.extend(updates(2, 300));
    produce_updates(&broker, &moves);

    // A new machine: the table comes back from its source topic, up to the commit, and the moves are processed
    // on top of it: each is subtracted from the region the account was in. (Restored to the topic's end, the
    // table would already hold the second move; the first would subtract that region and the account's first
    // region would never be subtracted.)
    let fresh = tempfile::tempdir().unwrap();
    let streams = start(&broker, fresh.path(), &restored);
    all.extend(moves);
    assert_eq!(await_counts(&broker, &reference(&all)), reference(&all));
    assert!(streams.close(Duration::from_secs(30)));
    // The table restored the 300 records of the first round (up to the commit), not the moves.
    assert_eq!(restored.of("accounts-store"), 300);

    // A clean restart on the same directory restores nothing: the source table's checkpoint is the commit.
    let before = restored.of("accounts-store");
    let streams = start(&broker, fresh.path(), &restored);
    assert_eq!(
        restored.of("accounts-store"),
        before,
        "a clean restart restores nothing"
    );
    let last = updates(3, 300);
    produce_updates(&broker, &last);
    all.extend(last);
    assert_eq!(await_counts(&broker, &reference(&all)), reference(&all));
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn a_source_table_restores_from_its_topic_up_to_the_commit_on_the_embedded_broker() {
    restarts_from_the_source_topic(Broker::embedded());
}
