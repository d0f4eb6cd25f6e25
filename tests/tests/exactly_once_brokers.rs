//! Exactly-once processing (`processing.guarantee=exactly_once_v2`) on real brokers: tansu (skipped, saying so,
//! when it is not installed) and, when `KAFKA_BOOTSTRAP` names one, a real Kafka cluster.
//!
//! - tansu, kill -9 between commits: an instance in a child process counts into a RocksDB store, is killed with
//!   SIGKILL once its input is processed and committed, and is restarted on the same state directory. It
//!   restores at most what its changelog received after its checkpoint (counted here from the checkpoint files and
//!   the changelog records read back), far less than the store holds, and after more input its counts and its output
//!   topic (each update exactly once) equal the reference computed from the produced input.
//! - tansu, visibility: with `commit.interval.ms` at 5 s, the output and changelog records of the open
//!   transaction are seen by a `read_uncommitted` consumer and not by a `read_committed` one until the commit,
//!   after which the `read_committed` one sees them.
//! - tansu, fencing: a producer of the test's with the instance's `transactional.id`
//!   (`<application.id>-<process id>-1`, the process id read from `<state.dir>/<application.id>/process-id`)
//!   calling `init_transactions` fences the instance's producer; the instance counts the fence
//!   (`streams_producer_fenced_total`), stays alive, re-creates its producer and counts the keys written after
//!   the fence exactly.
//! - real Kafka (`KAFKA_BOOTSTRAP=host:port`; skipped otherwise): an instance in a child process is killed with
//!   SIGKILL while a transaction is open (records processed, not committed), restarted; its counts equal the
//!   reference and its output, read with `read_committed`, holds every expected update exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use streams_dsl::streams_core::runtime::{
    KafkaStreams, State, StateRestoreListener, StreamsConfig,
};
use streams_dsl::*;
use tests::counters::{counter, snapshotter};
use tests::{produce, Broker};

const STORE: &str = "eos-counts";

/// Counts per key into a RocksDB store, every update written to `output`.
fn topology(input: &str, output: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream(input, Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store(STORE))
        .to_stream()
        .to(output, Produced::new());
    b.build().unwrap()
}

/// An exactly-once configuration without a record cache (every update reaches the output topic).
fn eos_config(app: &str, bootstrap: &str, dir: &Path, commit_ms: Option<u64>) -> StreamsConfig {
    let mut c = StreamsConfig::new(app, bootstrap);
    c.set("processing.guarantee", "exactly_once_v2").unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("statestore.cache.max.bytes", "0").unwrap();
    c.set("main.consumer.session.timeout.ms", "6000").unwrap();
    c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
    if let Some(ms) = commit_ms {
        c.set("commit.interval.ms", &ms.to_string()).unwrap();
    }
    c
}

fn tansu_missing(test: &str) -> bool {
    match tests::tansu_binary() {
        Some(bin) if bin.exists() => false,
        _ => {
            eprintln!(
                "SKIP {test}: tansu is not installed (bash scripts/test.sh installs it; or set TANSU_BIN)"
            );
            true
        }
    }
}

/// Input produced so far, and the counts it must give.
#[derive(Default, Clone)]
struct Input {
    records: usize,
    reference: BTreeMap<String, i64>,
}

impl Input {
    /// `n` more records over `keys` keys named `<prefix>NN`.
    fn add(&mut self, prefix: &str, keys: usize, n: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..n)
            .map(|j| {
                let i = self.records;
                self.records += 1;
                let key = format!("{prefix}{:03}", (j * 7 + j / keys) % keys);
                *self.reference.entry(key.clone()).or_default() += 1;
                (key.into_bytes(), Some(format!("e{i}").into_bytes()))
            })
            .collect()
    }
}

fn counts(streams: &KafkaStreams) -> Option<BTreeMap<String, i64>> {
    streams
        .store::<String, i64>(STORE)
        .and_then(|s| s.all())
        .ok()
        .map(|all| all.into_iter().collect())
}

/// A consumer of every partition of `topic` from the beginning, with `isolation.level` `isolation`.
fn reader(bootstrap: &str, topic: &str, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("eos-checker-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let start = Instant::now();
    let partitions = loop {
        let n = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .ok()
            .and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "topic {topic} does not exist"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// What `consumer` delivers within `time`: (key, value) pairs.
fn read_for(consumer: &BaseConsumer, time: Duration) -> Vec<(String, Option<Vec<u8>>)> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < time {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = tests::futures_block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The child process: an exactly-once instance that reports what it holds in a status file.

/// Counts restored records.
#[derive(Clone, Default)]
struct Restored(Arc<AtomicU64>);

impl StateRestoreListener for Restored {
    fn on_restore_end(&self, _store: &str, _partition: i32, restored: u64) {
        self.0.fetch_add(restored, Ordering::SeqCst);
    }
    fn on_restore_suspended(&self, _store: &str, _partition: i32, restored: u64) {
        self.0.fetch_add(restored, Ordering::SeqCst);
    }
}

/// Runs the counting application until killed, writing its state, store, counters and restored records to the
/// file `EOS_CHILD_STATUS` every 100 ms. Started by the crash tests.
#[test]
#[ignore = "runs only as the child process of the exactly-once crash tests"]
fn eos_child_process() {
    let var = |name: &str| std::env::var(name).ok();
    let (Some(bootstrap), Some(dir), Some(app), Some(input), Some(output), Some(status)) = (
        var("EOS_CHILD_BOOTSTRAP"),
        var("EOS_CHILD_STATE_DIR"),
        var("EOS_CHILD_APP"),
        var("EOS_CHILD_INPUT"),
        var("EOS_CHILD_OUTPUT"),
        var("EOS_CHILD_STATUS"),
    ) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            var("EOS_CHILD_LOG").unwrap_or_else(|| "info".into()),
        ))
        .try_init();
    snapshotter();
    let commit_ms = var("EOS_CHILD_COMMIT_MS").map(|v| v.parse().expect("milliseconds"));
    let config = eos_config(&app, &bootstrap, Path::new(&dir), commit_ms);
    let streams = KafkaStreams::new(topology(&input, &output), config).unwrap();
    let restored = Restored::default();
    streams.set_restore_listener(restored.clone());
    streams.set_state_listener(|from, to| eprintln!("EOS_CHILD state {from:?} -> {to:?}"));
    streams.start().unwrap();
    let tmp = format!("{status}.tmp");
    loop {
        let report = serde_json::json!({
            "state": format!("{:?}", streams.state()),
            "errors": streams.errors(),
            "counts": counts(&streams),
            "processed": streams.metrics().processed,
            "restored": restored.0.load(Ordering::SeqCst),
            "committed": counter("streams_transactions_committed_total", &app),
            "aborted": counter("streams_transactions_aborted_total", &app),
            "fenced": counter("streams_producer_fenced_total", &app),
        });
        std::fs::write(&tmp, report.to_string()).unwrap();
        std::fs::rename(&tmp, &status).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a child process last reported.
#[derive(Debug, Default)]
struct Status {
    state: String,
    errors: Vec<String>,
    /// The store, when it could be queried.
    counts: Option<BTreeMap<String, i64>>,
    processed: u64,
    restored: u64,
    committed: u64,
}

/// An instance in a child process, killed with SIGKILL on drop.
struct Instance {
    child: Option<Child>,
    status: PathBuf,
    log: PathBuf,
}

struct ChildSetup<'a> {
    bootstrap: &'a str,
    app: &'a str,
    input: &'a str,
    output: &'a str,
    state_dir: &'a Path,
    commit_ms: Option<u64>,
}

impl Instance {
    fn start(setup: &ChildSetup<'_>, files: &Path, incarnation: u32) -> Instance {
        let status = files.join(format!("status-{incarnation}.json"));
        let log = files.join(format!("child-{incarnation}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["eos_child_process", "--exact", "--ignored", "--nocapture"])
            .env("EOS_CHILD_BOOTSTRAP", setup.bootstrap)
            .env("EOS_CHILD_STATE_DIR", setup.state_dir)
            .env("EOS_CHILD_APP", setup.app)
            .env("EOS_CHILD_INPUT", setup.input)
            .env("EOS_CHILD_OUTPUT", setup.output)
            .env("EOS_CHILD_STATUS", &status)
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(ms) = setup.commit_ms {
            cmd.env("EOS_CHILD_COMMIT_MS", ms.to_string());
        }
        Instance {
            child: Some(cmd.spawn().expect("start the child process")),
            status,
            log,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// The last report; panics, with the log, when the process has ended or its instance has failed.
    fn status(&mut self) -> Status {
        let child = self.child.as_mut().expect("a running child");
        if let Some(exit) = child.try_wait().unwrap() {
            panic!(
                "the instance's process ended by itself ({exit}); log:\n{}",
                self.log_tail()
            );
        }
        let Ok(text) = std::fs::read_to_string(&self.status) else {
            return Status::default();
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON status");
        let status = Status {
            state: v["state"].as_str().unwrap_or_default().to_string(),
            errors: v["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            counts: v["counts"].as_object().map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_i64().expect("a count")))
                    .collect()
            }),
            processed: v["processed"].as_u64().unwrap_or(0),
            restored: v["restored"].as_u64().unwrap_or(0),
            committed: v["committed"].as_u64().unwrap_or(0),
        };
        assert!(
            matches!(
                status.state.as_str(),
                "" | "Created" | "Rebalancing" | "Running"
            ),
            "the instance is {}: {:?}; log:\n{}",
            status.state,
            status.errors,
            self.log_tail()
        );
        status
    }

    /// Waits until `done(status)`, panicking with the log after `timeout`.
    fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Status {
        let start = Instant::now();
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; last status {status:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The offsets in every checkpoint file of application `app` under `state_dir`.
fn checkpoints(state_dir: &Path, app: &str) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(state_dir.join(app)) else {
        return out;
    };
    for task in tasks.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(task.path().join(".checkpoint")) else {
            continue;
        };
        for line in text.lines() {
            if let [topic, partition, offset] = line.split_whitespace().collect::<Vec<_>>()[..] {
                out.insert(
                    (topic.to_string(), partition.parse().unwrap()),
                    offset.parse().unwrap(),
                );
            }
        }
    }
    out
}

/// The offsets of the records of `topic` (every partition, read with `read_uncommitted` until nothing more
/// arrives for a second): an independent count of what the changelog holds.
fn record_offsets(bootstrap: &str, topic: &str) -> Vec<(i32, i64)> {
    let consumer = reader(bootstrap, topic, "read_uncommitted");
    let mut out = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(1) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push((m.partition(), m.offset()));
            quiet = Instant::now();
        }
    }
    out
}

/// Reads `topic` with `read_committed` until every key of `reference` shows its final count, and checks that
/// each key's updates are exactly 1, 2, ..., n: each expected update once, none from an aborted transaction.
fn assert_output_exactly_once(bootstrap: &str, topic: &str, reference: &BTreeMap<String, i64>) {
    let consumer = reader(bootstrap, topic, "read_committed");
    let mut updates: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let start = Instant::now();
    while !reference
        .iter()
        .all(|(k, n)| updates.get(k).and_then(|u| u.last()) == Some(n))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the output topic {topic} did not reach the reference within 60 s: {updates:?}"
        );
        for (k, v) in read_for(&consumer, Duration::from_millis(200)) {
            let v = v.expect("a count, not a tombstone");
            updates
                .entry(k)
                .or_default()
                .push(i64::from_be_bytes(v.as_slice().try_into().expect("an i64")));
        }
    }
    // Whatever else is there arrives within a moment.
    for (k, v) in read_for(&consumer, Duration::from_secs(1)) {
        let v = v.unwrap_or_default();
        updates
            .entry(k)
            .or_default()
            .push(i64::from_be_bytes(v.as_slice().try_into().expect("an i64")));
    }
    let wrong: Vec<String> = reference
        .iter()
        .filter(|(k, n)| updates.get(*k) != Some(&(1..=**n).collect::<Vec<_>>()))
        .map(|(k, n)| format!("{k}: want 1..={n}, got {:?}", updates.get(k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "the output read with read_committed does not hold each update exactly once:\n{}",
        wrong.join("\n")
    );
    let unknown: Vec<&String> = updates
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .collect();
    assert!(unknown.is_empty(), "keys never produced: {unknown:?}");
}

/// When the child is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    /// Once its input is processed and committed, while it is idle between commits.
    BetweenCommits,
    /// While a transaction holds processed records not yet committed.
    TransactionOpen,
}

/// Runs an instance in a child process, kills it (`kill`), restarts it on the same state directory and checks
/// its counts and output against the reference. Returns (records restored by the second incarnation, records
/// its changelog received after the checkpoint the first incarnation left, changelog records in all).
fn crash_and_restart(bootstrap: &str, setup: &ChildSetup<'_>, kill: Kill) -> (u64, i64, i64) {
    let files = tempfile::tempdir().unwrap();
    const KEYS: usize = 60;
    let mut input = Input::default();
    produce(bootstrap, setup.input, &input.add("key", KEYS, 600));
    let mut first = Instance::start(setup, files.path(), 1);
    let reference = input.reference.clone();
    first.wait(
        "the first input counted and committed",
        Duration::from_secs(120),
        |s| s.counts.as_ref() == Some(&reference) && s.committed > 0,
    );
    match kill {
        Kill::BetweenCommits => {
            // Nothing more arrives: the instance has committed (the store shows only committed data) and is idle.
            std::thread::sleep(Duration::from_secs(1));
        }
        Kill::TransactionOpen => {
            // More input is processed into a transaction that the long commit interval keeps open.
            let mut attempts = 0;
            loop {
                let committed = input.reference.clone();
                produce(bootstrap, setup.input, &input.add("key", KEYS, 300));
                let total = input.records as u64;
                let s = first.wait("the new input processed", Duration::from_secs(60), |s| {
                    s.processed >= total
                });
                if s.counts.as_ref() == Some(&committed) {
                    break;
                }
                attempts += 1;
                assert!(
                    attempts < 5,
                    "the commit always came before the kill; the commit interval is too short"
                );
                let reference = input.reference.clone();
                first.wait("the commit", Duration::from_secs(60), |s| {
                    s.counts.as_ref() == Some(&reference)
                });
            }
        }
    }
    first.kill();

    let changelog = format!("{}-{STORE}-changelog", setup.app);
    let checkpoint = checkpoints(setup.state_dir, setup.app);
    let offsets = record_offsets(bootstrap, &changelog);
    let after_checkpoint = offsets
        .iter()
        .filter(|(p, o)| {
            checkpoint
                .get(&(changelog.clone(), *p))
                .is_none_or(|c| o >= c)
        })
        .count() as i64;
    let changelog_records = offsets.len() as i64;
    eprintln!("after the kill: checkpoints {checkpoint:?}, {changelog_records} changelog records");

    // More input while it is down, some of it for new keys.
    produce(bootstrap, setup.input, &input.add("key", KEYS + 20, 400));
    let mut second = Instance::start(setup, files.path(), 2);
    let reference = input.reference.clone();
    let s = second.wait(
        "every count equal to the reference after the restart",
        Duration::from_secs(120),
        |s| s.counts.as_ref() == Some(&reference) && s.state == "Running",
    );
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_output_exactly_once(bootstrap, setup.output, &input.reference);
    (s.restored, after_checkpoint, changelog_records)
}

#[test]
fn on_tansu_an_instance_killed_between_commits_restores_almost_nothing_and_counts_exactly() {
    if tansu_missing(
        "on_tansu_an_instance_killed_between_commits_restores_almost_nothing_and_counts_exactly",
    ) {
        return;
    }
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    broker.create_topic("eos-in", 2);
    broker.create_topic("eos-out", 2);
    let dir = tempfile::tempdir().unwrap();
    let setup = ChildSetup {
        bootstrap: &bootstrap,
        app: "eos-kill",
        input: "eos-in",
        output: "eos-out",
        state_dir: dir.path(),
        commit_ms: None,
    };
    let (restored, after_checkpoint, changelog_records) =
        crash_and_restart(&bootstrap, &setup, Kill::BetweenCommits);
    eprintln!(
        "kill -9 between commits on tansu: restored {restored} records at the restart; the changelog had \
         {after_checkpoint} records after the checkpoint, {changelog_records} in all"
    );
    assert!(
        restored as i64 <= after_checkpoint,
        "restored {restored} records, more than the {after_checkpoint} written after the checkpoint"
    );
    // The store holds 60 keys and its changelog hundreds of updates: a restart from the local store restores
    // almost none of them.
    assert!(
        restored <= 6,
        "restored {restored} records: the local store and its checkpoint were not used"
    );
}

#[test]
fn on_tansu_records_of_an_open_transaction_are_invisible_to_read_committed_until_the_commit() {
    if tansu_missing(
        "on_tansu_records_of_an_open_transaction_are_invisible_to_read_committed_until_the_commit",
    ) {
        return;
    }
    snapshotter();
    let app = "eos-visibility";
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    broker.create_topic("vis-in", 1);
    broker.create_topic("vis-out", 1);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        topology("vis-in", "vis-out"),
        eos_config(app, &bootstrap, dir.path(), Some(5000)),
    )
    .unwrap();
    streams.start().unwrap();
    let committed = || counter("streams_transactions_committed_total", app);
    // A first record, committed: the next commit is a whole interval away.
    produce(
        &bootstrap,
        "vis-in",
        &[(b"first".to_vec(), Some(b"e".to_vec()))],
    );
    tests::wait_until(
        "the first record committed",
        Duration::from_secs(60),
        || {
            assert!(
                matches!(streams.state(), State::Rebalancing | State::Running),
                "{:?}",
                streams.errors()
            );
            committed() > 0 && counts(&streams).is_some_and(|c| c.get("first") == Some(&1))
        },
    );
    let changelog = format!("{app}-{STORE}-changelog");
    let readers: Vec<(&str, &str, BaseConsumer)> = ["vis-out", changelog.as_str()]
        .into_iter()
        .flat_map(|topic| {
            ["read_uncommitted", "read_committed"]
                .map(|iso| (topic, iso, reader(&bootstrap, topic, iso)))
        })
        .collect();
    let mut seen: BTreeMap<(&str, &str), Vec<String>> = readers
        .iter()
        .map(|(topic, iso, _)| ((*topic, *iso), Vec::new()))
        .collect();
    let before = committed();
    let open: Vec<String> = (0..20).map(|i| format!("open{i:02}")).collect();
    let records: Vec<_> = open
        .iter()
        .map(|k| (k.clone().into_bytes(), Some(b"e".to_vec())))
        .collect();
    produce(&bootstrap, "vis-in", &records);
    let has_all = |keys: &[String]| open.iter().all(|k| keys.contains(k));
    // read_uncommitted sees the transaction's records on both topics...
    for (topic, iso, consumer) in readers.iter().filter(|r| r.1 == "read_uncommitted") {
        let start = Instant::now();
        while !has_all(&seen[&(*topic, *iso)]) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{iso} never saw the open transaction's records on {topic}: {:?}",
                seen[&(*topic, *iso)]
            );
            let more = keys_of(read_for(consumer, Duration::from_millis(100)));
            seen.get_mut(&(*topic, *iso)).unwrap().extend(more);
        }
    }
    // ...read_committed does not, and neither do interactive queries.
    for (topic, iso, consumer) in readers.iter().filter(|r| r.1 == "read_committed") {
        let more = keys_of(read_for(consumer, Duration::from_millis(500)));
        seen.get_mut(&(*topic, *iso)).unwrap().extend(more);
    }
    let store_now = counts(&streams);
    assert_eq!(
        committed(),
        before,
        "a commit came before the checks were done (the commit interval is 5 s): the checks prove nothing"
    );
    for (topic, iso, _) in readers.iter().filter(|r| r.1 == "read_committed") {
        let visible: Vec<&String> = seen[&(*topic, *iso)]
            .iter()
            .filter(|k| k.starts_with("open"))
            .collect();
        assert!(
            visible.is_empty(),
            "{iso} saw records of the open transaction on {topic}: {visible:?}"
        );
    }
    // Interactive queries are not part of the transaction's isolation: say what they showed.
    let uncommitted_in_store = store_now
        .as_ref()
        .map_or(0, |s| s.keys().filter(|k| k.starts_with("open")).count());
    eprintln!(
        "open transaction: read_committed saw none of its {} records on the output and the changelog, \
         read_uncommitted all; interactive queries showed {uncommitted_in_store} of its updates",
        open.len()
    );

    // After the commit, read_committed sees them.
    tests::wait_until("the commit", Duration::from_secs(30), || {
        committed() > before
    });
    for (topic, iso, consumer) in readers.iter().filter(|r| r.1 == "read_committed") {
        let start = Instant::now();
        while !has_all(&seen[&(*topic, *iso)]) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{iso} did not see the committed records on {topic}: {:?}",
                seen[&(*topic, *iso)]
            );
            let more = keys_of(read_for(consumer, Duration::from_millis(100)));
            seen.get_mut(&(*topic, *iso)).unwrap().extend(more);
        }
    }
    let mut want: BTreeMap<String, i64> = open.iter().map(|k| (k.clone(), 1)).collect();
    want.insert("first".into(), 1);
    tests::wait_until(
        "the store holds the commit",
        Duration::from_secs(30),
        || counts(&streams).as_ref() == Some(&want),
    );
    assert_eq!(streams.state(), State::Running, "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}

fn keys_of(records: Vec<(String, Option<Vec<u8>>)>) -> Vec<String> {
    records.into_iter().map(|(k, _)| k).collect()
}

#[test]
fn on_tansu_a_fenced_producer_is_replaced_and_processing_goes_on_exactly() {
    if tansu_missing("on_tansu_a_fenced_producer_is_replaced_and_processing_goes_on_exactly") {
        return;
    }
    snapshotter();
    let app = "eos-fenced";
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    broker.create_topic("fence-in", 2);
    broker.create_topic("fence-out", 2);
    let dir = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(
        topology("fence-in", "fence-out"),
        eos_config(app, &bootstrap, dir.path(), None),
    )
    .unwrap();
    streams.start().unwrap();
    let alive = |s: &KafkaStreams| {
        assert!(
            matches!(s.state(), State::Rebalancing | State::Running),
            "the instance is {:?}: {:?}",
            s.state(),
            s.errors()
        );
    };
    let mut before_fence = Input::default();
    produce(&bootstrap, "fence-in", &before_fence.add("before", 10, 200));
    tests::wait_until("the first input counted", Duration::from_secs(60), || {
        alive(&streams);
        counts(&streams).as_ref() == Some(&before_fence.reference)
    });

    // A producer of the test's takes the instance's transactional.id.
    let process_id = std::fs::read_to_string(dir.path().join(app).join("process-id"))
        .expect("the process-id file of the state directory");
    let transactional_id = format!("{app}-{}-1", process_id.trim());
    let fencer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", &transactional_id)
        .create()
        .expect("producer");
    fencer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions with the instance's transactional.id");
    assert_eq!(counter("streams_producer_fenced_total", app), 0);

    // Keys written only after the fence.
    let mut after_fence = Input::default();
    produce(&bootstrap, "fence-in", &after_fence.add("after", 10, 200));
    let start = Instant::now();
    loop {
        alive(&streams);
        let fenced = counter("streams_producer_fenced_total", app);
        let now = counts(&streams);
        let counted = now.as_ref().is_some_and(|c| {
            after_fence
                .reference
                .iter()
                .all(|(k, n)| c.get(k) == Some(n))
        });
        if fenced > 0 && counted {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "90 s after the fence: streams_producer_fenced_total {fenced}, aborted {}, committed {}, store \
             {now:?}, want the keys after the fence at {:?}; {:?} {:?}",
            counter("streams_transactions_aborted_total", app),
            counter("streams_transactions_committed_total", app),
            after_fence.reference,
            streams.state(),
            streams.errors()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // More input after the recovery is counted exactly too.
    produce(&bootstrap, "fence-in", &after_fence.add("after", 10, 100));
    tests::wait_until("the latest keys counted", Duration::from_secs(60), || {
        alive(&streams);
        counts(&streams).is_some_and(|c| {
            after_fence
                .reference
                .iter()
                .all(|(k, n)| c.get(k) == Some(n))
        })
    });
    let store = counts(&streams).unwrap();
    // Nothing counted before the fence is lost. Counted again, it can be on tansu: it shows the records of the
    // transaction the fence aborted to read_committed readers, and its second init_transactions makes the old
    // producer's commit time out rather than fail as fenced, so what that transaction carried can surface. Exact
    // counts through a fence are for a broker with real transactional isolation (the KAFKA_BOOTSTRAP test).
    let doubled: Vec<String> = before_fence
        .reference
        .iter()
        .filter(|(k, n)| store.get(*k).is_some_and(|c| c > *n))
        .map(|(k, n)| format!("{k}: {:?}, produced {n}", store.get(k)))
        .collect();
    if !doubled.is_empty() {
        eprintln!("keys written before the fence counted more than once on tansu: {doubled:?}");
    }
    let earlier: Vec<String> = before_fence
        .reference
        .iter()
        .filter(|(k, n)| store.get(*k).is_none_or(|c| c < *n))
        .map(|(k, n)| format!("{k}: {:?}, produced {n}", store.get(k)))
        .collect();
    eprintln!(
        "fenced: streams_producer_fenced_total {}, transactions committed {}, aborted {}; keys written before the \
         fence off the reference: {earlier:?}",
        counter("streams_producer_fenced_total", app),
        counter("streams_transactions_committed_total", app),
        counter("streams_transactions_aborted_total", app),
    );
    assert!(
        earlier.is_empty(),
        "keys counted before the fence lost counts: {earlier:?}"
    );
    drop(fencer);
    assert_eq!(streams.state(), State::Running, "{:?}", streams.errors());
    assert!(streams.errors().is_empty(), "{:?}", streams.errors());
    assert!(streams.close(Duration::from_secs(30)));
}

/// Real Kafka: `KAFKA_BOOTSTRAP=host:port` (a cluster whose transaction state log can be written: on a single
/// broker, `transaction.state.log.replication.factor=1` and `transaction.state.log.min.isr=1`).
#[test]
fn on_real_kafka_a_crash_with_a_transaction_open_leaves_exact_counts_and_output() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        eprintln!("skipped: KAFKA_BOOTSTRAP not set");
        return;
    };
    // Names of their own on every run: a real cluster keeps topics and groups.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let app = format!("eos-crash-{run}");
    let (input, output) = (
        format!("eos-crash-in-{run}"),
        format!("eos-crash-out-{run}"),
    );
    create_topics(&bootstrap, &[&input, &output], 3);
    let dir = tempfile::tempdir().unwrap();
    let setup = ChildSetup {
        bootstrap: &bootstrap,
        app: &app,
        input: &input,
        output: &output,
        state_dir: dir.path(),
        // Long enough that the kill lands inside the transaction.
        commit_ms: Some(3000),
    };
    let (restored, after_checkpoint, changelog_records) =
        crash_and_restart(&bootstrap, &setup, Kill::TransactionOpen);
    eprintln!(
        "kill -9 with a transaction open on {bootstrap}: restored {restored} records at the restart; the \
         changelog had {after_checkpoint} records (and markers) after the checkpoint, {changelog_records} in all"
    );
    assert!(
        restored as i64 <= after_checkpoint,
        "restored {restored} records, more than the {after_checkpoint} written after the checkpoint"
    );
}
