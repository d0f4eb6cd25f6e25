//! Restoration as a bulk load: the changelog partitions of every task a thread must restore are read together,
//! and each store ends as a replay of its changelog (later records over earlier ones, tombstones deleting).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use streams_dsl::streams_core::runtime::{KafkaStreams, State, StateRestoreListener, TaskState};
use streams_dsl::*;
use tests::Broker;

const PARTITIONS: i32 = 4;
const STORES: [&str; 2] = ["a-counts", "b-counts"];

/// When a store partition's restoration started, and when it ended with how many records applied.
type Window = (Instant, Option<(Instant, u64)>);

/// Each store partition's restoration window.
#[derive(Default, Clone)]
struct Windows(Arc<Mutex<BTreeMap<(String, i32), Window>>>);

impl StateRestoreListener for Windows {
    fn on_restore_start(&self, store: &str, partition: i32, start: i64, end: i64) {
        eprintln!("restoring {store}-{partition} from {start}, listed end {end}");
        self.0
            .lock()
            .unwrap()
            .insert((store.to_string(), partition), (Instant::now(), None));
    }
    fn on_restore_end(&self, store: &str, partition: i32, restored: u64) {
        if let Some(w) = self
            .0
            .lock()
            .unwrap()
            .get_mut(&(store.to_string(), partition))
        {
            w.1 = Some((Instant::now(), restored));
        }
    }
}

/// One changelog record: key, value (`None`: tombstone).
type Entry = (String, Option<i64>);

/// Writes `records` to partition `partition` of `topic`, in order.
fn write(bootstrap: &str, topic: &str, partition: i32, records: &[Entry]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for (k, v) in records {
        let bytes = v.map(|v| v.to_be_bytes());
        let mut r: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).key(k.as_bytes());
        if let Some(b) = &bytes {
            r = r.payload(b);
        }
        let mut r = Some(r);
        while let Some(rec) = r.take() {
            if let Err((_, back)) = p.send(rec) {
                p.poll(Duration::from_millis(10));
                r = Some(back);
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// `n` records of store `store` partition `p` from sequence number `from`: keys are revisited, every seventh
/// record deletes its key.
fn records(store: usize, p: i32, from: usize, n: usize) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let key = format!("s{store}-p{p}-k{:05}", (i * 7919) % 3_000);
            let value = (i % 7 != 6).then_some(i as i64);
            (key, value)
        })
        .collect()
}

/// The store a replay of `log` leaves.
fn replay(log: &[Entry]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (k, v) in log {
        match v {
            Some(v) => m.insert(k.clone(), *v),
            None => m.remove(k),
        };
    }
    m
}

/// Orders counted per key into each of [`STORES`]: one sub-topology, so every task has both stores.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let orders = b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()));
    for store in STORES {
        orders
            .group_by_key(Grouped::new())
            .count(Materialized::as_store(store));
    }
    b.build().unwrap()
}

/// Writes the changelogs of [`STORES`]: `n` records per partition. Returns what each partition holds.
fn write_changelogs(broker: &Broker, n: usize) -> BTreeMap<(usize, i32), Vec<Entry>> {
    let mut logs = BTreeMap::new();
    for (si, store) in STORES.iter().enumerate() {
        let topic = format!("bulk-{store}-changelog");
        broker.create_topic(&topic, PARTITIONS);
        for p in 0..PARTITIONS {
            let r = records(si, p, 0, n);
            write(&broker.bootstrap(), &topic, p, &r);
            logs.insert((si, p), r);
        }
    }
    logs
}

fn start(broker: &Broker, dir: &std::path::Path, windows: &Windows) -> KafkaStreams {
    let streams = KafkaStreams::new(topology(), broker.config("bulk", dir)).unwrap();
    streams.set_restore_listener(windows.clone());
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(120)),
        "{:?}",
        streams.errors()
    );
    streams
}

/// Every store's entries, checked against the replay of the changelog from its first kept offset.
fn check_stores(
    streams: &KafkaStreams,
    broker: &Broker,
    logs: &BTreeMap<(usize, i32), Vec<Entry>>,
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for (si, store) in STORES.iter().enumerate() {
        let mut expected = BTreeMap::new();
        for p in 0..PARTITIONS {
            let topic = format!("bulk-{store}-changelog");
            let log = &logs[&(si, p)];
            let low = match broker {
                Broker::Embedded(_) => {
                    let (low, high) = c
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .unwrap();
                    assert_eq!(
                        high as usize,
                        log.len(),
                        "{topic}-{p} holds what was written"
                    );
                    // The embedded broker keeps a bounded log: the restore starts at its first kept offset.
                    low as usize
                }
                // tansu keeps every record (and lists partition ends short, which the restore must see past).
                Broker::Tansu { .. } => 0,
            };
            expected.extend(replay(&log[low..]));
        }
        let got: BTreeMap<String, i64> = streams
            .store::<String, i64>(store)
            .unwrap()
            .all()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got.len(), expected.len(), "entries of {store}");
        assert!(got == expected, "{store} is the replay of its changelog");
    }
}

/// Eight changelog partitions (two stores, four tasks, one thread) restored together into an empty state dir,
/// then, after a clean close and more changelog records, from their checkpoints.
#[test]
fn every_changelog_of_the_thread_restores_together_and_replays_exactly() {
    restores_together_and_replays_exactly(Broker::embedded());
}

/// The same on tansu, whose ListOffsets answers short of the partitions' ends: the restore reads on to the high
/// watermark of the fetch responses.
#[test]
fn on_tansu_every_changelog_restores_to_its_real_end() {
    restores_together_and_replays_exactly(Broker::tansu());
}

fn restores_together_and_replays_exactly(broker: Broker) {
    broker.create_topic("orders", PARTITIONS);
    let mut logs = write_changelogs(&broker, 15_000);
    let dir = tempfile::tempdir().unwrap();

    let windows = Windows::default();
    let streams = start(&broker, dir.path(), &windows);
    check_stores(&streams, &broker, &logs);
    {
        let w = windows.0.lock().unwrap();
        assert_eq!(
            w.len(),
            STORES.len() * PARTITIONS as usize,
            "{w:?}",
            w = w.keys()
        );
        let last_start = w.values().map(|(s, _)| *s).max().unwrap();
        let first_end = w
            .values()
            .map(|(_, e)| e.expect("every restoration ended").0)
            .min()
            .unwrap();
        // Read together: no partition waited for another to finish before it started.
        assert!(
            last_start < first_end,
            "restorations ran one after another: the last started {:?} after the first ended",
            last_start - first_end
        );
    }
    assert!(streams.close(Duration::from_secs(30)));

    // More changelog records (another instance ran the tasks meanwhile); the restart reads only those.
    let mut added = 0;
    for (si, store) in STORES.iter().enumerate() {
        let topic = format!("bulk-{store}-changelog");
        for p in 0..PARTITIONS {
            let more = records(si, p, 15_000, 1_000 * (p as usize + 1));
            added += more.len() as u64;
            write(&broker.bootstrap(), &topic, p, &more);
            logs.get_mut(&(si, p)).unwrap().extend(more);
        }
    }
    let windows = Windows::default();
    let streams = start(&broker, dir.path(), &windows);
    check_stores(&streams, &broker, &logs);
    let restored: u64 = windows
        .0
        .lock()
        .unwrap()
        .values()
        .map(|(_, e)| e.map_or(0, |e| e.1))
        .sum();
    assert_eq!(
        restored, added,
        "the restart read only what its checkpoints had not"
    );
    assert!(streams.close(Duration::from_secs(30)));
}

/// A listener whose every batch takes 300 ms: restorations last long enough for the group to change under them.
#[derive(Clone, Default)]
struct Slow(Arc<Mutex<u64>>);

impl StateRestoreListener for Slow {
    fn on_batch_restored(&self, _store: &str, _partition: i32, _restored: u64, _total: u64) {
        std::thread::sleep(Duration::from_millis(300));
    }
    fn on_restore_suspended(&self, _store: &str, _partition: i32, _restored: u64) {
        *self.0.lock().unwrap() += 1;
    }
}

/// Restorations cancelled part way (their tasks moved to another instance) keep and checkpoint what they read;
/// when the tasks come back, their restorations resume from those checkpoints and every store still ends as the
/// replay of its changelog. Instance A restores four tasks slowly, B joins (A's restorations of B's share are
/// cancelled) and leaves at once (they come back to A).
#[test]
fn restorations_cancelled_by_a_rebalance_resume_from_their_checkpoints() {
    let broker = Broker::embedded();
    broker.create_topic("orders", PARTITIONS);
    let logs = write_changelogs(&broker, 40_000);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = KafkaStreams::new(topology(), broker.config("bulk", dir_a.path())).unwrap();
    let slow = Slow::default();
    a.set_restore_listener(slow.clone());
    a.start().unwrap();
    tests::wait_until("A restoring", Duration::from_secs(60), || {
        a.metadata_for_local_threads()
            .iter()
            .any(|t| !t.active_tasks.is_empty())
    });
    let b = KafkaStreams::new(topology(), broker.config("bulk", dir_b.path())).unwrap();
    b.start().unwrap();
    // Once B has its share, A's restorations of those tasks were suspended; B leaves and A takes them back.
    tests::wait_until(
        "B to take part of the tasks",
        Duration::from_secs(60),
        || {
            b.metadata_for_local_threads()
                .iter()
                .any(|t| !t.active_tasks.is_empty())
        },
    );
    assert!(b.close(Duration::from_secs(30)));
    // A holds every task again, all restored, once the group has settled.
    tests::wait_until("A to run every task", Duration::from_secs(120), || {
        assert!(a.errors().is_empty(), "{:?}", a.errors());
        let running: usize = a
            .metadata_for_local_threads()
            .iter()
            .map(|t| {
                t.active_tasks
                    .iter()
                    .filter(|t| t.state == TaskState::Running)
                    .count()
            })
            .sum();
        a.state() == State::Running
            && running == PARTITIONS as usize
            && STORES
                .iter()
                .all(|s| a.store::<String, i64>(s).and_then(|s| s.all()).is_ok())
    });
    assert!(a.errors().is_empty(), "{:?}", a.errors());
    check_stores(&a, &broker, &logs);
    eprintln!("restorations suspended on A: {}", *slow.0.lock().unwrap());
    assert!(a.close(Duration::from_secs(30)));
}
