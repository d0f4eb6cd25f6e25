//! Kill -9 soak on tansu: two worker processes run a stateful application while a producer writes keyed records
//! without pause; at moments chosen by a seeded random generator one worker is killed with SIGKILL and restarted,
//! sometimes with its state directory wiped first, and sometimes a third process is started on the state
//! directory of a live worker (it must be refused with `StateDirLocked` and change nothing). At the end the output
//! topics, the changelog and the stores (by interactive query through each worker's query server) are checked
//! against a reference computed from the produced input, and both workers must be alive and in the group.
//!
//! The application keeps two aggregates per key:
//!
//! - `soak-count`, a plain count: under at-least-once, records processed again after a kill are counted again, so
//!   it may only be >= the reference;
//! - `soak-sum`, a sum made idempotent by per-key sequence numbers (the producer numbers each key's records 1, 2,
//!   3, ...; the aggregate keeps the last number applied and skips a record whose number is not above it). It
//!   must equal the reference exactly, and it counts the gaps it sees (a number more than one above the last), so
//!   a lost record shows up both as a wrong sum and as a gap.
//!
//! `STREAMS_SOAK_KILLS` sets the number of kills (default 5, 30-40 s; 100 take about 5 minutes); `SOAK_SEED` replays a run's choices
//! (the seed is printed). Skipped, saying so, when tansu is not installed.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use streams_dsl::streams_core::runtime::{KafkaStreams, QueryServer, State, StreamsConfig};
use streams_dsl::*;
use tests::Broker;

const APP: &str = "soak";
const INPUT: &str = "soak-in";
const COUNT_OUT: &str = "soak-count-out";
const SUM_OUT: &str = "soak-sum-out";
const COUNT_STORE: &str = "soak-count";
const SUM_STORE: &str = "soak-sum";
const PARTITIONS: i32 = 4;
const KEYS: u64 = 24;
/// A worker's exit code when the state directory is held by another instance.
const LOCKED_EXIT: i32 = 3;
/// A worker's exit code when it failed (start error, or the instance left the running states).
const FAILED_EXIT: i32 = 2;
/// The line a worker prints once `start()` succeeded (it then holds the state directory's lock).
const STARTED: &str = "SOAK_WORKER_STARTED pid=";

/// The idempotent sum's state: the last sequence number applied, the sum, the records applied, the records
/// skipped as already applied, and the gaps seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SumState {
    last_seq: u64,
    sum: i64,
    applied: u64,
    skipped: u64,
    gaps: u64,
}

impl SumState {
    fn parse(s: &str) -> Option<SumState> {
        if s.is_empty() {
            return Some(SumState::default());
        }
        let f: Vec<&str> = s.split(',').collect();
        let [last_seq, sum, applied, skipped, gaps] = f.as_slice() else {
            return None;
        };
        Some(SumState {
            last_seq: last_seq.parse().ok()?,
            sum: sum.parse().ok()?,
            applied: applied.parse().ok()?,
            skipped: skipped.parse().ok()?,
            gaps: gaps.parse().ok()?,
        })
    }

    fn encode(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.last_seq, self.sum, self.applied, self.skipped, self.gaps
        )
    }

    /// Applies an input value `seq:amount`.
    fn apply(mut self, value: &str) -> SumState {
        let (seq, amount) = value.split_once(':').expect("seq:amount");
        let (seq, amount): (u64, i64) = (seq.parse().unwrap(), amount.parse().unwrap());
        if seq <= self.last_seq {
            self.skipped += 1;
            return self;
        }
        if seq > self.last_seq + 1 {
            self.gaps += 1;
        }
        self.last_seq = seq;
        self.sum += amount;
        self.applied += 1;
        self
    }
}

fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream(INPUT, Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::new());
    grouped
        .count(Materialized::as_store(COUNT_STORE))
        .to_stream()
        .to(COUNT_OUT, Produced::new());
    grouped
        .aggregate(
            String::new,
            |_k, v: &String, agg: String| {
                SumState::parse(&agg)
                    .expect("a sum state")
                    .apply(v)
                    .encode()
            },
            Materialized::as_store(SUM_STORE).with_value_serde(Serdes::string()),
        )
        .to_stream()
        .to(SUM_OUT, Produced::new());
    b.build().unwrap()
}

fn worker_config(bootstrap: &str, dir: &Path) -> StreamsConfig {
    let mut c = StreamsConfig::new(APP, bootstrap);
    c.set("commit.interval.ms", "200").unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("main.consumer.session.timeout.ms", "6000").unwrap();
    c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
    c
}

/// A worker: runs the application until killed. Started by the soak test as a child process; exits with
/// `LOCKED_EXIT` when another instance holds its state directory, `FAILED_EXIT` when the instance fails.
#[test]
#[ignore = "runs only as a worker process of the soak test"]
fn soak_worker_process() {
    let (Ok(bootstrap), Ok(dir)) = (
        std::env::var("SOAK_WORKER_BOOTSTRAP"),
        std::env::var("SOAK_WORKER_STATE_DIR"),
    ) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("SOAK_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .try_init();
    let pid = std::process::id();
    let port: Option<u16> = std::env::var("SOAK_WORKER_PORT")
        .ok()
        .map(|p| p.parse().expect("SOAK_WORKER_PORT: a port"));
    let mut config = worker_config(&bootstrap, Path::new(&dir));
    if let Some(port) = port {
        config
            .set("application.server", &format!("127.0.0.1:{port}"))
            .unwrap();
    }
    let streams = Arc::new(KafkaStreams::new(topology(), config).unwrap());
    streams.set_state_listener(move |from, to| eprintln!("worker {pid}: {from:?} -> {to:?}"));
    match streams.start() {
        Ok(()) => eprintln!("{STARTED}{pid}"),
        Err(e @ StreamsError::StateDirLocked { .. }) => {
            eprintln!("SOAK_WORKER_LOCKED: {e}");
            std::process::exit(LOCKED_EXIT);
        }
        Err(e) => {
            eprintln!("SOAK_WORKER_FAILED: start: {e}");
            std::process::exit(FAILED_EXIT);
        }
    }
    // The query server starts once the state directory is ours: a process refused it must not take the port.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _server = port.map(|port| {
        rt.block_on(
            QueryServer::builder(streams.clone())
                .store::<String, i64>(COUNT_STORE)
                .store::<String, String>(SUM_STORE)
                .bind(([127, 0, 0, 1], port).into())
                .serve(),
        )
        .unwrap_or_else(|e| {
            eprintln!("SOAK_WORKER_FAILED: query server on port {port}: {e}");
            std::process::exit(FAILED_EXIT);
        })
    });
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if !matches!(streams.state(), State::Rebalancing | State::Running) {
            eprintln!(
                "SOAK_WORKER_FAILED: state {:?}, errors {:?}",
                streams.state(),
                streams.errors()
            );
            std::process::exit(FAILED_EXIT);
        }
    }
}

/// SplitMix64: small, seedable, good enough to choose moments and actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// What was produced, per key: records, sum of amounts, last sequence number.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct KeyRef {
    records: u64,
    sum: i64,
    last_seq: u64,
}

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces `seq:amount` records over `KEYS` keys until `stop`; returns the reference per key once every record
/// is delivered.
fn produce_until(
    bootstrap: &str,
    seed: u64,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
) -> BTreeMap<String, KeyRef> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .expect("producer");
    let mut rng = Rng(seed ^ 0x5EED_0F1A_2B3C);
    let mut reference: BTreeMap<String, KeyRef> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1 + rng.below(20) {
            let key = format!("key-{:02}", rng.below(KEYS));
            let amount = 1 + rng.below(1000) as i64;
            let r = reference.entry(key.clone()).or_default();
            r.records += 1;
            r.sum += amount;
            r.last_seq += 1;
            let value = format!("{}:{amount}", r.last_seq);
            let mut record: BaseRecord<'_, str, str, ()> = BaseRecord::to(INPUT)
                .key(key.as_str())
                .payload(value.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
            produced.fetch_add(1, Ordering::Relaxed);
        }
        producer.poll(Duration::from_millis(50));
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every input record delivered");
    let total: u64 = reference.values().map(|r| r.records).sum();
    let deliveries = producer.context();
    assert_eq!(
        deliveries.failed.load(Ordering::Relaxed),
        0,
        "input records failed delivery: {:?}",
        deliveries.first_error.lock().unwrap()
    );
    assert_eq!(deliveries.delivered.load(Ordering::Relaxed), total);
    reference
}

/// The latest value per key of a topic, read from the beginning of every partition.
struct Latest {
    consumer: BaseConsumer,
    values: BTreeMap<String, Vec<u8>>,
}

impl Latest {
    fn new(bootstrap: &str, topic: &str) -> Latest {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("soak-checker-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut partitions = 0;
        let start = Instant::now();
        while partitions == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "topic {topic} does not exist"
            );
            if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
                partitions = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len());
            }
            if partitions == 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        Latest {
            consumer,
            values: BTreeMap::new(),
        }
    }

    /// Reads what arrives for `time`.
    fn read_for(&mut self, time: Duration) {
        let start = Instant::now();
        while start.elapsed() < time {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                self.values
                    .insert(key, m.payload().unwrap_or_default().to_vec());
            }
        }
    }

    fn sums(&self) -> BTreeMap<String, SumState> {
        self.values
            .iter()
            .map(|(k, v)| {
                let text = std::str::from_utf8(v).expect("a UTF-8 sum state");
                (
                    k.clone(),
                    SumState::parse(text).unwrap_or_else(|| panic!("a sum state: {text}")),
                )
            })
            .collect()
    }

    fn counts(&self) -> BTreeMap<String, i64> {
        self.values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    i64::from_be_bytes(v.as_slice().try_into().expect("an i64 count")),
                )
            })
            .collect()
    }
}

/// A gap (a sequence number skipped) is a lost record, and permanent: fail as soon as one shows.
fn assert_no_gaps(sums: &Latest, seed: u64) {
    let gaps: Vec<String> = sums
        .sums()
        .iter()
        .filter(|(_, s)| s.gaps > 0)
        .map(|(k, s)| format!("{k}: {s:?}"))
        .collect();
    assert!(
        gaps.is_empty(),
        "records lost (seed {seed}): sequence gaps in {SUM_OUT}: {gaps:?}"
    );
}

/// The sum state a key must end with: every record applied once, no gap.
fn sums_match(sums: &BTreeMap<String, SumState>, reference: &BTreeMap<String, KeyRef>) -> bool {
    sums.len() == reference.len()
        && reference.iter().all(|(k, r)| {
            sums.get(k).is_some_and(|s| {
                s.last_seq == r.last_seq && s.sum == r.sum && s.applied == r.records && s.gaps == 0
            })
        })
}

fn counts_cover(counts: &BTreeMap<String, i64>, reference: &BTreeMap<String, KeyRef>) -> bool {
    reference
        .iter()
        .all(|(k, r)| counts.get(k).is_some_and(|c| *c as u64 >= r.records))
}

/// The number of members of the application's consumer group, once it is `want` or `timeout` has passed.
fn group_members(bootstrap: &str, timeout: Duration, want: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let start = Instant::now();
    loop {
        let n = match consumer.fetch_group_list(Some(APP), Duration::from_secs(10)) {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == APP)
                .map_or(0, |g| g.members().len()),
            Err(e) => panic!("describing the group {APP}: {e}"),
        };
        if n == want || start.elapsed() > timeout {
            return n;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A store's value for `key`, asked through the query server on `port` (redirected to the instance holding the
/// key); `None` while it cannot answer (a rebalance, a restoration).
fn query(port: u16, store: &str, key: &str) -> Option<serde_json::Value> {
    let (status, body) = tests::http_get(&format!(
        "http://127.0.0.1:{port}/stores/{store}/keys/{key}"
    ));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (v["key"] == key).then(|| v["value"].clone())
}

/// The keys whose stores, asked through the query server on `port`, do not hold the reference (or cannot answer).
fn stores_off(port: u16, reference: &BTreeMap<String, KeyRef>) -> Vec<String> {
    reference
        .iter()
        .filter_map(|(k, r)| {
            let sum = query(port, SUM_STORE, k).and_then(|v| v.as_str().and_then(SumState::parse));
            let count = query(port, COUNT_STORE, k).and_then(|v| v.as_i64());
            let ok = sum.is_some_and(|s| {
                s.last_seq == r.last_seq && s.sum == r.sum && s.applied == r.records && s.gaps == 0
            }) && count.is_some_and(|c| c as u64 >= r.records);
            (!ok).then(|| format!("{k}: want {r:?}, sum {sum:?}, count {count:?}"))
        })
        .collect()
}

/// A worker process, killed (SIGKILL) on drop.
struct Worker {
    name: String,
    /// Its query server's port (the same in every incarnation).
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

fn spawn_worker(bootstrap: &str, dir: &Path, log: &Path, port: u16) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["soak_worker_process", "--exact", "--ignored", "--nocapture"])
        .env("SOAK_WORKER_BOOTSTRAP", bootstrap)
        .env("SOAK_WORKER_STATE_DIR", dir)
        .env("SOAK_WORKER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start a worker")
}

/// The last `n` bytes of a log, for failure messages.
fn tail(path: &Path, n: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(n)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Worker {
    fn start(&mut self, bootstrap: &str) {
        self.child = Some(spawn_worker(bootstrap, &self.dir, &self.log, self.port));
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running worker").id()
    }

    /// Panics, with its log, when the worker process has ended.
    fn assert_alive(&mut self) {
        let child = self.child.as_mut().expect("a running worker");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} (pid {}) ended by itself ({status}): an instance that needs an operator; log:\n{}",
                self.name,
                child.id(),
                tail(&self.log, 6000)
            );
        }
    }

    /// Waits until this incarnation has started (and so holds its state directory).
    fn wait_started(&mut self, timeout: Duration) {
        let line = format!("{STARTED}{}\n", self.pid());
        let start = Instant::now();
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(&line)
        {
            self.assert_alive();
            assert!(
                start.elapsed() < timeout,
                "{} did not start within {timeout:?}; log:\n{}",
                self.name,
                tail(&self.log, 6000)
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

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a process on `worker`'s state directory while the worker runs: it must be refused with a message naming
/// the directory and the setting, and leave the worker running.
fn double_start(bootstrap: &str, worker: &mut Worker, logs: &Path, n: u64) {
    worker.wait_started(Duration::from_secs(60));
    let log = logs.join(format!("double-start-{n}.log"));
    let mut intruder = spawn_worker(bootstrap, &worker.dir, &log, worker.port);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = intruder.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = intruder.kill();
            let _ = intruder.wait();
            panic!(
                "a second process on the state directory of {} was not refused within 60 s; log:\n{}",
                worker.name,
                tail(&log, 6000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(LOCKED_EXIT),
        "a second process on the state directory of {} must be refused with StateDirLocked; log:\n{output}",
        worker.name
    );
    let app_dir = worker.dir.join(APP).display().to_string();
    assert!(
        output.contains("SOAK_WORKER_LOCKED")
            && output.contains(&app_dir)
            && output.contains("state.dir"),
        "the refusal names the directory ({app_dir}) and the setting: {output}"
    );
    worker.assert_alive();
}

/// Runs the scenario with `kills` random kills; panics on any broken invariant.
fn soak(kills: u64, seed: u64) {
    eprintln!("soak: seed {seed} (SOAK_SEED={seed} replays the choices), {kills} kills");
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(COUNT_OUT, PARTITIONS);
    broker.create_topic(SUM_OUT, PARTITIONS);
    let base = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);

    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let (bootstrap, stop, produced) = (bootstrap.clone(), stop.clone(), produced.clone());
        std::thread::spawn(move || produce_until(&bootstrap, seed, stop, produced))
    };

    let mut workers: Vec<Worker> = (0..2)
        .map(|i| {
            let dir = base.path().join(format!("worker-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            Worker {
                name: format!("worker-{i}"),
                port: tests::free_loopback_port(),
                dir,
                log: base.path().join(format!("worker-{i}.log")),
                child: None,
            }
        })
        .collect();
    for w in &mut workers {
        w.start(&bootstrap);
    }
    for w in &mut workers {
        w.wait_started(Duration::from_secs(60));
    }
    // Processing has begun before the first kill.
    let mut sums = Latest::new(&bootstrap, SUM_OUT);
    let begun = Instant::now();
    while sums.values.is_empty() {
        assert!(
            begun.elapsed() < Duration::from_secs(90),
            "no output within 90 s; logs:\n{}\n{}",
            tail(&workers[0].log, 4000),
            tail(&workers[1].log, 4000)
        );
        sums.read_for(Duration::from_millis(200));
        for w in &mut workers {
            w.assert_alive();
        }
    }

    let (mut killed, mut wipes, mut double_starts, mut both_at_once, mut quick) =
        (0u64, 0, 0, 0, 0);
    let run_start = Instant::now();
    let mut last_kill = Instant::now();
    let mut step = 0;
    while killed < kills {
        step += 1;
        // Mostly a few seconds of processing between kills; sometimes well under a second, so that a worker is
        // killed again while it rejoins the group or restores its stores.
        let pause = if rng.chance(0.25) {
            quick += 1;
            rng.millis(200, 900)
        } else {
            rng.millis(1000, 4000)
        };
        sums.read_for(pause); // keeps the checker's consumer current while waiting
        assert_no_gaps(&sums, seed);
        for w in &mut workers {
            w.assert_alive();
        }
        // Every run, however short, has at least one double start and one wiped state directory.
        let last_step = kills - killed <= 2;
        if rng.chance(0.3) || (double_starts == 0 && last_step) {
            let target = rng.below(2) as usize;
            double_start(&bootstrap, &mut workers[target], base.path(), step);
            double_starts += 1;
        }
        let victims: Vec<usize> = if kills - killed >= 2 && rng.chance(0.15) {
            both_at_once += 1;
            vec![0, 1]
        } else {
            vec![rng.below(2) as usize]
        };
        let down = rng.millis(0, 1500);
        for &victim in &victims {
            let wipe = rng.chance(0.35) || (wipes == 0 && killed + 1 == kills);
            let w = &mut workers[victim];
            killed += 1;
            eprintln!(
                "soak: kill {killed}/{kills} at {:.1} s: {} (pid {}){}, restart after {} ms; {} records produced",
                run_start.elapsed().as_secs_f64(),
                w.name,
                w.pid(),
                if wipe { ", state directory wiped" } else { "" },
                down.as_millis(),
                produced.load(Ordering::Relaxed)
            );
            w.kill();
            if wipe {
                std::fs::remove_dir_all(&w.dir).unwrap();
                std::fs::create_dir_all(&w.dir).unwrap();
                wipes += 1;
            }
        }
        last_kill = Instant::now();
        std::thread::sleep(down);
        for &victim in &victims {
            workers[victim].start(&bootstrap);
        }
    }

    // Input keeps arriving a little after the last kill, then stops.
    sums.read_for(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let reference = producer.join().expect("the producer");
    let total: u64 = reference.values().map(|r| r.records).sum();

    let mut counts = Latest::new(&bootstrap, COUNT_OUT);
    let deadline = Duration::from_secs(180);
    while !(sums_match(&sums.sums(), &reference) && counts_cover(&counts.counts(), &reference)) {
        if last_kill.elapsed() > deadline {
            let got = sums.sums();
            let wrong: Vec<_> = reference
                .iter()
                .filter(|(k, r)| {
                    got.get(*k)
                        .is_none_or(|s| s.last_seq != r.last_seq || s.sum != r.sum || s.gaps != 0)
                })
                .map(|(k, r)| format!("{k}: want {r:?}, got {:?}", got.get(k)))
                .collect();
            panic!(
                "not converged {deadline:?} after the last kill (seed {seed}); sums off for {} keys:\n{}\nlogs:\n{}\n{}",
                wrong.len(),
                wrong.join("\n"),
                tail(&workers[0].log, 6000),
                tail(&workers[1].log, 6000)
            );
        }
        sums.read_for(Duration::from_millis(250));
        assert_no_gaps(&sums, seed);
        counts.read_for(Duration::from_millis(250));
        for w in &mut workers {
            w.assert_alive();
        }
    }
    let converged = last_kill.elapsed();

    let members = group_members(&bootstrap, Duration::from_secs(60), 2);

    // The stores themselves, by interactive query through each worker (every key, from either instance).
    let start = Instant::now();
    let mut off: Vec<String> = Vec::new();
    for w in &workers {
        loop {
            let now_off = stores_off(w.port, &reference);
            if now_off.is_empty() || start.elapsed() > Duration::from_secs(60) {
                off.extend(
                    now_off
                        .into_iter()
                        .map(|o| format!("through {}: {o}", w.name)),
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let queried = if off.is_empty() {
        format!("all {} keys through both workers", reference.len())
    } else {
        format!("{} answers off", off.len())
    };

    // The changelog (what a wiped or new instance restores from) holds the same state as the output.
    let mut changelog = Latest::new(&bootstrap, &format!("{APP}-{SUM_STORE}-changelog"));
    let start = Instant::now();
    while !sums_match(&changelog.sums(), &reference) && start.elapsed() < Duration::from_secs(30) {
        changelog.read_for(Duration::from_millis(250));
    }

    let final_sums = sums.sums();
    let final_counts = counts.counts();
    let lost: u64 = reference
        .iter()
        .map(|(k, r)| {
            r.records
                .saturating_sub(final_sums.get(k).map_or(0, |s| s.applied))
        })
        .sum();
    let gaps: u64 = final_sums.values().map(|s| s.gaps).sum();
    let skipped: u64 = final_sums.values().map(|s| s.skipped).sum();
    let duplicates: i64 = reference
        .iter()
        .map(|(k, r)| final_counts[k] - r.records as i64)
        .sum();
    // A kill -9 must not corrupt a RocksDB store (its write-ahead log makes it crash-safe); the runtime would
    // rebuild one it finds corrupt from the changelog, and says so in the log.
    let corrupt: usize = workers
        .iter()
        .map(|w| {
            std::fs::read_to_string(&w.log)
                .unwrap_or_default()
                .matches("the store is corrupt")
                .count()
        })
        .sum();
    let keys_with_duplicates = reference
        .iter()
        .filter(|(k, r)| final_counts[*k] as u64 > r.records)
        .count();
    eprintln!(
        "soak figures (seed {seed}): kills {killed} (both workers at once {both_at_once} times; {quick} times \
         after a pause of 200-900 ms instead of 1-4 s), state directories wiped {wipes}, double starts refused \
         {double_starts}, group members at the end {members}, stores by interactive query: {queried}, stores found corrupt at a restart {corrupt}, \
         records produced {total} over {} keys and {PARTITIONS} partitions in {:.1} s, converged \
         {:.1} s after the last kill, records lost {lost}, gaps {gaps}; counts: {duplicates} duplicates over \
         {keys_with_duplicates} keys ({}), replays skipped by the idempotent sum {skipped}",
        reference.len(),
        run_start.elapsed().as_secs_f64(),
        converged.as_secs_f64(),
        if duplicates == 0 {
            "exactly equal to the reference"
        } else {
            "at-least-once: >= the reference"
        }
    );
    assert_eq!(lost, 0, "records lost (seed {seed})");
    assert_eq!(gaps, 0, "sequence gaps (seed {seed})");
    assert_eq!(
        corrupt, 0,
        "stores found corrupt after kill -9 (seed {seed}): RocksDB's write-ahead log should make them crash-safe"
    );
    assert!(
        sums_match(&changelog.sums(), &reference),
        "the changelog of {SUM_STORE} differs from the reference (seed {seed})"
    );
    for (k, r) in &reference {
        assert!(
            final_counts[k] as u64 >= r.records,
            "count of {k}: {} < {} (seed {seed})",
            final_counts[k],
            r.records
        );
    }
    assert!(
        off.is_empty(),
        "the stores, by interactive query, differ from the reference (seed {seed}):\n{}",
        off.join("\n")
    );
    // Both workers are members of the application's group again (and so share its partitions).
    assert_eq!(
        members, 2,
        "members of the group {APP} at the end (seed {seed})"
    );
    // Every worker recovered by itself and is still running.
    for w in &mut workers {
        w.assert_alive();
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        assert!(
            !log.contains("SOAK_WORKER_FAILED"),
            "{} failed at some point (seed {seed}):\n{}",
            w.name,
            tail(&w.log, 6000)
        );
    }
}

#[test]
fn workers_killed_wiped_and_doubled_on_tansu_lose_nothing() {
    match tests::tansu_binary() {
        Some(bin) if bin.exists() => {}
        _ => {
            eprintln!(
                "SKIP workers_killed_wiped_and_doubled_on_tansu_lose_nothing: tansu is not installed \
                 (bash scripts/test.sh installs it; or set TANSU_BIN)"
            );
            return;
        }
    }
    let kills = std::env::var("STREAMS_SOAK_KILLS")
        .ok()
        .map_or(5, |v| v.parse().expect("STREAMS_SOAK_KILLS: a number"));
    let seed = std::env::var("SOAK_SEED").ok().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().expect("SOAK_SEED: a number"),
    );
    soak(kills, seed);
}

#[test]
fn the_idempotent_sum_skips_replays_and_counts_gaps() {
    let s = SumState::default().apply("1:5").apply("2:7");
    assert_eq!((s.last_seq, s.sum, s.applied, s.gaps), (2, 12, 2, 0));
    let replayed = s.apply("2:7").apply("1:5");
    assert_eq!((replayed.sum, replayed.skipped), (12, 2));
    let gap = replayed.apply("4:1");
    assert_eq!((gap.last_seq, gap.sum, gap.gaps), (4, 13, 1));
    assert_eq!(SumState::parse(&gap.encode()), Some(gap));
}
