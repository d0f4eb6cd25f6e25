//! State that must survive operator mistakes and races, each case a defect found in the runtime:
//!
//! - a store whose directory went missing kept its checkpoint, and a restart trusted it: only the changelog's
//!   tail was restored into an empty store;
//! - a store rebuilt from the start kept its old checkpoint entry while it was being rebuilt, so a crash part way
//!   would have left a half-restored store trusted to be complete;
//! - two instances of an application on one state directory both started and wrote the same task directories;
//! - a store held open by someone else was taken for a corrupt one and deleted under its holder;
//! - malformed bytes in an operator's store (from a foreign changelog record) panicked the stream thread;
//! - a changelog or global topic ending in a transaction marker never finished restoring: restoration waited for a
//!   record at the end offset, and markers are never delivered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streams_dsl::streams_core::runtime::{KafkaStreams, State, StateRestoreListener};
use streams_dsl::*;
use tests::{produce, produce_at, Broker};

const STORE: &str = "event-counts";

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store(STORE));
    b.build().unwrap()
}

type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// `n` events over 7 keys, and the counts they must give.
fn events(n: usize) -> (Records, Vec<(String, i64)>) {
    let mut reference: BTreeMap<String, i64> = BTreeMap::new();
    let records = (0..n)
        .map(|i| {
            let key = format!("k{}", (i * 5 + i / 3) % 7);
            *reference.entry(key.clone()).or_default() += 1;
            (key.into_bytes(), Some(b"e".to_vec()))
        })
        .collect();
    (records, reference.into_iter().collect())
}

fn wait_processed(streams: &KafkaStreams, n: u64) {
    let start = Instant::now();
    while streams.metrics().processed < n && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        streams.metrics().processed >= n,
        "processed {} of {n}: {:?}",
        streams.metrics().processed,
        streams.errors()
    );
}

fn counts(streams: &KafkaStreams) -> Vec<(String, i64)> {
    streams.store::<String, i64>(STORE).unwrap().all().unwrap()
}

/// Runs the application over `records` once, from a fresh state directory, and closes it cleanly (which writes
/// the checkpoint).
fn first_run(broker: &Broker, app: &str, dir: &std::path::Path, n: usize) -> Vec<(String, i64)> {
    let (records, reference) = events(n);
    produce(&broker.bootstrap(), "events", &records);
    let streams = KafkaStreams::new(topology(), broker.config(app, dir)).unwrap();
    streams.start().unwrap();
    wait_processed(&streams, n as u64);
    assert_eq!(counts(&streams), reference);
    assert!(streams.close(Duration::from_secs(30)));
    let checkpoint = std::fs::read_to_string(dir.join(app).join("0_0/.checkpoint"))
        .expect("a clean close writes a checkpoint");
    assert!(checkpoint.contains(&format!("{app}-{STORE}-changelog 0 ")));
    reference
}

#[test]
fn finding_a_store_whose_directory_went_missing_does_not_trust_its_checkpoint() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(&broker, "missing", dir.path(), 200);

    // The store's files are gone (a disk replaced, a volume remounted, an operator's rm), the checkpoint stays.
    std::fs::remove_dir_all(dir.path().join("missing/0_0").join(STORE)).unwrap();

    let streams = KafkaStreams::new(topology(), broker.config("missing", dir.path())).unwrap();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        streams.errors()
    );
    tests::wait_until("the store is restored", Duration::from_secs(30), || {
        streams
            .store::<String, i64>(STORE)
            .and_then(|s| s.all())
            .map(|c| c == reference)
            .unwrap_or(false)
    });
    assert_eq!(counts(&streams), reference);
    assert!(streams.close(Duration::from_secs(30)));
}

/// Records, when a restoration starts, whether the task's checkpoint still names the changelog partition.
#[derive(Clone)]
struct CheckpointAtRestoreStart {
    checkpoint: std::path::PathBuf,
    changelog: String,
    seen: Arc<Mutex<Vec<(i64, bool)>>>,
}

impl StateRestoreListener for CheckpointAtRestoreStart {
    fn on_restore_start(&self, _store: &str, _partition: i32, start: i64, _end: i64) {
        let text = std::fs::read_to_string(&self.checkpoint).unwrap_or_default();
        let named = text.lines().any(|l| l.starts_with(&self.changelog));
        self.seen.lock().unwrap().push((start, named));
    }
}

#[test]
fn finding_a_store_rebuilt_from_the_start_loses_its_checkpoint_entry_before_the_rebuild() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(&broker, "rebuilt", dir.path(), 150);
    std::fs::write(
        dir.path().join("rebuilt/0_0").join(STORE).join("CURRENT"),
        b"garbage\n",
    )
    .unwrap();

    let listener = CheckpointAtRestoreStart {
        checkpoint: dir.path().join("rebuilt/0_0/.checkpoint"),
        changelog: format!("rebuilt-{STORE}-changelog 0 "),
        seen: Arc::default(),
    };
    let streams = KafkaStreams::new(topology(), broker.config("rebuilt", dir.path())).unwrap();
    streams.set_restore_listener(listener.clone());
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        streams.errors()
    );
    assert_eq!(counts(&streams), reference);
    let seen = listener.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one restoration: {seen:?}");
    let (start, named) = seen[0];
    assert_eq!(start, 0, "the corrupt store is rebuilt from the start");
    assert!(
        !named,
        "while the store is rebuilt from offset 0, the checkpoint still claims it is complete"
    );
    assert!(streams.close(Duration::from_secs(30)));
    // The next clean close checkpoints it again.
    let text = std::fs::read_to_string(dir.path().join("rebuilt/0_0/.checkpoint")).unwrap();
    assert!(
        text.contains(&format!("rebuilt-{STORE}-changelog 0 ")),
        "{text}"
    );
}

#[test]
fn finding_two_instances_on_one_state_directory_are_refused() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let (records, reference) = events(100);
    produce(&broker.bootstrap(), "events", &records);
    let first = KafkaStreams::new(topology(), broker.config("shared", dir.path())).unwrap();
    first.start().unwrap();
    wait_processed(&first, 100);

    let second = KafkaStreams::new(topology(), broker.config("shared", dir.path())).unwrap();
    match second.start() {
        Err(StreamsError::StateDirLocked { path }) => {
            assert_eq!(path, dir.path().join("shared").display().to_string());
        }
        other => panic!("a second instance on the same state directory: {other:?}"),
    }
    let message = StreamsError::StateDirLocked {
        path: "/x/shared".into(),
    }
    .to_string();
    assert!(
        message.contains("/x/shared") && message.contains("state.dir"),
        "{message}"
    );

    // The first one is untouched, and once it closes the directory can be taken.
    assert_eq!(counts(&first), reference);
    assert!(first.close(Duration::from_secs(30)));
    let third = KafkaStreams::new(topology(), broker.config("shared", dir.path())).unwrap();
    third.start().unwrap();
    assert!(third.wait_for_state(State::Running, Duration::from_secs(60)));
    assert_eq!(counts(&third), reference);
    assert!(third.close(Duration::from_secs(30)));
}

#[test]
fn finding_a_store_held_open_elsewhere_is_waited_for_not_wiped() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(&broker, "held", dir.path(), 120);
    let store_dir = dir.path().join("held/0_0").join(STORE);

    // Someone (a backup tool, a stuck thread) holds the store's RocksDB files for eight seconds.
    let resources = state_store::RocksDbResources::new(8 << 20, 8 << 20);
    let holder = state_store::RocksDbKeyValueStore::open(STORE, &store_dir, &resources).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let release = {
        let released = released.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(8));
            let mut holder = holder;
            state_store::KeyValueStore::close(&mut holder).unwrap();
            drop(holder);
            released.store(true, Ordering::SeqCst);
        })
    };

    let streams = KafkaStreams::new(topology(), broker.config("held", dir.path())).unwrap();
    let restored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    streams.set_restore_listener(tests::CountingRestores(restored.clone()));
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        streams.errors()
    );
    release.join().unwrap();
    assert!(released.load(Ordering::SeqCst));
    assert_eq!(counts(&streams), reference);
    assert_eq!(
        restored.load(Ordering::Relaxed),
        0,
        "the store was kept (its checkpoint is current), not wiped and restored"
    );
    assert!(streams.close(Duration::from_secs(30)));
}

fn suppressed_topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .count(Materialized::as_store("minute-counts"))
        .suppress(Suppressed::until_window_closes().with_name("final"))
        .to_stream()
        .map(|k, n| (k.key, n.unwrap_or(0)))
        .to(
            "final-counts",
            Produced::with(Serdes::string(), Serdes::i64()),
        );
    b.build().unwrap()
}

#[test]
fn finding_malformed_bytes_in_a_suppress_buffer_fail_loudly_not_in_a_panic() {
    let broker = Broker::embedded();
    broker.create_topic("events", 1);
    broker.create_topic("final-counts", 1);
    broker.create_topic("bad-buffer-final-store-changelog", 1);
    // Something other than the application wrote to the suppression buffer's changelog: an entry too short for
    // the buffer's layout (window end, then the windowed key).
    produce(
        &broker.bootstrap(),
        "bad-buffer-final-store-changelog",
        &[(b"abc".to_vec(), Some(b"x".to_vec()))],
    );
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        suppressed_topology(),
        broker.config("bad-buffer", dir.path()),
    )
    .unwrap();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Error, Duration::from_secs(60)),
        "the instance reports {:?} with a malformed buffer entry",
        streams.state()
    );
    let errors = streams.errors().join("\n");
    assert!(errors.contains("final-store"), "{errors}");
    assert!(errors.contains("3 bytes"), "{errors}");
}

/// Writes `records` to `topic` in one committed transaction: the partition then ends with a commit marker, a
/// control record no consumer ever receives.
fn produce_in_transaction(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", "changelog-writer")
            .create()
            .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    producer.begin_transaction().expect("begin");
    for (k, v) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).key(k.as_slice());
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
}

#[test]
fn finding_a_changelog_ending_in_a_transaction_marker_finishes_restoring() {
    // tansu writes transaction markers into the log as Kafka does (the embedded broker does not).
    let broker = Broker::tansu();
    broker.create_topic("events", 1);
    let changelog = format!("marker-{STORE}-changelog");
    broker.create_topic(&changelog, 1);
    // The store's changelog as another writer (an exactly-once instance) leaves it: counts, then a commit marker.
    let mut reference = Vec::new();
    let mut records = Vec::new();
    for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
        let n = (i as i64 + 1) * 3;
        reference.push((key.to_string(), n));
        records.push((key.as_bytes().to_vec(), Some(n.to_be_bytes().to_vec())));
    }
    produce_in_transaction(&broker.bootstrap(), &changelog, &records);
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", "watermarks")
            .create()
            .unwrap();
        let (low, high) = c
            .fetch_watermarks(&changelog, 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            (low, high),
            (0, records.len() as i64 + 1),
            "the changelog ends with the commit marker"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology(), broker.config("marker", dir.path())).unwrap();
    let restored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    streams.set_restore_listener(tests::CountingRestores(restored.clone()));
    let started = Instant::now();
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?} {:?}",
        streams.state(),
        streams.errors()
    );
    tests::wait_until("the store is restored", Duration::from_secs(20), || {
        streams
            .store::<String, i64>(STORE)
            .and_then(|s| s.all())
            .map(|c| c == reference)
            .unwrap_or(false)
    });
    assert_eq!(restored.load(Ordering::Relaxed), 4);
    assert!(
        streams.errors().is_empty(),
        "restoration errors: {:?}",
        streams.errors()
    );
    eprintln!("restored past the marker in {:?}", started.elapsed());
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn finding_a_global_topic_ending_in_a_transaction_marker_finishes_restoring() {
    let broker = Broker::tansu();
    broker.create_topic("rates", 1);
    broker.create_topic("orders", 1);
    broker.create_topic("orders-with-rates", 1);
    let records: Vec<_> = (0..5)
        .map(|i| {
            (
                format!("r{i}").into_bytes(),
                Some(format!("{}", i * 10).into_bytes()),
            )
        })
        .collect();
    produce_in_transaction(&broker.bootstrap(), "rates", &records);
    let b = StreamsBuilder::new();
    let rates = b.global_table::<String, String>(
        "rates",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_store("rates-store"),
    );
    b.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .left_join_global(
            &rates,
            |_, k| k.clone(),
            |k, r| format!("{k}={}", r.map_or("none", String::as_str)),
        )
        .to(
            "orders-with-rates",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    let dir = tempfile::tempdir().unwrap();
    let streams =
        KafkaStreams::new(b.build().unwrap(), broker.config("gmarker", dir.path())).unwrap();
    // start() returns once the global store is restored; before the fix it failed after 30 s without progress.
    streams.start().unwrap();
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(60)),
        "{:?}",
        streams.errors()
    );
    let got = streams
        .store::<String, String>("rates-store")
        .unwrap()
        .all()
        .unwrap();
    let want: Vec<(String, String)> = (0..5)
        .map(|i| (format!("r{i}"), format!("{}", i * 10)))
        .collect();
    assert_eq!(got, want);
    assert!(streams.close(Duration::from_secs(30)));
}

/// Notes when each restoration starts and ends.
#[derive(Clone, Default)]
struct RestoreEnds(
    Arc<Mutex<Vec<(String, u64, Instant)>>>,
    Arc<Mutex<Vec<Instant>>>,
);

impl StateRestoreListener for RestoreEnds {
    fn on_restore_start(&self, _store: &str, _partition: i32, _start: i64, _end: i64) {
        self.1.lock().unwrap().push(Instant::now());
    }

    fn on_restore_end(&self, store: &str, _partition: i32, restored: u64) {
        self.0
            .lock()
            .unwrap()
            .push((store.to_string(), restored, Instant::now()));
    }

    /// Each batch takes a while longer: a bulk restore of the whole changelog can end within a few hundred
    /// milliseconds, sooner than the other task's first fetch, which would leave nothing to observe.
    fn on_batch_restored(&self, _store: &str, _partition: i32, _restored: u64, _total: u64) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding: restoration ran inside the poll loop, so the other tasks of the thread stopped until it ended (and
/// a restoration longer than `max.poll.interval.ms` got the member evicted). Now the state updater restores
/// beside the loop: a stateless task of the same thread processes while a large changelog is restored, and the
/// restored store holds every key of the changelog.
///
/// `STREAMS_RESTORE_KEYS` sets the changelog's size (default 200,000); `STREAMS_RESTORE_ON_TANSU=1` runs it on
/// tansu, which keeps the whole changelog (the embedded broker's log is bounded).
#[test]
fn finding_other_tasks_of_the_thread_process_while_a_store_restores() {
    let keys: usize = std::env::var("STREAMS_RESTORE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let broker = if std::env::var_os("STREAMS_RESTORE_ON_TANSU").is_some() {
        Broker::tansu()
    } else {
        Broker::embedded()
    };
    broker.create_topic("clicks", 1);
    broker.create_topic("clicks-out", 1);
    broker.create_topic("orders", 1);
    let app = "beside";
    let changelog = format!("{app}-order-counts-changelog");
    broker.create_topic(&changelog, 1);
    // The count store's changelog as a previous owner left it: one count per key.
    let state: Records = (0..keys)
        .map(|i| {
            (
                format!("customer-{i:07}").into_bytes(),
                Some(((i % 97) as i64 + 1).to_be_bytes().to_vec()),
            )
        })
        .collect();
    let produced = Instant::now();
    produce(&broker.bootstrap(), &changelog, &state);
    eprintln!(
        "changelog of {keys} keys written in {:.1?}",
        produced.elapsed()
    );
    let low = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
        let (low, high) = c
            .fetch_watermarks(&changelog, 0, Duration::from_secs(10))
            .unwrap();
        // tansu reports one past the last batch's base offset as the end; the restorer reads on to the real end.
        assert!(
            high > 0 && high <= keys as i64,
            "the changelog's end: {high}"
        );
        // The embedded broker keeps a bounded log: the oldest records may be gone already.
        low as usize
    };

    // A backlog of clicks for the stateless task.
    let clicks: Vec<String> = (0..100_000).map(|i| format!("click-{i}")).collect();
    let backlog: Records = clicks
        .iter()
        .map(|c| (b"u".to_vec(), Some(c.clone().into_bytes())))
        .collect();
    produce(&broker.bootstrap(), "clicks", &backlog);

    let b = StreamsBuilder::new();
    b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v: String| v.to_uppercase())
        .to(
            "clicks-out",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    b.stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("order-counts"));
    let topology = b.build().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(topology, broker.config(app, dir.path())).unwrap();
    let ends = RestoreEnds::default();
    streams.set_restore_listener(ends.clone());
    // Every output click and when it arrived.
    let arrivals = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", "click-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&["clicks-out"]).unwrap();
        let (arrivals, done) = (arrivals.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                    arrivals.lock().unwrap().push((v, Instant::now()));
                }
            }
        })
    };
    let started = Instant::now();
    streams.start().unwrap();

    // Records processed by the instance over time: until the count task is restored, only clicks.
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    while streams.state() != State::Running && started.elapsed() < Duration::from_secs(300) {
        samples.push((Instant::now(), streams.metrics().processed));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        streams.wait_for_state(State::Running, Duration::from_secs(300)),
        "{:?}",
        streams.errors()
    );
    let restored_at = {
        let e = ends.0.lock().unwrap();
        let (_, restored, at) = e
            .iter()
            .find(|(s, _, _)| s == "order-counts")
            .cloned()
            .expect("the count store was restored");
        assert_eq!(
            restored,
            (keys - low) as u64,
            "every changelog record restored"
        );
        at
    };
    tests::wait_until("every click is out", Duration::from_secs(120), || {
        arrivals.lock().unwrap().len() >= clicks.len()
    });
    let finished = Instant::now();
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let arrivals = arrivals.lock().unwrap().clone();
    let got: Vec<&str> = arrivals.iter().map(|(v, _)| v.as_str()).collect();
    let expected: Vec<String> = clicks.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, expected, "every click, in order, upper-cased");
    // Clicks were processed before the restoration ended: the stateless task did not wait for the stateful one.
    let restore_started = ends.1.lock().unwrap().first().copied().unwrap();
    let window = restored_at.saturating_duration_since(restore_started);
    // Clicks processed between the restoration's start and end, from the instance's own counter.
    let processed_at = |t: Instant| {
        samples
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |(_, n)| *n)
    };
    let before = processed_at(restore_started);
    let during = processed_at(restored_at) - before;
    let after = clicks.len() as u64 - before - during;
    eprintln!(
        "restoring {} records took {window:.1?} ({:.0} records/s; {:.1?} after start()); the other task of the \
         thread processed {before} clicks before, {during} during ({:.0}/s) and {after} after it; every click \
         was out {:.1?} after the restoration ended",
        keys - low,
        (keys - low) as f64 / window.as_secs_f64().max(0.001),
        restored_at.saturating_duration_since(started),
        during as f64 / window.as_secs_f64().max(0.001),
        finished.saturating_duration_since(restored_at),
    );
    assert!(
        before + during > 0,
        "no click processed before the restoration of {window:?} ended"
    );
    // The restored store holds the changelog's counts.
    let store = streams.store::<String, i64>("order-counts").unwrap();
    for i in (low..keys).step_by((keys - low) / 10 + 1) {
        assert_eq!(
            store.get(&format!("customer-{i:07}")).unwrap(),
            Some((i % 97) as i64 + 1)
        );
    }
    assert!(streams.close(Duration::from_secs(30)));
}

fn window_counts(streams: &KafkaStreams) -> BTreeMap<(String, i64), i64> {
    streams
        .store::<Windowed<String>, i64>("window-counts")
        .and_then(|s| s.all())
        .map(|all| {
            all.into_iter()
                .map(|(w, n)| ((w.key, w.window.start), n))
                .collect()
        })
        .unwrap_or_default()
}

/// Finding: stream time was not kept across restarts (Kafka Streams commits each partition's time in the
/// offset metadata), so after a restart a record far behind the old stream time was accepted into a window that
/// had closed. Kafka's rule (KStreamWindowAggregate): a record is dropped when its window's end plus grace is at
/// or before stream time; the restarted task must still know stream time 100 s.
#[test]
fn finding_stream_time_survives_a_restart_so_late_records_stay_dropped() {
    let broker = Broker::embedded();
    broker.create_topic("readings", 1);
    let topology = || {
        let b = StreamsBuilder::new();
        b.stream(
            "readings",
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::as_store("window-counts").with_retention(Duration::from_secs(3600)));
        b.build().unwrap()
    };
    let record = |t: i64| (b"a".to_vec(), Some(b"r".to_vec()), Some(t));
    let dir = tempfile::tempdir().unwrap();

    produce_at(
        &broker.bootstrap(),
        "readings",
        &[record(1_000), record(100_000)],
    );
    let first = KafkaStreams::new(topology(), broker.config("time", dir.path())).unwrap();
    first.start().unwrap();
    wait_processed(&first, 2);
    assert!(first.close(Duration::from_secs(30)));

    // After the restart: a record for the window [0 s, 10 s), closed since stream time reached 100 s, then one
    // in the current window.
    produce_at(
        &broker.bootstrap(),
        "readings",
        &[record(2_000), record(100_500)],
    );
    let second = KafkaStreams::new(topology(), broker.config("time", dir.path())).unwrap();
    second.start().unwrap();
    wait_processed(&second, 2);
    let expected: BTreeMap<(String, i64), i64> =
        [(("a".to_string(), 0), 1), (("a".to_string(), 100_000), 2)].into();
    tests::wait_until(
        "the current window's count",
        Duration::from_secs(30),
        || window_counts(&second).get(&("a".to_string(), 100_000)) == Some(&2),
    );
    assert_eq!(
        window_counts(&second),
        expected,
        "the late record is dropped"
    );
    assert_eq!(second.metrics().dropped_records, 1);
    assert!(second.close(Duration::from_secs(30)));
}
