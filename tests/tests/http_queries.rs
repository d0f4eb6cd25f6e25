//! The HTTP query server with two instances: every key, asked through either instance, answers the right count
//! (the instance that does not hold it redirects to the one that does); bad requests get 4xx; after one instance
//! leaves, the other answers every key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, QueryServer, State};
use tests::{
    close_all, describe_instance, free_loopback_port, http_get, page_counts_topology, produce,
    wait_until, wait_until_reporting, Broker,
};

fn count_via(port: u16, page: &str) -> Option<i64> {
    let (status, body) = http_get(&format!(
        "http://127.0.0.1:{port}/stores/page-counts/keys/{}",
        page.replace('/', "%2F")
    ));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    assert_eq!(v["key"], page);
    v["value"].as_i64()
}

fn run(broker: Broker) {
    broker.create_topic("visits", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        let port = free_loopback_port();
        let (mut config, admin) = broker.config("http-pages", dir);
        config
            .set("application.server", &format!("127.0.0.1:{port}"))
            .unwrap();
        let streams = Arc::new(KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap());
        let server = rt
            .block_on(
                QueryServer::builder(streams.clone())
                    .store::<String, i64>("page-counts")
                    .max_page_size(50)
                    .bind(([127, 0, 0, 1], port).into())
                    .serve(),
            )
            .unwrap();
        (streams, server, port)
    };
    let (a, server_a, port_a) = start(dir_a.path());
    // Before the instance runs, queries are refused with 503.
    assert_eq!(
        http_get(&format!(
            "http://127.0.0.1:{port_a}/stores/page-counts/keys/x"
        ))
        .0,
        503
    );
    let (b, server_b, port_b) = start(dir_b.path());
    a.start().unwrap();
    b.start().unwrap();

    let visits: Vec<(String, String)> = (0..500)
        .map(|i| (format!("u{}", i % 9), format!("/p{}", i % 25)))
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
    let all_answer = |ports: &[u16]| {
        expected
            .iter()
            .all(|(page, count)| ports.iter().all(|p| count_via(*p, page) == Some(*count)))
    };
    // On a timeout, say where each instance stands (errors, state, tasks and whether they still restore).
    wait_until_reporting(
        "every key through both instances",
        Duration::from_secs(90),
        || all_answer(&[port_a, port_b]),
        || format!("A: {}; B: {}", describe_instance(&a), describe_instance(&b)),
    );

    // Bad requests.
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port_a}/stores/nope/keys/x")).0,
        404
    );
    assert_eq!(
        http_get(&format!(
            "http://127.0.0.1:{port_a}/stores/page-counts?limit=51"
        ))
        .0,
        400
    );
    assert_eq!(
        http_get(&format!(
            "http://127.0.0.1:{port_b}/stores/page-counts/keys/%2Fnever-visited"
        ))
        .0,
        404
    );
    let (status, body) = http_get(&format!("http://127.0.0.1:{port_a}/stores"));
    assert_eq!((status, body.as_str()), (200, r#"["page-counts"]"#));
    let (status, body) = http_get(&format!("http://127.0.0.1:{port_a}/metadata"));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // A page of a prefix scan holds only this instance's keys, at most `limit`.
    let (status, body) = http_get(&format!(
        "http://127.0.0.1:{port_a}/stores/page-counts?prefix=%2Fp1&limit=3"
    ));
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert!(entries.len() <= 3);
    for e in entries {
        let key = e["key"].as_str().unwrap();
        assert!(key.starts_with("/p1"));
        assert_eq!(e["value"].as_i64(), expected.get(key).copied());
    }

    // A leaves: once the group has rebalanced, B answers every key.
    assert!(a.close(Duration::from_secs(30)));
    rt.block_on(server_a.shutdown());
    assert!(b.wait_for_state(State::Running, Duration::from_secs(60)));
    wait_until("every key through B alone", Duration::from_secs(90), || {
        all_answer(&[port_b])
    });
    assert!(b.close(Duration::from_secs(30)));
    rt.block_on(server_b.shutdown());
}

#[test]
fn http_queries_across_two_instances_on_the_embedded_broker() {
    run(Broker::embedded());
}

#[test]
fn http_queries_across_two_instances_on_tansu() {
    run(Broker::tansu());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One request on a fresh connection, without following redirects: the status and the response head.
fn raw_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let head = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(h, _)| h);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string())
}

/// Whether `stream` is closed by the server (end of stream or reset) within `within`.
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before the close is fine: keep reading to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Defect: the server had no header-read timeout, so a client that opened a connection and sent half a request
/// line held the connection (and its task) forever.
#[test]
fn finding_a_half_sent_request_is_disconnected_after_the_header_read_timeout() {
    use std::io::Write;
    let broker = Broker::embedded();
    let dir = tempfile::tempdir().unwrap();
    let streams = Arc::new(
        KafkaStreams::new(
            page_counts_topology(),
            broker.config("http-slowloris", dir.path()),
        )
        .unwrap(),
    );
    let rt = runtime();
    let server = rt
        .block_on(
            QueryServer::builder(streams)
                .store::<String, i64>("page-counts")
                .header_read_timeout(Duration::from_millis(300))
                .serve(),
        )
        .unwrap();
    let port = server.local_addr().port();
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /stores HT").unwrap();
    let sent = std::time::Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "a connection with a half-sent request line is still open after 5 s"
    );
    assert!(sent.elapsed() >= Duration::from_millis(250));
    // The server still answers complete requests.
    assert_eq!(raw_get(port, "/stores").0, 200);
    rt.block_on(server.shutdown());
}

/// Defect: the server accepted any number of connections; a client holding many idle ones exhausted the
/// process. With `max_connections(2)`, a third connection waits until one of the two is released.
#[test]
fn finding_connections_beyond_max_connections_wait_for_a_free_slot() {
    use std::io::{Read, Write};
    let broker = Broker::embedded();
    let dir = tempfile::tempdir().unwrap();
    let streams = Arc::new(
        KafkaStreams::new(
            page_counts_topology(),
            broker.config("http-conn-limit", dir.path()),
        )
        .unwrap(),
    );
    let rt = runtime();
    let server = rt
        .block_on(
            QueryServer::builder(streams)
                .store::<String, i64>("page-counts")
                .header_read_timeout(Duration::from_secs(60))
                .max_connections(2)
                .serve(),
        )
        .unwrap();
    let port = server.local_addr().port();
    let idle1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _idle2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        third,
        "GET /stores HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a third connection was served while two were held open: {early:?}"
    );
    // Releasing one connection lets the waiting request through.
    drop(idle1);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = Vec::new();
    third.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(raw_get(port, "/stores").0, 200);
    rt.block_on(server.shutdown());
}

/// Defect: the server redirected a key held by another instance whenever the owner's instance id differed from
/// its own, even when both advertise the same `application.server` (several instances behind one address): the
/// redirect came back to the same address, forever. Now it answers locally, or 503 while the key's partition
/// is not here.
#[test]
fn finding_instances_behind_one_address_never_redirect_to_it() {
    let broker = Broker::embedded();
    broker.create_topic("visits", 3);
    let rt = runtime();
    let shared_port = free_loopback_port();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, port: u16| {
        let (mut config, admin) = broker.config("http-same-address", dir);
        config
            .set("application.server", &format!("127.0.0.1:{shared_port}"))
            .unwrap();
        let streams = Arc::new(KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap());
        let server = rt
            .block_on(
                QueryServer::builder(streams.clone())
                    .store::<String, i64>("page-counts")
                    .bind(([127, 0, 0, 1], port).into())
                    .serve(),
            )
            .unwrap();
        (streams, server)
    };
    let (a, server_a) = start(dir_a.path(), shared_port);
    let (b, server_b) = start(dir_b.path(), 0);
    a.start().unwrap();
    b.start().unwrap();
    let raw: Vec<_> = (0..60)
        .map(|i| {
            (
                format!("u{i}").into_bytes(),
                Some(format!("/p{}", i % 12).into_bytes()),
            )
        })
        .collect();
    produce(&broker.bootstrap(), "visits", &raw);
    // A page whose partition B holds, as A's metadata says, once both run and each holds some partitions.
    let mut owned_by_b = None;
    wait_until(
        "B to own a page, seen from A",
        Duration::from_secs(90),
        || {
            if a.state() != State::Running || b.state() != State::Running {
                return false;
            }
            let all = a.all_metadata();
            if all.len() != 2 || all.iter().any(|m| m.partitions.is_empty()) {
                return false;
            }
            owned_by_b = (0..12).map(|i| format!("/p{i}")).find(|page| {
                a.query_metadata_for_store_key::<String, i64>("page-counts", page)
                    .ok()
                    .and_then(|m| m.active)
                    .is_some_and(|o| o.instance_id == b.instance_id())
            });
            owned_by_b.is_some()
        },
    );
    let page = owned_by_b.unwrap();
    let (status, head) = raw_get(
        shared_port,
        &format!("/stores/page-counts/keys/{}", page.replace('/', "%2F")),
    );
    assert_ne!(
        status, 307,
        "A redirected a key of B to their shared address:\n{head}"
    );
    assert_eq!(status, 503, "{head}");
    close_all(&[&a, &b], Duration::from_secs(60));
    rt.block_on(server_a.shutdown());
    rt.block_on(server_b.shutdown());
}
