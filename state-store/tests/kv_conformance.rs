//! Every key-value store implementation (and every layer) behaves like an ordered map.

use std::collections::BTreeMap;

use proptest::prelude::*;
use state_store::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore, KeyValueStore,
    RocksDbKeyValueStore, RocksDbResources, StoreError,
};

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutIfAbsent(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Flush,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Short keys over a small alphabet (including 0x00 and 0xff) so that ranges and prefixes collide often.
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(0xffu8)],
        0..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        4 => (key(), value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key(), value.clone()).prop_map(|(k, v)| Op::PutIfAbsent(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => proptest::collection::vec((key(), proptest::option::of(value)), 0..5).prop_map(Op::Batch),
        1 => Just(Op::Flush),
    ]
}

/// `exact_count`: whether `approximate_num_entries` must be exact (RocksDB's is an estimate).
fn check(
    store: &mut dyn KeyValueStore,
    ops: &[Op],
    probes: &[(Vec<u8>, Vec<u8>)],
    exact_count: bool,
) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(k, v).unwrap();
                model.insert(k.clone(), v.clone());
            }
            Op::PutIfAbsent(k, v) => {
                let got = store.put_if_absent(k, v).unwrap();
                prop_assert_eq!(got, model.get(k).cloned());
                model.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Op::Delete(k) => {
                prop_assert_eq!(store.delete(k).unwrap(), model.remove(k));
            }
            Op::Batch(b) => {
                let refs: Vec<_> = b
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                store.write_batch(&refs).unwrap();
                for (k, v) in b {
                    match v {
                        Some(v) => model.insert(k.clone(), v.clone()),
                        None => model.remove(k),
                    };
                }
            }
            Op::Flush => store.flush().unwrap(),
        }
    }
    let all: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
    prop_assert_eq!(&all, &model.clone().into_iter().collect::<Vec<_>>());
    let rev: Vec<_> = store.reverse_all().unwrap().map(Result::unwrap).collect();
    prop_assert_eq!(rev, model.clone().into_iter().rev().collect::<Vec<_>>());
    for (a, b) in probes {
        prop_assert_eq!(store.get(a).unwrap(), model.get(a).cloned());
        let got: Vec<_> = store
            .range(Some(a), Some(b))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<_> = if a <= b {
            model
                .range(a.clone()..=b.clone())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        prop_assert_eq!(&got, &expected);
        let got_rev: Vec<_> = store
            .reverse_range(Some(a), Some(b))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        prop_assert_eq!(got_rev, expected.into_iter().rev().collect::<Vec<_>>());
        let got_prefix: Vec<_> = store.prefix_scan(a).unwrap().map(Result::unwrap).collect();
        let expected_prefix: Vec<_> = model
            .iter()
            .filter(|(k, _)| k.starts_with(a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(got_prefix, expected_prefix);
    }
    store.flush().unwrap();
    let estimate = store.approximate_num_entries().unwrap();
    if exact_count {
        prop_assert_eq!(estimate, model.len() as u64);
    }
    Ok(())
}

fn probes() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec((key(), key()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn in_memory_store_is_an_ordered_map(ops in proptest::collection::vec(op(), 0..60), probes in probes()) {
        check(&mut InMemoryKeyValueStore::new("m"), &ops, &probes, true)?;
    }

    #[test]
    fn rocksdb_store_is_an_ordered_map(ops in proptest::collection::vec(op(), 0..60), probes in probes()) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbKeyValueStore::open("r", dir.path(), &RocksDbResources::new(8 << 20, 4 << 20)).unwrap();
        check(&mut store, &ops, &probes, false)?;
    }

    #[test]
    fn cached_rocksdb_store_is_an_ordered_map(
        ops in proptest::collection::vec(op(), 0..60), probes in probes(), max in 0usize..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let inner = RocksDbKeyValueStore::open("r", dir.path(), &RocksDbResources::new(8 << 20, 4 << 20)).unwrap();
        check(&mut CachingKeyValueStore::new(inner, max), &ops, &probes, false)?;
    }

    /// Replaying the changelog into an empty store rebuilds the same content, through the cache or not.
    #[test]
    fn changelog_replays_to_the_same_state(ops in proptest::collection::vec(op(), 0..60), max in 0usize..600) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink_log = log.clone();
        let sink = move |k: &[u8], v: Option<&[u8]>| -> Result<(), StoreError> {
            sink_log.lock().unwrap().push((k.to_vec(), v.map(<[u8]>::to_vec)));
            Ok(())
        };
        let logged = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("l"), sink);
        let mut store = CachingKeyValueStore::new(logged, max);
        check(&mut store, &ops, &[(vec![], vec![])], true)?;
        let mut replayed = InMemoryKeyValueStore::new("replay");
        let log = log.lock().unwrap();
        let refs: Vec<_> = log.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        replayed.write_batch(&refs).unwrap();
        let a: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
        let b: Vec<_> = replayed.all().unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn rocksdb_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let res = RocksDbResources::default();
    {
        let mut s = RocksDbKeyValueStore::open("r", dir.path(), &res).unwrap();
        s.put(b"k", b"v").unwrap();
        s.close().unwrap();
        assert!(matches!(s.get(b"k"), Err(StoreError::Closed { .. })));
    }
    let s = RocksDbKeyValueStore::open("r", dir.path(), &res).unwrap();
    assert_eq!(s.get(b"k").unwrap(), Some(b"v".to_vec()));
}
