//! The word-count and US-shareholders examples as their binaries run them with `--exactly-once`, on the embedded
//! broker: the flag reaches the runtime (transactions are committed, by the `streams_transactions_committed_total`
//! counter, and none aborted), each store ends equal to a direct computation from the input, and the word counts
//! read back from the output topic with isolation.level=read_committed end at the same values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use examples::cli::{Cluster, ConnectionArgs};
use examples::us_shareholders::{self, sample_positions, Position, POSITIONS_TOPIC};
use examples::word_count;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::StoreKind;
use tests::{consume_until, wait_until};

fn exactly_once() -> ConnectionArgs {
    ConnectionArgs {
        exactly_once: true,
        ..Default::default()
    }
}

fn word_count_exactly_once() {
    let cluster = Cluster::from_args(
        &exactly_once(),
        &[(word_count::INPUT, 2), (word_count::OUTPUT, 2)],
    )
    .unwrap();
    assert_eq!(cluster.guarantee(), "exactly_once_v2");
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        word_count::topology().unwrap(),
        cluster.config("word-count", dir.path()).unwrap(),
    )
    .unwrap();
    streams.start().unwrap();
    let lines: Vec<String> = (0..150)
        .map(|i| format!("Tide{} tide{} the TIDE{} turns", i % 5, i % 13, i % 2))
        .collect();
    let records: Vec<_> = lines
        .iter()
        .map(|l| (None, Some(l.clone().into_bytes())))
        .collect();
    cluster.produce(word_count::INPUT, &records).unwrap();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lines {
        for w in l.split_whitespace() {
            *expected.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    wait_until("the word counts", Duration::from_secs(60), || {
        streams
            .store::<String, i64>(word_count::STORE)
            .and_then(|s| s.all())
            .map(|all| all.into_iter().collect::<BTreeMap<_, _>>() == expected)
            .unwrap_or(false)
    });
    // The output topic: the last count of each word, as a read_committed reader sees it.
    let latest = |out: &[(Vec<u8>, Option<Vec<u8>>)]| {
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for (k, v) in out {
            let word = String::from_utf8(k.clone()).unwrap();
            let bytes: [u8; 8] = v.as_deref().unwrap().try_into().unwrap();
            last.insert(word, i64::from_be_bytes(bytes));
        }
        last
    };
    let out = consume_until(
        cluster.bootstrap(),
        word_count::OUTPUT,
        Duration::from_secs(30),
        |out| latest(out) == expected,
    );
    assert_eq!(latest(&out), expected);
    assert!(streams.close(Duration::from_secs(30)));
}

/// `select distinct(client) from open_positions where exchange = 'NASDAQ'`, evaluated directly.
fn holders(open: &BTreeMap<String, Position>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in open.values().filter(|p| p.exchange == "NASDAQ") {
        out.entry(p.client.clone())
            .or_default()
            .insert(p.id.clone());
    }
    out
}

fn us_shareholders_exactly_once() {
    let cluster = Cluster::from_args(&exactly_once(), &[(POSITIONS_TOPIC, 2)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        us_shareholders::topology(StoreKind::RocksDb).unwrap(),
        cluster.config("us-shareholders", dir.path()).unwrap(),
    )
    .unwrap();
    streams.start().unwrap();
    let state = || {
        streams
            .store::<String, BTreeSet<String>>(us_shareholders::STORE)
            .and_then(|s| s.all())
            .map(|all| all.into_iter().collect::<BTreeMap<_, _>>())
    };
    let mut open = BTreeMap::new();
    let as_record = |p: &Position| (Some(p.id.clone().into_bytes()), serde_json::to_vec(p).ok());
    let samples = sample_positions();
    for p in &samples {
        open.insert(p.id.clone(), p.clone());
    }
    let records: Vec<_> = samples.iter().map(as_record).collect();
    cluster.produce(POSITIONS_TOPIC, &records).unwrap();
    let want = holders(&open);
    wait_until("the sample holders", Duration::from_secs(60), || {
        state().is_ok_and(|s| s == want)
    });
    open.remove("4");
    cluster
        .produce(POSITIONS_TOPIC, &[(Some(b"4".to_vec()), None)])
        .unwrap();
    let want = holders(&open);
    wait_until("position 4 closed", Duration::from_secs(60), || {
        state().is_ok_and(|s| s == want)
    });
    let moved = Position::new("3", "client1", "FB", 33, "LON");
    open.insert("3".into(), moved.clone());
    cluster
        .produce(POSITIONS_TOPIC, &[as_record(&moved)])
        .unwrap();
    let want = holders(&open);
    wait_until("position 3 moved", Duration::from_secs(60), || {
        state().is_ok_and(|s| s == want)
    });
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn the_examples_run_exactly_once_on_the_embedded_broker() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    word_count_exactly_once();
    us_shareholders_exactly_once();
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(c) = value {
            *counters.entry(key.key().name().to_string()).or_default() += c;
        }
    }
    let get = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert!(
        get("streams_transactions_committed_total") > 0,
        "no transaction was committed: {counters:?}"
    );
    assert_eq!(get("streams_transactions_aborted_total"), 0, "{counters:?}");
    assert_eq!(get("streams_producer_fenced_total"), 0, "{counters:?}");
}
