//! Foreign-key table-table joins (Kafka Streams' KIP-213): each left row names the right row it joins by a
//! foreign key extracted from its value; the two tables need not be co-partitioned.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use state_store::{KeyValueStoreSupplier, Serdes};
use streams_core::{
    Data, KeyValueStoreBuilder, SharedSerde, SinkOptions, SourceOptions, StoreKind, StreamsError,
};

use crate::ktable::KTable;
use crate::ops::fk_left::{FkSubscriptionSend, ToLocalResponse, ToSubscription};
use crate::ops::fk_resolve::FkResolve;
use crate::ops::fk_right::{FkRightUpdate, FkSubscriptionReceive};
use crate::ops::fk_wire::{Response, ResponseSerde, Subscription, SubscriptionSerde};
use crate::params::{pick_serde, Materialized};

const LEFT_HINT: &str =
    "Consumed::with(key_serde, value_serde) or Materialized::with(key_serde, value_serde) on the left table";
const RIGHT_HINT: &str =
    "Consumed::with(key_serde, value_serde) or Materialized::with(key_serde, value_serde) on the right table";
const RESULT_HINT: &str = "Materialized::with(key_serde, value_serde) on the join";

type Bytes = Vec<u8>;

impl<K: Data, V: Data> KTable<K, V> {
    /// Joins each row of this table with the row of `other` whose key `foreign_key` extracts from the row's
    /// value (Kafka Streams' foreign-key `join`). The result has this table's keys; a row has a result only
    /// while its foreign key is `Some` and names an existing row of `other`. The result changes when the left
    /// row changes (its value, its foreign key, its deletion) and when the right row it points to changes:
    /// an update of a right row updates every left row referring to it.
    ///
    /// The two tables need not have the same partition count. The result is kept in the store `materialized`
    /// describes. `foreign_key` returning `None` means the row joins nothing.
    ///
    /// # How it runs
    ///
    /// The left side keeps its own copy of the left rows and, for each change, sends a *subscription* keyed by the
    /// foreign key through the internal topic `<application.id>-<name>-subscription-registration-topic`: the left
    /// key, a 128-bit hash of the left value, the left partition and an instruction (subscribe, or unsubscribe from
    /// the previous foreign key). That topic has as many partitions as the right table, so each subscription reaches
    /// the task holding its right row. There, a changelogged *subscription store* keyed by (foreign key, left key)
    /// remembers the subscribers; on a subscription, and whenever the right row changes, the right side sends a
    /// *response* (the hash and the right value, or none) keyed by the left key through
    /// `<application.id>-<name>-subscription-response-topic`, back to the left partition that asked. The left side
    /// joins a response only if the left row still hashes the same: an answer to a subscription since replaced
    /// (say the row moved to another foreign key) is dropped, the newer answer being on its way.
    ///
    /// `<name>` is the result store's name when [`Materialized::as_store`] names it, else a generated
    /// `KTABLE-FK-JOIN-<n>`. The join keeps four stores, all changelogged: the result, `<name>-left-values`,
    /// `<name>-right-values` and `<name>-subscription-store`, of the result's store kind.
    ///
    /// # Example
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let customers = builder.table::<String, String>("customers", Consumed::new(), Materialized::new().in_memory());
    /// // order id -> "customer id:item"
    /// let orders = builder.table::<String, String>("orders", Consumed::new(), Materialized::new().in_memory());
    /// orders.join_foreign_key(
    ///     &customers,
    ///     |order: &String| order.split(':').next().map(str::to_string),
    ///     |order, customer_name| format!("{order} for {customer_name}"),
    ///     Materialized::as_store("orders-with-customers").in_memory(),
    /// );
    /// let topology = builder.build().unwrap();
    ///
    /// // The customers topic has 3 partitions, the orders topic 2.
    /// let driver = TopologyTestDriver::builder(topology)
    ///     .partitions("customers", 3)
    ///     .partitions("orders", 2)
    ///     .build()
    ///     .unwrap();
    /// let customers = driver.input_topic("customers", Serdes::string(), Serdes::option(Serdes::string()));
    /// let orders = driver.input_topic("orders", Serdes::string(), Serdes::option(Serdes::string()));
    /// let joined = driver.key_value_store::<String, String>("orders-with-customers").unwrap();
    ///
    /// orders.pipe_input("o1".into(), Some("c1:book".into())).unwrap();
    /// assert_eq!(joined.get(&"o1".to_string()).unwrap(), None); // no customer c1 yet
    /// customers.pipe_input("c1".into(), Some("Ann".into())).unwrap();
    /// assert_eq!(joined.get(&"o1".to_string()).unwrap().as_deref(), Some("c1:book for Ann"));
    /// customers.pipe_input("c1".into(), Some("Ann Lee".into())).unwrap();
    /// assert_eq!(joined.get(&"o1".to_string()).unwrap().as_deref(), Some("c1:book for Ann Lee"));
    /// orders.pipe_input("o1".into(), Some("c2:book".into())).unwrap(); // c2 does not exist
    /// assert_eq!(joined.get(&"o1".to_string()).unwrap(), None);
    /// ```
    pub fn join_foreign_key<KO: Data, VO: Data, VR: Data, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: F,
        joiner: J,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.foreign_key_join(
            other,
            foreign_key,
            move |v: &V, vo: Option<&VO>| vo.map(|vo| joiner(v, vo)),
            true,
            materialized,
            "KTable::join_foreign_key",
        )
    }

    /// Like [`KTable::join_foreign_key`], but every row of this table has a result: `joiner` gets `None` while
    /// the row's foreign key is `None` or names no row of `other` (Kafka Streams' foreign-key `leftJoin`).
    ///
    /// ```
    /// use streams_dsl::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// let products = builder.table::<i64, String>("products", Consumed::new(), Materialized::new().in_memory());
    /// // line id -> product id
    /// let lines = builder.table::<String, i64>("order-lines", Consumed::new(), Materialized::new().in_memory());
    /// lines.left_join_foreign_key(
    ///     &products,
    ///     |product: &i64| Some(*product),
    ///     |product, name: Option<&String>| format!("{product}: {}", name.map_or("unknown", String::as_str)),
    ///     Materialized::as_store("lines-with-names").in_memory(),
    /// );
    /// let driver = TopologyTestDriver::builder(builder.build().unwrap())
    ///     .partitions("products", 4)
    ///     .partitions("order-lines", 2)
    ///     .build()
    ///     .unwrap();
    /// let products = driver.input_topic("products", Serdes::i64(), Serdes::option(Serdes::string()));
    /// let lines = driver.input_topic("order-lines", Serdes::string(), Serdes::option(Serdes::i64()));
    /// let joined = driver.key_value_store::<String, String>("lines-with-names").unwrap();
    ///
    /// lines.pipe_input("l1".into(), Some(7)).unwrap();
    /// assert_eq!(joined.get(&"l1".to_string()).unwrap().as_deref(), Some("7: unknown"));
    /// products.pipe_input(7, Some("lamp".into())).unwrap();
    /// assert_eq!(joined.get(&"l1".to_string()).unwrap().as_deref(), Some("7: lamp"));
    /// products.pipe_input(7, None).unwrap(); // the product is deleted: the line stays, unmatched
    /// assert_eq!(joined.get(&"l1".to_string()).unwrap().as_deref(), Some("7: unknown"));
    /// lines.pipe_input("l1".into(), None).unwrap(); // the line is deleted: so is its result
    /// assert_eq!(joined.get(&"l1".to_string()).unwrap(), None);
    /// ```
    pub fn left_join_foreign_key<KO: Data, VO: Data, VR: Data, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: F,
        joiner: J,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.foreign_key_join(
            other,
            foreign_key,
            move |v: &V, vo: Option<&VO>| Some(joiner(v, vo)),
            false,
            materialized,
            "KTable::left_join_foreign_key",
        )
    }

    fn foreign_key_join<KO: Data, VO: Data, VR: Data, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: F,
        joiner: J,
        inner: bool,
        materialized: Materialized<K, VR>,
        op: &str,
    ) -> KTable<K, VR>
    where
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
    {
        let mut b = self.b.borrow_mut();
        let flag = Arc::new(AtomicBool::new(false));
        let base = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("KTABLE-FK-JOIN-"));
        let result_store = materialized
            .name
            .clone()
            .unwrap_or_else(|| b.name("KTABLE-FK-JOIN-OUTPUT-STATE-STORE-"));
        let resolve = b.name("KTABLE-FK-JOIN-OUTPUT-");
        // After an error (kept for `build`), a table attached to nothing.
        let detached = |name: String| KTable::new(self.b.clone(), name, None, None, None, vec![]);
        if !Rc::ptr_eq(&self.b, &other.b) {
            b.check::<()>(Err(StreamsError::InvalidTopology(format!(
                "{op}: the other table comes from a different StreamsBuilder"
            ))));
            return detached(resolve);
        }
        let k = b.check(pick_serde(
            &materialized.key_serde,
            &self.key_serde,
            op,
            "key",
            LEFT_HINT,
        ));
        let v = b.check(pick_serde(&None, &self.value_serde, op, "value", LEFT_HINT));
        let ko = b.check(pick_serde(
            &None,
            &other.key_serde,
            op,
            "foreign key",
            RIGHT_HINT,
        ));
        let vo = b.check(pick_serde(
            &None,
            &other.value_serde,
            op,
            "foreign value",
            RIGHT_HINT,
        ));
        let vr = b.check(pick_serde(
            &materialized.value_serde,
            &None,
            op,
            "value",
            RESULT_HINT,
        ));
        let (Some(k), Some(v), Some(ko), Some(vo), Some(vr)) = (k, v, ko, vo, vr) else {
            return detached(resolve);
        };
        let bytes: SharedSerde<Bytes> = Arc::new(Serdes::bytes());
        let left_store = format!("{base}-left-values");
        let right_store = format!("{base}-right-values");
        let subscription_store = format!("{base}-subscription-store");
        let registration_topic = format!("{base}-subscription-registration-topic");
        let response_topic = format!("{base}-subscription-response-topic");

        // Left side: subscriptions out, local answers to the resolver.
        let send = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-");
        let (extractor, vs, kos, ls) = (
            Arc::new(foreign_key),
            v.clone(),
            ko.clone(),
            Arc::<str>::from(left_store.as_str()),
        );
        b.add_processor::<K, crate::change::Change<V>, _, _>(
            &send,
            move || FkSubscriptionSend {
                extractor: extractor.clone(),
                value_serde: vs.clone(),
                foreign_key_serde: kos.clone(),
                left_store: ls.clone(),
                inner,
                store: None,
                buf: Vec::new(),
                old_fk: Vec::new(),
                _p: PhantomData,
            },
            &[&self.node],
        );
        let to_subscription = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-SELECT-");
        b.add_processor::<K, crate::ops::fk_left::LeftEvent<KO>, _, _>(
            &to_subscription,
            || ToSubscription { _p: PhantomData },
            &[&send],
        );
        let to_local = b.name("KTABLE-FK-JOIN-LOCAL-RESPONSE-");
        b.add_processor::<K, crate::ops::fk_left::LeftEvent<KO>, _, _>(
            &to_local,
            || ToLocalResponse::<VO> { _p: PhantomData },
            &[&send],
        );
        let r = b
            .topology
            .add_reader_sized_internal_topic(&registration_topic)
            .map(|_| ());
        b.check(r);
        let sink = b.name("KTABLE-SINK-");
        let sub_writer: SharedSerde<Subscription<K>> =
            Arc::new(SubscriptionSerde { key: k.clone() });
        let r = b
            .topology
            .add_sink(
                &sink,
                &registration_topic,
                SinkOptions::from_shared(ko.clone(), sub_writer),
                &[&to_subscription],
            )
            .map(|_| ());
        b.check(r);

        // Right side, on the right table's partitions.
        let sub_source = b.name("KTABLE-SOURCE-");
        let sub_reader: SharedSerde<Subscription<Bytes>> =
            Arc::new(SubscriptionSerde { key: bytes.clone() });
        let r = b
            .topology
            .add_source(
                &sub_source,
                &[&registration_topic],
                SourceOptions::from_shared(bytes.clone(), sub_reader),
            )
            .map(|_| ());
        b.check(r);
        let receive = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-PROCESSOR-");
        let (ss, rs) = (
            Arc::<str>::from(subscription_store.as_str()),
            Arc::<str>::from(right_store.as_str()),
        );
        let (ss2, rs2) = (ss.clone(), rs.clone());
        b.add_processor::<Bytes, Subscription<Bytes>, _, _>(
            &receive,
            move || FkSubscriptionReceive {
                subscription_store: ss2.clone(),
                right_store: rs2.clone(),
                subs: None,
                right: None,
                key_buf: Vec::new(),
            },
            &[&sub_source],
        );
        let update = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-");
        let (kos, vos) = (ko.clone(), vo.clone());
        b.add_processor::<KO, crate::change::Change<VO>, _, _>(
            &update,
            move || FkRightUpdate {
                subscription_store: ss.clone(),
                right_store: rs.clone(),
                key_serde: kos.clone(),
                value_serde: vos.clone(),
                subs: None,
                right: None,
                key_buf: Vec::new(),
                prefix: Vec::new(),
            },
            &[&other.node],
        );
        let r = b
            .topology
            .add_reader_sized_internal_topic(&response_topic)
            .map(|_| ());
        b.check(r);
        let sink = b.name("KTABLE-SINK-");
        let resp_writer: SharedSerde<Response<Bytes>> = Arc::new(ResponseSerde {
            value: bytes.clone(),
        });
        // Back to the partition that subscribed, whatever partitioner placed the left row there.
        let to_sender = |_: &str, _: &Bytes, r: &Response<Bytes>, _: i32| Some(r.partition);
        let r = b
            .topology
            .add_sink(
                &sink,
                &response_topic,
                SinkOptions::from_shared(bytes.clone(), resp_writer)
                    .with_partitioner(Some(Arc::new(to_sender))),
                &[&receive, &update],
            )
            .map(|_| ());
        b.check(r);

        // Back on the left side: join the responses still current.
        let resp_source = b.name("KTABLE-SOURCE-");
        let resp_reader: SharedSerde<Response<VO>> = Arc::new(ResponseSerde { value: vo.clone() });
        let r = b
            .topology
            .add_source(
                &resp_source,
                &[&response_topic],
                SourceOptions::from_shared(k.clone(), resp_reader),
            )
            .map(|_| ());
        b.check(r);
        let (joiner, vs, ls, rstore, f2) = (
            Arc::new(joiner),
            v.clone(),
            Arc::<str>::from(left_store.as_str()),
            Arc::<str>::from(result_store.as_str()),
            flag.clone(),
        );
        b.add_processor::<K, Response<VO>, _, _>(
            &resolve,
            move || FkResolve::<K, V, VO, VR, J> {
                joiner: joiner.clone(),
                value_serde: vs.clone(),
                left_store: ls.clone(),
                result_store: rstore.clone(),
                send_old: f2.load(Ordering::Relaxed),
                left: None,
                result: None,
                buf: Vec::new(),
                _p: PhantomData,
            },
            &[&resp_source, &to_local],
        );

        let supplier: Arc<dyn KeyValueStoreSupplier> = materialized
            .supplier
            .clone()
            .unwrap_or_else(|| Arc::new(StoreKind::default()));
        let internal = |name: &str| {
            KeyValueStoreBuilder::from_parts(name, supplier.clone(), bytes.clone(), bytes.clone())
        };
        let r = b
            .topology
            .add_state_store(
                KeyValueStoreBuilder::from_parts(&left_store, supplier.clone(), k.clone(), v),
                &[&send, &resolve],
            )
            .map(|_| ());
        b.check(r);
        let r = b
            .topology
            .add_state_store(internal(&right_store), &[&receive, &update])
            .map(|_| ());
        b.check(r);
        let r = b
            .topology
            .add_state_store(internal(&subscription_store), &[&receive, &update])
            .map(|_| ());
        b.check(r);
        b.add_store(
            &result_store,
            &materialized,
            k.clone(),
            vr.clone(),
            &resolve,
        );
        drop(b);
        KTable::new(
            self.b.clone(),
            resolve,
            Some(k),
            Some(vr),
            materialized.name.is_some().then_some(result_store),
            vec![flag],
        )
    }
}
