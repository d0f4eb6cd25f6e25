//! The HTTP query server with two instances: every key, asked through either instance, answers the right count
//! (the instance that does not hold it redirects to the one that does); bad requests get 4xx; after one instance
//! leaves, the other answers every key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{KafkaStreams, QueryServer, State};
use tests::{free_loopback_port, http_get, page_counts_topology, produce, wait_until, Broker};

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
    wait_until(
        "every key through both instances",
        Duration::from_secs(90),
        || all_answer(&[port_a, port_b]),
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
