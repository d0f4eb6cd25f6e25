//! Local queries and query metadata with two instances: every key is found on the instance the metadata
//! names, with the right value; after one instance leaves, the other answers for every key.

use std::collections::BTreeMap;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{HostInfo, KafkaStreams, State};
use streams_dsl::*;
use tests::{
    describe_instance, local_page_counts, page_counts_topology, produce, wait_until,
    wait_until_reporting, Broker,
};

fn run(broker: Broker) {
    broker.create_topic("visits", 3);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, server: &str| {
        let (mut config, admin) = broker.config("pages", dir);
        config.set("application.server", server).unwrap();
        let s = KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap();
        s.start().unwrap();
        s
    };
    let a = start(dir_a.path(), "127.0.0.1:18001");
    let b = start(dir_b.path(), "127.0.0.1:18002");
    assert!(matches!(
        KafkaStreams::new(page_counts_topology(), broker.config("pages", dir_a.path()))
            .unwrap()
            .store::<String, i64>("page-counts"),
        Err(StreamsError::StoreUnavailable { .. })
    ));
    let visits: Vec<(String, String)> = (0..600)
        .map(|i| (format!("u{}", i % 9), format!("/p{}", i % 20)))
        .collect();
    let raw: Vec<_> = visits
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone().into_bytes())))
        .collect();
    produce(&broker.bootstrap(), "visits", &raw);
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (_, page) in &visits {
        *expected.entry(page.clone()).or_default() += 1;
    }
    // Each page lives on exactly one instance.
    wait_until_reporting(
        "both instances to hold every count",
        Duration::from_secs(90),
        || {
            let (la, lb) = (local_page_counts(&a), local_page_counts(&b));
            let mut merged = la.clone();
            merged.extend(lb.clone());
            merged == expected && la.keys().all(|k| !lb.contains_key(k))
        },
        || {
            format!(
                "expected {expected:?}; A holds {:?} ({}); B holds {:?} ({})",
                local_page_counts(&a),
                describe_instance(&a),
                local_page_counts(&b),
                describe_instance(&b)
            )
        },
    );
    wait_until(
        "the metadata to name both instances",
        Duration::from_secs(30),
        || {
            [&a, &b].iter().all(|s| {
                let m = s.metadata_for_store("page-counts");
                m.len() == 2 && m.iter().all(|i| !i.partitions.is_empty())
            })
        },
    );
    assert!(matches!(
        a.store::<String, i64>("no-such-store"),
        Err(StreamsError::UnknownStore { .. })
    ));
    assert!(matches!(
        a.store::<String, String>("page-counts"),
        Err(StreamsError::StoreTypeMismatch { .. })
    ));
    let host = |s: &str| HostInfo::parse(s).unwrap();
    for (page, count) in &expected {
        let ma = a
            .query_metadata_for_key("page-counts", page, &Serdes::string())
            .unwrap();
        let mb = b
            .query_metadata_for_key("page-counts", page, &Serdes::string())
            .unwrap();
        assert_eq!(ma, mb, "both instances agree on where {page} lives");
        let owner_host = ma.active.expect("an owner").host.expect("a host");
        let (owner, other) = if owner_host == host("127.0.0.1:18001") {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let owner_store = owner.store::<String, i64>("page-counts").unwrap();
        assert_eq!(
            owner_store.get(page).unwrap(),
            Some(*count),
            "{page} on its owner"
        );
        assert_eq!(
            other
                .store::<String, i64>("page-counts")
                .unwrap()
                .get(page)
                .unwrap(),
            None
        );
    }

    // A leaves: B owns every partition and answers for every key.
    assert!(a.close(Duration::from_secs(30)));
    assert!(b.wait_for_state(State::Running, Duration::from_secs(60)));
    wait_until("B to hold every count", Duration::from_secs(90), || {
        local_page_counts(&b) == expected
    });
    // B's announcement of its new partitions reaches its own metadata reader shortly after the rebalance.
    wait_until(
        "the metadata to name B alone, for every key",
        Duration::from_secs(30),
        || {
            let m = b.all_metadata();
            m.len() == 1
                && expected.keys().all(|page| {
                    let m = b
                        .query_metadata_for_key("page-counts", page, &Serdes::string())
                        .unwrap();
                    m.active.and_then(|i| i.host) == Some(host("127.0.0.1:18002"))
                })
        },
    );
    assert!(b.close(Duration::from_secs(30)));
}

#[test]
fn queries_and_metadata_with_two_instances_on_the_embedded_broker() {
    run(Broker::embedded());
}

#[test]
fn queries_and_metadata_with_two_instances_on_tansu() {
    run(Broker::tansu());
}
