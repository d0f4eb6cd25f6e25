//! The benchmark suite: Kafka Streams' SimpleBenchmark workloads run through tansu by this library, beside the
//! limit (raw rdkafka consume, and consume -> produce, on the same broker) and beside a peer (Quix Streams, a
//! Python library on librdkafka with RocksDB state) on the same input in the same run.
//!
//! For each workload it reports records/s, records/s per CPU-core (process CPU time from the first processed
//! record to the end), peak RSS, and p50 / p99 end-to-end latency with the input paced at half the measured
//! maximum rate; and the speed of restoring a changelog into an empty state directory. Every run of ours, of the
//! raw clients and of the peer is a child process of this harness, so CPU time and peak memory are its own.
//!
//! The passthrough and the count also run under `processing.guarantee=exactly_once_v2`, beside their
//! at-least-once rows on the same input with the same commit interval, and a table gives the ratio EOS/ALOS.
//!
//! Restart after kill -9: a count on a RocksDB store of 1,000,000 keys (50,000 in quick mode;
//! `BENCH_KILL_KEYS`) is built under exactly_once_v2 in a child process, which is killed with SIGKILL between two
//! commits while it processes further updates (`BENCH_KILL_TAIL`); the time until a restart is running and has
//! processed all of the input is measured on the state directory left behind (it resumes from the local store
//! and its checkpoint) and, for a second application built the same way, with its task directories wiped (a
//! full restore of the changelog, what Kafka Streams does after an unclean exactly-once shutdown), with the
//! records each restored. Both must end with every record counted once. `BENCH_KILL_GUARANTEE=at_least_once`
//! runs it at at-least-once instead; `--only restart-after-kill` runs it alone.
//!
//! Failover after kill -9: three instances of a count on a RocksDB store of 1,000,000 keys (20,000 in quick mode;
//! `BENCH_FAILOVER_KEYS`), one task each, one of them a child process killed with SIGKILL once everything is
//! committed, then 100,000 updates (10,000; `BENCH_FAILOVER_TAIL`): the time from the kill until the two
//! survivors run every task and until all input is processed, the records they restored, and the share of
//! stale-allowed queries for the killed instance's keys answered meanwhile; without and with one standby
//! replica, with the consumer group deciding which instance runs each task and then with the instances deciding
//! (`task.ownership=library`). `--only failover` runs it alone.
//!
//! `bash scripts/bench.sh suite [--quick]` builds and runs it (and installs the peer into a private virtual
//! environment); `cargo bench -p tests --bench suite -- [--quick] [--no-peer] [--only NAME] [--out DIR] [--perf NAME]
//! [--compare OLD.json]`
//! runs it directly (`--perf NAME` records our runs of the matching workloads with `perf record -g` into the out
//! directory) (the peer then needs `BENCH_QUIX_PYTHON`, or the virtual environment of the script).
//!
//! Rates are measured from a process's first input record to the moment it has processed the last one (handed
//! its output to the producer); the time to flush and close after that is recorded as `close_s` in the JSON.
//!
//! Results go to stdout as a Markdown table and to `<out>/suite.md` and `<out>/suite.json` (default out:
//! `$CARGO_TARGET_DIR/bench-suite`), and a copy of the JSON to `<out>/history/suite-<unix time>.json`.
//! `--compare OLD.json` (an earlier run's JSON) also prints every figure beside the same figure of that run, with the
//! ratio, and writes it to `<out>/compare.md`. The run fails only if a workload fails, never on the numbers.
//!
//! Diagnostics: `STREAMS_BENCH_LOG` (a tracing filter, e.g. `streams_core=debug`) logs our instances, each
//! latency run's worker to a file of its own; `BENCH_LATENCY_TRACE=DIR` writes every latency run's outputs (send
//! time and latency, ms) to a file in DIR; `BENCH_LATENCY_RATES=1000,20000` sets the fixed-rate latency rows'
//! rates, `BENCH_LATENCY_WORKLOADS=kv-store,count` their workloads (ids as in the JSON; default passthrough and
//! count; an unknown id stops the run naming the known ones) and `BENCH_LATENCY_SET=10k-1kib` their data set
//! (default the first).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use streams_dsl::state_store::TypedKeyValueStore;
use streams_dsl::streams_core::runtime::{
    KafkaStreams, State, StateRestoreListener, StreamsConfig,
};
use streams_dsl::*;

/// Partitions of every topic of the suite.
const PARTITIONS: i32 = 2;
/// Environment variable carrying a worker's spec: when set, this process is a worker, not the harness.
const WORKER_ENV: &str = "BENCH_SUITE_WORKER";

// ---------------------------------------------------------------------------------------------------------
// Measuring a process from the inside.

/// CPU time (user + system, all threads) of this process in seconds, from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks_per_second()
}

fn ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}

/// Peak resident set size of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A measured span inside a worker: started at its first record.
struct Span {
    cpu0: f64,
    t0: Instant,
}

impl Span {
    fn start() -> Span {
        Span {
            cpu0: cpu_seconds(),
            t0: Instant::now(),
        }
    }
    fn result(&self, records: u64) -> Value {
        json!({
            "records": records,
            "wall_s": self.t0.elapsed().as_secs_f64(),
            "cpu_s": cpu_seconds() - self.cpu0,
            "peak_rss_kib": peak_rss_kib(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Workloads.

/// The workloads, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Raw rdkafka group consumer: the limit for reading.
    RawConsume,
    /// Raw rdkafka consume -> produce: the limit for a pipe.
    RawPipe,
    /// Source only (foreach that does nothing).
    Consume,
    /// Source -> sink.
    Passthrough,
    /// Source -> sink under exactly_once_v2.
    PassthroughEos,
    /// Source -> get + put on a RocksDB key-value store (changelogged) -> sink.
    KvStore,
    /// Count per key (RocksDB, changelogged, cached) -> sink.
    Count,
    /// The count under exactly_once_v2.
    CountEos,
    /// Count per key in 1 s tumbling windows -> sink.
    WindowedCount,
    /// Stream joined with a table on the key -> sink.
    StreamTableJoin,
    /// Table joined with a table on the key -> sink.
    TableTableJoin,
}

use Workload::*;

const ALL: [Workload; 11] = [
    RawConsume,
    RawPipe,
    Consume,
    Passthrough,
    PassthroughEos,
    KvStore,
    Count,
    CountEos,
    WindowedCount,
    StreamTableJoin,
    TableTableJoin,
];

impl Workload {
    fn id(self) -> &'static str {
        match self {
            RawConsume => "raw-consume",
            RawPipe => "raw-pipe",
            Consume => "consume",
            Passthrough => "passthrough",
            PassthroughEos => "passthrough-eos",
            KvStore => "kv-store",
            Count => "count",
            CountEos => "count-eos",
            WindowedCount => "windowed-count",
            StreamTableJoin => "stream-table-join",
            TableTableJoin => "table-table-join",
        }
    }
    fn from_id(id: &str) -> Option<Workload> {
        ALL.into_iter().find(|w| w.id() == id)
    }
    fn title(self) -> &'static str {
        match self {
            RawConsume => "raw rdkafka consume (limit)",
            RawPipe => "raw rdkafka consume -> produce (limit)",
            Consume => "consume only",
            Passthrough => "stream passthrough",
            PassthroughEos => "stream passthrough, exactly_once_v2",
            KvStore => "passthrough + kv store get/put",
            Count => "count",
            CountEos => "count, exactly_once_v2",
            WindowedCount => "windowed count (1 s tumbling)",
            StreamTableJoin => "stream-table join",
            TableTableJoin => "table-table join",
        }
    }
    fn is_limit(self) -> bool {
        matches!(self, RawConsume | RawPipe)
    }
    /// Whether it runs under exactly_once_v2 (every other workload runs at_least_once).
    fn eos(self) -> bool {
        matches!(self, PassthroughEos | CountEos)
    }
    /// The same topology at at_least_once (itself for those that run so).
    fn alos(self) -> Workload {
        match self {
            PassthroughEos => Passthrough,
            CountEos => Count,
            w => w,
        }
    }
    /// The limit this workload is compared with.
    fn limit(self) -> Option<Workload> {
        match self {
            RawConsume | RawPipe => None,
            Consume => Some(RawConsume),
            _ => Some(RawPipe),
        }
    }
    /// Whether it writes an output topic (so latency can be measured).
    fn has_output(self) -> bool {
        !matches!(self, RawConsume | Consume)
    }
    /// Whether it keeps state per key (so the 1,000,000-key variant is meaningful).
    fn stateful(self) -> bool {
        matches!(
            self,
            KvStore | Count | CountEos | WindowedCount | StreamTableJoin | TableTableJoin
        )
    }
    fn needs_table(self) -> bool {
        matches!(self, StreamTableJoin | TableTableJoin)
    }
    /// Why this library cannot run it yet, if it cannot.
    fn ours_unavailable(self) -> Option<&'static str> {
        match self {
            RawConsume | RawPipe | Consume | Passthrough | PassthroughEos | KvStore | Count
            | CountEos | WindowedCount | StreamTableJoin | TableTableJoin => None,
        }
    }
    /// Why the peer cannot run it, if it cannot.
    fn peer_unavailable(self) -> Option<&'static str> {
        match self {
            RawConsume | RawPipe => Some("limit row"),
            PassthroughEos | CountEos => Some("the peer runs at at_least_once only"),
            TableTableJoin => Some("not supported by Quix Streams (no tables)"),
            _ => None,
        }
    }
}

/// What a worker process is asked to do.
#[derive(Clone, Debug)]
struct Spec {
    workload: Workload,
    /// "throughput", "latency", "restore", "killable" (runs until it is killed), "restart" (runs until its
    /// group has committed all of the input, after a kill) or "member" (one of several instances of the
    /// application, without static membership; runs until it is killed).
    mode: &'static str,
    /// processing.guarantee=exactly_once_v2 (else at_least_once).
    eos: bool,
    bootstrap: String,
    input: String,
    table: String,
    output: String,
    /// Records to process before stopping (throughput), restored records expected (restore), or records in the
    /// input (restart).
    n: u64,
    /// Distinct keys in the input (restart).
    keys: u64,
    app: String,
    state_dir: PathBuf,
    /// commit.interval.ms; 0 leaves the guarantee's default (30 s at at_least_once, 100 ms at exactly_once_v2).
    commit_ms: u64,
    /// num.standby.replicas.
    standbys: u64,
    /// task.ownership=library (else the consumer group decides).
    library: bool,
}

impl Spec {
    fn to_json(&self) -> Value {
        json!({
            "workload": self.workload.id(),
            "mode": self.mode,
            "eos": self.eos,
            "bootstrap": self.bootstrap,
            "input": self.input,
            "table": self.table,
            "output": self.output,
            "n": self.n,
            "keys": self.keys,
            "app": self.app,
            "state_dir": self.state_dir,
            "commit_ms": self.commit_ms,
            "standbys": self.standbys,
            "library": self.library,
        })
    }
    fn from_json(v: &Value) -> Result<Spec, String> {
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or(format!("spec field {k} missing"))
        };
        let mode = match v["mode"].as_str() {
            Some("throughput") => "throughput",
            Some("latency") => "latency",
            Some("restore") => "restore",
            Some("killable") => "killable",
            Some("restart") => "restart",
            Some("member") => "member",
            other => return Err(format!("bad mode {other:?}")),
        };
        Ok(Spec {
            workload: Workload::from_id(&s("workload")?).ok_or("bad workload")?,
            mode,
            eos: v["eos"].as_bool().unwrap_or(false),
            bootstrap: s("bootstrap")?,
            input: s("input")?,
            table: s("table")?,
            output: s("output")?,
            n: v["n"].as_u64().ok_or("n missing")?,
            keys: v["keys"].as_u64().unwrap_or(0),
            app: s("app")?,
            state_dir: PathBuf::from(s("state_dir")?),
            commit_ms: v["commit_ms"].as_u64().unwrap_or(1000),
            standbys: v["standbys"].as_u64().unwrap_or(0),
            library: v["library"].as_bool().unwrap_or(false),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// The worker side: ours and the raw clients.

fn producer(bootstrap: &str, linger_ms: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer")
}

/// The raw pipe's producer: the suite's producer, idempotent when `BENCH_RAW_IDEMPOTENT=1` (as ours always is:
/// librdkafka then keeps at most 5 requests in flight per partition, and its broker thread polls without
/// sleeping while a ready batch waits for one of them to be answered).
fn raw_producer(bootstrap: &str) -> BaseProducer {
    if std::env::var("BENCH_RAW_IDEMPOTENT").is_ok_and(|v| v == "1") {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer")
    } else {
        producer(bootstrap, "5")
    }
}

fn send(p: &BaseProducer, mut r: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match p.send(r) {
            Ok(()) => return,
            Err((e, back)) => {
                if !matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ) {
                    panic!("produce failed: {e}");
                }
                r = back;
                p.poll(Duration::from_millis(1));
            }
        }
    }
}

fn group_consumer(bootstrap: &str, group: &str, fetch_wait_ms: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("fetch.wait.max.ms", fetch_wait_ms)
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

/// Raw consume (and produce, when `pipe`): the limit.
fn raw_worker(spec: &Spec, pipe: bool) -> Result<Value, String> {
    let consumer = group_consumer(&spec.bootstrap, &spec.app, &fetch_wait_ms(spec));
    consumer
        .subscribe(&[spec.input.as_str()])
        .map_err(|e| e.to_string())?;
    let p = raw_producer(&spec.bootstrap);
    let latency = spec.mode == "latency";
    // BENCH_RAW_COPIES=2: the pipe writes each record twice, as a changelogged store's row writes its output and
    // its changelog record (the broker's load of such a row).
    let copies = if pipe {
        std::env::var("BENCH_RAW_COPIES")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    } else {
        0
    };
    let mut seen = 0u64;
    let mut span = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while latency || seen < spec.n {
        if Instant::now() > deadline {
            return Err(format!("timed out after {seen} of {} records", spec.n));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                span.get_or_insert_with(Span::start);
                for _ in 0..copies {
                    let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&spec.output);
                    if let Some(k) = m.key() {
                        r = r.key(k);
                    }
                    if let Some(v) = m.payload() {
                        r = r.payload(v);
                    }
                    if let Some(ts) = m.timestamp().to_millis() {
                        r = r.timestamp(ts);
                    }
                    send(&p, r);
                }
                if pipe && latency {
                    p.poll(Duration::ZERO);
                }
                seen += 1;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    let mut result = span.expect("records were consumed").result(seen);
    let flush = Instant::now();
    p.flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    result["close_s"] = json!(flush.elapsed().as_secs_f64());
    Ok(result)
}

/// A processor that reads the record's key in the store, writes the record's value there, and forwards it.
struct GetPut {
    store: Option<TypedKeyValueStore<i64, Vec<u8>>>,
}

impl Processor<i64, Vec<u8>> for GetPut {
    type KOut = i64;
    type VOut = Vec<u8>;
    fn init(&mut self, ctx: &mut ProcessorContext<i64, Vec<u8>>) -> Result<(), StreamsError> {
        self.store = Some(ctx.key_value_store("kv")?);
        Ok(())
    }
    fn process(
        &mut self,
        record: Record<i64, Vec<u8>>,
        ctx: &mut ProcessorContext<i64, Vec<u8>>,
    ) -> Result<(), StreamsError> {
        let store = self.store.as_mut().ok_or_else(|| StreamsError::Processor {
            node: "get-put".into(),
            message: "store not initialised".into(),
        })?;
        let _previous = store.get(&record.key)?;
        store.put(&record.key, &record.value)?;
        ctx.forward(record)
    }
}

/// Our topology for `workload`.
fn topology(spec: &Spec) -> Result<Topology, String> {
    let b = StreamsBuilder::new();
    let input = spec.input.as_str();
    let out = spec.output.as_str();
    match spec.workload.alos() {
        Consume => b
            .stream(input, Consumed::with(Serdes::bytes(), Serdes::bytes()))
            .foreach(|_, _| {}),
        Passthrough => b
            .stream(input, Consumed::with(Serdes::bytes(), Serdes::bytes()))
            .to(out, Produced::new()),
        KvStore => {
            b.add_state_store(
                KeyValueStoreBuilder::new("kv", StoreKind::RocksDb, Serdes::i64(), Serdes::bytes())
                    .with_caching_disabled(),
            );
            b.stream(input, Consumed::with(Serdes::i64(), Serdes::bytes()))
                .process(|| GetPut { store: None }, &["kv"])
                .to(out, Produced::with(Serdes::i64(), Serdes::bytes()));
        }
        Count => b
            .stream(input, Consumed::with(Serdes::i64(), Serdes::bytes()))
            .group_by_key(Grouped::new())
            .count(Materialized::as_store("counts"))
            .to_stream()
            .map_values(|c| c.unwrap_or(0))
            .to(out, Produced::with(Serdes::i64(), Serdes::i64())),
        WindowedCount => b
            .stream(input, Consumed::with(Serdes::i64(), Serdes::bytes()))
            .group_by_key(Grouped::new())
            .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(1)))
            .count(Materialized::as_store("windowed-counts"))
            .to_stream()
            .map(|k: Windowed<i64>, c: Option<i64>| (k.key, c.unwrap_or(0)))
            .to(out, Produced::with(Serdes::i64(), Serdes::i64())),
        StreamTableJoin => {
            let table = b.table(
                &spec.table,
                Consumed::with(Serdes::i64(), Serdes::bytes()),
                Materialized::as_store("table"),
            );
            b.stream(input, Consumed::with(Serdes::i64(), Serdes::bytes()))
                .join(&table, |v: &Vec<u8>, _t: &Vec<u8>| v.clone(), Joined::new())
                .to(out, Produced::with(Serdes::i64(), Serdes::bytes()));
        }
        TableTableJoin => {
            let left = b.table(
                input,
                Consumed::with(Serdes::i64(), Serdes::bytes()),
                Materialized::as_store("left"),
            );
            let right = b.table(
                &spec.table,
                Consumed::with(Serdes::i64(), Serdes::bytes()),
                Materialized::as_store("right"),
            );
            left.join(&right, |v: &Vec<u8>, _r: &Vec<u8>| v.clone())
                .to_stream()
                .map_values(|v| v.unwrap_or_default())
                .to(out, Produced::with(Serdes::i64(), Serdes::bytes()));
        }
        w => {
            return Err(w
                .ours_unavailable()
                .unwrap_or("not a topology workload")
                .to_string())
        }
    }
    b.build().map_err(|e| e.to_string())
}

fn streams_config(spec: &Spec) -> Result<StreamsConfig, String> {
    let mut c = StreamsConfig::new(&spec.app, spec.bootstrap.clone());
    let set = |c: &mut StreamsConfig, k: &str, v: &str| -> Result<(), String> {
        c.set(k, v).map(|_| ()).map_err(|e| e.to_string())
    };
    if spec.eos {
        set(&mut c, "processing.guarantee", "exactly_once_v2")?;
    }
    if spec.commit_ms > 0 {
        set(&mut c, "commit.interval.ms", &spec.commit_ms.to_string())?;
    }
    set(
        &mut c,
        "state.dir",
        spec.state_dir.to_str().ok_or("state dir is not UTF-8")?,
    )?;
    set(&mut c, "main.consumer.session.timeout.ms", "6000")?;
    if matches!(spec.mode, "killable" | "restart") {
        // Static membership: the restarted instance takes the killed one's place in the group at once instead of
        // waiting out its session, so the restart measures the state, not the group.
        set(&mut c, "main.consumer.group.instance.id", &spec.app)?;
    }
    set(&mut c, "main.consumer.heartbeat.interval.ms", "500")?;
    if spec.standbys > 0 {
        set(&mut c, "num.standby.replicas", &spec.standbys.to_string())?;
    }
    if spec.library {
        set(&mut c, "task.ownership", "library")?;
        set(&mut c, "task.ownership.session.timeout.ms", "6000")?;
    }
    set(
        &mut c,
        "main.consumer.fetch.wait.max.ms",
        &fetch_wait_ms(spec),
    )?;
    // `BENCH_STREAMS_CONFIG=key=value,key=value`: settings of ours to try (a latency breakdown, say). A piece
    // without `=` continues the previous value (`producer.debug=eos,msg`).
    if let Ok(extra) = std::env::var("BENCH_STREAMS_CONFIG") {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for piece in extra.split(',').filter(|p| !p.trim().is_empty()) {
            match (piece.split_once('='), pairs.last_mut()) {
                (Some((k, v)), _) => pairs.push((k.trim().to_string(), v.trim().to_string())),
                (None, Some((_, v))) => {
                    v.push(',');
                    v.push_str(piece.trim());
                }
                (None, None) => {
                    return Err(format!("BENCH_STREAMS_CONFIG: '{piece}' is not key=value"))
                }
            }
        }
        for (k, v) in pairs {
            set(&mut c, &k, &v)?;
        }
    }
    Ok(c)
}

/// The consumers' `fetch.wait.max.ms`: librdkafka's default (500) for throughput runs, 10 in latency runs (on
/// every side), because tansu answers a fetch only when that wait ends.
fn fetch_wait_ms(spec: &Spec) -> String {
    if spec.mode == "latency" { "10" } else { "500" }.to_string()
}

/// Restoration timing, from the first partition's start to the last partition's end.
#[derive(Default)]
struct RestoreTimes {
    first: Option<(Instant, f64)>,
    last: Option<(Instant, f64)>,
    pending: i64,
    restored: u64,
}

#[derive(Clone, Default)]
struct RestoreClock(Arc<Mutex<RestoreTimes>>);

impl StateRestoreListener for RestoreClock {
    fn on_restore_start(&self, _store: &str, _partition: i32, _start: i64, _end: i64) {
        let mut t = self.0.lock().expect("restore clock");
        t.first
            .get_or_insert_with(|| (Instant::now(), cpu_seconds()));
        t.pending += 1;
    }
    fn on_restore_end(&self, _store: &str, _partition: i32, restored: u64) {
        let mut t = self.0.lock().expect("restore clock");
        t.last = Some((Instant::now(), cpu_seconds()));
        t.pending -= 1;
        t.restored += restored;
    }
}

fn ours_worker(spec: &Spec) -> Result<Value, String> {
    let topology = topology(spec)?;
    let streams = KafkaStreams::new(topology, streams_config(spec)?).map_err(|e| e.to_string())?;
    let clock = RestoreClock::default();
    if spec.mode == "restore" {
        streams.set_restore_listener(clock.clone());
    }
    streams.start().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut span = None;
    // The peak of the RocksDB budget in use (block cache and memtables of every store), beside the process's RSS.
    let mut rocksdb_peak = 0usize;
    loop {
        let errors = streams.errors();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        rocksdb_peak = rocksdb_peak.max(streams.rocksdb_memory_usage_bytes());
        match spec.mode {
            // Runs until the harness ends it.
            "latency" | "killable" | "member" => {}
            "restore" => {
                let t = clock.0.lock().expect("restore clock");
                if streams.state() == State::Running && t.pending == 0 && t.restored >= spec.n {
                    break;
                }
            }
            _ => {
                let done = streams.metrics().processed;
                if done > 0 {
                    span.get_or_insert_with(Span::start);
                }
                if done >= spec.n {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if spec.mode == "restore" {
        let t = clock.0.lock().expect("restore clock");
        let (Some((t0, c0)), Some((t1, c1))) = (t.first, t.last) else {
            return Err("nothing was restored".into());
        };
        let result = json!({
            "records": t.restored,
            "wall_s": (t1 - t0).as_secs_f64(),
            "cpu_s": c1 - c0,
            "peak_rss_kib": peak_rss_kib(),
            "rocksdb_peak_bytes": rocksdb_peak,
        });
        drop(t);
        streams.close(Duration::from_secs(60));
        return Ok(result);
    }
    let span = span.ok_or("no record was processed")?;
    let mut result = span.result(streams.metrics().processed);
    result["rocksdb_peak_bytes"] = json!(rocksdb_peak);
    let close = Instant::now();
    if !streams.close(Duration::from_secs(120)) {
        return Err("close timed out".into());
    }
    result["close_s"] = json!(close.elapsed().as_secs_f64());
    Ok(result)
}

/// The committed offsets of a consumer group on the suite's topic, read by a client that never joins the group.
struct GroupOffsets {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl GroupOffsets {
    fn new(bootstrap: &str, group: &str, topic: &str) -> Result<GroupOffsets, String> {
        GroupOffsets::with_partitions(bootstrap, group, topic, PARTITIONS)
    }

    fn with_partitions(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<GroupOffsets, String> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        Ok(GroupOffsets {
            consumer,
            topic: topic.to_string(),
            partitions,
        })
    }

    /// Per partition: the offset the group has committed (0 before its first commit).
    fn committed(&self) -> Result<Vec<i64>, String> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map_err(|e| format!("committed offsets of {}: {e}", self.topic))?;
        Ok((0..self.partitions)
            .map(
                |p| match got.find_partition(&self.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                },
            )
            .collect())
    }

    /// Per partition: the end of the topic (its high watermark).
    fn ends(&self) -> Result<Vec<i64>, String> {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .map_err(|e| format!("end offsets of {}: {e}", self.topic))
            })
            .collect()
    }
}

/// After a kill -9: starts the count on the state directory the killed process left (whole, or with its task
/// directories wiped by the harness), and measures the time until it is running and until its group has
/// committed the whole input, the records restored (restore listener) and the records processed after it; then
/// reads the count store to check it against the input (`keys` keys, `n` records).
fn restart_worker(spec: &Spec) -> Result<Value, String> {
    let offsets = GroupOffsets::new(&spec.bootstrap, &spec.app, &spec.input)?;
    let ends = offsets.ends()?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let streams =
        KafkaStreams::new(topology(spec)?, streams_config(spec)?).map_err(|e| e.to_string())?;
    let clock = RestoreClock::default();
    streams.set_restore_listener(clock.clone());
    streams.start().map_err(|e| e.to_string())?;
    let deadline = t0 + Duration::from_secs(600);
    let mut running_s = None;
    loop {
        let errors = streams.errors();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out: committed {:?} of {ends:?}",
                offsets.committed()?
            ));
        }
        if running_s.is_none() && streams.state() == State::Running {
            running_s = Some(t0.elapsed().as_secs_f64());
        }
        if running_s.is_some() && offsets.committed()?.iter().zip(&ends).all(|(c, e)| c >= e) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    let rss = peak_rss_kib();
    let processed = streams.metrics().processed;
    let (restored, restore_s) = {
        let t = clock.0.lock().expect("restore clock");
        let span = match (t.first, t.last) {
            (Some((a, _)), Some((b, _))) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        (t.restored, span)
    };
    // The store holds what the last commit applied; it may trail the committed offsets by the time it takes
    // to apply them.
    let checked = Instant::now();
    let (store_keys, store_total) = loop {
        let read = streams
            .store::<i64, i64>("counts")
            .and_then(|s| s.all())
            .map(|all| (all.len() as u64, all.iter().map(|(_, c)| *c).sum::<i64>()));
        match read {
            Ok((keys, total)) if total >= spec.n as i64 => break (keys, total),
            Ok(read) if checked.elapsed() > Duration::from_secs(10) => break read,
            Err(e) if checked.elapsed() > Duration::from_secs(10) => {
                return Err(format!("count store: {e}"))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    streams.close(Duration::from_secs(60));
    Ok(json!({
        "running_s": running_s,
        "done_s": done_s,
        "cpu_s": cpu_s,
        "peak_rss_kib": rss,
        "restored": restored,
        "restore_s": restore_s,
        "processed": processed,
        "store_keys": store_keys,
        "store_total": store_total,
    }))
}

fn worker_main(spec_text: &str) {
    // Under STREAMS_BENCH_LOG the worker logs to stderr too; the latency harness keeps it in a file.
    if let Ok(filter) = std::env::var("STREAMS_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    let result = serde_json::from_str::<Value>(spec_text)
        .map_err(|e| e.to_string())
        .and_then(|v| Spec::from_json(&v))
        .and_then(|spec| match spec.workload {
            RawConsume => raw_worker(&spec, false),
            RawPipe => raw_worker(&spec, true),
            _ if spec.mode == "restart" => restart_worker(&spec),
            _ => ours_worker(&spec),
        });
    match result {
        Ok(v) => {
            println!("RESULT {v}");
        }
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The harness side.

/// One input data set: keys, value size, records.
#[derive(Clone, Debug)]
struct DataSet {
    name: String,
    keys: u64,
    value_bytes: usize,
    records: u64,
    /// Each key exactly once (a permutation of 0..records), for the restore measurement.
    unique_keys: bool,
    /// Partitions of its input topic.
    partitions: i32,
    /// Only our count runs on it (and its restore): the large-state set, whose limits and peer would take long.
    count_only: bool,
}

impl DataSet {
    /// The input's keys in order: each key once (a permutation) for a unique-key set, else drawn from `keys`
    /// by a fixed xorshift sequence, the same in every run.
    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..self.records).map(move |i| {
            if self.unique_keys {
                (i * 7919) % self.records
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % self.keys
            }
        })
    }
    fn input_topic(&self) -> String {
        format!("in-{}", self.name)
    }
    fn table_topic(&self) -> String {
        format!("table-{}", self.name)
    }
}

/// A key count as the tables show it: 10k, 1M.
fn label_keys(keys: u64) -> String {
    if keys >= 1_000_000 {
        format!("{}M", keys / 1_000_000)
    } else if keys >= 1000 {
        format!("{}k", keys / 1000)
    } else {
        keys.to_string()
    }
}

/// A value size as the tables show it: 100 B, 1 KiB.
fn label_value(value_bytes: usize) -> String {
    if value_bytes >= 1024 {
        format!("{} KiB", value_bytes / 1024)
    } else {
        format!("{value_bytes} B")
    }
}

struct Plan {
    quick: bool,
    sets: Vec<DataSet>,
    /// Records the peer processes per throughput run (it is much slower; its rate is steady long before).
    peer_records: u64,
    latency_secs: f64,
    /// Runs per side of each fixed-rate latency row (`BENCH_LATENCY_REPEAT`; the median is reported).
    latency_repeat: usize,
    /// Data sets whose count run leaves the changelog that a restore measurement reads.
    restore_sets: Vec<String>,
    /// Distinct keys of the count store that the restart-after-kill measurement builds.
    kill_keys: u64,
    /// Updates of those keys written after them, processed while the kill comes.
    kill_tail: u64,
    /// Distinct keys of the count store of the failover measurement.
    failover_keys: u64,
    /// Updates of those keys written right after the kill.
    failover_tail: u64,
}

fn plan(quick: bool) -> Plan {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    if quick {
        let n = env("BENCH_RECORDS", 100_000);
        let restore = env("BENCH_RESTORE_KEYS", 20_000);
        let kill_keys = env("BENCH_KILL_KEYS", 50_000).max(1);
        Plan {
            quick,
            sets: vec![
                DataSet {
                    name: "10k-100b".into(),
                    keys: 10_000,
                    value_bytes: 100,
                    records: n,
                    unique_keys: false,
                    partitions: PARTITIONS,
                    count_only: false,
                },
                DataSet {
                    name: "restore".into(),
                    keys: restore,
                    value_bytes: 100,
                    records: restore,
                    unique_keys: true,
                    partitions: PARTITIONS,
                    count_only: false,
                },
            ],
            peer_records: env("BENCH_PEER_RECORDS", 20_000).min(n),
            latency_secs: 1.0,
            latency_repeat: env("BENCH_LATENCY_REPEAT", 1) as usize,
            restore_sets: vec!["restore".into()],
            kill_keys,
            kill_tail: env("BENCH_KILL_TAIL", (kill_keys / 10).max(50_000)),
            failover_keys: env("BENCH_FAILOVER_KEYS", 20_000).max(1),
            failover_tail: env("BENCH_FAILOVER_TAIL", 10_000),
        }
    } else {
        let n = env("BENCH_RECORDS", 1_000_000);
        let restore = env("BENCH_RESTORE_KEYS", 1_000_000);
        let big = env("BENCH_BIG_KEYS", 10_000_000);
        let kill_keys = env("BENCH_KILL_KEYS", 1_000_000).max(1);
        Plan {
            quick,
            sets: vec![
                DataSet {
                    name: "10k-100b".into(),
                    keys: 10_000,
                    value_bytes: 100,
                    records: n,
                    unique_keys: false,
                    partitions: PARTITIONS,
                    count_only: false,
                },
                DataSet {
                    name: "10k-1kib".into(),
                    keys: 10_000,
                    value_bytes: 1024,
                    records: (n / 4).max(1),
                    unique_keys: false,
                    partitions: PARTITIONS,
                    count_only: false,
                },
                DataSet {
                    name: "1m-100b".into(),
                    keys: restore,
                    value_bytes: 100,
                    records: restore,
                    unique_keys: true,
                    partitions: PARTITIONS,
                    count_only: false,
                },
                // Large state: a count over 10M keys on 16 partitions (its RSS against the RocksDB budget) and
                // the restore of its changelog.
                DataSet {
                    name: "10m-100b".into(),
                    keys: big,
                    value_bytes: 100,
                    records: big,
                    unique_keys: true,
                    partitions: 16,
                    count_only: true,
                },
            ]
            .into_iter()
            .filter(|s| s.records > 0)
            .collect(),
            peer_records: env("BENCH_PEER_RECORDS", 200_000),
            latency_secs: 5.0,
            latency_repeat: env("BENCH_LATENCY_REPEAT", 3) as usize,
            restore_sets: vec!["1m-100b".into(), "10m-100b".into()],
            kill_keys,
            kill_tail: env("BENCH_KILL_TAIL", (kill_keys / 10).max(50_000)),
            failover_keys: env("BENCH_FAILOVER_KEYS", 1_000_000).max(1),
            failover_tail: env("BENCH_FAILOVER_TAIL", 100_000),
        }
    }
}

struct Harness {
    bootstrap: String,
    /// A fresh broker for every data set and for each of the kill and failover measurements: tansu keeps every
    /// topic in memory and slows down as they pile up (4.5 GB and a raw pipe at a sixth of its rate by the end of
    /// a full run on one broker).
    broker: Option<tests::Broker>,
    work: tempfile::TempDir,
    quix: Option<PathBuf>,
    quix_script: PathBuf,
    seq: AtomicU64,
    /// Workloads to record with perf, and where.
    perf: Option<(String, PathBuf)>,
}

impl Harness {
    /// Stops the broker and starts an empty one (the previous one's memory is released first).
    fn fresh_broker(&mut self) {
        drop(self.broker.take());
        let broker = tests::Broker::tansu();
        self.bootstrap = broker.bootstrap();
        self.broker = Some(broker);
    }

    /// Stops the broker and starts the embedded one (librdkafka's mock cluster, in this process, on TCP).
    fn embedded_broker(&mut self) {
        drop(self.broker.take());
        let broker = tests::Broker::embedded();
        self.bootstrap = broker.bootstrap();
        self.broker = Some(broker);
    }

    fn fresh(&self, what: &str) -> String {
        format!("{what}-{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates topic `name`, with its retention stated (the peer reads it from the broker to configure its
    /// changelogs, and tansu reports only the settings given at creation).
    fn topic(&self, name: &str) -> String {
        self.topic_with(name, PARTITIONS)
    }

    fn topic_with(&self, name: &str, partitions: i32) -> String {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        if let Some(b @ tests::Broker::Embedded(_)) = &self.broker {
            b.create_topic(name, partitions);
            return name.to_string();
        }
        let admin: AdminClient<_> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin");
        let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1");
        let r = tests::futures_block_on(admin.create_topics([&t], &AdminOptions::new()));
        for r in r.expect("create topics") {
            r.expect("topic created");
        }
        name.to_string()
    }

    /// Writes `set` to its input topic (and, for joins, one record per key to its table topic).
    fn preload(&self, set: &DataSet) -> f64 {
        let input = self.topic_with(&set.input_topic(), set.partitions);
        let p = producer(&self.bootstrap, "5");
        let mut value = vec![0u8; set.value_bytes];
        for (i, b) in value.iter_mut().enumerate() {
            *b = b'a' + (i % 26) as u8;
        }
        // The table first: joins match stream records with table records of earlier timestamps.
        if !set.unique_keys {
            let table = self.topic(&set.table_topic());
            for k in 0..set.keys {
                let key = (k as i64).to_be_bytes();
                send(
                    &p,
                    BaseRecord::to(&table)
                        .key(&key[..])
                        .payload(&value[..])
                        .timestamp(now_ms()),
                );
            }
        }
        let t0 = Instant::now();
        for k in set.keys() {
            let key = (k as i64).to_be_bytes();
            send(
                &p,
                BaseRecord::to(&input)
                    .key(&key[..])
                    .payload(&value[..])
                    .timestamp(now_ms()),
            );
        }
        p.flush(Duration::from_secs(300)).expect("flush");
        set.records as f64 / t0.elapsed().as_secs_f64()
    }

    fn spec(&self, w: Workload, mode: &'static str, set: &DataSet, input: &str, n: u64) -> Spec {
        let app = self.fresh(&format!("bench-{}-{}", w.id(), set.name));
        let state_dir = self.work.path().join(&app);
        Spec {
            workload: w,
            mode,
            eos: w.eos(),
            bootstrap: self.bootstrap.clone(),
            input: input.to_string(),
            table: set.table_topic(),
            output: if w.has_output() {
                self.topic(&self.fresh(&format!("out-{}", w.id())))
            } else {
                String::new()
            },
            n,
            keys: set.keys,
            app,
            state_dir,
            // The same interval at both guarantees, so their ratio is the cost of the transactions alone.
            commit_ms: if mode == "latency" { 100 } else { 1000 },
            standbys: 0,
            library: false,
        }
    }

    /// Starts a worker for `spec`: ours/raw (this executable) or the peer.
    fn spawn(&self, spec: &Spec, peer: bool) -> std::io::Result<Child> {
        let mut cmd = if peer {
            let mut c = Command::new(self.quix.as_ref().expect("peer python"));
            c.arg(&self.quix_script).arg(spec.to_json().to_string());
            c
        } else {
            // `--perf NAME`: our runs of the workloads matching NAME are recorded with `perf record -g`.
            let exe = std::env::current_exe()?;
            let mut c = match &self.perf {
                Some((filter, dir))
                    if spec.mode != "latency" && spec.workload.id().contains(filter.as_str()) =>
                {
                    let data = dir.join(format!("perf-{}-{}.data", spec.app, spec.mode));
                    eprintln!("recording {}", data.display());
                    let mut c = Command::new("perf");
                    // BENCH_PERF_CALL_GRAPH=dwarf unwinds through code built without frame pointers.
                    let call_graph =
                        std::env::var("BENCH_PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".into());
                    c.args([
                        "record",
                        "-F",
                        "499",
                        "--call-graph",
                        &call_graph,
                        "-q",
                        "-o",
                    ])
                    .arg(&data)
                    .arg("--")
                    .arg(exe);
                    c
                }
                _ => Command::new(exe),
            };
            c.env(WORKER_ENV, spec.to_json().to_string());
            c
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    }

    /// The restart-after-kill measurement, for two applications each on a topic of its own: a count on a
    /// RocksDB store (`eos`: under exactly_once_v2) in a child process builds a store of `keys` distinct keys;
    /// once all of it is committed, `tail` updates of those keys start arriving, and between two commits the
    /// process is killed with SIGKILL. One is restarted on the state directory it left, the other after its task
    /// directories are wiped (its `process-id` file stays, so both restarts fence the killed producer alike).
    /// Both must end with `keys` keys counting every record once (under at_least_once, at least once).
    fn restart_after_kill(&self, keys: u64, tail: u64, eos: bool) -> Result<Value, String> {
        let mut result = json!({
            "keys": keys,
            "tail": tail,
            "records": keys + tail,
            "guarantee": if eos { "exactly_once_v2" } else { "at_least_once" },
        });
        for (name, wipe) in [("same_state_dir", false), ("task_dirs_wiped", true)] {
            result[name] = self.kill_and_restart(keys, tail, eos, wipe)?;
        }
        let done = |k: &str| result[k]["done_s"].as_f64();
        result["wiped_vs_same_done"] =
            json!(match (done("task_dirs_wiped"), done("same_state_dir")) {
                (Some(w), Some(s)) if s > 0.0 => Some(w / s),
                _ => None,
            });
        Ok(result)
    }

    fn kill_and_restart(
        &self,
        keys: u64,
        tail: u64,
        eos: bool,
        wipe: bool,
    ) -> Result<Value, String> {
        let total = keys + tail;
        let input = self.topic(&self.fresh("kill-in"));
        // Record i of the distinct keys (offset 0) or of the updates (offset 1): a permutation of the keys.
        let stride = if keys.is_multiple_of(7919) {
            7927
        } else {
            7919
        };
        let key_of = move |i: u64, offset: u64| (((i * stride) + offset) % keys) as i64;
        let send_one = |p: &BaseProducer, topic: &str, key: i64| {
            send(
                p,
                BaseRecord::to(topic)
                    .key(&key.to_be_bytes()[..])
                    .payload(&[b'v'; 100][..])
                    .timestamp(now_ms()),
            )
        };
        let p = producer(&self.bootstrap, "5");
        for i in 0..keys {
            send_one(&p, &input, key_of(i, 0));
        }
        p.flush(Duration::from_secs(300))
            .map_err(|e| format!("writing {input}: {e}"))?;
        let app = self.fresh(if wipe {
            "bench-kill-wiped"
        } else {
            "bench-kill-same"
        });
        let offsets = GroupOffsets::new(&self.bootstrap, &app, &input)?;
        // Where the distinct keys end on each partition: the store is whole once the group has committed these.
        let built = offsets.ends()?;
        let spec = Spec {
            workload: if eos { CountEos } else { Count },
            mode: "killable",
            eos,
            bootstrap: self.bootstrap.clone(),
            input: input.clone(),
            table: String::new(),
            output: self.topic(&self.fresh("out-kill")),
            n: total,
            keys,
            state_dir: self.work.path().join(&app),
            app,
            // exactly_once_v2's default, at both guarantees.
            commit_ms: 100,
            standbys: 0,
            library: false,
        };
        let mut child = self.spawn(&spec, false).map_err(|e| e.to_string())?;
        let output = drain_tail(&mut child);
        let stop = |mut child: Child,
                    output: Vec<std::thread::JoinHandle<Vec<String>>>,
                    why: String|
         -> Result<Value, String> {
            let _ = child.kill();
            let _ = child.wait();
            let tail: Vec<String> = output
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect();
            Err(format!("{why}; worker output: {}", tail.join(" | ")))
        };
        let t0 = Instant::now();
        // The whole store built and committed.
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return stop(
                    child,
                    output,
                    format!("the worker exited ({status}) before the kill"),
                );
            }
            if t0.elapsed() > Duration::from_secs(600) {
                return stop(
                    child,
                    output,
                    "the store was not committed within 600 s".into(),
                );
            }
            match offsets.committed() {
                Ok(c) if c.iter().zip(&built).all(|(c, b)| c >= b) => break,
                Ok(_) => {}
                Err(e) => return stop(child, output, e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let build_s = t0.elapsed().as_secs_f64();
        // The updates arrive while it runs, KILL_TAIL_RATE a second until the kill, the rest at once after it.
        let killed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (killed, bootstrap, input) =
                (killed.clone(), self.bootstrap.clone(), input.clone());
            std::thread::spawn(move || {
                let p = producer(&bootstrap, "5");
                let start = Instant::now();
                for i in 0..tail {
                    while !killed.load(Ordering::Relaxed)
                        && (start.elapsed().as_secs_f64() * KILL_TAIL_RATE) < i as f64
                    {
                        p.poll(Duration::from_millis(1));
                    }
                    send_one(&p, &input, key_of(i, 1));
                }
                p.flush(Duration::from_secs(300))
                    .map_err(|e| format!("writing {input}: {e}"))
            })
        };
        // Between two commits: a commit takes some of the updates, the next one moves the offsets again, then
        // half an interval passes.
        let t1 = Instant::now();
        let mut last = built.clone();
        let mut commits = 0;
        while commits < 2 {
            match offsets.committed() {
                Ok(c) if c.iter().sum::<i64>() > last.iter().sum::<i64>() => {
                    commits += 1;
                    last = c;
                }
                Ok(_) if t1.elapsed() > Duration::from_secs(60) => {
                    killed.store(true, Ordering::Relaxed);
                    let _ = writer.join();
                    return stop(child, output, "no commit of the updates within 60 s".into());
                }
                Ok(_) => {}
                Err(e) => {
                    killed.store(true, Ordering::Relaxed);
                    let _ = writer.join();
                    return stop(child, output, e);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(spec.commit_ms / 2));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        killed.store(true, Ordering::Relaxed);
        drop(output);
        writer
            .join()
            .map_err(|_| "the update writer panicked".to_string())??;
        let committed_at_kill: i64 = offsets.committed()?.iter().sum();
        if committed_at_kill as u64 >= total {
            return Err(format!(
                "all {total} input records were committed before the kill; give a longer tail (BENCH_KILL_TAIL)"
            ));
        }
        if wipe {
            let dir = spec.state_dir.join(&spec.app);
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    std::fs::remove_dir_all(entry.path())
                        .map_err(|e| format!("{}: {e}", entry.path().display()))?;
                }
            }
        }
        let restart = Spec {
            mode: "restart",
            ..spec
        };
        let mut r = self.run(&restart, false)?;
        r["build_s"] = json!(build_s);
        r["committed_at_kill"] = json!(committed_at_kill);
        let (got_keys, got_total) = (r["store_keys"].as_u64(), r["store_total"].as_u64());
        let exact = got_keys == Some(keys) && got_total == Some(total);
        let acceptable = exact || (!eos && got_keys == Some(keys) && got_total >= Some(total));
        if !acceptable {
            return Err(format!(
                "after the restart the count store has {got_keys:?} keys counting {got_total:?} records; \
                 expected {keys} keys counting {total}"
            ));
        }
        r["counted_exactly"] = json!(exact);
        Ok(r)
    }

    /// The failover measurement: a count on a RocksDB store of `keys` keys, run by three instances of one
    /// application (`replicas` standby replicas), one of them a child process killed with SIGKILL once every
    /// record is counted and committed (and, with standbys, the copies of its tasks have caught up). Right
    /// after the kill `tail` updates of the keys arrive. Measured from the kill: when the two survivors run
    /// every task, and when the group has committed all of the input; the records the survivors restored; and,
    /// meanwhile, a client asking the survivors over and over for a sample of the killed instance's keys, with
    /// stale reads allowed: the share of the queries answered. The survivors' stores must then count every
    /// record (at least once).
    fn failover(
        &self,
        keys: u64,
        tail: u64,
        replicas: u64,
        library: bool,
    ) -> Result<Value, String> {
        let input = self.topic_with(&self.fresh("failover-in"), FAILOVER_PARTITIONS);
        let p = producer(&self.bootstrap, "5");
        let send_key = |p: &BaseProducer, key: i64| {
            send(
                p,
                BaseRecord::to(&input)
                    .key(&key.to_be_bytes()[..])
                    .payload(&[b'v'; 100][..])
                    .timestamp(now_ms()),
            )
        };
        for k in 0..keys {
            send_key(&p, k as i64);
        }
        p.flush(Duration::from_secs(300))
            .map_err(|e| format!("writing {input}: {e}"))?;
        let ownership = if library { "library" } else { "group" };
        let app = self.fresh(&format!("bench-failover-{ownership}-{replicas}"));
        let offsets =
            GroupOffsets::with_partitions(&self.bootstrap, &app, &input, FAILOVER_PARTITIONS)?;
        let built = offsets.ends()?;
        let output = self.topic(&self.fresh("out-failover"));
        let spec_of = |i: usize| Spec {
            workload: Count,
            mode: "member",
            eos: false,
            bootstrap: self.bootstrap.clone(),
            input: input.clone(),
            table: String::new(),
            output: output.clone(),
            n: keys + tail,
            keys,
            app: app.clone(),
            state_dir: self.work.path().join(&app).join(format!("instance-{i}")),
            commit_ms: 100,
            standbys: replicas,
            library,
        };
        let mut child = Killed(self.spawn(&spec_of(0), false).map_err(|e| e.to_string())?);
        let child_output = drain_tail(&mut child.0);
        let restored = RestoredRecords::default();
        let survivors = (1..3)
            .map(|i| {
                let spec = spec_of(i);
                let s = KafkaStreams::new(topology(&spec)?, streams_config(&spec)?)
                    .map_err(|e| e.to_string())?;
                s.set_restore_listener(restored.clone());
                s.start().map_err(|e| e.to_string())?;
                Ok(s)
            })
            .collect::<Result<Vec<KafkaStreams>, String>>()?;
        let result = self.fail_over(
            &mut child,
            &survivors,
            &offsets,
            &built,
            &restored,
            (keys, tail, replicas),
        );
        std::thread::scope(|scope| {
            for s in &survivors {
                scope.spawn(|| s.close(Duration::from_secs(60)));
            }
        });
        let result = result.map(|mut v| {
            v["ownership"] = json!(ownership);
            v
        });
        result.map_err(|e| {
            drop(child);
            let lines: Vec<String> = child_output
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect();
            format!("{e}; killed instance's output: {}", lines.join(" | "))
        })
    }

    /// The failover measurement once the three instances are started (see [`Harness::failover`]).
    fn fail_over(
        &self,
        child: &mut Killed,
        survivors: &[KafkaStreams],
        offsets: &GroupOffsets,
        built: &[i64],
        restored: &RestoredRecords,
        (keys, tail, replicas): (u64, u64, u64),
    ) -> Result<Value, String> {
        // The partitions the survivors' threads hold, and those of them running.
        let held = |running: bool| -> std::collections::BTreeSet<i32> {
            survivors
                .iter()
                .flat_map(|s| s.metadata_for_local_threads())
                .flat_map(|t| t.active_tasks)
                .filter(|t| !running || t.state.as_str() == "running")
                .map(|t| t.task_id.partition)
                .collect()
        };
        let victim = || -> Vec<i32> {
            let mine = held(false);
            (0..FAILOVER_PARTITIONS)
                .filter(|p| !mine.contains(p))
                .collect()
        };
        let errors = || -> Result<(), String> {
            let e: Vec<String> = survivors.iter().flat_map(|s| s.errors()).collect();
            if e.is_empty() {
                Ok(())
            } else {
                Err(e.join("; "))
            }
        };
        let t0 = Instant::now();
        loop {
            errors()?;
            if let Ok(Some(status)) = child.0.try_wait() {
                return Err(format!(
                    "the instance to kill exited ({status}) before the kill"
                ));
            }
            if t0.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "not settled within 600 s: committed {:?} of {built:?}, the survivors hold {:?}",
                    offsets.committed()?,
                    held(false)
                ));
            }
            let committed = offsets.committed()?.iter().zip(built).all(|(c, b)| c >= b);
            let victim_now = victim();
            let caught_up = replicas == 0
                || victim_now.iter().all(|p| {
                    survivors.iter().any(|s| {
                        s.standby_lags()
                            .get("counts")
                            .and_then(|l| l.get(p))
                            .is_some_and(|l| l.offset_lag == 0)
                    })
                });
            if committed
                && caught_up
                && !victim_now.is_empty()
                && survivors.iter().all(|s| s.state() == State::Running)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let build_s = t0.elapsed().as_secs_f64();
        let moved = victim();
        // The killed instance's keys, and an even sample of them for the querying client.
        let moved_keys: Vec<i64> = (0..keys as i64)
            .filter(|k| {
                survivors[0]
                    .query_metadata_for_key("counts", k, &Serdes::i64())
                    .is_ok_and(|m| moved.contains(&m.partition))
            })
            .collect();
        let sample: Vec<i64> = moved_keys
            .iter()
            .step_by((moved_keys.len() / FAILOVER_QUERY_KEYS).max(1))
            .copied()
            .collect();
        let before = restored.0.load(Ordering::Relaxed);
        let killed = Instant::now();
        let _ = child.0.kill(); // SIGKILL
        let _ = child.0.wait();
        let done = AtomicBool::new(false);
        let (timings, (asked, answered)) = std::thread::scope(|scope| {
            let client = scope.spawn(|| {
                let params =
                    streams_dsl::streams_core::runtime::StoreQueryParameters::from_name("counts")
                        .enable_stale_stores();
                let (mut asked, mut answered) = (0u64, 0u64);
                while !done.load(Ordering::Relaxed) {
                    let stores: Vec<_> = survivors
                        .iter()
                        .filter_map(|s| s.store_with::<i64, i64>(&params).ok())
                        .collect();
                    for k in &sample {
                        asked += 1;
                        if stores.iter().any(|st| st.get(k).is_ok_and(|v| v.is_some())) {
                            answered += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                (asked, answered)
            });
            let timings = (|| -> Result<(f64, f64), String> {
                let p = producer(&self.bootstrap, "5");
                for i in 0..tail {
                    send(
                        &p,
                        BaseRecord::to(&offsets.topic)
                            .key(&(((i * 7919) % keys) as i64).to_be_bytes()[..])
                            .payload(&[b'v'; 100][..])
                            .timestamp(now_ms()),
                    );
                }
                p.flush(Duration::from_secs(300))
                    .map_err(|e| format!("writing the updates: {e}"))?;
                let ends = offsets.ends()?;
                let mut running_s = None;
                let mut last_report = Instant::now();
                loop {
                    errors()?;
                    if killed.elapsed() > Duration::from_secs(600) {
                        return Err(format!(
                            "not recovered within 600 s of the kill: committed {:?} of {ends:?}, the survivors \
                             run {:?}",
                            offsets.committed()?,
                            held(true)
                        ));
                    }
                    if running_s.is_none() && held(true).len() == FAILOVER_PARTITIONS as usize {
                        running_s = Some(killed.elapsed().as_secs_f64());
                    }
                    if last_report.elapsed() >= Duration::from_secs(1) {
                        last_report = Instant::now();
                        tracing::info!(
                            after_s = killed.elapsed().as_secs_f64(),
                            committed = ?offsets.committed()?,
                            ends = ?ends,
                            running = ?held(true),
                            "failover progress"
                        );
                    }
                    if let Some(running_s) = running_s {
                        if offsets.committed()?.iter().zip(&ends).all(|(c, e)| c >= e) {
                            return Ok((running_s, killed.elapsed().as_secs_f64()));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })();
            done.store(true, Ordering::Relaxed);
            (timings, client.join().unwrap_or((0, 0)))
        });
        let (running_s, done_s) = timings?;
        let restored = restored.0.load(Ordering::Relaxed) - before;
        // Every record counted (at least once), on the survivors' stores as the last commit left them.
        let checked = Instant::now();
        let (store_keys, store_total) = loop {
            let mut all = BTreeMap::new();
            for s in survivors {
                if let Ok(part) = s.store::<i64, i64>("counts").and_then(|st| st.all()) {
                    all.extend(part);
                }
            }
            let read = (all.len() as u64, all.values().sum::<i64>() as u64);
            if read.0 == keys && read.1 >= keys + tail {
                break read;
            }
            if checked.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "after the failover the survivors count {} keys and {} records; expected {keys} keys \
                     counting {} records",
                    read.0,
                    read.1,
                    keys + tail
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        Ok(json!({
            "standby_replicas": replicas,
            "keys": keys,
            "tail": tail,
            "keys_moved": moved_keys.len(),
            "build_s": build_s,
            "restored": restored,
            "running_s": running_s,
            "done_s": done_s,
            "queries": asked,
            "answered": answered,
            "answered_share": answered as f64 / asked.max(1) as f64,
            "store_keys": store_keys,
            "store_total": store_total,
        }))
    }

    /// Runs a worker to its end and returns its RESULT.
    fn run(&self, spec: &Spec, peer: bool) -> Result<Value, String> {
        let mut child = self.spawn(spec, peer).map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().expect("stderr");
        let err_tail = std::thread::spawn(move || {
            let mut tail: Vec<String> = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            tail
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut result = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(r) = line.strip_prefix("RESULT ") {
                result = Some(Ok(
                    serde_json::from_str::<Value>(r).map_err(|e| e.to_string())?
                ));
            } else if let Some(e) = line.strip_prefix("ERROR ") {
                result = Some(Err(e.to_string()));
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        let tail = err_tail.join().unwrap_or_default();
        match result {
            Some(r) => r,
            None => Err(format!(
                "worker exited with {status} and no result; stderr: {}",
                tail.join(" | ")
            )),
        }
    }

    /// The latency of `w` and of the raw pipe at `pace`, each measured `plan.latency_repeat` times, the two
    /// sides alternating; with `fresh_broker`, each run on a tansu of its own (tansu slows down as topics pile
    /// up in it, so a shared broker would hand one run's leftovers to the next). Per side: the run with the
    /// median p99, with every run's p99 (`p99_runs_ms`) beside it; the first failure of a side instead.
    fn latency_pair(
        &mut self,
        w: Workload,
        set: &DataSet,
        pace: f64,
        plan: &Plan,
        fresh_broker: bool,
    ) -> (Value, Value) {
        let mut sides: [Result<Vec<Value>, String>; 2] = [Ok(Vec::new()), Ok(Vec::new())];
        for _ in 0..plan.latency_repeat.max(1) {
            for (side, runs) in [w, RawPipe].into_iter().zip(sides.iter_mut()) {
                let Ok(done) = runs else { continue };
                if fresh_broker {
                    self.fresh_broker();
                }
                match self.latency(side, set, pace, plan.latency_secs, false) {
                    Ok(v) => done.push(v),
                    Err(e) => *runs = Err(e),
                }
            }
        }
        let [ours, raw] = sides.map(|side| match side {
            Ok(mut runs) if !runs.is_empty() => {
                runs.sort_by(|a, b| {
                    let p99 = |v: &Value| v["p99_ms"].as_f64().unwrap_or(f64::MAX);
                    p99(a).total_cmp(&p99(b))
                });
                let all: Vec<Value> = runs.iter().map(|r| r["p99_ms"].clone()).collect();
                let mut median = runs.swap_remove(runs.len() / 2);
                median["p99_runs_ms"] = json!(all);
                median
            }
            Ok(_) => json!({"error": "no run"}),
            Err(e) => json!({"error": e}),
        });
        (ours, raw)
    }

    /// End-to-end latency at `rate` records/s: a fresh input and output topic, the worker started on them, a
    /// warm-up until the first output appears, then `secs` of paced input stamped with the send time; each
    /// output record's latency is its arrival time minus its timestamp (which the workloads carry over).
    fn latency(
        &self,
        w: Workload,
        set: &DataSet,
        rate: f64,
        secs: f64,
        peer: bool,
    ) -> Result<Value, String> {
        let input = self.topic(&self.fresh("lat-in"));
        let spec = self.spec(w, "latency", set, &input, 0);
        if matches!(self.broker, Some(tests::Broker::Embedded(_))) && !matches!(w, RawPipe) {
            // The embedded broker takes no CreateTopics request: the application's internal topic is created
            // here (its stores' changelogs too, were there any: this is for stateless workloads).
            self.topic_with(&format!("{}-metadata", spec.app), 1);
        }
        let mut child = self.spawn(&spec, peer).map_err(|e| e.to_string())?;
        // Under STREAMS_BENCH_LOG the worker's log goes to a file of its own.
        let log_file = std::env::var("STREAMS_BENCH_LOG").ok().map(|_| {
            let path =
                std::env::temp_dir().join(format!("bench-worker-{}-{rate:.0}.log", spec.app));
            eprintln!("worker log: {}", path.display());
            Arc::new(Mutex::new(std::fs::File::create(path).ok()))
        });
        // Drain the worker's output so it never blocks.
        let (so, se) = (child.stdout.take(), child.stderr.take());
        let drains: Vec<_> = [
            so.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            se.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|s| {
            let log_file = log_file.clone();
            std::thread::spawn(move || {
                BufReader::new(s)
                    .lines()
                    .map_while(Result::ok)
                    .inspect(|l| {
                        use std::io::Write;
                        if let Some(Ok(mut f)) = log_file.as_ref().map(|f| f.lock()) {
                            if let Some(f) = f.as_mut() {
                                let _ = writeln!(f, "{l}");
                            }
                        }
                    })
                    .filter(|l| l.starts_with("ERROR"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
        let result = self.measure_latency(&spec, set, rate, secs, &mut child);
        let _ = child.kill();
        let _ = child.wait();
        let errors: Vec<String> = drains
            .into_iter()
            .flat_map(|d| d.join().unwrap_or_default())
            .collect();
        match result {
            Err(e) if !errors.is_empty() => Err(format!("{e}; {}", errors.join("; "))),
            r => r,
        }
    }

    fn measure_latency(
        &self,
        spec: &Spec,
        set: &DataSet,
        rate: f64,
        secs: f64,
        child: &mut Child,
    ) -> Result<Value, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", self.fresh("lat-reader"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            // Under exactly_once_v2 a record counts as delivered when its transaction commits.
            .set(
                "isolation.level",
                if spec.eos {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&spec.output, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let paced_from = Arc::new(AtomicU64::new(u64::MAX));
        let seen = Arc::new(AtomicU64::new(0));
        let reader = {
            let (stop, paced_from, seen) = (stop.clone(), paced_from.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
                        let now = now_ms();
                        seen.fetch_add(1, Ordering::Relaxed);
                        if let Timestamp::CreateTime(ts) | Timestamp::LogAppendTime(ts) =
                            m.timestamp()
                        {
                            if ts as u64 >= paced_from.load(Ordering::Relaxed) {
                                lat.push((ts, (now - ts).max(0) as f64));
                            }
                        }
                    }
                }
                lat
            })
        };
        let p = producer(&self.bootstrap, "1");
        let value = vec![b'v'; set.value_bytes];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next_key = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % set.keys) as i64).to_be_bytes()
        };
        // Warm-up: until the worker answers (it joins its group first).
        let warm = Instant::now();
        while seen.load(Ordering::Relaxed) == 0 {
            if warm.elapsed() > Duration::from_secs(90) {
                stop.store(true, Ordering::Relaxed);
                let _ = reader.join();
                return Err("no output within 90 s of warm-up".into());
            }
            if let Ok(Some(status)) = child.try_wait() {
                stop.store(true, Ordering::Relaxed);
                let _ = reader.join();
                return Err(format!("worker exited during warm-up ({status})"));
            }
            let key = next_key();
            send(
                &p,
                BaseRecord::to(&spec.input)
                    .key(&key[..])
                    .payload(&value[..])
                    .timestamp(now_ms()),
            );
            p.poll(Duration::from_millis(50));
        }
        // A moment for the other partition's warm-up records to drain.
        std::thread::sleep(Duration::from_millis(500));
        paced_from.store(now_ms() as u64 + 1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        let mut sent = 0u64;
        while t0.elapsed().as_secs_f64() < secs {
            let due = (t0.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let key = next_key();
                send(
                    &p,
                    BaseRecord::to(&spec.input)
                        .key(&key[..])
                        .payload(&value[..])
                        .timestamp(now_ms()),
                );
                sent += 1;
            }
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(500));
        }
        p.flush(Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        // Let the output catch up: stop once nothing arrives for a second (or after 15 s).
        let end = Instant::now();
        let mut last = seen.load(Ordering::Relaxed);
        let mut quiet = Instant::now();
        while end.elapsed() < Duration::from_secs(15) && quiet.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(100));
            let now = seen.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet = Instant::now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let trace = reader.join().map_err(|_| "latency reader panicked")?;
        if trace.is_empty() {
            return Err("no output for the paced input".into());
        }
        // Under BENCH_LATENCY_TRACE=DIR each output's send time and latency go to a file: when a spike happened.
        if let Ok(dir) = std::env::var("BENCH_LATENCY_TRACE") {
            use std::io::Write;
            let path = Path::new(&dir).join(format!("{}-{rate:.0}.tsv", spec.app));
            let written = std::fs::File::create(&path).and_then(|f| {
                let mut f = std::io::BufWriter::new(f);
                trace
                    .iter()
                    .try_for_each(|(ts, l)| writeln!(f, "{ts}\t{l}"))?;
                f.flush()
            });
            match written {
                Ok(()) => eprintln!("latency trace: {}", path.display()),
                Err(e) => eprintln!("latency trace {}: {e}", path.display()),
            }
        }
        let mut lat: Vec<f64> = trace.into_iter().map(|(_, l)| l).collect();
        lat.sort_by(f64::total_cmp);
        let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
        Ok(json!({
            "rate": rate,
            "sent": sent,
            "outputs": lat.len(),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
        }))
    }
}

/// The store's cost alone: `set.records` get+put pairs with the data set's keys and values of `value_bytes`,
/// straight on RocksDB stores opened as a run of ours opens them (one per partition, sharing the same 64 MiB
/// budget), each flushed when a task of ours would checkpoint it. CPU of this process (RocksDB's background
/// threads included) and wall time.
fn store_alone(dir: &Path, set: &DataSet, value_bytes: usize) -> Result<Value, String> {
    use streams_dsl::state_store::{KeyValueStore, RocksDbKeyValueStore, RocksDbResources};
    let resources = RocksDbResources::new(64 << 20, 32 << 20);
    let mut stores = (0..set.partitions.max(1))
        .map(|p| {
            RocksDbKeyValueStore::open(format!("alone-{p}"), &dir.join(p.to_string()), &resources)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let value = vec![b'v'; value_bytes];
    let span = Span::start();
    // Per store: when it was last flushed, and the writes since.
    let mut flushed = vec![(Instant::now(), 0u64); stores.len()];
    for k in set.keys() {
        let key = (k as i64).to_be_bytes();
        let p = (k % stores.len() as u64) as usize;
        let store = &mut stores[p];
        let _previous = store.get(&key).map_err(|e| e.to_string())?;
        store.put(&key, &value).map_err(|e| e.to_string())?;
        // Flushed when a task of ours would checkpoint it: 10,000 writes and a second since the last time, or
        // five seconds.
        let (at, writes) = &mut flushed[p];
        *writes += 1;
        let since = at.elapsed();
        if (*writes >= 10_000 && since >= Duration::from_secs(1)) || since >= Duration::from_secs(5)
        {
            store.flush().map_err(|e| e.to_string())?;
            (*at, *writes) = (Instant::now(), 0);
        }
    }
    for s in &mut stores {
        s.flush().map_err(|e| e.to_string())?;
    }
    Ok(span.result(set.records))
}

/// Reads a child's stdout and stderr to their ends (so it never blocks on a full pipe), keeping the last lines
/// of each.
fn drain_tail(child: &mut Child) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    streams
        .into_iter()
        .flatten()
        .map(|s| {
            std::thread::spawn(move || {
                let mut tail: Vec<String> = Vec::new();
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    tail.push(line);
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
                tail
            })
        })
        .collect()
}

/// Records/s at which the updates arrive before the kill in the restart-after-kill measurement.
const KILL_TAIL_RATE: f64 = 10_000.0;

/// The name `--only` matches to run the restart-after-kill measurement.
const KILL_ID: &str = "restart-after-kill";

fn fmt_secs(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |s| format!("{s:.2}"))
}

/// The name `--only` matches to run the failover measurement.
const FAILOVER_ID: &str = "failover";
/// `--only` name of the latency rows through the embedded broker.
const EMBEDDED_LATENCY_ID: &str = "latency-embedded";
/// Partitions of the failover measurement's input: one task per instance.
const FAILOVER_PARTITIONS: i32 = 3;
/// How many of the killed instance's keys the client of the failover measurement asks for, round after round.
const FAILOVER_QUERY_KEYS: usize = 10_000;

/// A child process killed with SIGKILL when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Counts the records restored into active tasks.
#[derive(Clone, Default)]
struct RestoredRecords(Arc<AtomicU64>);

impl StateRestoreListener for RestoredRecords {
    fn on_restore_end(&self, _store: &str, _partition: i32, restored: u64) {
        self.0.fetch_add(restored, Ordering::Relaxed);
    }
}

/// The failover measurement as a Markdown table: for the group deciding ownership and then the instances, a row
/// without standbys and a row with.
fn failover_table(rows: &[Value]) -> String {
    let mut md = String::new();
    let Some(first) = rows.first() else {
        return md;
    };
    md.push_str(&format!(
        "\nFailover after kill -9: a count on a RocksDB store of {} keys, three instances (one task each, commit \
         interval 100 ms, session timeout 6 s), one of them killed with SIGKILL once everything is committed; \
         {} updates arrive right after the kill. Times from the kill; records restored: by the survivors, for \
         every task that moved (the group's range assignor may move a survivor's task to the other survivor \
         too); queries: a client asking the survivors for {} of the killed instance's keys over and over, stale \
         reads allowed, until all input is processed.\n\n\
         | task.ownership | standby replicas | keys moved | records restored | every task running after s | all \
         input processed after s | queries answered | store keys / records counted |\n|---|---|---|---|---|---|---|---|\n",
        first["keys"], first["tail"], FAILOVER_QUERY_KEYS
    ));
    for r in rows {
        if let Some(e) = r["error"].as_str() {
            md.push_str(&format!(
                "| {} | {} | **error**: {e} | | | | | |\n",
                r["ownership"].as_str().unwrap_or("group"),
                r["standby_replicas"]
            ));
            continue;
        }
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} of {} ({:.2}%) | {} / {} |\n",
            r["ownership"].as_str().unwrap_or("group"),
            r["standby_replicas"],
            r["keys_moved"],
            r["restored"],
            fmt_secs(&r["running_s"]),
            fmt_secs(&r["done_s"]),
            r["answered"],
            r["queries"],
            r["answered_share"].as_f64().unwrap_or(0.0) * 100.0,
            r["store_keys"],
            r["store_total"],
        ));
    }
    md
}

/// The restart-after-kill measurement as a Markdown table.
fn kill_table(k: &Value) -> String {
    let mut md = String::new();
    if let Some(e) = k["error"].as_str() {
        md.push_str(&format!("\nRestart after kill -9: **error**: {e}\n"));
        return md;
    }
    md.push_str(&format!(
        "\nRestart after kill -9 ({}): a count on a RocksDB store of {} keys (then {} updates of them) in a child \
         process, killed with SIGKILL between two commits (100 ms apart) once the whole store was committed, then \
         restarted until it is running and its group has committed all {} input records.\n\n\
         | restart | records restored | running after s | all input processed after s | restore s | records \
         processed after the restart | CPU s | store keys / records counted |\n|---|---|---|---|---|---|---|---|\n",
        k["guarantee"].as_str().unwrap_or("-"),
        k["keys"],
        k["tail"],
        k["records"],
    ));
    for (name, what) in [
        ("same_state_dir", "on the same state dir (local RocksDB store and checkpoint)"),
        (
            "task_dirs_wiped",
            "task directories wiped (full restore of the changelog, as Kafka Streams after an unclean \
             exactly-once shutdown)",
        ),
    ] {
        let r = &k[name];
        md.push_str(&format!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            r["restored"],
            fmt_secs(&r["running_s"]),
            fmt_secs(&r["done_s"]),
            fmt_secs(&r["restore_s"]),
            r["processed"],
            fmt_secs(&r["cpu_s"]),
            r["store_keys"],
            r["store_total"],
        ));
    }
    md.push_str(&format!(
        "\nWiped / same state dir, time to all input processed: {}.\n",
        k["wiped_vs_same_done"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.1}x"))
    ));
    md
}

/// Records/s of a worker result.
fn rate(v: &Value) -> Option<f64> {
    Some(v["records"].as_f64()? / v["wall_s"].as_f64()?.max(1e-9))
}

/// Records per CPU-second of a worker result.
fn per_core(v: &Value) -> Option<f64> {
    let cpu = v["cpu_s"].as_f64()?;
    if cpu > 0.0 {
        Some(v["records"].as_f64()? / cpu)
    } else {
        rate(v)
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 1e6 => format!("{:.2} M", r / 1e6),
        Some(r) => format!("{:.0} k", r / 1e3),
        None => "-".into(),
    }
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn fmt_latency(v: &Value) -> String {
    match (v["p50_ms"].as_f64(), v["p99_ms"].as_f64()) {
        (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
        _ => "-".into(),
    }
}

fn fmt_latency3(v: &Value) -> String {
    match (
        v["p50_ms"].as_f64(),
        v["p99_ms"].as_f64(),
        v["p999_ms"].as_f64(),
    ) {
        (Some(a), Some(b), Some(c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
        _ => "-".into(),
    }
}

fn fmt_rss(v: &Value) -> String {
    let rss = v["peak_rss_kib"]
        .as_f64()
        .map_or("-".into(), |k| format!("{:.0}", k / 1024.0));
    // Ours with RocksDB stores: the peak of the budget in use beside it.
    match v["rocksdb_peak_bytes"].as_f64() {
        Some(b) if b > 0.0 => format!("{rss} (RocksDB {:.0})", b / 1048576.0),
        _ => rss,
    }
}

/// Either a measurement or a short word for why there is none (the reasons are listed under the table).
fn cell(v: &Value, f: impl Fn(&Value) -> String) -> String {
    if v.get("records").is_some() || v.get("p50_ms").is_some() {
        f(v)
    } else if v.get("error").is_some() {
        "**error**".into()
    } else {
        match v["skipped"].as_str() {
            Some("full run only") => "full run".into(),
            Some("-") | Some("limit row") | None => "-".into(),
            Some(_) => "n/a".into(),
        }
    }
}

fn find_quix(quick_skip: bool) -> Option<PathBuf> {
    if quick_skip {
        return None;
    }
    if let Ok(p) = std::env::var("BENCH_QUIX_PYTHON") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache")))
        .ok()?;
    Some(cache.join("streams-rs/quix-venv/bin/python")).filter(|p| p.exists())
}

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker_main(&spec);
        return;
    }
    // STREAMS_BENCH_LOG=streams_core=debug (an EnvFilter directive) logs the in-process instances to stderr.
    if let Ok(filter) = std::env::var("STREAMS_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let no_peer = args.iter().any(|a| a == "--no-peer");
    let arg_value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let only = arg_value("--only");
    let out_dir = arg_value("--out").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("target"))
            .join("bench-suite")
    });
    let plan = plan(quick);
    // The guarantee of the restart-after-kill measurement (at_least_once for comparison).
    let kill_eos = match std::env::var("BENCH_KILL_GUARANTEE").as_deref() {
        Err(_) | Ok("exactly_once_v2") => true,
        Ok("at_least_once") => false,
        Ok(other) => {
            eprintln!(
                "error: BENCH_KILL_GUARANTEE must be exactly_once_v2 or at_least_once, not '{other}'"
            );
            std::process::exit(2);
        }
    };
    let quix = find_quix(no_peer);
    let quix_version = quix.as_ref().and_then(|py| {
        Command::new(py)
            .args(["-c", "import quixstreams; print(quixstreams.__version__)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    let started = Instant::now();
    let broker = tests::Broker::tansu();
    let mut h = Harness {
        bootstrap: broker.bootstrap(),
        broker: Some(broker),
        work: tempfile::tempdir().expect("work dir"),
        quix,
        quix_script: manifest_dir().join("../scripts/bench_quix.py"),
        seq: AtomicU64::new(0),
        perf: arg_value("--perf").map(|f| (f, out_dir.clone())),
    };
    if h.perf.is_some() {
        let _ = std::fs::create_dir_all(&out_dir);
    }
    eprintln!(
        "suite ({}): tansu at {}, peer: {}",
        if quick { "quick" } else { "full" },
        h.bootstrap,
        quix_version
            .as_deref()
            .map_or("not installed (skipped)".to_string(), |v| format!(
                "Quix Streams {v}"
            ))
    );
    let selected = |w: Workload| only.as_deref().is_none_or(|o| w.id().contains(o));
    let mut rows: Vec<Value> = Vec::new();
    let mut failures = 0usize;
    let mut restore_rows: Vec<Value> = Vec::new();
    let mut fixed_latency_rows: Vec<Value> = Vec::new();
    // The fixed-rate latency rows: BENCH_LATENCY_SET and BENCH_LATENCY_WORKLOADS (ids, comma-separated) measure
    // other rows than the first set's passthrough and count.
    let latency_set =
        std::env::var("BENCH_LATENCY_SET").unwrap_or_else(|_| plan.sets[0].name.clone());
    let latency_workloads: Vec<Workload> = match std::env::var("BENCH_LATENCY_WORKLOADS") {
        Ok(ids) => ids
            .split(',')
            .map(|id| {
                Workload::from_id(id.trim()).unwrap_or_else(|| {
                    let known: Vec<&str> = ALL.iter().map(|w| w.id()).collect();
                    eprintln!(
                        "error: BENCH_LATENCY_WORKLOADS: no workload '{}' (known: {})",
                        id.trim(),
                        known.join(", ")
                    );
                    std::process::exit(2)
                })
            })
            .collect(),
        Err(_) => vec![Passthrough, Count],
    };
    // Nothing but the limits selected (`--only restart-after-kill`): no data sets either.
    let any_workload = ALL.into_iter().any(|w| !w.is_limit() && selected(w));
    for (i, set) in plan.sets.iter().filter(|_| any_workload).enumerate() {
        if i > 0 {
            h.fresh_broker();
        }
        let load_rate = h.preload(set);
        eprintln!(
            "[{:>5.0}s] loaded {} records into {} ({:.0} k/s)",
            started.elapsed().as_secs_f64(),
            set.records,
            set.input_topic(),
            load_rate / 1e3
        );
        let restore_set = plan.restore_sets.contains(&set.name);
        let mut limits: BTreeMap<&'static str, Value> = BTreeMap::new();
        for w in ALL {
            if !selected(w) && !w.is_limit() {
                continue;
            }
            // The unique-key set is for stateful workloads (and the restore); its limits still run (not in quick
            // mode, where it runs the count only, for the restore).
            if set.unique_keys && !w.stateful() && !w.is_limit() {
                continue;
            }
            // The large-state set runs the count, and in a full run the raw pipe too: its RSS is what librdkafka's
            // buffers cost without any state, the baseline of the count's RSS.
            let rss_baseline = set.count_only && !plan.quick && w == RawPipe;
            if set.unique_keys && (plan.quick || set.count_only) && w != Count && !rss_baseline {
                continue;
            }
            if set.unique_keys && w.needs_table() {
                continue;
            }
            let mut row = json!({
                "workload": w.id(),
                "title": w.title(),
                "set": set.name,
                "keys": set.keys,
                "value_bytes": set.value_bytes,
                "records": set.records,
            });
            // Ours (or the raw client).
            let ours = if let Some(why) = w.ours_unavailable() {
                json!({"skipped": why})
            } else {
                let spec = h.spec(w, "throughput", set, &set.input_topic(), set.records);
                if restore_set && w == Count {
                    row["ours_restore_app"] = json!(spec.app);
                }
                match h.run(&spec, false) {
                    Ok(v) => v,
                    Err(e) => {
                        failures += 1;
                        json!({"error": e})
                    }
                }
            };
            eprintln!(
                "[{:>5.0}s] {} / {}: ours {} rec/s",
                started.elapsed().as_secs_f64(),
                set.name,
                w.id(),
                fmt_rate(rate(&ours))
            );
            // The peer.
            let peer = if let Some(why) = w.peer_unavailable() {
                json!({"skipped": why})
            } else if set.count_only {
                json!({"skipped": "ours only on the large-state set"})
            } else if h.quix.is_none() {
                json!({"skipped": "peer not installed"})
            } else {
                let n = if restore_set && w == Count {
                    set.records
                } else {
                    plan.peer_records.min(set.records)
                };
                let spec = h.spec(w, "throughput", set, &set.input_topic(), n);
                match h.run(&spec, true) {
                    Ok(v) => {
                        if restore_set && w == Count {
                            row["peer_restore_app"] = json!(spec.app);
                        }
                        v
                    }
                    Err(e) => {
                        failures += 1;
                        json!({"error": e})
                    }
                }
            };
            if h.quix.is_some() && w.peer_unavailable().is_none() {
                eprintln!(
                    "[{:>5.0}s] {} / {}: peer {} rec/s",
                    started.elapsed().as_secs_f64(),
                    set.name,
                    w.id(),
                    fmt_rate(rate(&peer))
                );
            }
            // Latency at half of each side's own maximum rate (not on the unique-key set: its keys run out); in a
            // full run, ours also at the peer's pace, for the same load on the broker.
            let lat = |v: &Value, pace: Option<f64>, is_peer: bool| -> Value {
                if v.get("skipped").is_some() {
                    return json!({"skipped": "-"});
                }
                let Some(r) = pace.or_else(|| rate(v).map(|r| r / 2.0)) else {
                    return json!({"skipped": "no throughput"});
                };
                if !w.has_output() || set.unique_keys {
                    return json!({"skipped": "-"});
                }
                if plan.quick && w.alos() != Passthrough {
                    return json!({"skipped": "full run only"});
                }
                match h.latency(w, set, r.max(100.0), plan.latency_secs, is_peer) {
                    Ok(v) => v,
                    Err(e) => json!({"error": e}),
                }
            };
            let ours_lat = lat(&ours, None, false);
            let peer_lat = lat(&peer, None, true);
            let ours_lat_peer_pace = match rate(&peer) {
                Some(p) if !plan.quick => lat(&ours, Some(p / 2.0), false),
                _ => json!({"skipped": "-"}),
            };
            // The raw pipe at the peer's pace: the broker's own latency at that load, the floor of both sides.
            let raw_lat_peer_pace = match rate(&peer) {
                Some(p) if !plan.quick && w.has_output() && !set.unique_keys && !w.is_limit() => h
                    .latency(RawPipe, set, (p / 2.0).max(100.0), plan.latency_secs, false)
                    .unwrap_or_else(|e| json!({"error": e})),
                _ => json!({"skipped": "-"}),
            };
            eprintln!(
                "[{:>5.0}s] {} / {}: latency p50/p99 ms: ours {}, ours at the peer's pace {}, peer {}, raw pipe at \
                 the peer's pace {}",
                started.elapsed().as_secs_f64(),
                set.name,
                w.id(),
                cell(&ours_lat, fmt_latency),
                cell(&ours_lat_peer_pace, fmt_latency),
                cell(&peer_lat, fmt_latency),
                cell(&raw_lat_peer_pace, fmt_latency)
            );
            for l in [
                &ours_lat,
                &peer_lat,
                &ours_lat_peer_pace,
                &raw_lat_peer_pace,
            ] {
                if l.get("error").is_some() {
                    failures += 1;
                }
            }
            if w.is_limit() {
                limits.insert(w.id(), ours.clone());
            }
            let limit = w.limit().and_then(|l| limits.get(l.id()));
            row["ours"] = ours.clone();
            row["peer"] = peer.clone();
            row["ours_latency"] = ours_lat;
            row["peer_latency"] = peer_lat;
            row["ours_latency_at_peer_pace"] = ours_lat_peer_pace;
            row["raw_pipe_latency_at_peer_pace"] = raw_lat_peer_pace;
            row["vs_limit_rate"] = json!(limit
                .and_then(rate)
                .and_then(|l| rate(&ours).map(|o| o / l)));
            row["vs_limit_per_core"] = json!(limit
                .and_then(per_core)
                .and_then(|l| per_core(&ours).map(|o| o / l)));
            row["vs_peer_rate"] = json!(rate(&peer).and_then(|p| rate(&ours).map(|o| o / p)));
            row["vs_peer_per_core"] =
                json!(per_core(&peer).and_then(|p| per_core(&ours).map(|o| o / p)));
            // The store's own cost where RocksDB does the work: the kv rows, and the count on a set whose keys
            // outgrow the record cache. The bound of a row is the raw pipe's cost per record plus the store's.
            if !plan.quick
                && (w == KvStore || (w == Count && set.keys > 100_000))
                && ours.get("records").is_some()
            {
                // The count's store holds a timestamp and a count per key.
                let value_bytes = if w == KvStore { set.value_bytes } else { 16 };
                let dir = h.work.path().join(h.fresh("store-alone"));
                let alone = store_alone(&dir, set, value_bytes).unwrap_or_else(|e| {
                    failures += 1;
                    json!({"error": e})
                });
                let _ = std::fs::remove_dir_all(&dir);
                let bound = match (limit.and_then(per_core), per_core(&alone)) {
                    (Some(raw), Some(store)) => Some(1.0 / (1.0 / raw + 1.0 / store)),
                    _ => None,
                };
                eprintln!(
                    "[{:>5.0}s] {} / {}: RocksDB get+put alone {} rec/s/core; bound (raw pipe + store) {} \
                     rec/s/core; ours {} ({})",
                    started.elapsed().as_secs_f64(),
                    set.name,
                    w.id(),
                    cell(&alone, |v| fmt_rate(per_core(v))),
                    fmt_rate(bound),
                    fmt_rate(per_core(&ours)),
                    fmt_ratio(per_core(&ours), bound),
                );
                row["store_alone"] = alone;
                row["store_bound_per_core"] = json!(bound);
            }
            if w.eos() {
                // The same topology at at_least_once ran just before, on the same input.
                let alos = rows
                    .iter()
                    .rev()
                    .find(|r| r["set"] == set.name.as_str() && r["workload"] == w.alos().id())
                    .map(|r| r["ours"].clone());
                let alos_rate = alos.as_ref().and_then(rate);
                let alos_per_core = alos.as_ref().and_then(per_core);
                row["vs_alos_rate"] = json!(alos_rate.and_then(|a| rate(&ours).map(|o| o / a)));
                row["vs_alos_per_core"] =
                    json!(alos_per_core.and_then(|a| per_core(&ours).map(|o| o / a)));
                eprintln!(
                    "[{:>5.0}s] {} / {}: exactly_once_v2 / at_least_once = {} (rate), {} (per core)",
                    started.elapsed().as_secs_f64(),
                    set.name,
                    w.id(),
                    fmt_ratio(rate(&ours), alos_rate),
                    fmt_ratio(per_core(&ours), alos_per_core)
                );
            }
            rows.push(row);
        }
        // Latency at fixed rates (1k/s, 10k/s, half of our maximum), each beside the raw pipe at the same rate.
        if !set.unique_keys && set.name == latency_set {
            for &w in &latency_workloads {
                if !selected(w) || (plan.quick && w != Passthrough) {
                    continue;
                }
                let max = rows
                    .iter()
                    .rev()
                    .find(|r| r["set"] == set.name.as_str() && r["workload"] == w.id())
                    .and_then(|r| rate(&r["ours"]));
                // BENCH_LATENCY_RATES=20000,30000 measures at these rates instead.
                let paces: Vec<f64> = match (std::env::var("BENCH_LATENCY_RATES"), max) {
                    (Ok(r), _) => r.split(',').filter_map(|p| p.trim().parse().ok()).collect(),
                    (Err(_), Some(max)) => vec![1_000.0, 10_000.0, (max / 2.0).max(100.0)],
                    (Err(_), None) => continue,
                };
                for pace in paces {
                    let (ours, raw) = h.latency_pair(w, set, pace, &plan, true);
                    failures += [&ours, &raw]
                        .iter()
                        .filter(|v| v.get("error").is_some())
                        .count();
                    eprintln!(
                        "[{:>5.0}s] {} / {} at {:.0} rec/s: latency p50/p99/p999 ms: ours {}, raw pipe {}",
                        started.elapsed().as_secs_f64(),
                        set.name,
                        w.id(),
                        pace,
                        cell(&ours, fmt_latency3),
                        cell(&raw, fmt_latency3)
                    );
                    fixed_latency_rows.push(json!({
                        "set": set.name,
                        "workload": format!("{}@{pace:.0}", w.id()),
                        "rate": pace,
                        "ours": ours,
                        "raw_pipe": raw,
                    }));
                }
            }
        }
        if restore_set && selected(Count) {
            // The count runs above left a changelog of `records` keys; restore it into empty state dirs.
            let ours_app = rows
                .iter()
                .rev()
                .find(|r| r["set"] == set.name.as_str() && r["workload"] == "count")
                .cloned();
            let mut restore =
                json!({"set": set.name, "keys": set.records, "partitions": set.partitions});
            let ours_rows = ours_app.as_ref().map(|r| r["ours"].clone());
            restore["ours"] = if ours_rows
                .as_ref()
                .is_some_and(|v| v.get("records").is_some())
            {
                // Same application id as that count run (its changelog), new state dir.
                let mut spec = h.spec(Count, "restore", set, &set.input_topic(), set.records);
                spec.app = ours_app
                    .as_ref()
                    .and_then(|r| r["ours_restore_app"].as_str().map(str::to_string))
                    .unwrap_or(spec.app);
                match h.run(&spec, false) {
                    Ok(v) => v,
                    Err(e) => {
                        failures += 1;
                        json!({"error": e})
                    }
                }
            } else {
                json!({"skipped": "count did not run"})
            };
            // The limit: a plain rdkafka consumer reading the same changelog.
            restore["limit"] = match (
                ours_app
                    .as_ref()
                    .and_then(|r| r["ours_restore_app"].as_str()),
                restore["ours"]["records"].as_u64(),
            ) {
                (Some(app), Some(n)) => {
                    let changelog = format!("{app}-counts-changelog");
                    let spec = h.spec(RawConsume, "throughput", set, &changelog, n);
                    match h.run(&spec, false) {
                        Ok(v) => v,
                        Err(e) => {
                            failures += 1;
                            json!({"error": e})
                        }
                    }
                }
                _ => json!({"skipped": "no restore to compare"}),
            };
            restore["peer"] = match ours_app
                .as_ref()
                .and_then(|r| r["peer_restore_app"].as_str())
            {
                Some(app) => {
                    let mut spec = h.spec(Count, "restore", set, &set.input_topic(), set.records);
                    spec.app = app.to_string();
                    match h.run(&spec, true) {
                        Ok(v) => v,
                        Err(e) => {
                            failures += 1;
                            json!({"error": e})
                        }
                    }
                }
                None => json!({"skipped": "peer count did not run"}),
            };
            eprintln!(
                "[{:>5.0}s] restore of {} keys: ours {} rec/s, raw consume of the changelog {} rec/s, peer {} rec/s",
                started.elapsed().as_secs_f64(),
                set.records,
                fmt_rate(rate(&restore["ours"])),
                fmt_rate(rate(&restore["limit"])),
                fmt_rate(rate(&restore["peer"]))
            );
            restore_rows.push(restore);
        }
    }
    // Restart after kill -9: resuming from the local store against restoring the whole changelog.
    let kill = if only.as_deref().is_none_or(|o| KILL_ID.contains(o)) {
        eprintln!(
            "[{:>5.0}s] restart after kill -9: {} keys, then {} updates, {}",
            started.elapsed().as_secs_f64(),
            plan.kill_keys,
            plan.kill_tail,
            if kill_eos {
                "exactly_once_v2"
            } else {
                "at_least_once"
            }
        );
        if any_workload {
            h.fresh_broker();
        }
        let r = match h.restart_after_kill(plan.kill_keys, plan.kill_tail, kill_eos) {
            Ok(v) => v,
            Err(e) => {
                failures += 1;
                json!({"error": e})
            }
        };
        eprintln!(
            "[{:>5.0}s] restart after kill -9: same state dir {} s ({} restored), task dirs wiped {} s ({} \
             restored); wiped / same = {}",
            started.elapsed().as_secs_f64(),
            fmt_secs(&r["same_state_dir"]["done_s"]),
            r["same_state_dir"]["restored"],
            fmt_secs(&r["task_dirs_wiped"]["done_s"]),
            r["task_dirs_wiped"]["restored"],
            r["wiped_vs_same_done"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.1}x"))
        );
        Some(r)
    } else {
        None
    };
    // Failover after kill -9 of one of three instances, without and with a standby replica.
    let mut failover_rows: Vec<Value> = Vec::new();
    if only.as_deref().is_none_or(|o| FAILOVER_ID.contains(o)) {
        // The consumer group deciding which instance runs each task, then the instances deciding it
        // (task.ownership=library).
        for (i, (library, replicas)) in [(false, 0), (false, 1), (true, 0), (true, 1)]
            .into_iter()
            .enumerate()
        {
            let ownership = if library { "library" } else { "group" };
            if any_workload || kill.is_some() || i > 0 {
                h.fresh_broker();
            }
            eprintln!(
                "[{:>5.0}s] failover after kill -9: {} keys on three instances, {replicas} standby replicas, \
                 task.ownership={ownership}",
                started.elapsed().as_secs_f64(),
                plan.failover_keys,
            );
            let r = h
                .failover(plan.failover_keys, plan.failover_tail, replicas, library)
                .unwrap_or_else(|e| {
                    failures += 1;
                    json!({"standby_replicas": replicas, "ownership": ownership, "error": e})
                });
            eprintln!(
                "[{:>5.0}s] failover, {replicas} standby replicas, task.ownership={ownership}: {} records restored, \
                 every task running after {} s, all input processed after {} s, {} of {} queries answered",
                started.elapsed().as_secs_f64(),
                r["restored"],
                fmt_secs(&r["running_s"]),
                fmt_secs(&r["done_s"]),
                r["answered"],
                r["queries"],
            );
            failover_rows.push(r);
        }
    }
    // Latency through the embedded broker (full runs): it answers a fetch as soon as data arrives, so the
    // figures show what the library adds without tansu's fetch wait.
    if !plan.quick
        && only
            .as_deref()
            .is_none_or(|o| EMBEDDED_LATENCY_ID.contains(o))
    {
        h.embedded_broker();
        let set = &plan.sets[0];
        for pace in [1_000.0, 10_000.0] {
            let (ours, raw) = h.latency_pair(Passthrough, set, pace, &plan, false);
            failures += [&ours, &raw]
                .iter()
                .filter(|v| v.get("error").is_some())
                .count();
            eprintln!(
                "[{:>5.0}s] embedded broker, {} / passthrough at {pace:.0} rec/s: latency p50/p99/p999 ms: ours {}, \
                 raw pipe {}",
                started.elapsed().as_secs_f64(),
                set.name,
                cell(&ours, fmt_latency3),
                cell(&raw, fmt_latency3)
            );
            fixed_latency_rows.push(json!({
                "set": set.name,
                "broker": "embedded",
                "workload": format!("passthrough (embedded broker)@{pace:.0}"),
                "rate": pace,
                "ours": ours,
                "raw_pipe": raw,
            }));
        }
    }
    let total = started.elapsed().as_secs_f64();

    // The Markdown report.
    let mut md = String::new();
    md.push_str(&format!(
        "Benchmark suite ({} mode) on tansu, {} partitions per topic, {} cores; peer: {}; {:.0} s in all.\n\
         Rates are records/s from each process's first input record to the last one processed (final flush and \
         close not included; see close_s in the JSON); per core = \
         records per CPU-second of the process; latency = p50 / p99 ms end to end at half that side's own \
         maximum rate (commit interval 100 ms on both sides); RSS = peak resident MiB of the process.\n\n",
        if plan.quick { "quick" } else { "full" },
        PARTITIONS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        quix_version
            .as_deref()
            .map_or("not run".to_string(), |v| format!("Quix Streams {v}")),
        total
    ));
    md.push_str(
        "| workload | keys | value | ours rec/s | ours rec/s/core | ours/limit (rate, per core) | Quix rec/s | \
         Quix rec/s/core | ours/Quix (rate) | ours/Quix (per core) | latency ours ms | latency ours at Quix's \
         pace ms | latency Quix ms | latency raw pipe at Quix's pace ms | RSS ours MiB | RSS Quix MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let (o, p) = (&r["ours"], &r["peer"]);
        let vs_limit = match (r["vs_limit_rate"].as_f64(), r["vs_limit_per_core"].as_f64()) {
            (Some(a), Some(b)) => format!("{a:.2}x, {b:.2}x"),
            _ => "-".into(),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["title"].as_str().unwrap_or(""),
            label_keys(r["keys"].as_u64().unwrap_or(0)),
            label_value(r["value_bytes"].as_u64().unwrap_or(0) as usize),
            cell(o, |v| fmt_rate(rate(v))),
            cell(o, |v| fmt_rate(per_core(v))),
            vs_limit,
            cell(p, |v| fmt_rate(rate(v))),
            cell(p, |v| fmt_rate(per_core(v))),
            fmt_ratio(rate(o), rate(p)),
            fmt_ratio(per_core(o), per_core(p)),
            cell(&r["ours_latency"], fmt_latency),
            cell(&r["ours_latency_at_peer_pace"], fmt_latency),
            cell(&r["peer_latency"], fmt_latency),
            cell(&r["raw_pipe_latency_at_peer_pace"], fmt_latency),
            cell(o, fmt_rss),
            cell(p, fmt_rss),
        ));
    }
    let mut notes = BTreeMap::new();
    for r in rows.iter().chain(&restore_rows) {
        for (side, key) in [
            ("ours", "ours"),
            ("Quix", "peer"),
            ("ours, latency", "ours_latency"),
            ("Quix, latency", "peer_latency"),
            ("ours, latency at Quix's pace", "ours_latency_at_peer_pace"),
            (
                "raw pipe, latency at Quix's pace",
                "raw_pipe_latency_at_peer_pace",
            ),
        ] {
            let why = r[key]["error"]
                .as_str()
                .map(|e| format!("error: {e}"))
                .or_else(|| {
                    r[key]["skipped"]
                        .as_str()
                        .filter(|s| s.len() > 20)
                        .map(str::to_string)
                });
            if let Some(why) = why {
                let what = r["title"].as_str().unwrap_or("restore");
                notes.insert(format!("{what} ({side})"), why);
            }
        }
    }
    if !notes.is_empty() {
        md.push('\n');
        for (what, why) in &notes {
            md.push_str(&format!("- {what}: {why}\n"));
        }
    }
    let eos_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r["workload"]
                .as_str()
                .and_then(Workload::from_id)
                .is_some_and(Workload::eos)
        })
        .collect();
    if !eos_rows.is_empty() {
        md.push_str(
            "\n| exactly_once_v2 beside at_least_once | keys | value | at_least_once rec/s | exactly_once_v2 rec/s | \
             EOS/ALOS (rate) | EOS/ALOS (per core) | close s, ALOS / EOS | latency ms, ALOS | latency ms, EOS |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in eos_rows {
            let alos = rows.iter().find(|a| {
                a["set"] == r["set"]
                    && r["workload"]
                        .as_str()
                        .and_then(Workload::from_id)
                        .is_some_and(|w| a["workload"] == w.alos().id())
            });
            let (a, e) = (alos.map_or(&Value::Null, |a| &a["ours"]), &r["ours"]);
            let close = |v: &Value| {
                v["close_s"]
                    .as_f64()
                    .map_or("-".into(), |c| format!("{c:.2}"))
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
                r["workload"]
                    .as_str()
                    .and_then(Workload::from_id)
                    .map_or("", |w| w.alos().title()),
                label_keys(r["keys"].as_u64().unwrap_or(0)),
                label_value(r["value_bytes"].as_u64().unwrap_or(0) as usize),
                cell(a, |v| fmt_rate(rate(v))),
                cell(e, |v| fmt_rate(rate(v))),
                fmt_ratio(rate(e), rate(a)),
                fmt_ratio(per_core(e), per_core(a)),
                close(a),
                close(e),
                alos.map_or("-".into(), |a| cell(&a["ours_latency"], fmt_latency)),
                cell(&r["ours_latency"], fmt_latency),
            ));
        }
        md.push_str(
            "\nBoth guarantees commit every 1,000 ms in the throughput runs and every 100 ms in the latency runs \
             (Kafka Streams' default under exactly_once_v2); under exactly_once_v2 the latency reader uses \
             isolation.level=read_committed.\n",
        );
    }
    let bound_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("store_alone").is_some())
        .collect();
    if !bound_rows.is_empty() {
        md.push_str(
            "\n| store bound | keys | value | RocksDB get+put alone rec/s/core | raw pipe rec/s/core | bound: both \
             costs rec/s/core | ours rec/s/core | ours/bound |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in bound_rows {
            let raw = r["workload"]
                .as_str()
                .and_then(Workload::from_id)
                .and_then(Workload::limit)
                .and_then(|l| {
                    rows.iter()
                        .find(|x| x["set"] == r["set"] && x["workload"] == l.id())
                })
                .map_or(&Value::Null, |x| &x["ours"]);
            let bound = r["store_bound_per_core"].as_f64();
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r["title"].as_str().unwrap_or(""),
                label_keys(r["keys"].as_u64().unwrap_or(0)),
                label_value(r["value_bytes"].as_u64().unwrap_or(0) as usize),
                cell(&r["store_alone"], |v| fmt_rate(per_core(v))),
                cell(raw, |v| fmt_rate(per_core(v))),
                fmt_rate(bound),
                cell(&r["ours"], |v| fmt_rate(per_core(v))),
                fmt_ratio(per_core(&r["ours"]), bound),
            ));
        }
        md.push_str(
            "\nThe store alone: the row's get+put pairs (same keys, same value size; the count's 16-byte \
             timestamped counts) straight on RocksDB stores opened as ours are (one per partition, the same \
             64 MiB budget, each flushed when our task would checkpoint it: after 10,000 writes and a second, or \
             five seconds), in the suite's process. A record of the row \
             costs at least the raw pipe's CPU plus the store's: the bound column adds the two.\n",
        );
    }
    if !fixed_latency_rows.is_empty() {
        md.push_str(
            "\n| latency at a fixed rate | rate rec/s | ours p50 / p99 / p999 ms | raw pipe p50 / p99 / p999 ms | \
             ours/raw (p99) |\n|---|---|---|---|---|\n",
        );
        for r in &fixed_latency_rows {
            let (o, l) = (&r["ours"], &r["raw_pipe"]);
            let w = r["workload"].as_str().unwrap_or("-");
            md.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} |\n",
                w.split('@').next().unwrap_or(w),
                r["rate"].as_f64().unwrap_or(0.0),
                cell(o, fmt_latency3),
                cell(l, fmt_latency3),
                fmt_ratio(o["p99_ms"].as_f64(), l["p99_ms"].as_f64()),
            ));
        }
        md.push_str(
            "\nEnd to end: from the record's timestamp, set when the load generator sends it, to its arrival at a \
             reader of the output topic (millisecond resolution); commit interval 100 ms; every side reads with \
             `fetch.wait.max.ms` 10. Each side runs `BENCH_LATENCY_REPEAT` times (3 in a full run), the sides \
             alternating, each run on a tansu of its own; the row shows the run with the median p99 (every run's \
             p99 in the JSON, `p99_runs_ms`).\n",
        );
    }
    if !restore_rows.is_empty() {
        md.push_str(
            "\n| restore into an empty state dir | changelog records | ours rec/s | ours rec/s/core | raw consume of \
             the changelog rec/s (limit) | raw rec/s/core | ours/limit (rate, per core) | Quix rec/s | \
             Quix rec/s/core | ours/Quix (rate) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &restore_rows {
            let (o, l, p) = (&r["ours"], &r["limit"], &r["peer"]);
            md.push_str(&format!(
                "| count store, {} keys, {} partitions | {} | {} | {} | {} | {} | {}, {} | {} | {} | {} |\n",
                r["keys"],
                r["partitions"],
                cell(o, |v| v["records"].to_string()),
                cell(o, |v| fmt_rate(rate(v))),
                cell(o, |v| fmt_rate(per_core(v))),
                cell(l, |v| fmt_rate(rate(v))),
                cell(l, |v| fmt_rate(per_core(v))),
                fmt_ratio(rate(o), rate(l)),
                fmt_ratio(per_core(o), per_core(l)),
                cell(p, |v| fmt_rate(rate(v))),
                cell(p, |v| fmt_rate(per_core(v))),
                fmt_ratio(rate(o), rate(p)),
            ));
        }
    }
    if !restore_rows.is_empty() {
        md.push_str(
            "\nMemory: every run of ours has `rocksdb.memory.bytes` 64 MiB (block cache and memtables of all its \
             stores) and a 10 MiB record cache; the RSS column (peak resident memory of the process) of the count \
             rows shows what a large state costs on top of librdkafka's buffers (the raw pipe's RSS on the same \
             set), and in brackets the peak of the budget in use (RocksDB's own accounting).\n",
        );
    }
    if let Some(k) = &kill {
        md.push_str(&kill_table(k));
    }
    md.push_str(&failover_table(&failover_rows));
    println!("{md}");
    let report = json!({
        "mode": if plan.quick { "quick" } else { "full" },
        "broker": "tansu",
        "partitions": PARTITIONS,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "peer": quix_version.map(|v| format!("quixstreams {v}")),
        "peer_records_per_run": plan.peer_records,
        "latency_seconds": plan.latency_secs,
        "latency_repeat": plan.latency_repeat,
        "total_seconds": total,
        "workloads": rows,
        "restore": restore_rows,
        "latency_at_fixed_rates": fixed_latency_rows,
        "restart_after_kill": kill,
        "failover": failover_rows,
    });
    if let Some(old_path) = arg_value("--compare") {
        // Every figure beside the same figure of the earlier run.
        match std::fs::read_to_string(&old_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(old) => {
                let cmp = format!(
                    "Change against {old_path}:\n\n{}",
                    tests::bench_compare::table(&old, &report)
                );
                println!("{cmp}");
                let _ = std::fs::create_dir_all(&out_dir);
                let _ = std::fs::write(out_dir.join("compare.md"), cmp);
            }
            Err(e) => eprintln!("error: cannot compare against {old_path}: {e}"),
        }
    }
    if std::fs::create_dir_all(&out_dir).is_ok() {
        let _ = std::fs::write(out_dir.join("suite.md"), &md);
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        let _ = std::fs::write(out_dir.join("suite.json"), &text);
        // Every run is also kept under its start time, for later `--compare`s.
        let history = out_dir.join("history");
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if std::fs::create_dir_all(&history).is_ok() {
            let _ = std::fs::write(history.join(format!("suite-{stamp}.json")), &text);
        }
        println!(
            "Results: {} and {}",
            out_dir.join("suite.md").display(),
            out_dir.join("suite.json").display()
        );
    }
    // Stop the broker (and remove the state dirs) before exiting.
    drop(h);
    if failures > 0 {
        eprintln!("{failures} workload run(s) failed");
        std::process::exit(1);
    }
}

/// The package's directory, as cargo gives it when it runs the binary: a build cache shared between checkouts
/// can hand out a binary compiled in another checkout, whose compile-time path would point there.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
