//! Engine-only throughput: the topology runs in the in-process driver (no broker), beside a plain Rust loop doing
//! the same work on the same input in the same process. Prints records/s, records/s per CPU-core, and the ratio.
//!
//! `cargo bench -p streams-dsl --bench engine` (set `ENGINE_BENCH_RECORDS` to change the input size).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use streams_dsl::streams_core::{Headers, RawRecordRef};
use streams_dsl::*;

/// Records per driver call, like one poll of a consumer.
const CHUNK: usize = 1_000;
/// Records between commits (cache flush, changelog writes). Kafka Streams commits every 30 s by default; one
/// commit per 100k records is still far more frequent at these rates.
const COMMIT_EVERY: usize = 100_000;

/// Process CPU time (user + system) in seconds, from /proc (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Measure {
    records: usize,
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

fn measure(records: usize, f: impl FnOnce()) -> Measure {
    let (c0, t0) = (cpu_seconds(), Instant::now());
    f();
    Measure {
        records,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

/// The plain loop's figure: `pass` (one pass over `records` records) repeated until at least half a second has
/// gone by, so the CPU time, read in 10 ms ticks, is not dominated by its rounding.
fn baseline(records: usize, mut pass: impl FnMut()) -> Measure {
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let mut passes = 0;
    while passes == 0 || t0.elapsed().as_secs_f64() < 0.5 {
        pass();
        passes += 1;
    }
    Measure {
        records: records * passes,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

/// Input: i64 keys over `keys` distinct values and i64 values, laid out in one buffer of 16 bytes per record
/// (key then value), as a consumer hands records over without copying.
fn input(n: usize, keys: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(n * 16);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&((x % keys) as i64).to_be_bytes());
        buf.extend_from_slice(&(i as i64).to_be_bytes());
    }
    buf
}

/// Records of `buf` from `start` to `end`.
fn records(
    buf: &[u8],
    start: usize,
    end: usize,
) -> impl Iterator<Item = (Option<i32>, RawRecordRef<'_>)> {
    (start..end).map(move |i| {
        (
            None,
            RawRecordRef {
                key: Some(&buf[i * 16..i * 16 + 8]),
                value: Some(&buf[i * 16 + 8..i * 16 + 16]),
                timestamp: i as i64,
                headers: Headers::new(),
                offset: -1,
            },
        )
    })
}

fn decode(b: &[u8]) -> i64 {
    i64::from_be_bytes(b.try_into().unwrap_or([0; 8]))
}

fn run_driver(topology: Topology, buf: &[u8], cache: usize) -> Measure {
    run_driver_spaced(topology, buf, cache, 1)
}

/// [`run_driver`] with record timestamps `spacing` ms apart.
fn run_driver_spaced(topology: Topology, buf: &[u8], cache: usize, spacing: i64) -> Measure {
    run_driver_over(topology, buf.len() / 16, cache, |start, end| {
        records(buf, start, end).map(move |(p, mut r)| {
            r.timestamp *= spacing;
            (p, r)
        })
    })
}

/// Pipes records `0..n` into the topic `input` in chunks of [`CHUNK`] (`chunk(start, end)` yields them), with a
/// commit every [`COMMIT_EVERY`], and measures it.
fn run_driver_over<'a, I>(
    topology: Topology,
    n: usize,
    cache: usize,
    chunk: impl Fn(usize, usize) -> I,
) -> Measure
where
    I: Iterator<Item = (Option<i32>, RawRecordRef<'a>)>,
{
    let driver = TopologyTestDriver::builder(topology)
        .retain_records(false)
        .cache_max_bytes(cache)
        .commit_after_each_pipe(false)
        .build()
        .expect("driver");
    let m = measure(n, || {
        for start in (0..n).step_by(CHUNK) {
            driver
                .pipe_raw_refs("input", chunk(start, (start + CHUNK).min(n)))
                .expect("pipe");
            if (start / CHUNK + 1).is_multiple_of(COMMIT_EVERY / CHUNK) {
                driver.commit().expect("commit");
            }
        }
        driver.commit().expect("commit");
    });
    assert_eq!(
        driver.metrics().processed as usize,
        n,
        "every record processed"
    );
    m
}

fn stateless_topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()))
        .map_values(|v| v.wrapping_mul(3))
        .filter(|_, v| v % 2 == 0)
        .to("output", Produced::new());
    b.build().expect("topology")
}

fn count_topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts").with_store_kind(kind));
    b.build().expect("topology")
}

fn report(name: &str, ours: &Measure, base: &Measure, target: f64) {
    println!(
        "| {name} | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} | {:.1} M/s |",
        ours.rate() / 1e6,
        ours.per_core() / 1e6,
        base.per_core() / 1e6,
        ours.per_core() / base.per_core(),
        target / 1e6,
    );
}

/// Whether `ENGINE_BENCH_ONLY` (a substring of workload names) selects `name`.
fn selected(name: &str) -> bool {
    std::env::var("ENGINE_BENCH_ONLY").map_or(true, |f| name.contains(&f))
}

fn main() {
    let n: usize = std::env::var("ENGINE_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let keys = 10_000;
    println!(
        "engine benchmark: {n} records, {keys} keys, 8-byte keys and values, one partition, one core, \
         batches of {CHUNK} records, a commit every {COMMIT_EVERY}"
    );
    println!("| workload | ours | ours per core | plain loop per core | ratio | target |");
    println!("|---|---|---|---|---|---|");

    // Stateless: decode, map_values(v * 3), filter(even), encode for the output topic.
    if selected("map_values + filter") {
        let base = {
            let buf = input(n, keys);
            let mut out = Vec::with_capacity(16);
            let mut kept = 0usize;
            let m = baseline(n, || {
                for (_, r) in records(&buf, 0, n) {
                    let (k, v) = (
                        decode(r.key.unwrap_or_default()),
                        decode(r.value.unwrap_or_default()).wrapping_mul(3),
                    );
                    if v % 2 == 0 {
                        out.clear();
                        out.extend_from_slice(&k.to_be_bytes());
                        out.extend_from_slice(&v.to_be_bytes());
                        kept += black_box(out.len()) / 16;
                    }
                }
            });
            black_box(kept);
            m
        };
        let ours = run_driver(stateless_topology(), &input(n, keys), 0);
        report("map_values + filter", &ours, &base, 10e6);
    }
    windowed_and_join(n, keys);
    stream_stream_join(n / 4);
    json_values_routed_by_key(n / 2);
    operator_hops(n, keys);
    hot_key_count(n);
    let counts = [
        "count, in-memory store",
        "count, RocksDB store (1 MiB cache)",
        "count, RocksDB store, no cache",
    ];
    if !counts.iter().any(|c| selected(c)) {
        return;
    }

    // Count per key: decode the key, read-increment-write its count.
    let base = {
        let buf = input(n, keys);
        let mut counts: HashMap<i64, i64> = HashMap::new();
        let m = baseline(n, || {
            for (_, r) in records(&buf, 0, n) {
                *counts.entry(decode(r.key.unwrap_or_default())).or_insert(0) += 1;
            }
        });
        assert_eq!(counts.values().sum::<i64>() as usize, m.records);
        m
    };
    if selected("count, in-memory store") {
        let ours = run_driver(
            count_topology(StoreKind::InMemory),
            &input(n, keys),
            1 << 20,
        );
        report("count, in-memory store", &ours, &base, 3e6);
    }
    if selected("count, RocksDB store (1 MiB cache)") {
        let ours = run_driver(count_topology(StoreKind::RocksDb), &input(n, keys), 1 << 20);
        report("count, RocksDB store (1 MiB cache)", &ours, &base, 1e6);
    }
    if selected("count, RocksDB store, no cache") {
        let ours = run_driver(count_topology(StoreKind::RocksDb), &input(n / 4, keys), 0);
        report("count, RocksDB store, no cache", &ours, &base, 1e6);
    }
}

/// A count on the in-memory store whose updates go downstream (counted as they arrive).
fn forwarding_count_topology(forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Topology {
    let b = StreamsBuilder::new();
    b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()))
        .group_by_key(Grouped::new())
        .count(Materialized::as_store("counts").with_store_kind(StoreKind::InMemory))
        .to_stream()
        .foreach(move |_, _| {
            forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    b.build().expect("topology")
}

/// Hot keys: a count over 1,000 keys whose updates go downstream, without a record cache and with Kafka
/// Streams' default 10 MiB; prints, beside the rate, how many updates reached downstream.
fn hot_key_count(n: usize) {
    let hot_keys = 1_000;
    let name = |cache: &str| format!("hot-key count, {hot_keys} keys, in-memory store, {cache}");
    let runs = [("no cache", 0), ("10 MiB cache", 10 << 20)];
    if !runs.iter().any(|(c, _)| selected(&name(c))) {
        return;
    }
    let base = {
        let buf = input(n, hot_keys);
        let mut counts: HashMap<i64, i64> = HashMap::new();
        let mut forwarded = 0u64;
        let m = baseline(n, || {
            for (_, r) in records(&buf, 0, n) {
                *counts.entry(decode(r.key.unwrap_or_default())).or_insert(0) += 1;
                forwarded += 1;
            }
        });
        black_box(forwarded);
        m
    };
    for (cache, bytes) in runs {
        if !selected(&name(cache)) {
            continue;
        }
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ours = run_driver(
            forwarding_count_topology(forwarded.clone()),
            &input(n, hot_keys),
            bytes,
        );
        report(&name(cache), &ours, &base, 3e6);
        println!(
            "|   downstream records: {} of {n} updates ({} commits) | | | | | |",
            forwarded.load(std::sync::atomic::Ordering::Relaxed),
            n.div_ceil(COMMIT_EVERY)
        );
    }
}

fn windowed_count_topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()))
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(
            std::time::Duration::from_secs(60),
        ))
        .count(Materialized::as_store("counts").with_store_kind(kind));
    b.build().expect("topology")
}

fn stream_table_join_topology(kind: StoreKind) -> Topology {
    let b = StreamsBuilder::new();
    let table = b.table(
        "table",
        Consumed::with(Serdes::i64(), Serdes::i64()),
        Materialized::as_store("table").with_store_kind(kind),
    );
    b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()))
        .join(&table, |v, t| v.wrapping_add(*t), Joined::new())
        .to("output", Produced::new());
    b.build().expect("topology")
}

/// A stream joined with a copy of itself (values xor 1) within an hour, on RocksDB window stores: every record
/// is written to one side's store and looks its key up in the other's.
fn stream_stream_join_topology() -> Topology {
    let b = StreamsBuilder::new();
    let this = b.stream("input", Consumed::with(Serdes::i64(), Serdes::i64()));
    let other = this.map_values(|v| v ^ 1);
    this.join_stream(
        &other,
        |a, b| a.wrapping_add(*b),
        JoinWindows::of_time_difference_with_no_grace(std::time::Duration::from_secs(3_600)),
        StreamJoined::new().with_store_kind(StoreKind::RocksDb),
    )
    .to("output", Produced::new());
    b.build().expect("topology")
}

/// Stream-stream join over 100,000 keys, records 40 ms apart (about 5.5 hours of event time, so a one-hour
/// window holds about one other record of a key, and the stores span several segments): most lookups find no
/// record of their key, which the window stores' bloom filters on record keys answer without reading a file.
fn stream_stream_join(n: usize) {
    const NAME: &str = "stream-stream join, 1 h windows, RocksDB stores, 100k keys";
    const HOUR: i64 = 3_600_000;
    const SPACING: i64 = 40;
    if !selected(NAME) {
        return;
    }
    let keys = 100_000;
    let buf = input(n, keys);
    let spaced = |start, end| {
        records(&buf, start, end).map(|(p, mut r)| {
            r.timestamp *= SPACING;
            (p, r)
        })
    };
    let base = {
        let mut out = Vec::with_capacity(16);
        let mut joined = 0usize;
        let m = baseline(n, || {
            let mut sides: [HashMap<i64, Vec<(i64, i64)>>; 2] = [HashMap::new(), HashMap::new()];
            for (_, r) in spaced(0, n) {
                let k = decode(r.key.unwrap_or_default());
                let v = decode(r.value.unwrap_or_default());
                for (side, value) in [(0, v), (1, v ^ 1)] {
                    sides[side].entry(k).or_default().push((r.timestamp, value));
                    for (t, o) in sides[1 - side].get(&k).into_iter().flatten() {
                        if (t - r.timestamp).abs() <= HOUR {
                            out.clear();
                            out.extend_from_slice(&k.to_be_bytes());
                            out.extend_from_slice(&value.wrapping_add(*o).to_be_bytes());
                            joined += black_box(out.len()) / 16;
                        }
                    }
                }
            }
        });
        black_box(joined);
        m
    };
    // The driver's default cache (1 MiB); the join's window stores are not cached.
    let ours = run_driver_spaced(stream_stream_join_topology(), &buf, 1 << 20, SPACING);
    report(NAME, &ours, &base, 0.2e6);
}

/// Windowed count (1-minute tumbling windows; the input's timestamps advance 1 ms per record, so about 33
/// windows of 10,000 keys) and a stream-table join against a table of every key.
fn windowed_and_join(n: usize, keys: u64) {
    const MINUTE: i64 = 60_000;
    let windowed = [
        "windowed count, in-memory store",
        "windowed count, RocksDB store (1 MiB cache)",
    ];
    if windowed.iter().any(|w| selected(w)) {
        let base = {
            let buf = input(n, keys);
            let mut counts: HashMap<(i64, i64), i64> = HashMap::new();
            let m = baseline(n, || {
                for (_, r) in records(&buf, 0, n) {
                    let start = r.timestamp - r.timestamp % MINUTE;
                    *counts
                        .entry((decode(r.key.unwrap_or_default()), start))
                        .or_insert(0) += 1;
                }
            });
            assert_eq!(counts.values().sum::<i64>() as usize, m.records);
            m
        };
        if selected(windowed[0]) {
            let ours = run_driver(
                windowed_count_topology(StoreKind::InMemory),
                &input(n, keys),
                1 << 20,
            );
            report(windowed[0], &ours, &base, 1e6);
        }
        if selected(windowed[1]) {
            let ours = run_driver(
                windowed_count_topology(StoreKind::RocksDb),
                &input(n, keys),
                1 << 20,
            );
            report(windowed[1], &ours, &base, 1e6);
        }
    }
    let joins = [
        "stream-table join, in-memory table",
        "stream-table join, RocksDB table (1 MiB cache)",
    ];
    if joins.iter().any(|w| selected(w)) {
        let base = {
            let buf = input(n, keys);
            let table: HashMap<i64, i64> = (0..keys as i64).map(|k| (k, k * 7)).collect();
            let mut out = Vec::with_capacity(16);
            let mut joined = 0usize;
            let m = baseline(n, || {
                for (_, r) in records(&buf, 0, n) {
                    let k = decode(r.key.unwrap_or_default());
                    if let Some(t) = table.get(&k) {
                        let v = decode(r.value.unwrap_or_default()).wrapping_add(*t);
                        out.clear();
                        out.extend_from_slice(&k.to_be_bytes());
                        out.extend_from_slice(&v.to_be_bytes());
                        joined += black_box(out.len()) / 16;
                    }
                }
            });
            assert_eq!(black_box(joined), m.records);
            m
        };
        for (name, kind) in joins.iter().zip([StoreKind::InMemory, StoreKind::RocksDb]) {
            if !selected(name) {
                continue;
            }
            let driver = TopologyTestDriver::builder(stream_table_join_topology(kind))
                .retain_records(false)
                .cache_max_bytes(1 << 20)
                .commit_after_each_pipe(false)
                .build()
                .expect("driver");
            let rows: Vec<[u8; 16]> = (0..keys as i64)
                .map(|k| {
                    let mut r = [0u8; 16];
                    r[..8].copy_from_slice(&k.to_be_bytes());
                    r[8..].copy_from_slice(&(k * 7).to_be_bytes());
                    r
                })
                .collect();
            driver
                .pipe_raw_refs(
                    "table",
                    rows.iter().map(|r| {
                        (
                            None,
                            RawRecordRef {
                                key: Some(&r[..8]),
                                value: Some(&r[8..]),
                                timestamp: 0,
                                headers: Headers::new(),
                                offset: -1,
                            },
                        )
                    }),
                )
                .expect("table");
            driver.commit().expect("commit");
            let buf = input(n, keys);
            let before = driver.metrics().processed as usize;
            let ours = measure(n, || {
                for start in (0..n).step_by(CHUNK) {
                    driver
                        .pipe_raw_refs("input", records(&buf, start, (start + CHUNK).min(n)))
                        .expect("pipe");
                    if (start / CHUNK + 1).is_multiple_of(COMMIT_EVERY / CHUNK) {
                        driver.commit().expect("commit");
                    }
                }
                driver.commit().expect("commit");
            });
            assert_eq!(driver.metrics().processed as usize - before, n);
            report(name, &ours, &base, 1e6);
        }
    }
}

/// An order as another service writes it (about 100 bytes of JSON).
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Order {
    id: u64,
    customer: String,
    region: String,
    total: i64,
    items: u32,
}

/// JSON values routed by key (filter on the key -> to): with the eager JSON serde every value is decoded and
/// encoded again; with [`LazySerde`] it passes on as the bytes read. Each beside a plain loop doing the same
/// (decode + encode, or a copy).
fn json_values_routed_by_key(n: usize) {
    if !selected("JSON values") {
        return;
    }
    let input: Vec<(Vec<u8>, Vec<u8>)> = (0..n as u64)
        .map(|i| {
            let order = Order {
                id: i,
                customer: format!("customer-{}", i % 5_000),
                region: ["eu", "us", "apac"][(i % 3) as usize].to_string(),
                total: (i % 10_000) as i64,
                items: (i % 7) as u32,
            };
            (
                ((i % 10_000) as i64).to_be_bytes().to_vec(),
                serde_json::to_vec(&order).expect("json"),
            )
        })
        .collect();
    let chunk = |start: usize, end: usize| {
        input[start..end]
            .iter()
            .enumerate()
            .map(move |(i, (k, v))| {
                (
                    None,
                    RawRecordRef {
                        key: Some(k),
                        value: Some(v),
                        timestamp: (start + i) as i64,
                        headers: Headers::new(),
                        offset: -1,
                    },
                )
            })
    };
    fn routed<V: Data>(value_serde: impl Serde<V>) -> Topology {
        let b = StreamsBuilder::new();
        b.stream::<i64, V>("input", Consumed::with(Serdes::i64(), value_serde))
            .filter(|k, _| k % 2 == 0)
            .to("output", Produced::new());
        b.build().expect("topology")
    }
    let plain = |decode_values: bool| {
        let mut out = Vec::with_capacity(256);
        let mut kept = 0usize;
        let m = baseline(n, || {
            for (k, v) in &input {
                if decode(k) % 2 != 0 {
                    continue;
                }
                out.clear();
                if decode_values {
                    let order: Order = serde_json::from_slice(v).expect("json");
                    serde_json::to_writer(&mut out, &order).expect("json");
                } else {
                    out.extend_from_slice(v);
                }
                kept += black_box(out.len()).min(1);
            }
        });
        black_box(kept);
        m
    };
    let eager_base = plain(true);
    let eager = run_driver_over(routed(Serdes::json::<Order>()), n, 0, chunk);
    report(
        "JSON values, filter on the key (eager serde)",
        &eager,
        &eager_base,
        1e6,
    );
    let lazy_base = plain(false);
    let lazy = run_driver_over(routed(LazySerde::new(Serdes::json::<Order>())), n, 0, chunk);
    report(
        "JSON values, filter on the key (Lazy values)",
        &lazy,
        &lazy_base,
        1e6,
    );
    println!(
        "| Lazy / eager, per core | {:.2}x | | | | |",
        lazy.per_core() / eager.per_core()
    );
}

/// What one stateless operator adds per record: source -> sink, then the same with 2 and 6 `map_values` between,
/// in nanoseconds of CPU per record.
fn operator_hops(n: usize, keys: u64) {
    if !selected("hops") {
        return;
    }
    let buf = input(n, keys);
    let chain = |ops: usize| {
        let b = StreamsBuilder::new();
        let mut s = b.stream::<i64, i64>("input", Consumed::with(Serdes::i64(), Serdes::i64()));
        for i in 0..ops {
            s = s.map_values(move |v| v.wrapping_add(i as i64));
        }
        s.to("output", Produced::new());
        b.build().expect("topology")
    };
    let ns = |m: &Measure| 1e9 / m.per_core();
    let none = run_driver(chain(0), &buf, 0);
    let two = run_driver(chain(2), &buf, 0);
    let six = run_driver(chain(6), &buf, 0);
    println!(
        "| hops: ns of CPU per record, source -> sink / +2 / +6 map_values | {:.1} / {:.1} / {:.1} | per hop {:.1} ns | | | |",
        ns(&none),
        ns(&two),
        ns(&six),
        (ns(&six) - ns(&none)) / 6.0
    );
}
