//! Session-windowed `count` / `reduce` / `aggregate`: a record joins (and may merge) the sessions within the
//! inactivity gap of it.

use std::sync::Arc;

use state_store::{SessionStore, SharedSerde, Window, Windowed};
use streams_core::{Data, Headers, Processor, ProcessorContext, Record, StreamsError};

use crate::change::Change;
use crate::ops::flush_listener::CacheListener;
use crate::ops::stream_aggregate::missing_store;
use crate::ops::window_aggregate::expiry_interval;
use crate::windows::SessionWindows;

/// `add(key, value, aggregate so far or None)`; `merge(key, aggregate so far or None, session)` folds the
/// aggregate of a session the record joins into the aggregate so far (`None` stands for the initializer's value,
/// as Kafka merges every found session into `initializer()`).
pub(crate) struct SessionAggregate<K, V, VA, A, M> {
    pub store_name: Arc<str>,
    pub windows: SessionWindows,
    pub retention_ms: i64,
    pub key_serde: SharedSerde<K>,
    pub value_serde: SharedSerde<VA>,
    pub add: Arc<A>,
    pub merge: Arc<M>,
    pub send_old: bool,
    /// The store's cache may hold the updates back (Kafka forwards through CachingSessionStore's flush).
    pub cached: bool,
    pub store: Option<SessionStore<K, VA>>,
    /// The store cache's flush listener, which forwards the updates while the store is cached.
    pub emit: Option<CacheListener<Windowed<K>, VA>>,
    pub observed: i64,
    pub last_expiry: i64,
    pub _p: std::marker::PhantomData<fn(V)>,
}

impl<K: Data, V: Data, VA: Data, A, M> Processor<K, V> for SessionAggregate<K, V, VA, A, M>
where
    A: Fn(&K, &V, Option<VA>) -> VA + Send + Sync + 'static,
    M: Fn(&K, Option<VA>, VA) -> VA + Send + Sync + 'static,
{
    type KOut = Windowed<K>;
    type VOut = Change<VA>;

    fn init(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        let typed = ctx.key_value_store::<Windowed<K>, VA>(&self.store_name)?;
        self.emit = Some(CacheListener::register(
            typed.bytes(),
            typed.key_serde().clone(),
            self.value_serde.clone(),
            self.send_old,
            self.cached,
        )?);
        self.store = Some(SessionStore::new(
            typed.bytes().clone(),
            self.key_serde.clone(),
            self.value_serde.clone(),
            // Kafka's session stores (InMemorySessionStore, the RocksDB segmented store's `getActualFrom`) keep
            // a session while its end > stream time - retention; `SessionStore` keeps it while its end >=
            // stream time - retention, hence one ms less.
            self.retention_ms - 1,
        ));
        Ok(())
    }

    fn flush(
        &mut self,
        ctx: &mut ProcessorContext<Windowed<K>, Change<VA>>,
    ) -> Result<(), StreamsError> {
        match self.emit.as_mut() {
            Some(emit) => emit.flush(ctx, &|k, new, old| (k, Change::new(new, old))),
            None => Ok(()),
        }
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
        let emit = self
            .emit
            .as_mut()
            .ok_or_else(|| missing_store("session aggregate"))?;
        if self.key_serde.is_null(&r.key) {
            // Kafka skips (and counts) a record with a null key: it belongs to no session.
            ctx.record_dropped("null key in a session aggregation");
            return Ok(());
        }
        let ts = r.timestamp;
        if ts < 0 {
            ctx.record_dropped("negative timestamp in a session aggregation");
            return Ok(());
        }
        // As Kafka's KStreamSessionWindowAggregate: the processor's own stream time (the newest record it saw),
        // and a session is closed once it ended more than gap + grace before it.
        self.observed = self.observed.max(ts);
        let gap = self.windows.gap_ms;
        let close = self
            .observed
            .saturating_sub(self.windows.grace_ms)
            .saturating_sub(gap);
        let overlapping = store.find_sessions(&r.key, ts - gap, ts + gap)?;
        let single = Window::new(ts, ts);
        let mut merged = single;
        let mut agg: Option<VA> = None;
        for (w, a) in &overlapping {
            merged.start = merged.start.min(w.start);
            merged.end = merged.end.max(w.end);
            agg = Some((self.merge)(&r.key, agg, a.clone()));
        }
        if merged.end < close {
            ctx.record_dropped("record later than its session's grace period");
            return Ok(());
        }
        // Every session the record joins or bridges is removed (a tombstone stamped with its own end), unless
        // the only one is the record's own point session [ts, ts], which is overwritten in place.
        //
        // Without a cache Kafka forwards each removal and the put as they happen, as new records without
        // headers. With one (CachingSessionStore) they wait in the cache: the removal and the put of the same
        // session collapse into one update carrying the store's previous value, every update carries the input
        // record's headers, and the cache forwards them when it flushes or evicts them.
        if emit.caching() {
            for (w, _) in &overlapping {
                if merged != single {
                    emit.set_context(ctx, w.end, r.headers.clone())?;
                    store.remove(&r.key, *w)?;
                }
            }
            let new = (self.add)(&r.key, &r.value, agg);
            store.observe_stream_time(merged.end);
            if store.retains(merged) {
                emit.set_context(ctx, merged.end, r.headers)?;
                store.put(&r.key, merged, &new)?;
                emit.finish(ctx, &|k, new, old| (k, Change::new(new, old)))?;
            } else {
                // Already beyond the store's retention: never stored, but Kafka's cache forwards it.
                emit.finish(ctx, &|k, new, old| (k, Change::new(new, old)))?;
                ctx.forward(Record {
                    key: Windowed::new(r.key, merged),
                    value: Change::new(Some(new), None),
                    timestamp: merged.end,
                    headers: r.headers,
                })?;
            }
            if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
                store.expire(self.observed)?;
                self.last_expiry = self.observed;
            }
            return Ok(());
        }
        let headers = Headers::default();
        if merged != single {
            for (w, a) in overlapping {
                store.remove(&r.key, w)?;
                ctx.forward(Record {
                    key: Windowed::new(r.key.clone(), w),
                    value: Change::new(None, self.send_old.then_some(a)),
                    timestamp: w.end,
                    headers: headers.clone(),
                })?;
            }
        }
        let new = (self.add)(&r.key, &r.value, agg);
        // Kafka's session stores advance their own stream time with the end of each session written, after the
        // lookup above (so a record advancing stream time still finds a session exactly `gap` before it).
        store.observe_stream_time(merged.end);
        store.put(&r.key, merged, &new)?;
        // The new session is stamped with its end (its newest record's time); without a cache it has no old
        // value (any session it replaced was retracted above).
        ctx.forward(Record {
            key: Windowed::new(r.key, merged),
            value: Change::new(Some(new), None),
            timestamp: merged.end,
            headers,
        })?;
        if self.observed - self.last_expiry >= expiry_interval(self.retention_ms) {
            store.expire(self.observed)?;
            self.last_expiry = self.observed;
        }
        Ok(())
    }
}
