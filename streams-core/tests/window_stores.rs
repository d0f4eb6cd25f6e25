//! Window and session stores of the Processor API (Kafka Streams' `Stores.windowStoreBuilder` /
//! `sessionStoreBuilder`), used by custom processors through the test driver: results against independent
//! computations, retention expiry, a restart on the same RocksDB directories and a replay of the changelog.

use std::collections::BTreeMap;
use std::time::Duration;

use state_store::{KeyValueStore, SegmentKeySchema, SegmentedKeyValueStore, SessionStore};
use streams_core::{
    Processor, ProcessorContext, Record, Serdes, SessionStoreBuilder, SinkOptions, SourceOptions,
    StoreKind, StreamsError, Topology, TopologyTestDriver, Window, WindowStore, WindowStoreBuilder,
};

const SIZE: i64 = 10_000;
const RETENTION: i64 = 240_000;
/// Kafka's segment interval for that retention: half of it (at least a minute).
const INTERVAL: i64 = 120_000;

/// Sums amounts per user and 10 s window, forwarding each new sum.
#[derive(Default)]
struct WindowSum {
    store: Option<WindowStore<String, i64>>,
}

impl Processor<String, i64> for WindowSum {
    type KOut = String;
    type VOut = i64;

    fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
        self.store = Some(ctx.window_store("sums")?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_mut().expect("opened in init");
        let start = r.timestamp - r.timestamp % SIZE;
        let sum = store.fetch(&r.key, start)?.unwrap_or(0) + r.value;
        store.put(&r.key, start, Some(&sum))?;
        ctx.forward(Record {
            key: r.key,
            value: sum,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

fn window_topology(kind: StoreKind) -> Topology {
    let mut t = Topology::new();
    t.add_source(
        "in",
        &["amounts"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    t.add_processor::<String, i64, _, _>("sum", WindowSum::default, &["in"])
        .unwrap();
    t.add_window_store(
        WindowStoreBuilder::new(
            "sums",
            kind,
            Serdes::string(),
            Serdes::i64(),
            Duration::from_millis(RETENTION as u64),
            Duration::from_millis(SIZE as u64),
            false,
        ),
        &["sum"],
    )
    .unwrap();
    t.add_sink(
        "out",
        "sums",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["sum"],
    )
    .unwrap();
    t
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Thirty minutes of amounts of four users, a record every 0 to 3 s, some up to 5 minutes late.
fn amounts() -> Vec<(String, i64, i64)> {
    let mut rng = Rng(42);
    let mut t = 0;
    let mut out = Vec::new();
    while t < 1_800_000 {
        t += rng.next(3_000) as i64;
        let late = if rng.next(10) == 0 {
            rng.next(300_000) as i64
        } else {
            0
        };
        out.push((
            format!("user-{}", rng.next(4)),
            1 + rng.next(9) as i64,
            (t - late).max(0),
        ));
    }
    out
}

/// Kafka's window store semantics, computed directly: the store's time is the newest window start put, and a
/// window whose start is `RETENTION` or more behind it is neither read nor written.
struct WindowModel {
    sums: BTreeMap<(String, i64), i64>,
    observed: i64,
}

impl WindowModel {
    fn live(&self, start: i64) -> bool {
        start > self.observed - RETENTION
    }

    fn add(&mut self, key: &str, amount: i64, t: i64) -> i64 {
        let start = t - t % SIZE;
        let prev = if self.live(start) {
            self.sums.get(&(key.to_string(), start)).copied()
        } else {
            None
        };
        let sum = prev.unwrap_or(0) + amount;
        self.observed = self.observed.max(start);
        if self.live(start) {
            self.sums.insert((key.to_string(), start), sum);
        }
        sum
    }
}

fn run_window_store(kind: StoreKind, state_dir: Option<&std::path::Path>) {
    let mut builder = TopologyTestDriver::builder(window_topology(kind));
    if let Some(dir) = state_dir {
        builder = builder.state_dir(dir);
    }
    let driver = builder.build().unwrap();
    let input = driver.input_topic("amounts", Serdes::string(), Serdes::i64());
    let mut model = WindowModel {
        sums: BTreeMap::new(),
        observed: i64::MIN / 2,
    };
    let mut expected = Vec::new();
    for (key, amount, t) in amounts() {
        expected.push((key.clone(), model.add(&key, amount, t)));
        input.pipe_input_at(key, amount, t).unwrap();
    }
    let out = driver.output_topic("sums", Serdes::string(), Serdes::i64());
    assert_eq!(out.read_key_values_to_vec().unwrap(), expected);

    // What the store holds: every live window with the model's sum, and nothing from a segment wholly out of
    // retention (the read-only view reads everything still held).
    let floor = (model.observed - RETENTION + 1).div_euclid(INTERVAL) * INTERVAL;
    let held = driver
        .window_store::<String, i64>("sums")
        .unwrap()
        .all()
        .unwrap();
    assert!(held.len() < model.sums.len(), "nothing expired");
    assert!(
        held.iter().all(|(w, _)| w.window.start >= floor),
        "a window of an expired segment is still held"
    );
    let live: Vec<_> = held
        .iter()
        .filter(|(w, _)| model.live(w.window.start))
        .map(|(w, v)| ((w.key.clone(), w.window.start), *v))
        .collect();
    let want: Vec<_> = model
        .sums
        .iter()
        .filter(|((_, s), _)| model.live(*s))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(live, want);

    // The changelog rebuilds exactly what is held: expired windows were deleted with tombstones.
    let changelog = driver.output_topic(
        &Topology::changelog_topic("test-app", "sums"),
        Serdes::bytes(),
        Serdes::option(Serdes::bytes()),
    );
    let mut replay = SegmentedKeyValueStore::in_memory("sums", SegmentKeySchema::Window, INTERVAL);
    for (k, v) in changelog.read_key_values_to_vec().unwrap() {
        match v {
            Some(v) => replay.put(&k, &v).unwrap(),
            None => {
                replay.delete(&k).unwrap();
            }
        }
    }
    let mut restored = WindowStore::new(
        state_store::share(Box::new(replay)),
        std::sync::Arc::new(Serdes::string()),
        std::sync::Arc::new(Serdes::i64()),
        SIZE,
        RETENTION,
    );
    assert_eq!(restored.all().unwrap(), held);
    restored.observe_stream_time(model.observed);
    assert_eq!(restored.all().unwrap().len(), want.len());
    driver.close().unwrap();

    // A restart on the same directories reopens the segments as they were.
    if let Some(dir) = state_dir {
        let again = TopologyTestDriver::builder(window_topology(kind))
            .state_dir(dir)
            .build()
            .unwrap();
        let reopened = again
            .window_store::<String, i64>("sums")
            .unwrap()
            .all()
            .unwrap();
        assert_eq!(reopened, held);
        again.close().unwrap();
    }
}

#[test]
fn window_store_sums_match_a_model_in_memory() {
    run_window_store(StoreKind::InMemory, None);
}

#[test]
fn window_store_sums_match_a_model_in_rocksdb_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("window-stores-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run_window_store(StoreKind::RocksDb, Some(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

const GAP: i64 = 5_000;

/// Counts each user's records per session (inactivity gap 5 s), forwarding each new count.
#[derive(Default)]
struct SessionCount {
    store: Option<SessionStore<String, i64>>,
}

impl Processor<String, i64> for SessionCount {
    type KOut = String;
    type VOut = i64;

    fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
        self.store = Some(ctx.session_store("sessions")?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_mut().expect("opened in init");
        let t = r.timestamp;
        let mut window = Window::new(t, t);
        let mut count = 1;
        for (w, c) in store.find_sessions(&r.key, t - GAP, t + GAP)? {
            store.remove(&r.key, w)?;
            window = Window::new(window.start.min(w.start), window.end.max(w.end));
            count += c;
        }
        store.put(&r.key, window, &count)?;
        ctx.forward(Record {
            key: r.key,
            value: count,
            timestamp: t,
            headers: r.headers,
        })
    }
}

#[test]
fn session_store_counts_match_sessions_computed_offline() {
    let mut t = Topology::new();
    t.add_source(
        "in",
        &["clicks"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    t.add_processor::<String, i64, _, _>("count", SessionCount::default, &["in"])
        .unwrap();
    t.add_session_store(
        SessionStoreBuilder::new(
            "sessions",
            StoreKind::InMemory,
            Serdes::string(),
            Serdes::i64(),
            Duration::from_millis(RETENTION as u64),
        ),
        &["count"],
    )
    .unwrap();
    t.add_sink(
        "out",
        "counts",
        SinkOptions::new(Serdes::string(), Serdes::i64()),
        &["count"],
    )
    .unwrap();
    let driver = TopologyTestDriver::new(t).unwrap();
    let input = driver.input_topic("clicks", Serdes::string(), Serdes::i64());
    // In time order, so sessions are simply runs of a user's records less than a gap apart.
    let mut rng = Rng(7);
    let mut now = 0;
    let mut clicks = Vec::new();
    while now < 1_800_000 {
        now += rng.next(4_000) as i64;
        clicks.push((format!("user-{}", rng.next(3)), now));
    }
    // Offline: per user, sessions as (start, end, count), and the count each click must produce.
    let mut sessions: BTreeMap<String, Vec<(i64, i64, i64)>> = BTreeMap::new();
    let mut expected = Vec::new();
    for (user, at) in &clicks {
        let list = sessions.entry(user.clone()).or_default();
        match list.last_mut() {
            Some(last) if at - last.1 <= GAP => {
                last.1 = *at;
                last.2 += 1;
            }
            _ => list.push((*at, *at, 1)),
        }
        expected.push((user.clone(), list.last().unwrap().2));
        input.pipe_input_at(user.clone(), 1, *at).unwrap();
    }
    let out = driver.output_topic("counts", Serdes::string(), Serdes::i64());
    assert_eq!(out.read_key_values_to_vec().unwrap(), expected);
    // Retention counts from the newest session end put; whole expired segments are gone.
    let newest = clicks.last().unwrap().1;
    let floor = (newest - RETENTION).div_euclid(INTERVAL) * INTERVAL;
    let view = driver.session_store::<String, i64>("sessions").unwrap();
    let mut held = Vec::new();
    for user in sessions.keys() {
        held.extend(view.fetch(user).unwrap());
    }
    assert!(held.iter().all(|(w, _)| w.window.end >= floor));
    let total: usize = sessions.values().map(Vec::len).sum();
    assert!(held.len() < total, "nothing expired");
    let live_held: Vec<_> = held
        .iter()
        .filter(|(w, _)| w.window.end >= newest - RETENTION)
        .map(|(w, c)| (w.key.clone(), w.window.start, w.window.end, *c))
        .collect();
    let live_want: Vec<_> = sessions
        .iter()
        .flat_map(|(u, l)| l.iter().map(move |(s, e, c)| (u.clone(), *s, *e, *c)))
        .filter(|(_, _, e, _)| *e >= newest - RETENTION)
        .collect();
    assert_eq!(live_held, live_want);
}

#[test]
fn a_window_store_with_a_retention_shorter_than_its_windows_is_refused() {
    let mut t = Topology::new();
    let err = t
        .add_window_store(
            WindowStoreBuilder::new(
                "w",
                StoreKind::InMemory,
                Serdes::string(),
                Serdes::i64(),
                Duration::from_secs(1),
                Duration::from_secs(10),
                false,
            ),
            &[],
        )
        .expect_err("refused");
    assert!(err.to_string().contains("window store 'w'"), "{err}");
}

#[test]
fn a_key_value_store_is_not_opened_as_a_window_store() {
    struct Opener;
    impl Processor<String, i64> for Opener {
        type KOut = String;
        type VOut = i64;
        fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<(), StreamsError> {
            ctx.window_store::<String, i64>("plain").map(|_| ())
        }
        fn process(
            &mut self,
            _: Record<String, i64>,
            _: &mut ProcessorContext<String, i64>,
        ) -> Result<(), StreamsError> {
            Ok(())
        }
    }
    let mut t = Topology::new();
    t.add_source(
        "in",
        &["in"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    t.add_processor::<String, i64, _, _>("p", || Opener, &["in"])
        .unwrap();
    t.add_state_store(
        streams_core::KeyValueStoreBuilder::new(
            "plain",
            StoreKind::InMemory,
            state_store::TimeWindowedSerde::new(std::sync::Arc::new(Serdes::string()), 10),
            Serdes::i64(),
        ),
        &["p"],
    )
    .unwrap();
    let err = TopologyTestDriver::new(t).err().expect("refused");
    assert!(err.to_string().contains("not a window store"), "{err}");
}
