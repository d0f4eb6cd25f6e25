//! An in-process mock Schema Registry for tests: the REST subset that this crate's client and Confluent's
//! clients use, on `127.0.0.1`, with optional basic auth, request counters and a switch that makes a subject
//! refuse new schemas as incompatible.
//!
//! Endpoints: `POST /subjects/{subject}/versions` (register), `POST /subjects/{subject}` (look up),
//! `GET /schemas/ids/{id}` (query parameters such as `format` are ignored: schemas are returned as registered),
//! `GET /subjects/{subject}/versions`, `GET /subjects/{subject}/versions/{version|latest}`, `GET /subjects`.
//! The same schema (Avro and JSON Schema compared as JSON documents, Protobuf as text) gets the same id under
//! every subject; error answers carry Confluent's `error_code` (40401, 40402, 40403, 409, 42201, 42202).
//!
//! ```
//! use std::sync::Arc;
//! use schema_registry::mock::{Call, MockSchemaRegistry};
//! use schema_registry::{RegistryConfig, Schema, SchemaRegistryClient, SchemaType};
//!
//! let registry = MockSchemaRegistry::start().unwrap();
//! let client = SchemaRegistryClient::new(RegistryConfig::new(registry.url())).unwrap();
//! let schema = Schema::new(SchemaType::Avro, r#"{"type":"string"}"#);
//! assert_eq!(client.register("greetings-value", &schema, false).unwrap(), 1);
//! assert_eq!(client.register("greetings-value", &schema, false).unwrap(), 1); // cached
//! assert_eq!(registry.calls(Call::Register), 1);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

/// A kind of request the mock counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// `POST /subjects/{subject}/versions`.
    Register,
    /// `POST /subjects/{subject}`.
    Lookup,
    /// `GET /schemas/ids/{id}`.
    SchemaById,
    /// `GET /subjects/{subject}/versions/{version}`.
    Version,
    /// `GET /subjects/{subject}/versions`.
    Versions,
    /// `GET /subjects`.
    Subjects,
    /// Any request refused for missing or wrong credentials (HTTP 401).
    Unauthorized,
}

#[derive(Clone)]
struct StoredSchema {
    schema_type: String,
    schema: String,
    references: Value,
}

#[derive(Default)]
struct Store {
    /// Schema id - 1 -> schema.
    schemas: Vec<StoredSchema>,
    /// Subject -> ids of its versions, in order.
    subjects: BTreeMap<String, Vec<u32>>,
    /// Subjects that refuse every new schema once they have a version (HTTP 409).
    incompatible: HashSet<String>,
    calls: HashMap<Call, u64>,
}

impl Store {
    fn same(a: &StoredSchema, b: &StoredSchema) -> bool {
        if a.schema_type != b.schema_type || a.references != b.references {
            return false;
        }
        if a.schema_type == "PROTOBUF" {
            return a.schema.trim() == b.schema.trim();
        }
        // Avro and JSON Schema: the same JSON document, whatever the whitespace.
        match (
            serde_json::from_str::<Value>(&a.schema),
            serde_json::from_str::<Value>(&b.schema),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => a.schema == b.schema,
        }
    }

    fn id_of(&self, schema: &StoredSchema) -> Option<u32> {
        self.schemas
            .iter()
            .position(|s| Store::same(s, schema))
            .map(|p| p as u32 + 1)
    }
}

struct Shared {
    store: Mutex<Store>,
    authorization: Option<String>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mock registry, serving on its own thread; it stops when dropped.
pub struct MockSchemaRegistry {
    url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockSchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSchemaRegistry")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl MockSchemaRegistry {
    /// Starts a registry without authentication on a free port of `127.0.0.1`.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(None)
    }

    /// Starts a registry that answers HTTP 401 unless requests carry these basic-auth credentials.
    pub fn start_with_auth(user: &str, password: &str) -> std::io::Result<Self> {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> std::io::Result<Self> {
        let authorization = auth.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            authorization,
        });
        let app = Router::new()
            .route("/subjects", get(list_subjects))
            .route("/subjects/{subject}", post(lookup))
            .route(
                "/subjects/{subject}/versions",
                post(register).get(list_versions),
            )
            .route("/subjects/{subject}/versions/{version}", get(get_version))
            .route("/schemas/ids/{id}", get(schema_by_id))
            .layer(middleware::from_fn_with_state(shared.clone(), check_auth))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-schema-registry".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "mock schema registry cannot listen");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "mock schema registry stopped");
                    }
                });
            })?;
        Ok(MockSchemaRegistry {
            url: format!("http://{addr}"),
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes `subject` refuse every new schema (HTTP 409) once it has a version.
    pub fn make_incompatible(&self, subject: &str) {
        self.shared.store().incompatible.insert(subject.to_string());
    }

    /// How many requests of this kind arrived.
    pub fn calls(&self, call: Call) -> u64 {
        self.shared.store().calls.get(&call).copied().unwrap_or(0)
    }

    /// Registers a schema directly, as another application would, and returns its id; `None` when the subject
    /// refuses it as incompatible. `schema_type` is `AVRO`, `PROTOBUF` or `JSON`.
    pub fn put(&self, subject: &str, schema_type: &str, schema: &str) -> Option<u32> {
        register_in(
            &mut self.shared.store(),
            subject,
            StoredSchema {
                schema_type: schema_type.to_string(),
                schema: schema.to_string(),
                references: json!([]),
            },
        )
        .ok()
    }

    /// The subjects registered so far, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.shared.store().subjects.keys().cloned().collect()
    }
}

impl Drop for MockSchemaRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

fn count(shared: &Shared, call: Call) {
    *shared.store().calls.entry(call).or_default() += 1;
}

async fn check_auth(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &shared.authorization {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            count(&shared, Call::Unauthorized);
            return error(StatusCode::UNAUTHORIZED, 401, "Unauthorized");
        }
    }
    next.run(request).await
}

// The error is the HTTP answer to send, built once where the failure is known.
#[allow(clippy::result_large_err)]
fn parse_request(body: &Bytes) -> Result<StoredSchema, Response> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, 42201, &e.to_string()))?;
    let schema = value
        .get("schema")
        .and_then(Value::as_str)
        .ok_or_else(|| error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "no schema"))?;
    let schema_type = value
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO");
    if !matches!(schema_type, "AVRO" | "PROTOBUF" | "JSON") {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "unknown schemaType",
        ));
    }
    if schema_type != "PROTOBUF" && serde_json::from_str::<Value>(schema).is_err() {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema",
        ));
    }
    Ok(StoredSchema {
        schema_type: schema_type.to_string(),
        schema: schema.to_string(),
        references: value.get("references").cloned().unwrap_or(json!([])),
    })
}

#[allow(clippy::result_large_err)]
fn register_in(store: &mut Store, subject: &str, schema: StoredSchema) -> Result<u32, Response> {
    let existing = store.id_of(&schema);
    let versions = store.subjects.get(subject).cloned().unwrap_or_default();
    if let Some(id) = existing {
        if versions.contains(&id) {
            return Ok(id);
        }
    }
    if !versions.is_empty() && store.incompatible.contains(subject) {
        return Err(error(
            StatusCode::CONFLICT,
            409,
            "Schema being registered is incompatible with an earlier schema for subject",
        ));
    }
    let id = match existing {
        Some(id) => id,
        None => {
            store.schemas.push(schema);
            store.schemas.len() as u32
        }
    };
    store
        .subjects
        .entry(subject.to_string())
        .or_default()
        .push(id);
    Ok(id)
}

async fn register(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    count(&shared, Call::Register);
    let schema = match parse_request(&body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut store = shared.store();
    match register_in(&mut store, &subject, schema) {
        Ok(id) => Json(json!({"id": id})).into_response(),
        Err(r) => r,
    }
}

fn version_answer(store: &Store, subject: &str, version: usize, id: u32) -> Value {
    let s = &store.schemas[id as usize - 1];
    let mut answer = json!({
        "subject": subject,
        "version": version,
        "id": id,
        "schema": s.schema,
        "references": s.references,
    });
    if s.schema_type != "AVRO" {
        answer["schemaType"] = json!(s.schema_type);
    }
    answer
}

async fn lookup(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    count(&shared, Call::Lookup);
    let schema = match parse_request(&body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let store = shared.store();
    let Some(versions) = store.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found");
    };
    let found = store
        .id_of(&schema)
        .and_then(|id| versions.iter().position(|v| *v == id).map(|p| (p + 1, id)));
    match found {
        Some((version, id)) => Json(version_answer(&store, &subject, version, id)).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn get_version(
    State(shared): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    count(&shared, Call::Version);
    let store = shared.store();
    let Some(versions) = store.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found");
    };
    let index = if version == "latest" || version == "-1" {
        versions.len()
    } else {
        match version.parse::<usize>() {
            Ok(v) => v,
            Err(_) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42202, "Invalid version"),
        }
    };
    match index.checked_sub(1).and_then(|i| versions.get(i)) {
        Some(&id) => Json(version_answer(&store, &subject, index, id)).into_response(),
        None => error(StatusCode::NOT_FOUND, 40402, "Version not found"),
    }
}

async fn list_versions(State(shared): State<Arc<Shared>>, Path(subject): Path<String>) -> Response {
    count(&shared, Call::Versions);
    let store = shared.store();
    match store.subjects.get(&subject) {
        Some(v) => Json(json!((1..=v.len()).collect::<Vec<_>>())).into_response(),
        None => error(StatusCode::NOT_FOUND, 40401, "Subject not found"),
    }
}

async fn schema_by_id(State(shared): State<Arc<Shared>>, Path(id): Path<u32>) -> Response {
    count(&shared, Call::SchemaById);
    let store = shared.store();
    match id
        .checked_sub(1)
        .and_then(|i| store.schemas.get(i as usize))
    {
        Some(s) => {
            let mut answer = json!({"schema": s.schema, "references": s.references});
            if s.schema_type != "AVRO" {
                answer["schemaType"] = json!(s.schema_type);
            }
            Json(answer).into_response()
        }
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn list_subjects(State(shared): State<Arc<Shared>>) -> Response {
    count(&shared, Call::Subjects);
    let store = shared.store();
    Json(json!(store.subjects.keys().collect::<Vec<_>>())).into_response()
}
