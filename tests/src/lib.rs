//! Helpers for the cross-crate integration tests: brokers (the embedded one and tansu), and plain rdkafka
//! producers and consumers that check results independently of the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_dsl::streams_core::runtime::{EmbeddedAdmin, EmbeddedKafka, StreamsConfig};

pub mod bench_compare;
pub mod counters;
pub mod tls;

/// A broker for a test: the embedded mock cluster, or a tansu process.
pub enum Broker {
    /// librdkafka's mock cluster.
    Embedded(EmbeddedKafka),
    /// A tansu broker process, killed on drop.
    Tansu {
        /// The process.
        child: Child,
        /// Its bootstrap address.
        bootstrap: String,
    },
}

/// Where the tansu binary is: `$TANSU_BIN`, else `tansu` on the PATH, else the one `scripts/tansu.sh` installs.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let dir = PathBuf::from(home).join(".calfkit/bin");
    let found = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tansu"))
        });
    found.or_else(|| {
        std::env::var("PATH")
            .ok()?
            .split(':')
            .map(|d| PathBuf::from(d).join("tansu"))
            .find(|p| p.exists())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Broker {
    /// Starts the embedded broker.
    pub fn embedded() -> Broker {
        log_from_env();
        Broker::Embedded(EmbeddedKafka::start().expect("embedded broker"))
    }

    /// Starts tansu on a free loopback port, or panics saying how to install it.
    pub fn tansu() -> Broker {
        log_from_env();
        let bin = tansu_binary().expect(
            "tansu is not installed: run `bash scripts/test.sh` (it installs it), or set TANSU_BIN to a tansu binary",
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let bootstrap = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tansu did not listen on {bootstrap}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker::Tansu { child, bootstrap }
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(k) => k.bootstrap_servers().to_string(),
            Broker::Tansu { bootstrap, .. } => bootstrap.clone(),
        }
    }

    /// Creates a topic.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Broker::Embedded(k) => k.create_topic(topic, partitions).expect("create topic"),
            Broker::Tansu { bootstrap, .. } => {
                use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
                let admin: AdminClient<_> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .expect("admin");
                let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                let r = futures_block_on(admin.create_topics([&t], &AdminOptions::new()));
                r.expect("create topics").into_iter().for_each(|r| {
                    r.expect("topic created");
                });
            }
        }
    }

    /// A streams configuration for `app` on this broker, with a short commit interval and the given state dir.
    pub fn config(
        &self,
        app: &str,
        state_dir: &std::path::Path,
    ) -> (StreamsConfig, Option<EmbeddedAdmin>) {
        let mut c = StreamsConfig::new(app, self.bootstrap());
        c.set("commit.interval.ms", "200").unwrap();
        c.set("state.dir", state_dir.to_str().unwrap()).unwrap();
        c.set("main.consumer.session.timeout.ms", "6000").unwrap();
        c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
        // librdkafka's debug contexts for the main consumers (`cgrp`, `consumer`, ...), logged through tracing.
        if let Ok(contexts) = std::env::var("STREAMS_TEST_RDKAFKA_DEBUG") {
            c.set("main.consumer.debug", &contexts).unwrap();
        }
        let admin = match self {
            Broker::Embedded(k) => Some(k.admin()),
            Broker::Tansu { .. } => None,
        };
        (c, admin)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Drives a future to completion on this thread.
pub fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct NoopWake;
    impl Wake for NoopWake {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = Waker::from(std::sync::Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Produces records (key, value; `None` value = tombstone) and waits for every delivery.
pub fn produce(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let stamped: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), None))
        .collect();
    produce_at(bootstrap, topic, &stamped);
}

/// A record to produce: key, value (`None`: tombstone), timestamp (`None`: the producer's clock).
pub type TimedRecord = (Vec<u8>, Option<Vec<u8>>, Option<i64>);

/// Like [`produce`], with record timestamps.
pub fn produce_at(bootstrap: &str, topic: &str, records: &[TimedRecord]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (k, v, ts) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).key(k.as_slice());
        if let Some(ts) = ts {
            r = r.timestamp(*ts);
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        let mut r = r;
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back for checking: key, value, headers.
pub type Checked = (Vec<u8>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

/// Like [`consume_until`], with headers.
pub fn consume_with_headers(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    want: usize,
) -> Vec<Checked> {
    use rdkafka::message::Headers as _;
    let consumer = checker(bootstrap, topic);
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < timeout && out.len() < want {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    out
}

fn checker(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("checker-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Reads `topic` from the beginning until `done(records so far)` or `timeout`; returns (key, value) pairs.
pub fn consume_until(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[(Vec<u8>, Option<Vec<u8>>)]) -> bool,
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let consumer = checker(bootstrap, topic);
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < timeout && !done(&out) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// A plain HTTP/1.1 GET on loopback, following redirects (up to three); returns the status and the body.
pub fn http_get(url: &str) -> (u16, String) {
    http_request("GET", url)
}

/// A plain HTTP/1.1 request without a body on loopback, following redirects; returns the status and the body
/// (status 0 when the connection is refused).
pub fn http_request(method: &str, url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut url = url.to_string();
    for _ in 0..4 {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        // A refused connection (an instance that has just left) is status 0, for callers that retry.
        let mut stream = match std::net::TcpStream::connect(host) {
            Ok(s) => s,
            Err(e) => return (0, format!("cannot connect to {host}: {e}")),
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("response");
        let text = String::from_utf8_lossy(&response).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        if (300..400).contains(&status) {
            let location = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("location: ")
                        .or_else(|| l.strip_prefix("Location: "))
                })
                .expect("a Location header")
                .trim()
                .to_string();
            url = location;
            continue;
        }
        return (status, body.to_string());
    }
    panic!("too many redirects for {url}");
}

/// A free loopback port (bound then released).
pub fn free_loopback_port() -> u16 {
    free_port()
}

/// Installs a log subscriber filtered by `STREAMS_TEST_LOG` (an `EnvFilter` directive such as
/// `streams_core=debug`) when that variable is set; the test harness shows the output of failed tests.
pub fn log_from_env() {
    if let Ok(filter) = std::env::var("STREAMS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Where an instance stands, for a test's failure message: its state, errors, and each task's state,
/// records processed and input offsets (committed, position, end).
pub fn describe_instance(s: &streams_dsl::streams_core::runtime::KafkaStreams) -> String {
    let tasks: Vec<String> = s
        .metadata_for_local_threads()
        .iter()
        .flat_map(|t| t.active_tasks.iter())
        .map(|t| {
            let offsets: Vec<String> = t
                .topic_partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}-{} committed {:?} at {:?} end {:?}",
                        p.topic, p.partition, p.committed_offset, p.position, p.end_offset
                    )
                })
                .collect();
            format!(
                "{} {} processed {} [{}]",
                t.task_id,
                t.state.as_str(),
                t.records_processed,
                offsets.join(", ")
            )
        })
        .collect();
    let threads: Vec<String> = s
        .metadata_for_local_threads()
        .iter()
        .map(|t| format!("{} {}", t.thread_name, t.thread_state))
        .collect();
    format!(
        "{:?}, threads {threads:?}, errors {:?}, tasks {tasks:?}",
        s.state(),
        s.errors()
    )
}

/// Closes `instances` together, as a deployment stops them, each within `timeout`; panics naming those that
/// did not close, with where they stood.
pub fn close_all(
    instances: &[&streams_dsl::streams_core::runtime::KafkaStreams],
    timeout: Duration,
) {
    let closed: Vec<bool> = std::thread::scope(|scope| {
        let closing: Vec<_> = instances
            .iter()
            .map(|s| scope.spawn(move || s.close(timeout)))
            .collect();
        closing
            .into_iter()
            .map(|c| c.join().unwrap_or(false))
            .collect()
    });
    let stuck: Vec<String> = instances
        .iter()
        .zip(&closed)
        .filter(|(_, closed)| !**closed)
        .map(|(s, _)| describe_instance(s))
        .collect();
    assert!(
        stuck.is_empty(),
        "instances did not close within {timeout:?}: {}",
        stuck.join("; ")
    );
}

/// Like [`wait_until`], with `report` describing what was seen in the timeout's panic message.
pub fn wait_until_reporting(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
    report: impl Fn() -> String,
) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() >= timeout {
            panic!("timed out waiting for {what}: {}", report());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `f` holds, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A restore listener adding up the records restored.
#[derive(Default, Clone)]
pub struct CountingRestores(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CountingRestores {
    /// Records restored so far.
    pub fn restored(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl streams_dsl::streams_core::runtime::StateRestoreListener for CountingRestores {
    fn on_restore_end(&self, _store: &str, _partition: i32, restored: u64) {
        self.0
            .fetch_add(restored, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Produces `n` page visits to `visits`, numbered from `from` (visit `i`: user `u{i % 97}` on page
/// `/p{(i * 7) % pages}`), and adds each page's visits to `expected`.
pub fn produce_visits(
    bootstrap: &str,
    from: usize,
    n: usize,
    pages: usize,
    expected: &mut std::collections::BTreeMap<String, i64>,
) {
    let visits: Vec<(String, String)> = (from..from + n)
        .map(|i| (format!("u{}", i % 97), format!("/p{}", (i * 7) % pages)))
        .collect();
    let raw: Vec<_> = visits
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone().into_bytes())))
        .collect();
    produce(bootstrap, "visits", &raw);
    for (_, page) in visits {
        *expected.entry(page).or_default() += 1;
    }
}

/// Page views (`visits`: user -> page) counted per page into the store `page-counts`, through a repartition
/// topic: the topology of the query tests.
pub fn page_counts_topology() -> streams_dsl::Topology {
    use streams_dsl::*;
    let b = StreamsBuilder::new();
    b.stream("visits", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by(|_user, page| page.clone(), Grouped::as_name("by-page"))
        .count(Materialized::as_store("page-counts"));
    b.build().expect("a valid topology")
}

/// The counts in `page-counts` (of [`page_counts_topology`]) that `s`'s active tasks hold; empty while the
/// store is not queryable (not running yet, or a store closing as its task moves).
pub fn local_page_counts(
    s: &streams_dsl::streams_core::runtime::KafkaStreams,
) -> std::collections::BTreeMap<String, i64> {
    s.store::<String, i64>("page-counts")
        .and_then(|st| st.all())
        .map(|all| all.into_iter().collect())
        .unwrap_or_default()
}

/// The partitions of the counting tasks (sub-topology 1 of [`page_counts_topology`], reading the repartition
/// topic) that `s` runs.
pub fn counting_partitions(
    s: &streams_dsl::streams_core::runtime::KafkaStreams,
) -> std::collections::BTreeSet<i32> {
    s.metadata_for_local_threads()
        .iter()
        .flat_map(|t| t.active_tasks.iter())
        .filter(|t| t.task_id.subtopology == 1)
        .map(|t| t.task_id.partition)
        .collect()
}
