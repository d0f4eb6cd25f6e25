//! Which instance of an application holds which partitions, for routing interactive queries.
//!
//! Every instance announces the partitions its threads own on the compacted topic `<application.id>-metadata`
//! (key: instance id; value: JSON with its `application.server` and partitions; a tombstone when it closes) and
//! reads everyone's announcements. A partition claimed by several instances (one crashed before the group moved
//! its partitions) belongs to the latest claim. librdkafka offers no custom assignor to carry this in the group
//! protocol, and the embedded broker does not answer DescribeGroups; this module is the one place to change when
//! a better source is available.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::StreamsError;
use crate::runtime::clients::{client_config, client_error};
use crate::runtime::config::{ClientKind, StreamsConfig};
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Announcement {
    server: Option<String>,
    partitions: Vec<(String, i32)>,
    at_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Announces this instance's partitions and keeps everyone's.
pub(crate) struct MetadataService {
    instance_id: String,
    server: Option<String>,
    topic: String,
    producer: BaseProducer<StreamsClientContext>,
    own: Mutex<BTreeMap<String, Vec<(String, i32)>>>,
    view: Arc<Mutex<BTreeMap<String, Announcement>>>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl MetadataService {
    /// The metadata topic of an application.
    pub(crate) fn topic(application_id: &str) -> String {
        format!("{application_id}-metadata")
    }

    pub(crate) fn start(config: &StreamsConfig, instance_id: String) -> Result<Self, StreamsError> {
        let topic = Self::topic(&config.application_id);
        let producer: BaseProducer<StreamsClientContext> =
            client_config(config, ClientKind::Producer)
                .create_with_context(StreamsClientContext::new(
                    config,
                    ClientKind::Producer,
                    "metadata producer",
                ))
                .map_err(|e| client_error(config, ClientKind::Producer, e))?;
        let mut c = client_config(config, ClientKind::RestoreConsumer);
        c.set(
            "group.id",
            format!("{}-metadata-reader", config.application_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
        let consumer: BaseConsumer<StreamsClientContext> = c
            .create_with_context(StreamsClientContext::new(
                config,
                ClientKind::RestoreConsumer,
                "metadata reader",
            ))
            .map_err(|e| client_error(config, ClientKind::RestoreConsumer, e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| StreamsError::processor(format!("metadata reader: {e}")))?;
        consumer
            .assign(&tpl)
            .map_err(|e| StreamsError::processor(format!("metadata reader: {e}")))?;
        let view: Arc<Mutex<BTreeMap<String, Announcement>>> = Arc::default();
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
                                view.insert(key.to_string(), a);
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
        Ok(MetadataService {
            instance_id,
            server: config.application_server.clone(),
            topic,
            producer,
            own: Mutex::default(),
            view,
            stop,
            reader: Mutex::new(Some(reader)),
        })
    }

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

    /// Records the partitions `thread` owns now and announces the instance's whole set.
    pub(crate) fn on_assignment(&self, thread: &str, partitions: Vec<(String, i32)>) {
        let all: Vec<(String, i32)> = {
            let Ok(mut own) = self.own.lock() else { return };
            own.insert(thread.to_string(), partitions);
            let set: BTreeSet<(String, i32)> = own.values().flatten().cloned().collect();
            set.into_iter().collect()
        };
        let a = Announcement {
            server: self.server.clone(),
            partitions: all,
            at_ms: now_ms(),
        };
        match serde_json::to_vec(&a) {
            Ok(v) => self.send(Some(v)),
            Err(e) => tracing::warn!(error = %e, "cannot encode metadata"),
        }
    }

    /// Withdraws this instance's announcement and stops reading.
    pub(crate) fn leave(&self) {
        self.send(None);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.lock().ok().and_then(|mut r| r.take()) {
            let _ = h.join();
        }
    }

    /// Every instance with the partitions it owns (a partition claimed twice goes to the latest claim).
    /// Stores are left empty: the caller knows which sub-topologies the partitions feed.
    pub(crate) fn instances(&self) -> Vec<StreamsMetadata> {
        let Ok(view) = self.view.lock() else {
            return Vec::new();
        };
        let mut owner: BTreeMap<(String, i32), (i64, &str)> = BTreeMap::new();
        for (id, a) in view.iter() {
            for p in &a.partitions {
                let e = owner.entry(p.clone()).or_insert((a.at_ms, id));
                if a.at_ms > e.0 {
                    *e = (a.at_ms, id);
                }
            }
        }
        view.iter()
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
                    stores: BTreeSet::new(),
                }
            })
            .collect()
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.lock().ok().and_then(|mut r| r.take()) {
            let _ = h.join();
        }
    }
}
