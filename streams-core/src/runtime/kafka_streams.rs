//! `KafkaStreams`: an application instance running a topology against a Kafka cluster.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use state_store::RocksDbResources;

use crate::error::StreamsError;
use crate::runtime::admin::TopicManager;
use crate::runtime::config::StreamsConfig;
use crate::runtime::embedded::{EmbeddedAdmin, EmbeddedKafka};
use crate::runtime::global::{self, GlobalThread};
use crate::runtime::history::{MetricsHistory, MetricsSample};
use crate::runtime::metadata::{Joining, KeyQueryMetadata, MetadataService, StreamsMetadata};
use crate::runtime::restore::{NoopRestoreListener, StateRestoreListener};
use crate::runtime::task_manager::Routing;
use crate::runtime::thread::{self, ThreadContext, ThreadShared, ThreadState};
use crate::runtime::thread_metadata::ThreadMetadata;
use crate::topology::Topology;

/// The lifecycle of a `KafkaStreams` instance, as in Kafka Streams.
///
/// `Created -> Rebalancing <-> Running -> PendingShutdown -> NotRunning`; a fatal error goes through
/// `PendingError` to `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Constructed, not started.
    Created,
    /// Threads are joining the group or restoring state.
    Rebalancing,
    /// Every thread is processing.
    Running,
    /// `close` was called; threads are committing and stopping.
    PendingShutdown,
    /// Stopped after `close`.
    NotRunning,
    /// A fatal error occurred; threads are stopping.
    PendingError,
    /// Stopped after a fatal error.
    Error,
}

/// What to do when a stream thread fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UncaughtErrorAction {
    /// Start a new thread in place of the failed one.
    ReplaceThread,
    /// Stop every thread of this instance and move to `Error` (the default).
    ShutdownClient,
}

/// How long `start` waits for a first answer from the cluster.
const CONNECTION_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

type StateListener = Arc<dyn Fn(State, State) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(&StreamsError) -> UncaughtErrorAction + Send + Sync>;

struct ThreadSlot {
    shared: Arc<ThreadShared>,
    handle: Option<JoinHandle<()>>,
}

struct Inner {
    topology: Arc<Topology>,
    config: StreamsConfig,
    embedded: Option<EmbeddedAdmin>,
    state: Mutex<State>,
    listener: Mutex<Option<StateListener>>,
    error_handler: Mutex<ErrorHandler>,
    restore_listener: Mutex<Arc<dyn StateRestoreListener>>,
    threads: Mutex<Vec<ThreadSlot>>,
    context: Mutex<Option<Arc<ThreadContext>>>,
    next_thread: Mutex<usize>,
    errors: Mutex<Vec<String>>,
    instance_id: String,
    metadata: Mutex<Option<Arc<MetadataService>>>,
    /// The global stream thread and the global stores, once started.
    global: Mutex<Option<Arc<GlobalThread>>>,
    /// The lock on `state.dir/<application.id>` while this instance may write there.
    dir_lock: Mutex<Option<std::fs::File>>,
    /// Throughput and commit latency, per 10 seconds.
    history: Arc<MetricsHistory>,
    /// The RocksDB memory budget (`rocksdb.memory.bytes`) that every store of the instance shares: the stores of
    /// every thread's tasks and the global stores, across restarts of the instance.
    rocksdb: RocksDbResources,
    /// The standby placement loop (see [`crate::runtime::standby`]): its stop flag and thread.
    standby_loop: Mutex<Option<(Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>)>>,
}

impl Inner {
    /// Stops placing standbys and stops every standby task (each checkpoints what it read).
    fn stop_standbys(&self) {
        if let Some((stop, handle)) = self.standby_loop.lock().ok().and_then(|mut l| l.take()) {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
        if let Some(ctx) = self.context.lock().ok().and_then(|c| c.clone()) {
            ctx.standbys.shutdown();
        }
    }

    /// The group member ids of this instance's stream threads' consumers.
    fn member_ids(&self) -> Vec<String> {
        let Ok(threads) = self.threads.lock() else {
            return Vec::new();
        };
        threads
            .iter()
            .filter(|t| t.handle.as_ref().is_some_and(|h| !h.is_finished()))
            .filter_map(|t| t.shared.member_id.lock().ok().and_then(|id| id.clone()))
            .collect()
    }

    /// The tasks this instance's stream threads hold, restoring or running.
    fn local_tasks(&self) -> std::collections::BTreeSet<crate::processor::TaskId> {
        let Ok(threads) = self.threads.lock() else {
            return Default::default();
        };
        threads
            .iter()
            .filter_map(|t| {
                t.shared
                    .snapshot
                    .lock()
                    .ok()
                    .map(|s| s.tasks.keys().copied().collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }

    fn leave_metadata(&self) {
        if let Some(m) = self.metadata.lock().ok().and_then(|mut m| m.take()) {
            m.leave();
        }
        if let Some(own) = self
            .context
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.ownership.get().cloned()))
        {
            own.leave();
        }
    }
}

/// Runs a [`Topology`] against Kafka: one consumer group (the application id), `num.stream.threads` threads, one
/// task per partition of each sub-topology, state in changelogged stores restored on assignment.
///
/// ```no_run
/// use streams_core::runtime::{EmbeddedKafka, KafkaStreams, StreamsConfig};
/// # fn topology() -> streams_core::Topology { unimplemented!() }
///
/// let kafka = EmbeddedKafka::start().unwrap();
/// kafka.create_topic("input", 2).unwrap();
/// let streams = KafkaStreams::new(topology(), StreamsConfig::embedded("my-app", &kafka)).unwrap();
/// streams.set_state_listener(|old, new| println!("{old:?} -> {new:?}"));
/// streams.start().unwrap();
/// // ...
/// streams.close(std::time::Duration::from_secs(10));
/// ```
pub struct KafkaStreams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.inner.config.application_id)
            .field("state", &self.state())
            .finish()
    }
}

impl StreamsConfig {
    /// A configuration for the embedded broker: its bootstrap servers, and internal topics created through it.
    pub fn embedded(
        application_id: impl Into<String>,
        kafka: &EmbeddedKafka,
    ) -> (StreamsConfig, EmbeddedAdmin) {
        (
            StreamsConfig::new(application_id, kafka.bootstrap_servers()),
            kafka.admin(),
        )
    }
}

/// Where internal topics are created: through the Admin API, or through the embedded broker.
pub trait IntoStreamsSetup {
    /// The configuration and, for the embedded broker, its topic admin.
    fn into_setup(self) -> (StreamsConfig, Option<EmbeddedAdmin>);
}

impl IntoStreamsSetup for StreamsConfig {
    fn into_setup(self) -> (StreamsConfig, Option<EmbeddedAdmin>) {
        (self, None)
    }
}

impl IntoStreamsSetup for (StreamsConfig, Option<EmbeddedAdmin>) {
    fn into_setup(self) -> (StreamsConfig, Option<EmbeddedAdmin>) {
        self
    }
}

impl IntoStreamsSetup for (StreamsConfig, EmbeddedAdmin) {
    fn into_setup(self) -> (StreamsConfig, Option<EmbeddedAdmin>) {
        (self.0, Some(self.1))
    }
}

impl Inner {
    fn transition(&self, to: State) -> bool {
        let from = {
            let Ok(mut s) = self.state.lock() else {
                return false;
            };
            let from = *s;
            let allowed = match (from, to) {
                (a, b) if a == b => false,
                (
                    State::Created,
                    State::Rebalancing | State::PendingShutdown | State::PendingError,
                ) => true,
                (State::Rebalancing | State::Running, State::Rebalancing | State::Running) => true,
                (
                    State::Rebalancing | State::Running,
                    State::PendingShutdown | State::PendingError,
                ) => true,
                (State::PendingShutdown, State::NotRunning) => true,
                (State::PendingError, State::Error) => true,
                _ => false,
            };
            if !allowed {
                return false;
            }
            *s = to;
            from
        };
        tracing::info!(application = %self.config.application_id, ?from, ?to, "state change");
        let listener = self.listener.lock().ok().and_then(|l| l.clone());
        if let Some(l) = listener {
            l(from, to);
        }
        true
    }

    fn on_thread_state_change(&self) {
        let Ok(threads) = self.threads.lock() else {
            return;
        };
        let states: Vec<ThreadState> = threads
            .iter()
            .filter_map(|t| t.shared.state.lock().ok().map(|s| *s))
            .collect();
        drop(threads);
        if states.is_empty() {
            return;
        }
        let running = states
            .iter()
            .all(|s| *s == ThreadState::Running || *s == ThreadState::Dead)
            && states.contains(&ThreadState::Running);
        self.transition(if running {
            State::Running
        } else {
            State::Rebalancing
        });
    }
}

impl KafkaStreams {
    /// An instance that will run `topology` with `config` (or `StreamsConfig::embedded(..)` for the embedded
    /// broker). Validates the configuration and the topology; contacts no broker yet.
    pub fn new(topology: Topology, setup: impl IntoStreamsSetup) -> Result<Self, StreamsError> {
        let (config, embedded) = setup.into_setup();
        let instance_id = format!(
            "{}-{}-{}",
            config.application_id,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        config.validate()?;
        topology.validate()?;
        let config_rocksdb_bytes = config.rocksdb_memory_bytes;
        Ok(KafkaStreams {
            inner: Arc::new(Inner {
                topology: Arc::new(topology),
                config,
                embedded,
                state: Mutex::new(State::Created),
                listener: Mutex::new(None),
                error_handler: Mutex::new(Arc::new(|_| UncaughtErrorAction::ShutdownClient)),
                restore_listener: Mutex::new(Arc::new(NoopRestoreListener)),
                threads: Mutex::new(Vec::new()),
                context: Mutex::new(None),
                next_thread: Mutex::new(1),
                errors: Mutex::new(Vec::new()),
                instance_id,
                metadata: Mutex::new(None),
                global: Mutex::new(None),
                dir_lock: Mutex::new(None),
                history: Arc::new(MetricsHistory::default()),
                rocksdb: RocksDbResources::new(config_rocksdb_bytes, config_rocksdb_bytes / 2),
                standby_loop: Mutex::new(None),
            }),
        })
    }

    /// The bytes of the RocksDB memory budget (`rocksdb.memory.bytes`) in use: cached blocks and memtables of
    /// every RocksDB store of this instance, task and global stores alike, which share the one budget.
    pub fn rocksdb_memory_usage_bytes(&self) -> usize {
        self.inner.rocksdb.usage_bytes()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state.lock().map_or(State::Error, |s| *s)
    }

    /// Calls `listener(old, new)` on every state change.
    pub fn set_state_listener(&self, listener: impl Fn(State, State) + Send + Sync + 'static) {
        if let Ok(mut l) = self.inner.listener.lock() {
            *l = Some(Arc::new(listener));
        }
    }

    /// Decides what happens when a stream thread fails (default: shut the instance down).
    pub fn set_uncaught_error_handler(
        &self,
        handler: impl Fn(&StreamsError) -> UncaughtErrorAction + Send + Sync + 'static,
    ) {
        if let Ok(mut h) = self.inner.error_handler.lock() {
            *h = Arc::new(handler);
        }
    }

    /// Receives restoration progress (set before `start`).
    pub fn set_restore_listener(&self, listener: impl StateRestoreListener) {
        if let Ok(mut l) = self.inner.restore_listener.lock() {
            *l = Arc::new(listener);
        }
    }

    /// Counters summed over every thread and task of this instance: records processed, skipped (bad records
    /// the handler let pass, null table keys), dead-lettered, punctuations.
    pub fn metrics(&self) -> crate::task::TaskMetricsSnapshot {
        let Ok(threads) = self.inner.threads.lock() else {
            return Default::default();
        };
        thread::sum_metrics(
            threads
                .iter()
                .filter_map(|t| t.shared.metrics.lock().ok().map(|m| *m)),
        )
    }

    /// What each stream thread of this instance runs now (Kafka Streams' `metadataForLocalThreads`): its state,
    /// its active tasks with their input partitions (committed offset, position, end offset, lag) and their
    /// restoration progress. Threads refresh these at most once a second and at each commit, so the figures
    /// may be a second old. Standby copies run beside the threads (see [`KafkaStreams::standby_lags`]): the
    /// standby lists are empty.
    pub fn metadata_for_local_threads(&self) -> Vec<ThreadMetadata> {
        let Ok(threads) = self.inner.threads.lock() else {
            return Vec::new();
        };
        threads.iter().map(|t| t.shared.thread_metadata()).collect()
    }

    /// Throughput and commit latency of this instance, one sample per
    /// [`SAMPLE_INTERVAL`](crate::runtime::SAMPLE_INTERVAL) (10 s) for the last 5 minutes, oldest first; the
    /// last sample is the window in progress, shorter than the others.
    pub fn metrics_history(&self) -> Vec<MetricsSample> {
        self.inner.history.samples()
    }

    /// The topology this instance runs.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The `application.id`.
    pub fn application_id(&self) -> &str {
        &self.inner.config.application_id
    }

    /// A read-only view of store `name` over every task of this instance that holds a part of it (local
    /// partitions only). Available while the instance is `Running`; while it rebalances or restores, or before
    /// it starts, the error says so and the call can be retried.
    pub fn store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlyKeyValueStore<K, V>, StreamsError> {
        let state = self.state();
        if state == State::Running && self.inner.topology.is_global_store(name) {
            // Every instance holds every key of a global store.
            let part = self.inner.global.lock().ok().and_then(|g| {
                g.as_ref()
                    .and_then(|g| g.stores.get(name).map(|s| s.store.clone()))
            });
            return crate::ReadOnlyKeyValueStore::new(
                &self.inner.topology,
                name,
                part.into_iter().collect(),
            );
        }
        let parts = self.local_parts(name, state)?;
        crate::ReadOnlyKeyValueStore::new(&self.inner.topology, name, parts)
    }

    /// A read-only view of store `name` as `params` allow. With [`StoreQueryParameters::enable_stale_stores`]
    /// the view also reads the standby copies this instance keeps (`num.standby.replicas`; a little behind
    /// their active tasks, see [`KafkaStreams::standby_lags`]) and the stores of the tasks its threads keep
    /// through a rebalance, and answers while the instance rebalances or restores: a query keeps an answer,
    /// possibly stale, while tasks move. Without it, this is [`KafkaStreams::store`].
    ///
    /// ```no_run
    /// use streams_core::runtime::{KafkaStreams, StoreQueryParameters};
    /// # fn f(streams: &KafkaStreams) -> Result<(), streams_core::StreamsError> {
    /// let params = StoreQueryParameters::from_name("page-counts").enable_stale_stores();
    /// let counts = streams.store_with::<String, i64>(&params)?;
    /// println!("{:?}", counts.get(&"/home".to_string())?);
    /// # Ok(()) }
    /// ```
    pub fn store_with<K: 'static, V: 'static>(
        &self,
        params: &StoreQueryParameters,
    ) -> Result<crate::ReadOnlyKeyValueStore<K, V>, StreamsError> {
        if !params.stale || self.inner.topology.is_global_store(&params.name) {
            return self.store(&params.name);
        }
        let (mut parts, standby) = self.stale_parts(&params.name)?;
        parts.extend(standby);
        crate::ReadOnlyKeyValueStore::new(&self.inner.topology, &params.name, parts)
    }

    /// For a stale query of store `name`: the parts the threads hold (running, or kept through a rebalance),
    /// and the standby copies. Unavailable before the instance starts and once it stops.
    pub(crate) fn stale_parts(
        &self,
        name: &str,
    ) -> Result<
        (
            Vec<state_store::SharedKeyValueStore>,
            Vec<state_store::SharedKeyValueStore>,
        ),
        StreamsError,
    > {
        let state = self.state();
        if !matches!(state, State::Running | State::Rebalancing) {
            return Err(StreamsError::StoreUnavailable {
                store: name.to_string(),
                reason: format!("the instance is {state:?}, not Running or Rebalancing"),
            });
        }
        // The copies first: a copy handed to its active task leaves them only once the task's stores are with
        // the threads, so one of the two lists has it.
        let standby = self
            .inner
            .context
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.standbys.stores_named(name)))
            .unwrap_or_default();
        let active = self.thread_parts(name)?;
        Ok((active, standby))
    }

    /// The parts of store `name` this instance's threads hold, while the instance is `Running`.
    fn local_parts(
        &self,
        name: &str,
        state: State,
    ) -> Result<Vec<state_store::SharedKeyValueStore>, StreamsError> {
        if state != State::Running {
            let reason = match state {
                State::Rebalancing => {
                    "the instance is rebalancing or restoring state; retry shortly".to_string()
                }
                other => format!("the instance is {other:?}, not Running"),
            };
            return Err(StreamsError::StoreUnavailable {
                store: name.to_string(),
                reason,
            });
        }
        self.thread_parts(name)
    }

    /// The parts of store `name` the tasks of this instance's threads hold now.
    fn thread_parts(
        &self,
        name: &str,
    ) -> Result<Vec<state_store::SharedKeyValueStore>, StreamsError> {
        let threads = self
            .inner
            .threads
            .lock()
            .map_err(|_| StreamsError::processor("poisoned"))?;
        Ok(threads
            .iter()
            .flat_map(|t| t.shared.stores_named(name))
            .collect())
    }

    /// A read-only view of versioned store `name` (a versioned source table's, or one added with
    /// `Topology::add_versioned_state_store`) over the parts this instance holds: the latest version of a key or
    /// the version valid at a time. Available as [`KafkaStreams::store`] is.
    pub fn versioned_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlyVersionedKeyValueStore<K, V>, StreamsError> {
        let parts = self.local_parts(name, self.state())?;
        crate::ReadOnlyVersionedKeyValueStore::new(&self.inner.topology, name, parts)
    }

    /// A read-only view of window store `name` (a time- or sliding-windowed aggregation's), over the parts
    /// this instance holds; available as [`KafkaStreams::store`] is.
    pub fn window_store<K: Clone + 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlyWindowStore<K, V>, StreamsError> {
        Ok(crate::ReadOnlyWindowStore::new(
            self.store::<state_store::Windowed<K>, V>(name)?,
        ))
    }

    /// A read-only view of session store `name` (a session-windowed aggregation's), over the parts this
    /// instance holds; available as [`KafkaStreams::store`] is.
    pub fn session_store<K: Clone + 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::ReadOnlySessionStore<K, V>, StreamsError> {
        Ok(crate::ReadOnlySessionStore::new(
            self.store::<state_store::Windowed<K>, V>(name)?,
        ))
    }

    /// This instance's id in the metadata.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The address this instance advertises for queries (`application.server`), if set.
    pub fn application_server(&self) -> Option<&str> {
        self.inner.config.application_server.as_deref()
    }

    /// How far behind its changelog each standby copy kept on this instance is (`num.standby.replicas`): store
    /// name -> partition -> lag. Empty without standbys; a standby still opening its stores is not listed yet.
    ///
    /// ```no_run
    /// # fn f(streams: &streams_core::runtime::KafkaStreams) {
    /// for (store, partitions) in streams.standby_lags() {
    ///     for (partition, lag) in partitions {
    ///         println!("{store}-{partition}: {} records behind", lag.offset_lag);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn standby_lags(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<i32, crate::runtime::LagInfo>>
    {
        let mut out: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, _>> =
            Default::default();
        let Some(ctx) = self.inner.context.lock().ok().and_then(|c| c.clone()) else {
            return out;
        };
        for ((store, partition), (at, end)) in ctx.standbys.progress() {
            out.entry(store).or_default().insert(
                partition,
                crate::runtime::LagInfo {
                    current_offset_position: at,
                    end_offset_position: end,
                    offset_lag: (end - at).max(0),
                },
            );
        }
        out
    }

    /// Every running instance of the application (this one included) with its `application.server`, its
    /// partitions and the stores it holds parts of; empty before `start`.
    pub fn all_metadata(&self) -> Vec<StreamsMetadata> {
        let Some(m) = self.inner.metadata.lock().ok().and_then(|m| m.clone()) else {
            return Vec::new();
        };
        let app = &self.inner.config.application_id;
        let subs = self.inner.topology.sub_topologies();
        m.instances()
            .into_iter()
            .map(|mut meta| {
                meta.stores = subs
                    .iter()
                    .filter(|s| {
                        s.source_topics.iter().any(|t| {
                            let full = self.inner.topology.resolve_topic(app, t);
                            meta.partitions.iter().any(|(pt, _)| *pt == full)
                        })
                    })
                    .flat_map(|s| s.stores.iter().cloned())
                    .collect();
                meta
            })
            .collect()
    }

    /// The instances holding a part of `store`.
    pub fn metadata_for_store(&self, store: &str) -> Vec<StreamsMetadata> {
        self.all_metadata()
            .into_iter()
            .filter(|m| m.stores.contains(store))
            .collect()
    }

    /// Which partition `key` of `store` falls in (murmur2 of the key bytes, as the default partitioner) and which
    /// instance owns it now.
    pub fn query_metadata_for_key<K: 'static>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn crate::Serde<K>,
    ) -> Result<KeyQueryMetadata, StreamsError> {
        let inner = &self.inner;
        let app = &inner.config.application_id;
        let sub = inner
            .topology
            .sub_topologies()
            .into_iter()
            .find(|s| s.stores.iter().any(|x| x == store))
            .ok_or_else(|| StreamsError::UnknownStore {
                store: store.to_string(),
                hint: String::new(),
            })?;
        let tasks = inner
            .context
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.plan.task_counts[sub.id]))
            .ok_or_else(|| StreamsError::StoreUnavailable {
                store: store.to_string(),
                reason: "the instance has not started".into(),
            })?;
        let mut bytes = Vec::new();
        key_serde.serialize(key, &mut bytes).map_err(|source| {
            StreamsError::Store(state_store::StoreError::Serde {
                store: store.to_string(),
                source,
            })
        })?;
        let partition = crate::default_partition(&bytes, tasks);
        let topics: Vec<String> = sub
            .source_topics
            .iter()
            .map(|t| inner.topology.resolve_topic(app, t))
            .collect();
        let holds = |parts: &std::collections::BTreeSet<(String, i32)>| {
            parts
                .iter()
                .any(|(t, p)| *p == partition && topics.contains(t))
        };
        let all = self.all_metadata();
        let active = all.iter().find(|m| holds(&m.partitions)).cloned();
        let standbys = all
            .into_iter()
            .filter(|m| holds(&m.standby_partitions) && !holds(&m.partitions))
            .collect();
        Ok(KeyQueryMetadata {
            partition,
            active,
            standbys,
        })
    }

    /// Like [`KafkaStreams::query_metadata_for_key`], with the store's own key serde.
    pub fn query_metadata_for_store_key<K: 'static, V: 'static>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<KeyQueryMetadata, StreamsError> {
        let serdes = self.inner.topology.store_serdes::<K, V>(store)?;
        let key_serde = serdes.key.clone();
        self.query_metadata_for_key(store, key, &*key_serde)
    }

    /// Messages of the errors that stopped threads, oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.inner
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Checks that the cluster answers, creates or checks the internal topics, then starts the stream threads.
    /// Returns once they are started; watch [`KafkaStreams::state`] (or the listener) for `Running`.
    ///
    /// A broker that refuses the TLS handshake or the SASL credentials fails the call within seconds with
    /// [`StreamsError::Connection`], naming the broker and the setting to check (`ssl.ca.location` when its
    /// certificate cannot be verified, `sasl.username` and `sasl.password` when authentication fails); a
    /// cluster that does not answer at all fails it after 30 seconds. The instance stays `Created`, its state
    /// directory unlocked, and `start()` may be called again.
    pub fn start(&self) -> Result<(), StreamsError> {
        let inner = &self.inner;
        if self.state() != State::Created {
            return Err(StreamsError::Config {
                key: "state".into(),
                message: format!(
                    "start() needs a Created instance; this one is {:?}",
                    self.state()
                ),
            });
        }
        if has_persistent_state(&inner.topology) {
            let lock = lock_state_dir(&inner.config)?;
            if let Ok(mut l) = inner.dir_lock.lock() {
                *l = Some(lock);
            }
        }
        let started = self.start_locked();
        if started.is_err() && self.state() == State::Created {
            // Nothing was started: release the state directory, so `start()` can be called again (once the
            // cluster answers, say) on this instance or another one.
            if let Ok(mut l) = inner.dir_lock.lock() {
                *l = None;
            }
        }
        started
    }

    /// [`KafkaStreams::start`] once the state directory is locked.
    fn start_locked(&self) -> Result<(), StreamsError> {
        let inner = &self.inner;
        let app = &inner.config.application_id;
        let admin = TopicManager::new(&inner.config, inner.embedded.clone())?;
        // Fail fast on a broker that cannot be reached, or refuses the TLS handshake or the credentials:
        // librdkafka alone would retry forever.
        admin.check_connection(CONNECTION_CHECK_TIMEOUT)?;
        let plan = inner
            .topology
            .partition_plan(app, |t| admin.source_partitions(t))?;
        admin.ensure(&plan)?;
        admin.ensure_compacted_topic(&MetadataService::topic(app))?;
        let metadata = Arc::new(MetadataService::start(
            &inner.config,
            inner.instance_id.clone(),
        )?);
        let metadata_for_standbys = metadata.clone();
        let metadata_for_warm_up = metadata.clone();
        if let Ok(mut m) = inner.metadata.lock() {
            *m = Some(metadata.clone());
        }
        let globals = start_global(inner, &admin)?;
        let subs = inner.topology.sub_topologies();
        let routing = Routing::new(&inner.topology, &subs, &plan, app);
        let ctx = Arc::new(ThreadContext {
            topology: inner.topology.clone(),
            subs: Arc::new(subs),
            plan: Arc::new(plan),
            routing,
            config: inner.config.clone(),
            rocksdb: inner.rocksdb.clone(),
            on_assignment: Arc::new(
                move |thread: &str, parts: Vec<(String, i32)>, member: Option<String>| {
                    metadata.on_assignment(thread, parts, member)
                },
            ),
            restore_listener: inner
                .restore_listener
                .lock()
                .map(|l| l.clone())
                .map_err(|_| StreamsError::processor("listener lock poisoned"))?,
            globals,
            history: inner.history.clone(),
            process_id: Arc::from(process_id(
                &inner.config,
                has_persistent_state(&inner.topology),
            )?),
            aborted: Arc::default(),
            standbys: Arc::new(crate::runtime::standby::Standbys::new(
                inner.config.num_standby_replicas,
            )),
            ownership: std::sync::OnceLock::new(),
        });
        if let Ok(mut c) = inner.context.lock() {
            *c = Some(ctx.clone());
        }
        if inner.config.task_ownership == crate::runtime::config::TaskOwnership::Library {
            admin.ensure_compacted_topic(&crate::runtime::ownership::Ownership::topic(app))?;
            return Self::start_library_ownership(inner, &ctx, metadata_for_standbys);
        }
        let standbys =
            ctx.standbys.replicas() > 0 && standby_subtopologies(&ctx).iter().any(|&r| r);
        if standbys {
            let consumers = Self::member_id_prefixes(inner, &ctx);
            // The first announcement (at the first assignment) already carries the process id, the key the
            // placement ranks this instance by.
            metadata_for_standbys.set_standbys(&ctx.process_id, Vec::new(), Vec::new());
            // Until its threads join the group, the instance announces itself as joining, with where its
            // consumers will sit in the group: the others then know which tasks it will be given.
            metadata_for_standbys.set_joining(Some(Joining {
                consumers: consumers.clone(),
                ready: false,
            }));
            ctx.standbys.start(ctx.clone())?;
            Self::start_standby_placement(inner, &ctx, metadata_for_standbys)?;
            inner.transition(State::Rebalancing);
            return Self::start_warm_up(inner, &ctx, metadata_for_warm_up, consumers);
        }
        inner.transition(State::Rebalancing);
        for _ in 0..inner.config.num_stream_threads {
            Self::spawn_thread(inner, &ctx)?;
        }
        Ok(())
    }

    /// `task.ownership=library`: joins the ownership protocol (see [`crate::runtime::ownership`]), keeps the
    /// standby copies it is given, and starts the stream threads, which take on the tasks it is granted.
    fn start_library_ownership(
        inner: &Arc<Inner>,
        ctx: &Arc<ThreadContext>,
        metadata: Arc<MetadataService>,
    ) -> Result<(), StreamsError> {
        use crate::processor::TaskId;
        use std::collections::{BTreeMap, BTreeSet};
        let eligible = standby_subtopologies(ctx);
        let mut all_tasks = BTreeSet::new();
        let mut stateful = BTreeSet::new();
        for (sub, &count) in ctx.plan.task_counts.iter().enumerate() {
            for partition in 0..count {
                let t = TaskId {
                    subtopology: sub,
                    partition,
                };
                all_tasks.insert(t);
                if eligible.get(sub).copied().unwrap_or(false) {
                    stateful.insert(t);
                }
            }
        }
        // The changelogged stores of each sub-topology with standby copies.
        let logged: Vec<Vec<String>> = ctx
            .subs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if !eligible.get(i).copied().unwrap_or(false) {
                    return Vec::new();
                }
                s.stores
                    .iter()
                    .filter(|n| ctx.topology.stores.get(*n).is_some_and(|d| d.logging))
                    .cloned()
                    .collect()
            })
            .collect();
        let copies = {
            let (ctx, logged) = (ctx.clone(), logged.clone());
            Box::new(move || {
                let progress = ctx.standbys.progress();
                ctx.standbys
                    .tasks()
                    .into_iter()
                    .filter_map(|t| {
                        let stores = logged.get(t.subtopology)?;
                        let (mut sum, mut ends) = (0i64, 0i64);
                        for store in stores {
                            let (at, end) = progress.get(&(store.clone(), t.partition))?;
                            sum = sum.saturating_add((*at).max(0));
                            ends = ends.saturating_add((*end).max(0));
                        }
                        (!stores.is_empty()).then_some((t, (sum, ends.max(sum))))
                    })
                    .collect::<BTreeMap<TaskId, (i64, i64)>>()
            })
        };
        let end_offsets = {
            let (config, topology, app) = (
                ctx.config.clone(),
                ctx.topology.clone(),
                ctx.config.application_id.clone(),
            );
            let reader: Mutex<Option<rdkafka::consumer::BaseConsumer>> = Mutex::new(None);
            Box::new(move |tasks: &BTreeSet<TaskId>| {
                use rdkafka::consumer::Consumer;
                let mut out = BTreeMap::new();
                let Ok(mut reader) = reader.lock() else {
                    return out;
                };
                if reader.is_none() {
                    match crate::runtime::clients::client_config(
                        &config,
                        crate::runtime::config::ClientKind::RestoreConsumer,
                    )
                    .create::<rdkafka::consumer::BaseConsumer>()
                    {
                        Ok(c) => *reader = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot create the consumer reading changelog ends");
                            return out;
                        }
                    }
                }
                let Some(c) = reader.as_ref() else { return out };
                'tasks: for t in tasks {
                    let mut sum = 0i64;
                    for store in logged.get(t.subtopology).into_iter().flatten() {
                        let topic = topology.store_changelog_topic(&app, store);
                        match c.fetch_watermarks(&topic, t.partition, Duration::from_secs(10)) {
                            Ok((_, high)) => sum = sum.saturating_add(high.max(0)),
                            Err(e) => {
                                tracing::warn!(topic, partition = t.partition, error = %e, "cannot read a changelog's end offset");
                                continue 'tasks;
                            }
                        }
                    }
                    out.insert(*t, sum);
                }
                out
            })
        };
        let set_standbys = {
            let (weak, ctx) = (Arc::downgrade(inner), ctx.clone());
            let me = ctx.process_id.to_string();
            Box::new(
                move |standby: &BTreeSet<TaskId>, pending: &BTreeSet<TaskId>| {
                    let Some(inner) = weak.upgrade() else { return };
                    let mut desired = standby.clone();
                    desired.extend(ctx.standbys.tasks().intersection(pending).copied());
                    ctx.standbys.update(&desired, &inner.local_tasks());
                    let partitions: Vec<(String, i32)> = ctx
                        .standbys
                        .tasks()
                        .into_iter()
                        .flat_map(|t| ctx.task_partitions(t))
                        .collect();
                    metadata.set_standbys(&me, partitions, Vec::new());
                },
            )
        };
        // Warm-up copies are standby copies too: the assignor gives them even without standby replicas.
        if !stateful.is_empty() {
            ctx.standbys.start(ctx.clone())?;
        }
        let own = crate::runtime::ownership::Ownership::start(
            &ctx.config,
            &ctx.process_id,
            crate::runtime::ownership::Hooks {
                all_tasks,
                stateful,
                copies,
                end_offsets,
                set_standbys,
            },
        )?;
        if ctx.ownership.set(own).is_err() {
            return Err(StreamsError::processor(
                "the ownership member was set twice",
            ));
        }
        inner.transition(State::Rebalancing);
        for _ in 0..inner.config.num_stream_threads {
            Self::spawn_thread(inner, ctx)?;
        }
        Ok(())
    }

    /// How the member ids of the consumers of the stream threads about to be started will begin.
    fn member_id_prefixes(inner: &Inner, ctx: &ThreadContext) -> Vec<String> {
        let first = inner.next_thread.lock().map_or(1, |n| *n);
        (first..first + inner.config.num_stream_threads)
            .map(|i| crate::runtime::thread::member_id_prefix(&inner.config, i, &ctx.process_id))
            .collect()
    }

    /// Warm-up before joining (with standby replicas): starts the stream threads once this instance's copies of
    /// the tasks the group will give it have caught up (within `acceptable.recovery.lag`) and so have those of
    /// the other instances joining with it, or after [`WARM_UP_LIMIT`]. The wait begins once the instance has
    /// read the other instances' announcements (it sees its own), and lasts at least [`WARM_UP_SETTLE`], for
    /// instances starting at the same time to see each other.
    fn start_warm_up(
        inner: &Arc<Inner>,
        ctx: &Arc<ThreadContext>,
        metadata: Arc<MetadataService>,
        consumers: Vec<String>,
    ) -> Result<(), StreamsError> {
        use crate::runtime::standby::warm_ups;
        let (weak, ctx) = (Arc::downgrade(inner), ctx.clone());
        let name = format!("{}-WarmUp", ctx.config.application_id);
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let started = Instant::now();
                let me = ctx.process_id.to_string();
                let eligible = standby_subtopologies(&ctx);
                let partitions = |t: crate::processor::TaskId| {
                    usize::try_from(ctx.plan.task_counts[t.subtopology]).unwrap_or(0)
                };
                let mut ready = false;
                let mut warming = Vec::new();
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.state.lock().map_or(true, |s| *s != State::Rebalancing) {
                        // Closed while warming up.
                        return;
                    }
                    let members = placement_view(&ctx, &metadata, &eligible);
                    let seen_self = members.iter().any(|m| m.key == me && m.joining);
                    let mine: Vec<_> = warm_ups(&members, &partitions)
                        .into_iter()
                        .filter(|(_, heir)| members[*heir].key == me)
                        .map(|(t, _)| t)
                        .collect();
                    if mine != warming {
                        tracing::info!(tasks = ?mine, "warming up the tasks the group will give this instance");
                        warming = mine.clone();
                    }
                    let caught_up = seen_self && caught_up(&ctx, &mine);
                    if caught_up != ready {
                        ready = caught_up;
                        metadata.set_joining(Some(Joining {
                            consumers: consumers.clone(),
                            ready,
                        }));
                    }
                    let others = members.iter().filter(|m| m.joining && m.key != me);
                    let all_ready = ready && others.clone().all(|m| m.ready);
                    let waited = started.elapsed();
                    // Its own announcement never read back: the metadata topic cannot be read, and nobody
                    // knows where this instance will sit. Warming up would be guesswork.
                    let unseen = !seen_self && waited >= WARM_UP_UNSEEN_LIMIT;
                    if unseen {
                        tracing::warn!(
                            topic = %MetadataService::topic(&ctx.config.application_id),
                            "this instance's announcement was not read back from the metadata topic; joining \
                             the group without warming up"
                        );
                    }
                    if (all_ready && waited >= WARM_UP_SETTLE) || waited >= WARM_UP_LIMIT || unseen {
                        if all_ready || unseen {
                            tracing::info!(warmed_up = ?mine, ?waited, "joining the group");
                        } else {
                            tracing::warn!(not_caught_up = ?mine, joining_with = ?others.map(|m| &m.key).collect::<Vec<_>>(), ?waited, "joining the group before the copies of the tasks it will be given caught up");
                        }
                        metadata.set_joining(None);
                        for _ in 0..inner.config.num_stream_threads {
                            if let Err(e) = Self::spawn_thread(&inner, &ctx) {
                                tracing::error!(error = %e, "cannot start a stream thread");
                                if let Ok(mut errs) = inner.errors.lock() {
                                    errs.push(e.to_string());
                                }
                            }
                        }
                        if !inner.state.lock().is_ok_and(|s| matches!(*s, State::Rebalancing | State::Running)) {
                            // Closed while the threads started: they stop on their own.
                            if let Ok(threads) = inner.threads.lock() {
                                for t in threads.iter() {
                                    t.shared.shutdown.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                        return;
                    }
                    drop(inner);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .map_err(|source| StreamsError::Io { path: name, source })?;
        Ok(())
    }

    /// Starts the loop that, every second, places the standbys from the instances' announcements and keeps
    /// this instance's share of them (see [`crate::runtime::standby`]).
    fn start_standby_placement(
        inner: &Arc<Inner>,
        ctx: &Arc<ThreadContext>,
        metadata: Arc<MetadataService>,
    ) -> Result<(), StreamsError> {
        use crate::runtime::standby::{admit_warm_ups, place, warm_ups};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (weak, ctx, flag) = (Arc::downgrade(inner), ctx.clone(), stop.clone());
        let name = format!("{}-StandbyPlacement", ctx.config.application_id);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let me = ctx.process_id.to_string();
                let replicas = ctx.standbys.replicas();
                let eligible = standby_subtopologies(&ctx);
                let mut last = std::collections::BTreeSet::new();
                let mut warming: std::collections::BTreeMap<crate::processor::TaskId, Instant> =
                    std::collections::BTreeMap::new();
                while !flag.load(Ordering::Relaxed) {
                    let Some(inner) = weak.upgrade() else { return };
                    let members = placement_view(&ctx, &metadata, &eligible);
                    let partitions = |t: crate::processor::TaskId| {
                        usize::try_from(ctx.plan.task_counts[t.subtopology]).unwrap_or(0)
                    };
                    let placed = place(&members, replicas, &partitions);
                    let mut desired: std::collections::BTreeSet<_> = placed
                        .iter()
                        .filter(|(_, chosen)| chosen.iter().any(|&i| members[i].key == me))
                        .map(|(t, _)| *t)
                        .collect();
                    // Warm-ups: the tasks that members joining the group will move here. Each is kept a while
                    // after the joining member stops announcing itself as such: the group's move may reach this
                    // instance's threads after the joined member's new announcement reaches this loop.
                    // At most `max.warmup.replicas` of them catch up at once; the others start as those do.
                    let now = Instant::now();
                    let wanted: Vec<crate::processor::TaskId> = warm_ups(&members, &partitions)
                        .into_iter()
                        .filter(|(t, heir)| members[*heir].key == me && !desired.contains(t))
                        .map(|(t, _)| t)
                        .collect();
                    let kept: std::collections::BTreeSet<_> = warming.keys().copied().collect();
                    let progress = ctx.standbys.progress();
                    let admitted = admit_warm_ups(
                        &wanted,
                        &kept,
                        &|t| caught_up_in(&ctx, &progress, &[t]),
                        ctx.config.max_warmup_replicas,
                    );
                    if admitted.len() < wanted.len() {
                        tracing::debug!(
                            warming = ?admitted,
                            waiting = ?wanted.iter().filter(|t| !admitted.contains(t)).collect::<Vec<_>>(),
                            "warm-ups beyond max.warmup.replicas wait for earlier ones to catch up"
                        );
                    }
                    for t in admitted {
                        warming.insert(t, now);
                    }
                    warming.retain(|_, at| now.duration_since(*at) < WARM_UP_LINGER);
                    desired.extend(warming.keys().copied());
                    // A task nobody announces (its partitions are moving) keeps its standby here.
                    desired.extend(
                        ctx.standbys
                            .tasks()
                            .into_iter()
                            .filter(|t| !placed.contains_key(t)),
                    );
                    if desired != last {
                        tracing::debug!(
                            members = ?members.iter().map(|m| (&m.key, &m.active, &m.consumers)).collect::<Vec<_>>(),
                            ?desired,
                            "standby placement"
                        );
                        last = desired.clone();
                    }
                    ctx.standbys.update(&desired, &inner.local_tasks());
                    let partitions: Vec<(String, i32)> = ctx
                        .standbys
                        .tasks()
                        .into_iter()
                        .flat_map(|t| ctx.task_partitions(t))
                        .collect();
                    metadata.set_standbys(&me, partitions, inner.member_ids());
                    drop(inner);
                    for _ in 0..10 {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .map_err(|source| StreamsError::Io { path: name, source })?;
        if let Ok(mut l) = inner.standby_loop.lock() {
            *l = Some((stop, handle));
        }
        Ok(())
    }

    fn spawn_thread(inner: &Arc<Inner>, ctx: &Arc<ThreadContext>) -> Result<(), StreamsError> {
        let index = {
            let mut n = inner
                .next_thread
                .lock()
                .map_err(|_| StreamsError::processor("poisoned"))?;
            *n += 1;
            *n - 1
        };
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let on_change = {
            let weak = weak.clone();
            Arc::new(move || {
                if let Some(i) = weak.upgrade() {
                    i.on_thread_state_change();
                }
            })
        };
        let on_exit = Arc::new(
            move |shared: &Arc<ThreadShared>, result: Result<(), StreamsError>| {
                let Some(inner) = weak.upgrade() else { return };
                // Its partitions are no longer served here (the group reassigns them).
                if let Some(m) = inner.metadata.lock().ok().and_then(|m| m.clone()) {
                    m.on_thread_exit(&shared.name);
                }
                if let Some(own) = inner
                    .context
                    .lock()
                    .ok()
                    .and_then(|c| c.as_ref().and_then(|c| c.ownership.get().cloned()))
                {
                    own.unregister(&shared.name);
                }
                if let Err(e) = result {
                    tracing::error!(thread = %shared.name, error = %e, "stream thread failed");
                    if let Ok(mut errs) = inner.errors.lock() {
                        errs.push(e.to_string());
                    }
                    let handler = inner.error_handler.lock().map(|h| h.clone());
                    let action = handler.map_or(UncaughtErrorAction::ShutdownClient, |h| h(&e));
                    let ctx = inner.context.lock().ok().and_then(|c| c.clone());
                    match (action, ctx) {
                        (UncaughtErrorAction::ReplaceThread, Some(ctx))
                            if !shared.shutdown.load(Ordering::Relaxed) =>
                        {
                            if let Err(e) = KafkaStreams::spawn_thread(&inner, &ctx) {
                                tracing::error!(error = %e, "cannot replace the failed thread");
                            }
                        }
                        _ => {
                            if inner.transition(State::PendingError) {
                                if let Ok(threads) = inner.threads.lock() {
                                    for t in threads.iter() {
                                        t.shared.shutdown.store(true, Ordering::Relaxed);
                                    }
                                }
                                let waiter = inner.clone();
                                std::thread::spawn(move || {
                                    wait_threads(&waiter, None);
                                    waiter.leave_metadata();
                                    waiter.transition(State::Error);
                                });
                            }
                        }
                    }
                }
            },
        );
        let (shared, handle) = thread::spawn(ctx.clone(), index, on_change, on_exit)?;
        inner
            .threads
            .lock()
            .map_err(|_| StreamsError::processor("poisoned"))?
            .push(ThreadSlot {
                shared,
                handle: Some(handle),
            });
        // The thread may have changed state before its slot was listed (with library ownership it is Running at
        // once when it is given no task yet): derive the instance's state again now that it is.
        inner.on_thread_state_change();
        Ok(())
    }

    /// Stops the threads (each commits and closes its tasks) and waits up to `timeout`; true when every thread
    /// stopped in time.
    pub fn close(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        match self.state() {
            State::Created => {
                inner.transition(State::PendingShutdown);
                inner.transition(State::NotRunning);
                return true;
            }
            State::NotRunning | State::Error => return true,
            _ => {}
        }
        inner.transition(State::PendingShutdown);
        if let Ok(threads) = inner.threads.lock() {
            for t in threads.iter() {
                t.shared.shutdown.store(true, Ordering::Relaxed);
            }
        }
        let done = wait_threads(inner, Some(Instant::now() + timeout));
        inner.stop_standbys();
        inner.leave_metadata();
        if done {
            // Every thread has closed its stores: another instance may take the directory.
            if let Ok(mut l) = inner.dir_lock.lock() {
                l.take();
            }
        }
        if done && self.state() == State::PendingShutdown {
            inner.transition(State::NotRunning);
        }
        done
    }

    /// Starts from an async context (the blocking set-up runs off the executor).
    pub async fn start_async(&self) -> Result<(), StreamsError> {
        let me = KafkaStreams {
            inner: self.inner.clone(),
        };
        tokio::task::spawn_blocking(move || me.start())
            .await
            .map_err(|e| StreamsError::processor(format!("start task failed: {e}")))?
    }

    /// Closes from an async context.
    pub async fn close_async(&self, timeout: Duration) -> bool {
        let me = KafkaStreams {
            inner: self.inner.clone(),
        };
        tokio::task::spawn_blocking(move || me.close(timeout))
            .await
            .unwrap_or(false)
    }

    /// Waits until the state is `target` (true) or `timeout` passes (false).
    pub fn wait_for_state(&self, target: State, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.state() == target {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.state() == target
    }
}

/// Joins finished threads until all are done or the deadline passes.
fn wait_threads(inner: &Inner, deadline: Option<Instant>) -> bool {
    loop {
        let all_done = {
            let Ok(mut threads) = inner.threads.lock() else {
                return false;
            };
            let mut all = true;
            for t in threads.iter_mut() {
                match &t.handle {
                    Some(h) if h.is_finished() => {
                        if let Some(h) = t.handle.take() {
                            let _ = h.join();
                        }
                    }
                    Some(_) => all = false,
                    None => {}
                }
            }
            all
        };
        if all_done {
            // The stream threads are gone: the standbys stop, then the global thread checkpoints and stops last.
            inner.stop_standbys();
            let global = inner.global.lock().ok().and_then(|g| g.clone());
            return global.is_none_or(|g| g.stop(deadline));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Restores the global stores (the instance is `Rebalancing` meanwhile) and starts the global thread, whose
/// failure shuts the instance down. On error the instance ends in `Error`.
/// Whether the topology keeps anything on disk (a persistent task or global store).
fn has_persistent_state(topology: &Topology) -> bool {
    topology.stores.values().any(|d| d.supplier.persistent())
        || topology
            .global_stores
            .values()
            .any(|g| g.def.supplier.persistent())
}

/// Locks `state.dir/<application.id>` for this instance (a `.lock` file under an OS file lock, released when the
/// instance closes or the process ends), as Kafka Streams does: two instances writing the same task directories
/// would corrupt each other's stores and checkpoints.
fn lock_state_dir(config: &StreamsConfig) -> Result<std::fs::File, StreamsError> {
    let dir = config.state_dir.join(&config.application_id);
    let io = |path: &std::path::Path, source: std::io::Error| StreamsError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StreamsError::StateDirLocked {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path, e)),
    }
}

/// Which copies of a store a query may read, for [`KafkaStreams::store_with`] (Kafka Streams'
/// `StoreQueryParameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreQueryParameters {
    name: String,
    stale: bool,
}

impl StoreQueryParameters {
    /// Reads store `name`: by default only the stores of tasks running on this instance, while it is
    /// `Running`.
    pub fn from_name(name: impl Into<String>) -> Self {
        StoreQueryParameters {
            name: name.into(),
            stale: false,
        }
    }

    /// Also reads standby copies and the stores of tasks kept through a rebalance, and answers while the
    /// instance rebalances: answers may be behind the active task's.
    pub fn enable_stale_stores(mut self) -> Self {
        self.stale = true;
        self
    }

    /// The store's name.
    pub fn store_name(&self) -> &str {
        &self.name
    }

    /// Whether stale copies may answer.
    pub fn stale_stores_enabled(&self) -> bool {
        self.stale
    }
}

/// The shortest warm-up before joining the group: instances started together see each other's announcements.
const WARM_UP_SETTLE: Duration = Duration::from_secs(1);
/// The longest warm-up before joining the group, caught up or not.
const WARM_UP_LIMIT: Duration = Duration::from_secs(300);
/// How long a warm-up copy is kept once no joining member moves its task here any more.
const WARM_UP_LINGER: Duration = Duration::from_secs(10);
/// How long a starting instance waits to read its own announcement back before joining without a warm-up.
const WARM_UP_UNSEEN_LIMIT: Duration = Duration::from_secs(30);

/// Whether this instance's standby copies of every task of `tasks` are open and within `acceptable.recovery.lag`
/// of each of their changelogs.
fn caught_up(ctx: &ThreadContext, tasks: &[crate::processor::TaskId]) -> bool {
    caught_up_in(ctx, &ctx.standbys.progress(), tasks)
}

/// [`caught_up`] against `progress`, the copies' positions read once (see `Standbys::progress`).
fn caught_up_in(
    ctx: &ThreadContext,
    progress: &std::collections::BTreeMap<(String, i32), (i64, i64)>,
    tasks: &[crate::processor::TaskId],
) -> bool {
    tasks.iter().all(|t| {
        ctx.subs[t.subtopology]
            .stores
            .iter()
            .filter(|s| ctx.topology.stores[*s].logging)
            .all(|s| {
                progress
                    .get(&(s.clone(), t.partition))
                    .is_some_and(|(at, end)| end - at <= ctx.config.acceptable_recovery_lag)
            })
    })
}

/// The instances as standby placement sees them, from their announcements: each one's process id, the tasks of
/// `eligible` sub-topologies it runs, its consumers (their member ids, or how they will start for an instance
/// warming up to join) and whether it is joining.
fn placement_view(
    ctx: &ThreadContext,
    metadata: &MetadataService,
    eligible: &[bool],
) -> Vec<crate::runtime::standby::Member> {
    metadata
        .placement_members()
        .into_iter()
        .map(|(key, parts, consumers, joining)| {
            let parts: Vec<(String, i32)> = parts.into_iter().collect();
            crate::runtime::standby::Member {
                key,
                active: ctx
                    .routing
                    .tasks_of(&parts)
                    .into_iter()
                    .filter(|t| eligible[t.subtopology])
                    .collect(),
                consumers: joining.as_ref().map_or(consumers, |j| j.consumers.clone()),
                joining: joining.is_some(),
                ready: joining.is_some_and(|j| j.ready),
            }
        })
        .collect()
}

/// Which sub-topologies have standby tasks: those with changelogged stores, all of them persistent (a standby
/// copy kept in memory would be lost when the task moves here, as its stores are reopened) and none of them a
/// table reading its source topic as its changelog (its restoration stops at the committed offset: a copy
/// would not follow).
fn standby_subtopologies(ctx: &ThreadContext) -> Vec<bool> {
    ctx.subs
        .iter()
        .map(|s| {
            let logged: Vec<_> = s
                .stores
                .iter()
                .filter_map(|n| ctx.topology.stores.get(n))
                .filter(|d| d.logging)
                .collect();
            !logged.is_empty()
                && logged
                    .iter()
                    .all(|d| d.supplier.persistent() && d.source_changelog.is_none())
        })
        .collect()
}

/// This process's id: kept in `state.dir/<application.id>/process-id` when the application has state (the
/// directory is locked by then), so a restarted instance has the same id, and under exactly-once the same
/// transactional ids, which lets it abort what its predecessor left open at once. A stateless application gets
/// a new one each start.
fn process_id(config: &StreamsConfig, persisted: bool) -> Result<String, StreamsError> {
    use std::hash::{BuildHasher, Hasher};
    let fresh = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        format!("{:016x}", h.finish())
    };
    if !persisted {
        return Ok(fresh());
    }
    let path = config
        .state_dir
        .join(&config.application_id)
        .join("process-id");
    let io = |source: std::io::Error| StreamsError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id.to_string());
        }
    }
    // None yet (or unreadable): a new one, written atomically.
    let id = fresh();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(id)
}

fn start_global(
    inner: &Arc<Inner>,
    admin: &TopicManager,
) -> Result<Arc<crate::global::GlobalStores>, StreamsError> {
    let topology = &inner.topology;
    if topology.global_stores().next().is_none() {
        return Ok(crate::global::GlobalStores::empty());
    }
    inner.transition(State::Rebalancing);
    let result = (|| {
        let mut partitions = std::collections::BTreeMap::new();
        for g in topology.global_stores() {
            partitions.insert(g.topic.clone(), admin.source_partitions(&g.topic)?);
        }
        let listener = inner
            .restore_listener
            .lock()
            .map(|l| l.clone())
            .map_err(|_| StreamsError::processor("listener lock poisoned"))?;
        let weak = Arc::downgrade(inner);
        global::start(
            topology,
            &inner.config,
            &inner.rocksdb,
            &partitions,
            listener,
            move |e| {
                let Some(inner) = weak.upgrade() else { return };
                if let Ok(mut errs) = inner.errors.lock() {
                    errs.push(e.to_string());
                }
                if inner.transition(State::PendingError) {
                    if let Ok(threads) = inner.threads.lock() {
                        for t in threads.iter() {
                            t.shared.shutdown.store(true, Ordering::Relaxed);
                        }
                    }
                    let waiter = inner.clone();
                    std::thread::spawn(move || {
                        wait_threads(&waiter, None);
                        waiter.leave_metadata();
                        waiter.transition(State::Error);
                    });
                }
            },
        )
    })();
    match result {
        Ok(g) => {
            let stores = g.stores.clone();
            if let Ok(mut slot) = inner.global.lock() {
                *slot = Some(Arc::new(g));
            }
            Ok(stores)
        }
        Err(e) => {
            if let Ok(mut errs) = inner.errors.lock() {
                errs.push(e.to_string());
            }
            inner.leave_metadata();
            inner.transition(State::PendingError);
            inner.transition(State::Error);
            Err(e)
        }
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1
            && !matches!(
                self.state(),
                State::NotRunning | State::Error | State::Created
            )
        {
            self.close(Duration::from_secs(30));
        }
    }
}
