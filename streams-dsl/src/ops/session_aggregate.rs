//! Session-windowed `count` / `reduce` / `aggregate`: a record joins (and may merge) the sessions within the
//! inactivity gap of it.

use std::sync::Arc;

use state_store::{SessionStore, SharedSerde, Window, Windowed};
use streams_core::{Data, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::window_aggregate::expiry_interval;
use crate::windows::SessionWindows;

/// `add(key, value, aggregate so far or None)`; `merge(key, a, b)` combines two sessions' aggregates.
pub(crate) struct SessionAggregate<K, V, VA, A, M> {
    pub store_name: Arc<str>,
    pub windows: SessionWindows,
    pub retention_ms: i64,
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<VA>,
    pub add: Arc<A>,
    pub merge: Arc<M>,
    pub send_old: bool,
    pub store: Option<SessionStore<K, VA>>,
    pub observed: i64,
    pub last_expiry: i64,
    pub _p: std::marker::PhantomData<fn(V)>,
}

impl<K: Data, V: Data, VA: Data, A, M> Processor<K, V> for SessionAggregate<K, V, VA, A, M>
where
    A: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
    M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
{
    type KOut = Windowed<K>;
    type VOut = Change<VA>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let typed = ctx.key_value_store::<Windowed<K>, VA>(&self.store_name)?;
        self.store = Some(SessionStore::new(
            typed.bytes().clone(),
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.retention_ms,
        ));
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| missing_store("session aggregate"))?;
        let ts = r.timestamp;
        if ts < 0 {
            ctx.record_dropped("negative timestamp in a session aggregation");
            return Ok(());
        }
        self.observed = self.observed.max(ts).max(ctx.stream_time());
        store.observe_stream_time(self.observed);
        let close = self.observed.saturating_sub(self.windows.grace_ms);
        let gap = self.windows.gap_ms;
        let overlapping = store.find_sessions(&r.key, ts - gap, ts + gap)?;
        let mut merged = Window::new(ts, ts);
        for (w, _) in &overlapping {
            merged.start = merged.start.min(w.start);
            merged.end = merged.end.max(w.end);
        }
        if merged.end < close {
            ctx.record_dropped("record later than its session's grace period");
            return Ok(());
        }
        let mut agg: Option<VA> = None;
        let mut old_same = None;
        for (w, a) in overlapping {
            if w == merged {
                old_same = Some(a.clone());
            } else {
                store.remove(&r.key, w)?;
                ctx.forward(Record {
                    key: Windowed::new(r.key.clone(), w),
                    value: Change::new(None, self.send_old.then(|| a.clone())),
                    timestamp: ts,
                    headers: r.headers.clone(),
                })?;
            }
            agg = Some(match agg {
                None => a,
                Some(x) => (self.merge)(&r.key, x, a),
            });
        }
        let new = (self.add)(&r.key, &r.value, agg);
        store.put(&r.key, merged, &new)?;
        ctx.forward(Record {
            key: Windowed::new(r.key, merged),
            value: Change::new(Some(new), old_same.filter(|_| self.send_old)),
            timestamp: ts,
            headers: r.headers,
        })?;
        if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
            store.expire(self.observed)?;
            self.last_expiry = self.observed;
        }
        Ok(())
    }
}
