//! The consumer group protocol (`group.protocol=consumer`, KIP-848) on the embedded broker: with the broker's
//! `range` assignor, a member joining or leaving revokes only the partitions that move, so the stream threads
//! keep their other tasks running through the rebalance, and every count stays exact. The classic protocol
//! (eager `range`) is the baseline: there every join revokes every partition of every member.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::KafkaStreams;
use tests::{
    close_all, describe_instance, page_counts_topology, produce_visits, wait_until_reporting,
    Broker,
};

const PAGES: usize = 400;

/// Every count the instances' own tasks hold, merged (each page is counted by one task).
fn counts(instances: &[&KafkaStreams]) -> BTreeMap<String, i64> {
    let mut all = BTreeMap::new();
    for s in instances {
        if let Ok(store) = s.store::<String, i64>("page-counts") {
            all.extend(store.all().unwrap_or_default());
        }
    }
    all
}

/// Partitions of the counting sub-topology that `s` runs.
fn counting(s: &KafkaStreams) -> BTreeSet<i32> {
    processed(s).into_keys().collect()
}

/// Waits until `instances` share the four counting tasks and hold every count of `expected`: exactly, or at
/// least (at-least-once: a record processed again after a commit refused during a rebalance counts twice).
fn settle(instances: &[&KafkaStreams], expected: &BTreeMap<String, i64>, exact: bool, what: &str) {
    wait_until_reporting(
        what,
        Duration::from_secs(90),
        || {
            let owned: Vec<BTreeSet<i32>> = instances.iter().map(|s| counting(s)).collect();
            owned.iter().all(|o| !o.is_empty())
                && owned.iter().map(BTreeSet::len).sum::<usize>() == 4
                && {
                    let seen = counts(instances);
                    if exact {
                        seen == *expected
                    } else {
                        seen.len() == expected.len()
                            && expected
                                .iter()
                                .all(|(k, n)| seen.get(k).is_some_and(|c| c >= n))
                    }
                }
        },
        || {
            let seen = counts(instances);
            let over = expected
                .iter()
                .filter(|(k, n)| seen.get(*k).is_some_and(|c| c > n));
            let under = expected
                .iter()
                .filter(|(k, n)| seen.get(*k).is_none_or(|c| c < n));
            format!(
                "{} of {} counts too high, {} too low (sums {} vs {}); {}",
                over.count(),
                expected.len(),
                under.count(),
                seen.values().sum::<i64>(),
                expected.values().sum::<i64>(),
                instances
                    .iter()
                    .map(|s| describe_instance(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
}

/// Records each counting task of `s` has processed since it was created.
fn processed(s: &KafkaStreams) -> BTreeMap<i32, u64> {
    s.metadata_for_local_threads()
        .iter()
        .flat_map(|t| t.active_tasks.iter())
        .filter(|t| t.task_id.subtopology == 1)
        .map(|t| (t.task_id.partition, t.records_processed))
        .collect()
}

/// One instance, a second joining, the second leaving. Returns whether the first instance's thread was ever
/// seen with every partition revoked while the second joined, and checks that the tasks it kept through the
/// join were never closed (their processed counts went on from where they were). With `exact`, every count
/// must be exact throughout.
fn join_and_leave(protocol: &str, exact: bool) -> bool {
    let broker = Broker::embedded();
    broker.create_topic("visits", 4);
    let app = format!("group-protocol-{protocol}");
    let start = |dir: &std::path::Path| {
        let (mut config, admin) = broker.config(&app, dir);
        config.set("group.protocol", protocol).unwrap();
        let s = KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap();
        s.start().unwrap();
        s
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut expected = BTreeMap::new();
    let a = start(dir_a.path());
    produce_visits(&broker.bootstrap(), 0, 4_000, PAGES, &mut expected);
    settle(&[&a], &expected, exact, "A to count the first visits");

    let before = processed(&a);
    // Watch A's threads while B joins.
    let revoked = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(true));
    let b = std::thread::scope(|scope| {
        let (seen, watch) = (revoked.clone(), watching.clone());
        let a = &a;
        scope.spawn(move || {
            while watch.load(Ordering::Relaxed) {
                if a.metadata_for_local_threads()
                    .iter()
                    .any(|t| t.thread_state == "PartitionsRevoked")
                {
                    seen.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Stops the watcher however this ends (a failed wait included), so the scope can end.
        struct Stop(Arc<AtomicBool>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _stop = Stop(watching.clone());
        let b = start(dir_b.path());
        produce_visits(&broker.bootstrap(), 4_000, 4_000, PAGES, &mut expected);
        settle(&[a, &b], &expected, exact, "A and B to share the tasks");
        b
    });
    println!(
        "group.protocol={protocol}: after the join A runs {:?}, B runs {:?}; A's partitions all revoked: {}",
        counting(&a),
        counting(&b),
        revoked.load(Ordering::Relaxed)
    );

    // The tasks A kept went on: none was closed and created again (which starts its count from zero).
    let after = processed(&a);
    assert!(!after.is_empty(), "A kept no task");
    for (p, n) in &after {
        assert!(
            *n >= before[p],
            "{protocol}: A's task 1_{p} was created again during the join ({} records before, {n} after)",
            before[p]
        );
    }
    // The counts come from the thread's snapshot, refreshed about once a second: give it a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut now = after;
    while !now
        .iter()
        .any(|(p, n)| before.get(p).is_some_and(|b| n > b))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        now = processed(&a);
    }
    assert!(
        now.iter()
            .any(|(p, n)| before.get(p).is_some_and(|b| n > b)),
        "{protocol}: A's kept tasks processed nothing of the second batch: {before:?} -> {now:?}"
    );

    // B leaves: A takes its tasks back, and every count stays exact.
    close_all(&[&b], Duration::from_secs(60));
    produce_visits(&broker.bootstrap(), 8_000, 2_000, PAGES, &mut expected);
    settle(
        &[&a],
        &expected,
        exact,
        "A to count everything after B left",
    );
    close_all(&[&a], Duration::from_secs(60));
    revoked.load(Ordering::Relaxed)
}

#[test]
fn with_the_consumer_protocol_a_join_revokes_only_the_partitions_that_move_on_the_embedded_broker()
{
    assert!(
        !join_and_leave("consumer", true),
        "under group.protocol=consumer, B's join revoked every partition of A"
    );
}

/// The baseline: the classic protocol revokes everything at every join. (Counts are checked at least: the
/// embedded broker refuses offset commits while its classic group is joining, so a revocation's commit can fail
/// and records be counted again.)
#[test]
fn with_the_classic_protocol_a_join_revokes_every_partition_on_the_embedded_broker() {
    assert!(join_and_leave("classic", false));
}
