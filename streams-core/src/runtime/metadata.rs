//! Which instance of an application holds which partitions, for routing interactive queries.
//!
//! Every instance announces the partitions its threads own on the compacted topic `<application.id>-metadata`
//! (key: instance id; value: JSON with its `application.server` and partitions; a tombstone when it closes) and
//! reads everyone's announcements. An instance repeats its announcement every refresh interval (a heartbeat with
//! its wall-clock time and the interval); a reader ignores an announcement older than three of its intervals,
//! by its timestamp or by when it was received, so the claims of a crashed instance (which never wrote its
//! tombstone) expire. A stream thread that ends withdraws its partitions from the announcement. A partition
//! claimed by several live instances (during a rebalance) belongs to the latest assignment. librdkafka offers no custom assignor to carry this in the group
//! protocol, and the embedded broker does not answer DescribeGroups; this module is the one place to change when
//! a better source is available.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::error::StreamsError;
use crate::runtime::clients::single_partition_clients;
use crate::runtime::config::StreamsConfig;
use crate::runtime::security::StreamsClientContext;

/// Where an instance answers queries: its `application.server`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostInfo {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl HostInfo {
    /// Parses `host:port`.
    pub fn parse(s: &str) -> Option<HostInfo> {
        let (host, port) = s.rsplit_once(':')?;
        Some(HostInfo {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

impl fmt::Display for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One instance of the application, as its announcement describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// The instance's id (unique per `KafkaStreams` object).
    pub instance_id: String,
    /// Its `application.server`, if it set one.
    pub host: Option<HostInfo>,
    /// Source topic partitions it owns now.
    pub partitions: BTreeSet<(String, i32)>,
    /// Source topic partitions whose tasks it keeps standby copies of (`num.standby.replicas`): the stores of
    /// those tasks, a little behind the active ones.
    pub standby_partitions: BTreeSet<(String, i32)>,
    /// Stores it holds a part of.
    pub stores: BTreeSet<String>,
}

/// Where the key of a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The partition of the key (the task's partition number).
    pub partition: i32,
    /// The instance owning that partition now, if known.
    pub active: Option<StreamsMetadata>,
    /// The instances keeping a standby copy of the key's task.
    pub standbys: Vec<StreamsMetadata>,
}

/// How far a local copy of one store partition is behind its changelog (see
/// [`crate::runtime::KafkaStreams::standby_lags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagInfo {
    /// The next changelog offset the copy reads.
    pub current_offset_position: i64,
    /// The end of the changelog, as the copy's consumer last saw it.
    pub end_offset_position: i64,
    /// Records of the changelog the copy has not read: `end - current`, never negative.
    pub offset_lag: i64,
}

/// How often an instance repeats its announcement.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// An announcement older than this many of its refresh intervals is ignored.
const EXPIRY_INTERVALS: i64 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Announcement {
    server: Option<String>,
    partitions: Vec<(String, i32)>,
    /// When it was sent (each heartbeat renews it).
    at_ms: i64,
    /// When the partitions were last assigned (decides between two claims of one partition).
    #[serde(default)]
    assigned_ms: i64,
    /// The announcer's refresh interval (absent in older announcements: the default).
    #[serde(default = "default_refresh_ms")]
    refresh_ms: i64,
    /// The announcer's process id, which ranks it for standby placement (absent in older announcements).
    #[serde(default)]
    process: Option<String>,
    /// Source partitions of the tasks it keeps standby copies of.
    #[serde(default)]
    standby: Vec<(String, i32)>,
    /// The group member ids of its stream threads' consumers.
    #[serde(default)]
    members: Vec<String>,
    /// Set while the instance warms up copies of the tasks it will be given, before its threads join the group.
    #[serde(default)]
    joining: Option<Joining>,
}

/// An instance warming up before its stream threads join the group (see [`crate::runtime::standby`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Joining {
    /// How its consumers' member ids will start (their client ids, or group instance ids, and a dash): where
    /// the group's `range` assignor will place them.
    pub consumers: Vec<String>,
    /// Whether its copies of the tasks it will be given are caught up.
    pub ready: bool,
}

fn default_refresh_ms() -> i64 {
    REFRESH_INTERVAL.as_millis() as i64
}

impl Announcement {
    /// Whether the announcer has missed its heartbeats for too long: judged by the timestamp it carries and by
    /// when it was received here (either one older than the bound).
    fn expired(&self, received: Instant, now_ms: i64) -> bool {
        let bound_ms = EXPIRY_INTERVALS * self.refresh_ms.max(1);
        now_ms.saturating_sub(self.at_ms) > bound_ms
            || received.elapsed().as_millis() as i64 > bound_ms
    }

    /// The time that decides between two claims of one partition.
    fn claim_ms(&self) -> i64 {
        if self.assigned_ms > 0 {
            self.assigned_ms
        } else {
            self.at_ms
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An instance as standby placement sees it: placement key, owned partitions, consumers' member ids, and
/// whether it is warming up to join.
pub(crate) type PlacementMember = (
    String,
    BTreeSet<(String, i32)>,
    Vec<String>,
    Option<Joining>,
);

/// An instance's process id, the source partitions of its standby tasks and its consumers' member ids.
type StandbyClaim = (Option<String>, Vec<(String, i32)>, Vec<String>);

/// The partitions of each stream thread.
type ThreadPartitions = BTreeMap<String, Vec<(String, i32)>>;

/// What this instance announces.
struct Announcer {
    instance_id: String,
    server: Option<String>,
    topic: String,
    producer: BaseProducer<StreamsClientContext>,
    refresh: Duration,
    /// Partitions per stream thread, and when they last changed; `None` before the first assignment.
    own: Mutex<Option<(ThreadPartitions, i64)>>,
    /// Set once the tombstone is sent: nothing is announced after it (a thread ending late must not revive
    /// the announcement).
    left: AtomicBool,
    /// The process id and the standby partitions announced with the partitions.
    standby: Mutex<StandbyClaim>,
    /// Announced (with no partitions) before the first assignment while the instance warms up.
    joining: Mutex<Option<Joining>>,
}

impl Announcer {
    fn send(&self, value: Option<Vec<u8>>) {
        let mut r: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.topic).key(self.instance_id.as_str());
        if let Some(v) = &value {
            r = r.payload(v.as_slice());
        }
        if let Err((e, _)) = self.producer.send(r) {
            tracing::warn!(error = %e, "cannot announce metadata");
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "cannot announce metadata");
        }
    }

    /// Sends the current announcement (nothing before the first assignment, nor after leaving). The lock is
    /// held while sending, so an announcement never follows the tombstone.
    fn announce(&self) {
        let Ok(own) = self.own.lock() else { return };
        if self.left.load(Ordering::SeqCst) {
            return;
        }
        let joining = self.joining.lock().ok().and_then(|j| j.clone());
        let (set, assigned_ms) = match (own.as_ref(), joining.is_some()) {
            (Some((threads, assigned_ms)), _) => (
                threads.values().flatten().cloned().collect::<BTreeSet<_>>(),
                *assigned_ms,
            ),
            (None, true) => (BTreeSet::new(), 0),
            (None, false) => return,
        };
        let (process, standby, members) =
            self.standby.lock().map(|s| s.clone()).unwrap_or_default();
        let a = Announcement {
            server: self.server.clone(),
            partitions: set.into_iter().collect(),
            at_ms: now_ms(),
            assigned_ms,
            refresh_ms: self.refresh.as_millis() as i64,
            process,
            standby,
            members,
            joining,
        };
        match serde_json::to_vec(&a) {
            Ok(v) => self.send(Some(v)),
            Err(e) => tracing::warn!(error = %e, "cannot encode metadata"),
        }
    }
}

/// Announces this instance's partitions and keeps everyone's.
pub(crate) struct MetadataService {
    announcer: Arc<Announcer>,
    view: Arc<Mutex<BTreeMap<String, (Announcement, Instant)>>>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<JoinHandle<()>>>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl MetadataService {
    /// The metadata topic of an application.
    pub(crate) fn topic(application_id: &str) -> String {
        format!("{application_id}-metadata")
    }

    pub(crate) fn start(config: &StreamsConfig, instance_id: String) -> Result<Self, StreamsError> {
        Self::start_with_refresh(config, instance_id, REFRESH_INTERVAL)
    }

    /// Like [`MetadataService::start`], repeating the announcement every `refresh`.
    pub(crate) fn start_with_refresh(
        config: &StreamsConfig,
        instance_id: String,
        refresh: Duration,
    ) -> Result<Self, StreamsError> {
        let topic = Self::topic(&config.application_id);
        let (producer, consumer) = single_partition_clients(config, &topic, "metadata", &[])?;
        let view: Arc<Mutex<BTreeMap<String, (Announcement, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (view.clone(), stop.clone());
        let reader = std::thread::Builder::new()
            .name(format!("{}-metadata", config.application_id))
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    let Ok(mut view) = v.lock() else { return };
                    match m.payload() {
                        None => {
                            view.remove(key);
                        }
                        Some(p) => match serde_json::from_slice::<Announcement>(p) {
                            Ok(a) => {
                                view.insert(key.to_string(), (a, Instant::now()));
                            }
                            Err(e) => tracing::warn!(error = %e, "ignoring a malformed metadata announcement"),
                        },
                    }
                }
            })
            .map_err(|source| StreamsError::Io {
                path: "metadata reader thread".into(),
                source,
            })?;
        let announcer = Arc::new(Announcer {
            instance_id,
            server: config.application_server.clone(),
            topic,
            producer,
            refresh,
            own: Mutex::default(),
            left: AtomicBool::new(false),
            standby: Mutex::default(),
            joining: Mutex::default(),
        });
        let (an, s) = (announcer.clone(), stop.clone());
        let heartbeat = std::thread::Builder::new()
            .name(format!("{}-metadata-heartbeat", config.application_id))
            .spawn(move || {
                let mut next = Instant::now() + refresh;
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(refresh));
                    if Instant::now() >= next {
                        an.announce();
                        next = Instant::now() + refresh;
                    }
                }
            })
            .map_err(|source| StreamsError::Io {
                path: "metadata heartbeat thread".into(),
                source,
            })?;
        Ok(MetadataService {
            announcer,
            view,
            stop,
            reader: Mutex::new(Some(reader)),
            heartbeat: Mutex::new(Some(heartbeat)),
        })
    }

    /// Records the partitions `thread` owns now and its consumer's group `member` id, and announces the
    /// instance's whole set. The member id goes out with the assignment, not a placement round later: until
    /// every member's ids are known, standby placement cannot predict where the group would move a task.
    pub(crate) fn on_assignment(
        &self,
        thread: &str,
        partitions: Vec<(String, i32)>,
        member: Option<String>,
    ) {
        if let Ok(mut own) = self.announcer.own.lock() {
            let (threads, assigned_ms) = own.get_or_insert_with(Default::default);
            threads.insert(thread.to_string(), partitions);
            *assigned_ms = now_ms();
        }
        if let (Some(id), Ok(mut claim)) = (member, self.announcer.standby.lock()) {
            // The next placement round replaces the list with the live threads' ids.
            if !claim.2.contains(&id) {
                claim.2.push(id);
            }
        }
        self.announcer.announce();
    }

    /// Records the process id, the standby partitions this instance keeps and its consumers' member ids,
    /// announcing them when they changed.
    pub(crate) fn set_standbys(
        &self,
        process: &str,
        partitions: Vec<(String, i32)>,
        members: Vec<String>,
    ) {
        let changed = self.announcer.standby.lock().is_ok_and(|mut s| {
            let next = (Some(process.to_string()), partitions, members);
            let changed = *s != next;
            *s = next;
            changed
        });
        if changed {
            self.announcer.announce();
        }
    }

    /// Each current instance's standby placement key (its process id, or its instance id when it announces
    /// none), the partitions it owns (a partition claimed twice counts for the latest assignment only), its
    /// consumers' member ids, and whether it is warming up to join.
    pub(crate) fn placement_members(&self) -> Vec<PlacementMember> {
        type Claim = (String, Vec<String>, Option<Joining>);
        let keys: BTreeMap<String, Claim> = match self.view.lock() {
            Ok(view) => view
                .iter()
                .map(|(id, (a, _))| {
                    let key = a.process.clone().unwrap_or_else(|| id.clone());
                    (id.clone(), (key, a.members.clone(), a.joining.clone()))
                })
                .collect(),
            Err(_) => return Vec::new(),
        };
        self.instances()
            .into_iter()
            .map(|m| {
                let (key, members, joining) =
                    keys.get(&m.instance_id)
                        .cloned()
                        .unwrap_or((m.instance_id, Vec::new(), None));
                (key, m.partitions, members, joining)
            })
            .collect()
    }

    /// Announces this instance as warming up to join (`None` once its threads are started: their first
    /// assignment replaces the announcement).
    pub(crate) fn set_joining(&self, joining: Option<Joining>) {
        let changed = self.announcer.joining.lock().is_ok_and(|mut j| {
            let changed = *j != joining;
            *j = joining;
            changed
        });
        if changed {
            self.announcer.announce();
        }
    }

    /// Withdraws the partitions of `thread`, which has ended (cleanly or not), and announces the rest.
    pub(crate) fn on_thread_exit(&self, thread: &str) {
        let removed = self.announcer.own.lock().is_ok_and(|mut own| {
            own.as_mut()
                .is_some_and(|(threads, _)| threads.remove(thread).is_some())
        });
        if removed {
            self.announcer.announce();
        }
    }

    /// Stops the heartbeat and the reader.
    fn stop_threads(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for slot in [&self.heartbeat, &self.reader] {
            if let Some(h) = slot.lock().ok().and_then(|mut r| r.take()) {
                let _ = h.join();
            }
        }
    }

    /// Withdraws this instance's announcement (a tombstone) and stops announcing and reading.
    pub(crate) fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.lock().ok().and_then(|mut r| r.take()) {
            let _ = h.join();
        }
        // Under the lock `announce` sends with, so no announcement can follow the tombstone.
        let guard = self.announcer.own.lock();
        self.announcer.left.store(true, Ordering::SeqCst);
        self.announcer.send(None);
        drop(guard);
        self.stop_threads();
    }

    /// Every instance whose announcement is current, with the partitions it owns (a partition claimed twice goes
    /// to the latest assignment). Stores are left empty: the caller knows which sub-topologies the partitions feed.
    pub(crate) fn instances(&self) -> Vec<StreamsMetadata> {
        let Ok(view) = self.view.lock() else {
            return Vec::new();
        };
        let now = now_ms();
        let live: Vec<(&String, &Announcement)> = view
            .iter()
            .filter(|(_, (a, received))| !a.expired(*received, now))
            .map(|(id, (a, _))| (id, a))
            .collect();
        let mut owner: BTreeMap<(String, i32), (i64, &str)> = BTreeMap::new();
        for (id, a) in &live {
            for p in &a.partitions {
                let e = owner.entry(p.clone()).or_insert((a.claim_ms(), id));
                if a.claim_ms() > e.0 {
                    *e = (a.claim_ms(), id);
                }
            }
        }
        live.into_iter()
            .map(|(id, a)| {
                let parts = a
                    .partitions
                    .iter()
                    .filter(|p| owner.get(*p).is_some_and(|(_, o)| *o == id.as_str()))
                    .cloned()
                    .collect();
                StreamsMetadata {
                    instance_id: id.clone(),
                    host: a.server.as_deref().and_then(HostInfo::parse),
                    partitions: parts,
                    standby_partitions: a.standby.iter().cloned().collect(),
                    stores: BTreeSet::new(),
                }
            })
            .collect()
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::embedded::EmbeddedKafka;

    fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let end = Instant::now() + timeout;
        while !ok() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn names(m: &MetadataService, id: &str) -> bool {
        m.instances()
            .iter()
            .any(|i| i.instance_id == id && !i.partitions.is_empty())
    }

    /// Defect: an instance that crashed (no tombstone on the metadata topic) kept its ownership claims forever,
    /// and, winning by wall clock, kept being named as the owner of its partitions by every other instance.
    /// Claims are now renewed by a heartbeat and ignored once older than three refresh intervals.
    #[test]
    fn finding_a_crashed_instances_claims_expire() {
        let kafka = EmbeddedKafka::start().unwrap();
        let app = "metadata-expiry";
        kafka.create_topic(&MetadataService::topic(app), 1).unwrap();
        let mut config = StreamsConfig::new(app, kafka.bootstrap_servers());
        config.set("application.server", "127.0.0.1:1").unwrap();
        let refresh = Duration::from_secs(1);
        let a = MetadataService::start_with_refresh(&config, "a".into(), refresh).unwrap();
        let b = MetadataService::start_with_refresh(&config, "b".into(), refresh).unwrap();
        a.on_assignment("a-thread-0", vec![("in".into(), 0), ("in".into(), 1)], None);
        b.on_assignment("b-thread-0", vec![("in".into(), 2)], None);
        wait_for("B to see A's claims", Duration::from_secs(20), || {
            names(&b, "a")
        });
        // While A's heartbeat runs, its claims stay current well past the expiry bound.
        std::thread::sleep(refresh * 5);
        assert!(names(&b, "a"), "a live instance's claims must not expire");
        // A crashes: its threads stop, no tombstone is written.
        drop(a);
        let crashed = Instant::now();
        wait_for(
            "B to stop naming the crashed A",
            Duration::from_secs(20),
            || !names(&b, "a"),
        );
        assert!(
            crashed.elapsed() >= refresh * 2,
            "expired too early: {:?}",
            crashed.elapsed()
        );
        assert!(names(&b, "b"), "B's own claims stay");
        b.leave();
    }

    /// A thread ending after the instance left (a close that timed out) does not revive its announcement.
    #[test]
    fn nothing_is_announced_after_the_tombstone() {
        let kafka = EmbeddedKafka::start().unwrap();
        let app = "metadata-after-leave";
        kafka.create_topic(&MetadataService::topic(app), 1).unwrap();
        let config = StreamsConfig::new(app, kafka.bootstrap_servers());
        let a = MetadataService::start(&config, "a".into()).unwrap();
        let b = MetadataService::start(&config, "b".into()).unwrap();
        a.on_assignment("t0", vec![("in".into(), 0)], None);
        a.on_assignment("t1", vec![("in".into(), 1)], None);
        wait_for("B to see A", Duration::from_secs(20), || names(&b, "a"));
        a.leave();
        wait_for("B to see A's tombstone", Duration::from_secs(20), || {
            !names(&b, "a")
        });
        a.on_thread_exit("t0");
        a.on_assignment("t1", vec![("in".into(), 1)], None);
        std::thread::sleep(Duration::from_secs(2));
        assert!(!names(&b, "a"), "an announcement followed the tombstone");
        b.leave();
    }

    /// Defect: a stream thread that died kept its partitions in the instance's announcement.
    #[test]
    fn finding_a_dead_threads_partitions_are_withdrawn() {
        let kafka = EmbeddedKafka::start().unwrap();
        let app = "metadata-thread-exit";
        kafka.create_topic(&MetadataService::topic(app), 1).unwrap();
        let config = StreamsConfig::new(app, kafka.bootstrap_servers());
        let a = MetadataService::start(&config, "a".into()).unwrap();
        a.on_assignment("t0", vec![("in".into(), 0)], None);
        a.on_assignment("t1", vec![("in".into(), 1)], None);
        let parts = |a: &MetadataService| {
            a.instances()
                .into_iter()
                .find(|i| i.instance_id == "a")
                .map(|i| i.partitions)
                .unwrap_or_default()
        };
        wait_for("both threads' partitions", Duration::from_secs(20), || {
            parts(&a).len() == 2
        });
        a.on_thread_exit("t1");
        wait_for("t1's partition withdrawn", Duration::from_secs(20), || {
            parts(&a) == BTreeSet::from([("in".to_string(), 0)])
        });
        a.leave();
    }
}
