//! The global stream thread: keeps every global store of an instance up to date with all partitions of its
//! topic (Kafka Streams' `GlobalStreamThread`).
//!
//! At start, before any stream thread exists, [`start`] opens the global stores under
//! `state.dir/<application.id>/global/<store>`, reads each topic up to its end with a consumer of its own (manual
//! assignment of every partition, no group membership, no offset commits), and only then returns: the first
//! record a task processes sees every global record that was in the topics when the instance started. A
//! thread then follows the topics for as long as the instance runs.
//!
//! The positions reached are checkpointed in `state.dir/<application.id>/global/.checkpoint` on every commit
//! interval and at close, after the stores are flushed. A persistent (RocksDB) store resumes from its checkpoint
//! after a restart; an in-memory store, or a persistent one without a usable checkpoint, is re-read from the
//! beginning. A checkpoint beyond the end of its topic is an error (the topic was deleted or recreated), never
//! silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use state_store::{BatchEntry, RocksDbResources};

use crate::error::StreamsError;
use crate::global::{apply, GlobalStores};
use crate::runtime::checkpoint;
use crate::runtime::clients::{client_config, client_error};
use crate::runtime::security::StreamsClientContext;

type GlobalConsumer = BaseConsumer<StreamsClientContext>;
use crate::runtime::config::{ClientKind, StreamsConfig};
use crate::runtime::restore::{retrying, transient, StateRestoreListener};
use crate::topology::Topology;

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BATCH: usize = 10_000;

fn kafka(what: &str, e: impl std::fmt::Display) -> StreamsError {
    StreamsError::Processor {
        node: String::new(),
        message: format!("global stream thread: {what}: {e}"),
    }
}

/// One partition of a global topic.
struct Part {
    /// Index of the store among the global stores.
    slot: usize,
    topic: String,
    partition: i32,
    low: i64,
    /// The offset after the last record at start.
    end: i64,
    /// The next offset to read.
    position: i64,
    restored: u64,
}

/// The running global thread of an instance, and the stores it feeds.
pub(crate) struct GlobalThread {
    pub stores: Arc<GlobalStores>,
    shutdown: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl GlobalThread {
    /// No global stores, no thread.
    pub(crate) fn none() -> Self {
        GlobalThread {
            stores: GlobalStores::empty(),
            shutdown: Arc::new(AtomicBool::new(true)),
            handle: Mutex::new(None),
        }
    }

    /// Asks the thread to checkpoint and stop, and waits for it until `deadline`; true when it stopped.
    pub(crate) fn stop(&self, deadline: Option<Instant>) -> bool {
        self.shutdown.store(true, Ordering::Relaxed);
        let Ok(mut h) = self.handle.lock() else {
            return false;
        };
        loop {
            match h.as_ref() {
                None => return true,
                Some(t) if t.is_finished() => {
                    if let Some(t) = h.take() {
                        let _ = t.join();
                    }
                    return true;
                }
                Some(_) => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The offsets after the last record of each partition, given their watermarks. Brokers report the end as the
/// high watermark, but some (tansu) report one past the base offset of the last batch instead; reading every
/// non-empty partition from just before its reported end, all at once, finds the real ends.
fn true_ends(consumer: &GlobalConsumer, parts: &mut [Part]) -> Result<(), StreamsError> {
    let probing: Vec<usize> = (0..parts.len())
        .filter(|&i| parts[i].end > parts[i].low)
        .collect();
    if probing.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for &i in &probing {
        let p = &parts[i];
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.end - 1))
            .map_err(|e| kafka("cannot assign the global consumer", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka("cannot assign the global consumer", e))?;
    let index: HashMap<(String, i32), usize> = probing
        .iter()
        .map(|&i| ((parts[i].topic.clone(), parts[i].partition), i))
        .collect();
    let mut seen = vec![false; parts.len()];
    let mut unseen = probing.len();
    let started = Instant::now();
    let mut idle_since = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                if let Some(&i) = index.get(&(m.topic().to_string(), m.partition())) {
                    parts[i].end = parts[i].end.max(m.offset() + 1);
                    if !seen[i] {
                        seen[i] = true;
                        unseen -= 1;
                    }
                }
                idle_since = Instant::now();
            }
            Some(Err(e)) if transient(&e) => {
                tracing::warn!(error = %e, "reading the global topics' ends: transient error");
            }
            Some(Err(e)) => return Err(kafka("cannot read a global topic", e)),
            None => {
                let waited = idle_since.elapsed();
                // Once every partition answered, a short quiet spell means the ends; before, allow for fetches.
                if (unseen == 0 && waited > Duration::from_millis(200))
                    || waited > Duration::from_secs(2)
                {
                    break;
                }
            }
        }
        if started.elapsed() > TIMEOUT {
            break;
        }
    }
    consumer
        .unassign()
        .map_err(|e| kafka("cannot unassign the global consumer", e))
}

/// Applies a batch of messages to their stores and advances the partitions' positions.
fn apply_batch(
    stores: &GlobalStores,
    parts: &mut [Part],
    index: &HashMap<(String, i32), usize>,
    batch: &[BorrowedMessage<'_>],
    entries: &mut [Vec<(usize, usize)>],
) -> Result<(), StreamsError> {
    // Group by store, in order, so each store is locked once per batch.
    for e in entries.iter_mut() {
        e.clear();
    }
    let mut skipped = 0u64;
    for (n, m) in batch.iter().enumerate() {
        let Some(&i) = index.get(&(m.topic().to_string(), m.partition())) else {
            continue;
        };
        let part = &mut parts[i];
        part.position = part.position.max(m.offset() + 1);
        part.restored += 1;
        if m.key().is_none() {
            skipped += 1;
            continue;
        }
        entries[part.slot].push((n, i));
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "global topic records without a key were skipped (a global store needs keys)"
        );
        metrics::counter!("streams_global_skipped_records_total").increment(skipped);
    }
    for (slot, list) in entries.iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let writes: Vec<BatchEntry<'_>> = list
            .iter()
            .filter_map(|&(n, _)| batch[n].key().map(|k| (k, batch[n].payload())))
            .collect();
        apply(&stores.slots()[slot], &writes)?;
        metrics::counter!("streams_global_records_total", "store" => stores.slots()[slot].name.clone())
            .increment(writes.len() as u64);
    }
    Ok(())
}

/// Writes the positions of the persistent stores' partitions, after flushing the stores.
fn write_checkpoint(
    dir: &std::path::Path,
    stores: &GlobalStores,
    parts: &[Part],
) -> Result<(), StreamsError> {
    stores.flush()?;
    let offsets: BTreeMap<(String, i32), i64> = parts
        .iter()
        .filter(|p| stores.slots()[p.slot].persistent)
        .map(|p| ((p.topic.clone(), p.partition), p.position))
        .collect();
    checkpoint::write(dir, &offsets)
}

/// Polls one batch (waiting up to `wait` for its first message) and applies it.
fn poll_once(
    consumer: &GlobalConsumer,
    stores: &GlobalStores,
    parts: &mut [Part],
    index: &HashMap<(String, i32), usize>,
    entries: &mut [Vec<(usize, usize)>],
    wait: Duration,
) -> Result<usize, StreamsError> {
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH {
        let timeout = if batch.is_empty() {
            wait
        } else {
            Duration::ZERO
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => batch.push(m),
            // The consumer reconnects by itself; callers bound the time without progress.
            Some(Err(e)) if transient(&e) => {
                tracing::warn!(error = %e, "reading a global topic: transient error");
                break;
            }
            Some(Err(e)) => return Err(kafka("cannot read a global topic", e)),
            None => break,
        }
    }
    apply_batch(stores, parts, index, &batch, entries)?;
    Ok(batch.len())
}

/// Opens the global stores of `topology`, brings each up to the end of its topic, and starts the thread that
/// follows the topics. `partitions` gives each global topic's partition count. Returns once the stores are
/// restored; `on_error` receives the error that stops the thread, if one does.
pub(crate) fn start(
    topology: &Topology,
    config: &StreamsConfig,
    rocksdb: &RocksDbResources,
    partitions: &BTreeMap<String, i32>,
    listener: Arc<dyn StateRestoreListener>,
    on_error: impl Fn(StreamsError) + Send + 'static,
) -> Result<GlobalThread, StreamsError> {
    if topology.global_stores.is_empty() {
        return Ok(GlobalThread::none());
    }
    let app = &config.application_id;
    let dir = config.state_dir.join(app).join("global");
    let saved = checkpoint::read(&dir)?;
    let mut c = client_config(config, ClientKind::GlobalConsumer);
    c.set("group.id", format!("{app}-global"))
        .set("client.id", format!("{app}-global-consumer"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: GlobalConsumer = c
        .create_with_context(StreamsClientContext::new(
            config,
            ClientKind::GlobalConsumer,
            "global consumer",
        ))
        .map_err(|e| client_error(config, ClientKind::GlobalConsumer, e))?;

    // Where each partition stands now.
    let mut parts = Vec::new();
    for (slot, g) in topology.global_stores.values().enumerate() {
        let n = *partitions.get(&g.topic).ok_or_else(|| {
            StreamsError::InvalidTopology(format!(
                "the partition count of global topic '{}' is unknown",
                g.topic
            ))
        })?;
        for p in 0..n {
            let (low, high) = retrying(
                &format!("cannot read the offsets of global topic {}-{p}", g.topic),
                config.task_timeout,
                || consumer.fetch_watermarks(&g.topic, p, TIMEOUT),
            )?;
            parts.push(Part {
                slot,
                topic: g.topic.clone(),
                partition: p,
                low,
                end: high,
                position: low,
                restored: 0,
            });
        }
    }
    true_ends(&consumer, &mut parts)?;

    // A persistent store resumes from its checkpoint when every partition of its topic has a usable one.
    let mut keep: HashMap<String, bool> = HashMap::new();
    for (slot, g) in topology.global_stores.values().enumerate() {
        // A store whose files are missing starts from nothing, whatever the checkpoint says.
        let mut usable =
            g.def.supplier.persistent() && crate::task::has_files(&dir.join(&g.def.name));
        for p in parts.iter().filter(|p| p.slot == slot) {
            match saved.get(&(p.topic.clone(), p.partition)) {
                Some(&c) if c > p.end => {
                    return Err(StreamsError::Processor {
                        node: String::new(),
                        message: format!(
                            "global store '{}': the checkpoint says offset {c}, beyond the end ({}) of topic \
                             {}-{}; the topic was deleted or recreated. Delete {} to re-read it from scratch",
                            g.def.name,
                            p.end,
                            p.topic,
                            p.partition,
                            dir.join(&g.def.name).display()
                        ),
                    })
                }
                Some(&c) if c < p.low => {
                    tracing::warn!(store = %g.def.name, partition = p.partition, checkpoint = c, low = p.low,
                        "global topic truncated below the checkpoint; re-reading it from the start");
                    usable = false;
                }
                Some(_) => {}
                None => usable = false,
            }
        }
        keep.insert(g.def.name.clone(), usable);
    }
    // A store re-read from the start loses its checkpoint entries first (before its files go), so a crash part way
    // never leaves offsets a half-restored store would be trusted to have reached.
    let forget = |name: &str| -> Result<(), StreamsError> {
        let topic = topology.global_stores.get(name).map(|g| g.topic.as_str());
        let entries: Vec<(String, i32)> = parts
            .iter()
            .filter(|p| Some(p.topic.as_str()) == topic)
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        checkpoint::forget(&dir, &entries)
    };
    let (stores, fresh) = GlobalStores::open(
        topology,
        &dir,
        rocksdb,
        |name| keep.get(name).copied().unwrap_or(false),
        forget,
    )?;
    for p in &mut parts {
        let slot = &stores.slots()[p.slot];
        if !fresh.contains(&slot.name) {
            if let Some(&c) = saved.get(&(p.topic.clone(), p.partition)) {
                p.position = c;
            }
        }
    }

    // Restore: read every partition up to its end before any task runs.
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.position))
            .map_err(|e| kafka("cannot assign the global consumer", e))?;
        listener.on_restore_start(&stores.slots()[p.slot].name, p.partition, p.position, p.end);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka("cannot assign the global consumer", e))?;
    let index: HashMap<(String, i32), usize> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.topic.clone(), p.partition), i))
        .collect();
    let mut entries: Vec<Vec<(usize, usize)>> = vec![Vec::new(); stores.slots().len()];
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while parts.iter().any(|p| p.position < p.end) {
        let got = poll_once(
            &consumer,
            &stores,
            &mut parts,
            &index,
            &mut entries,
            Duration::from_millis(200),
        )?;
        if got == 0 {
            // Control records (transaction markers) are never delivered; the consumer's position moves past them.
            for p in parts.iter_mut().filter(|p| p.position < p.end) {
                if let Some(at) =
                    crate::runtime::restore::consumer_position(&consumer, &p.topic, p.partition)
                {
                    if at > p.position {
                        p.position = at;
                        last_progress = Instant::now();
                    }
                }
            }
        }
        if got > 0 {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > config.task_timeout {
            let behind: Vec<String> = parts
                .iter()
                .filter(|p| p.position < p.end)
                .map(|p| format!("{}-{} at {} of {}", p.topic, p.partition, p.position, p.end))
                .collect();
            return Err(kafka(
                "restoring global stores",
                format!(
                    "no progress for {:?} (task.timeout.ms): {}",
                    config.task_timeout,
                    behind.join(", ")
                ),
            ));
        }
    }
    for p in &parts {
        listener.on_restore_end(&stores.slots()[p.slot].name, p.partition, p.restored);
    }
    write_checkpoint(&dir, &stores, &parts)?;
    tracing::info!(
        stores = stores.slots().len(),
        partitions = parts.len(),
        restored = parts.iter().map(|p| p.restored).sum::<u64>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "global stores restored"
    );

    let stores = Arc::new(stores);
    let shutdown = Arc::new(AtomicBool::new(false));
    let name = format!("{app}-GlobalStreamThread");
    let commit_interval = config.commit_interval;
    let (s2, stop) = (stores.clone(), shutdown.clone());
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let span = tracing::info_span!("global_stream_thread");
            let _enter = span.enter();
            let mut run = || -> Result<(), StreamsError> {
                let mut last_commit = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    poll_once(
                        &consumer,
                        &s2,
                        &mut parts,
                        &index,
                        &mut entries,
                        Duration::from_millis(100),
                    )?;
                    if last_commit.elapsed() >= commit_interval {
                        write_checkpoint(&dir, &s2, &parts)?;
                        last_commit = Instant::now();
                    }
                }
                write_checkpoint(&dir, &s2, &parts)
            };
            let r = run();
            if let Err(e) = s2.close() {
                tracing::warn!(error = %e, "error closing the global stores");
            }
            if let Err(e) = r {
                tracing::error!(error = %e, "global stream thread failed");
                on_error(e);
            }
        })
        .map_err(|source| StreamsError::Io { path: name, source })?;
    Ok(GlobalThread {
        stores,
        shutdown,
        handle: Mutex::new(Some(handle)),
    })
}
