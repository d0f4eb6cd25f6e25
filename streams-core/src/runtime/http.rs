//! The HTTP query server (feature `http`): reads stores of a running instance as JSON, and sends a request
//! for a key held by another instance there with a redirect.
//!
//! Routes:
//! - `GET /stores`: the stores this server exposes;
//! - `GET /metadata`: every instance with its `application.server`, partitions and stores;
//! - `GET /stores/{store}/keys/{key}`: `{"key": .., "value": ..}`, or a 307 redirect to the instance holding
//!   the key;
//! - `GET /stores/{store}?prefix=..|from=..&to=..&limit=N`: a page of at most `limit` entries (bounded by the
//!   server's maximum) from this instance's partitions; `/metadata` names the other instances.
//!
//! Keys in URLs are JSON (`42`, `"a b"`) or, for string keys, the bare text. Errors: 404 for an unknown store or
//! key, 400 for an undecodable key or a page over the limit, 503 while the instance rebalances or restores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use state_store::KeyRange;

use crate::error::StreamsError;
use crate::runtime::kafka_streams::KafkaStreams;

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

trait Endpoint: Send + Sync {
    fn get(&self, streams: &KafkaStreams, raw_key: &str) -> Reply;
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

impl<K, V> Endpoint for TypedEndpoint<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + 'static,
{
    fn get(&self, streams: &KafkaStreams, raw_key: &str) -> Reply {
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
        let local = match streams.store::<K, V>(&self.name).and_then(|s| s.get(&key)) {
            Ok(v) => v,
            Err(e) => return from_streams_error(e),
        };
        if let Some(v) = local {
            return Reply::Json(StatusCode::OK, json!({ "key": key, "value": v }));
        }
        match streams.query_metadata_for_store_key::<K, V>(&self.name, &key) {
            Ok(meta) => {
                if let Some(owner) = meta.active {
                    if owner.instance_id != streams.instance_id() {
                        if let Some(host) = owner.host {
                            let to = format!(
                                "http://{host}/stores/{}/keys/{}",
                                encode_path_segment(&self.name),
                                encode_path_segment(raw_key)
                            );
                            return Reply::Redirect(to);
                        }
                    }
                }
                error(
                    StatusCode::NOT_FOUND,
                    format!("no key '{raw_key}' in store '{}'", self.name),
                )
            }
            Err(e) => from_streams_error(e),
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
            (Some(p), None, None) => match key_bytes(p) {
                Ok(b) => KeyRange::prefix(&b),
                Err(r) => return r,
            },
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
    stores: BTreeMap<String, Arc<dyn Endpoint>>,
    max_page: usize,
}

/// Builds a [`QueryServer`].
pub struct QueryServerBuilder {
    streams: Arc<KafkaStreams>,
    stores: BTreeMap<String, Arc<dyn Endpoint>>,
    addr: SocketAddr,
    max_page: usize,
}

/// The HTTP query server of one instance. Binds to loopback unless told otherwise.
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
    /// A server for `streams` (default address 127.0.0.1:0, page size 1000).
    pub fn builder(streams: Arc<KafkaStreams>) -> QueryServerBuilder {
        QueryServerBuilder {
            streams,
            stores: BTreeMap::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_page: 1000,
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
        let state = Arc::new(AppState {
            streams: self.streams,
            stores: self.stores,
            max_page: self.max_page,
        });
        let app = Router::new()
            .route("/stores", get(list_stores))
            .route("/metadata", get(metadata))
            .route("/stores/{store}", get(scan))
            .route("/stores/{store}/keys/{key}", get(get_key))
            .with_state(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "query server stopped");
            }
        });
        tracing::info!(%local_addr, "query server listening");
        Ok(RunningQueryServer {
            local_addr,
            shutdown: Some(tx),
            task,
        })
    }
}

/// A running query server.
pub struct RunningQueryServer {
    local_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
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
            let _ = tx.send(());
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

async fn get_key(
    State(s): State<Arc<AppState>>,
    Path((store, key)): Path<(String, String)>,
) -> Reply {
    match s.stores.get(&store) {
        Some(e) => e.get(&s.streams, &key),
        None => error(StatusCode::NOT_FOUND, format!("unknown store '{store}'")),
    }
}

async fn scan(
    State(s): State<Arc<AppState>>,
    Path(store): Path<String>,
    Query(q): Query<ScanQuery>,
) -> Reply {
    match s.stores.get(&store) {
        Some(e) => e.scan(&s.streams, &q, s.max_page),
        None => error(StatusCode::NOT_FOUND, format!("unknown store '{store}'")),
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
    fn redirect_paths_are_percent_encoded() {
        assert_eq!(encode_path_segment("/p1 x"), "%2Fp1%20x");
        assert_eq!(encode_path_segment("client-1_a.b~"), "client-1_a.b~");
    }
}
