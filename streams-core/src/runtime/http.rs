//! The HTTP query server (feature `http`): reads stores of a running instance as JSON, sends a request for a
//! key held by another instance there with a redirect, and serves an operator page.
//!
//! Routes:
//! - `GET /stores`: the stores this server exposes;
//! - `GET /metadata`: every instance with its `application.server`, partitions and stores;
//! - `GET /stores/{store}/keys/{key}`: `{"key": .., "value": ..}`, or a 307 redirect to the instance holding
//!   the key when it advertises another address than this server's own `application.server` (instances behind
//!   one address answer locally, or 503 while the key's partition is held by another of them). With
//!   `?stale=true` a standby copy may answer, and this instance answers while it rebalances (see
//!   [`crate::runtime::StoreQueryParameters::enable_stale_stores`]): the answer adds `"copy"` (`"active"` or
//!   `"standby"`) and `"lag"` (changelog records the copy is behind, 0 for an active task); when the instance
//!   holding the key does not accept connections, the request is redirected to an instance keeping a standby of
//!   it;
//! - `GET /stores/{store}?prefix=..|from=..&to=..&limit=N`: a page of at most `limit` entries (bounded by the
//!   server's maximum) from this instance's partitions, in key-byte order; `/metadata` names the other
//!   instances. A prefix scan needs keys that serialize as strings, with the string serde or the JSON one (the
//!   prefix is matched on the text of the key); any other key type answers 400;
//! - `GET /ui`: the operator page, one HTML document with its script and style inline (no external resource):
//!   the topology drawn as a graph, the tasks with their partitions and restoration progress, consumer lag per
//!   partition, throughput and commit latency over the last minutes, and a store browser (`/ui?store=S&key=K`
//!   or `/ui?store=S&prefix=P` opens it on that lookup). It refreshes itself every 2 seconds from:
//! - `GET /api/topology`: the topology's structure (sub-topologies, nodes with their kind, topics, stores,
//!   predecessors and successors; global stores), as [`Topology::describe`](crate::Topology::describe) gives it;
//! - `GET /api/tasks`: each stream thread with its tasks, their input partitions (committed offset, position,
//!   end offset, lag) and restoration progress (see [`KafkaStreams::metadata_for_local_threads`]);
//! - `GET /api/metrics`: the instance's state, counters, errors, and its throughput and commit-latency samples
//!   (see [`KafkaStreams::metrics_history`]).
//!
//! Keys in URLs are JSON (`42`, `"a b"`) or, for string keys, the bare text. Errors are JSON `{"error": ..}`:
//! 404 for an unknown store or key, 400 for an undecodable key or prefix or a page over the limit, 503 while the
//! instance rebalances or restores, or when a request takes longer than the request timeout.
//!
//! Connections are bounded: a client must send a request's headers within the header-read timeout (the
//! connection is closed otherwise), a request is answered within the request timeout, and at most
//! `max_connections` connections are served at once (further ones wait in the listen backlog). Store reads run
//! on tokio's blocking threads, never on the async workers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use state_store::KeyRange;

use crate::error::StreamsError;
use crate::runtime::kafka_streams::KafkaStreams;
use crate::runtime::metadata::HostInfo;
use crate::topology::{NodeDescriptionKind, Topology};

/// The operator page: HTML with its script and style inline.
const UI_PAGE: &str = include_str!("ui.html");

enum Reply {
    Json(StatusCode, Value),
    Redirect(String),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(status, v) => (status, Json(v)).into_response(),
            Reply::Redirect(to) => {
                (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
            }
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    Reply::Json(status, json!({ "error": message.to_string() }))
}

fn from_streams_error(e: StreamsError) -> Reply {
    match e {
        StreamsError::StoreUnavailable { .. } => error(StatusCode::SERVICE_UNAVAILABLE, e),
        StreamsError::UnknownStore { .. } => error(StatusCode::NOT_FOUND, e),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Parameters of a scan.
#[derive(Debug, serde::Deserialize)]
struct ScanQuery {
    prefix: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// Parameters of a key lookup.
#[derive(Debug, Default, serde::Deserialize)]
struct KeyQuery {
    /// Standby copies may answer, and kept tasks during a rebalance (see
    /// [`crate::runtime::StoreQueryParameters::enable_stale_stores`]).
    #[serde(default)]
    stale: bool,
}

/// Whether something accepts connections at `host` within a short wait.
fn reachable(host: &HostInfo) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host.host.as_str(), host.port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

trait Endpoint: Send + Sync {
    fn get(&self, streams: &KafkaStreams, raw_key: &str, q: &KeyQuery) -> Reply;
    fn scan(&self, streams: &KafkaStreams, q: &ScanQuery, max_page: usize) -> Reply;
}

struct TypedEndpoint<K, V> {
    name: String,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

fn parse_key<K: DeserializeOwned>(raw: &str) -> Option<K> {
    serde_json::from_str(raw)
        .ok()
        .or_else(|| serde_json::from_value(Value::String(raw.to_string())).ok())
}

/// The bytes every key starting with the text `prefix` starts with, given how the store encodes the key whose
/// text is `prefix` (`encoded`): the same bytes for the string serde, the JSON string without its closing quote
/// for the JSON serde (JSON escapes each character on its own, so the escaped prefix is a prefix of the escaped
/// key). `None` for an encoding that keeps no text prefix.
fn string_prefix_bytes(prefix: &str, encoded: &[u8]) -> Option<Vec<u8>> {
    if encoded == prefix.as_bytes() {
        return Some(encoded.to_vec());
    }
    let json = serde_json::to_vec(prefix).ok()?;
    (encoded == json.as_slice()).then(|| json[..json.len() - 1].to_vec())
}

/// Whether one of this instance's stream threads runs the task of `store` for `partition` now.
fn holds_partition(streams: &KafkaStreams, store: &str, partition: i32) -> bool {
    let Some(sub) = streams
        .topology()
        .sub_topologies()
        .into_iter()
        .find(|s| s.stores.iter().any(|x| x == store))
    else {
        return false;
    };
    streams.metadata_for_local_threads().iter().any(|t| {
        t.active_tasks
            .iter()
            .any(|task| task.task_id.subtopology == sub.id && task.task_id.partition == partition)
    })
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<K, V> TypedEndpoint<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + 'static,
{
    /// A stale lookup here: the stores of this instance's tasks first, then its standby copies. The answer
    /// says which copy answered and, for a standby, how many changelog records it is behind.
    fn stale_get(&self, streams: &KafkaStreams, key: &K) -> Result<Option<Reply>, StreamsError> {
        let (active, standby) = streams.stale_parts(&self.name)?;
        let topology = streams.topology();
        let view = crate::ReadOnlyKeyValueStore::<K, V>::new(topology, &self.name, active)?;
        if let Some(v) = view.get(key)? {
            return Ok(Some(Reply::Json(
                StatusCode::OK,
                json!({ "key": key, "value": v, "copy": "active", "lag": 0 }),
            )));
        }
        let view = crate::ReadOnlyKeyValueStore::<K, V>::new(topology, &self.name, standby)?;
        let Some(v) = view.get(key)? else {
            return Ok(None);
        };
        let partition = streams
            .query_metadata_for_store_key::<K, V>(&self.name, key)?
            .partition;
        let lag = streams
            .standby_lags()
            .get(&self.name)
            .and_then(|p| p.get(&partition))
            .map(|l| l.offset_lag);
        Ok(Some(Reply::Json(
            StatusCode::OK,
            json!({ "key": key, "value": v, "copy": "standby", "lag": lag }),
        )))
    }
}

impl<K, V> Endpoint for TypedEndpoint<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + 'static,
{
    fn get(&self, streams: &KafkaStreams, raw_key: &str, q: &KeyQuery) -> Reply {
        let Some(key) = parse_key::<K>(raw_key) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "cannot decode key '{raw_key}' as {}",
                    std::any::type_name::<K>()
                ),
            );
        };
        // A key this instance holds is answered here: its tasks are current, while another instance's
        // announcement may lag a rebalance.
        if q.stale {
            match self.stale_get(streams, &key) {
                Ok(Some(found)) => return found,
                Ok(None) => {}
                Err(e) => return from_streams_error(e),
            }
        } else {
            let local = match streams.store::<K, V>(&self.name).and_then(|s| s.get(&key)) {
                Ok(v) => v,
                Err(e) => return from_streams_error(e),
            };
            if let Some(v) = local {
                return Reply::Json(StatusCode::OK, json!({ "key": key, "value": v }));
            }
        }
        let meta = match streams.query_metadata_for_store_key::<K, V>(&self.name, &key) {
            Ok(meta) => meta,
            Err(e) => return from_streams_error(e),
        };
        let link = |host: &HostInfo| {
            format!(
                "http://{host}/stores/{}/keys/{}{}",
                encode_path_segment(&self.name),
                encode_path_segment(raw_key),
                if q.stale { "?stale=true" } else { "" }
            )
        };
        let own = streams.application_server().and_then(HostInfo::parse);
        if q.stale {
            // The owner out of reach: a standby answers, a little behind.
            let owner = meta
                .active
                .as_ref()
                .filter(|o| o.instance_id != streams.instance_id());
            if let Some(host) = owner.and_then(|o| o.host.clone()) {
                if Some(&host) != own.as_ref() && !reachable(&host) {
                    let standby = meta.standbys.iter().find_map(|s| {
                        s.host
                            .clone()
                            .filter(|h| Some(h) != own.as_ref() && *h != host)
                    });
                    return match standby {
                        Some(s) => Reply::Redirect(link(&s)),
                        None => error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the instance holding partition {} of store '{}' ({host}) is unreachable, and no \
                                 other instance keeps a standby of it",
                                meta.partition, self.name
                            ),
                        ),
                    };
                }
            }
        }
        let not_found = || {
            error(
                StatusCode::NOT_FOUND,
                format!("no key '{raw_key}' in store '{}'", self.name),
            )
        };
        let Some(owner) = meta.active else {
            return not_found();
        };
        if owner.instance_id == streams.instance_id() {
            return not_found();
        }
        match owner.host {
            // Another address: the key is answered there.
            Some(host) if Some(&host) != own.as_ref() => Reply::Redirect(link(&host)),
            // Another instance advertising this very address (several instances behind one address): a
            // redirect would come back here. The answer is local, or unavailable while the partition is not here.
            Some(_) if holds_partition(streams, &self.name, meta.partition) => not_found(),
            Some(host) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "partition {} of store '{}' is held by instance {} behind this same address ({host}), \
                     not by this one",
                    meta.partition, self.name, owner.instance_id
                ),
            ),
            None => not_found(),
        }
    }

    fn scan(&self, streams: &KafkaStreams, q: &ScanQuery, max_page: usize) -> Reply {
        let limit = q.limit.unwrap_or(max_page);
        if limit > max_page {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit {limit} is over the maximum page size {max_page}"),
            );
        }
        let store = match streams.store::<K, V>(&self.name) {
            Ok(s) => s,
            Err(e) => return from_streams_error(e),
        };
        let key_bytes = |raw: &str| -> Result<Vec<u8>, Reply> {
            let k = parse_key::<K>(raw).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "cannot decode key '{raw}' as {}",
                        std::any::type_name::<K>()
                    ),
                )
            })?;
            store.encode_key(&k).map_err(from_streams_error)
        };
        let range = match (&q.prefix, &q.from, &q.to) {
            (Some(p), None, None) => {
                let bad = |why: &str| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot scan store '{}' by prefix '{p}': {why}", self.name),
                    )
                };
                let Some(key) = parse_key::<K>(p) else {
                    return bad(&format!(
                        "it does not decode as a key of type {}",
                        std::any::type_name::<K>()
                    ));
                };
                let Ok(Value::String(text)) = serde_json::to_value(&key) else {
                    return bad(&format!(
                        "prefix scans need string keys, and this store's keys are {}",
                        std::any::type_name::<K>()
                    ));
                };
                let encoded = match store.encode_key(&key) {
                    Ok(b) => b,
                    Err(e) => return from_streams_error(e),
                };
                match string_prefix_bytes(&text, &encoded) {
                    Some(b) => KeyRange::prefix(&b),
                    None => {
                        return bad("the store's key serde does not keep the text of keys in order")
                    }
                }
            }
            (None, from, to) => {
                let from = match from.as_deref().map(key_bytes).transpose() {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let to = match to.as_deref().map(key_bytes).transpose() {
                    Ok(t) => t,
                    Err(r) => return r,
                };
                KeyRange::inclusive(from.as_deref(), to.as_deref())
            }
            _ => return error(StatusCode::BAD_REQUEST, "use either prefix or from/to"),
        };
        match store.scan(&range, false, limit) {
            Ok(entries) => {
                let entries: Vec<Value> = entries
                    .into_iter()
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect();
                Reply::Json(
                    StatusCode::OK,
                    json!({ "instance": streams.instance_id(), "entries": entries }),
                )
            }
            Err(e) => from_streams_error(e),
        }
    }
}

struct AppState {
    streams: Arc<KafkaStreams>,
    /// The topology as JSON, computed once.
    topology: Value,
    stores: BTreeMap<String, Arc<dyn Endpoint>>,
    max_page: usize,
}

/// Builds a [`QueryServer`].
pub struct QueryServerBuilder {
    streams: Arc<KafkaStreams>,
    stores: BTreeMap<String, Arc<dyn Endpoint>>,
    addr: SocketAddr,
    max_page: usize,
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

/// The default [`QueryServerBuilder::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`QueryServerBuilder::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`QueryServerBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The HTTP query server of one instance. Binds to loopback unless told otherwise.
///
/// Besides the store routes (`GET /stores`, `/metadata`, `/stores/{store}/keys/{key}` and
/// `/stores/{store}?prefix=..|from=..&to=..&limit=N`), it serves an operator page at `/ui`: the
/// topology as a graph, tasks and their restoration, consumer lag, throughput and commit latency, and a browser
/// of the stores given to [`QueryServerBuilder::store`]; `/ui?store=NAME&key=KEY` (or `&prefix=P`) opens the
/// browser on that lookup. The page is built into the binary and loads nothing from elsewhere; its data comes
/// from `/api/topology`, `/api/tasks` and `/api/metrics`.
///
/// ```no_run
/// # async fn run(streams: std::sync::Arc<streams_core::runtime::KafkaStreams>) {
/// use streams_core::runtime::QueryServer;
/// let server = QueryServer::builder(streams)
///     .store::<String, i64>("page-counts")
///     .bind("127.0.0.1:8080".parse().unwrap())
///     .serve()
///     .await
///     .unwrap();
/// println!("queries at http://{}", server.local_addr());
/// # }
/// ```
pub struct QueryServer;

impl QueryServer {
    /// A server for `streams` (default address 127.0.0.1:0, page size 1000, header-read timeout 10 s, request
    /// timeout 30 s, at most 1024 connections).
    pub fn builder(streams: Arc<KafkaStreams>) -> QueryServerBuilder {
        QueryServerBuilder {
            streams,
            stores: BTreeMap::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_page: 1000,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl QueryServerBuilder {
    /// Exposes key-value store `name` (keys from URLs as JSON or bare strings, values as JSON).
    pub fn store<K, V>(mut self, name: &str) -> Self
    where
        K: Serialize + DeserializeOwned + 'static,
        V: Serialize + 'static,
    {
        self.stores.insert(
            name.to_string(),
            Arc::new(TypedEndpoint::<K, V> {
                name: name.to_string(),
                _types: std::marker::PhantomData,
            }),
        );
        self
    }

    /// The address to listen on (it should match `application.server`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The largest page a scan returns.
    pub fn max_page_size(mut self, n: usize) -> Self {
        self.max_page = n;
        self
    }

    /// How long a client has to send a request's headers (on a new connection, or the next request on a kept-alive
    /// one) before the connection is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a request may take once its headers are in; a slower one is answered 503.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The most connections served at once (at least 1); further ones wait in the listen backlog until one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// Binds and serves on the current tokio runtime until shut down.
    pub async fn serve(self) -> Result<RunningQueryServer, StreamsError> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| StreamsError::Io {
                path: self.addr.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StreamsError::Io {
            path: self.addr.to_string(),
            source,
        })?;
        let topology = topology_json(self.streams.topology());
        let state = Arc::new(AppState {
            topology,
            streams: self.streams,
            stores: self.stores,
            max_page: self.max_page,
        });
        let app = Router::new()
            .route("/stores", get(list_stores))
            .route("/metadata", get(metadata))
            .route("/stores/{store}", get(scan))
            .route("/stores/{store}/keys/{key}", get(get_key))
            .route("/ui", get(ui_page))
            .route("/api/topology", get(api_topology))
            .route("/api/tasks", get(api_tasks))
            .route("/api/metrics", get(api_metrics))
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(
                self.request_timeout,
                request_deadline,
            ));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, http, self.max_connections, rx));
        tracing::info!(%local_addr, "query server listening");
        Ok(RunningQueryServer {
            local_addr,
            shutdown: Some(tx),
            task,
        })
    }
}

/// Answers 503 when the rest of the request takes longer than `limit`.
async fn request_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// Whether the server was told to stop (or its handle is gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts connections while fewer than `max` are open, serves each on its own task, and on shutdown stops
/// accepting, lets each connection finish its request and waits for them all.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    max: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let service = hyper_util::service::TowerToHyperService::new(app);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "query server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "query connection ended");
                    }
                    return;
                }
                _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    // Every permit back means every connection has ended.
    let _ = slots.acquire_many(max as u32).await;
}

/// A running query server.
pub struct RunningQueryServer {
    local_addr: SocketAddr,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningQueryServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting requests and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let _ = (&mut self.task).await;
    }
}

async fn list_stores(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!(s.stores.keys().collect::<Vec<_>>()))
}

async fn metadata(State(s): State<Arc<AppState>>) -> Json<Value> {
    let all: Vec<Value> = s
        .streams
        .all_metadata()
        .into_iter()
        .map(|m| {
            json!({
                "instance": m.instance_id,
                "host": m.host.map(|h| h.to_string()),
                "partitions": m.partitions.into_iter().map(|(t, p)| format!("{t}-{p}")).collect::<Vec<_>>(),
                "stores": m.stores,
            })
        })
        .collect();
    Json(Value::Array(all))
}

async fn ui_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        UI_PAGE,
    )
        .into_response()
}

/// A JSON answer that browsers must not cache (the page polls it).
fn fresh(v: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response()
}

/// The topology's structure: what [`Topology::describe`] prints, as JSON.
fn topology_json(topology: &Topology) -> Value {
    let desc = topology.describe();
    let subs: Vec<Value> = desc
        .sub_topologies
        .iter()
        .map(|s| {
            let nodes: Vec<Value> = s
                .nodes
                .iter()
                .map(|n| {
                    let (kind, topics, stores) = match &n.kind {
                        NodeDescriptionKind::Source(t) => ("source", t.clone(), Vec::new()),
                        NodeDescriptionKind::Processor(st) => ("processor", Vec::new(), st.clone()),
                        NodeDescriptionKind::Sink(t) => ("sink", vec![t.clone()], Vec::new()),
                    };
                    json!({
                        "name": n.name,
                        "kind": kind,
                        "topics": topics,
                        "stores": stores,
                        "predecessors": n.predecessors,
                        "successors": n.successors,
                    })
                })
                .collect();
            json!({ "id": s.id, "nodes": nodes })
        })
        .collect();
    let stores: Vec<Value> = topology
        .stores()
        .map(|(name, logged)| json!({ "name": name, "logged": logged }))
        .collect();
    json!({
        "sub_topologies": subs,
        "global_stores": desc.global_stores.iter().map(|g| json!({
            "store": g.store,
            "source": g.source,
            "topic": g.topic,
        })).collect::<Vec<_>>(),
        "stores": stores,
    })
}

async fn api_topology(State(s): State<Arc<AppState>>) -> Response {
    fresh(s.topology.clone())
}

async fn api_tasks(State(s): State<Arc<AppState>>) -> Response {
    let threads = s.streams.metadata_for_local_threads();
    let mut tasks = Vec::new();
    let mut thread_list = Vec::new();
    for t in &threads {
        thread_list.push(json!({
            "name": t.thread_name,
            "state": t.thread_state,
            "active_tasks": t.active_tasks.iter().map(|x| x.task_id.to_string()).collect::<Vec<_>>(),
            "standby_tasks": t.standby_tasks.iter().map(|x| x.task_id.to_string()).collect::<Vec<_>>(),
        }));
        for task in &t.active_tasks {
            let partitions: Vec<Value> = task
                .topic_partitions
                .iter()
                .map(|p| {
                    json!({
                        "topic": p.topic,
                        "partition": p.partition,
                        "committed": p.committed_offset,
                        "position": p.position,
                        "end": p.end_offset,
                        "lag": p.lag(),
                    })
                })
                .collect();
            let restoration: Vec<Value> = task
                .restoration
                .iter()
                .map(|r| {
                    json!({
                        "store": r.store,
                        "partition": r.partition,
                        "restored": r.restored,
                        "total": r.total,
                        "done": r.done,
                    })
                })
                .collect();
            tasks.push(json!({
                "id": task.task_id.to_string(),
                "subtopology": task.task_id.subtopology,
                "partition": task.task_id.partition,
                "thread": t.thread_name,
                "state": task.state.as_str(),
                "standby": Value::Null,
                "records_processed": task.records_processed,
                "partitions": partitions,
                "restoration": restoration,
            }));
        }
    }
    fresh(json!({ "threads": thread_list, "tasks": tasks }))
}

async fn api_metrics(State(s): State<Arc<AppState>>) -> Response {
    let streams = &s.streams;
    let m = streams.metrics();
    let samples: Vec<Value> = streams
        .metrics_history()
        .iter()
        .map(|x| {
            json!({
                "start_ms": x.start_ms,
                "duration_ms": x.duration_ms,
                "records_processed": x.records_processed,
                "records_per_second": x.records_per_second(),
                "commits": x.commits,
                "commit_latency_avg_ms": x.commit_latency_avg_ms,
                "commit_latency_max_ms": x.commit_latency_max_ms,
            })
        })
        .collect();
    fresh(json!({
        "application_id": streams.application_id(),
        "instance": streams.instance_id(),
        "state": format!("{:?}", streams.state()),
        "totals": {
            "processed": m.processed,
            "skipped": m.skipped_records,
            "dead_lettered": m.dead_lettered,
            "dropped": m.dropped_records,
            "punctuations": m.punctuations,
        },
        "errors": streams.errors(),
        "sample_interval_ms": crate::runtime::SAMPLE_INTERVAL.as_millis() as u64,
        "samples": samples,
        "stores": s.stores.keys().collect::<Vec<_>>(),
    }))
}

async fn get_key(
    State(s): State<Arc<AppState>>,
    Path((store, key)): Path<(String, String)>,
    Query(q): Query<KeyQuery>,
) -> Reply {
    let Some(e) = s.stores.get(&store).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("unknown store '{store}'"));
    };
    let streams = s.streams.clone();
    blocking(move || e.get(&streams, &key, &q)).await
}

async fn scan(
    State(s): State<Arc<AppState>>,
    Path(store): Path<String>,
    Query(q): Query<ScanQuery>,
) -> Reply {
    let Some(e) = s.stores.get(&store).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("unknown store '{store}'"));
    };
    let (streams, max_page) = (s.streams.clone(), s.max_page);
    blocking(move || e.scan(&streams, &q, max_page)).await
}

/// Runs a store read (RocksDB gets and scans block) on tokio's blocking threads.
async fn blocking(read: impl FnOnce() -> Reply + Send + 'static) -> Reply {
    match tokio::task::spawn_blocking(read).await {
        Ok(r) => r,
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store read failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_as_json_or_bare_strings() {
        assert_eq!(parse_key::<i64>("42"), Some(42));
        assert_eq!(
            parse_key::<i64>("forty-two"),
            None,
            "an undecodable key is a 400, not a guess"
        );
        assert_eq!(parse_key::<String>("client1"), Some("client1".to_string()));
        assert_eq!(
            parse_key::<String>("\"quoted\""),
            Some("quoted".to_string())
        );
        assert_eq!(
            parse_key::<(String, i64)>("[\"a\",1]"),
            Some(("a".to_string(), 1))
        );
    }

    #[test]
    fn string_prefixes_follow_the_key_encoding() {
        // The string serde: the text itself.
        assert_eq!(string_prefix_bytes("cli", b"cli"), Some(b"cli".to_vec()));
        // The JSON serde: the quoted text without its closing quote, escapes included.
        assert_eq!(
            string_prefix_bytes("cli", br#""cli""#),
            Some(br#""cli"#.to_vec())
        );
        let quoted = serde_json::to_vec("a\"b").unwrap();
        assert_eq!(
            string_prefix_bytes("a\"b", &quoted),
            Some(br#""a\"b"#.to_vec())
        );
        assert_eq!(string_prefix_bytes("", b""), Some(Vec::new()));
        // Anything else keeps no text prefix.
        assert_eq!(string_prefix_bytes("7", &7i64.to_be_bytes()), None);
    }

    #[test]
    fn topology_json_lists_every_node_with_its_edges() {
        use crate::{Serdes, SinkOptions, SourceOptions};
        let mut t = Topology::new();
        t.add_source(
            "in",
            &["words"],
            SourceOptions::new(Serdes::string(), Serdes::string()),
        )
        .unwrap();
        t.add_sink(
            "out",
            "copy",
            SinkOptions::new(Serdes::string(), Serdes::string()),
            &["in"],
        )
        .unwrap();
        let v = topology_json(&t);
        let nodes = v["sub_topologies"][0]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0]["name"], "in");
        assert_eq!(nodes[0]["kind"], "source");
        assert_eq!(nodes[0]["topics"], json!(["words"]));
        assert_eq!(nodes[0]["successors"], json!(["out"]));
        assert_eq!(nodes[1]["kind"], "sink");
        assert_eq!(nodes[1]["topics"], json!(["copy"]));
        assert_eq!(nodes[1]["predecessors"], json!(["in"]));
    }

    /// A store endpoint that records the thread it reads on and takes `delay` to answer.
    struct SlowEndpoint {
        delay: Duration,
        read_on: std::sync::Mutex<Vec<std::thread::ThreadId>>,
    }

    impl Endpoint for SlowEndpoint {
        fn get(&self, _: &KafkaStreams, _: &str, _: &KeyQuery) -> Reply {
            self.read_on
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            std::thread::sleep(self.delay);
            Reply::Json(StatusCode::OK, json!({}))
        }
        fn scan(&self, streams: &KafkaStreams, _: &ScanQuery, _: usize) -> Reply {
            self.get(streams, "", &KeyQuery::default())
        }
    }

    fn unstarted_streams() -> Arc<KafkaStreams> {
        use crate::{Serdes, SinkOptions, SourceOptions};
        let mut t = Topology::new();
        t.add_source(
            "in",
            &["words"],
            SourceOptions::new(Serdes::string(), Serdes::string()),
        )
        .unwrap();
        t.add_sink(
            "out",
            "copy",
            SinkOptions::new(Serdes::string(), Serdes::string()),
            &["in"],
        )
        .unwrap();
        let config = crate::runtime::StreamsConfig::new("http-unit", "127.0.0.1:1");
        Arc::new(KafkaStreams::new(t, config).unwrap())
    }

    /// One GET over a fresh connection (from a blocking thread, leaving the runtime free); the status.
    async fn status_of(addr: SocketAddr, path: &str) -> u16 {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            String::from_utf8_lossy(&out)
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0)
        })
        .await
        .unwrap()
    }

    /// Defect: store reads (RocksDB gets and scans, which block) ran inside the async handlers, on the runtime
    /// thread polling the request, stalling every other request and task on that worker. On a current-thread
    /// runtime, a read must now happen on another thread.
    #[test]
    fn finding_store_reads_run_off_the_async_workers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let endpoint = Arc::new(SlowEndpoint {
            delay: Duration::ZERO,
            read_on: Default::default(),
        });
        let mut builder = QueryServer::builder(unstarted_streams());
        builder.stores.insert("s".into(), endpoint.clone());
        let runtime_thread = std::thread::current().id();
        rt.block_on(async {
            let server = builder.serve().await.unwrap();
            assert_eq!(
                status_of(server.local_addr(), "/stores/s/keys/k").await,
                200
            );
            assert_eq!(
                status_of(server.local_addr(), "/stores/s?prefix=k").await,
                200
            );
            server.shutdown().await;
        });
        let read_on = endpoint.read_on.lock().unwrap().clone();
        assert_eq!(read_on.len(), 2);
        assert!(
            read_on.iter().all(|t| *t != runtime_thread),
            "a store read ran on the runtime's own thread"
        );
    }

    /// A request slower than the request timeout is answered 503, and the server keeps serving.
    #[test]
    fn a_request_over_the_request_timeout_is_answered_503() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let endpoint = Arc::new(SlowEndpoint {
            delay: Duration::from_secs(2),
            read_on: Default::default(),
        });
        let mut builder =
            QueryServer::builder(unstarted_streams()).request_timeout(Duration::from_millis(200));
        builder.stores.insert("s".into(), endpoint);
        rt.block_on(async {
            let server = builder.serve().await.unwrap();
            let started = std::time::Instant::now();
            assert_eq!(
                status_of(server.local_addr(), "/stores/s/keys/k").await,
                503
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(status_of(server.local_addr(), "/stores").await, 200);
            server.shutdown().await;
        });
    }

    #[test]
    fn redirect_paths_are_percent_encoded() {
        assert_eq!(encode_path_segment("/p1 x"), "%2Fp1%20x");
        assert_eq!(encode_path_segment("client-1_a.b~"), "client-1_a.b~");
    }
}
