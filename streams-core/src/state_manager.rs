//! The state of one task: its stores opened from the task directory, found missing, empty or corrupt, and brought
//! up to date from their changelogs before the task processes anything.
//!
//! Opening follows three rules. A store held by another thread of this instance (a task moving between threads)
//! is waited for, never wiped: other instances are kept out by the application directory's lock. A store whose
//! files are missing or that holds nothing starts from nothing, whatever the checkpoint says. Only a store whose
//! files are damaged is wiped, only when its changelog can rebuild it, and its checkpoint entry is forgotten
//! first, so a crash during the rebuild never leaves an offset the half-built store would be trusted to have
//! reached.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
            },
        )?)
    };
    let restorable = def.logging && restorer.is_some();
    let persistent = def.supplier.persistent();
    let topic = topology.store_changelog_topic(&env.application_id, name);
    let existed = persistent && has_files(&dir);
    let mut waited = Duration::ZERO;
    let opened = loop {
        match reopen() {
            // Another thread of this instance may still be closing the task; the application directory lock
            // keeps other instances out. Wait for it, never wipe.
            Err(StreamsError::Store(StoreError::Locked { .. })) if waited < STORE_LOCK_WAIT => {
                let pause = Duration::from_millis(100);
                std::thread::sleep(pause);
                waited += pause;
            }
            other => break other,
        }
    };
    let (mut store, wiped): (Box<dyn KeyValueStore>, bool) = match opened {
        // A store whose files were missing, or that holds nothing, starts from nothing: its checkpoint (if any)
        // no longer applies.
        Ok(s) => {
            let empty = persistent && existed && s.all()?.next().is_none();
            (s, persistent && (!existed || empty))
        }
        // Only damaged files are wiped, and only with a changelog to rebuild them from.
        Err(StreamsError::Store(e @ StoreError::Corrupt { .. })) if restorable && persistent => {
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
    };
    if def.logging {
        if let Some(r) = restorer {
            store = r.restore(
                id,
                name,
                &topic,
                &dir,
                store,
                wiped,
                crate::task::ChangelogFormat {
                    timestamped: def.serdes.timestamped(),
                    versioned: def.serdes.versioned(),
                    source_topic: def.source_changelog.is_some(),
                },
                &mut reopen,
            )?;
        }
    }
    Ok(store)
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
