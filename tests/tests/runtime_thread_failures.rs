//! A stream thread that loses its partitions, and one whose application code panics, on the embedded broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use streams_dsl::streams_core::runtime::{KafkaStreams, State, UncaughtErrorAction};
use streams_dsl::*;
use tests::{consume_until, produce, wait_until, Broker};

/// Input records: key, value. The counts per key are the reference the stores are checked against.
fn words(blocker: &str, extra: usize) -> Vec<(String, String)> {
    let mut r: Vec<_> = (0..30)
        .map(|i| (format!("k{}", i % 5), "a".to_string()))
        .collect();
    r.push(("k0".into(), blocker.into()));
    r.extend((0..extra).map(|i| (format!("k{}", i % 5), "b".to_string())));
    r
}

fn reference(records: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (k, _) in records {
        *m.entry(k.clone()).or_insert(0) += 1;
    }
    m
}

fn produce_words(broker: &Broker, records: &[(String, String)]) {
    let raw: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
        .collect();
    produce(&broker.bootstrap(), "words", &raw);
}

fn decode(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<(String, i64)> {
    records
        .iter()
        .filter_map(|(k, v)| {
            Some((
                String::from_utf8(k.clone()).ok()?,
                i64::from_be_bytes(v.as_ref()?.as_slice().try_into().ok()?),
            ))
        })
        .collect()
}

/// Set once the first `block` record stalled the thread.
static BLOCKED: AtomicBool = AtomicBool::new(false);

/// How long the first `block` record stalls the thread: longer than `max.poll.interval.ms` (3 s).
const STALL: Duration = Duration::from_secs(7);

/// Defect: partitions LOST by a zombie (here: `max.poll.interval.ms` exceeded, so librdkafka leaves the group and
/// revokes with `assignment_lost()`) were handled like revoked ones: the zombie flushed its caches to the
/// changelog, wrote a checkpoint and tried to commit, although the new owner may already be writing. They must be
/// closed dirty: nothing written, no checkpoint, no commit.
///
/// Caching is on and the commit interval long, so before the loss every update sits in the cache and a clean close
/// would flush it. After the loss the thread rejoins, gets the partition back, rebuilds the task from the
/// (empty) changelog and reprocesses from the last committed offset (none): the final counts are exact, as the
/// zombie's uncommitted updates were dropped (exact here because the cache never evicted; at least once allows
/// more in general).
#[test]
fn finding_lost_partitions_are_closed_dirty_without_flush_checkpoint_or_commit() {
    const APP: &str = "lost-dirty";
    let broker = Broker::embedded();
    broker.create_topic("words", 1);
    let dir = tempfile::tempdir().unwrap();
    let records = words("block", 10);
    produce_words(&broker, &records);

    let b = StreamsBuilder::new();
    b.stream("words", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v: String| {
            if v == "block" && !BLOCKED.swap(true, Ordering::SeqCst) {
                std::thread::sleep(STALL);
            }
            v
        })
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts"));
    let (mut config, admin) = broker.config(APP, dir.path());
    config.set("commit.interval.ms", "600000").unwrap();
    config
        .set("statestore.cache.max.bytes", "10485760")
        .unwrap();
    config
        .set("main.consumer.session.timeout.ms", "3000")
        .unwrap();
    config
        .set("main.consumer.max.poll.interval.ms", "3000")
        .unwrap();
    let streams = KafkaStreams::new(b.build().unwrap(), (config, admin)).unwrap();
    streams.start().unwrap();

    // The first owner processes everything into the cache, stalls, loses the partition, rejoins and processes
    // everything again: 2 x the input.
    let n = records.len() as u64;
    let start = Instant::now();
    while !(BLOCKED.load(Ordering::SeqCst)
        && streams.metrics().processed >= 2 * n
        && streams.state() == State::Running)
        && start.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        BLOCKED.load(Ordering::SeqCst),
        "the stalling record was never processed"
    );
    assert_eq!(
        streams.state(),
        State::Running,
        "errors: {:?}",
        streams.errors()
    );

    // Nothing has been committed yet (the commit interval is long): the changelog must be empty and there must be
    // no checkpoint. A zombie flushing on the loss would have written its cached counts.
    let changelog = format!("{APP}-counts-changelog");
    let written = consume_until(
        &broker.bootstrap(),
        &changelog,
        Duration::from_secs(3),
        |_| false,
    );
    assert!(
        written.is_empty(),
        "the zombie wrote {} changelog records after losing its partition: {:?}",
        written.len(),
        decode(&written)
    );
    let checkpoint = dir.path().join(APP).join("0_0").join(".checkpoint");
    assert!(
        !checkpoint.exists(),
        "the zombie wrote a checkpoint: {:?}",
        std::fs::read_to_string(&checkpoint)
    );

    // The new owner's store holds exactly the reference counts.
    let expected = reference(&records);
    let mut got = BTreeMap::new();
    wait_until(
        "the store to hold the counts",
        Duration::from_secs(30),
        || {
            got = streams
                .store::<String, i64>("counts")
                .and_then(|s| s.all())
                .map(|v| v.into_iter().collect())
                .unwrap_or_default();
            got == expected
        },
    );
    assert_eq!(got, expected);

    // A clean close flushes once: one changelog record per key, with the exact count.
    assert!(streams.close(Duration::from_secs(30)));
    let written = consume_until(
        &broker.bootstrap(),
        &changelog,
        Duration::from_secs(10),
        |r| r.len() >= expected.len(),
    );
    let extra = consume_until(
        &broker.bootstrap(),
        &changelog,
        Duration::from_secs(2),
        |r| r.len() > expected.len(),
    );
    assert_eq!(
        decode(&extra).len(),
        expected.len(),
        "stale records in the changelog: {:?}",
        decode(&extra)
    );
    let last: BTreeMap<String, i64> = decode(&written).into_iter().collect();
    assert_eq!(last, expected);
}

/// Set once the `boom` record panicked.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn panicking_topology(panic_once: bool) -> Topology {
    let b = StreamsBuilder::new();
    b.stream("words", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(move |v: String| {
            if v == "boom" && (!panic_once || !PANICKED.swap(true, Ordering::SeqCst)) {
                panic!("cannot handle the value boom");
            }
            v
        })
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts"));
    b.build().unwrap()
}

/// Defect: a panic in application code killed the stream thread silently: the instance still said Running and
/// `errors()` was empty. It must stop the thread as a returned error does, named (thread, task, processor,
/// message), through the uncaught error handler (default: the instance moves to Error).
#[test]
fn finding_a_panicking_processor_moves_the_instance_to_error_naming_task_and_processor() {
    let broker = Broker::embedded();
    broker.create_topic("words", 1);
    let dir = tempfile::tempdir().unwrap();
    produce_words(&broker, &words("boom", 0));
    let streams = KafkaStreams::new(
        panicking_topology(false),
        broker.config("panics", dir.path()),
    )
    .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    streams.set_state_listener(move |_, to| s2.lock().unwrap().push(to));
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Error, Duration::from_secs(60)),
        "state {:?}",
        streams.state()
    );
    assert!(seen.lock().unwrap().contains(&State::Error));
    let errors = streams.errors().join("\n");
    assert!(errors.contains("cannot handle the value boom"), "{errors}");
    assert!(errors.contains("panicked in task 0_0"), "{errors}");
    assert!(
        errors.contains("at processor 'KSTREAM-MAPVALUES-"),
        "{errors}"
    );
    assert!(errors.contains("panics-StreamThread-1"), "{errors}");
}

/// Defect (as above): with the uncaught error handler answering `ReplaceThread`, a panic must be handed to it
/// and a new thread must take over; the instance keeps running and processes everything.
#[test]
fn finding_a_panic_is_handed_to_the_uncaught_error_handler_which_can_replace_the_thread() {
    let broker = Broker::embedded();
    broker.create_topic("words", 1);
    let dir = tempfile::tempdir().unwrap();
    let records = words("boom", 10);
    produce_words(&broker, &records);
    let streams = KafkaStreams::new(
        panicking_topology(true),
        broker.config("replaced", dir.path()),
    )
    .unwrap();
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = handled.clone();
    streams.set_uncaught_error_handler(move |e| {
        h2.lock().unwrap().push(e.to_string());
        UncaughtErrorAction::ReplaceThread
    });
    streams.start().unwrap();
    wait_until("the panic", Duration::from_secs(60), || {
        PANICKED.load(Ordering::SeqCst)
    });
    let expected = reference(&records);
    let mut got = BTreeMap::new();
    wait_until(
        "the replacement thread to count everything",
        Duration::from_secs(60),
        || {
            got = streams
                .store::<String, i64>("counts")
                .and_then(|s| s.all())
                .map(|v| v.into_iter().collect())
                .unwrap_or_default();
            got == expected
        },
    );
    assert_eq!(streams.state(), State::Running);
    let handled = handled.lock().unwrap().join("\n");
    assert!(
        handled.contains("cannot handle the value boom"),
        "{handled}"
    );
    assert!(
        handled.contains("at processor 'KSTREAM-MAPVALUES-"),
        "{handled}"
    );
    assert!(streams.errors().join("\n").contains("panicked in task 0_0"));
    assert!(streams.close(Duration::from_secs(30)));
}

/// Counts its wall-clock punctuations, and those that fire while its instance is rebalancing.
struct Ticker {
    rebalancing: std::sync::Arc<AtomicBool>,
    during: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Processor<String, String> for Ticker {
    type KOut = String;
    type VOut = String;

    fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
        ctx.schedule(Duration::from_millis(50), PunctuationType::WallClockTime)?;
        Ok(())
    }

    fn process(
        &mut self,
        _record: Record<String, String>,
        _ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }

    fn punctuate(
        &mut self,
        _schedule: streams_dsl::streams_core::ScheduleId,
        _timestamp: i64,
        _ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        if self.rebalancing.load(Ordering::SeqCst) {
            self.during.fetch_add(1, Ordering::SeqCst);
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// An instance of the ticker application with its counters: punctuations while rebalancing, all punctuations,
/// moves to Rebalancing.
#[allow(clippy::type_complexity)]
fn ticker_instance(
    broker: &Broker,
    dir: &std::path::Path,
) -> (
    KafkaStreams,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let rebalancing = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let rebalances = Arc::new(AtomicU64::new(0));
    let b = StreamsBuilder::new();
    let (r, d, t) = (rebalancing.clone(), during.clone(), total.clone());
    b.stream("ticks", Consumed::with(Serdes::string(), Serdes::string()))
        .process(
            move || Ticker {
                rebalancing: r.clone(),
                during: d.clone(),
                total: t.clone(),
            },
            &[],
        );
    let streams = KafkaStreams::new(b.build().unwrap(), broker.config("ticker", dir)).unwrap();
    let (r, n) = (rebalancing.clone(), rebalances.clone());
    // The listener runs on the stream thread, in the rebalance callback and when the assignment is applied, so
    // the flag is exact with respect to that thread's punctuations.
    streams.set_state_listener(move |_, to| {
        r.store(to == State::Rebalancing, Ordering::SeqCst);
        if to == State::Rebalancing {
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    (streams, during, total, rebalances)
}

/// Defect: after a revocation the tasks stayed in the thread until the next assignment, and their wall-clock
/// punctuations kept firing, writing after the commit that handed their partitions over. A second instance joining
/// makes the first one revoke; none of its punctuations may fire until the new assignment is applied.
#[test]
fn finding_wall_clock_punctuations_do_not_run_on_revoked_tasks() {
    let broker = Broker::embedded();
    broker.create_topic("ticks", 1);
    produce_words_to(&broker, "ticks");
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (a, during_a, total_a, rebalances_a) = ticker_instance(&broker, dir_a.path());
    a.start().unwrap();
    assert!(a.wait_for_state(State::Running, Duration::from_secs(60)));
    wait_until("punctuations", Duration::from_secs(30), || {
        total_a.load(Ordering::SeqCst) >= 10
    });
    assert_eq!(during_a.load(Ordering::SeqCst), 0);

    let (b, during_b, _, _) = ticker_instance(&broker, dir_b.path());
    b.start().unwrap();
    wait_until(
        "the first instance to rebalance and run again",
        Duration::from_secs(60),
        || {
            rebalances_a.load(Ordering::SeqCst) >= 2
                && a.state() == State::Running
                && b.state() == State::Running
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        during_a.load(Ordering::SeqCst),
        0,
        "wall-clock punctuations fired on revoked tasks"
    );
    assert_eq!(during_b.load(Ordering::SeqCst), 0);
    // Both leave together: closing one while the other rebalances after the first one's departure can take
    // longer than the close timeout (noted; not what this test is about).
    let (closed_a, closed_b) = std::thread::scope(|s| {
        let b = s.spawn(|| b.close(Duration::from_secs(60)));
        (a.close(Duration::from_secs(60)), b.join().unwrap())
    });
    assert!(closed_a && closed_b);
}

fn produce_words_to(broker: &Broker, topic: &str) {
    produce(
        &broker.bootstrap(),
        topic,
        &[(b"k".to_vec(), Some(b"v".to_vec()))],
    );
}
