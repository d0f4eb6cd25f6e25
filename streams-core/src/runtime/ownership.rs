//! Task ownership decided by the instances themselves (`task.ownership=library`), on any broker.
//!
//! librdkafka's consumer group runs its assignors inside the client and offers no hook for one of ours, so with
//! the consumer group deciding (`task.ownership=group`, the default) tasks land where the `range` assignor puts
//! them, whatever their state, and every rebalance of the classic protocol stops every task. With library
//! ownership the consumer group is not used for ownership at all: the instances agree on an assignment through
//! one topic and each stream thread assigns itself (`assign`, not `subscribe`) the partitions of its tasks.
//!
//! # The ownership topic
//!
//! `<application.id>-ownership`, one partition, compacted. It holds two kinds of records:
//!
//! - **Heartbeats**, keyed `member:<process id>`, sent every tenth of `task.ownership.session.timeout.ms` and at
//!   once when what they say changes: the instance's thread count (its capacity), the tasks its threads hold or
//!   claim, and for each task of which it keeps a standby copy the copy's changelog offset sum. A clean close
//!   ends with a tombstone. The process id is kept in the state directory, so a restarted instance is the same
//!   member.
//! - **Assignments**, keyed `assignment`: a generation, the member that computed it, the members it was
//!   computed for (with their capacities), each member's active and standby tasks, whether a probing
//!   follow-up is due, and which members were caught up on each stateful task.
//!
//! Every instance reads the topic from its beginning and keeps the same view of it: the latest heartbeat of
//! each member, when it was read, and from which offset on a member has listed each task it holds, and the
//! assignment of the highest (generation, author). Liveness is judged on the reader's own clock only: a member
//! whose heartbeat was last read more than a session timeout ago is gone. No clocks need to agree.
//!
//! # Who computes the assignment
//!
//! The live member with the smallest process id (the instance itself counts once it has read the topic to its
//! end and its own heartbeat back). It computes a new assignment when the live members or their capacities
//! differ from those of the current one, or when the current one asked for a probing follow-up and the set of
//! caught-up members of some task changed (a warm-up caught up). The computation is Kafka Streams'
//! high-availability assignor (`crate::runtime::assignor`, KIP-441): actives go to the members holding a
//! caught-up copy (the previous owner, whose copy is the running task, counts as caught up), standbys never
//! next to their active, and a task whose best home is not caught up stays where it is while a warm-up copy
//! catches up, at most `max.warmup.replicas` at a time. Changelog end offsets come from the broker; copies'
//! offset sums from the heartbeats.
//!
//! If the computing member dies, its heartbeats stop, the others see it gone a session timeout later, and
//! the next smallest process id takes over: its membership differs from the assignment's, so it computes
//! the next generation. Two members computing at once (their views of who is live differ for a moment)
//! publish two assignments; everyone follows the one ordered last by (generation, author), and the claims
//! below keep the gap harmless.
//!
//! # Moving a task without two owners
//!
//! The assignment says who should run a task; a thread starts it only when it may:
//!
//! 1. An instance assigned a task claims it: the task joins the `held` list of its heartbeats.
//! 2. It starts the task once it has read its own claim back and every other live member that lists the task
//!    began listing it at a later offset than it did. The topic's single partition orders every claim, so
//!    two instances can never both be first.
//! 3. An instance whose assignment no longer gives it a task commits the task's offsets, flushes and
//!    checkpoints its stores, closes it and drops it from its heartbeats, which lets the next owner start.
//! 4. A member the others saw gone (its heartbeats unread for a session) may have had its tasks started
//!    elsewhere meanwhile, so its old claims must not count when it comes back: every heartbeat carries the
//!    member's incarnation, which changes whenever its lease lapsed, and the claims of a new incarnation start
//!    at its first heartbeat, behind those of whoever took the tasks over.
//!
//! Only the tasks that move stop: every other task keeps processing through the change, on every instance.
//! Co-partitioned partitions stay together because the unit of ownership is the task, and a task's partitions
//! are assigned together.
//!
//! # Zombies
//!
//! An instance that cannot heartbeat (paused, cut off from the broker) must stop before anyone else starts
//! its tasks. Each instance holds a lease: two thirds of the session timeout from the moment it sent its
//! latest heartbeat that it has read back (only a heartbeat of the current incarnation renews it). The others
//! start its tasks no earlier than a whole session timeout after they read that heartbeat, which is later. A
//! thread checks the lease before each round, before processing what it polled and before each commit; once it
//! has lapsed, or been renewed under a new incarnation since the thread took its tasks on, the thread drops its
//! tasks as lost (closed without committing, flushing or checkpointing) until a claim is granted again. The
//! bound needs only that the instances' clocks run at about the same rate, not that they agree. Under
//! at-least-once, records a paused instance had already handed to its producer may still land after its lease
//! lapsed, as they may in Kafka Streams when a member is fenced; the next owner reprocesses from the last
//! commit. Exactly-once is not offered with library ownership: its transactions are fenced by the consumer
//! group's generation.
//!
//! Offsets are committed under the application id as the group, without a generation (no member ever joins
//! that group): every instance of an application must use the same `task.ownership`.
//!
//! # Where this differs from Kafka Streams
//!
//! Kafka Streams schedules a probing rebalance every `probing.rebalance.interval.ms` (10 minutes) while warm-ups
//! catch up; here the computing member re-evaluates as soon as the caught-up members of a task change, so a
//! warmed-up task moves within a heartbeat. Members are ordered by their process id as a string; Kafka orders
//! its UUIDs as two signed longs, which differs when their top bits are set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use serde::{Deserialize, Serialize};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::assignor::{self, AssignmentConfigs, ClientAssignment, ClientInput};
use crate::runtime::clients::single_partition_clients;
use crate::runtime::config::StreamsConfig;
use crate::runtime::security::StreamsClientContext;

/// A task as the topic's records carry it: (sub-topology, partition).
type TaskKey = (usize, i32);

fn key(t: TaskId) -> TaskKey {
    (t.subtopology, t.partition)
}

fn task(k: TaskKey) -> TaskId {
    TaskId {
        subtopology: k.0,
        partition: k.1,
    }
}

/// What a member says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// Its stream thread count.
    pub capacity: usize,
    /// Tasks its threads hold or that it claims.
    pub held: Vec<TaskKey>,
    /// Offset sums of its standby copies, each with the sum of the changelog ends its copy has seen.
    pub copies: Vec<(TaskKey, i64, i64)>,
    /// Numbers its heartbeats, so that it knows which one it read back.
    pub seq: u64,
    /// Changes when the member's lease lapsed (and when it starts): the claims of a heartbeat of a new
    /// incarnation start anew, whatever the member listed before.
    #[serde(default)]
    pub incarnation: u64,
}

/// An assignment as published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Published {
    pub generation: u64,
    /// The member that computed it.
    pub author: String,
    /// The members it was computed for, with their capacities.
    pub members: BTreeMap<String, usize>,
    /// Each member's active and standby tasks.
    pub tasks: BTreeMap<String, (Vec<TaskKey>, Vec<TaskKey>)>,
    /// A probing follow-up is due: some task waits for a warm-up to catch up.
    pub probing: bool,
    /// The members caught up on each stateful task when it was computed.
    pub caught_up: BTreeMap<String, Vec<TaskKey>>,
}

impl Published {
    fn order(&self) -> (u64, &str) {
        (self.generation, self.author.as_str())
    }

    /// The active and standby tasks of `member`.
    fn of(&self, member: &str) -> (BTreeSet<TaskId>, BTreeSet<TaskId>) {
        self.tasks
            .get(member)
            .map(|(a, s)| {
                (
                    a.iter().copied().map(task).collect(),
                    s.iter().copied().map(task).collect(),
                )
            })
            .unwrap_or_default()
    }
}

/// The latest heartbeat of one member, as read.
#[derive(Debug, Clone)]
struct Seen {
    heartbeat: Heartbeat,
    read_at: Instant,
    /// For each task it lists, the offset of the first heartbeat of its current run of listing it.
    since: BTreeMap<TaskId, i64>,
}

/// What an instance has read of the ownership topic.
#[derive(Debug, Default, Clone)]
pub(crate) struct View {
    members: BTreeMap<String, Seen>,
    assignment: Option<Published>,
}

const MEMBER_PREFIX: &str = "member:";
const ASSIGNMENT_KEY: &str = "assignment";

impl View {
    /// Applies the record at `offset` (read at `now`); a malformed one is logged and skipped.
    pub(crate) fn apply(&mut self, offset: i64, key: &str, payload: Option<&[u8]>, now: Instant) {
        if let Some(member) = key.strip_prefix(MEMBER_PREFIX) {
            let Some(p) = payload else {
                self.members.remove(member);
                return;
            };
            let heartbeat: Heartbeat = match serde_json::from_slice(p) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(member, offset, error = %e, "ignoring a malformed ownership heartbeat");
                    return;
                }
            };
            let held: BTreeSet<TaskId> = heartbeat.held.iter().copied().map(task).collect();
            let previous = self
                .members
                .remove(member)
                .filter(|s| s.heartbeat.incarnation == heartbeat.incarnation);
            let mut since = previous.map(|s| s.since).unwrap_or_default();
            since.retain(|t, _| held.contains(t));
            for t in held {
                since.entry(t).or_insert(offset);
            }
            self.members.insert(
                member.to_string(),
                Seen {
                    heartbeat,
                    read_at: now,
                    since,
                },
            );
        } else if key == ASSIGNMENT_KEY {
            let Some(p) = payload else { return };
            match serde_json::from_slice::<Published>(p) {
                Ok(a) => {
                    if self
                        .assignment
                        .as_ref()
                        .is_none_or(|cur| a.order() > cur.order())
                    {
                        self.assignment = Some(a);
                    }
                }
                Err(e) => {
                    tracing::warn!(offset, error = %e, "ignoring a malformed published assignment")
                }
            }
        }
    }

    /// The members whose latest heartbeat was read within `session` of `now`, with their capacities.
    pub(crate) fn live(&self, now: Instant, session: Duration) -> BTreeMap<String, usize> {
        self.members
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.read_at) <= session)
            .map(|(m, s)| (m.clone(), s.heartbeat.capacity))
            .collect()
    }

    /// Whether `me` may start `t`: it has read its own claim of `t` back, and every other live member listing
    /// `t` began listing it later.
    pub(crate) fn may_start(&self, me: &str, t: TaskId, now: Instant, session: Duration) -> bool {
        let Some(mine) = self.members.get(me).and_then(|s| s.since.get(&t)) else {
            return false;
        };
        self.members.iter().all(|(m, s)| {
            m == me
                || now.saturating_duration_since(s.read_at) > session
                || s.since.get(&t).is_none_or(|o| o > mine)
        })
    }

    /// Whether `me`'s heartbeat read last lists every task of `tasks`.
    fn claimed(&self, me: &str, tasks: &BTreeSet<TaskId>) -> bool {
        self.members
            .get(me)
            .is_some_and(|s| tasks.iter().all(|t| s.since.contains_key(t)))
    }

    /// The sequence number of `me`'s heartbeat read last.
    fn own_seq(&self, me: &str) -> Option<u64> {
        self.members.get(me).map(|s| s.heartbeat.seq)
    }
}

/// The instance's tasks spread over its threads: a task stays with the thread holding or given it, new tasks go
/// to the thread with the fewest, the first of equals by name.
pub(crate) fn spread(
    threads: &BTreeMap<String, BTreeSet<TaskId>>,
    tasks: &BTreeSet<TaskId>,
) -> BTreeMap<String, BTreeSet<TaskId>> {
    let mut out: BTreeMap<String, BTreeSet<TaskId>> = threads
        .iter()
        .map(|(name, had)| (name.clone(), had.intersection(tasks).copied().collect()))
        .collect();
    if out.is_empty() {
        return out;
    }
    let placed: BTreeSet<TaskId> = out.values().flatten().copied().collect();
    for t in tasks.iter().filter(|t| !placed.contains(t)) {
        if let Some((_, set)) = out.iter_mut().min_by_key(|(_, set)| set.len()) {
            set.insert(*t);
        }
    }
    out
}

/// Reads the sum of the changelog end offsets of each of the given tasks (absent when unknown).
pub(crate) type EndOffsets = Box<dyn Fn(&BTreeSet<TaskId>) -> BTreeMap<TaskId, i64> + Send + Sync>;

/// Reads the offset sum of each standby copy, with the sum of the changelog ends the copy has seen.
pub(crate) type Copies = Box<dyn Fn() -> BTreeMap<TaskId, (i64, i64)> + Send + Sync>;

/// Keeps standby copies of the first tasks given; of the second (tasks given to this instance that no thread
/// holds yet), keeps the copies it has, for a thread to take their stores over open.
pub(crate) type SetStandbys = Box<dyn Fn(&BTreeSet<TaskId>, &BTreeSet<TaskId>) + Send + Sync>;

/// What the instance needs from the rest of the runtime.
pub(crate) struct Hooks {
    /// Every task of the topology.
    pub all_tasks: BTreeSet<TaskId>,
    /// The tasks with changelogged persistent state (those that can have standby copies).
    pub stateful: BTreeSet<TaskId>,
    /// The offset sum of each standby copy this instance keeps, with the sum of the changelog ends it has
    /// seen.
    pub copies: Copies,
    /// The sum of the changelog end offsets of each of the given tasks (absent when unknown).
    pub end_offsets: EndOffsets,
    /// Keeps standby copies of these tasks (see [`SetStandbys`]).
    pub set_standbys: SetStandbys,
}

/// One stream thread's share.
#[derive(Debug, Default, Clone)]
struct ThreadShare {
    /// The tasks it should run now.
    wanted: BTreeSet<TaskId>,
    /// The tasks it holds open.
    held: BTreeSet<TaskId>,
}

/// The mutable state of the coordinator.
struct State {
    view: View,
    /// Whether the topic was read to the end it had at start.
    caught_up: bool,
    seq: u64,
    /// When each recent heartbeat was sent, and its incarnation.
    sent: BTreeMap<u64, (Instant, u64)>,
    threads: BTreeMap<String, ThreadShare>,
    /// Whether this instance follows an assignment computed for it, under a current lease, its claims read
    /// back: until then its threads have no answer (they are not told "no task" before anyone decided so).
    assigned: bool,
    /// What the latest heartbeat said of held tasks and capacity (a change sends one at once).
    last_said: Option<(Vec<TaskKey>, usize)>,
    last_heartbeat: Option<Instant>,
    left: bool,
    /// Whether the instance warned that it cannot read its own heartbeat back.
    warned: bool,
}

/// An instance's lease, and the incarnation it belongs to.
#[derive(Debug, Clone, Copy)]
struct Lease {
    until: Option<Instant>,
    incarnation: u64,
    /// Whether the lease was current at the latest check.
    held: bool,
}

impl Lease {
    /// A lease not yet granted, of an incarnation no earlier run of this process id used (the clock's
    /// milliseconds: a restarted instance keeps its process id).
    fn new() -> Lease {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Lease {
            until: None,
            incarnation: millis,
            held: false,
        }
    }

    /// The incarnation, while the lease is current at `now`.
    fn current(&self, now: Instant) -> Option<u64> {
        self.until
            .is_some_and(|u| now < u)
            .then_some(self.incarnation)
    }

    /// Extends the lease to `until`, granted by a heartbeat of `incarnation` read back (one of an earlier
    /// incarnation grants nothing).
    fn renew(&mut self, until: Instant, incarnation: u64) {
        if incarnation == self.incarnation && self.until.is_none_or(|u| until > u) {
            self.until = Some(until);
        }
    }

    /// The incarnation the next heartbeat carries: a new one when the lease lapsed since the last check.
    fn check(&mut self, now: Instant) -> u64 {
        let current = self.current(now).is_some();
        if self.held && !current {
            self.incarnation += 1;
        }
        self.held = current;
        self.incarnation
    }
}

/// The instance's member of the ownership protocol (see the module documentation).
pub(crate) struct Ownership {
    me: String,
    topic: String,
    session: Duration,
    /// When the instance joined.
    started: Instant,
    configs: AssignmentConfigs,
    hooks: Hooks,
    producer: BaseProducer<StreamsClientContext>,
    state: Mutex<State>,
    /// Until when this instance may process and commit (see the module documentation).
    lease: Mutex<Lease>,
    /// The changelogs' ends read last, and when.
    ends: Mutex<Option<(Instant, BTreeMap<TaskId, i64>)>>,
    /// Bumped whenever a thread's wanted tasks change.
    version: AtomicU64,
    /// Set when a thread's share changed: the next step runs at once (a released task is announced without
    /// waiting for the next heartbeat).
    dirty: AtomicBool,
    stop: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Ownership {
    /// The ownership topic of an application.
    pub(crate) fn topic(application_id: &str) -> String {
        format!("{application_id}-ownership")
    }

    /// Joins: starts reading the topic and heartbeating as `process_id`.
    pub(crate) fn start(
        config: &StreamsConfig,
        process_id: &str,
        hooks: Hooks,
    ) -> Result<Arc<Ownership>, StreamsError> {
        let topic = Self::topic(&config.application_id);
        // A short fetch wait: claims and heartbeats read back sooner let tasks move sooner.
        let (producer, consumer) =
            single_partition_clients(config, &topic, "ownership", &[("fetch.wait.max.ms", "20")])?;
        let end = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(30))
            .map_err(|e| StreamsError::processor(format!("ownership topic {topic}: {e}")))?
            .1;
        let me = Arc::new(Ownership {
            me: process_id.to_string(),
            topic,
            started: Instant::now(),
            session: config.ownership_session_timeout,
            configs: AssignmentConfigs {
                acceptable_recovery_lag: u64::try_from(config.acceptable_recovery_lag).unwrap_or(0),
                max_warmup_replicas: config.max_warmup_replicas,
                num_standby_replicas: config.num_standby_replicas,
            },
            hooks,
            producer,
            state: Mutex::new(State {
                view: View::default(),
                caught_up: end <= 0,
                seq: 0,
                sent: BTreeMap::new(),
                threads: BTreeMap::new(),
                assigned: false,
                last_said: None,
                last_heartbeat: None,
                left: false,
                warned: false,
            }),
            lease: Mutex::new(Lease::new()),
            ends: Mutex::new(None),
            version: AtomicU64::new(1),
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            worker: Mutex::new(None),
        });
        let worker = me.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{}-ownership", config.application_id))
            .spawn(move || worker.run(consumer, end))
            .map_err(|source| StreamsError::Io {
                path: "ownership thread".into(),
                source,
            })?;
        if let Ok(mut w) = me.worker.lock() {
            *w = Some(handle);
        }
        Ok(me)
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.session / 10).max(Duration::from_millis(100))
    }

    /// The part of the session an instance's own heartbeat read back keeps its lease.
    fn lease_span(&self) -> Duration {
        self.session * 2 / 3
    }

    fn run(self: Arc<Self>, consumer: BaseConsumer<StreamsClientContext>, end: i64) {
        let mut next_tick = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut read = false;
            // Everything already fetched, then a short wait.
            let mut timeout = Duration::from_millis(50);
            while let Some(m) = consumer.poll(timeout) {
                timeout = Duration::ZERO;
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "ownership reader");
                        break;
                    }
                };
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                if let Ok(mut s) = self.state.lock() {
                    s.view.apply(m.offset(), key, m.payload(), Instant::now());
                    if m.offset() + 1 >= end {
                        s.caught_up = true;
                    }
                }
                read = true;
            }
            if read || self.dirty.swap(false, Ordering::SeqCst) || Instant::now() >= next_tick {
                self.tick();
                next_tick =
                    Instant::now() + self.heartbeat_interval().min(Duration::from_millis(500));
            }
        }
    }

    /// One step: renews the lease, computes an assignment if this instance is the one to, follows the current
    /// one, and heartbeats when due or when what it says changed. Reading the changelog ends and writing to the
    /// topic happen outside the state's lock: the stream threads ask it for their tasks.
    fn tick(&self) {
        let now = Instant::now();
        let view = {
            let Ok(mut s) = self.state.lock() else { return };
            if s.left {
                return;
            }
            if let Some(seq) = s.view.own_seq(&self.me) {
                if let Some(&(sent, incarnation)) = s.sent.get(&seq) {
                    if let Ok(mut l) = self.lease.lock() {
                        l.renew(sent + self.lease_span(), incarnation);
                    }
                }
                s.sent.retain(|&k, _| k >= seq);
            }
            let ready = s.caught_up && s.view.own_seq(&self.me).is_some();
            if !ready && !s.warned && now.duration_since(self.started) > self.session {
                s.warned = true;
                tracing::warn!(
                    topic = %self.topic,
                    "this instance has not read its own heartbeat back from the ownership topic within the \
                     session timeout: it takes on no task until it does (check that it may read and write the topic)"
                );
            }
            ready.then(|| s.view.clone())
        };
        if let Some(next) = view.and_then(|v| self.compute(&v, now)) {
            tracing::info!(
                generation = next.generation,
                members = ?next.members,
                tasks = ?next.tasks,
                probing = next.probing,
                "publishing a task assignment"
            );
            self.publish(&next);
            if let Ok(mut s) = self.state.lock() {
                s.view.apply(
                    -1,
                    ASSIGNMENT_KEY,
                    serde_json::to_vec(&next).ok().as_deref(),
                    now,
                );
            }
        }
        let copies: Vec<(TaskKey, i64, i64)> = (self.hooks.copies)()
            .into_iter()
            .map(|(t, (o, end))| (key(t), o, end))
            .collect();
        // A lease that lapsed since the last step starts a new incarnation: its heartbeats claim anew.
        let (lease_ok, incarnation) = match self.lease.lock() {
            Ok(mut l) => {
                let incarnation = l.check(now);
                (l.current(now).is_some(), incarnation)
            }
            Err(_) => return,
        };
        let Ok(mut s) = self.state.lock() else { return };
        // Follow the current assignment.
        let (mine, standby) = s
            .view
            .assignment
            .as_ref()
            .map(|a| a.of(&self.me))
            .unwrap_or_default();
        let held_by_threads: BTreeSet<TaskId> = s
            .threads
            .values()
            .flat_map(|t| t.held.iter().copied())
            .collect();
        let startable: BTreeSet<TaskId> = mine
            .iter()
            .copied()
            .filter(|&t| {
                lease_ok
                    && (held_by_threads.contains(&t)
                        || s.view.may_start(&self.me, t, now, self.session))
            })
            .collect();
        let current: BTreeMap<String, BTreeSet<TaskId>> = s
            .threads
            .iter()
            .map(|(n, t)| (n.clone(), t.wanted.union(&t.held).copied().collect()))
            .collect();
        // The threads hear of the assignment once the instance's claims of its tasks are read back: what they
        // are told then is what they may run now, the rest waits for other instances to release it.
        let assigned = lease_ok
            && s.view
                .assignment
                .as_ref()
                .is_some_and(|a| a.members.contains_key(&self.me))
            && s.view.claimed(&self.me, &mine);
        let mut changed = std::mem::replace(&mut s.assigned, assigned) != assigned;
        for (name, w) in spread(&current, &startable) {
            if let Some(t) = s.threads.get_mut(&name) {
                if t.wanted != w {
                    t.wanted = w;
                    changed = true;
                }
            }
        }
        if changed {
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        // Claims: every task assigned here, plus what the threads still hold.
        let held: Vec<TaskKey> = mine.union(&held_by_threads).copied().map(key).collect();
        let capacity = s.threads.len().max(1);
        let due = s
            .last_heartbeat
            .is_none_or(|at| now.duration_since(at) >= self.heartbeat_interval());
        // Copies' offsets change all the time: they alone wait for the next beat.
        let news = s
            .last_said
            .as_ref()
            .is_none_or(|(h, c)| *h != held || *c != capacity);
        let beat = (due || news).then(|| {
            s.seq += 1;
            let seq = s.seq;
            s.sent.insert(seq, (now, incarnation));
            s.last_said = Some((held.clone(), capacity));
            s.last_heartbeat = Some(now);
            Heartbeat {
                capacity,
                held,
                copies,
                seq,
                incarnation,
            }
        });
        drop(s);
        // A copy of a task given to this instance stays until a thread takes the task on: it answers stale
        // queries meanwhile, and the thread takes its stores over open.
        let pending: BTreeSet<TaskId> = mine.difference(&held_by_threads).copied().collect();
        (self.hooks.set_standbys)(&standby, &pending);
        if let Some(hb) = beat {
            match serde_json::to_vec(&hb) {
                Ok(v) => self.send(&format!("{MEMBER_PREFIX}{}", self.me), Some(&v)),
                Err(e) => tracing::warn!(error = %e, "cannot encode a heartbeat"),
            }
        }
    }

    /// The stateful tasks' changelog ends as read last, when that was less than a heartbeat interval ago.
    fn recent_ends(&self) -> Option<BTreeMap<TaskId, i64>> {
        let cache = self.ends.lock().ok()?;
        let (at, ends) = cache.as_ref()?;
        (at.elapsed() < self.heartbeat_interval()).then(|| ends.clone())
    }

    /// The stateful tasks' changelog ends, read from the broker now (kept for [`Self::recent_ends`] when
    /// complete).
    fn read_ends(&self) -> BTreeMap<TaskId, i64> {
        let ends = (self.hooks.end_offsets)(&self.hooks.stateful);
        if let Ok(mut cache) = self.ends.lock() {
            *cache = self
                .hooks
                .stateful
                .iter()
                .all(|t| ends.contains_key(t))
                .then(|| (Instant::now(), ends.clone()));
        }
        ends
    }

    /// The next assignment, when this instance is the live member with the smallest process id and the current
    /// one is out of date (see the module documentation).
    fn compute(&self, view: &View, now: Instant) -> Option<Published> {
        let live = view.live(now, self.session);
        if live.keys().next().map(String::as_str) != Some(self.me.as_str()) {
            return None;
        }
        let current = view.assignment.as_ref();
        let inputs: BTreeMap<String, ClientInput> = live
            .iter()
            .map(|(m, &capacity)| {
                let seen = &view.members[m];
                let mut offset_sums: BTreeMap<TaskId, i64> = seen
                    .heartbeat
                    .copies
                    .iter()
                    .map(|&(t, o, _)| (task(t), o))
                    .collect();
                // A task it runs: its copy is the running task itself.
                let running = current.map(|a| a.of(m).0).unwrap_or_default();
                for t in seen.heartbeat.held.iter().copied().map(task) {
                    if running.contains(&t) && self.hooks.stateful.contains(&t) {
                        offset_sums.insert(t, assignor::LATEST_OFFSET);
                    }
                }
                (
                    m.clone(),
                    ClientInput {
                        capacity: capacity.max(1),
                        offset_sums,
                    },
                )
            })
            .collect();
        let membership_changed = current.is_none_or(|a| a.members != live);
        if !membership_changed && !current.is_some_and(|a| a.probing) {
            return None;
        }
        // The broker's answer, or a copy's own view of the ends when that is further along (a broker may answer
        // with an end it has since passed).
        let with_copies = |mut ends: BTreeMap<TaskId, i64>| {
            for m in live.keys() {
                for &(t, _, end) in &view.members[m].heartbeat.copies {
                    let t = task(t);
                    if self.hooks.stateful.contains(&t) {
                        let e = ends.entry(t).or_insert(end);
                        *e = (*e).max(end);
                    }
                }
            }
            ends
        };
        // While a follow-up is pending, ends read within the last heartbeat interval tell whether the caught-up
        // members may have changed: ends only grow, so a copy caught up against the current ends is caught up
        // against older ones too. Only then are they read again, and the decision is taken on those.
        if !membership_changed {
            if let (Some(recent), Some(a)) = (self.recent_ends(), current) {
                if caught_up_members(&inputs, &with_copies(recent), self.configs) == a.caught_up {
                    return None;
                }
            }
        }
        let end_offsets = self.read_ends();
        if self
            .hooks
            .stateful
            .iter()
            .any(|t| !end_offsets.contains_key(t))
        {
            // Without the ends every copy would look caught up, and tasks would move to empty stores. Kafka
            // Streams keeps the previous assignment then; here the next step tries again.
            tracing::warn!("the changelogs' end offsets could not be read: the assignment is not recomputed now");
            return None;
        }
        let end_offsets = with_copies(end_offsets);
        let caught_up = caught_up_members(&inputs, &end_offsets, self.configs);
        tracing::debug!(?inputs, ?end_offsets, ?caught_up, "assignment inputs");
        if !membership_changed && current.is_some_and(|a| a.caught_up == caught_up) {
            return None;
        }
        let (tasks, probing) = match assignor::assign(
            &inputs,
            &self.hooks.all_tasks,
            &end_offsets
                .iter()
                .filter(|(t, _)| self.hooks.stateful.contains(t))
                .map(|(t, o)| (*t, *o))
                .collect(),
            self.configs,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot compute a task assignment");
                return None;
            }
        };
        Some(Published {
            generation: current.map_or(1, |a| a.generation + 1),
            author: self.me.clone(),
            members: live,
            tasks: tasks
                .into_iter()
                .map(|(m, ClientAssignment { active, standby })| {
                    (
                        m,
                        (
                            active.into_iter().map(key).collect(),
                            standby.into_iter().map(key).collect(),
                        ),
                    )
                })
                .collect(),
            probing,
            caught_up,
        })
    }

    fn publish(&self, a: &Published) {
        match serde_json::to_vec(a) {
            Ok(v) => self.send(ASSIGNMENT_KEY, Some(&v)),
            Err(e) => tracing::warn!(error = %e, "cannot encode the assignment"),
        }
    }

    fn send(&self, key: &str, value: Option<&[u8]>) {
        let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic).key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        if let Err((e, _)) = self.producer.send(r) {
            tracing::warn!(error = %e, "cannot write to the ownership topic");
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "cannot write to the ownership topic");
        }
    }

    /// A stream thread joins the instance's share.
    pub(crate) fn register(&self, thread: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.threads.entry(thread.to_string()).or_default();
        }
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// A stream thread has ended: its tasks go to the instance's other threads (or, with none left, to other
    /// instances).
    pub(crate) fn unregister(&self, thread: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.threads.remove(thread);
        }
        self.version.fetch_add(1, Ordering::SeqCst);
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// The tasks `thread` should run now, with a version that changes whenever they may have; `None` while the
    /// instance follows no assignment computed for it (joining, or its lease lapsed).
    pub(crate) fn wanted(&self, thread: &str) -> (u64, Option<BTreeSet<TaskId>>) {
        let version = self.version.load(Ordering::SeqCst);
        let wanted = self.state.lock().ok().and_then(|s| {
            s.assigned
                .then(|| s.threads.get(thread).map(|t| t.wanted.clone()))
                .flatten()
        });
        (version, wanted)
    }

    /// The current version of the threads' wanted tasks.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// `thread` now holds exactly `held` open.
    pub(crate) fn report_held(&self, thread: &str, held: BTreeSet<TaskId>) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(t) = s.threads.get_mut(thread) {
                t.held = held;
            }
        }
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// This instance's incarnation while its lease is current (its threads may process and commit), `None`
    /// once it lapsed. A thread holding tasks taken under another incarnation must drop them: the lease lapsed
    /// meanwhile, even if it is current again.
    pub(crate) fn lease(&self) -> Option<u64> {
        self.lease
            .lock()
            .ok()
            .and_then(|l| l.current(Instant::now()))
    }

    /// Leaves: stops heartbeating and writes the tombstone, so the others take the tasks over at once (the
    /// threads have closed theirs).
    pub(crate) fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
        let first = self
            .state
            .lock()
            .is_ok_and(|mut s| !std::mem::replace(&mut s.left, true));
        if first {
            self.send(&format!("{MEMBER_PREFIX}{}", self.me), None);
        }
    }
}

/// For each stateful task, the members whose copy is within `acceptable.recovery.lag` of the changelog ends (a
/// running active always is), with the lags the assignor computes.
fn caught_up_members(
    inputs: &BTreeMap<String, ClientInput>,
    end_offsets: &BTreeMap<TaskId, i64>,
    configs: AssignmentConfigs,
) -> BTreeMap<String, Vec<TaskKey>> {
    inputs
        .iter()
        .map(|(m, input)| {
            let tasks = assignor::task_lags(input, end_offsets)
                .into_iter()
                .filter(|&(_, lag)| {
                    lag == assignor::LATEST_OFFSET
                        || u64::try_from(lag).is_ok_and(|l| l <= configs.acceptable_recovery_lag)
                })
                .map(|(t, _)| key(t))
                .collect();
            (m.clone(), tasks)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: i32) -> TaskId {
        TaskId {
            subtopology: 0,
            partition: p,
        }
    }

    fn beat(held: &[i32], seq: u64) -> Vec<u8> {
        beat_of(held, seq, 0)
    }

    fn beat_of(held: &[i32], seq: u64, incarnation: u64) -> Vec<u8> {
        serde_json::to_vec(&Heartbeat {
            capacity: 1,
            held: held.iter().map(|&p| (0, p)).collect(),
            copies: Vec::new(),
            seq,
            incarnation,
        })
        .unwrap()
    }

    const S: Duration = Duration::from_secs(10);

    /// Two instances claiming one task (two assignments published at once): the claim written first wins,
    /// whoever reads it, and the other may start only once the first drops it.
    #[test]
    fn the_claim_written_first_wins_and_the_other_waits_for_its_release() {
        let now = Instant::now();
        let mut v = View::default();
        v.apply(0, "member:a", Some(&beat(&[], 1)), now);
        v.apply(1, "member:b", Some(&beat(&[3], 1)), now);
        v.apply(2, "member:a", Some(&beat(&[3], 2)), now);
        assert!(v.may_start("b", t(3), now, S));
        assert!(!v.may_start("a", t(3), now, S));
        // b keeps listing it: its run began at offset 1 and still counts.
        v.apply(3, "member:b", Some(&beat(&[3, 4], 2)), now);
        assert!(v.may_start("b", t(3), now, S));
        assert!(!v.may_start("a", t(3), now, S));
        // b drops it: a may start.
        v.apply(4, "member:b", Some(&beat(&[4], 3)), now);
        assert!(v.may_start("a", t(3), now, S));
        assert!(!v.may_start("b", t(3), now, S), "b no longer claims it");
    }

    /// A member that stopped heartbeating keeps its tasks for a whole session, then loses them.
    #[test]
    fn a_silent_member_blocks_its_tasks_for_one_session_then_not() {
        let start = Instant::now();
        let mut v = View::default();
        v.apply(0, "member:a", Some(&beat(&[1], 1)), start);
        v.apply(
            1,
            "member:b",
            Some(&beat(&[1], 1)),
            start + Duration::from_secs(8),
        );
        let before = start + Duration::from_secs(9);
        assert!(!v.may_start("b", t(1), before, S));
        assert_eq!(v.live(before, S).len(), 2);
        let after = start + Duration::from_secs(11);
        assert!(v.may_start("b", t(1), after, S));
        assert_eq!(v.live(after, S).keys().collect::<Vec<_>>(), ["b"]);
    }

    /// Defect: a member paused past its session (SIGSTOP) kept its place in the claims' order when it came back:
    /// the others had started its tasks meanwhile (it was gone), yet its heartbeats still listed them from
    /// before, so it started one the member that took it over was still running, and both counted the same
    /// records (seen as over-counts in standby_replicas.rs's paused-instance test). A heartbeat of a new
    /// incarnation, which a lapsed lease starts, claims anew.
    #[test]
    fn a_member_back_after_its_lease_lapsed_claims_behind_the_member_that_took_its_task() {
        let start = Instant::now();
        let mut v = View::default();
        v.apply(0, "member:a", Some(&beat_of(&[2], 1, 7)), start);
        // a is silent for longer than a session: b, assigned its task, starts it.
        let later = start + S + Duration::from_secs(1);
        v.apply(1, "member:b", Some(&beat_of(&[2], 1, 3)), later);
        assert!(v.may_start("b", t(2), later, S));
        // a is back and claims the task again, its lease having lapsed: b began first.
        v.apply(2, "member:a", Some(&beat_of(&[2], 2, 8)), later);
        assert!(
            !v.may_start("a", t(2), later, S),
            "a claims behind b, which runs the task"
        );
        assert!(v.may_start("b", t(2), later, S));
        // b hands it over: a may start.
        v.apply(3, "member:b", Some(&beat_of(&[], 2, 3)), later);
        assert!(v.may_start("a", t(2), later, S));
        // Heartbeats of one incarnation keep the claim's place.
        v.apply(4, "member:b", Some(&beat_of(&[2], 3, 3)), later);
        v.apply(5, "member:a", Some(&beat_of(&[2], 3, 8)), later);
        assert!(v.may_start("a", t(2), later, S));
        assert!(!v.may_start("b", t(2), later, S));
    }

    /// The lease: granted by the instance's own heartbeats read back, a new incarnation once it lapsed, and
    /// heartbeats of the lapsed incarnation read back late grant nothing.
    #[test]
    fn a_lapsed_lease_starts_a_new_incarnation_that_only_its_own_heartbeats_renew() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut l = Lease::new();
        let first = l.check(at(0));
        assert_eq!(l.current(at(0)), None, "nothing read back yet");
        assert_eq!(l.check(at(1)), first, "never held: nothing lapsed");
        l.renew(at(4), first);
        assert_eq!(l.current(at(2)), Some(first));
        assert_eq!(l.check(at(2)), first);
        // Paused past the lease.
        assert_eq!(l.current(at(5)), None);
        let second = l.check(at(5));
        assert_ne!(second, first);
        assert_eq!(l.check(at(6)), second, "one new incarnation per lapse");
        l.renew(at(9), first);
        assert_eq!(
            l.current(at(6)),
            None,
            "a heartbeat sent before the lapse renews nothing"
        );
        l.renew(at(10), second);
        assert_eq!(l.current(at(6)), Some(second));
        assert_eq!(l.check(at(7)), second);
    }

    /// A tombstone removes the member at once; a claim not read back does not count.
    #[test]
    fn a_tombstone_releases_at_once_and_an_unread_claim_grants_nothing() {
        let now = Instant::now();
        let mut v = View::default();
        v.apply(0, "member:a", Some(&beat(&[1], 1)), now);
        assert!(!v.may_start("b", t(1), now, S), "b has not claimed it");
        v.apply(1, "member:b", Some(&beat(&[1], 1)), now);
        assert!(!v.may_start("b", t(1), now, S));
        v.apply(2, "member:a", None, now);
        assert!(v.may_start("b", t(1), now, S));
    }

    /// Everyone follows the assignment ordered last by (generation, author), in whatever order they read them.
    #[test]
    fn every_reader_follows_the_same_assignment() {
        let a = |generation: u64, author: &str| Published {
            generation,
            author: author.into(),
            members: BTreeMap::new(),
            tasks: BTreeMap::new(),
            probing: false,
            caught_up: BTreeMap::new(),
        };
        let records = [a(4, "b"), a(5, "a"), a(5, "c"), a(3, "z")];
        let now = Instant::now();
        let mut orders = vec![];
        for rotation in 0..records.len() {
            let mut v = View::default();
            for i in 0..records.len() {
                let r = &records[(i + rotation) % records.len()];
                v.apply(
                    i as i64,
                    ASSIGNMENT_KEY,
                    Some(&serde_json::to_vec(r).unwrap()),
                    now,
                );
            }
            orders.push(v.assignment.unwrap().order().1.to_string());
        }
        assert!(orders.iter().all(|o| o == "c"), "{orders:?}");
    }

    /// A malformed record is skipped, and the view keeps what it had.
    #[test]
    fn a_malformed_record_changes_nothing() {
        let now = Instant::now();
        let mut v = View::default();
        v.apply(0, "member:a", Some(&beat(&[1], 1)), now);
        v.apply(1, "member:a", Some(b"not json"), now);
        v.apply(2, ASSIGNMENT_KEY, Some(b"{}"), now);
        assert_eq!(v.members["a"].heartbeat.held, vec![(0, 1)]);
        assert!(v.assignment.is_none());
    }

    /// Tasks stay with the thread that has them; new ones go to the thread with the fewest.
    #[test]
    fn threads_keep_their_tasks_and_new_ones_even_out() {
        let threads: BTreeMap<String, BTreeSet<TaskId>> = [
            ("t1".to_string(), [t(0), t(1), t(2)].into()),
            ("t2".to_string(), BTreeSet::new()),
        ]
        .into();
        let tasks: BTreeSet<TaskId> = [t(0), t(2), t(5), t(6)].into();
        let out = spread(&threads, &tasks);
        assert_eq!(out["t1"], [t(0), t(2)].into());
        assert_eq!(out["t2"], [t(5), t(6)].into());
        let all: BTreeSet<TaskId> = out.values().flatten().copied().collect();
        assert_eq!(all, tasks);
        assert!(spread(&BTreeMap::new(), &tasks).is_empty());
    }

    /// A copy counts as caught up within the acceptable lag of the changelog ends; a running task always does.
    #[test]
    fn caught_up_members_are_those_within_the_acceptable_lag() {
        let input = |sums: &[(i32, i64)]| ClientInput {
            capacity: 1,
            offset_sums: sums.iter().map(|&(p, o)| (t(p), o)).collect(),
        };
        let inputs: BTreeMap<String, ClientInput> = [
            (
                "a".to_string(),
                input(&[(0, assignor::LATEST_OFFSET), (1, 50)]),
            ),
            ("b".to_string(), input(&[(0, 900), (1, 100)])),
        ]
        .into();
        let ends: BTreeMap<TaskId, i64> = [(t(0), 1000), (t(1), 100)].into();
        let configs = AssignmentConfigs {
            acceptable_recovery_lag: 10,
            max_warmup_replicas: 2,
            num_standby_replicas: 1,
        };
        let c = caught_up_members(&inputs, &ends, configs);
        assert_eq!(c["a"], vec![(0, 0)]);
        assert_eq!(c["b"], vec![(0, 1)]);
    }
}
