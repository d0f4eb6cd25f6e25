//! Standby replicas (`num.standby.replicas`): copies of a task's changelogged stores kept up to date on
//! instances other than the one running the task, so that when the task moves to one of them (its instance
//! crashed, left or was restarted) the new owner restores only what its copy had not read yet, instead of the
//! whole changelog.
//!
//! # Placement
//!
//! Every instance announces on the application's metadata topic (`<application.id>-metadata`) the partitions
//! its threads own, its process id (kept in the state directory, the same after a restart) and the standby
//! partitions it keeps, and its consumers' group member ids (sent with each assignment). From the
//! announcements every instance derives the same placement on its own, with no coordinator. For each task with
//! a known active owner:
//!
//! - The first copy goes to the instance the group's `range` assignor would give the task if its owner left:
//!   the assignor orders the consumers by member id, so that instance is known in advance (see
//!   `failover_target`). Member ids start with the consumer's client id, which starts with the process id,
//!   so an instance keeps its place in that order across restarts (on brokers that build member ids from
//!   client ids, as Kafka and tansu do; the embedded broker does not).
//! - Every other copy goes to the live instance ranking highest for that task by a hash of (process id, task)
//!   (rendezvous hashing) among those not running it, not holding a copy of it already and holding fewer
//!   than their share of all copies; a balancing pass then evens out what the first copies left uneven.
//!
//! - Never on the active's instance: the instance owning the task is not a candidate, and an instance never
//!   starts a standby for a task one of its own threads holds (restoring or running), whatever the
//!   announcements say.
//! - Balanced: each instance keeps about its share of the copies, an instance running no task included.
//! - Mostly sticky: a copy stays with the instance ranking highest for its task while that one has room, so
//!   most copies stay put as instances come and go, and a restarted instance (same process id) is given back
//!   copies it has on disk. A task without an announced owner (its partitions are being moved) keeps its
//!   standbys as they are.
//! - Fewer candidates than replicas: each candidate keeps one copy, no more.
//!
//! With `task.ownership=group` (the default), which instance runs each task is decided by the consumer group
//! (librdkafka's `range` assignor); the standbys make a move cheap when it lands on an instance holding a copy
//! (always, with two instances and one replica), and cost a full restore otherwise, as before. With
//! `task.ownership=library` none of this placement runs: the instances' own assignment says which standby
//! copies each keeps (see [`crate::runtime::ownership`]).
//!
//! # Warm-up before joining
//!
//! An instance starting with standby replicas does not join the group at once. It announces itself as joining,
//! with how its consumers' member ids will begin (their client ids, or group instance ids), so every instance
//! knows where the `range` assignor will place it and which running tasks its arrival will move, and to whom
//! (see `warm_ups`). Each instance a task will move to keeps a warm-up copy of it, beside the standby copies.
//! The joining instance starts its stream threads once its own warm-up copies are within
//! `acceptable.recovery.lag` of their changelogs and the other instances joining with it say the same of
//! theirs (or after five minutes, caught up or not); it then restores only what its copies had not read. A
//! warm-up copy stops when the move has happened, unless the placement keeps it as a standby copy. Each
//! instance keeps at most `max.warmup.replicas` warm-up copies catching up at once (see `admit_warm_ups`);
//! Kafka Streams counts that bound over the whole application, but an instance here knows only its own
//! copies' progress.
//!
//! This stands in for Kafka Streams' warm-up replicas and probing rebalances (KIP-441) without a custom
//! assignor: the group is never asked to give a task to an instance that is not ready for it, because that
//! instance is not in the group yet. It covers instances joining (a scale-out, a restart); tasks still move
//! eagerly at every rebalance, and an instance's departure moves its tasks at once, to the holders of their
//! first copies. On the embedded broker, whose member ids are not made from client ids, the prediction (and so
//! the warm-up) is a guess.
//!
//! # Ownership, zombies and failures
//!
//! Task ownership stays with the consumer group: a task runs where the group's current generation assigned its
//! partitions, and nothing here can make two instances run one task. An instance that lost its place in the
//! group (a zombie: paused past its session, cut off) has its offset commits refused by the broker (the
//! commit carries its generation); under exactly-once its transactions carry the group metadata too, so
//! they are refused and its producer is fenced, and nothing it wrote becomes visible. Under at-least-once, changelog
//! records a zombie writes before it learns it lost the task may land, as in Kafka Streams: the new owner
//! reads them when it restores, and the input since the last commit is processed again.
//!
//! Placement has no coordinating member to lose: every instance computes it from the announcements, which are
//! repeated every few seconds and expire after three missed repetitions. A crashed instance (or one that
//! crashed while warming up) drops out of every placement when its announcement expires, or as soon as the
//! group gives its partitions to others; the copies and warm-ups kept for it stop. Announcements that are
//! late or wrong can only put copies in the wrong place, which costs a restore when a task moves, never a
//! wrong result.
//!
//! # What a standby does
//!
//! A standby task opens the task's stores in the task's directory (the directory its active task uses on this
//! instance), restores them from its checkpoint, then goes on reading the changelogs, on a state updater of
//! its own (one per instance, with its own restore consumer, reading under `read_committed` when the
//! application is exactly-once). It flushes and checkpoints every few seconds when it read something. When a
//! stream thread of the instance is given the task, it first stops the standby, which flushes and checkpoints
//! its stores and leaves them open (`state_manager::HandedStores`), then restores the task as usual from the standby's
//! checkpoint, on the stores as the standby left them (no closing and reopening). Stale queries read the
//! copy through the move, until the active task runs and answers them itself. Standbys of stores kept in memory are
//! not kept (nothing of them would survive the move): a sub-topology has standby tasks when it has
//! changelogged stores, all of them persistent and none of them a table using its source topic as its
//! changelog (`TopologyOptimization::ReuseSourceTopics`: its restoration stops at the committed offset).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_store::{BatchEntry, KeyRange, KeyValueStore, KvIter, SharedKeyValueStore, StoreError};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::state_updater::{PendingRestore, StateUpdater};
use crate::runtime::thread::ThreadContext;
use crate::state_manager::{HandedStores, OpenedStore, StateManager};

/// A live instance as the placement sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// What ranks the instance for each task: its process id.
    pub key: String,
    /// The tasks it runs.
    pub active: BTreeSet<TaskId>,
    /// The group member ids of its stream threads' consumers (empty when unknown); for a joining member, how
    /// they will start.
    pub consumers: Vec<String>,
    /// Warming up before its threads join the group (see [`warm_ups`]).
    pub joining: bool,
    /// For a joining member: its copies of the tasks it will be given have caught up.
    pub ready: bool,
}

/// The member the group's `range` assignor gives `task` among the consumers of the members `counted` lets in:
/// the assignor sorts the consumers by member id and gives each topic's partitions out in contiguous ranges, the
/// first `partitions % consumers` consumers one more. `None` when some such member's consumers are unknown.
fn range_owner(
    members: &[Member],
    counted: impl Fn(usize, &Member) -> bool,
    task: TaskId,
    partitions: usize,
) -> Option<usize> {
    let in_group: Vec<(usize, &Member)> = members
        .iter()
        .enumerate()
        .filter(|(i, m)| counted(*i, m))
        .collect();
    if in_group.iter().any(|(_, m)| m.consumers.is_empty()) {
        return None;
    }
    let mut consumers: Vec<(&str, usize)> = in_group
        .iter()
        .flat_map(|(i, m)| m.consumers.iter().map(move |c| (c.as_str(), *i)))
        .collect();
    consumers.sort();
    let (n, p) = (consumers.len(), usize::try_from(task.partition).ok()?);
    if n == 0 || p >= partitions {
        return None;
    }
    let (per, extra) = (partitions / n, partitions % n);
    let index = if p < extra * (per + 1) {
        p / (per + 1)
    } else {
        extra + (p - extra * (per + 1)) / per
    };
    consumers.get(index).map(|c| c.1)
}

/// The member the group's `range` assignor would give `task` if its owner `owner` left (members warming up to
/// join are not in the group yet).
fn failover_target(
    members: &[Member],
    owner: usize,
    task: TaskId,
    partitions: usize,
) -> Option<usize> {
    range_owner(members, |i, m| i != owner && !m.joining, task, partitions)
}

/// Warm-up copies: while members are warming up to join the group, for each running task the group's `range`
/// assignor will move once they are in, the member it will move to (a joining member or one already in the
/// group). Empty when nobody joins.
///
/// A joining instance keeps its threads out of the group until its copies of the tasks it will be given have
/// caught up, so that it restores only what they missed; the members already in the group warm up the
/// tasks the joining ones' arrival moves to them.
pub(crate) fn warm_ups(
    members: &[Member],
    partitions: &dyn Fn(TaskId) -> usize,
) -> BTreeMap<TaskId, usize> {
    if !members.iter().any(|m| m.joining) {
        return BTreeMap::new();
    }
    let mut moves = BTreeMap::new();
    for (owner, m) in members.iter().enumerate().filter(|(_, m)| !m.joining) {
        for &task in &m.active {
            if let Some(heir) = range_owner(members, |_, _| true, task, partitions(task)) {
                if heir != owner {
                    moves.insert(task, heir);
                }
            }
        }
    }
    moves
}

/// The warm-up copies an instance keeps now, out of `wanted` (the tasks joins will move to it that it holds no
/// standby copy of, in task order): every one it `kept` already, and new ones, in order, while fewer than `max`
/// of those kept are still catching up (`caught_up` tells which are within `acceptable.recovery.lag`). The rest
/// start as these catch up (Kafka Streams' `max.warmup.replicas`, counted here per instance).
pub(crate) fn admit_warm_ups(
    wanted: &[TaskId],
    kept: &BTreeSet<TaskId>,
    caught_up: &dyn Fn(TaskId) -> bool,
    max: usize,
) -> BTreeSet<TaskId> {
    let mut admitted: BTreeSet<TaskId> = wanted
        .iter()
        .filter(|t| kept.contains(t))
        .copied()
        .collect();
    let mut catching_up = admitted.iter().filter(|t| !caught_up(**t)).count();
    for &t in wanted {
        if catching_up >= max {
            break;
        }
        if admitted.insert(t) {
            catching_up += usize::from(!caught_up(t));
        }
    }
    admitted
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

/// For each task some member runs, the indices (into `members`) of the members keeping its standbys.
/// `partitions` gives the partition count of a task's source topics.
///
/// A task's first copy goes to the member the group would move the task to if its owner failed (see
/// [`failover_target`]), when every member's consumers are known. The other copies: bounded-load rendezvous
/// hashing: copy by copy (every task's first, then every task's second, ...), task by
/// task in id order, each copy goes to the member ranking highest for the task among those not running it, not
/// holding a copy of it already, and holding fewer than their share of copies (the copies divided by the
/// members, rounded up); when none has room, to the one holding the fewest. So each member keeps about its
/// share, a task's copy usually stays with the member ranking highest for it as members come and go, and every
/// instance computes the same placement.
pub(crate) fn place(
    members: &[Member],
    replicas: usize,
    partitions: &dyn Fn(TaskId) -> usize,
) -> BTreeMap<TaskId, Vec<usize>> {
    let tasks: BTreeSet<TaskId> = members
        .iter()
        .flat_map(|m| m.active.iter().copied())
        .collect();
    // Candidates of each task, best first.
    let ranked: BTreeMap<TaskId, Vec<usize>> = tasks
        .iter()
        .map(|&task| {
            let mut candidates: Vec<(u64, &str, usize)> = members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.active.contains(&task))
                .map(|(i, m)| (score(&m.key, task), m.key.as_str(), i))
                .collect();
            candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            candidates.dedup_by(|a, b| a.1 == b.1);
            (task, candidates.into_iter().map(|c| c.2).collect())
        })
        .collect();
    let copies: usize = ranked.values().map(|c| c.len().min(replicas)).sum();
    let share = copies.div_ceil(members.len().max(1));
    let mut held = vec![0usize; members.len()];
    let mut placed: BTreeMap<TaskId, Vec<usize>> = tasks.iter().map(|&t| (t, Vec::new())).collect();
    // Copies where a failover would take the task: never moved by the balancing below.
    let mut pinned: BTreeMap<TaskId, usize> = BTreeMap::new();
    if replicas > 0 {
        for &task in &tasks {
            let owners: Vec<usize> = (0..members.len())
                .filter(|&i| members[i].active.contains(&task))
                .collect();
            if let [owner] = owners[..] {
                if let Some(target) = failover_target(members, owner, task, partitions(task)) {
                    held[target] += 1;
                    pinned.insert(task, target);
                    placed
                        .get_mut(&task)
                        .expect("every task is placed")
                        .push(target);
                }
            }
        }
    }
    for round in 0..replicas {
        for (task, candidates) in &ranked {
            let chosen = placed.get_mut(task).expect("every task is placed");
            if chosen.len() > round {
                continue;
            }
            let free = candidates.iter().copied().filter(|i| !chosen.contains(i));
            let pick = free
                .clone()
                .find(|&i| held[i] < share)
                .or_else(|| free.min_by_key(|&i| held[i]));
            if let Some(i) = pick {
                held[i] += 1;
                chosen.push(i);
            }
        }
    }
    // Task order can leave a member short while another has a copy too many (the short one could only have
    // taken copies given out before): move copies from the fullest to the emptiest while a move evens them.
    'balance: loop {
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| (held[i], members[i].key.as_str()));
        for &short in &order {
            for &full in order.iter().rev() {
                if held[full] < held[short] + 2 {
                    break;
                }
                let movable = ranked.iter().find(|(task, candidates)| {
                    let chosen = &placed[*task];
                    chosen.contains(&full)
                        && pinned.get(*task) != Some(&full)
                        && !chosen.contains(&short)
                        && candidates.contains(&short)
                });
                if let Some((task, _)) = movable {
                    let chosen = placed.get_mut(task).expect("every task is placed");
                    chosen.retain(|&i| i != full);
                    chosen.push(short);
                    held[full] -= 1;
                    held[short] += 1;
                    continue 'balance;
                }
            }
        }
        break;
    }
    placed
}

/// What a standby task shares with the rest of the instance: where its partitions stand and its stores.
#[derive(Default)]
pub(crate) struct StandbyState {
    /// Store and partition -> (next changelog offset to read, end of the changelog as last seen).
    pub positions: Mutex<BTreeMap<(String, i32), (i64, i64)>>,
    /// The task's stores, once open: read by stale queries.
    pub stores: Mutex<Vec<(String, SharedKeyValueStore)>>,
    /// Set when the task moves to a stream thread of this instance: the standby then stops leaving its stores
    /// open, in `left_open`, for the active task.
    hand_over: AtomicBool,
    left_open: Mutex<Option<StateManager>>,
}

/// A standby task's shared state.
pub(crate) type StandbyProgress = Arc<StandbyState>;

impl StandbyState {
    /// Whether the standby is stopping to hand its stores to its active task.
    pub(crate) fn handing_over(&self) -> bool {
        self.hand_over.load(Ordering::Relaxed)
    }

    /// Keeps the standby's stores, flushed and checkpointed, open for its active task.
    pub(crate) fn leave_open(&self, state: StateManager) {
        match self.left_open.lock() {
            Ok(mut l) => *l = Some(state),
            Err(_) => state.close(),
        }
    }

    /// Makes `stores` readable by queries while the standby writes them: each is moved behind a lock that the
    /// queries share; returns what the standby writes through.
    pub(crate) fn share(&self, stores: Vec<OpenedStore>) -> Vec<OpenedStore> {
        let mut shared = Vec::with_capacity(stores.len());
        let opened = stores
            .into_iter()
            .map(|o| {
                let persistent = o.store.persistent();
                let inner: SharedKeyValueStore = Arc::new(Mutex::new(o.store));
                shared.push((o.name.clone(), inner.clone()));
                OpenedStore {
                    store: Box::new(SharedStore {
                        name: o.name.clone(),
                        persistent,
                        inner,
                    }),
                    name: o.name,
                }
            })
            .collect();
        if let Ok(mut s) = self.stores.lock() {
            *s = shared;
        }
        opened
    }
}

/// A store behind a lock shared with the queries reading it. Closing it closes the store below (RocksDB
/// releases its directory) even while a query still holds the lock's handle: that query then fails.
struct SharedStore {
    name: String,
    persistent: bool,
    inner: SharedKeyValueStore,
}

impl SharedStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn KeyValueStore>>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned {
            store: self.name.clone(),
        })
    }
}

impl KeyValueStore for SharedStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock()?.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.lock()?.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock()?.delete(key)
    }
    /// Collected under the lock: the iterator cannot borrow it.
    fn scan(&self, range: &KeyRange, reverse: bool) -> Result<KvIter<'_>, StoreError> {
        let entries: Vec<_> = self.lock()?.scan(range, reverse)?.collect();
        Ok(Box::new(entries.into_iter()))
    }
    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.lock()?.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.lock()?.flush()
    }
    fn persistent(&self) -> bool {
        self.persistent
    }
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StoreError> {
        self.lock()?.get_into(key, out)
    }
    fn write_batch(&mut self, batch: &[BatchEntry<'_>]) -> Result<(), StoreError> {
        self.lock()?.write_batch(batch)
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.lock()?.close()
    }
    fn close_dirty(&mut self) -> Result<(), StoreError> {
        self.lock()?.close_dirty()
    }
    fn expired_segment_keys(&self, before: i64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.lock()?.expired_segment_keys(before)
    }
    fn drop_expired_segments(&mut self, before: i64) -> Result<usize, StoreError> {
        self.lock()?.drop_expired_segments(before)
    }
}

/// How long a task handed to a local stream thread stays excluded from the standbys even before the thread
/// reports it (its restoration is being queued).
const CLAIM_HOLD: Duration = Duration::from_secs(10);
/// The longest the standby updater polls between two looks at its jobs: a standby handed to its active task
/// stops within about this long. Idle standbys wake this often.
const STANDBY_STEP: Duration = Duration::from_millis(20);
/// How long stopping a standby may take before the stream thread goes on without it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The standby tasks of one instance.
pub(crate) struct Standbys {
    replicas: usize,
    running: Mutex<Option<Running>>,
    /// Stores of standbys handed to their active tasks, until these open them.
    handed: Arc<HandedStores>,
}

struct Running {
    ctx: Arc<ThreadContext>,
    updater: StateUpdater,
    jobs: BTreeMap<TaskId, PendingRestore>,
    /// Where each standby's partitions stand.
    progress: BTreeMap<TaskId, StandbyProgress>,
    /// Tasks handed to a local stream thread, and when.
    claimed: BTreeMap<TaskId, Instant>,
    /// Standbys handed to a local stream thread with their stores left open, and when: queries read their
    /// stores until the active task runs.
    handing: BTreeMap<TaskId, (StandbyProgress, Instant)>,
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
            handed: Arc::default(),
        }
    }

    /// How many replicas each task has (`num.standby.replicas`).
    pub(crate) fn replicas(&self) -> usize {
        self.replicas
    }

    /// The stores standbys leave open for their active tasks, taken when these open their stores.
    pub(crate) fn handed(&self) -> Arc<HandedStores> {
        self.handed.clone()
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
                handing: BTreeMap::new(),
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
        // Stores left open for a task that went elsewhere before it opened them; a task still restoring here
        // keeps its copy readable however long its restoration takes.
        r.handing
            .retain(|t, (_, at)| at.elapsed() < CLAIM_HOLD || local.contains(t));
        self.handed.close_unclaimed(Some(CLAIM_HOLD));
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
    /// task, and waits until its stores are flushed and checkpointed; they are left open for the active task,
    /// and queries go on reading them until it runs (see [`Standbys::started`]). Keeps the task from being
    /// made a standby again while the thread holds it.
    pub(crate) fn release(&self, task: TaskId) {
        let Ok(mut guard) = self.running.lock() else {
            return;
        };
        let Some(r) = guard.as_mut() else { return };
        r.claimed.insert(task, Instant::now());
        let progress = r.progress.remove(&task);
        let Some(job) = r.jobs.remove(&task) else {
            return;
        };
        if let Some(p) = &progress {
            p.hand_over.store(true, Ordering::Relaxed);
        }
        job.cancel.store(true, Ordering::Relaxed);
        let started = Instant::now();
        while !r.drain(Some((task, job.job))) {
            if r.broken {
                // The updater stopped on an error: it closed every store on its way out.
                return;
            }
            if started.elapsed() > RELEASE_TIMEOUT {
                tracing::error!(%task, "the standby task did not stop in time; the active task may not open its stores");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let left_open = progress
            .as_ref()
            .and_then(|p| p.left_open.lock().ok().and_then(|mut l| l.take()));
        if let (Some(state), Some(progress)) = (left_open, progress) {
            for store in state.stores {
                self.handed.put(task, store);
            }
            r.handing.insert(task, (progress, Instant::now()));
        }
        tracing::info!(%task, waited = ?started.elapsed(), "standby task handed to its active task");
    }

    /// Task `task`, released by [`Standbys::release`], runs on a stream thread of this instance, which serves
    /// queries of its stores from now on.
    pub(crate) fn started(&self, task: TaskId) {
        if let Some(r) = self.running.lock().ok().as_mut().and_then(|r| r.as_mut()) {
            r.handing.remove(&task);
        }
    }

    /// The tasks this instance keeps standbys of.
    pub(crate) fn tasks(&self) -> BTreeSet<TaskId> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.jobs.keys().copied().collect()))
            .unwrap_or_default()
    }

    /// The shared states of the running standby tasks, and with `handing` of those handed to an active task
    /// not running yet.
    fn states(&self, handing: bool) -> Vec<StandbyProgress> {
        self.running
            .lock()
            .ok()
            .and_then(|r| {
                r.as_ref().map(|r| {
                    let handed = r.handing.values().filter(|_| handing).map(|h| &h.0);
                    r.progress.values().chain(handed).cloned().collect()
                })
            })
            .unwrap_or_default()
    }

    /// Where each partition of each standby task stands: store and partition -> (next changelog offset to
    /// read, end of the changelog as last seen). A standby still opening its stores has no entries yet.
    pub(crate) fn progress(&self) -> BTreeMap<(String, i32), (i64, i64)> {
        self.states(false)
            .iter()
            .filter_map(|p| p.positions.lock().ok().map(|p| p.clone()))
            .flatten()
            .collect()
    }

    /// The parts of store `name` the standbys of this instance hold, those handed to an active task not running
    /// yet included.
    pub(crate) fn stores_named(&self, name: &str) -> Vec<SharedKeyValueStore> {
        self.states(true)
            .iter()
            .filter_map(|p| p.stores.lock().ok().map(|s| s.clone()))
            .flatten()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s)
            .collect()
    }

    /// Stops every standby (each flushes and checkpoints what it read) and the updater.
    pub(crate) fn shutdown(&self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(mut r) = running {
            r.updater.shutdown();
        }
        self.handed.close_unclaimed(None);
    }
}

fn standby_updater(ctx: &Arc<ThreadContext>) -> Result<StateUpdater, StreamsError> {
    let name = format!("{}-Standby", ctx.config.application_id);
    StateUpdater::start(
        ctx.clone(),
        &name,
        STANDBY_STEP,
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
                consumers: Vec::new(),
                joining: false,
                ready: false,
            })
            .collect()
    }

    /// The standby holders of every task, by key.
    fn holders(ms: &[Member], replicas: usize) -> BTreeMap<TaskId, BTreeSet<String>> {
        place(ms, replicas, &|_| 60)
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

    /// The copies each member holds.
    fn loads(ms: &[Member], replicas: usize) -> BTreeMap<String, usize> {
        let mut n: BTreeMap<String, usize> = ms.iter().map(|m| (m.key.clone(), 0)).collect();
        for keys in holders(ms, replicas).values() {
            for k in keys {
                *n.get_mut(k).unwrap() += 1;
            }
        }
        n
    }

    fn spread(members: usize, tasks: i32) -> Vec<Member> {
        (0..members)
            .map(|i| Member {
                key: format!("process-{i:02}"),
                active: (0..tasks)
                    .filter(|p| *p as usize % members == i)
                    .map(|p| t(0, p))
                    .collect(),
                consumers: Vec::new(),
                joining: false,
                ready: false,
            })
            .collect()
    }

    /// Defect: given out task by task, the copies of three tasks on three instances went two to one instance
    /// and none to another (the last copy found no room but on the instance already holding one).
    #[test]
    fn three_instances_three_tasks_one_copy_each() {
        let ms: Vec<Member> = ["3644751c8a6bc1b5", "a760a117711fdf0a", "b4a025fd2ba7adc6"]
            .iter()
            .enumerate()
            .map(|(i, k)| Member {
                key: k.to_string(),
                active: [t(1, i as i32)].into(),
                consumers: Vec::new(),
                joining: false,
                ready: false,
            })
            .collect();
        assert!(
            loads(&ms, 1).values().all(|&n| n == 1),
            "{:?}",
            loads(&ms, 1)
        );
    }

    #[test]
    fn each_member_keeps_about_its_share_of_the_copies() {
        for (members, tasks, replicas) in [
            (3, 3, 1),
            (3, 9, 1),
            (4, 30, 2),
            (5, 7, 1),
            (2, 8, 1),
            (6, 60, 1),
            (7, 100, 3),
        ] {
            let ms = spread(members, tasks);
            let n = loads(&ms, replicas);
            let share = (tasks as usize * replicas).div_ceil(members);
            assert_eq!(n.values().sum::<usize>(), tasks as usize * replicas);
            // Where the last copies find no member with room, one member may go one over.
            assert!(
                n.values().all(|&c| c <= share + 1)
                    && n.values().filter(|&&c| c > share).count() <= 1,
                "{members} members, {tasks} tasks, {replicas} replicas: {n:?}"
            );
        }
        // An instance running nothing keeps its share too.
        let mut ms = spread(2, 6);
        ms.push(Member {
            key: "idle".into(),
            active: BTreeSet::new(),
            consumers: Vec::new(),
            joining: false,
            ready: false,
        });
        assert_eq!(loads(&ms, 1)["idle"], 2);
    }

    #[test]
    fn a_member_leaving_leaves_most_other_copies_where_they_are() {
        let before = holders(&spread(6, 60), 1);
        let mut after_members = spread(6, 60);
        let gone = after_members.pop().unwrap().key;
        // The tasks the leaver ran are not placed until someone runs them; of the others, the copies the
        // leaver did not hold mostly stay.
        let after = holders(&after_members, 1);
        let (mut stayed, mut total) = (0, 0);
        for (task, keys) in &after {
            let was = &before[task];
            if !was.contains(&gone) {
                total += 1;
                stayed += usize::from(keys == was);
            }
        }
        assert!(total > 0);
        assert!(stayed * 4 >= total * 3, "{stayed} of {total} copies stayed");
    }

    /// librdkafka's `range` assignment of `partitions` partitions to `consumers` (member id, member index):
    /// sorted by member id, consumer `i` gets `per` partitions from `per * i + min(i, extra)`, one more when
    /// `i < extra`. Returns the member index owning each partition.
    fn range(mut consumers: Vec<(String, usize)>, partitions: usize) -> Vec<usize> {
        consumers.sort();
        let n = consumers.len();
        let (per, extra) = (partitions / n, partitions % n);
        let mut owner = vec![usize::MAX; partitions];
        for (i, (_, member)) in consumers.iter().enumerate() {
            let start = per * i + i.min(extra);
            let len = per + usize::from(i < extra);
            for slot in owner.iter_mut().skip(start).take(len) {
                *slot = *member;
            }
        }
        owner
    }

    /// Members with `threads` consumers each, owning the partitions `range` gives them.
    fn group(ids: &[&[&str]], partitions: usize) -> Vec<Member> {
        let consumers: Vec<(String, usize)> = ids
            .iter()
            .enumerate()
            .flat_map(|(i, cs)| cs.iter().map(move |c| (c.to_string(), i)))
            .collect();
        let owner = range(consumers, partitions);
        ids.iter()
            .enumerate()
            .map(|(i, cs)| Member {
                key: format!("process-{i}"),
                active: (0..partitions)
                    .filter(|&p| owner[p] == i)
                    .map(|p| t(0, p as i32))
                    .collect(),
                consumers: cs.iter().map(|c| c.to_string()).collect(),
                joining: false,
                ready: false,
            })
            .collect()
    }

    #[test]
    fn warm_ups_beyond_max_warmup_replicas_wait_until_earlier_ones_catch_up() {
        let t = |p: i32| TaskId {
            subtopology: 0,
            partition: p,
        };
        let wanted: Vec<TaskId> = (0..5).map(t).collect();
        // Simulated rounds: a copy catches up two rounds after it starts. Track how many catch up at once.
        for max in 1..=5 {
            let mut kept = BTreeSet::new();
            let mut started: BTreeMap<TaskId, usize> = BTreeMap::new();
            for round in 0..40 {
                let caught = |x: TaskId| started.get(&x).is_some_and(|&r| round >= r + 2);
                let now = admit_warm_ups(&wanted, &kept, &caught, max);
                assert!(kept.is_subset(&now), "a kept copy is never dropped");
                let catching = now.iter().filter(|x| !caught(**x)).count();
                assert!(catching <= max, "max {max}: {catching} catching up at once");
                for x in &now {
                    started.entry(*x).or_insert(round);
                }
                // New copies are taken in task order.
                let order: Vec<TaskId> =
                    wanted.iter().filter(|x| now.contains(x)).copied().collect();
                assert_eq!(order, wanted[..now.len()].to_vec());
                kept = now;
            }
            assert_eq!(
                kept.len(),
                wanted.len(),
                "max {max}: every warm-up starts in the end"
            );
            // With one at a time, the copies start two rounds apart.
            if max == 1 {
                let rounds: Vec<usize> = wanted.iter().map(|x| started[x]).collect();
                assert_eq!(rounds, [0, 2, 4, 6, 8]);
            }
        }
        // Copies already caught up do not count against the bound.
        let kept: BTreeSet<TaskId> = [t(0), t(1)].into();
        let all_caught = |x: TaskId| x.partition < 2;
        assert_eq!(
            admit_warm_ups(&wanted, &kept, &all_caught, 2),
            [t(0), t(1), t(2), t(3)].into()
        );
        // A task no longer wanted is not kept by this (the caller lets it linger).
        assert_eq!(
            admit_warm_ups(&[t(4)], &kept, &all_caught, 1),
            [t(4)].into()
        );
    }

    #[test]
    fn a_joining_member_warms_up_exactly_the_tasks_the_range_assignor_will_move_and_to_whom() {
        // The running members' consumers, the joining member's, and the partitions.
        type Layout<'a> = (&'a [&'a [&'a str]], &'a [&'a str], usize);
        let layouts: &[Layout] = &[
            // One instance running everything, two joining: each takes its future tasks.
            (&[&["app-a-1-"]], &["app-b-1-"], 3),
            (&[&["app-m-1-"]], &["app-c-1-"], 3),
            // Joining between two running members: the one after it in the order gains tasks too.
            (&[&["k-1-x"], &["m-1-x"]], &["l-1-"], 7),
            (&[&["x1", "x9"], &["x4"]], &["x2-", "x3-"], 12),
        ];
        for &(running, joining, partitions) in layouts {
            let mut ms = group(running, partitions);
            let before: BTreeMap<TaskId, usize> = ms
                .iter()
                .enumerate()
                .flat_map(|(i, m)| m.active.iter().map(move |t| (*t, i)))
                .collect();
            assert!(warm_ups(&ms, &|_| partitions).is_empty(), "nobody joins");
            ms.push(Member {
                key: "joining".into(),
                active: BTreeSet::new(),
                consumers: joining.iter().map(|c| c.to_string()).collect(),
                joining: true,
                ready: false,
            });
            // Where `range` puts every partition once the joining member is in the group.
            let all: Vec<(String, usize)> = ms
                .iter()
                .enumerate()
                .flat_map(|(i, m)| m.consumers.iter().map(move |c| (c.clone(), i)))
                .collect();
            let after = range(all, partitions);
            let expected: BTreeMap<TaskId, usize> = before
                .iter()
                .filter(|(t, owner)| after[t.partition as usize] != **owner)
                .map(|(t, _)| (*t, after[t.partition as usize]))
                .collect();
            assert!(!expected.is_empty());
            assert_eq!(
                warm_ups(&ms, &|_| partitions),
                expected,
                "{running:?} + {joining:?}"
            );
            // The first copies still go where a failure would move each task among the members in the group.
            let placed = place(&ms, 1, &|_| partitions);
            for (gone, m) in ms.iter().enumerate().filter(|(_, m)| !m.joining) {
                let rest: Vec<(String, usize)> = ms
                    .iter()
                    .enumerate()
                    .filter(|(i, m)| *i != gone && !m.joining)
                    .flat_map(|(i, m)| m.consumers.iter().map(move |c| (c.clone(), i)))
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                let heirs = range(rest, partitions);
                for task in &m.active {
                    assert!(placed[task].contains(&heirs[task.partition as usize]));
                }
            }
        }
    }

    #[test]
    fn when_an_instance_fails_the_group_gives_each_of_its_tasks_to_an_instance_holding_a_copy() {
        let layouts: &[(&[&[&str]], usize)] = &[
            (&[&["rdkafka-7"], &["rdkafka-2"], &["rdkafka-5"]], 3),
            (&[&["m-c"], &["m-a"], &["m-b"], &["m-d"]], 10),
            (&[&["x1", "x9"], &["x4"], &["x2", "x3"]], 12),
            (&[&["k"], &["j"]], 7),
        ];
        for &(ids, partitions) in layouts {
            let ms = group(ids, partitions);
            let placed = place(&ms, 1, &|_| partitions);
            for (gone, m) in ms.iter().enumerate() {
                // The group without `gone`: where `range` moves each of its tasks.
                let rest: Vec<(String, usize)> = ms
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != gone)
                    .flat_map(|(i, m)| m.consumers.iter().map(move |c| (c.clone(), i)))
                    .collect();
                let after = range(rest, partitions);
                for task in &m.active {
                    let heir = after[task.partition as usize];
                    assert!(
                        placed[task].contains(&heir),
                        "{ids:?}: {task} moves from {gone} to {heir}, copies on {:?}",
                        placed[task]
                    );
                }
            }
        }
    }
}
