//! Global tables through a broker: the global store is restored before any stream record is processed, follows
//! its topic while the application runs, and after a restart resumes from its checkpoint (RocksDB) or re-reads
//! its topic (in memory). Every join result is checked against a plain HashMap replay of the same seeded input.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, State};
use streams_dsl::*;
use tests::{consume_until, produce, wait_until, Broker, CountingRestores};

const RATES: &str = "rates";
const ORDERS: &str = "orders";
const OUT: &str = "orders-with-rates";
const STORE: &str = "rates-store";

/// Orders (order id -> rate key) left-joined with the global table of rates; the output value is
/// `<rate key>=<rate or "none">`. The two topics have different partition counts: no co-partitioning.
fn topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    let rates = b.global_table::<String, String>(
        RATES,
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store(STORE).with_store_kind(kind),
    );
    b.stream::<String, String>(ORDERS, Consumed::with(Serdes::string(), Serdes::string()))
        .left_join_global(
            &rates,
            |_order, rate_key| rate_key.clone(),
            |rate_key, rate| format!("{rate_key}={}", rate.map_or("none", String::as_str)),
        )
        .to(OUT, Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

/// A seeded generator (an LCG), so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Produces `n` rate updates over `keys` keys (about one in six a tombstone) and applies them to `reference`.
fn produce_rates(
    broker: &Broker,
    rng: &mut Rng,
    n: usize,
    keys: u64,
    reference: &mut HashMap<String, String>,
) {
    let mut raw = Vec::with_capacity(n);
    for _ in 0..n {
        let k = format!("r{}", rng.next() % keys);
        let v = (!rng.next().is_multiple_of(6)).then(|| format!("{}", rng.next() % 10_000));
        match &v {
            Some(v) => reference.insert(k.clone(), v.clone()),
            None => reference.remove(&k),
        };
        raw.push((k.into_bytes(), v.map(String::into_bytes)));
    }
    // Records of one key land in one partition (by key), so the last one produced is the one that stays.
    produce(&broker.bootstrap(), RATES, &raw);
}

/// Produces orders `from..from + n`, each looking up a random rate key (some never exist); returns the expected
/// output per order id under `reference`.
fn produce_orders(
    broker: &Broker,
    rng: &mut Rng,
    from: usize,
    n: usize,
    keys: u64,
    reference: &HashMap<String, String>,
) -> BTreeMap<String, String> {
    let mut raw = Vec::with_capacity(n);
    let mut expected = BTreeMap::new();
    for i in from..from + n {
        let order = format!("o{i:05}");
        let key = format!("r{}", rng.next() % (keys + 10));
        let rate = reference.get(&key).map_or("none", String::as_str);
        expected.insert(order.clone(), format!("{key}={rate}"));
        raw.push((order.into_bytes(), Some(key.into_bytes())));
    }
    produce(&broker.bootstrap(), ORDERS, &raw);
    expected
}

/// The output so far as order id -> value, once it holds `expected` (or whatever it is after the timeout).
fn await_output(broker: &Broker, expected: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let decode = |records: &[(Vec<u8>, Option<Vec<u8>>)]| -> BTreeMap<String, String> {
        records
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8(k.clone()).ok()?,
                    String::from_utf8(v.clone()?).ok()?,
                ))
            })
            .collect()
    };
    let records = consume_until(&broker.bootstrap(), OUT, Duration::from_secs(60), |r| {
        r.len() >= expected.len() && &decode(r) == expected
    });
    decode(&records)
}

fn start(broker: &Broker, kind: StoreKind, dir: &std::path::Path) -> (KafkaStreams, u64) {
    let restored = Arc::new(AtomicU64::new(0));
    let streams = KafkaStreams::new(topology(kind), broker.config("global-rates", dir)).unwrap();
    streams.set_restore_listener(CountingRestores(restored.clone()));
    streams.start().unwrap();
    // start() returns once the global stores are restored, before any stream thread exists.
    let restored_at_start = restored.load(Ordering::Relaxed);
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "state {:?}, errors {:?}",
        streams.state(),
        streams.errors()
    );
    (streams, restored_at_start)
}

/// Waits until every key of the reference (and no other) is in the global store, read by interactive query.
fn await_store(streams: &KafkaStreams, reference: &HashMap<String, String>) {
    let mut want: Vec<(String, String)> = reference
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    want.sort();
    wait_until(
        "the global store to follow its topic",
        Duration::from_secs(60),
        || {
            streams
                .store::<String, String>(STORE)
                .and_then(|s| s.all())
                .is_ok_and(|all| all == want)
        },
    );
}

fn run(broker: Broker, kind: StoreKind, seed: u64) {
    broker.create_topic(RATES, 4);
    broker.create_topic(ORDERS, 3);
    broker.create_topic(OUT, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut reference = HashMap::new();
    const KEYS: u64 = 60;

    // 1. Rates and orders are both in their topics before the start: every order must see every rate, so the
    //    global store has to be complete before the first order is processed.
    produce_rates(&broker, &mut rng, 600, KEYS, &mut reference);
    let mut expected = produce_orders(&broker, &mut rng, 0, 200, KEYS, &reference);
    let (streams, restored) = start(&broker, kind, dir.path());
    assert_eq!(
        restored, 600,
        "the first start reads the whole global topic before returning"
    );
    assert_eq!(await_output(&broker, &expected), expected);
    await_store(&streams, &reference);

    // 2. Updates produced while running reach the store, and orders after them see them.
    produce_rates(&broker, &mut rng, 300, KEYS + 10, &mut reference);
    await_store(&streams, &reference);
    expected.extend(produce_orders(
        &broker, &mut rng, 200, 200, KEYS, &reference,
    ));
    assert_eq!(await_output(&broker, &expected), expected);
    assert!(streams.close(Duration::from_secs(30)));

    // 3. Updates produced while the application is down are there after a restart. A RocksDB store resumes from
    //    its checkpoint (it reads only the new records); an in-memory one re-reads the whole topic.
    produce_rates(&broker, &mut rng, 150, KEYS, &mut reference);
    let (streams, restored) = start(&broker, kind, dir.path());
    let want_restored = match kind {
        StoreKind::RocksDb => 150,
        _ => 600 + 300 + 150,
    };
    assert_eq!(restored, want_restored);
    await_store(&streams, &reference);
    expected.extend(produce_orders(
        &broker, &mut rng, 400, 200, KEYS, &reference,
    ));
    assert_eq!(await_output(&broker, &expected), expected);
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(streams.state(), State::NotRunning);
}

#[test]
fn global_table_in_memory_on_the_embedded_broker() {
    run(Broker::embedded(), StoreKind::InMemory, 11);
}

#[test]
fn global_table_rocksdb_resumes_from_its_checkpoint_on_the_embedded_broker() {
    run(Broker::embedded(), StoreKind::RocksDb, 23);
}

#[test]
fn global_table_rocksdb_on_tansu() {
    run(Broker::tansu(), StoreKind::RocksDb, 37);
}

/// The RocksDB budget (`rocksdb.memory.bytes`) is the instance's, shared by its global stores and its task
/// stores: the memtables of a global table loaded at start are charged to it (before, the global stores had a
/// budget of their own, a second `rocksdb.memory.bytes`).
#[test]
fn global_stores_draw_on_the_instance_rocksdb_budget() {
    let broker = Broker::embedded();
    broker.create_topic(RATES, 1);
    broker.create_topic(ORDERS, 2);
    // About 6 MB of rates; once loaded, the store's blocks (index, filters, what a read touched) are cached.
    let rates: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..30_000)
        .map(|i| (format!("r{i:06}").into_bytes(), Some(vec![b'x'; 200])))
        .collect();
    produce(&broker.bootstrap(), RATES, &rates);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        topology(StoreKind::RocksDb),
        broker.config("budget", dir.path()),
    )
    .unwrap();
    let before = streams.rocksdb_memory_usage_bytes();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        streams.errors()
    );
    let store = streams.store::<String, String>(STORE).unwrap();
    assert_eq!(
        store.get(&"r029999".to_string()).unwrap().map(|v| v.len()),
        Some(200)
    );
    let used = streams.rocksdb_memory_usage_bytes();
    eprintln!(
        "RocksDB budget in use: {before} bytes before start, {used} with the global table loaded"
    );
    // Only the global store uses RocksDB here: anything in use is its.
    assert!(
        used > before,
        "the global store's blocks are not charged to the instance's budget: {used} bytes in use"
    );
    assert!(streams.close(Duration::from_secs(30)));
}
