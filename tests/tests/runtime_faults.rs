//! Broker faults through the embedded broker's fault injection: the application rides them out and its state is
//! exact afterwards.
//!
//! Defect pinned here: a transient broker error (a connection lost, the broker restarting) while a store was
//! being restored from its changelog was fatal: the instance went to `Error` and needed an operator.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
