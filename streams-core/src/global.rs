//! Global stores: key-value stores fed from every partition of their source topic, on every instance, and
//! readable (never writable) by the processors of every task.
//!
//! A global store is Kafka Streams' `Topology#addGlobalStore`, the engine under `GlobalKTable`. It is not part of
//! any sub-topology and runs no task: its source topic *is* its changelog, so the store is never changelogged.
//! The runtime's global thread reads every partition of the topic with its own consumer, brings the store up to
//! the end of the topic before any stream thread processes a record, then keeps it up to date while the
//! application runs. The test driver applies records piped into a global topic at once.
//!
//! The store holds the topic's key and value bytes as they are: a record with a value stores it under its key, a
//! record with a null value deletes its key, a record with a null key is skipped. The store's serdes must
//! therefore be those the topic is written with.
//!
//! ```
//! use streams_core::{KeyValueStoreBuilder, Processor, ProcessorContext, ReadOnlyKeyValueStore, Record, Serdes,
//!     SinkOptions, SourceOptions, StoreKind, StreamsError, Topology, TopologyTestDriver};
//!
//! /// Replaces each order's product id by the product's name, read from the global store "products".
//! struct Enrich(Option<ReadOnlyKeyValueStore<String, String>>);
//! impl Processor<String, String> for Enrich {
//!     type KOut = String;
//!     type VOut = String;
//!     fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<(), StreamsError> {
//!         self.0 = Some(ctx.global_store("products")?);
//!         Ok(())
//!     }
//!     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>)
//!         -> Result<(), StreamsError> {
//!         let name = self.0.as_ref().unwrap().get(&r.value)?.unwrap_or_else(|| "?".into());
//!         ctx.forward(r.with_value(name))
//!     }
//! }
//!
//! let mut t = Topology::new();
//! t.add_global_store(
//!     KeyValueStoreBuilder::new("products", StoreKind::InMemory, Serdes::string(), Serdes::string()),
//!     "products-source",
//!     "products",
//! ).unwrap();
//! t.add_source("orders", &["orders"], SourceOptions::new(Serdes::string(), Serdes::string())).unwrap();
//! t.add_processor::<String, String, _, _>("enrich", || Enrich(None), &["orders"]).unwrap();
//! t.add_sink("out", "named-orders", SinkOptions::new(Serdes::string(), Serdes::string()), &["enrich"]).unwrap();
//!
//! let driver = TopologyTestDriver::builder(t).default_partitions(3).build().unwrap();
//! let products = driver.input_topic("products", Serdes::string(), Serdes::string());
//! let orders = driver.input_topic("orders", Serdes::string(), Serdes::string());
//! let out = driver.output_topic("named-orders", Serdes::string(), Serdes::string());
//! products.pipe_input("p1".into(), "kettle".into()).unwrap();
//! orders.pipe_input("o1".into(), "p1".into()).unwrap();
//! assert_eq!(out.read_key_value().unwrap(), Some(("o1".to_string(), "kettle".to_string())));
//! ```

use std::any::type_name;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use state_store::{
    share, BatchEntry, KeyValueStore, RocksDbResources, SharedKeyValueStore, StoreContext,
    StoreError,
};

use crate::error::StreamsError;
use crate::processor::{Data, ProcessorContext};
use crate::state::ReadOnlyKeyValueStore;
use crate::topology::{ErasedSerdes, KeyValueStoreBuilder, NodeKind, StoreDef, Topology};

/// A global store of a topology: the store, the name of its source node and the topic feeding it.
pub(crate) struct GlobalStoreDef {
    pub def: StoreDef,
    pub source: String,
    pub topic: String,
}

/// One global store of a topology, as printed by [`Topology::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreDescription {
    /// The store's name.
    pub store: String,
    /// The name of its source node.
    pub source: String,
    /// The topic feeding it.
    pub topic: String,
}

impl Topology {
    /// Adds a global store (Kafka Streams' `addGlobalStore`): a store fed from every partition of `topic`, on
    /// every instance, that the processors of every task can read with [`ProcessorContext::global_store`].
    ///
    /// The topic is the store's changelog: the store is never changelogged (the builder's logging and caching
    /// settings are ignored) and holds the topic's bytes as they are, so the builder's serdes must be those the
    /// topic is written with. `source_name` names the global source node in descriptions; like every node name
    /// it must be unique. A topic feeds one global store and cannot also be read by a source.
    pub fn add_global_store<K: 'static, V: 'static>(
        &mut self,
        builder: KeyValueStoreBuilder<K, V>,
        source_name: &str,
        topic: &str,
    ) -> Result<&mut Self, StreamsError> {
        let (name, supplier, key_serde, value_serde) = builder.into_parts();
        if name.is_empty() {
            return Err(StreamsError::InvalidTopology(
                "a global store needs a name".into(),
            ));
        }
        if topic.is_empty() {
            return Err(StreamsError::InvalidTopology(format!(
                "global store '{name}' names an empty topic"
            )));
        }
        if source_name.is_empty() {
            return Err(StreamsError::InvalidTopology(format!(
                "the source of global store '{name}' needs a name"
            )));
        }
        if self.stores.contains_key(&name) || self.global_stores.contains_key(&name) {
            return Err(StreamsError::DuplicateName(name));
        }
        if self.index_of(source_name).is_some()
            || self.global_stores.values().any(|g| g.source == source_name)
        {
            return Err(StreamsError::DuplicateName(source_name.to_string()));
        }
        if let Some(g) = self.global_stores.values().find(|g| g.topic == topic) {
            return Err(StreamsError::InvalidTopology(format!(
                "topic '{topic}' already feeds global store '{}'; a topic feeds one global store",
                g.def.name
            )));
        }
        if let Some(n) = self.nodes.iter().find(
            |n| matches!(&n.kind, NodeKind::Source { topics } if topics.iter().any(|t| t == topic)),
        ) {
            return Err(StreamsError::InvalidTopology(format!(
                "topic '{topic}' is read by source '{}' and cannot also feed global store '{name}'",
                n.name
            )));
        }
        if self.is_internal_topic(topic) {
            return Err(StreamsError::InvalidTopology(format!(
                "global store '{name}' cannot read internal topic '{topic}'"
            )));
        }
        self.global_stores.insert(
            name.clone(),
            GlobalStoreDef {
                def: StoreDef {
                    name,
                    supplier,
                    serdes: ErasedSerdes::new(key_serde, value_serde),
                    key_type: type_name::<K>(),
                    value_type: type_name::<V>(),
                    logging: false,
                    caching: false,
                    source_changelog: None,
                    processors: Vec::new(),
                },
                source: source_name.to_string(),
                topic: topic.to_string(),
            },
        );
        Ok(self)
    }

    /// The global stores, each with the topic feeding it, by store name.
    pub fn global_stores(&self) -> impl Iterator<Item = GlobalStoreDescription> + '_ {
        self.global_stores.values().map(|g| GlobalStoreDescription {
            store: g.def.name.clone(),
            source: g.source.clone(),
            topic: g.topic.clone(),
        })
    }

    /// Whether `store` is a global store.
    pub fn is_global_store(&self, store: &str) -> bool {
        self.global_stores.contains_key(store)
    }

    /// Whether `topic` feeds a global store.
    pub fn is_global_topic(&self, topic: &str) -> bool {
        self.global_stores.values().any(|g| g.topic == topic)
    }
}

/// The key and value type names a store holds, for type-mismatch messages.
type StoredTypes = (&'static str, &'static str);

/// One opened global store.
pub(crate) struct GlobalSlot {
    pub name: String,
    pub topic: String,
    pub store: SharedKeyValueStore,
    pub persistent: bool,
    serdes: crate::topology::ErasedSerdes,
    key_type: &'static str,
    value_type: &'static str,
}

/// The opened global stores of an instance (or a test driver), shared by every task of every thread. Each store
/// sits behind its own lock; readers hold it for one lookup.
#[derive(Default)]
pub(crate) struct GlobalStores {
    slots: Vec<GlobalSlot>,
}

impl GlobalStores {
    /// No global stores.
    pub(crate) fn empty() -> Arc<Self> {
        Arc::new(GlobalStores::default())
    }

    /// Opens every global store of `topology` under `dir/<store>`. A persistent store for which `keep` answers
    /// false is wiped first (its content is of unknown age); one that cannot be opened is wiped and reopened.
    /// Returns the stores and the names of those that start empty.
    pub(crate) fn open(
        topology: &Topology,
        dir: &Path,
        rocksdb: &RocksDbResources,
        keep: impl Fn(&str) -> bool,
        mut forget: impl FnMut(&str) -> Result<(), StreamsError>,
    ) -> Result<(Self, Vec<String>), StreamsError> {
        let mut slots = Vec::new();
        let mut fresh = Vec::new();
        for g in topology.global_stores.values() {
            let def = &g.def;
            let store_dir = dir.join(&def.name);
            let persistent = def.supplier.persistent();
            let wipe = |d: &Path| -> Result<(), StreamsError> {
                if d.exists() {
                    std::fs::remove_dir_all(d).map_err(|source| StreamsError::Io {
                        path: d.display().to_string(),
                        source,
                    })?;
                }
                Ok(())
            };
            let mut starts_empty = !persistent;
            if persistent && !keep(&def.name) {
                forget(&def.name)?;
                wipe(&store_dir)?;
                starts_empty = true;
            }
            let open = || {
                def.supplier.open(
                    &def.name,
                    &StoreContext {
                        dir: &store_dir,
                        rocksdb,
                        key_suffix_len: 0,
                    },
                )
            };
            let store = match open() {
                Ok(s) => s,
                // Only damaged files are wiped; a store held by another process is an error (the application
                // directory lock normally keeps other instances out).
                Err(e @ StoreError::Corrupt { .. }) if persistent => {
                    tracing::warn!(store = %def.name, error = %e, "the global store is corrupt; wiping it and re-reading its topic");
                    forget(&def.name)?;
                    wipe(&store_dir)?;
                    starts_empty = true;
                    open()?
                }
                Err(e) => return Err(e.into()),
            };
            if starts_empty {
                fresh.push(def.name.clone());
            }
            slots.push(GlobalSlot {
                name: def.name.clone(),
                topic: g.topic.clone(),
                store: share(store),
                persistent,
                serdes: def.serdes.clone(),
                key_type: def.key_type,
                value_type: def.value_type,
            });
        }
        Ok((GlobalStores { slots }, fresh))
    }

    /// The stores.
    pub(crate) fn slots(&self) -> &[GlobalSlot] {
        &self.slots
    }

    /// The store named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&GlobalSlot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// A typed read-only view of store `name`; `None` when there is no such global store.
    pub(crate) fn view<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Option<Result<ReadOnlyKeyValueStore<K, V>, StoredTypes>> {
        let slot = self.get(name)?;
        Some(match slot.serdes.get::<K, V>() {
            Some(serdes) => Ok(ReadOnlyKeyValueStore::from_parts(
                name,
                vec![slot.store.clone()],
                serdes.key.clone(),
                serdes.value.clone(),
            )),
            None => Err((slot.key_type, slot.value_type)),
        })
    }

    /// Flushes every store.
    pub(crate) fn flush(&self) -> Result<(), StreamsError> {
        for s in &self.slots {
            lock(s)?.flush()?;
        }
        Ok(())
    }

    /// Flushes and closes every store.
    pub(crate) fn close(&self) -> Result<(), StreamsError> {
        let mut first = None;
        for s in &self.slots {
            if let Err(e) = lock(s).and_then(|mut st| st.close().map_err(Into::into)) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Locks one global store.
pub(crate) fn lock(
    slot: &GlobalSlot,
) -> Result<std::sync::MutexGuard<'_, Box<dyn KeyValueStore>>, StreamsError> {
    slot.store.lock().map_err(|_| {
        StreamsError::Store(StoreError::Poisoned {
            store: slot.name.clone(),
        })
    })
}

/// Applies records of a global topic to its store in one batch: a value puts, a null value deletes; records
/// with a null key are left out by the caller.
pub(crate) fn apply(slot: &GlobalSlot, batch: &[BatchEntry<'_>]) -> Result<(), StreamsError> {
    if batch.is_empty() {
        return Ok(());
    }
    lock(slot)?.write_batch(batch)?;
    Ok(())
}

impl<K: Data, V: Data> ProcessorContext<K, V> {
    /// A read-only typed view of the global store `store` (see [`Topology::add_global_store`]). Every processor
    /// of every task can read every global store; the view holds every key, whatever the task's partition.
    /// Fetch it in [`Processor::init`](crate::Processor::init) and keep it: a lookup locks the store for its
    /// duration only.
    pub fn global_store<SK: 'static, SV: 'static>(
        &self,
        store: &str,
    ) -> Result<ReadOnlyKeyValueStore<SK, SV>, StreamsError> {
        let err = |reason: String| StreamsError::StoreAccess {
            processor: self.name.to_string(),
            store: store.to_string(),
            reason,
        };
        match self.shared.globals.view::<SK, SV>(store) {
            Some(Ok(view)) => Ok(view),
            Some(Err((k, v))) => Err(err(format!(
                "the global store holds <{k}, {v}> but <{}, {}> was requested",
                type_name::<SK>(),
                type_name::<SV>()
            ))),
            None => Err(err(
                "no such global store; add it with Topology::add_global_store or StreamsBuilder::global_table"
                    .into(),
            )),
        }
    }
}

/// For the test driver: `topic` -> index of its global store.
pub(crate) fn topic_index(stores: &GlobalStores) -> HashMap<String, usize> {
    stores
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.topic.clone(), i))
        .collect()
}

/// Prints the global stores after the sub-topologies, as Kafka Streams prints its global sub-topologies.
pub(crate) fn describe_global_stores(
    f: &mut std::fmt::Formatter<'_>,
    d: &crate::topology::TopologyDescription,
) -> std::fmt::Result {
    for g in &d.global_stores {
        writeln!(f, "   Global store: {} (will not generate tasks)", g.store)?;
        writeln!(f, "    Source: {} (topics: [{}])", g.source, g.topic)?;
        writeln!(f)?;
    }
    Ok(())
}
