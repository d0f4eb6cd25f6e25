//! Broker benchmark through tansu: a raw rdkafka consume -> produce pipe (the baseline: the most a client can
//! move through this broker), then the same input through a passthrough topology and through a count on a
//! RocksDB store with its changelog. Prints records/s, records/s per CPU-core and the ratio to the raw pipe.
//!
//! `cargo bench -p tests --bench broker` (`BROKER_BENCH_RECORDS`, default 1,000,000 records of 100 bytes).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::KafkaStreams;
use streams_dsl::*;
use tests::Broker;

const PARTITIONS: i32 = 2;
const KEYS: u64 = 10_000;

fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

struct Measure {
    records: u64,
    wall: f64,
    cpu: f64,
}

impl Measure {
    fn rate(&self) -> f64 {
        self.records as f64 / self.wall
    }
    fn per_core(&self) -> f64 {
        if self.cpu > 0.0 {
            self.records as f64 / self.cpu
        } else {
            self.rate()
        }
    }
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn fill(bootstrap: &str, n: u64) -> Measure {
    let p = producer(bootstrap);
    let value = [7u8; 100];
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = ((x % KEYS) as i64).to_be_bytes();
        let mut r = BaseRecord::to("bench-input")
            .key(&key[..])
            .payload(&value[..]);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    Measure {
        records: n,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

/// The baseline: consume every input record with a group consumer and produce it again, then flush.
fn raw_pipe(bootstrap: &str, n: u64) -> Measure {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "raw-pipe")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .create()
        .expect("consumer");
    consumer.subscribe(&["bench-input"]).expect("subscribe");
    let p = producer(bootstrap);
    let mut seen = 0u64;
    let mut start = None;
    while seen < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                start.get_or_insert_with(|| (cpu_seconds(), Instant::now()));
                let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to("raw-out");
                if let Some(k) = m.key() {
                    r = r.key(k);
                }
                if let Some(v) = m.payload() {
                    r = r.payload(v);
                }
                loop {
                    match p.send(r) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            r = back;
                            p.poll(Duration::from_millis(1));
                        }
                    }
                }
                seen += 1;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    let (c0, t0) = start.expect("records were consumed");
    Measure {
        records: n,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

/// Runs `topology` until it has processed every input record; timed from its first processed record to the
/// end of `close` (which commits: flushes caches, changelogs and the producer).
fn run_streams(broker: &Broker, app: &str, topology: Topology, n: u64) -> Measure {
    let dir = tempfile::tempdir().expect("state dir");
    let (mut config, admin) = broker.config(app, dir.path());
    config.set("commit.interval.ms", "1000").expect("config");
    if let Ok(b) = std::env::var("BENCH_BUFFERED") {
        config
            .set("buffered.records.per.partition", &b)
            .expect("config");
    }
    let streams = KafkaStreams::new(topology, (config, admin)).expect("streams");
    streams.start().expect("start");
    let mut start = None;
    loop {
        let done = streams.metrics().processed;
        if done > 0 {
            start.get_or_insert_with(|| (cpu_seconds(), Instant::now()));
        }
        if done >= n {
            break;
        }
        assert!(streams.errors().is_empty(), "{:?}", streams.errors());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(streams.close(Duration::from_secs(120)), "close timed out");
    let (c0, t0) = start.expect("records were processed");
    Measure {
        records: n,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

fn main() {
    let n: u64 = std::env::var("BROKER_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    for t in ["bench-input", "raw-out", "passthrough-out"] {
        broker.create_topic(t, PARTITIONS);
    }
    let filled = fill(&bootstrap, n);
    println!(
        "broker benchmark on tansu: {n} records, 8-byte keys over {KEYS} keys, 100-byte values, {PARTITIONS} partitions"
    );
    println!("(input written at {:.2} M/s)", filled.rate() / 1e6);
    println!(
        "| workload | records/s | per core | ratio to raw pipe (rate) | ratio (per core) | aim |"
    );
    println!("|---|---|---|---|---|---|");
    let raw = raw_pipe(&bootstrap, n);
    let row = |name: &str, m: &Measure, aim: &str| {
        println!(
            "| {name} | {:.0} k/s | {:.0} k/s | {:.2} | {:.2} | {aim} |",
            m.rate() / 1e3,
            m.per_core() / 1e3,
            m.rate() / raw.rate(),
            m.per_core() / raw.per_core()
        );
    };
    row("raw rdkafka consume -> produce (baseline)", &raw, "-");

    let b = StreamsBuilder::new();
    b.stream(
        "bench-input",
        Consumed::with(Serdes::bytes(), Serdes::bytes()),
    )
    .to("passthrough-out", Produced::new());
    let passthrough = run_streams(
        &broker,
        "bench-passthrough",
        b.build().expect("topology"),
        n,
    );
    row("passthrough", &passthrough, ">= 0.8");

    let b = StreamsBuilder::new();
    b.stream(
        "bench-input",
        Consumed::with(Serdes::i64(), Serdes::bytes()),
    )
    .group_by_key(Grouped::new())
    .count(Materialized::as_store("bench-counts"));
    let count = run_streams(&broker, "bench-count", b.build().expect("topology"), n);
    row("count (RocksDB + changelog)", &count, ">= 0.5");
}
