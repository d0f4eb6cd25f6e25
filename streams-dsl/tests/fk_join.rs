//! Foreign-key table-table joins through the test driver: random inserts, updates (foreign-key changes among
//! them) and deletes on both tables, partitioned differently, checked after every step against a plain
//! computation of the join over the two tables' current rows.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_dsl::streams_core::RawRecord;
use streams_dsl::*;

/// An order: `"<customer>|<payload>"`, or `"-|<payload>"` for an order without customer.
fn customer_of(order: &str) -> Option<String> {
    order
        .split_once('|')
        .map(|(c, _)| c)
        .filter(|c| *c != "-")
        .map(str::to_string)
}

fn inner_joiner(order: &String, credit: &i64) -> String {
    format!("{order}+{credit}")
}

fn left_joiner(order: &String, credit: Option<&i64>) -> String {
    format!("{order}+{credit:?}")
}

/// The right rows the third join sees: customers with a credit not divisible by 3.
fn keep_customer(credit: &i64) -> bool {
    credit % 3 != 0
}

/// Orders joined with customers three ways: inner, left, and left against a filtered customer table.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    let orders = b.table(
        "orders",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::new().in_memory(),
    );
    let customers = b.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new().in_memory(),
    );
    orders
        .join_foreign_key(
            &customers,
            |o: &String| customer_of(o),
            inner_joiner,
            Materialized::as_store("inner").in_memory(),
        )
        .to_stream()
        .to("inner-out", Produced::new());
    orders
        .left_join_foreign_key(
            &customers,
            |o: &String| customer_of(o),
            left_joiner,
            Materialized::as_store("left").in_memory(),
        )
        .to_stream()
        .to("left-out", Produced::new());
    let kept = customers.filter(|_, credit| keep_customer(credit));
    orders.left_join_foreign_key(
        &kept,
        |o: &String| customer_of(o),
        left_joiner,
        Materialized::as_store("left-filtered"),
    );
    b.build().unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Order `n`: new value (customer index or none, payload) or deletion.
    Order(u8, Option<(Option<u8>, u8)>),
    /// Customer `n`: new credit or deletion.
    Customer(u8, Option<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, proptest::option::weighted(0.8, (proptest::option::weighted(0.85, 0u8..5), 0u8..4)))
            .prop_map(|(k, v)| Op::Order(k, v)),
        2 => (0u8..5, proptest::option::weighted(0.75, -20i64..20)).prop_map(|(k, v)| Op::Customer(k, v)),
    ]
}

/// The two tables as plain maps, and the joins computed from them.
#[derive(Default)]
struct Reference {
    orders: BTreeMap<String, String>,
    customers: BTreeMap<String, i64>,
}

impl Reference {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Order(k, Some(v)) => {
                self.orders.insert(order_key(*k), order_value(v));
            }
            Op::Order(k, None) => {
                self.orders.remove(&order_key(*k));
            }
            Op::Customer(k, Some(c)) => {
                self.customers.insert(customer_key(*k), *c);
            }
            Op::Customer(k, None) => {
                self.customers.remove(&customer_key(*k));
            }
        }
    }

    fn inner(&self) -> BTreeMap<String, String> {
        self.orders
            .iter()
            .filter_map(|(k, o)| {
                let c = self.customers.get(&customer_of(o)?)?;
                Some((k.clone(), inner_joiner(o, c)))
            })
            .collect()
    }

    fn left(&self, keep: impl Fn(&i64) -> bool) -> BTreeMap<String, String> {
        self.orders
            .iter()
            .map(|(k, o)| {
                let c = customer_of(o)
                    .and_then(|c| self.customers.get(&c))
                    .filter(|c| keep(c));
                (k.clone(), left_joiner(o, c))
            })
            .collect()
    }
}

fn order_key(k: u8) -> String {
    format!("order-{k}")
}

fn customer_key(k: u8) -> String {
    format!("customer-{k}")
}

fn order_value((customer, payload): &(Option<u8>, u8)) -> String {
    match customer {
        Some(c) => format!("{}|p{payload}", customer_key(*c)),
        None => format!("-|p{payload}"),
    }
}

fn store_contents(d: &TopologyTestDriver, store: &str) -> BTreeMap<String, String> {
    d.key_value_store::<String, String>(store)
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect()
}

/// Applies the records written to an output topic since the last call: a value sets the key, a tombstone
/// removes it.
fn apply_output(d: &TopologyTestDriver, topic: &str, table: &mut BTreeMap<String, String>) {
    for (k, v) in d
        .output_topic(topic, Serdes::string(), Serdes::option(Serdes::string()))
        .read_key_values_to_vec()
        .unwrap()
    {
        match v {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
}

fn raw<K: 'static, V: 'static>(key: &K, value: Option<&V>, ks: &dyn Serde<K>, vs: &dyn Serde<V>, ts: i64) -> RawRecord {
    let mut k = Vec::new();
    ks.serialize(key, &mut k).unwrap();
    let value = value.map(|v| {
        let mut b = Vec::new();
        vs.serialize(v, &mut b).unwrap();
        b
    });
    RawRecord {
        key: Some(k),
        value,
        timestamp: ts,
        headers: Headers::new(),
        offset: -1,
    }
}

/// Pipes each batch as one poll of both topics (so a left row can change again before the right side answers
/// its previous subscription), then compares the join stores and output topics with the reference.
fn run(
    batches: &[Vec<Op>],
    order_partitions: i32,
    customer_partitions: i32,
) -> Result<(), TestCaseError> {
    let d = TopologyTestDriver::builder(topology())
        .partitions("orders", order_partitions)
        .partitions("customers", customer_partitions)
        .build()
        .unwrap();
    prop_assert_eq!(
        d.partitions_of(&d.resolve_topic("inner-subscription-registration-topic")),
        customer_partitions
    );
    prop_assert_eq!(
        d.partitions_of(&d.resolve_topic("inner-subscription-response-topic")),
        order_partitions
    );
    let mut reference = Reference::default();
    let (mut inner_out, mut left_out) = (BTreeMap::new(), BTreeMap::new());
    let mut ts = 0;
    for (step, batch) in batches.iter().enumerate() {
        let mut records = Vec::new();
        for op in batch {
            ts += 1;
            let record = match op {
                Op::Order(k, v) => (
                    "orders",
                    raw(&order_key(*k), v.as_ref().map(order_value).as_ref(), &Serdes::string(), &Serdes::string(), ts),
                ),
                Op::Customer(k, v) => (
                    "customers",
                    raw(&customer_key(*k), v.as_ref(), &Serdes::string(), &Serdes::i64(), ts),
                ),
            };
            records.push((record.0, None, record.1));
            reference.apply(op);
        }
        d.pipe_raw_batch(records).unwrap();
        let context = format!("after batch {step} ({batch:?})");
        prop_assert_eq!(store_contents(&d, "inner"), reference.inner(), "{}", &context);
        prop_assert_eq!(store_contents(&d, "left"), reference.left(|_| true), "{}", &context);
        prop_assert_eq!(
            store_contents(&d, "left-filtered"),
            reference.left(keep_customer),
            "{}",
            &context
        );
        apply_output(&d, "inner-out", &mut inner_out);
        apply_output(&d, "left-out", &mut left_out);
        prop_assert_eq!(&inner_out, &reference.inner(), "{}", &context);
        prop_assert_eq!(&left_out, &reference.left(|_| true), "{}", &context);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn joins_match_the_tables_after_every_step(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..25),
        order_partitions in 2i32..=4,
        shift in 1i32..=2,
    ) {
        // Never the same partition count on both sides.
        let customer_partitions = (order_partitions - 2 + shift) % 3 + 2;
        prop_assert_ne!(order_partitions, customer_partitions);
        run(&batches, order_partitions, customer_partitions)?;
    }
}
