//! KStream-KStream windowed joins (inner, left, outer), following Kafka Streams' `KStreamKStreamJoin`.
//!
//! Each side keeps its records in a window store (duplicates kept) with a retention of `before + after + grace`
//! of that store's own observed time (the newest timestamp put into it); reads skip what fell out of it. A record
//! is joined with the other side's retained records within its join window, whatever its lateness: as in Kafka,
//! nothing is dropped for being late, a late record simply finds fewer partners. A record with a null key or
//! value is dropped and counted, except that the outer side of a left or outer join forwards a null-key record
//! with a value unjoined at once.
//!
//! Left and outer joins hold each record that found no partner in a shared "outer join" store and emit it with
//! `None` for the other side once its window closes (stream time past `t + after + grace` for a left record,
//! `t + before + grace` for a right one), so a record joined later never also produces an unmatched result
//! (Kafka Streams' semantics since 3.1). A record already behind stream time by more than its join window's
//! reach (`t + after` for this side) is emitted unjoined at once instead.
//!
//! The outer join store's keys are Kafka's `TimestampedKeyAndJoinSide`: timestamp (i64 BE) ++ side (1 left,
//! 0 right) ++ key bytes, so expired records come out by timestamp, the right side first at equal timestamps,
//! then by key bytes. Its values are the list of the records' values in arrival order (Kafka's list-value store):
//! a sequence of u32 BE length ++ value bytes.
//!
//! Expiry is cheap: each side's window store is kept in time segments (Kafka's segmented stores), so expiring
//! reads nothing until a whole segment falls out of retention, and then only that segment, whose entries are
//! deleted (tombstones to the changelog) and the segment dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError, WindowStore};
use streams_core::{Data, Headers, Processor, ProcessorContext, Record, StreamsError, TaskId};

use crate::ops::layout;
use crate::ops::stream_aggregate::missing_store;
use crate::windows::JoinWindows;

/// Which records without a partner are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Outer,
}

/// Outer join store key header: timestamp ++ side.
const HEADER: usize = 8 + 1;
/// A join window store key's suffix: start ++ sequence.
const WINDOW_SUFFIX: usize = 8 + 4;

/// The times both processors of a join in one task share (Kafka's `KStreamImplJoin.TimeTracker`, plus each
/// window store's observed time, which Kafka's stores keep themselves).
#[derive(Debug)]
pub(crate) struct TimeTracker {
    /// Newest timestamp either side has processed.
    stream_time: i64,
    /// A lower bound of the outer join store's oldest timestamp (`i64::MAX`: nothing may be due).
    min_time: i64,
    /// Newest timestamp put into the left and right window stores.
    left_observed: i64,
    right_observed: i64,
}

impl Default for TimeTracker {
    fn default() -> Self {
        TimeTracker {
            stream_time: -1,
            min_time: i64::MAX,
            left_observed: i64::MIN,
            right_observed: i64::MIN,
        }
    }
}

/// One [`TimeTracker`] per task, shared by the join's two processors.
#[derive(Clone, Default)]
pub(crate) struct TimeTrackers(Arc<Mutex<HashMap<TaskId, Weak<Mutex<TimeTracker>>>>>);

impl TimeTrackers {
    fn get(&self, task: TaskId) -> Arc<Mutex<TimeTracker>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(t) = map.get(&task).and_then(Weak::upgrade) {
            return t;
        }
        let t = Arc::new(Mutex::new(TimeTracker::default()));
        map.insert(task, Arc::downgrade(&t));
        t
    }
}

pub(crate) struct JoinCore<K, V1, V2, VR, J> {
    pub kind: JoinKind,
    pub windows: JoinWindows,
    pub joiner: Arc<J>,
    pub left_store_name: Arc<str>,
    pub right_store_name: Arc<str>,
    pub unmatched_name: Option<Arc<str>>,
    pub key_serde: SharedSerde<K>,
    pub left_serde: SharedSerde<V1>,
    pub right_serde: SharedSerde<V2>,
    pub left: Option<WindowStore<K, V1>>,
    pub right: Option<WindowStore<K, V2>>,
    pub unmatched: Option<SharedKeyValueStore>,
    pub trackers: TimeTrackers,
    tracker: Arc<Mutex<TimeTracker>>,
    /// The bytes of this processor's own window store (the left one for the left processor).
    this_bytes: Option<SharedKeyValueStore>,
    pub _p: std::marker::PhantomData<fn() -> VR>,
}

fn store_err(e: StoreError) -> StreamsError {
    StreamsError::from(e)
}

fn poisoned(name: &str) -> StreamsError {
    store_err(StoreError::Poisoned {
        store: name.to_string(),
    })
}

/// Appends `value` to a list value of the outer join store.
fn push_list(list: &mut Vec<u8>, value: &[u8]) {
    list.extend_from_slice(&(value.len() as u32).to_be_bytes());
    list.extend_from_slice(value);
}

/// The values of a list value of the outer join store, in arrival order.
fn split_list<'a>(name: &str, mut list: &'a [u8]) -> Result<Vec<&'a [u8]>, StreamsError> {
    let mut out = Vec::new();
    while !list.is_empty() {
        let bad = || {
            store_err(StoreError::Serde {
                store: name.to_string(),
                source: state_store::SerdeError::new(
                    "outer join value list",
                    state_store::SerdeErrorKind::Other,
                    "truncated value list",
                ),
            })
        };
        if list.len() < 4 {
            return Err(bad());
        }
        let n = u32::from_be_bytes([list[0], list[1], list[2], list[3]]) as usize;
        if list.len() < 4 + n {
            return Err(bad());
        }
        out.push(&list[4..4 + n]);
        list = &list[4 + n..];
    }
    Ok(out)
}

impl<K: Data, V1: Data, V2: Data, VR: Data, J> JoinCore<K, V1, V2, VR, J>
where
    J: Fn(&K, Option<&V1>, Option<&V2>) -> VR + Send + Sync + 'static,
{
    pub(crate) fn new_core(
        kind: JoinKind,
        windows: JoinWindows,
        joiner: Arc<J>,
        names: (Arc<str>, Arc<str>, Option<Arc<str>>),
        serdes: (SharedSerde<K>, SharedSerde<V1>, SharedSerde<V2>),
        trackers: TimeTrackers,
    ) -> Self {
        JoinCore {
            kind,
            windows,
            joiner,
            left_store_name: names.0,
            right_store_name: names.1,
            unmatched_name: names.2,
            key_serde: serdes.0,
            left_serde: serdes.1,
            right_serde: serdes.2,
            left: None,
            right: None,
            unmatched: None,
            trackers,
            tracker: Arc::new(Mutex::new(TimeTracker::default())),
            this_bytes: None,
            _p: std::marker::PhantomData,
        }
    }

    /// Kafka's join store retention: window size (`before + after`) plus grace.
    fn retention(&self) -> i64 {
        let w = &self.windows;
        w.before_ms
            .saturating_add(w.after_ms)
            .saturating_add(w.grace_ms)
    }

    /// Whether records of this side without a partner are emitted (Kafka's `outer` flag of the processor).
    fn outer(&self, left_side: bool) -> bool {
        match self.kind {
            JoinKind::Inner => false,
            JoinKind::Left => left_side,
            JoinKind::Outer => true,
        }
    }

    fn with_tracker<T>(&self, f: impl FnOnce(&mut TimeTracker) -> T) -> T {
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t)
    }

    fn init_stores<KO: Data, VO: Data>(
        &mut self,
        left_side: bool,
        ctx: &mut ProcessorContext<KO, VO>,
    ) -> Result<(), StreamsError> {
        let l = ctx.key_value_store::<state_store::Windowed<K>, V1>(&self.left_store_name)?;
        let r = ctx.key_value_store::<state_store::Windowed<K>, V2>(&self.right_store_name)?;
        let ret = self.retention();
        self.this_bytes = Some(if left_side {
            l.bytes().clone()
        } else {
            r.bytes().clone()
        });
        self.left = Some(
            WindowStore::new(
                l.bytes().clone(),
                self.key_serde.clone(),
                self.left_serde.clone(),
                0,
                ret,
            )
            .retaining_duplicates(),
        );
        self.right = Some(
            WindowStore::new(
                r.bytes().clone(),
                self.key_serde.clone(),
                self.right_serde.clone(),
                0,
                ret,
            )
            .retaining_duplicates(),
        );
        if let Some(name) = self.unmatched_name.clone() {
            let u = ctx.key_value_store::<Vec<u8>, Vec<u8>>(&name)?;
            self.unmatched = Some(u.bytes().clone());
        }
        self.tracker = self.trackers.get(ctx.task_id());
        // Recover this side's observed time from its store (restored before processing starts).
        let mut newest = i64::MIN;
        if let Some(bytes) = self.this_bytes.clone() {
            let name = if left_side {
                self.left_store_name.clone()
            } else {
                self.right_store_name.clone()
            };
            let guard = bytes.lock().map_err(|_| poisoned(&name))?;
            for e in guard.scan(&KeyRange::all(), false).map_err(store_err)? {
                let (k, _) = e.map_err(store_err)?;
                if k.len() < WINDOW_SUFFIX {
                    continue;
                }
                let split = k.len() - WINDOW_SUFFIX;
                let start = layout::i64_at(&name, &k, split)?;
                newest = newest.max(start);
            }
        }
        self.with_tracker(|t| {
            let o = if left_side {
                &mut t.left_observed
            } else {
                &mut t.right_observed
            };
            *o = (*o).max(newest);
        });
        Ok(())
    }

    /// Deletes the entries of this side's store that fell out of retention at its observed time `observed`.
    /// The store is kept in time segments, so this reads nothing unless a whole segment has expired, and then
    /// only that segment.
    fn expire(&mut self, left_side: bool, observed: i64) -> Result<(), StreamsError> {
        if left_side {
            if let Some(s) = self.left.as_mut() {
                s.expire(observed)?;
            }
        } else if let Some(s) = self.right.as_mut() {
            s.expire(observed)?;
        }
        Ok(())
    }

    /// Emits (and forgets) the records of the outer join store whose windows have closed, as Kafka's
    /// `emitNonJoinedOuterRecords`: in store order (timestamp, right side first, key), skipping records of a side
    /// whose window is still open, until both sides have an open one. They carry the current record's headers,
    /// as in Kafka.
    fn emit_closed(
        &mut self,
        left_side: bool,
        headers: &Headers,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let w = self.windows;
        let this_after = if left_side { w.after_ms } else { w.before_ms };
        let (stream_time, min_time) = self.with_tracker(|t| (t.stream_time, t.min_time));
        // Only when there might be something to emit.
        if min_time
            .saturating_add(this_after)
            .saturating_add(w.grace_ms)
            >= stream_time
        {
            return Ok(());
        }
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let mut min_time = i64::MAX;
        let mut due = Vec::new();
        {
            let guard = store.lock().map_err(|_| poisoned(&name))?;
            let (mut left_open, mut right_open) = (false, false);
            for e in guard.scan(&KeyRange::all(), false).map_err(store_err)? {
                let (k, v) = e.map_err(store_err)?;
                let ts = layout::i64_at(&name, &k, 0)?;
                let left = layout::u8_at(&name, &k, 8)? == 1;
                min_time = ts;
                if left_open && right_open {
                    break;
                }
                let look_back = if left { w.after_ms } else { w.before_ms };
                if ts.saturating_add(look_back).saturating_add(w.grace_ms) >= stream_time {
                    if left {
                        left_open = true;
                    } else {
                        right_open = true;
                    }
                    continue;
                }
                due.push((k, v));
            }
        }
        self.with_tracker(|t| t.min_time = min_time);
        for (k, v) in due {
            store
                .lock()
                .map_err(|_| poisoned(&name))?
                .delete(&k)
                .map_err(store_err)?;
            let serde_err = |e| {
                store_err(StoreError::Serde {
                    store: name.to_string(),
                    source: e,
                })
            };
            let key = self
                .key_serde
                .deserialize(layout::after(&name, &k, HEADER)?)
                .map_err(serde_err)?;
            let t = layout::i64_at(&name, &k, 0)?;
            let left = layout::u8_at(&name, &k, 8)? == 1;
            for bytes in split_list(&name, &v)? {
                let value = if left {
                    let l = self.left_serde.deserialize(bytes).map_err(serde_err)?;
                    (self.joiner)(&key, Some(&l), None)
                } else {
                    let r = self.right_serde.deserialize(bytes).map_err(serde_err)?;
                    (self.joiner)(&key, None, Some(&r))
                };
                ctx.forward(Record {
                    key: key.clone(),
                    value,
                    timestamp: t,
                    headers: headers.clone(),
                })?;
            }
        }
        Ok(())
    }

    /// The outer join store key of a record of `side` with `key` at `t`.
    fn outer_key(left_side: bool, key_bytes: &[u8], t: i64) -> Vec<u8> {
        let mut k = Vec::with_capacity(HEADER + key_bytes.len());
        k.extend_from_slice(&t.to_be_bytes());
        k.push(u8::from(left_side));
        k.extend_from_slice(key_bytes);
        k
    }

    /// Forgets the unmatched records of `side` with `key` at `t` (a partner arrived for them; records of one
    /// side, key and time share a window, so they are matched together).
    fn forget_unmatched(
        &mut self,
        left_side: bool,
        key_bytes: &[u8],
        t: i64,
    ) -> Result<(), StreamsError> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let k = Self::outer_key(left_side, key_bytes, t);
        let mut guard = store.lock().map_err(|_| poisoned(&name))?;
        guard.delete(&k).map_err(store_err)?;
        Ok(())
    }

    /// Adds a record without a partner to the outer join store's list under its (timestamp, side, key).
    fn remember_unmatched(
        &mut self,
        left_side: bool,
        key_bytes: &[u8],
        t: i64,
        value: &[u8],
    ) -> Result<(), StreamsError> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let k = Self::outer_key(left_side, key_bytes, t);
        let mut guard = store.lock().map_err(|_| poisoned(&name))?;
        let mut list = guard.get(&k).map_err(store_err)?.unwrap_or_default();
        push_list(&mut list, value);
        guard.put(&k, &list).map_err(store_err)?;
        Ok(())
    }

    fn serialize_key(&self, key: &K) -> Result<Vec<u8>, StreamsError> {
        let mut key_bytes = Vec::new();
        self.key_serde
            .serialize(key, &mut key_bytes)
            .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
        Ok(key_bytes)
    }

    /// Kafka's `KStreamKStreamJoinProcessor.process` for a record of either side, then the put of the record
    /// into its side's window store (Kafka's `KStreamJoinWindow`, which runs right after).
    #[allow(clippy::too_many_arguments)]
    fn process_side<VT: Data, VO: Data>(
        &mut self,
        left_side: bool,
        r: Record<K, VT>,
        this_serde: SharedSerde<VT>,
        fetch_other: impl FnOnce(&mut Self, &K, i64, i64, i64) -> Result<Vec<(i64, VO)>, StreamsError>,
        put_this: impl FnOnce(&mut Self, &K, i64, &VT, i64) -> Result<(), StreamsError>,
        join: impl Fn(&J, &K, &VT, Option<&VO>) -> VR,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        if self.left.is_none() || self.right.is_none() {
            return Err(missing_store("stream-stream join"));
        }
        let t = r.timestamp;
        if t < 0 {
            ctx.record_dropped("negative timestamp in a stream-stream join");
            return Ok(());
        }
        let stream_time = self.with_tracker(|tr| {
            tr.stream_time = tr.stream_time.max(t);
            tr.stream_time
        });
        let outer = self.outer(left_side);
        let null_key = self.key_serde.is_null(&r.key);
        let null_value = this_serde.is_null(&r.value);
        if outer && null_key && !null_value {
            let value = join(&self.joiner, &r.key, &r.value, None);
            ctx.forward(Record {
                key: r.key,
                value,
                timestamp: t,
                headers: r.headers,
            })?;
            return Ok(());
        }
        if null_key || null_value {
            ctx.record_dropped("null key or value in a stream-stream join");
            return Ok(());
        }
        if t == stream_time {
            self.emit_closed(left_side, &r.headers, ctx)?;
        }
        let w = self.windows;
        let (join_before, join_after) = if left_side {
            (w.before_ms, w.after_ms)
        } else {
            (w.after_ms, w.before_ms)
        };
        let from = t.saturating_sub(join_before).max(0);
        let to = t.saturating_add(join_after).max(0);
        let other_observed = self.with_tracker(|tr| {
            if left_side {
                tr.right_observed
            } else {
                tr.left_observed
            }
        });
        let partners = fetch_other(self, &r.key, other_observed, from, to)?;
        let key_bytes = self.serialize_key(&r.key)?;
        let mut forgotten = Vec::new();
        for (t2, v2) in &partners {
            if self.unmatched.is_some() && !forgotten.contains(t2) {
                forgotten.push(*t2);
                self.forget_unmatched(!left_side, &key_bytes, *t2)?;
            }
            let value = join(&self.joiner, &r.key, &r.value, Some(v2));
            ctx.forward(Record {
                key: r.key.clone(),
                value,
                timestamp: t.max(*t2),
                headers: r.headers.clone(),
            })?;
        }
        if outer && partners.is_empty() {
            if self.unmatched.is_none() || to < stream_time {
                let value = join(&self.joiner, &r.key, &r.value, None);
                ctx.forward(Record {
                    key: r.key.clone(),
                    value,
                    timestamp: t,
                    headers: r.headers.clone(),
                })?;
            } else {
                self.with_tracker(|tr| tr.min_time = tr.min_time.min(t));
                let mut bytes = Vec::new();
                this_serde
                    .serialize(&r.value, &mut bytes)
                    .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
                self.remember_unmatched(left_side, &key_bytes, t, &bytes)?;
            }
        }
        // The record joins its own side's window store.
        let observed = self.with_tracker(|tr| {
            let o = if left_side {
                &mut tr.left_observed
            } else {
                &mut tr.right_observed
            };
            *o = (*o).max(t);
            *o
        });
        put_this(self, &r.key, observed, &r.value, t)?;
        self.expire(left_side, observed)
    }

    pub(crate) fn process_left(
        &mut self,
        r: Record<K, V1>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let serde = self.left_serde.clone();
        self.process_side::<V1, V2>(
            true,
            r,
            serde,
            |c, k, observed, from, to| {
                let s = c
                    .right
                    .as_mut()
                    .ok_or_else(|| missing_store("stream-stream join"))?;
                s.observe_stream_time(observed);
                Ok(s.fetch_range(k, from, to)?)
            },
            |c, k, observed, v, t| {
                let s = c
                    .left
                    .as_mut()
                    .ok_or_else(|| missing_store("stream-stream join"))?;
                s.observe_stream_time(observed);
                Ok(s.put(k, t, Some(v))?)
            },
            |j, k, v, o| j(k, Some(v), o),
            ctx,
        )
    }

    pub(crate) fn process_right(
        &mut self,
        r: Record<K, V2>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        let serde = self.right_serde.clone();
        self.process_side::<V2, V1>(
            false,
            r,
            serde,
            |c, k, observed, from, to| {
                let s = c
                    .left
                    .as_mut()
                    .ok_or_else(|| missing_store("stream-stream join"))?;
                s.observe_stream_time(observed);
                Ok(s.fetch_range(k, from, to)?)
            },
            |c, k, observed, v, t| {
                let s = c
                    .right
                    .as_mut()
                    .ok_or_else(|| missing_store("stream-stream join"))?;
                s.observe_stream_time(observed);
                Ok(s.put(k, t, Some(v))?)
            },
            |j, k, v, o| j(k, o, Some(v)),
            ctx,
        )
    }
}

/// The processor on the left stream.
pub(crate) struct JoinLeft<K, V1, V2, VR, J>(pub JoinCore<K, V1, V2, VR, J>);
/// The processor on the right stream.
pub(crate) struct JoinRight<K, V1, V2, VR, J>(pub JoinCore<K, V1, V2, VR, J>);

impl<K: Data, V1: Data, V2: Data, VR: Data, J> Processor<K, V1> for JoinLeft<K, V1, V2, VR, J>
where
    J: Fn(&K, Option<&V1>, Option<&V2>) -> VR + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = VR;

    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        self.0.init_stores(true, ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V1>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        self.0.process_left(r, ctx)
    }
}

impl<K: Data, V1: Data, V2: Data, VR: Data, J> Processor<K, V2> for JoinRight<K, V1, V2, VR, J>
where
    J: Fn(&K, Option<&V1>, Option<&V2>) -> VR + Send + Sync + 'static,
{
    type KOut = K;
    type VOut = VR;

    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        self.0.init_stores(false, ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V2>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        self.0.process_right(r, ctx)
    }
}
