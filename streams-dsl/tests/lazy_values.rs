//! `Lazy` values through a topology: a stream routed by key passes every value on as the bytes it was read from
//! (never decoded, so bytes that are not valid JSON pass too), while the same topology with the eager JSON serde
//! re-encodes each value and stops at the bad one; an operator that reads and changes the value re-encodes it.
//! The expected outputs are computed from the inputs directly.

use serde::{Deserialize, Serialize};
use streams_dsl::*;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Order {
    id: u64,
    total: i64,
}

/// Orders keyed by region, written by some other producer: spacing and field order differ from serde_json's.
fn input() -> Vec<(String, Vec<u8>)> {
    (0..40u64)
        .map(|i| {
            let region = ["eu", "us", "apac"][(i % 3) as usize];
            let value = if i == 18 {
                b"{\"id\": 18, \"total\": ".to_vec() // cut short: not JSON
            } else {
                format!("{{ \"total\": {},  \"id\": {i} }}", i * 10).into_bytes()
            };
            (format!("{region}-{i}"), value)
        })
        .collect()
}

fn route_by_key<V: Data>(value_serde: impl Serde<V>) -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, V>("orders", Consumed::with(Serdes::string(), value_serde))
        .filter(|k, _| k.starts_with("eu-"))
        .to("eu-orders", Produced::new());
    b.build().unwrap()
}

/// Keys and raw values.
type Raw = Vec<(String, Vec<u8>)>;

fn run(topology: Topology) -> (Result<(), StreamsError>, Raw) {
    let driver = TopologyTestDriver::new(topology).unwrap();
    let inp = driver.input_topic("orders", Serdes::string(), Serdes::bytes());
    let mut piped = Ok(());
    for (k, v) in input() {
        if let Err(e) = inp.pipe_input(k, v) {
            piped = Err(e);
            break;
        }
    }
    let out = driver
        .output_topic("eu-orders", Serdes::string(), Serdes::bytes())
        .read_key_values_to_vec()
        .unwrap();
    (piped, out)
}

#[test]
fn a_stream_routed_by_key_passes_lazy_values_on_as_the_bytes_read() {
    let (piped, out) = run(route_by_key(LazySerde::new(Serdes::json::<Order>())));
    piped.unwrap();
    let expected: Vec<(String, Vec<u8>)> = input()
        .into_iter()
        .filter(|(k, _)| k.starts_with("eu-"))
        .collect();
    assert!(expected.iter().any(|(k, _)| k == "eu-18"));
    assert_eq!(out, expected);
}

#[test]
fn the_same_stream_with_eager_values_re_encodes_them_and_stops_at_the_bad_one() {
    let (piped, out) = run(route_by_key(Serdes::json::<Order>()));
    // Log-and-fail, the default deserialization handler, at record 18 (an eu order).
    let err = piped.unwrap_err().to_string();
    assert!(err.contains("orders"), "{err}");
    let expected: Vec<(String, Vec<u8>)> = input()
        .into_iter()
        .take(18)
        .filter(|(k, _)| k.starts_with("eu-"))
        .map(|(k, v)| {
            let order: Order = serde_json::from_slice(&v).unwrap();
            (k, serde_json::to_vec(&order).unwrap())
        })
        .collect();
    assert_eq!(out, expected);
    assert_ne!(out[0].1, input()[0].1, "the eager serde re-encodes");
}

#[test]
fn an_operator_that_changes_a_lazy_value_has_it_re_encoded_and_one_that_fails_to_read_it_says_why()
{
    let b = StreamsBuilder::new();
    b.stream::<String, Lazy<Order>>(
        "orders",
        Consumed::with(Serdes::string(), LazySerde::new(Serdes::json::<Order>())),
    )
    .filter(|_, v| v.get().is_ok())
    .map_values(|mut v: Lazy<Order>| {
        if let Ok(order) = v.get_mut() {
            order.total *= 2;
        }
        v
    })
    .to(
        "doubled",
        Produced::with(Serdes::string(), LazySerde::new(Serdes::json::<Order>())),
    );
    let (piped, out) = {
        let driver = TopologyTestDriver::new(b.build().unwrap()).unwrap();
        let inp = driver.input_topic("orders", Serdes::string(), Serdes::bytes());
        let piped: Result<Vec<()>, _> = input()
            .into_iter()
            .map(|(k, v)| inp.pipe_input(k, v))
            .collect();
        let out = driver
            .output_topic("doubled", Serdes::string(), Serdes::bytes())
            .read_key_values_to_vec()
            .unwrap();
        (piped, out)
    };
    piped.unwrap();
    let expected: Vec<(String, Vec<u8>)> = input()
        .into_iter()
        .filter_map(|(k, v)| {
            let mut order: Order = serde_json::from_slice(&v).ok()?;
            order.total *= 2;
            Some((k, serde_json::to_vec(&order).unwrap()))
        })
        .collect();
    assert_eq!(expected.len(), 39);
    assert_eq!(out, expected);
    // The filter saw why record 18 could not be read.
    let bad = LazySerde::new(Serdes::json::<Order>())
        .deserialize(&input()[18].1)
        .unwrap();
    assert_eq!(
        bad.get().unwrap_err().kind,
        state_store::SerdeErrorKind::Json
    );
}
