//! Exactly-once processing (`processing.guarantee=exactly_once_v2`) on the embedded broker, through its fault
//! injection: a transaction the broker fails with an error librdkafka marks as abortable (`txn_requires_abort`)
//! is aborted, leaves no trace in the stores, and processing resumes from the last commit, so every count equals
//! the reference computed here from the produced input, exactly (at-least-once would count the replayed records
//! twice).
//!
//! The error codes are the ones librdkafka's transaction manager (`rdkafka_txnmgr.c`) and Produce handling
//! (`rdkafka_request.c`) turn into an abortable transaction error rather than a retry or a fatal error:
//!
//! - Produce: `TOPIC_AUTHORIZATION_FAILED` (a permanent produce error; a transactional producer must abort);
//! - AddPartitionsToTxn: `TOPIC_AUTHORIZATION_FAILED` (a partition-level permanent error);
//! - TxnOffsetCommit: `GROUP_AUTHORIZATION_FAILED` (permanent, not fatal);
//! - EndTxn: `TOPIC_AUTHORIZATION_FAILED` (any error not in its retry or fatal lists is abortable).
//!
//! Each case counts the same input into two stores, one in RocksDB and one in memory, and checks both through
//! interactive queries: never above the reference while the faults play out (an aborted round that left a trace
//! would show there), equal to it once all input is processed, with `streams_transactions_aborted_total` of the
//! instance raised (the fault reached the transaction and was aborted), and the instance `Running`
//! without an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streams_dsl::streams_core::runtime::{EmbeddedKafka, Fault, KafkaStreams, State};
use streams_dsl::*;
use tests::counters::{counter, snapshotter};
use tests::{produce, Broker};

const INPUT: &str = "eos-events";
const OUTPUT: &str = "eos-counts";
const ROCKS: &str = "eos-counts-rocksdb";
const MEMORY: &str = "eos-counts-memory";

/// Counts per key into a RocksDB store and an in-memory store, and writes the RocksDB counts to `OUTPUT`.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream(INPUT, Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new());
    grouped
        .count(Materialized::as_store(ROCKS))
        .to_stream()
        .to(OUTPUT, Produced::new());
    grouped.count(Materialized::as_store(MEMORY).in_memory());
    b.build().unwrap()
}

/// Input produced so far, and the counts it must give.
#[derive(Default)]
struct Input {
    records: usize,
    reference: BTreeMap<String, i64>,
}

impl Input {
    /// `n` more records over 13 keys.
    fn add(&mut self, n: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..n)
            .map(|_| {
                let i = self.records;
                self.records += 1;
                let key = format!("k{:02}", (i * 7 + i / 13) % 13);
                *self.reference.entry(key.clone()).or_default() += 1;
                (key.into_bytes(), Some(format!("e{i}").into_bytes()))
            })
            .collect()
    }
}

/// Both stores of `streams`, or `None` while they cannot be queried (a rebalance, tasks being re-created).
fn stores(streams: &KafkaStreams) -> Option<[BTreeMap<String, i64>; 2]> {
    let read = |name: &str| -> Option<BTreeMap<String, i64>> {
        streams
            .store::<String, i64>(name)
            .and_then(|s| s.all())
            .ok()
            .map(|all| all.into_iter().collect())
    };
    Some([read(ROCKS)?, read(MEMORY)?])
}

/// Waits until both stores equal the reference and `aborted()` holds. At every look the instance must be running
/// and no count may be above the reference: a store only ever holds committed data, so an aborted round that
/// left a trace shows as a count too high.
fn wait_exact(streams: &KafkaStreams, input: &Input, what: &str, aborted: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        assert!(
            matches!(streams.state(), State::Rebalancing | State::Running),
            "{what}: the instance is {:?}: {:?}",
            streams.state(),
            streams.errors()
        );
        let got = stores(streams);
        if let Some(got) = &got {
            for (store, counts) in [ROCKS, MEMORY].iter().zip(got) {
                for (k, n) in counts {
                    let want = input.reference.get(k).copied().unwrap_or(0);
                    assert!(
                        *n <= want,
                        "{what}: {store} counts {n} for {k}, above the {want} records produced: an aborted \
                         transaction left a trace"
                    );
                }
            }
            if got.iter().all(|c| *c == input.reference) && aborted() {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what}: after 90 s the stores hold {got:?}, not {:?} (abort seen: {}); {:?} {:?}",
            input.reference,
            aborted(),
            streams.state(),
            streams.errors()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn embedded(broker: &Broker) -> &EmbeddedKafka {
    let Broker::Embedded(kafka) = broker else {
        unreachable!()
    };
    kafka
}

/// Runs the counting application under exactly-once, fails the next requests of kind `api` with `errors`
/// while new input arrives, and checks the stores exactly against the reference.
fn abortable_errors_case(app: &str, api: RDKafkaApiKey, errors: Vec<RDKafkaRespErr>) {
    snapshotter();
    let broker = Broker::embedded();
    broker.create_topic(INPUT, 2);
    broker.create_topic(OUTPUT, 2);
    let kafka = embedded(&broker);
    let aborted = || counter("streams_transactions_aborted_total", app);
    let committed = || counter("streams_transactions_committed_total", app);
    let mut input = Input::default();
    let first = input.add(200);
    let second = input.add(200);
    // The test's own producer must not meet a Produce error meant for the application: for Produce the input is
    // all there before the fault; for the other requests (which only a transactional producer sends) the
    // second half arrives after it.
    let produce_errors = api == RDKafkaApiKey::Produce;
    produce(&broker.bootstrap(), INPUT, &first);
    if produce_errors {
        produce(&broker.bootstrap(), INPUT, &second);
    }

    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config(app, dir.path());
    config
        .set("processing.guarantee", "exactly_once_v2")
        .unwrap();
    let streams = KafkaStreams::new(topology(), (config, admin)).unwrap();
    let mut early = Input::default();
    early.add(200);
    if produce_errors {
        // The application's first transactions meet the errors (the metadata announcer, which produces too,
        // may take some, so there are several).
        kafka
            .inject(Fault::RequestErrors {
                api,
                errors: errors.clone(),
            })
            .unwrap();
        streams.start().unwrap();
    } else {
        streams.start().unwrap();
        // The first half is processed and committed before any fault.
        wait_exact(&streams, &early, "before the fault", || committed() > 0);
        assert_eq!(aborted(), 0, "no transaction aborted before the fault");
        kafka
            .inject(Fault::RequestErrors {
                api,
                errors: errors.clone(),
            })
            .unwrap();
        produce(&broker.bootstrap(), INPUT, &second);
    }
    wait_exact(&streams, &input, "after the fault", || aborted() > 0);
    let aborts = aborted();

    // Processing goes on after the aborted round: more input, counted exactly.
    let third = input.add(100);
    produce(&broker.bootstrap(), INPUT, &third);
    wait_exact(&streams, &input, "after the recovery", || true);
    eprintln!(
        "{app}: {errors:?} on {api:?}: {aborts} transactions aborted, {} committed; stores exact over {} \
         records",
        committed(),
        input.records
    );
    assert_eq!(streams.state(), State::Running, "{:?}", streams.errors());
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn an_abortable_produce_error_aborts_the_transaction_and_counts_stay_exact() {
    abortable_errors_case(
        "eos-produce",
        RDKafkaApiKey::Produce,
        vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
}

#[test]
fn an_abortable_add_partitions_to_txn_error_aborts_the_transaction_and_counts_stay_exact() {
    abortable_errors_case(
        "eos-add-partitions",
        RDKafkaApiKey::AddPartitionsToTxn,
        vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
}

#[test]
fn an_abortable_txn_offset_commit_error_aborts_the_transaction_and_counts_stay_exact() {
    abortable_errors_case(
        "eos-txn-offset-commit",
        RDKafkaApiKey::TxnOffsetCommit,
        vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
    );
}

#[test]
fn an_abortable_end_txn_error_aborts_the_transaction_and_counts_stay_exact() {
    abortable_errors_case(
        "eos-end-txn",
        RDKafkaApiKey::EndTxn,
        vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
}

/// Several abortable errors of different requests in a row: each aborted round is discarded, the next one is
/// aborted again from the same committed state, and the counts still come out exact.
#[test]
fn abortable_errors_of_every_transactional_request_in_a_row_leave_exact_counts() {
    use RDKafkaRespErr::*;
    snapshotter();
    let app = "eos-mixed";
    let broker = Broker::embedded();
    broker.create_topic(INPUT, 2);
    broker.create_topic(OUTPUT, 2);
    let kafka = embedded(&broker);
    let aborted = || counter("streams_transactions_aborted_total", app);
    let mut input = Input::default();
    produce(&broker.bootstrap(), INPUT, &input.add(150));
    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config(app, dir.path());
    config
        .set("processing.guarantee", "exactly_once_v2")
        .unwrap();
    let streams = KafkaStreams::new(topology(), (config, admin)).unwrap();
    streams.start().unwrap();
    wait_exact(&streams, &input, "before the faults", || true);
    let aborts_before = aborted();
    for (round, (api, error)) in [
        (
            RDKafkaApiKey::AddPartitionsToTxn,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        ),
        (
            RDKafkaApiKey::TxnOffsetCommit,
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
        ),
        (
            RDKafkaApiKey::EndTxn,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        kafka
            .inject(Fault::RequestErrors {
                api,
                errors: vec![error],
            })
            .unwrap();
        produce(&broker.bootstrap(), INPUT, &input.add(100));
        let expected_aborts = aborts_before + round as u64 + 1;
        wait_exact(
            &streams,
            &input,
            &format!("after {error:?} on {api:?}"),
            || aborted() >= expected_aborts,
        );
    }
    assert_eq!(streams.state(), State::Running, "{:?}", streams.errors());
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}
