//! The state of one task: its stores opened from the task directory, found missing, empty or corrupt, and brought
//! up to date from their changelogs before the task processes anything.
//!
//! Opening follows three rules. A store held by another thread of this instance (a task moving between threads)
//! is waited for, never wiped: other instances are kept out by the application directory's lock. A store whose
//! files are missing or that holds nothing starts from nothing, whatever the checkpoint says. Only a store whose
//! files are damaged is wiped, only when its changelog can rebuild it, and its checkpoint entry is forgotten
//! first, so a crash during the rebuild never leaves an offset the half-built store would be trusted to have
//! reached.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_store::{KeyValueStore, RocksDbResources, StoreContext, StoreError};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::task::{has_files, StateRestorer};
use crate::topology::{SubTopology, Topology};

/// How long opening a store waits for a thread of this instance that still holds it (a task moving between
/// threads) to let it go.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Where a task's stores live.
#[derive(Clone)]
pub(crate) struct StoreEnv {
    pub application_id: Arc<str>,
    /// The application's state directory (`state.dir/<application.id>`).
    pub state_dir: PathBuf,
    pub rocksdb: RocksDbResources,
    /// Stores a standby task handed over open, taken by the next opening of the same task's stores.
    pub handed: Option<Arc<HandedStores>>,
}

/// Stores left open by a standby task for the active task about to take its place on this instance: opening the
/// task's stores takes them as they are (flushed and checkpointed), instead of waiting for them to be closed and
/// opening them again. Queries reading the standby's copy go on reading it through the move.
#[derive(Default)]
pub(crate) struct HandedStores {
    stores: Mutex<HashMap<(TaskId, String), LeftOpen>>,
}

/// A store left open, and since when.
type LeftOpen = (Box<dyn KeyValueStore>, Instant);

impl HandedStores {
    /// Leaves `store`, of task `task`, open for the next opening of that store.
    pub(crate) fn put(&self, task: TaskId, store: OpenedStore) {
        let replaced = self
            .stores
            .lock()
            .ok()
            .and_then(|mut s| s.insert((task, store.name), (store.store, Instant::now())));
        if let Some((mut old, _)) = replaced {
            let _ = old.close();
        }
    }

    /// Takes store `name` of task `task` if it was left open.
    fn take(&self, task: TaskId, name: &str) -> Option<Box<dyn KeyValueStore>> {
        self.stores
            .lock()
            .ok()?
            .remove(&(task, name.to_string()))
            .map(|(store, _)| store)
    }

    /// Closes the stores nobody took within `within` (their task went elsewhere), or all of them with `None`.
    pub(crate) fn close_unclaimed(&self, within: Option<Duration>) {
        let expired: Vec<_> = match self.stores.lock() {
            Ok(mut s) => {
                let keys: Vec<_> = s
                    .iter()
                    .filter(|(_, (_, at))| within.is_none_or(|w| at.elapsed() >= w))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter()
                    .filter_map(|k| s.remove_entry(&k))
                    .collect()
            }
            Err(_) => return,
        };
        for ((task, name), (mut store, _)) in expired {
            if let Err(e) = store.close() {
                tracing::warn!(%task, store = %name, error = %e, "error while closing a store a standby left open");
            }
        }
    }
}

/// One opened store, restored and not yet wrapped in its changelog and cache layers.
pub(crate) struct OpenedStore {
    pub name: String,
    pub store: Box<dyn KeyValueStore>,
}

/// The stores of one task, opened (and restored when a restorer is given) in the task's directory.
pub(crate) struct StateManager {
    pub task: TaskId,
    /// `state_dir/<task id>`.
    pub task_dir: PathBuf,
    pub stores: Vec<OpenedStore>,
}

impl StateManager {
    /// Opens every store of `sub` for task `task`, restoring the logged ones through `restorer`. On error the
    /// stores opened so far are closed.
    pub(crate) fn open(
        topology: &Topology,
        sub: &SubTopology,
        task: TaskId,
        env: &StoreEnv,
        mut restorer: Option<&mut dyn StateRestorer>,
    ) -> Result<StateManager, StreamsError> {
        let mut stores = Vec::with_capacity(sub.stores.len());
        for name in &sub.stores {
            let store = open_store(topology, name, task, env, &mut restorer)?;
            stores.push(OpenedStore {
                name: name.clone(),
                store,
            });
        }
        Ok(StateManager {
            task,
            task_dir: env.state_dir.join(task.to_string()),
            stores,
        })
    }

    /// Closes every store without flushing anything it has not written already (restored data is flushed as
    /// it is restored).
    pub(crate) fn close(self) {
        for mut s in self.stores {
            if let Err(e) = s.store.close_dirty() {
                tracing::warn!(task = %self.task, store = %s.name, error = %e, "error while closing a store");
            }
        }
    }
}

fn open_store(
    topology: &Topology,
    name: &str,
    id: TaskId,
    env: &StoreEnv,
    restorer: &mut Option<&mut dyn StateRestorer>,
) -> Result<Box<dyn KeyValueStore>, StreamsError> {
    let def = &topology.stores[name];
    let dir = env.state_dir.join(id.to_string()).join(name);
    let mut reopen = || -> Result<Box<dyn KeyValueStore>, StreamsError> {
        Ok(def.supplier.open(
            name,
            &StoreContext {
                dir: &dir,
                rocksdb: &env.rocksdb,
                key_suffix_len: 0,
            },
        )?)
    };
    let restorable = def.logging && restorer.is_some();
    let persistent = def.supplier.persistent();
    let topic = topology.store_changelog_topic(&env.application_id, name);
    let existed = persistent && has_files(&dir);
    // A store a standby left open was flushed and checkpointed: its contents match its checkpoint.
    let handed = env.handed.as_ref().and_then(|h| h.take(id, name));
    let (store, wiped): (Box<dyn KeyValueStore>, bool) = match handed {
        Some(store) => (store, false),
        None => {
            let mut waited = Duration::ZERO;
            let opened = loop {
                match reopen() {
                    // Another thread of this instance may still be closing the task; the application
                    // directory lock keeps other instances out. Wait for it, never wipe.
                    Err(StreamsError::Store(StoreError::Locked { .. }))
                        if waited < STORE_LOCK_WAIT =>
                    {
                        let pause = Duration::from_millis(100);
                        std::thread::sleep(pause);
                        waited += pause;
                    }
                    other => break other,
                }
            };
            match opened {
                // A store whose files were missing, or that holds nothing, starts from nothing: its
                // checkpoint (if any) no longer applies.
                Ok(s) => {
                    let empty = persistent && existed && s.all()?.next().is_none();
                    (s, persistent && (!existed || empty))
                }
                // Only damaged files are wiped, and only with a changelog to rebuild them from.
                Err(StreamsError::Store(e @ StoreError::Corrupt { .. }))
                    if restorable && persistent =>
                {
                    tracing::warn!(store = name, task = %id, error = %e, "the store is corrupt; wiping it and restoring from the changelog");
                    if let Some(r) = restorer.as_mut() {
                        r.discard_checkpoint(id, &topic, &dir)?;
                    }
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir).map_err(|source| StreamsError::Io {
                            path: dir.display().to_string(),
                            source,
                        })?;
                    }
                    (reopen()?, true)
                }
                Err(e) => return Err(e),
            }
        }
    };
    restore_store(
        topology,
        name,
        &topic,
        id,
        &dir,
        store,
        wiped,
        restorer,
        &mut reopen,
    )
}

/// Hands an opened store to the restorer when it is logged and there is one.
#[allow(clippy::too_many_arguments)]
fn restore_store(
    topology: &Topology,
    name: &str,
    topic: &str,
    id: TaskId,
    dir: &std::path::Path,
    store: Box<dyn KeyValueStore>,
    wiped: bool,
    restorer: &mut Option<&mut dyn StateRestorer>,
    reopen: &mut dyn FnMut() -> Result<Box<dyn KeyValueStore>, StreamsError>,
) -> Result<Box<dyn KeyValueStore>, StreamsError> {
    let def = &topology.stores[name];
    match restorer {
        Some(r) if def.logging => r.restore(
            id,
            name,
            topic,
            dir,
            store,
            wiped,
            crate::task::ChangelogFormat {
                timestamped: def.serdes.timestamped(),
                versioned: def.serdes.versioned(),
                source_topic: def.source_changelog.is_some(),
            },
            reopen,
        ),
        _ => Ok(store),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::{Processor, ProcessorContext};
    use crate::record::Record;
    use crate::serde::Serdes;
    use crate::topology::{KeyValueStoreBuilder, SourceOptions};
    use state_store::StoreKind;

    struct Noop;
    impl Processor<String, String> for Noop {
        type KOut = String;
        type VOut = String;
        fn process(
            &mut self,
            _: Record<String, String>,
            _: &mut ProcessorContext<String, String>,
        ) -> Result<(), StreamsError> {
            Ok(())
        }
    }

    fn topology(logging: bool) -> Topology {
        let mut t = Topology::new();
        t.add_source(
            "in",
            &["in"],
            SourceOptions::new(Serdes::string(), Serdes::string()),
        )
        .unwrap();
        t.add_processor::<String, String, _, _>("p", || Noop, &["in"])
            .unwrap();
        t.add_state_store(
            KeyValueStoreBuilder::new("s", StoreKind::RocksDb, Serdes::string(), Serdes::string())
                .with_logging(logging),
            &["p"],
        )
        .unwrap();
        t
    }

    /// What the state manager asked of the restorer, in order.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl StateRestorer for Recorder {
        fn restore(
            &mut self,
            _task: TaskId,
            store: &str,
            changelog: &str,
            _dir: &std::path::Path,
            inner: Box<dyn KeyValueStore>,
            wiped: bool,
            _format: crate::task::ChangelogFormat,
            _reopen: &mut dyn FnMut() -> Result<Box<dyn KeyValueStore>, StreamsError>,
        ) -> Result<Box<dyn KeyValueStore>, StreamsError> {
            self.calls
                .push(format!("restore {store} from {changelog} wiped={wiped}"));
            Ok(inner)
        }

        fn discard_checkpoint(
            &mut self,
            _task: TaskId,
            changelog: &str,
            dir: &std::path::Path,
        ) -> Result<(), StreamsError> {
            // Forgotten before the store is wiped: its files must still be there.
            self.calls.push(format!(
                "forget {changelog} (store files present: {})",
                has_files(dir)
            ));
            Ok(())
        }
    }

    const TASK: TaskId = TaskId {
        subtopology: 0,
        partition: 0,
    };

    fn env(dir: &std::path::Path) -> StoreEnv {
        StoreEnv {
            application_id: Arc::from("app"),
            state_dir: dir.to_path_buf(),
            rocksdb: RocksDbResources::new(8 << 20, 8 << 20),
            handed: None,
        }
    }

    fn open(t: &Topology, env: &StoreEnv, r: &mut Recorder) -> Result<StateManager, StreamsError> {
        let sub = &t.sub_topologies()[0];
        StateManager::open(t, sub, TASK, env, Some(r))
    }

    #[test]
    fn a_missing_store_is_restored_from_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(true);
        let mut r = Recorder::default();
        let state = open(&t, &env(dir.path()), &mut r).unwrap();
        assert_eq!(state.task_dir, dir.path().join("0_0"));
        assert_eq!(r.calls, ["restore s from app-s-changelog wiped=true"]);
    }

    #[test]
    fn a_store_with_data_keeps_its_checkpoint_and_an_empty_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(true);
        let env = env(dir.path());
        let mut state = open(&t, &env, &mut Recorder::default()).unwrap();
        // Closed empty: the next open does not trust a checkpoint.
        state.stores[0].store.close().unwrap();
        drop(state);
        let mut r = Recorder::default();
        let mut state = open(&t, &env, &mut r).unwrap();
        assert_eq!(r.calls, ["restore s from app-s-changelog wiped=true"]);
        state.stores[0].store.put(b"k", b"v").unwrap();
        state.stores[0].store.close().unwrap();
        drop(state);
        let mut r = Recorder::default();
        let _state = open(&t, &env, &mut r).unwrap();
        assert_eq!(r.calls, ["restore s from app-s-changelog wiped=false"]);
    }

    #[test]
    fn a_store_left_open_by_a_standby_is_taken_as_it_is_and_unclaimed_ones_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(true);
        let handed = Arc::new(HandedStores::default());
        let env = StoreEnv {
            handed: Some(handed.clone()),
            ..env(dir.path())
        };
        // The standby's stores, open: a second opening of the directory would find it locked.
        let mut standby = open(&t, &env, &mut Recorder::default()).unwrap();
        standby.stores[0].store.put(b"k", b"v").unwrap();
        let store = standby.stores.pop().unwrap();
        let reader: state_store::SharedKeyValueStore = Arc::new(Mutex::new(store.store));
        // What a standby hands over: a store whose reads go on through `reader` (the queries' handle).
        struct Through(state_store::SharedKeyValueStore);
        impl KeyValueStore for Through {
            fn name(&self) -> &str {
                "s"
            }
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                self.0.lock().unwrap().get(key)
            }
            fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
                self.0.lock().unwrap().put(key, value)
            }
            fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                self.0.lock().unwrap().delete(key)
            }
            fn scan(
                &self,
                range: &state_store::KeyRange,
                reverse: bool,
            ) -> Result<state_store::KvIter<'_>, StoreError> {
                let all: Vec<_> = self.0.lock().unwrap().scan(range, reverse)?.collect();
                Ok(Box::new(all.into_iter()))
            }
            fn approximate_num_entries(&self) -> Result<u64, StoreError> {
                self.0.lock().unwrap().approximate_num_entries()
            }
            fn flush(&mut self) -> Result<(), StoreError> {
                self.0.lock().unwrap().flush()
            }
            fn persistent(&self) -> bool {
                true
            }
            fn close(&mut self) -> Result<(), StoreError> {
                self.0.lock().unwrap().close()
            }
        }
        handed.put(
            TASK,
            OpenedStore {
                name: "s".into(),
                store: Box::new(Through(reader.clone())),
            },
        );
        let mut r = Recorder::default();
        let started = Instant::now();
        let mut active = open(&t, &env, &mut r).unwrap();
        // Taken at once, not waited for (a locked store is retried for up to 30 s), and trusted: not wiped.
        assert!(started.elapsed() < STORE_LOCK_WAIT / 2);
        assert_eq!(r.calls, ["restore s from app-s-changelog wiped=false"]);
        active.stores[0].store.put(b"k2", b"v2").unwrap();
        // The queries' handle sees what the active task writes.
        assert_eq!(
            reader.lock().unwrap().get(b"k2").unwrap(),
            Some(b"v2".to_vec())
        );
        assert_eq!(
            active.stores[0].store.get(b"k").unwrap(),
            Some(b"v".to_vec())
        );
        active.stores[0].store.close().unwrap();
        drop(active);

        // Left open and never taken: closed once unclaimed for long enough, which frees the directory.
        let mut standby = open(&t, &env, &mut Recorder::default()).unwrap();
        handed.put(TASK, standby.stores.pop().unwrap());
        handed.close_unclaimed(Some(Duration::from_secs(3600)));
        assert!(handed
            .take(TASK, "s")
            .is_some_and(|mut s| s.close().is_ok()));
        let mut standby = open(&t, &env, &mut Recorder::default()).unwrap();
        handed.put(TASK, standby.stores.pop().unwrap());
        handed.close_unclaimed(None);
        assert!(handed.take(TASK, "s").is_none());
        let plain = StoreEnv {
            handed: None,
            ..env.clone()
        };
        let state = open(&t, &plain, &mut Recorder::default()).unwrap();
        assert_eq!(
            state.stores[0].store.get(b"k2").unwrap(),
            Some(b"v2".to_vec())
        );
    }

    #[test]
    fn a_corrupt_store_forgets_its_checkpoint_then_is_wiped_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(true);
        let env = env(dir.path());
        let mut state = open(&t, &env, &mut Recorder::default()).unwrap();
        state.stores[0].store.put(b"k", b"v").unwrap();
        state.stores[0].store.close().unwrap();
        drop(state);
        std::fs::write(dir.path().join("0_0/s/CURRENT"), b"garbage\n").unwrap();
        let mut r = Recorder::default();
        let state = open(&t, &env, &mut r).unwrap();
        assert_eq!(
            r.calls,
            [
                "forget app-s-changelog (store files present: true)",
                "restore s from app-s-changelog wiped=true"
            ]
        );
        assert_eq!(state.stores[0].store.get(b"k").unwrap(), None);
    }

    #[test]
    fn a_corrupt_store_without_changelog_is_an_error_not_a_wipe() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(false);
        let env = env(dir.path());
        let mut state = open(&t, &env, &mut Recorder::default()).unwrap();
        state.stores[0].store.put(b"k", b"v").unwrap();
        state.stores[0].store.close().unwrap();
        drop(state);
        std::fs::write(dir.path().join("0_0/s/CURRENT"), b"garbage\n").unwrap();
        let mut r = Recorder::default();
        match open(&t, &env, &mut r) {
            Err(StreamsError::Store(StoreError::Corrupt { .. })) => {}
            Err(other) => panic!("expected a corrupt-store error, got {other}"),
            Ok(_) => panic!("a corrupt store without changelog opened"),
        }
        assert!(r.calls.is_empty(), "{:?}", r.calls);
        assert!(has_files(&dir.path().join("0_0/s")), "nothing was deleted");
    }
}
