//! Window and session stores kept in time segments, checked against ordered maps as models: random writes,
//! deletes and advancing stream time, with expiry, under the cache and changelog layers, then a restore from the
//! changelog; plus the cost of expiry on a million entries, segmented or not (printed, not asserted).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use state_store::{
    share, CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore, KeyValueStore,
    SegmentKeySchema, SegmentedKeyValueStore, Serdes, SessionStore, SharedKeyValueStore,
    StoreError, Window, WindowStore, Windowed,
};

type Log = Arc<Mutex<Vec<(Vec<u8>, Option<Vec<u8>>)>>>;

/// A segmented in-memory store under a changelog layer and (when `cache_bytes > 0`) a cache; the changelog's
/// records are collected in the returned log.
fn stack(
    schema: SegmentKeySchema,
    interval: i64,
    cache_bytes: usize,
) -> (SharedKeyValueStore, Log) {
    let log: Log = Arc::default();
    let sink_log = log.clone();
    let sink = move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> {
        sink_log
            .lock()
            .unwrap()
            .push((k.to_vec(), v.map(<[u8]>::to_vec)));
        Ok(())
    };
    let logged = ChangeLoggingKeyValueStore::new(
        SegmentedKeyValueStore::in_memory("w", schema, interval),
        sink,
    );
    let store: Box<dyn KeyValueStore> = if cache_bytes > 0 {
        Box::new(CachingKeyValueStore::new(logged, cache_bytes))
    } else {
        Box::new(logged)
    };
    (share(store), log)
}

/// A fresh segmented store with the changelog `log` replayed into it, as a restore does.
fn restored(schema: SegmentKeySchema, interval: i64, log: &Log) -> SharedKeyValueStore {
    let mut store = SegmentedKeyValueStore::in_memory("w", schema, interval);
    for (k, v) in log.lock().unwrap().iter() {
        match v {
            Some(v) => store.put(k, v).unwrap(),
            None => {
                store.delete(k).unwrap();
            }
        }
    }
    share(Box::new(store))
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

const RETENTION: i64 = 200;
const INTERVAL: i64 = 50;

fn window_store(bytes: SharedKeyValueStore) -> WindowStore<String, i64> {
    WindowStore::new(
        bytes,
        Arc::new(Serdes::string()),
        Arc::new(Serdes::i64()),
        10,
        RETENTION,
    )
}

/// The model's live windows at stream time `t`, as the store must return them: ordered by key then start.
fn live_windows(model: &BTreeMap<(String, i64), i64>, t: i64) -> Vec<(Windowed<String>, i64)> {
    let earliest = t - RETENTION + 1;
    model
        .iter()
        .filter(|((_, s), _)| *s >= earliest)
        .map(|((k, s), v)| (Windowed::new(k.clone(), Window::new(*s, s + 10)), *v))
        .collect()
}

fn window_store_follows_the_model(cache_bytes: usize, seed: u64) {
    let (bytes, log) = stack(SegmentKeySchema::Window, INTERVAL, cache_bytes);
    let mut store = window_store(bytes.clone());
    let mut model: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut rng = Rng(seed);
    let mut t = 0i64;
    let mut expired_total = 0;
    for step in 0..20_000 {
        t += rng.next(3) as i64;
        store.observe_stream_time(t);
        let key = format!("k{}", rng.next(8));
        let start = (t - rng.next(300) as i64).max(0);
        let earliest = t - RETENTION + 1;
        if rng.next(5) == 0 {
            store.put(&key, start, None).unwrap();
            model.remove(&(key, start));
        } else {
            let v = rng.next(1000) as i64;
            store.put(&key, start, Some(&v)).unwrap();
            // Windows already out of retention are not written.
            if start >= earliest {
                model.insert((key, start), v);
            }
        }
        if step % 37 == 0 {
            expired_total += store.expire(t).unwrap();
        }
        if step % 97 == 0 {
            let key = format!("k{}", rng.next(8));
            let expected: Vec<(i64, i64)> = live_windows(&model, t)
                .into_iter()
                .filter(|(w, _)| w.key == key)
                .map(|(w, v)| (w.window.start, v))
                .collect();
            assert_eq!(store.fetch_range(&key, 0, i64::MAX).unwrap(), expected);
            let probe = (t - rng.next(300) as i64).max(0);
            let want = model
                .get(&(key.clone(), probe))
                .copied()
                .filter(|_| probe >= earliest);
            assert_eq!(store.fetch(&key, probe).unwrap(), want);
        }
        if step % 501 == 0 {
            assert_eq!(store.all().unwrap(), live_windows(&model, t));
            // After a flush and an expiry nothing is held from a segment wholly out of retention.
            bytes.lock().unwrap().flush().unwrap();
            store.expire(t).unwrap();
            let floor = earliest.div_euclid(INTERVAL) * INTERVAL;
            let held = store.fetch_all_held(0, i64::MAX).unwrap();
            assert!(
                held.iter().all(|(w, _)| w.window.start >= floor),
                "held a window before {floor} at {t}"
            );
        }
    }
    assert!(expired_total > 0, "nothing ever expired");
    assert_eq!(store.all().unwrap(), live_windows(&model, t));
    // Restore: the changelog rebuilds the same store, expired windows included only where still held.
    bytes.lock().unwrap().flush().unwrap();
    let mut again = window_store(restored(SegmentKeySchema::Window, INTERVAL, &log));
    again.observe_stream_time(t);
    assert_eq!(again.all().unwrap(), live_windows(&model, t));
    assert_eq!(
        again.fetch_all_held(0, i64::MAX).unwrap(),
        store.fetch_all_held(0, i64::MAX).unwrap(),
        "the changelog must carry a tombstone for every dropped window"
    );
}

#[test]
fn window_store_over_segments_matches_a_model() {
    window_store_follows_the_model(0, 3);
}

#[test]
fn cached_window_store_over_segments_matches_a_model() {
    // A small cache, so entries are evicted to the segments between flushes.
    window_store_follows_the_model(2_000, 5);
}

fn live_sessions(
    model: &BTreeMap<(String, i64, i64), i64>,
    t: i64,
) -> Vec<(Windowed<String>, i64)> {
    model
        .iter()
        .filter(|((_, end, _), _)| *end >= t - RETENTION)
        .map(|((k, end, start), v)| (Windowed::new(k.clone(), Window::new(*start, *end)), *v))
        .collect()
}

#[test]
fn session_store_over_segments_matches_a_model() {
    for cache_bytes in [0, 2_000] {
        let (bytes, log) = stack(SegmentKeySchema::Session, INTERVAL, cache_bytes);
        let new_store = |b| {
            SessionStore::<String, i64>::new(
                b,
                Arc::new(Serdes::string()),
                Arc::new(Serdes::i64()),
                RETENTION,
            )
        };
        let mut store = new_store(bytes.clone());
        // (key, end, start) -> value: the store's order.
        let mut model: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
        let mut rng = Rng(17 + cache_bytes as u64);
        let mut t = 0i64;
        for step in 0..20_000 {
            t += rng.next(3) as i64;
            store.observe_stream_time(t);
            let key = format!("u{}", rng.next(6));
            let end = (t - rng.next(300) as i64).max(0);
            let start = (end - rng.next(30) as i64).max(0);
            if rng.next(5) == 0 {
                store.remove(&key, Window::new(start, end)).unwrap();
                model.remove(&(key, end, start));
            } else {
                let v = rng.next(1000) as i64;
                store.put(&key, Window::new(start, end), &v).unwrap();
                if end >= t - RETENTION {
                    model.insert((key, end, start), v);
                }
            }
            if step % 41 == 0 {
                store.expire(t).unwrap();
            }
            if step % 89 == 0 {
                let key = format!("u{}", rng.next(6));
                let (lo, hi) = (t - rng.next(100) as i64, t - rng.next(100) as i64);
                let expected: Vec<(Window, i64)> = live_sessions(&model, t)
                    .into_iter()
                    .filter(|(w, _)| {
                        w.key == key && w.window.end >= lo.max(0) && w.window.start <= hi
                    })
                    .map(|(w, v)| (w.window, v))
                    .collect();
                assert_eq!(store.find_sessions(&key, lo, hi).unwrap(), expected);
            }
        }
        assert_eq!(store.all().unwrap(), live_sessions(&model, t));
        bytes.lock().unwrap().flush().unwrap();
        store.expire(t).unwrap();
        let again_bytes = restored(SegmentKeySchema::Session, INTERVAL, &log);
        let mut again = new_store(again_bytes.clone());
        again.observe_stream_time(t);
        assert_eq!(again.all().unwrap(), live_sessions(&model, t));
        // Nothing from a wholly expired segment survives the restore either: a view that has seen no stream
        // time reads everything held.
        let floor = (t - RETENTION).div_euclid(INTERVAL) * INTERVAL;
        let held = new_store(again_bytes).all().unwrap();
        assert!(!held.is_empty());
        assert!(
            held.iter().all(|(w, _)| w.window.end >= floor),
            "a dropped session came back"
        );
    }
}

/// Fills a window store with `keys * starts` entries, starts `step` ms apart.
fn fill(store: &mut WindowStore<String, i64>, keys: usize, starts: i64, step: i64) {
    for s in 0..starts {
        for k in 0..keys {
            store
                .put(&format!("key-{k:04}"), s * step, Some(&1))
                .unwrap();
        }
    }
}

/// The cost of expiry on a million windows, over a plain store (a full scan per expiry) and over segments. Run
/// with `cargo test -p state-store --test segmented_windows -- --ignored --nocapture`; nothing is asserted
/// about the times.
#[test]
#[ignore]
fn expiry_cost_on_a_million_windows() {
    const HOUR: i64 = 3_600_000;
    let (keys, starts, step) = (1_000usize, 1_000i64, 10_000i64); // 1M windows over ~2.8 h
    let newest = (starts - 1) * step;
    for segmented in [false, true] {
        let bytes: SharedKeyValueStore = if segmented {
            share(Box::new(SegmentedKeyValueStore::in_memory(
                "w",
                SegmentKeySchema::Window,
                state_store::segment_interval(HOUR),
            )))
        } else {
            share(Box::new(InMemoryKeyValueStore::new("w")))
        };
        let mut store = WindowStore::new(
            bytes,
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
            10_000,
            HOUR,
        );
        fill(&mut store, keys, starts, step);
        // First expiry: everything more than an hour older than the newest window goes.
        let at = Instant::now();
        let first = store.expire(newest).unwrap();
        let first_time = at.elapsed();
        // Then an expiry with nothing to remove (the common case: one every half retention of stream time).
        let at = Instant::now();
        let idle = store.expire(newest + 1).unwrap();
        let idle_time = at.elapsed();
        // Half a retention later: the next half hour of windows expires.
        let at = Instant::now();
        let next = store.expire(newest + HOUR / 2).unwrap();
        let next_time = at.elapsed();
        println!(
            "{}: first expiry removed {first} of 1000000 in {first_time:?}; an expiry removing {idle} took \
             {idle_time:?}; half a retention later one removing {next} took {next_time:?}",
            if segmented { "segmented" } else { "plain" },
        );
    }
}
