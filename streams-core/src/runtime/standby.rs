//! Standby replicas (`num.standby.replicas`): copies of a task's changelogged stores kept up to date on
//! instances other than the one running the task, so that when the task moves to one of them (its instance
//! crashed, left or was restarted) the new owner restores only what its copy had not read yet, instead of the
//! whole changelog.
//!
//! # Placement
//!
//! Every instance announces on the application's metadata topic (see [`crate::runtime::metadata`]) the
//! partitions its threads own, its process id (kept in the state directory, the same after a restart) and the
//! standby partitions it keeps. From the announcements every instance derives the same placement on its own,
//! with no coordinator: for each task with a known active owner, the standbys go to the `num.standby.replicas`
//! other live instances ranking highest for that task, by a hash of (process id, task) (rendezvous hashing).
//!
//! - Never on the active's instance: the instance owning the task is not a candidate, and an instance never
//!   starts a standby for a task one of its own threads holds (restoring or running), whatever the
//!   announcements say.
//! - Sticky: an instance joining takes over only the standbys it ranks highest for, an instance leaving hands
//!   over only the ones it held, and a restarted instance (same process id) is given back the copies on its
//!   disk. A task without an announced owner (its partitions are being moved) keeps its standbys as they are.
//! - Fewer candidates than replicas: each candidate keeps one copy, no more.
//!
//! Which instance runs each task is still decided by the consumer group (librdkafka's `range` assignor, see
//! [`crate::runtime::thread`]); the standbys make a move cheap when it lands on an instance holding a copy
//! (always, with two instances and one replica), and cost a full restore otherwise, as before.
//!
//! # What a standby does
//!
//! A standby task opens the task's stores in the task's directory (the directory its active task uses on this
//! instance), restores them from its checkpoint, then goes on reading the changelogs, on a state updater of
//! its own (one per instance, with its own restore consumer, reading under `read_committed` when the
//! application is exactly-once). It flushes and checkpoints every few seconds when it read something. When a
//! stream thread of the instance is given the task, it first stops the standby (which flushes and checkpoints)
//! and then restores the task as usual: from the standby's checkpoint. Standbys of stores kept in memory are
//! not kept (nothing of them would survive the move): a sub-topology has standby tasks when it has
//! changelogged stores, all of them persistent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::bulk_restore::StandbyProgress;
use crate::runtime::state_updater::{PendingRestore, StateUpdater};
use crate::runtime::thread::ThreadContext;

/// A live instance as the placement sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// What ranks the instance for each task: its process id.
    pub key: String,
    /// The tasks it runs.
    pub active: BTreeSet<TaskId>,
}

/// The rank of instance `key` for `task`: FNV-1a over both, then a 64-bit finaliser (so keys differing in one
/// character rank independently). Stable across processes, builds and platforms.
fn score(key: &str, task: TaskId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = key
        .as_bytes()
        .iter()
        .copied()
        .chain([0xff])
        .chain((task.subtopology as u32).to_le_bytes())
        .chain(task.partition.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// For each task some member runs, the indices (into `members`) of the members keeping its standbys: the
/// `replicas` members not running it that rank highest for it (ties by key).
pub(crate) fn place(members: &[Member], replicas: usize) -> BTreeMap<TaskId, Vec<usize>> {
    let tasks: BTreeSet<TaskId> = members
        .iter()
        .flat_map(|m| m.active.iter().copied())
        .collect();
    tasks
        .into_iter()
        .map(|task| {
            let mut candidates: Vec<(u64, &str, usize)> = members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.active.contains(&task))
                .map(|(i, m)| (score(&m.key, task), m.key.as_str(), i))
                .collect();
            candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            candidates.dedup_by(|a, b| a.1 == b.1);
            let chosen = candidates.into_iter().take(replicas).map(|c| c.2).collect();
            (task, chosen)
        })
        .collect()
}

/// How long a task handed to a local stream thread stays excluded from the standbys even before the thread
/// reports it (its restoration is being queued).
const CLAIM_HOLD: Duration = Duration::from_secs(10);
/// How long stopping a standby may take before the stream thread goes on without it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The standby tasks of one instance.
pub(crate) struct Standbys {
    replicas: usize,
    running: Mutex<Option<Running>>,
}

struct Running {
    ctx: Arc<ThreadContext>,
    updater: StateUpdater,
    jobs: BTreeMap<TaskId, PendingRestore>,
    /// Where each standby's partitions stand.
    progress: BTreeMap<TaskId, StandbyProgress>,
    /// Tasks handed to a local stream thread, and when.
    claimed: BTreeMap<TaskId, Instant>,
    /// The updater stopped on an error: started again at the next update.
    broken: bool,
}

impl Running {
    /// Takes the updater's reports: a failed standby is logged and dropped (placed again at the next update,
    /// on a new updater: a failure stops the updater). Returns whether `wanted` (a task and job) was reported.
    fn drain(&mut self, wanted: Option<(TaskId, u64)>) -> bool {
        let mut seen = false;
        for outcome in self.updater.drain() {
            if wanted == Some((outcome.task, outcome.job)) {
                seen = true;
            }
            match outcome.result {
                Ok(Some(unexpected)) => unexpected.state.close(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(task = %outcome.task, error = %e, "standby task failed");
                    if self
                        .jobs
                        .get(&outcome.task)
                        .is_some_and(|j| j.job == outcome.job)
                    {
                        self.jobs.remove(&outcome.task);
                        self.progress.remove(&outcome.task);
                    }
                    self.broken = true;
                }
            }
        }
        seen
    }
}

impl Standbys {
    /// Standbys for `replicas` replicas; nothing runs until [`Standbys::start`].
    pub(crate) fn new(replicas: usize) -> Standbys {
        Standbys {
            replicas,
            running: Mutex::new(None),
        }
    }

    /// How many replicas each task has (`num.standby.replicas`).
    pub(crate) fn replicas(&self) -> usize {
        self.replicas
    }

    /// Starts the instance's standby updater.
    pub(crate) fn start(&self, ctx: Arc<ThreadContext>) -> Result<(), StreamsError> {
        let updater = standby_updater(&ctx)?;
        if let Ok(mut r) = self.running.lock() {
            *r = Some(Running {
                ctx,
                updater,
                jobs: BTreeMap::new(),
                progress: BTreeMap::new(),
                claimed: BTreeMap::new(),
                broken: false,
            });
        }
        Ok(())
    }

    /// Keeps standbys of exactly the tasks of `desired` that no local thread holds (`local`) or was just handed:
    /// starts the missing ones, stops the others.
    pub(crate) fn update(&self, desired: &BTreeSet<TaskId>, local: &BTreeSet<TaskId>) {
        let Ok(mut guard) = self.running.lock() else {
            return;
        };
        let Some(r) = guard.as_mut() else { return };
        r.drain(None);
        if r.broken {
            for (_, job) in std::mem::take(&mut r.jobs) {
                job.cancel.store(true, Ordering::Relaxed);
            }
            r.progress.clear();
            match standby_updater(&r.ctx) {
                Ok(u) => {
                    r.updater = u;
                    r.broken = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the standby updater again");
                    return;
                }
            }
        }
        r.claimed.retain(|_, at| at.elapsed() < CLAIM_HOLD);
        let keep: BTreeSet<TaskId> = desired
            .iter()
            .filter(|t| !local.contains(t) && !r.claimed.contains_key(t))
            .copied()
            .collect();
        let stale: Vec<TaskId> = r
            .jobs
            .keys()
            .filter(|t| !keep.contains(t))
            .copied()
            .collect();
        for t in stale {
            r.progress.remove(&t);
            if let Some(job) = r.jobs.remove(&t) {
                tracing::info!(task = %t, "stopping standby task");
                job.cancel.store(true, Ordering::Relaxed);
            }
        }
        for t in keep {
            if r.jobs.contains_key(&t) {
                continue;
            }
            let progress = StandbyProgress::default();
            match r.updater.add_standby(t, progress.clone()) {
                Ok(job) => {
                    tracing::info!(task = %t, "starting standby task");
                    r.jobs.insert(t, job);
                    r.progress.insert(t, progress);
                }
                Err(e) => {
                    tracing::warn!(task = %t, error = %e, "cannot start a standby task");
                    r.broken = true;
                    return;
                }
            }
        }
    }

    /// Stops the standby of `task`, which a stream thread of this instance is about to restore as an active
    /// task, and waits until its stores are flushed, checkpointed and closed; keeps the task from being made a
    /// standby again while the thread holds it.
    pub(crate) fn release(&self, task: TaskId) {
        let Ok(mut guard) = self.running.lock() else {
            return;
        };
        let Some(r) = guard.as_mut() else { return };
        r.claimed.insert(task, Instant::now());
        r.progress.remove(&task);
        let Some(job) = r.jobs.remove(&task) else {
            return;
        };
        job.cancel.store(true, Ordering::Relaxed);
        let started = Instant::now();
        while !r.drain(Some((task, job.job))) {
            if started.elapsed() > RELEASE_TIMEOUT {
                tracing::error!(%task, "the standby task did not stop in time; the active task may not open its stores");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(%task, waited = ?started.elapsed(), "standby task handed to its active task");
    }

    /// The tasks this instance keeps standbys of.
    pub(crate) fn tasks(&self) -> BTreeSet<TaskId> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.jobs.keys().copied().collect()))
            .unwrap_or_default()
    }

    /// Where each partition of each standby task stands: store and partition -> (next changelog offset to
    /// read, end of the changelog as last seen). A standby still opening its stores has no entries yet.
    pub(crate) fn progress(&self) -> BTreeMap<(String, i32), (i64, i64)> {
        let Ok(guard) = self.running.lock() else {
            return BTreeMap::new();
        };
        let Some(r) = guard.as_ref() else {
            return BTreeMap::new();
        };
        r.progress
            .values()
            .filter_map(|p| p.lock().ok().map(|p| p.clone()))
            .flatten()
            .collect()
    }

    /// Stops every standby (each flushes and checkpoints what it read) and the updater.
    pub(crate) fn shutdown(&self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(mut r) = running {
            r.updater.shutdown();
        }
    }
}

fn standby_updater(ctx: &Arc<ThreadContext>) -> Result<StateUpdater, StreamsError> {
    let name = format!("{}-Standby", ctx.config.application_id);
    StateUpdater::start(
        ctx.clone(),
        &name,
        |e| tracing::error!(error = %e, "the standby updater's consumer failed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sub: usize, p: i32) -> TaskId {
        TaskId {
            subtopology: sub,
            partition: p,
        }
    }

    fn members(spec: &[(&str, &[i32])]) -> Vec<Member> {
        spec.iter()
            .map(|(k, parts)| Member {
                key: k.to_string(),
                active: parts.iter().map(|&p| t(0, p)).collect(),
            })
            .collect()
    }

    /// The standby holders of every task, by key.
    fn holders(ms: &[Member], replicas: usize) -> BTreeMap<TaskId, BTreeSet<String>> {
        place(ms, replicas)
            .into_iter()
            .map(|(task, idx)| (task, idx.iter().map(|&i| ms[i].key.clone()).collect()))
            .collect()
    }

    #[test]
    fn a_standby_is_never_on_the_instance_running_the_task_and_each_copy_is_on_another_instance() {
        let ms = members(&[
            ("a", &[0, 3, 6]),
            ("b", &[1, 4, 7]),
            ("c", &[2, 5, 8]),
            ("d", &[]),
        ]);
        for replicas in 0..=4 {
            let placed = holders(&ms, replicas);
            assert_eq!(placed.len(), 9, "every running task is placed");
            for (task, keys) in &placed {
                let owner = ms.iter().find(|m| m.active.contains(task)).unwrap();
                assert!(!keys.contains(&owner.key), "{task} standby with its active");
                // Three candidates per task: min(replicas, 3) distinct copies.
                assert_eq!(
                    keys.len(),
                    replicas.min(3),
                    "{task} with {replicas} replicas"
                );
            }
        }
    }

    #[test]
    fn every_instance_computes_the_same_placement_whatever_the_order_it_lists_the_instances_in() {
        let ms = members(&[("a", &[0, 1]), ("b", &[2, 3]), ("c", &[4, 5])]);
        let mut reversed = ms.clone();
        reversed.reverse();
        assert_eq!(holders(&ms, 1), holders(&reversed, 1));
        assert_eq!(holders(&ms, 2), holders(&reversed, 2));
    }

    #[test]
    fn an_instance_leaving_moves_only_the_standbys_it_held() {
        let parts: Vec<(String, Vec<i32>)> = (0..6)
            .map(|i| {
                (
                    format!("process-{i:02}"),
                    (0..60).filter(|p| p % 6 == i).collect(),
                )
            })
            .collect();
        let spec: Vec<(&str, &[i32])> = parts
            .iter()
            .map(|(k, p)| (k.as_str(), p.as_slice()))
            .collect();
        let before = holders(&members(&spec), 1);
        // process-05 leaves; its active tasks are not placed until someone runs them, the others keep theirs
        // unless process-05 held them.
        let after = holders(&members(&spec[..5]), 1);
        let mut moved = 0;
        for (task, keys) in &after {
            let was = &before[task];
            if was.contains("process-05") {
                moved += 1;
                assert_ne!(keys, was);
            } else {
                assert_eq!(keys, was, "{task} moved although its holder stayed");
            }
        }
        assert!(moved > 0, "process-05 held some standbys");
    }

    #[test]
    fn an_instance_joining_takes_about_its_share_of_standbys_and_no_other_moves() {
        let spec: Vec<(String, Vec<i32>)> = (0..4)
            .map(|i| (format!("p{i}"), (0..200).filter(|p| p % 4 == i).collect()))
            .collect();
        let as_members = |extra: bool| {
            let mut v: Vec<Member> = spec
                .iter()
                .map(|(k, p)| Member {
                    key: k.clone(),
                    active: p.iter().map(|&p| t(0, p)).collect(),
                })
                .collect();
            if extra {
                v.push(Member {
                    key: "new".into(),
                    active: BTreeSet::new(),
                });
            }
            v
        };
        let before = holders(&as_members(false), 1);
        let after = holders(&as_members(true), 1);
        let mut taken = 0;
        for (task, keys) in &after {
            if keys.contains("new") {
                taken += 1;
            } else {
                assert_eq!(
                    keys, &before[task],
                    "{task} moved between two old instances"
                );
            }
        }
        // Four candidates per task, the newcomer among them: about a quarter of 200.
        assert!(
            (25..=75).contains(&taken),
            "the newcomer took {taken} of 200"
        );
    }
}
