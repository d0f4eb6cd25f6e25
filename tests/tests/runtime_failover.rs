//! Failures and moves: a process killed with SIGKILL mid-stream and restarted, and two instances sharing the
//! partitions of one application, one of which leaves.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, State, StreamsConfig};
use streams_dsl::*;
use tests::{close_all, consume_until, describe_instance, produce, wait_until_reporting, Broker};

const APP: &str = "failover";

/// Every reading is copied to `readings-out`; the highest reading and the number of readings per sensor are
/// kept in tables written to `max-out` and `count-out`.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let readings = b.stream("readings", Consumed::with(Serdes::string(), Serdes::i64()));
    readings
        .map_values(|v| v * 10)
        .to("readings-out", Produced::new());
    let by_sensor = readings.group_by_key(Grouped::new());
    by_sensor
        .reduce(|a, b| a.max(b), Materialized::as_store("max"))
        .to_stream()
        .to("max-out", Produced::new());
    by_sensor
        .count(Materialized::as_store("count"))
        .to_stream()
        .to("count-out", Produced::new());
    b.build().unwrap()
}

fn readings(from: i64, n: i64) -> Vec<(String, i64)> {
    (from..from + n)
        .map(|i| (format!("sensor{}", i % 11), (i * 7919) % 1000 + i))
        .collect()
}

fn produce_readings(broker_bootstrap: &str, r: &[(String, i64)]) {
    let raw: Vec<_> = r
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.to_be_bytes().to_vec())))
        .collect();
    produce(broker_bootstrap, "readings", &raw);
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

fn latest(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> BTreeMap<String, i64> {
    decode(records).into_iter().collect()
}

/// The topics the application needs, created up front (a child process cannot use the embedded broker's
/// in-process admin, and the mock broker does not answer CreateTopics).
fn create_topics(broker: &Broker) {
    for t in ["readings", "readings-out", "max-out", "count-out"] {
        broker.create_topic(t, 3);
    }
    for store in ["max", "count"] {
        broker.create_topic(&format!("{APP}-{store}-changelog"), 3);
    }
    broker.create_topic(&format!("{APP}-metadata"), 1);
}

fn config(bootstrap: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(APP, bootstrap);
    c.set("commit.interval.ms", "100").unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("main.consumer.session.timeout.ms", "6000").unwrap();
    c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
    c
}

/// Runs the application until killed; started by `crash_and_restart` in a child process.
#[test]
#[ignore = "runs only as the child process of the crash tests"]
fn crash_child_process() {
    let (Ok(bootstrap), Ok(dir)) = (
        std::env::var("CRASH_BOOTSTRAP"),
        std::env::var("CRASH_STATE_DIR"),
    ) else {
        return;
    };
    let streams =
        KafkaStreams::new(topology(), config(&bootstrap, std::path::Path::new(&dir))).unwrap();
    streams.start().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn crash_and_restart(broker: Broker) {
    create_topics(&broker);
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_process", "--exact", "--ignored", "--nocapture"])
        .env("CRASH_BOOTSTRAP", &bootstrap)
        .env("CRASH_STATE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let all = readings(0, 3000);
    produce_readings(&bootstrap, &all[..1500]);
    // Kill the child once it is visibly mid-stream.
    let seen = consume_until(&bootstrap, "readings-out", Duration::from_secs(90), |r| {
        r.len() >= 300
    });
    assert!(
        seen.len() >= 300,
        "the child processed only {} records",
        seen.len()
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    produce_readings(&bootstrap, &all[1500..]);

    let streams = KafkaStreams::new(topology(), config(&bootstrap, dir.path())).unwrap();
    streams.start().unwrap();
    // No input is missing from the output (duplicates are allowed: at-least-once).
    let expected: Vec<(String, i64)> = all.iter().map(|(k, v)| (k.clone(), v * 10)).collect();
    let contains_all = |r: &[(Vec<u8>, Option<Vec<u8>>)]| {
        let mut got: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for x in decode(r) {
            *got.entry(x).or_default() += 1;
        }
        expected.iter().all(|x| got.contains_key(x))
    };
    let out = consume_until(
        &bootstrap,
        "readings-out",
        Duration::from_secs(90),
        contains_all,
    );
    assert!(
        contains_all(&out),
        "some input records never reached the output"
    );
    // The maximum per sensor is idempotent under reprocessing: it must be exact.
    let mut max: BTreeMap<String, i64> = BTreeMap::new();
    let mut count: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in &all {
        max.entry(k.clone())
            .and_modify(|m| *m = (*m).max(*v))
            .or_insert(*v);
        *count.entry(k.clone()).or_default() += 1;
    }
    let got_max = consume_until(&bootstrap, "max-out", Duration::from_secs(60), |r| {
        latest(r) == max
    });
    assert_eq!(latest(&got_max), max);
    // Counts may include records processed twice (those after the last commit before the crash), never fewer.
    let got_count = consume_until(&bootstrap, "count-out", Duration::from_secs(60), |r| {
        let l = latest(r);
        count.iter().all(|(k, c)| l.get(k).is_some_and(|g| g >= c))
    });
    let l = latest(&got_count);
    for (k, c) in &count {
        assert!(
            l.get(k).is_some_and(|g| g >= c),
            "count of {k}: {:?} < {c}",
            l.get(k)
        );
    }
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn crash_and_restart_on_the_embedded_broker() {
    crash_and_restart(Broker::embedded());
}

#[test]
fn crash_and_restart_on_tansu() {
    crash_and_restart(Broker::tansu());
}

fn two_instances_one_leaves(broker: Broker) {
    create_topics(&broker);
    let bootstrap = broker.bootstrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = KafkaStreams::new(topology(), config(&bootstrap, dir_a.path())).unwrap();
    let b = KafkaStreams::new(topology(), config(&bootstrap, dir_b.path())).unwrap();
    let restored_b = Arc::new(AtomicU64::new(0));
    b.set_restore_listener(tests::CountingRestores(restored_b.clone()));
    a.start().unwrap();
    b.start().unwrap();
    assert!(a.wait_for_state(State::Running, Duration::from_secs(60)));
    assert!(b.wait_for_state(State::Running, Duration::from_secs(60)));
    let first = readings(0, 1000);
    produce_readings(&bootstrap, &first);
    let count_of = |rs: &[(String, i64)]| {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for (k, _) in rs {
            *m.entry(k.clone()).or_default() += 1;
        }
        m
    };
    let got = consume_until(&bootstrap, "count-out", Duration::from_secs(60), |r| {
        latest(r) == count_of(&first)
    });
    assert_eq!(latest(&got), count_of(&first));
    let before = (a.metrics().processed, b.metrics().processed);
    assert!(
        before.0 > 0 && before.1 > 0,
        "both instances had work: {before:?}"
    );

    // A leaves: its tasks move to B, whose stores are restored from the changelogs.
    assert!(a.close(Duration::from_secs(30)));
    let second = readings(1000, 1000);
    produce_readings(&bootstrap, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let got = consume_until(&bootstrap, "count-out", Duration::from_secs(90), |r| {
        latest(r) == count_of(&all)
    });
    assert_eq!(
        latest(&got),
        count_of(&all),
        "counts are exact: A committed before handing over (B: {:?} {:?} {:?})",
        b.state(),
        b.errors(),
        b.metrics()
    );
    assert!(
        restored_b.load(Ordering::Relaxed) > 0,
        "B restored the state of A's tasks"
    );
    assert!(b.close(Duration::from_secs(30)));
}

#[test]
fn two_instances_one_leaves_on_the_embedded_broker() {
    two_instances_one_leaves(Broker::embedded());
}

#[test]
fn two_instances_one_leaves_on_tansu() {
    two_instances_one_leaves(Broker::tansu());
}

/// Records each instance's sub-topology-0 tasks (reading `visits`) processed, by partition.
fn visits_processed(s: &KafkaStreams) -> BTreeMap<i32, u64> {
    s.metadata_for_local_threads()
        .iter()
        .flat_map(|t| t.active_tasks.iter())
        .filter(|t| t.task_id.subtopology == 0)
        .map(|t| (t.task_id.partition, t.records_processed))
        .collect()
}

/// Defect: when the commit before a rebalance was refused (the embedded broker, librdkafka's mock cluster,
/// refuses every commit while its group is joining), the partitions a thread kept restarted at the group's
/// committed offset: everything the thread had processed before the rebalance was processed again, its records
/// sent on twice and counted twice by the stores it kept.
#[test]
fn a_kept_partition_is_not_processed_again_when_the_commit_before_the_rebalance_is_refused() {
    let broker = Broker::embedded();
    broker.create_topic("visits", 3);
    let raw: Vec<_> = (0..600)
        .map(|i| {
            (
                format!("u{}", i % 30).into_bytes(),
                Some(format!("/p{}", i % 20).into_bytes()),
            )
        })
        .collect();
    produce(&broker.bootstrap(), "visits", &raw);
    let sizes: BTreeMap<i32, u64> = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
        (0..3)
            .map(|p| {
                let (low, high) = c
                    .fetch_watermarks("visits", p, Duration::from_secs(10))
                    .unwrap();
                (p, (high - low) as u64)
            })
            .collect()
    };
    assert_eq!(sizes.values().sum::<u64>(), 600);

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A never commits on its interval: what it processes alone is committed, if ever, when the rebalance begins,
    // and the broker refuses that commit.
    let (mut config, admin) = broker.config("kept", dir_a.path());
    config.set("commit.interval.ms", "600000").unwrap();
    let a = KafkaStreams::new(tests::page_counts_topology(), (config, admin)).unwrap();
    a.start().unwrap();
    wait_until_reporting(
        "A to process every visit alone",
        Duration::from_secs(60),
        || visits_processed(&a) == sizes,
        || describe_instance(&a),
    );

    let b = KafkaStreams::new(
        tests::page_counts_topology(),
        broker.config("kept", dir_b.path()),
    )
    .unwrap();
    b.start().unwrap();
    // B reads the partitions it took from the beginning (A committed nothing for them); A keeps the others and
    // goes on from where it stopped.
    let kept = || -> BTreeMap<i32, u64> {
        let on_b = visits_processed(&b);
        visits_processed(&a)
            .into_iter()
            .filter(|(p, _)| !on_b.contains_key(p))
            .collect()
    };
    wait_until_reporting(
        "the rebalance to complete and B to process its partitions",
        Duration::from_secs(60),
        || {
            let (on_a, on_b) = (visits_processed(&a), visits_processed(&b));
            a.state() == State::Running
                && b.state() == State::Running
                && on_a.len() + on_b.len() == 3
                && !on_b.is_empty()
                && on_b.iter().all(|(p, n)| *n == sizes[p])
        },
        || format!("A: {}; B: {}", describe_instance(&a), describe_instance(&b)),
    );
    // A reprocessing its kept partitions would show within moments: every record fetched again at once.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let kept = kept();
        assert!(!kept.is_empty(), "A keeps a partition");
        for (p, n) in &kept {
            assert_eq!(
                *n,
                sizes[p],
                "A processed {n} records of visits-{p}, which holds {}: {}",
                sizes[p],
                describe_instance(&a)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // One after the other: B leaves, A rejoins alone, then A leaves an empty group. (Closed together, both
    // members once left the mock cluster's group in the middle of a rejoin, and librdkafka's consumer close
    // waited for that rejoin past the 60 s.)
    close_all(&[&b], Duration::from_secs(60));
    close_all(&[&a], Duration::from_secs(60));
}
