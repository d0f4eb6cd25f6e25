//! Broker faults through the embedded broker's fault injection: the application rides them out and its state is
//! exact afterwards.
//!
//! Also: retriable errors answering the group's JoinGroup requests, and a slow broker (every answer delayed).
//!
//! Defect pinned here: a transient broker error (a connection lost, the broker restarting) while a store was
//! being restored from its changelog was fatal: the instance went to `Error` and needed an operator.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streams_dsl::streams_core::runtime::{
    EmbeddedAdmin, Fault, KafkaStreams, State, StateRestoreListener,
};
use streams_dsl::*;
use tests::{produce, Broker};

const STORE: &str = "event-counts";

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store(STORE));
    b.build().unwrap()
}

/// Takes the broker down when the first restoration starts, and brings it back `outage` later.
struct OutageAtRestore {
    admin: EmbeddedAdmin,
    outage: Duration,
    fired: Arc<AtomicBool>,
    restored: Arc<std::sync::atomic::AtomicU64>,
}

impl StateRestoreListener for OutageAtRestore {
    fn on_restore_start(&self, _store: &str, _partition: i32, start: i64, end: i64) {
        if start < end && !self.fired.swap(true, Ordering::SeqCst) {
            self.admin.inject(Fault::BrokerDown).unwrap();
            let (admin, outage) = (self.admin.clone(), self.outage);
            std::thread::spawn(move || {
                std::thread::sleep(outage);
                admin.inject(Fault::BrokerUp).unwrap();
            });
        }
    }
    fn on_restore_end(&self, _store: &str, _partition: i32, restored: u64) {
        self.restored.fetch_add(restored, Ordering::SeqCst);
    }
}

#[test]
fn finding_a_broker_outage_during_restoration_is_retried_not_fatal() {
    let broker = Broker::embedded();
    broker.create_topic("events", 2);
    let Broker::Embedded(kafka) = &broker else {
        unreachable!()
    };
    let mut reference: BTreeMap<String, i64> = BTreeMap::new();
    let records: Vec<_> = (0..400)
        .map(|i| {
            let k = format!("k{}", (i * 7) % 13);
            *reference.entry(k.clone()).or_default() += 1;
            (k.into_bytes(), Some(b"e".to_vec()))
        })
        .collect();
    let reference: Vec<(String, i64)> = reference.into_iter().collect();
    produce(&broker.bootstrap(), "events", &records);

    let first_dir = tempfile::tempdir().unwrap();
    let first = KafkaStreams::new(topology(), broker.config("outage", first_dir.path())).unwrap();
    first.start().unwrap();
    let start = Instant::now();
    while first.metrics().processed < 400 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(first.close(Duration::from_secs(30)));

    // A new instance on an empty state directory restores everything, and the broker goes away as it starts.
    let dir = tempfile::tempdir().unwrap();
    let fired = Arc::new(AtomicBool::new(false));
    let restored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let streams = KafkaStreams::new(topology(), broker.config("outage", dir.path())).unwrap();
    streams.set_restore_listener(OutageAtRestore {
        admin: kafka.admin(),
        outage: Duration::from_secs(6),
        fired: fired.clone(),
        restored: restored.clone(),
    });
    streams.start().unwrap();
    tests::wait_until(
        "the store is restored after the outage",
        Duration::from_secs(90),
        || {
            assert_ne!(streams.state(), State::Error, "{:?}", streams.errors());
            streams
                .store::<String, i64>(STORE)
                .and_then(|s| s.all())
                .map(|c| c == reference)
                .unwrap_or(false)
        },
    );
    assert!(
        fired.load(Ordering::SeqCst),
        "the outage happened during a restoration"
    );
    assert!(restored.load(Ordering::SeqCst) > 0);
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}

/// Values pass through, except `big`, which becomes 2 MiB: more than a producer may send by default.
fn inflating_topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v| if v == "big" { "x".repeat(2 << 20) } else { v })
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    b.build().unwrap()
}

fn produce_with_one_big(broker: &Broker) -> Vec<(Vec<u8>, Vec<u8>)> {
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..20)
        .map(|i| {
            let v = if i == 7 {
                "big".to_string()
            } else {
                format!("v{i}")
            };
            (format!("k{i}").into_bytes(), Some(v.into_bytes()))
        })
        .collect();
    produce(&broker.bootstrap(), "in", &records);
    records
        .into_iter()
        .filter(|(_, v)| v.as_deref() != Some(b"big".as_slice()))
        .map(|(k, v)| (k, v.unwrap()))
        .collect()
}

/// Defect: one record a sink topic refuses (here: too large) failed the thread, and a replacement thread failed on
/// the same record again: a crash loop with no way to skip it.
#[test]
fn finding_a_record_the_sink_refuses_can_be_dropped_by_the_production_handler() {
    let broker = Broker::embedded();
    broker.create_topic("in", 1);
    broker.create_topic("out", 1);
    let mut expected = produce_with_one_big(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (mut config, admin) = broker.config("inflate-continue", dir.path());
    config
        .set("default.production.exception.handler", "continue")
        .unwrap();
    let streams = KafkaStreams::new(inflating_topology(), (config, admin)).unwrap();
    streams.start().unwrap();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> =
        tests::consume_until(&broker.bootstrap(), "out", Duration::from_secs(60), |got| {
            got.len() >= expected.len()
        })
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(
        got, expected,
        "every record but the refused one reaches the sink"
    );
    assert_eq!(streams.state(), State::Running, "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn by_default_a_record_the_sink_refuses_fails_naming_the_topic_and_the_setting() {
    let broker = Broker::embedded();
    broker.create_topic("in", 1);
    broker.create_topic("out", 1);
    produce_with_one_big(&broker);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        inflating_topology(),
        broker.config("inflate-fail", dir.path()),
    )
    .unwrap();
    streams.start().unwrap();
    assert!(streams.wait_for_state(State::Error, Duration::from_secs(60)));
    let errors = streams.errors().join("\n");
    assert!(
        errors.contains("'out'") && errors.contains("default.production.exception.handler"),
        "{errors}"
    );
}

type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// `n` events over 11 keys, and the counts they must give.
fn events(n: usize) -> (Records, Vec<(String, i64)>) {
    let mut reference: BTreeMap<String, i64> = BTreeMap::new();
    let records = (0..n)
        .map(|i| {
            let k = format!("k{}", (i * 3 + i / 5) % 11);
            *reference.entry(k.clone()).or_default() += 1;
            (k.into_bytes(), Some(b"e".to_vec()))
        })
        .collect();
    (records, reference.into_iter().collect())
}

/// Waits until the store holds `reference`, failing at once if the instance leaves the running states.
fn wait_for_counts(streams: &KafkaStreams, reference: &[(String, i64)], timeout: Duration) {
    wait_for_instances(&[streams], reference, timeout);
}

/// Waits until the stores of `instances` together hold `reference`, failing at once if one leaves the running
/// states; on a timeout, says what each instance was doing and what its store held.
fn wait_for_instances(instances: &[&KafkaStreams], reference: &[(String, i64)], timeout: Duration) {
    let want: BTreeMap<String, i64> = reference.iter().cloned().collect();
    let start = Instant::now();
    loop {
        let mut got: BTreeMap<String, i64> = BTreeMap::new();
        for s in instances {
            assert!(
                matches!(s.state(), State::Rebalancing | State::Running),
                "{:?}: {:?}",
                s.state(),
                s.errors()
            );
            if let Ok(all) = s.store::<String, i64>(STORE).and_then(|st| st.all()) {
                got.extend(all);
            }
        }
        if got == want {
            return;
        }
        if start.elapsed() > timeout {
            let states: Vec<_> = instances
                .iter()
                .map(|s| format!("{:?} {:?} {:?}", s.state(), s.errors(), s.metrics()))
                .collect();
            panic!(
                "after {timeout:?} the stores hold {got:?}, not {want:?}; instances: {states:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn join_group_errors_are_retried_until_the_group_forms() {
    let broker = Broker::embedded();
    broker.create_topic("events", 2);
    let Broker::Embedded(kafka) = &broker else {
        unreachable!()
    };
    let (records, reference) = events(300);
    produce(&broker.bootstrap(), "events", &records);
    // The coordinator refuses the first JoinGroup requests with the errors a moving or loading coordinator
    // answers with, and one unknown member id.
    let errors = vec![
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    ];
    kafka
        .inject(Fault::RequestErrors {
            api: RDKafkaApiKey::JoinGroup,
            errors,
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("join-errors", dir.path())).unwrap();
    streams.start().unwrap();
    wait_for_counts(&streams, &reference, Duration::from_secs(90));
    assert_eq!(streams.state(), State::Running);
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());

    // A second instance joining later meets the same errors; the group re-forms and nothing is lost.
    kafka
        .inject(Fault::RequestErrors {
            api: RDKafkaApiKey::JoinGroup,
            errors: vec![
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            ],
        })
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let second = KafkaStreams::new(topology(), broker.config("join-errors", dir2.path())).unwrap();
    second.start().unwrap();
    assert!(
        second.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        second.errors()
    );
    let (more, _) = events(200);
    produce(&broker.bootstrap(), "events", &more);
    let mut both: BTreeMap<String, i64> = reference.iter().cloned().collect();
    for (k, _) in &more {
        *both
            .entry(String::from_utf8(k.clone()).unwrap())
            .or_default() += 1;
    }
    let both: Vec<(String, i64)> = both.into_iter().collect();
    wait_for_instances(&[&streams, &second], &both, Duration::from_secs(90));
    assert!(second.close(Duration::from_secs(30)));
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn a_slow_broker_delays_but_does_not_fail_the_application() {
    let broker = Broker::embedded();
    broker.create_topic("events", 2);
    let Broker::Embedded(kafka) = &broker else {
        unreachable!()
    };
    let (records, reference) = events(300);
    produce(&broker.bootstrap(), "events", &records);
    // Every answer takes 400 ms: twice the commit interval, almost the heartbeat interval.
    kafka
        .inject(Fault::RoundTripTime(Duration::from_millis(400)))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("slow", dir.path())).unwrap();
    let started = Instant::now();
    streams.start().unwrap();
    wait_for_counts(&streams, &reference, Duration::from_secs(120));
    let slow = started.elapsed();
    assert!(
        slow >= Duration::from_millis(800),
        "the delay was in effect: caught up in {slow:?}"
    );
    // Back to normal speed, the same instance keeps up with new input.
    kafka.inject(Fault::RoundTripTime(Duration::ZERO)).unwrap();
    let (more, _) = events(150);
    produce(&broker.bootstrap(), "events", &more);
    let mut both: BTreeMap<String, i64> = reference.into_iter().collect();
    for (k, _) in &more {
        *both
            .entry(String::from_utf8(k.clone()).unwrap())
            .or_default() += 1;
    }
    let both: Vec<(String, i64)> = both.into_iter().collect();
    wait_for_counts(&streams, &both, Duration::from_secs(60));
    assert_eq!(streams.state(), State::Running);
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}
