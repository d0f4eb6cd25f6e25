//! Finding: `ReplaceThread` leaked a producer per failure. The failed thread's slot stays in the instance (its
//! counters remain part of the totals) and held the thread's producer, so every replacement left one more
//! librdkafka client running. Alone in its test binary: it counts librdkafka's main threads (`rdk:main`, one
//! per client) of this process, which other tests' clients would disturb.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, State, UncaughtErrorAction};
use streams_dsl::*;
use tests::{produce, wait_until, Broker};

/// librdkafka clients alive in this process: each runs one thread named `rdk:main`.
fn librdkafka_clients() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .map(|c| c.trim() == "rdk:main")
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

const FAILURES: usize = 4;

#[test]
fn finding_replaced_threads_release_their_producer() {
    let broker = Broker::embedded();
    broker.create_topic("words", 1);
    let dir = tempfile::tempdir().unwrap();
    // The processor panics on "boom" the first FAILURES times it sees it; each replacement thread reprocesses it
    // from the last commit.
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let b = StreamsBuilder::new();
    b.stream("words", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v: String| {
            if v == "boom" && SEEN.fetch_add(1, Ordering::SeqCst) < FAILURES {
                panic!("cannot handle the value boom");
            }
            v
        })
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts"));
    let records: Vec<_> = ["a", "b", "boom", "c"]
        .iter()
        .map(|v| (b"k".to_vec(), Some(v.as_bytes().to_vec())))
        .collect();
    produce(&broker.bootstrap(), "words", &records);

    let streams =
        KafkaStreams::new(b.build().unwrap(), broker.config("replace", dir.path())).unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    streams.set_uncaught_error_handler(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        UncaughtErrorAction::ReplaceThread
    });
    streams.start().unwrap();
    assert!(streams.wait_for_state(State::Running, Duration::from_secs(60)));
    wait_until("the first thread is up", Duration::from_secs(30), || {
        streams.metrics().processed >= 2 || handled.load(Ordering::SeqCst) > 0
    });
    // One thread's clients (main consumer, restore consumer, producer), the instance's admin and metadata
    // clients, the test's own: whatever they are, replacements must not add to them.
    wait_until("every failure replaced", Duration::from_secs(120), || {
        handled.load(Ordering::SeqCst) >= FAILURES
    });
    let store = || {
        streams
            .store::<String, i64>("counts")
            .and_then(|s| s.get(&"k".to_string()))
            .ok()
            .flatten()
    };
    wait_until(
        "the last thread counted everything",
        Duration::from_secs(60),
        || store() == Some(4),
    );
    std::thread::sleep(Duration::from_secs(2));
    let clients = librdkafka_clients();
    let baseline = {
        // The same application with no failure: the clients one healthy instance runs.
        let dir = tempfile::tempdir().unwrap();
        let healthy = KafkaStreams::new(
            {
                let b = StreamsBuilder::new();
                b.stream("words", Consumed::with(Serdes::string(), Serdes::string()))
                    .group_by_key(Grouped::new())
                    .count(Materialized::as_store("counts"));
                b.build().unwrap()
            },
            broker.config("healthy", dir.path()),
        )
        .unwrap();
        let before = librdkafka_clients();
        healthy.start().unwrap();
        assert!(healthy.wait_for_state(State::Running, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_secs(2));
        let n = librdkafka_clients() - before;
        assert!(healthy.close(Duration::from_secs(30)));
        n
    };
    eprintln!(
        "{FAILURES} threads replaced: {clients} librdkafka clients in the process; a healthy instance runs {baseline}"
    );
    assert!(
        clients <= baseline + 1,
        "{clients} librdkafka clients after {FAILURES} replacements; one healthy instance runs {baseline}"
    );
    assert!(streams.close(Duration::from_secs(30)));
}
