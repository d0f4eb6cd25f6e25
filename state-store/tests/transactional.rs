//! The transactional layer (`TransactionalKeyValueStore`) against models: random writes, reads, scans, commits
//! and aborts over the in-memory and RocksDB stores, alone and under the cache and changelog layers; crashes and
//! dirty closes of a RocksDB store holding uncommitted writes; deferred segment expiry under a window store; and
//! its cost against the bare store (printed, not asserted).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use state_store::{
    share, CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore, KeyRange,
    KeyValueStore, KvEntry, RocksDbKeyValueStore, RocksDbResources, SegmentKeySchema,
    SegmentedKeyValueStore, Serdes, SharedKeyValueStore, StoreError, TransactionalKeyValueStore,
    WindowStore,
};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Log = Arc<Mutex<Vec<(Vec<u8>, Option<Vec<u8>>)>>>;

/// Committed data and the writes of the running transaction (`None` deletes).
#[derive(Default, Debug)]
struct Model {
    committed: Map,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Model {
    /// What reads must see: the committed data with the pending writes applied.
    fn view(&self) -> Map {
        let mut view = self.committed.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => view.insert(k.clone(), v.clone()),
                None => view.remove(k),
            };
        }
        view
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        match self.pending.get(k) {
            Some(v) => v.clone(),
            None => self.committed.get(k).cloned(),
        }
    }

    fn write(&mut self, k: &[u8], v: Option<&[u8]>) {
        self.pending.insert(k.to_vec(), v.map(<[u8]>::to_vec));
    }

    fn commit(&mut self) {
        self.committed = self.view();
        self.pending.clear();
    }

    fn abort(&mut self) {
        self.pending.clear();
    }
}

/// A range of keys, in the shapes callers use.
#[derive(Debug, Clone)]
enum Shape {
    All,
    Prefix(Vec<u8>),
    /// `from..=to`, either end open.
    Inclusive(Option<Vec<u8>>, Option<Vec<u8>>),
    /// `from < key < to`.
    Exclusive(Vec<u8>, Vec<u8>),
}

impl Shape {
    fn key_range(&self) -> KeyRange {
        match self {
            Shape::All => KeyRange::all(),
            Shape::Prefix(p) => KeyRange::prefix(p),
            Shape::Inclusive(a, b) => KeyRange::inclusive(a.as_deref(), b.as_deref()),
            Shape::Exclusive(a, b) => KeyRange::from_bounds(Bound::Excluded(a), Bound::Excluded(b)),
        }
    }

    /// Membership computed from the shape itself, not from `KeyRange`.
    fn holds(&self, k: &[u8]) -> bool {
        match self {
            Shape::All => true,
            Shape::Prefix(p) => k.starts_with(p),
            Shape::Inclusive(a, b) => {
                a.as_deref().is_none_or(|a| k >= a) && b.as_deref().is_none_or(|b| k <= b)
            }
            Shape::Exclusive(a, b) => k > a.as_slice() && k < b.as_slice(),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutIfAbsent(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    Scan(Shape, bool),
    /// Writes the cache's dirty entries below (a no-op without a cache).
    FlushCache,
    Flush,
    Commit,
    Abort,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Short keys over a small alphabet (with 0x00 and 0xff) so that ranges, prefixes and overwrites collide.
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(0xffu8)],
        0..4,
    )
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::All),
        key().prop_map(Shape::Prefix),
        (proptest::option::of(key()), proptest::option::of(key()))
            .prop_map(|(a, b)| Shape::Inclusive(a, b)),
        (key(), key()).prop_map(|(a, b)| Shape::Exclusive(a, b)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..6);
    prop_oneof![
        6 => (key(), value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key(), value.clone()).prop_map(|(k, v)| Op::PutIfAbsent(k, v)),
        3 => key().prop_map(Op::Delete),
        2 => proptest::collection::vec((key(), proptest::option::of(value)), 0..5).prop_map(Op::Batch),
        2 => key().prop_map(Op::Get),
        3 => (shape(), any::<bool>()).prop_map(|(s, r)| Op::Scan(s, r)),
        1 => Just(Op::FlushCache),
        1 => Just(Op::Flush),
        2 => Just(Op::Commit),
        2 => Just(Op::Abort),
    ]
}

fn collect(iter: Result<state_store::KvIter<'_>, StoreError>) -> Vec<KvEntry> {
    iter.unwrap().map(Result::unwrap).collect()
}

fn entries(map: &Map) -> Vec<KvEntry> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Runs `ops` on `store` (a stack with a transactional layer in it), checking every read against the model, and
/// after every commit and abort what `below` (the data under the transactional layer) holds against the committed
/// data. `exact_count`: whether `approximate_num_entries` must be exact. `mark` hears of each commit (`true`) and
/// abort (`false`). Returns the model.
fn check<T: KeyValueStore>(
    store: &mut T,
    below: impl Fn(&T) -> Vec<KvEntry>,
    ops: &[Op],
    exact_count: bool,
    mut mark: impl FnMut(bool),
) -> Result<Model, TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(k, v).unwrap();
                model.write(k, Some(v));
            }
            Op::PutIfAbsent(k, v) => {
                let got = store.put_if_absent(k, v).unwrap();
                let had = model.get(k);
                prop_assert_eq!(&got, &had);
                if had.is_none() {
                    model.write(k, Some(v));
                }
            }
            Op::Delete(k) => {
                prop_assert_eq!(store.delete(k).unwrap(), model.get(k));
                model.write(k, None);
            }
            Op::Batch(b) => {
                let refs: Vec<_> = b
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                store.write_batch(&refs).unwrap();
                for (k, v) in b {
                    model.write(k, v.as_deref());
                }
            }
            Op::Get(k) => {
                prop_assert_eq!(store.get(k).unwrap(), model.get(k));
                let mut out = vec![9, 9];
                let found = store.get_into(k, &mut out).unwrap();
                prop_assert_eq!(found.then_some(out), model.get(k));
            }
            Op::Scan(shape, reverse) => {
                let got = collect(store.scan(&shape.key_range(), *reverse));
                let mut want: Vec<KvEntry> = entries(&model.view())
                    .into_iter()
                    .filter(|(k, _)| shape.holds(k))
                    .collect();
                if *reverse {
                    want.reverse();
                }
                prop_assert_eq!(got, want, "{:?} reverse={}", shape, reverse);
            }
            Op::FlushCache => store.flush_cache().unwrap(),
            Op::Flush => {
                store.flush().unwrap();
                // A flush applies nothing held.
                if model.pending.is_empty() {
                    prop_assert_eq!(store.pending_transaction_bytes(), 0);
                }
                prop_assert_eq!(below(store), entries(&model.committed));
            }
            Op::Commit => {
                // As the runtime commits: the cache's writes reach the transaction first.
                store.flush_cache().unwrap();
                store.commit_transaction().unwrap();
                model.commit();
                mark(true);
                prop_assert_eq!(store.pending_transaction_bytes(), 0);
                prop_assert_eq!(below(store), entries(&model.committed));
            }
            Op::Abort => {
                store.abort_transaction().unwrap();
                model.abort();
                mark(false);
                prop_assert_eq!(store.pending_transaction_bytes(), 0);
                prop_assert_eq!(store.cache_stats().map_or(0, |s| s.bytes), 0);
                prop_assert_eq!(below(store), entries(&model.committed));
            }
        }
    }
    prop_assert_eq!(collect(store.all()), entries(&model.view()));
    let mut rev = entries(&model.view());
    rev.reverse();
    prop_assert_eq!(collect(store.reverse_all()), rev);
    if exact_count {
        prop_assert_eq!(
            store.approximate_num_entries().unwrap(),
            model.view().len() as u64
        );
    }
    Ok(model)
}

fn rocks(dir: &std::path::Path) -> RocksDbKeyValueStore {
    RocksDbKeyValueStore::open("r", dir, &RocksDbResources::new(8 << 20, 4 << 20)).unwrap()
}

/// A sink recording every write into `log`.
fn recording(log: &Log) -> impl FnMut(&[u8], Option<&[u8]>) -> Result<(), StoreError> + Send {
    let log = log.clone();
    move |k: &[u8], v: Option<&[u8]>| {
        log.lock()
            .unwrap()
            .push((k.to_vec(), v.map(<[u8]>::to_vec)));
        Ok(())
    }
}

type Sink = Box<dyn FnMut(&[u8], Option<&[u8]>) -> Result<(), StoreError> + Send>;

type Stack<S> =
    CachingKeyValueStore<ChangeLoggingKeyValueStore<TransactionalKeyValueStore<S>, Sink>>;

/// The runtime's stack under exactly-once: cache, changelog, transactional layer, then `store`.
fn stack<S: KeyValueStore>(store: S, log: &Log, cache_bytes: usize) -> Stack<S> {
    let sink: Sink = Box::new(recording(log));
    CachingKeyValueStore::new(
        ChangeLoggingKeyValueStore::new(TransactionalKeyValueStore::new(store), sink),
        cache_bytes,
    )
}

fn below_stack<S: KeyValueStore>(s: &Stack<S>) -> Vec<KvEntry> {
    collect(s.inner().inner().inner().all())
}

/// Replays the changelog records of committed transactions only (what a read-committed restore sees):
/// `marks` are the log lengths at each commit and at each abort, with whether it was a commit.
fn replay_committed(log: &[(Vec<u8>, Option<Vec<u8>>)], marks: &[(usize, bool)]) -> Map {
    let mut map = Map::new();
    let mut from = 0;
    for &(to, committed) in marks {
        if committed {
            for (k, v) in &log[from..to] {
                match v {
                    Some(v) => map.insert(k.clone(), v.clone()),
                    None => map.remove(k),
                };
            }
        }
        from = to;
    }
    map
}

/// Runs `ops` on the full stack over `store`, then checks that the changelog records of the committed
/// transactions rebuild the committed data.
fn check_stack<S: KeyValueStore>(
    store: S,
    ops: &[Op],
    cache_bytes: usize,
) -> Result<(), TestCaseError> {
    let log: Log = Arc::default();
    let mut s = stack(store, &log, cache_bytes);
    let mut marks = Vec::new();
    let model = check(&mut s, below_stack, ops, false, |committed| {
        marks.push((log.lock().unwrap().len(), committed))
    })?;
    // The running transaction has not committed.
    s.flush_cache().unwrap();
    marks.push((log.lock().unwrap().len(), false));
    prop_assert_eq!(
        replay_committed(&log.lock().unwrap(), &marks),
        model.committed
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn in_memory_overlay_follows_the_model(ops in proptest::collection::vec(op(), 0..80)) {
        let mut store = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("m"));
        check(&mut store, |s| collect(s.inner().all()), &ops, true, |_| {})?;
    }

    #[test]
    fn rocksdb_overlay_follows_the_model(ops in proptest::collection::vec(op(), 0..80)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TransactionalKeyValueStore::new(rocks(dir.path()));
        check(&mut store, |s| collect(s.inner().all()), &ops, false, |_| {})?;
    }

    /// Under the cache and the changelog: an abort empties the cache and leaves the store below untouched, and
    /// the changelog of the committed transactions rebuilds the committed data.
    #[test]
    fn in_memory_stack_follows_the_model(
        ops in proptest::collection::vec(op(), 0..80), cache_bytes in 0usize..500,
    ) {
        check_stack(InMemoryKeyValueStore::new("m"), &ops, cache_bytes)?;
    }

    #[test]
    fn rocksdb_stack_follows_the_model(
        ops in proptest::collection::vec(op(), 0..80), cache_bytes in 0usize..500,
    ) {
        let dir = tempfile::tempdir().unwrap();
        check_stack(rocks(dir.path()), &ops, cache_bytes)?;
    }
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

/// `n` random puts, deletes and batches over 200 keys, on `store` and in `model`'s running transaction.
fn random_writes(store: &mut dyn KeyValueStore, model: &mut Model, rng: &mut Rng, n: usize) {
    let key = |rng: &mut Rng| format!("key-{:03}", rng.next(200)).into_bytes();
    for _ in 0..n {
        match rng.next(10) {
            0..=5 => {
                let (k, v) = (key(rng), rng.next(1 << 20).to_string().into_bytes());
                store.put(&k, &v).unwrap();
                model.write(&k, Some(&v));
            }
            6..=7 => {
                let k = key(rng);
                assert_eq!(store.delete(&k).unwrap(), model.get(&k));
                model.write(&k, None);
            }
            _ => {
                let batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..rng.next(6))
                    .map(|_| {
                        let k = key(rng);
                        let v = (rng.next(3) > 0).then(|| rng.next(1000).to_string().into_bytes());
                        (k, v)
                    })
                    .collect();
                let refs: Vec<_> = batch
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                store.write_batch(&refs).unwrap();
                for (k, v) in &batch {
                    model.write(k, v.as_deref());
                }
            }
        }
    }
}

/// Rounds of: reopen the RocksDB store (it must hold exactly the committed data), write, commit, flush, write
/// more (held), then crash (drop the store) or close it dirty. Through the cache and changelog layers or not.
fn crash_leaves_only_committed_data(close_dirty: bool, through_stack: bool, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let mut model = Model::default();
    let mut rng = Rng(seed);
    for round in 0..5 {
        let db = rocks(dir.path());
        assert_eq!(
            collect(db.all()),
            entries(&model.committed),
            "round {round}: the reopened store holds exactly the committed data"
        );
        let mut store: Box<dyn KeyValueStore> = if through_stack {
            Box::new(stack(db, &log, 2_000))
        } else {
            Box::new(TransactionalKeyValueStore::new(db))
        };
        random_writes(&mut store, &mut model, &mut rng, 400);
        store.flush_cache().unwrap();
        store.commit_transaction().unwrap();
        model.commit();
        store.flush().unwrap();
        random_writes(&mut store, &mut model, &mut rng, 300);
        // Some of these reach the transactional layer (cache evictions and flushes), none the store below.
        if round % 2 == 0 {
            store.flush().unwrap();
        }
        assert!(store.pending_transaction_bytes() > 0);
        assert_eq!(collect(store.all()), entries(&model.view()));
        if close_dirty {
            store.close_dirty().unwrap();
        }
        drop(store);
        model.abort();
    }
    let db = rocks(dir.path());
    assert_eq!(collect(db.all()), entries(&model.committed));
    assert!(!model.committed.is_empty());
}

#[test]
fn a_crash_leaves_only_committed_data_in_rocksdb() {
    crash_leaves_only_committed_data(false, false, 1);
}

#[test]
fn a_dirty_close_leaves_only_committed_data_in_rocksdb() {
    crash_leaves_only_committed_data(true, false, 2);
}

#[test]
fn a_crash_under_cache_and_changelog_leaves_only_committed_data() {
    crash_leaves_only_committed_data(false, true, 3);
}

#[test]
fn a_dirty_close_under_cache_and_changelog_leaves_only_committed_data() {
    crash_leaves_only_committed_data(true, true, 4);
}

/// A clean cache entry can hold a write of the running transaction (written below at a flush, then kept):
/// after an abort the committed value must show again.
#[test]
fn an_abort_drops_clean_cache_entries_and_leaves_the_store_below_untouched() {
    let log: Log = Arc::default();
    let mut s = stack(InMemoryKeyValueStore::new("s"), &log, 1 << 20);
    s.put(b"k", b"committed").unwrap();
    s.put(b"gone", b"x").unwrap();
    s.flush_cache().unwrap();
    s.commit_transaction().unwrap();
    s.put(b"k", b"uncommitted").unwrap();
    s.delete(b"gone").unwrap();
    s.put(b"new", b"y").unwrap();
    s.flush_cache().unwrap(); // clean in the cache now, held below it
    s.put(b"dirty", b"z").unwrap();
    assert_eq!(s.get(b"k").unwrap(), Some(b"uncommitted".to_vec()));
    assert!(s.stats().bytes > 0);
    let committed = vec![
        (b"gone".to_vec(), b"x".to_vec()),
        (b"k".to_vec(), b"committed".to_vec()),
    ];
    assert_eq!(below_stack(&s), committed);
    s.abort_transaction().unwrap();
    assert_eq!(s.stats().bytes, 0);
    assert_eq!(s.get(b"k").unwrap(), Some(b"committed".to_vec()));
    assert_eq!(s.get(b"dirty").unwrap(), None);
    assert_eq!(collect(s.all()), committed);
    assert_eq!(below_stack(&s), committed);
    // The aborted writes went to the changelog (inside the aborted transaction); a commit now applies nothing.
    assert_eq!(log.lock().unwrap().len(), 5);
    s.commit_transaction().unwrap();
    assert_eq!(below_stack(&s), committed);
}

fn wkey(k: &[u8], t: i64) -> Vec<u8> {
    [k, &t.to_be_bytes()[..]].concat()
}

/// Expiry of RocksDB segments under the transactional layer waits for the commit: an abort keeps the segments
/// (directories and data), a commit drops them.
#[test]
fn rocksdb_segments_are_dropped_at_the_commit_not_before() {
    use state_store::{KeyValueStoreSupplier, SegmentedStoreSupplier, StoreContext, StoreKind};
    let dir = tempfile::tempdir().unwrap();
    let res = RocksDbResources::new(8 << 20, 4 << 20);
    let ctx = StoreContext {
        dir: dir.path(),
        rocksdb: &res,
        key_suffix_len: 0,
    };
    let supplier =
        SegmentedStoreSupplier::new(Arc::new(StoreKind::RocksDb), SegmentKeySchema::Window, 0)
            .with_interval(10);
    let mut store = TransactionalKeyValueStore::new(supplier.open("w", &ctx).unwrap());
    let keys: Vec<Vec<u8>> = [1, 5, 15, 27].iter().map(|&t| wkey(b"k", t)).collect();
    for k in &keys {
        store.put(k, b"v").unwrap();
    }
    store.commit_transaction().unwrap();
    store.flush().unwrap();
    let all_keys = |s: &dyn KeyValueStore| -> Vec<Vec<u8>> {
        s.all().unwrap().map(|e| e.unwrap().0).collect()
    };
    let expire = |s: &mut TransactionalKeyValueStore<Box<dyn KeyValueStore>>| {
        let doomed = s.expired_segment_keys(20).unwrap().unwrap();
        assert_eq!(doomed, keys[..3].to_vec());
        for k in &doomed {
            s.delete(k).unwrap();
        }
        s.drop_expired_segments(20).unwrap();
        assert_eq!(all_keys(s), keys[3..].to_vec());
        // Nothing is dropped yet.
        assert!(dir.path().join("0").exists() && dir.path().join("10").exists());
        assert_eq!(all_keys(s.inner()), keys);
    };
    expire(&mut store);
    store.abort_transaction().unwrap();
    assert_eq!(all_keys(&store), keys);
    expire(&mut store);
    // A write to an expired segment after the expiry: the segmented store would recreate the segment for it,
    // so it stays, before and after the commit.
    let late = wkey(b"late", 3);
    store.put(&late, b"v").unwrap();
    let after = vec![keys[3].clone(), late.clone()];
    assert_eq!(all_keys(&store), after);
    store.commit_transaction().unwrap();
    assert_eq!(all_keys(store.inner()), after);
    assert!(!dir.path().join("10").exists());
    store.close().unwrap();
    drop(store);
    let reopened = supplier.open("w", &ctx).unwrap();
    assert_eq!(all_keys(&reopened), after);
}

/// A window store over cache, changelog, transactional layer and segments, committing now and then, behaves
/// as the same window store without the transactional layer: the same reads at every step, and the same data
/// in the end, which either changelog rebuilds.
#[test]
fn a_window_store_over_the_transactional_layer_behaves_as_without_it() {
    const RETENTION: i64 = 200;
    const INTERVAL: i64 = 50;
    for (cache_bytes, seed) in [(0usize, 7u64), (2_000, 9)] {
        let segments =
            || SegmentedKeyValueStore::in_memory("w", SegmentKeySchema::Window, INTERVAL);
        let (tx_log, direct_log): (Log, Log) = (Arc::default(), Arc::default());
        let tx_bytes: SharedKeyValueStore =
            share(Box::new(stack(segments(), &tx_log, cache_bytes)));
        let direct_bytes: SharedKeyValueStore = share(Box::new(CachingKeyValueStore::new(
            ChangeLoggingKeyValueStore::new(segments(), recording(&direct_log)),
            cache_bytes,
        )));
        let window = |b: SharedKeyValueStore| {
            WindowStore::<String, i64>::new(
                b,
                Arc::new(Serdes::string()),
                Arc::new(Serdes::i64()),
                10,
                RETENTION,
            )
        };
        let (mut tx, mut direct) = (window(tx_bytes.clone()), window(direct_bytes.clone()));
        let mut rng = Rng(seed);
        let mut t = 0i64;
        let mut expired = 0;
        for step in 0..20_000 {
            t += rng.next(3) as i64;
            tx.observe_stream_time(t);
            direct.observe_stream_time(t);
            let key = format!("k{}", rng.next(8));
            let start = (t - rng.next(300) as i64).max(0);
            let value = (rng.next(5) > 0).then(|| rng.next(1000) as i64);
            tx.put(&key, start, value.as_ref()).unwrap();
            direct.put(&key, start, value.as_ref()).unwrap();
            if step % 37 == 0 {
                // The counts may differ: the keys are listed in another order, so a small cache may evict
                // other entries meanwhile (and list them again).
                expired += tx.expire(t).unwrap();
                direct.expire(t).unwrap();
            }
            if step % 53 == 0 {
                tx_bytes.lock().unwrap().flush_cache().unwrap();
                tx_bytes.lock().unwrap().commit_transaction().unwrap();
                direct_bytes.lock().unwrap().flush_cache().unwrap();
            }
            if step % 97 == 0 {
                assert_eq!(
                    tx.fetch_all_held(0, i64::MAX).unwrap(),
                    direct.fetch_all_held(0, i64::MAX).unwrap(),
                    "step {step}"
                );
            }
        }
        assert!(expired > 0);
        tx_bytes.lock().unwrap().flush_cache().unwrap();
        tx_bytes.lock().unwrap().commit_transaction().unwrap();
        direct_bytes.lock().unwrap().flush_cache().unwrap();
        assert_eq!(tx_bytes.lock().unwrap().pending_transaction_bytes(), 0);
        let all = |b: &SharedKeyValueStore| collect(b.lock().unwrap().all());
        let held = all(&tx_bytes);
        assert!(!held.is_empty());
        assert_eq!(held, all(&direct_bytes));
        // Both changelogs rebuild what is held (every transaction committed).
        for log in [&tx_log, &direct_log] {
            let log = log.lock().unwrap();
            assert_eq!(entries(&replay_committed(&log, &[(log.len(), true)])), held);
        }
    }
}

/// The cost of the transactional layer: a million put+get pairs on 10 000 keys, committed every 1 000 writes,
/// against the bare store in the same run. Run with
/// `cargo test -p state-store --test transactional -- --ignored --nocapture`; nothing is asserted about times.
#[test]
#[ignore]
fn overlay_cost_against_the_bare_store() {
    const OPS: u64 = 1_000_000;
    fn run(store: &mut dyn KeyValueStore, commit_every: Option<u64>) -> Duration {
        let mut rng = Rng(42);
        let mut out = Vec::new();
        let mut value = [0u8; 64];
        let mut hits = 0u64;
        let at = Instant::now();
        for i in 0..OPS {
            let k = format!("key-{:05}", rng.next(10_000));
            value[..8].copy_from_slice(&i.to_be_bytes());
            store.put(k.as_bytes(), &value).unwrap();
            let k = format!("key-{:05}", rng.next(10_000));
            hits += u64::from(store.get_into(k.as_bytes(), &mut out).unwrap());
            if commit_every.is_some_and(|n| (i + 1) % n == 0) {
                store.commit_transaction().unwrap();
            }
        }
        store.commit_transaction().unwrap();
        let took = at.elapsed();
        assert!(hits > 0);
        took
    }
    let print = |kind: &str, bare: Duration, tx: Duration| {
        let rate = |d: Duration| OPS as f64 / d.as_secs_f64() / 1e6;
        println!(
            "{kind}: bare {bare:?} ({:.2} M put+get/s), transactional {tx:?} ({:.2} M/s), ratio {:.2}",
            rate(bare),
            rate(tx),
            tx.as_secs_f64() / bare.as_secs_f64()
        );
    };
    for _ in 0..2 {
        let mut bare = InMemoryKeyValueStore::new("bare");
        let bare_time = run(&mut bare, None);
        let mut tx = TransactionalKeyValueStore::new(InMemoryKeyValueStore::new("tx"));
        let tx_time = run(&mut tx, Some(1_000));
        assert_eq!(collect(bare.all()), collect(tx.inner().all()));
        print("in-memory", bare_time, tx_time);

        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let res = RocksDbResources::default();
        let mut bare = RocksDbKeyValueStore::open("bare", d1.path(), &res).unwrap();
        let bare_time = run(&mut bare, None);
        let mut tx = TransactionalKeyValueStore::new(
            RocksDbKeyValueStore::open("tx", d2.path(), &res).unwrap(),
        );
        let tx_time = run(&mut tx, Some(1_000));
        assert_eq!(collect(bare.all()), collect(tx.inner().all()));
        print("rocksdb", bare_time, tx_time);
    }
}
