//! `suppress(until_window_closes)`: holds each window's latest result and emits it once, when stream time
//! passes the window's end plus grace.
//!
//! The buffer is a changelogged key-value store (so results held at a crash are not lost), keyed by the window
//! end (big-endian) followed by the windowed key's bytes: closing windows are a prefix of the key order.

use std::sync::Arc;

use state_store::{KeyRange, SharedKeyValueStore, SharedSerde, StoreError, Windowed};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::layout;
use crate::ops::stream_aggregate::missing_store;

pub(crate) struct SuppressUntilClose<K, V> {
    pub store_name: Arc<str>,
    pub key_serde: SharedSerde<Windowed<K>>,
    pub value_serde: SharedSerde<V>,
    pub grace_ms: i64,
    /// Session windows include their end: they close only once stream time is past end + grace (for sessions,
    /// `grace_ms` holds gap + grace: a session can still grow until then).
    pub end_inclusive: bool,
    pub store: Option<SharedKeyValueStore>,
    pub observed: i64,
    /// The smallest window end buffered (None: empty), so most records skip the scan.
    pub min_end: Option<i64>,
    pub key_buf: Vec<u8>,
    pub value_buf: Vec<u8>,
}

fn store_err(e: StoreError) -> StreamsError {
    StreamsError::from(e)
}

impl<K: Data, V: Data> SuppressUntilClose<K, V> {
    fn serde_error(&self, e: state_store::SerdeError) -> StreamsError {
        store_err(StoreError::Serde {
            store: self.store_name.to_string(),
            source: e,
        })
    }

    fn closed(&self, end: i64) -> bool {
        let deadline = end.saturating_add(self.grace_ms);
        if self.end_inclusive {
            deadline < self.observed
        } else {
            deadline <= self.observed
        }
    }

    fn emit_closed(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<V>>,
    ) -> Result<(), StreamsError> {
        let Some(min) = self.min_end else {
            return Ok(());
        };
        if !self.closed(min) {
            return Ok(());
        }
        let store = self
            .store
            .clone()
            .ok_or_else(|| missing_store("suppress"))?;
        let mut due = Vec::new();
        let mut next_min = None;
        {
            let guard = store.lock().map_err(|_| {
                store_err(StoreError::Poisoned {
                    store: self.store_name.to_string(),
                })
            })?;
            for entry in guard.scan(&KeyRange::all(), false).map_err(store_err)? {
                let (k, v) = entry.map_err(store_err)?;
                let end = layout::i64_at(&self.store_name, &k, 0)?;
                if !self.closed(end) {
                    next_min = Some(end);
                    break;
                }
                due.push((k, v));
            }
        }
        self.min_end = next_min;
        for (k, v) in due {
            let key = self
                .key_serde
                .deserialize(layout::after(&self.store_name, &k, 8)?)
                .map_err(|e| self.serde_error(e))?;
            let ts = layout::i64_at(&self.store_name, &v, 0)?;
            let value = self
                .value_serde
                .deserialize(layout::after(&self.store_name, &v, 8)?)
                .map_err(|e| self.serde_error(e))?;
            store
                .lock()
                .map_err(|_| {
                    store_err(StoreError::Poisoned {
                        store: self.store_name.to_string(),
                    })
                })?
                .delete(&k)
                .map_err(store_err)?;
            ctx.forward(Record::new(key, Change::new(Some(value), None), ts))?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data> Processor<Windowed<K>, Change<V>> for SuppressUntilClose<K, V> {
    type KOut = Windowed<K>;
    type VOut = Change<V>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<V>>,
    ) -> Result<(), StreamsError> {
        let typed = ctx.key_value_store::<Vec<u8>, Vec<u8>>(&self.store_name)?;
        let store = typed.bytes().clone();
        // What a restored buffer holds decides where emission resumes.
        let first = {
            let guard = store.lock().map_err(|_| {
                store_err(StoreError::Poisoned {
                    store: self.store_name.to_string(),
                })
            })?;
            let mut it = guard.scan(&KeyRange::all(), false).map_err(store_err)?;
            match it.next() {
                Some(e) => {
                    let (k, _) = e.map_err(store_err)?;
                    Some(layout::i64_at(&self.store_name, &k, 0)?)
                }
                None => None,
            }
        };
        self.min_end = first;
        self.store = Some(store);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<Windowed<K>, Change<V>>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<V>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .clone()
            .ok_or_else(|| missing_store("suppress"))?;
        self.observed = self.observed.max(r.timestamp).max(ctx.stream_time());
        let end = r.key.window.end;
        self.key_buf.clear();
        self.key_buf.extend_from_slice(&end.to_be_bytes());
        let kr = self.key_serde.serialize(&r.key, &mut self.key_buf);
        kr.map_err(|e| self.serde_error(e))?;
        let mut guard = store.lock().map_err(|_| {
            store_err(StoreError::Poisoned {
                store: self.store_name.to_string(),
            })
        })?;
        match &r.value.new {
            // A session merged into a bigger one: its result is not final, forget it.
            None => {
                guard.delete(&self.key_buf).map_err(store_err)?;
            }
            Some(v) if !self.closed(end) => {
                self.value_buf.clear();
                self.value_buf.extend_from_slice(&r.timestamp.to_be_bytes());
                let vr = self.value_serde.serialize(v, &mut self.value_buf);
                vr.map_err(|e| self.serde_error(e))?;
                guard
                    .put(&self.key_buf, &self.value_buf)
                    .map_err(store_err)?;
                self.min_end = Some(self.min_end.map_or(end, |m| m.min(end)));
            }
            // Upstream operators never update a closed window; pass anything that does straight through.
            Some(_) => {
                drop(guard);
                ctx.forward(Record {
                    key: r.key,
                    value: Change::new(r.value.new, None),
                    timestamp: r.timestamp,
                    headers: r.headers,
                })?;
                return self.emit_closed(ctx);
            }
        }
        drop(guard);
        self.emit_closed(ctx)
    }
}
