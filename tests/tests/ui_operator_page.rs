//! The operator page of the HTTP query server (`/ui`) and the JSON routes it reads, on the US-shareholders
//! application running on the embedded broker: the topology JSON names exactly the topology's nodes, the task
//! list matches the instance's threads, lag and throughput figures add up to what was produced, prefix scans
//! return exactly the keys with the prefix; and the page itself, rendered by headless Chromium, draws every node,
//! lists every task and shows the store lookup asked for in its URL.
//!
//! The browser test needs Chromium (`apt-get install chromium`; `scripts/test.sh` installs it). Without it the
//! test says why it skips and passes, unless `STREAMS_REQUIRE_CHROMIUM` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use serde_json::Value;
use streams_dsl::streams_core::runtime::{KafkaStreams, QueryServer, RunningQueryServer, State};
use streams_dsl::streams_core::NodeDescriptionKind;
use streams_dsl::StoreKind;
use tests::{free_loopback_port, http_get, produce, wait_until, Broker, CountingRestores};

const OPEN_POSITIONS: &str = "open-positions";

/// `select distinct(client) ... where exchange = 'NASDAQ'` evaluated directly on the positions written.
fn reference(positions: &[Position]) -> BTreeMap<String, BTreeSet<String>> {
    let mut open: BTreeMap<String, &Position> = BTreeMap::new();
    for p in positions {
        open.insert(p.id.clone(), p);
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in open.values().filter(|p| p.exchange == "NASDAQ") {
        out.entry(p.client.clone())
            .or_default()
            .insert(p.id.clone());
    }
    out
}

/// A running US-shareholders instance with its query server.
struct App {
    broker: Broker,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    streams: Arc<KafkaStreams>,
    server: Option<RunningQueryServer>,
    port: u16,
    written: Vec<Position>,
}

impl App {
    fn start(partitions: i32) -> App {
        let broker = Broker::embedded();
        broker.create_topic(POSITIONS_TOPIC, partitions);
        App::launch(broker, Vec::new(), None)
    }

    /// Closes this instance and starts another one of the application on an empty state directory: it restores
    /// its stores from their changelogs.
    fn restart_with_empty_state(mut self, listener: CountingRestores) -> App {
        assert!(self.streams.close(Duration::from_secs(30)));
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
        let App {
            broker, written, ..
        } = self;
        App::launch(broker, written, Some(listener))
    }

    fn launch(broker: Broker, written: Vec<Position>, listener: Option<CountingRestores>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let port = free_loopback_port();
        let (mut config, admin) = broker.config("ui-us-shareholders", dir.path());
        config
            .set("application.server", &format!("127.0.0.1:{port}"))
            .unwrap();
        let streams = Arc::new(
            KafkaStreams::new(topology(StoreKind::RocksDb).unwrap(), (config, admin)).unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(
                QueryServer::builder(streams.clone())
                    .store::<String, BTreeSet<String>>(STORE)
                    .store::<String, Position>(OPEN_POSITIONS)
                    .bind(([127, 0, 0, 1], port).into())
                    .serve(),
            )
            .unwrap();
        if let Some(l) = listener {
            streams.set_restore_listener(l);
        }
        streams.start().unwrap();
        assert!(
            streams.wait_for_state(State::Running, Duration::from_secs(60)),
            "not running: {:?} {:?}",
            streams.state(),
            streams.errors()
        );
        App {
            broker,
            _dir: dir,
            rt,
            streams,
            server: Some(server),
            port,
            written,
        }
    }

    /// Writes positions and waits until the store holds the reference of everything written.
    fn write(&mut self, positions: &[Position]) {
        let raw: Vec<_> = positions
            .iter()
            .map(|p| {
                (
                    p.id.clone().into_bytes(),
                    Some(serde_json::to_vec(p).unwrap()),
                )
            })
            .collect();
        produce(&self.broker.bootstrap(), POSITIONS_TOPIC, &raw);
        self.written.extend(positions.iter().cloned());
        let expected = reference(&self.written);
        wait_until(
            "the store to hold the positions",
            Duration::from_secs(60),
            || {
                self.streams
                    .store::<String, BTreeSet<String>>(STORE)
                    .and_then(|s| s.all())
                    .is_ok_and(|all| all.into_iter().collect::<BTreeMap<_, _>>() == expected)
            },
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, body) = http_get(&self.url(path));
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path} answered {status} with no JSON ({e}): {body}"));
        (status, v)
    }

    /// The task ids the instance reports, sorted.
    fn task_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .streams
            .metadata_for_local_threads()
            .iter()
            .flat_map(|t| t.active_tasks.iter().map(|x| x.task_id.to_string()))
            .collect();
        ids.sort();
        ids
    }

    fn stop(mut self) {
        assert!(self.streams.close(Duration::from_secs(30)));
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// Node names of the topology, per sub-topology, as `Topology::describe` gives them (global sources last).
fn described_nodes(streams: &KafkaStreams) -> Vec<(String, Vec<String>, Vec<String>)> {
    let d = streams.topology().describe();
    let mut out = Vec::new();
    for s in &d.sub_topologies {
        for n in &s.nodes {
            out.push((n.name.clone(), n.predecessors.clone(), n.successors.clone()));
        }
    }
    for g in &d.global_stores {
        out.push((g.source.clone(), Vec::new(), Vec::new()));
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Positions whose clients share prefixes in several ways (`client1`, `client10`, `client1é`, `cli`, ...), on
/// both exchanges, with ids from 6 on.
fn prefix_positions() -> Vec<Position> {
    let clients = [
        "client10",
        "client11",
        "client2x",
        "client1é",
        "cli",
        "clientele",
        "Client1",
        "other",
        "client/1 a",
    ];
    clients
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let id = 6 + 2 * i;
            [
                Position::new(&id.to_string(), c, "MSFT", 10, "NASDAQ"),
                Position::new(&(id + 1).to_string(), c, "BP", 3, "LON"),
            ]
        })
        .collect()
}

fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[test]
fn ui_json_routes_match_the_topology_the_tasks_and_the_stores() {
    let mut app = App::start(3);
    app.write(&sample_positions());
    app.write(&prefix_positions());
    let expected = reference(&app.written);

    // The topology JSON holds exactly the nodes of the topology, with their edges.
    let (status, topo) = app.get_json("/api/topology");
    assert_eq!(status, 200);
    let mut from_json = Vec::new();
    for sub in topo["sub_topologies"].as_array().unwrap() {
        for n in sub["nodes"].as_array().unwrap() {
            from_json.push((
                n["name"].as_str().unwrap().to_string(),
                strings(&n["predecessors"]),
                strings(&n["successors"]),
            ));
        }
    }
    for g in topo["global_stores"].as_array().unwrap() {
        from_json.push((g["source"].as_str().unwrap().to_string(), vec![], vec![]));
    }
    assert_eq!(from_json, described_nodes(&app.streams));
    // Kinds, topics and stores as the description says.
    let d = app.streams.topology().describe();
    for (sub, json_sub) in d
        .sub_topologies
        .iter()
        .zip(topo["sub_topologies"].as_array().unwrap())
    {
        assert_eq!(json_sub["id"].as_u64(), Some(sub.id as u64));
        for (n, j) in sub.nodes.iter().zip(json_sub["nodes"].as_array().unwrap()) {
            let (kind, topics, stores) = match &n.kind {
                NodeDescriptionKind::Source(t) => ("source", t.clone(), vec![]),
                NodeDescriptionKind::Processor(s) => ("processor", vec![], s.clone()),
                NodeDescriptionKind::Sink(t) => ("sink", vec![t.clone()], vec![]),
            };
            assert_eq!(j["kind"], kind, "{}", n.name);
            assert_eq!(strings(&j["topics"]), topics, "{}", n.name);
            assert_eq!(strings(&j["stores"]), stores, "{}", n.name);
        }
    }
    let store_names: BTreeSet<String> = topo["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        store_names,
        app.streams
            .topology()
            .stores()
            .map(|(n, _)| n.to_string())
            .collect()
    );

    // Tasks: those of the instance, all running, each reading its partition; no standby.
    let (status, tasks) = app.get_json("/api/tasks");
    assert_eq!(status, 200);
    let mut ids: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, app.task_ids());
    assert_eq!(ids.len(), 2 * 3, "two sub-topologies on three partitions");
    for t in tasks["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "running");
        assert!(t["standby"].is_null());
        for p in t["partitions"].as_array().unwrap() {
            assert_eq!(p["partition"], t["partition"]);
        }
    }
    assert!(tasks["threads"]
        .as_array()
        .unwrap()
        .iter()
        .all(|th| th["standby_tasks"] == serde_json::json!([])));

    // Lag: once everything is processed and committed, the ends of the input partitions add up to the records
    // written, positions and committed offsets have reached them, and the lag is zero.
    wait_until(
        "input partitions committed to their end",
        Duration::from_secs(30),
        || {
            let (_, tasks) = app.get_json("/api/tasks");
            let parts: Vec<Value> = tasks["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["topic"] == POSITIONS_TOPIC)
                .collect();
            let ends: i64 = parts.iter().filter_map(|p| p["end"].as_i64()).sum();
            parts.len() == 3
                && ends == app.written.len() as i64
                && parts.iter().all(|p| {
                    p["lag"] == 0 && p["committed"] == p["end"] && p["position"] == p["end"]
                })
        },
    );

    // Metrics: the samples add up to the records processed, and commits were timed.
    wait_until(
        "samples adding up to the totals",
        Duration::from_secs(10),
        || {
            let (_, m) = app.get_json("/api/metrics");
            let samples = m["samples"].as_array().unwrap();
            let sum: u64 = samples
                .iter()
                .map(|s| s["records_processed"].as_u64().unwrap())
                .sum();
            let commits: u64 = samples.iter().map(|s| s["commits"].as_u64().unwrap()).sum();
            m["state"] == "Running"
                && m["application_id"] == "ui-us-shareholders"
                && sum == m["totals"]["processed"].as_u64().unwrap()
                && sum >= app.written.len() as u64
                && commits > 0
                && samples.iter().all(|s| {
                    s["commits"] == 0 || s["commit_latency_avg_ms"].as_f64().unwrap() > 0.0
                })
        },
    );

    // Prefix scans return exactly the keys with the prefix, with their values.
    let prefixes = [
        "client1",
        "client",
        "cli",
        "client1é",
        "Client",
        "c",
        "",
        "client/",
        "zzz",
        "client11",
    ];
    for prefix in prefixes {
        let (status, page) =
            app.get_json(&format!("/stores/{STORE}?prefix={}", encode_query(prefix)));
        assert_eq!(status, 200, "prefix {prefix:?}: {page}");
        let got: BTreeMap<String, BTreeSet<String>> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_string(),
                    serde_json::from_value(e["value"].clone()).unwrap(),
                )
            })
            .collect();
        let want: BTreeMap<String, BTreeSet<String>> = expected
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "prefix {prefix:?}");
        // In key-byte order.
        let keys: Vec<&str> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
    }
    // The other store (position id -> position), by id prefix.
    for prefix in ["1", "2", "7", "10"] {
        let (status, page) = app.get_json(&format!("/stores/{OPEN_POSITIONS}?prefix={prefix}"));
        assert_eq!(status, 200);
        let got: BTreeSet<String> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = app
            .written
            .iter()
            .map(|p| p.id.clone())
            .filter(|id| id.starts_with(prefix))
            .collect();
        assert_eq!(got, want, "id prefix {prefix:?}");
    }

    // Bad requests answer JSON errors.
    let (status, body) = app.get_json("/stores/no-such-store?prefix=a");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no-such-store"));
    let (status, body) = app.get_json(&format!("/stores/{STORE}?prefix=a&to=b"));
    assert_eq!(status, 400);
    assert!(body["error"].is_string());

    // The page: HTML with its script and style inline, nothing loaded from elsewhere.
    let (status, html) = http_get(&app.url("/ui"));
    assert_eq!(status, 200);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for external in [
        "<script src",
        "<link",
        "@import",
        "url(http",
        "src=\"http",
        "href=\"http",
    ] {
        assert!(!html.contains(external), "the page loads {external}");
    }
    app.stop();
}

/// The Chromium binary: `$CHROMIUM` when set (none if it is not a file), else `chromium`, `chromium-browser` or
/// `google-chrome` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").ok()?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| path.split(':').map(move |d| Path::new(d).join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its standard output.
fn run_chromium(bin: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            "--virtual-time-budget=5000",
        ])
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).ok();
        out
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The part of `html` from the element with `id` to the first `close` tag after it.
fn element<'a>(html: &'a str, id: &str, close: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the page"));
    let end = html[start..]
        .find(close)
        .map_or(html.len(), |e| start + e + close.len());
    &html[start..end]
}

fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR/artifacts/ui.png`, or the temporary directory.
fn artifact_path() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("streams-rs"))
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ui.png")
}

#[test]
fn ui_page_in_headless_chromium_draws_the_topology_lists_tasks_and_looks_up_a_key() {
    let Some(bin) = chromium() else {
        let reason = "no Chromium found ($CHROMIUM, or chromium on the PATH); install it with \
                      `apt-get update && apt-get install -y chromium` (scripts/test.sh does)";
        assert!(
            std::env::var_os("STREAMS_REQUIRE_CHROMIUM").is_none(),
            "STREAMS_REQUIRE_CHROMIUM is set, and {reason}"
        );
        eprintln!("SKIP ui_page_in_headless_chromium: {reason}");
        return;
    };
    let mut app = App::start(2);
    app.write(&sample_positions());
    let expected = reference(&app.written);
    let client = "client1";
    assert_eq!(
        expected.get(client).cloned(),
        Some(BTreeSet::from(["1".to_string(), "3".to_string()])),
        "the sample data of the design"
    );

    let url = app.url(&format!("/ui?store={STORE}&key={client}"));
    let dom = run_chromium(&bin, &url, &["--dump-dom"]);
    assert!(
        dom.contains("id=\"topology-graph\""),
        "chromium printed no page: {dom}"
    );

    // Every node of the topology is drawn in the graph, and every store.
    let graph = element(&dom, "topology-graph", "</svg>");
    for (name, _, _) in described_nodes(&app.streams) {
        assert!(
            graph.contains(&format!("data-node=\"{}\"", attr(&name))),
            "node {name} is not in the graph"
        );
    }
    for (store, _) in app.streams.topology().stores() {
        assert!(
            graph.contains(&format!("data-node=\"{}\"", attr(store))),
            "store {store} is not in the graph"
        );
    }

    // The task table lists the instance's tasks, running, with no standby.
    let table = element(&dom, "task-table", "</table>");
    let ids = app.task_ids();
    assert_eq!(ids.len(), 2 * 2);
    for id in &ids {
        assert!(
            table.contains(&format!("data-task=\"{id}\" data-state=\"running\"")),
            "task {id} is not listed as running: {table}"
        );
    }

    // The store browser shows the lookup of the URL: client1's positions.
    let results = element(&dom, "browser-results", "</table>");
    let row_start = results
        .find(&format!("data-key=\"{client}\""))
        .unwrap_or_else(|| panic!("no row for {client} in the store browser: {results}"));
    let row = &results[row_start..];
    let open = row.find("class=\"value\">").expect("a value cell") + "class=\"value\">".len();
    let close = row[open..].find("</code>").expect("the value's end") + open;
    let shown: BTreeSet<String> = serde_json::from_str(&unescape(&row[open..close]))
        .unwrap_or_else(|e| panic!("the value shown is not JSON ({e}): {}", &row[open..close]));
    assert_eq!(Some(&shown), expected.get(client));

    // Opened on a prefix, it lists exactly the keys with that prefix.
    let prefix = "client";
    let dom = run_chromium(
        &bin,
        &app.url(&format!("/ui?store={STORE}&prefix={prefix}")),
        &["--dump-dom"],
    );
    let results = element(&dom, "browser-results", "</table>");
    let listed: BTreeSet<String> = results
        .split("data-key=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(unescape))
        .collect();
    let want: BTreeSet<String> = expected
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    assert_eq!(listed, want);

    // A screenshot for people to look at.
    let png = artifact_path();
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &bin,
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,1000",
        ],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        png.display()
    );
    println!("screenshot of the operator page: {}", png.display());
    app.stop();
}

#[test]
fn ui_tasks_report_the_restoration_of_an_instance_started_on_empty_state() {
    let mut app = App::start(2);
    app.write(&sample_positions());
    app.write(&prefix_positions());
    let restores = CountingRestores::default();
    let app = app.restart_with_empty_state(restores.clone());
    let expected = reference(&app.written);
    wait_until("the restored store", Duration::from_secs(60), || {
        app.streams
            .store::<String, BTreeSet<String>>(STORE)
            .and_then(|s| s.all())
            .is_ok_and(|all| all.into_iter().collect::<BTreeMap<_, _>>() == expected)
    });

    // Every task with logged stores reports each store restored: done, all of it, and the application's own
    // listener heard of the same records.
    let (status, tasks) = app.get_json("/api/tasks");
    assert_eq!(status, 200);
    let subs = app.streams.topology().sub_topologies();
    let mut restored = 0;
    let mut per_store: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "running");
        let sub = &subs[t["subtopology"].as_u64().unwrap() as usize];
        let mut stores: Vec<String> = t["restoration"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["done"], true, "{r}");
                assert_eq!(r["restored"], r["total"], "{r}");
                assert_eq!(r["partition"], t["partition"]);
                let n = r["restored"].as_u64().unwrap();
                restored += n;
                let store = r["store"].as_str().unwrap().to_string();
                *per_store.entry(store.clone()).or_default() += n;
                store
            })
            .collect();
        stores.sort();
        assert_eq!(stores, sub.stores, "task {}", t["id"]);
    }
    assert!(
        per_store
            .get(STORE)
            .is_some_and(|n| *n >= expected.len() as u64),
        "every client of the store came back from the changelog: {per_store:?}"
    );
    assert_eq!(restored, restores.restored());
    app.stop();
}
