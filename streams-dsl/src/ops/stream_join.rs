//! KStream-KStream windowed joins (inner, left, outer).
//!
//! Each side keeps its records in a window store (duplicates kept) for `before + after + grace`. A record joins
//! the other side's records within its join window whose own windows are still open; a record whose window
//! already closed when it arrives is dropped and counted. Left and outer joins hold each record that found no
//! partner in a shared "unmatched" store and emit it with `None` for the other side only once its window closes
//! (stream time past `t + after + grace` for a left record, `t + before + grace` for a right one), so a record
//! that is joined later never also produces an unmatched result (Kafka Streams' semantics since 3.1).
//!
//! The unmatched store's keys: window close (i64 BE) ++ side (0 left, 1 right) ++ timestamp (i64 BE) ++
//! sequence (u32 BE) ++ key bytes: records closing first come first.

use std::sync::Arc;

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError, WindowStore};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

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

const HEADER: usize = 8 + 1 + 8 + 4;

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
    pub observed: i64,
    pub seq: u32,
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
            observed: i64::MIN,
            seq: 0,
            _p: std::marker::PhantomData,
        }
    }

    fn retention(&self) -> i64 {
        let w = &self.windows;
        w.before_ms + w.after_ms + w.grace_ms + 1
    }

    /// When a record of one side at `t` can no longer be joined: the other side's partners come at most
    /// `after` (left records) or `before` (right records) later, plus grace.
    fn close_of(&self, left_side: bool, t: i64) -> i64 {
        let w = &self.windows;
        let reach = if left_side { w.after_ms } else { w.before_ms };
        t.saturating_add(reach).saturating_add(w.grace_ms)
    }

    fn init_stores<KO: Data, VO: Data>(
        &mut self,
        ctx: &mut ProcessorContext<KO, VO>,
    ) -> Result<(), StreamsError> {
        let l = ctx.key_value_store::<state_store::Windowed<K>, V1>(&self.left_store_name)?;
        let r = ctx.key_value_store::<state_store::Windowed<K>, V2>(&self.right_store_name)?;
        let ret = self.retention();
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
        Ok(())
    }

    /// Emits (and forgets) the unmatched records whose windows have closed.
    fn emit_closed(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<(), StreamsError> {
        // Both processors of the task add to the store, so its head is read each time (one seek) rather than
        // cached.
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let mut due = Vec::new();
        {
            let guard = store.lock().map_err(|_| poisoned(&name))?;
            for e in guard.scan(&KeyRange::all(), false).map_err(store_err)? {
                let (k, v) = e.map_err(store_err)?;
                let close = layout::i64_at(&name, &k, 0)?;
                if close >= self.observed {
                    break;
                }
                due.push((k, v));
            }
        }
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
            let t = layout::i64_at(&name, &k, 9)?;
            let value = if layout::u8_at(&name, &k, 8)? == 0 {
                let l = self.left_serde.deserialize(&v).map_err(serde_err)?;
                (self.joiner)(&key, Some(&l), None)
            } else {
                let r = self.right_serde.deserialize(&v).map_err(serde_err)?;
                (self.joiner)(&key, None, Some(&r))
            };
            ctx.forward(Record::new(key, value, t))?;
        }
        Ok(())
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
        let mut prefix = Vec::with_capacity(17);
        prefix.extend_from_slice(&self.close_of(left_side, t).to_be_bytes());
        prefix.push(u8::from(!left_side));
        prefix.extend_from_slice(&t.to_be_bytes());
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let mut guard = store.lock().map_err(|_| poisoned(&name))?;
        let doomed: Vec<Vec<u8>> = guard
            .scan(&KeyRange::prefix(&prefix), false)
            .map_err(store_err)?
            .filter_map(|e| e.ok())
            .filter(|(k, _)| k.len() >= HEADER && &k[HEADER..] == key_bytes)
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            guard.delete(&k).map_err(store_err)?;
        }
        Ok(())
    }

    fn remember_unmatched(
        &mut self,
        left_side: bool,
        key_bytes: &[u8],
        t: i64,
        value: Vec<u8>,
    ) -> Result<(), StreamsError> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let close = self.close_of(left_side, t);
        let name = self.unmatched_name.clone().unwrap_or_else(|| "".into());
        let mut guard = store.lock().map_err(|_| poisoned(&name))?;
        let mut k = Vec::with_capacity(HEADER + key_bytes.len());
        loop {
            k.clear();
            k.extend_from_slice(&close.to_be_bytes());
            k.push(u8::from(!left_side));
            k.extend_from_slice(&t.to_be_bytes());
            k.extend_from_slice(&self.seq.to_be_bytes());
            k.extend_from_slice(key_bytes);
            self.seq = self.seq.wrapping_add(1);
            if guard
                .put_if_absent(&k, &value)
                .map_err(store_err)?
                .is_none()
            {
                break;
            }
        }
        Ok(())
    }

    /// Common start of processing a record of either side: returns false when it was dropped.
    fn admit(
        &mut self,
        left_side: bool,
        t: i64,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<bool, StreamsError> {
        if t < 0 {
            ctx.record_dropped("negative timestamp in a stream-stream join");
            return Ok(false);
        }
        self.observed = self.observed.max(t).max(ctx.stream_time());
        let observed = self.observed;
        if let Some(l) = self.left.as_mut() {
            l.observe_stream_time(observed);
        }
        if let Some(r) = self.right.as_mut() {
            r.observe_stream_time(observed);
        }
        self.emit_closed(ctx)?;
        if self.close_of(left_side, t) < observed {
            ctx.record_dropped("record later than its join window's grace period");
            return Ok(false);
        }
        Ok(true)
    }

    pub(crate) fn process_left(
        &mut self,
        r: Record<K, V1>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        if self.left.is_none() || self.right.is_none() {
            return Err(missing_store("stream-stream join"));
        }
        let t = r.timestamp;
        if !self.admit(true, t, ctx)? {
            return Ok(());
        }
        let w = self.windows;
        let partners = match self.right.as_mut() {
            Some(s) => s.fetch_range(&r.key, t - w.before_ms, t + w.after_ms)?,
            None => Vec::new(),
        };
        if let Some(s) = self.left.as_mut() {
            s.put(&r.key, t, Some(&r.value))?;
        }
        let mut key_bytes = Vec::new();
        self.key_serde
            .serialize(&r.key, &mut key_bytes)
            .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
        let mut matched = false;
        let mut forgotten = Vec::new();
        for (t2, v2) in partners {
            if self.close_of(false, t2) < self.observed {
                continue; // that partner's window has closed
            }
            matched = true;
            if self.kind == JoinKind::Outer && !forgotten.contains(&t2) {
                forgotten.push(t2);
                self.forget_unmatched(false, &key_bytes, t2)?;
            }
            let value = (self.joiner)(&r.key, Some(&r.value), Some(&v2));
            ctx.forward(Record {
                key: r.key.clone(),
                value,
                timestamp: t.max(t2),
                headers: r.headers.clone(),
            })?;
        }
        if !matched && self.kind != JoinKind::Inner {
            let mut bytes = Vec::new();
            self.left_serde
                .serialize(&r.value, &mut bytes)
                .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
            self.remember_unmatched(true, &key_bytes, t, bytes)?;
        }
        Ok(())
    }

    pub(crate) fn process_right(
        &mut self,
        r: Record<K, V2>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        if self.left.is_none() || self.right.is_none() {
            return Err(missing_store("stream-stream join"));
        }
        let t = r.timestamp;
        if !self.admit(false, t, ctx)? {
            return Ok(());
        }
        let w = self.windows;
        let partners = match self.left.as_mut() {
            Some(s) => s.fetch_range(&r.key, t - w.after_ms, t + w.before_ms)?,
            None => Vec::new(),
        };
        if let Some(s) = self.right.as_mut() {
            s.put(&r.key, t, Some(&r.value))?;
        }
        let mut key_bytes = Vec::new();
        self.key_serde
            .serialize(&r.key, &mut key_bytes)
            .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
        let mut matched = false;
        let mut forgotten = Vec::new();
        for (t1, v1) in partners {
            if self.close_of(true, t1) < self.observed {
                continue;
            }
            matched = true;
            if self.kind != JoinKind::Inner && !forgotten.contains(&t1) {
                forgotten.push(t1);
                self.forget_unmatched(true, &key_bytes, t1)?;
            }
            let value = (self.joiner)(&r.key, Some(&v1), Some(&r.value));
            ctx.forward(Record {
                key: r.key.clone(),
                value,
                timestamp: t.max(t1),
                headers: r.headers.clone(),
            })?;
        }
        if !matched && self.kind == JoinKind::Outer {
            let mut bytes = Vec::new();
            self.right_serde
                .serialize(&r.value, &mut bytes)
                .map_err(|e| StreamsError::processor(format!("stream-stream join: {e}")))?;
            self.remember_unmatched(false, &key_bytes, t, bytes)?;
        }
        Ok(())
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
        self.0.init_stores(ctx)
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
        self.0.init_stores(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V2>,
        ctx: &mut ProcessorContext<K, VR>,
    ) -> Result<(), StreamsError> {
        self.0.process_right(r, ctx)
    }
}
