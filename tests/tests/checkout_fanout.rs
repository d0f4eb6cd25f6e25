//! Use case 3 on the embedded broker: three independent applications read every checkout and produce what a
//! direct computation from the checkouts says; a fourth added later processes every checkout too, and the
//! first three are untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use examples::checkout::*;
use streams_dsl::streams_core::runtime::KafkaStreams;
use tests::{consume_until, produce, Broker};

fn decode_json<T: serde::de::DeserializeOwned>(
    r: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Vec<(String, T)> {
    r.iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                serde_json::from_slice(v.as_ref().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn independent_consumers_of_checkouts_on_the_embedded_broker() {
    let broker = Broker::embedded();
    for t in [CHECKOUTS, SHIPMENTS, EMAILS, RESERVED, FRAUD_ALERTS] {
        broker.create_topic(t, 2);
    }
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let run = |app: &str, t: streams_dsl::Topology, dir: &tempfile::TempDir| {
        let s = KafkaStreams::new(t, broker.config(app, dir.path())).unwrap();
        s.start().unwrap();
        s
    };
    let apps = [
        run("shipping", shipping().unwrap(), &dirs[0]),
        run("email", email().unwrap(), &dirs[1]),
        run("inventory", inventory().unwrap(), &dirs[2]),
    ];
    let checkouts = sample_checkouts(60);
    let raw: Vec<_> = checkouts
        .iter()
        .map(|c| {
            (
                c.order_id.clone().into_bytes(),
                Some(serde_json::to_vec(c).unwrap()),
            )
        })
        .collect();
    produce(&broker.bootstrap(), CHECKOUTS, &raw);
    let bootstrap = broker.bootstrap();
    let wait = Duration::from_secs(60);

    let shipments = consume_until(&bootstrap, SHIPMENTS, wait, |r| r.len() >= checkouts.len());
    let mut got: Vec<(String, Shipment)> = decode_json(&shipments);
    let mut expected: Vec<(String, Shipment)> = checkouts
        .iter()
        .map(|c| {
            let units = c.items.iter().map(|i| i.quantity).sum();
            (
                c.order_id.clone(),
                Shipment {
                    order_id: c.order_id.clone(),
                    address: c.address.clone(),
                    units,
                },
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);

    let emails = consume_until(&bootstrap, EMAILS, wait, |r| r.len() >= checkouts.len());
    let mut got: Vec<String> = decode_json::<Email>(&emails)
        .into_iter()
        .map(|(k, e)| format!("{k}|{}", e.subject))
        .collect();
    let mut expected: Vec<String> = checkouts
        .iter()
        .map(|c| format!("{}|Your order {} is confirmed", c.email, c.order_id))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
    for c in &checkouts {
        for i in &c.items {
            *reserved.entry(i.sku.clone()).or_default() += i.quantity;
        }
    }
    let latest = |r: &[(Vec<u8>, Option<Vec<u8>>)]| -> BTreeMap<String, i64> {
        r.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    i64::from_be_bytes(v.as_ref().unwrap().as_slice().try_into().unwrap()),
                )
            })
            .collect()
    };
    let got = consume_until(&bootstrap, RESERVED, wait, |r| latest(r) == reserved);
    assert_eq!(latest(&got), reserved);

    // The fourth consumer starts later and still sees every checkout.
    let fraud = run("fraud-screening", fraud_screening().unwrap(), &dirs[3]);
    let flagged: Vec<_> = checkouts
        .iter()
        .filter(|c| c.total_cents > 100_000)
        .collect();
    assert!(!flagged.is_empty());
    let alerts = consume_until(&bootstrap, FRAUD_ALERTS, wait, |r| r.len() >= flagged.len());
    let mut got: Vec<(String, i64)> = alerts
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                i64::from_be_bytes(v.as_ref().unwrap().as_slice().try_into().unwrap()),
            )
        })
        .collect();
    let mut expected: Vec<(String, i64)> = flagged
        .iter()
        .map(|c| (c.order_id.clone(), c.total_cents))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // The others produced nothing more.
    assert_eq!(
        consume_until(&bootstrap, SHIPMENTS, Duration::from_secs(2), |_| false).len(),
        checkouts.len()
    );
    for s in apps.iter().chain([&fraud]) {
        assert!(s.close(Duration::from_secs(30)));
    }
}
