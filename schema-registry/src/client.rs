//! A blocking Schema Registry client with caches.
//!
//! Serdes run on stream threads and call the registry synchronously, so the client does blocking HTTP (with
//! `ureq`, no async runtime involved). Every answer that cannot change is cached for the life of the client:
//! schemas by id, ids by subject and schema, and specific versions. The latest version of a subject is cached
//! for [`RegistryConfig::latest_cache_ttl`]. After the first record of a type, serializing and deserializing
//! make no request at all.
//!
//! The REST calls are the ones Confluent's clients make: `POST /subjects/{subject}/versions` (register),
//! `POST /subjects/{subject}` (look up), `GET /schemas/ids/{id}`, `GET /subjects/{subject}/versions/{version}`
//! (and `latest`), `GET /subjects`.
//!
//! ```no_run
//! use schema_registry::{RegistryConfig, Schema, SchemaRegistryClient, SchemaType};
//!
//! let client = SchemaRegistryClient::new(
//!     RegistryConfig::new("http://localhost:8081").with_basic_auth("svc", "s3cret"),
//! )?;
//! let schema = Schema::new(SchemaType::Avro, r#"{"type":"string"}"#);
//! let id = client.register("greetings-value", &schema, false)?;
//! assert_eq!(client.schema_by_id(id)?.schema, schema.schema);
//! # Ok::<(), schema_registry::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::{BasicAuth, RegistryConfig};
use crate::error::{Error, Result};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, \
                      application/json; qs=0.5";

/// The format of a schema, as the registry names it in `schemaType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum SchemaType {
    /// Apache Avro (the registry's default when `schemaType` is absent).
    #[default]
    Avro,
    /// Protocol Buffers.
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    /// The registry's name: `AVRO`, `PROTOBUF` or `JSON`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference from a schema to another registered schema (an Avro named type, a Protobuf import, a JSON
/// Schema `$ref`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The name the referring schema uses (the import path of a Protobuf file, the full name of an Avro type).
    pub name: String,
    /// The subject the referenced schema is registered under.
    pub subject: String,
    /// The version of that subject.
    pub version: i32,
}

/// A schema as the registry stores it: its type, its text and its references.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schema {
    /// The format.
    pub schema_type: SchemaType,
    /// The schema text (Avro and JSON Schema: JSON; Protobuf: `.proto` source, or a base64 `FileDescriptorProto`
    /// as Confluent's Python client registers and as the registry returns with `format=serialized`).
    pub schema: String,
    /// References to other schemas.
    pub references: Vec<SchemaReference>,
}

impl Schema {
    /// A schema without references.
    pub fn new(schema_type: SchemaType, schema: impl Into<String>) -> Self {
        Schema {
            schema_type,
            schema: schema.into(),
            references: Vec::new(),
        }
    }
}

/// A schema together with where the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The globally unique schema id, written in every record.
    pub id: u32,
    /// The subject, when the answer named one.
    pub subject: Option<String>,
    /// The version within the subject, when the answer named one.
    pub version: Option<i32>,
    /// The schema.
    pub schema: Schema,
}

/// What the registry sends back for schemas and versions.
#[derive(Deserialize)]
struct SchemaAnswer {
    id: Option<u32>,
    subject: Option<String>,
    version: Option<i32>,
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<SchemaType>,
    references: Option<Vec<SchemaReference>>,
}

#[derive(Serialize)]
struct SchemaRequest<'a> {
    schema: &'a str,
    #[serde(rename = "schemaType")]
    schema_type: SchemaType,
    references: &'a [SchemaReference],
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<i64>,
    message: Option<String>,
}

/// An HTTP error answer, before it is given a meaning by the call that got it.
struct Refusal {
    url: String,
    status: u16,
    error_code: i64,
    message: String,
}

impl Refusal {
    fn into_error(self) -> Error {
        if matches!(self.status, 401 | 403) {
            return Error::Unauthorized {
                url: self.url,
                status: self.status,
            };
        }
        Error::Registry {
            url: self.url,
            status: self.status,
            error_code: self.error_code,
            message: self.message,
        }
    }
}

#[derive(Default)]
struct Caches {
    by_id: HashMap<(u32, Option<String>), Arc<Schema>>,
    ids: HashMap<(String, Schema), u32>,
    versions: HashMap<(String, i32), Arc<RegisteredSchema>>,
    latest: HashMap<String, (Instant, Arc<RegisteredSchema>)>,
}

/// A blocking, caching Schema Registry client. Share one per application (`Arc`) across serdes.
pub struct SchemaRegistryClient {
    config: RegistryConfig,
    urls: Vec<String>,
    authorization: Option<String>,
    agent: ureq::Agent,
    caches: RwLock<Caches>,
    /// Held while a cache miss is being filled, so concurrent first records make one request, not one each.
    miss: Mutex<()>,
    requests: AtomicU64,
}

impl fmt::Debug for SchemaRegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryClient")
            .field("urls", &self.urls)
            .field(
                "basic_auth",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SchemaRegistryClient {
    /// Creates a client. Fails on a configuration that cannot work (no URL, unreadable TLS files); does not
    /// contact the registry.
    pub fn new(config: RegistryConfig) -> Result<Self> {
        if config.urls.is_empty() {
            return Err(Error::Config {
                key: "schema.registry.url".into(),
                message: "no registry URL given".into(),
            });
        }
        let mut basic_auth = config.basic_auth.clone();
        let mut urls = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let (clean, user_info) = split_user_info(url)?;
            if basic_auth.is_none() {
                basic_auth = user_info;
            }
            urls.push(clean);
        }
        let authorization = basic_auth.as_ref().map(|auth: &BasicAuth| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                auth.user,
                auth.password()
            ));
            format!("Basic {token}")
        });
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout));
        if let Some(tls) = tls_config(&config)? {
            builder = builder.tls_config(tls);
        }
        Ok(SchemaRegistryClient {
            agent: builder.build().into(),
            config,
            urls,
            authorization,
            caches: RwLock::default(),
            miss: Mutex::new(()),
            requests: AtomicU64::new(0),
        })
    }

    /// The configuration the client was made with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// HTTP requests sent so far (cache hits send none).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The schema with this id (`GET /schemas/ids/{id}`), cached.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>> {
        self.schema_by_id_with_format(id, None)
    }

    /// The schema with this id in a given `format` (`serialized` makes the registry answer Protobuf schemas as a
    /// base64 `FileDescriptorProto`), cached.
    pub fn schema_by_id_with_format(&self, id: u32, format: Option<&str>) -> Result<Arc<Schema>> {
        let key = (id, format.map(str::to_string));
        if let Some(schema) = self.read_caches().by_id.get(&key) {
            return Ok(schema.clone());
        }
        let _guard = self.lock_miss();
        if let Some(schema) = self.read_caches().by_id.get(&key) {
            return Ok(schema.clone());
        }
        let path = match format {
            Some(format) => format!("/schemas/ids/{id}?format={}", encode_component(format)),
            None => format!("/schemas/ids/{id}"),
        };
        let answer = self
            .send("GET", &path, None)
            .map_err(|refusal| match refusal {
                Ok(r) if r.status == 404 => Error::UnknownSchemaId { id, url: r.url },
                Ok(r) => r.into_error(),
                Err(e) => e,
            })?;
        let (url, answer) = answer;
        let schema = Arc::new(schema_of(&url, parse_answer(&url, &answer)?, Some(id))?);
        self.write_caches().by_id.insert(key, schema.clone());
        Ok(schema)
    }

    /// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`) and returns its id; a schema
    /// already registered there keeps its id. Cached per subject and schema.
    pub fn register(&self, subject: &str, schema: &Schema, normalize: bool) -> Result<u32> {
        self.id_for(subject, schema, normalize, true)
    }

    /// The id of `schema` under `subject` without registering it (`POST /subjects/{subject}`). Cached.
    pub fn lookup(&self, subject: &str, schema: &Schema, normalize: bool) -> Result<u32> {
        self.id_for(subject, schema, normalize, false)
    }

    fn id_for(
        &self,
        subject: &str,
        schema: &Schema,
        normalize: bool,
        register: bool,
    ) -> Result<u32> {
        let key = (subject.to_string(), schema.clone());
        if let Some(&id) = self.read_caches().ids.get(&key) {
            return Ok(id);
        }
        let _guard = self.lock_miss();
        if let Some(&id) = self.read_caches().ids.get(&key) {
            return Ok(id);
        }
        let body = serde_json::to_string(&SchemaRequest {
            schema: &schema.schema,
            schema_type: schema.schema_type,
            references: &schema.references,
        })
        .map_err(|e| Error::Config {
            key: "schema".into(),
            message: e.to_string(),
        })?;
        let path = format!(
            "/subjects/{}{}?normalize={normalize}",
            encode_component(subject),
            if register { "/versions" } else { "" }
        );
        let (url, answer) =
            self.send("POST", &path, Some(&body))
                .map_err(|refusal| match refusal {
                    Ok(r) if register && r.status == 409 => Error::IncompatibleSchema {
                        subject: subject.to_string(),
                        message: r.message,
                    },
                    Ok(r) if r.status == 422 => Error::InvalidSchema {
                        subject: subject.to_string(),
                        message: r.message,
                    },
                    Ok(r) if r.status == 404 => Error::SchemaNotFound {
                        subject: subject.to_string(),
                        url: r.url,
                        message: r.message,
                    },
                    Ok(r) => r.into_error(),
                    Err(e) => e,
                })?;
        let answer: SchemaAnswer = parse_answer(&url, &answer)?;
        let id = answer.id.ok_or_else(|| Error::BadResponse {
            url: url.clone(),
            message: "the answer has no schema id".into(),
        })?;
        let mut caches = self.write_caches();
        caches.ids.insert(key, id);
        caches
            .by_id
            .entry((id, None))
            .or_insert_with(|| Arc::new(schema.clone()));
        Ok(id)
    }

    /// Version `version` of `subject` (`GET /subjects/{subject}/versions/{version}`), cached.
    pub fn version(&self, subject: &str, version: i32) -> Result<Arc<RegisteredSchema>> {
        let key = (subject.to_string(), version);
        if let Some(found) = self.read_caches().versions.get(&key) {
            return Ok(found.clone());
        }
        let _guard = self.lock_miss();
        if let Some(found) = self.read_caches().versions.get(&key) {
            return Ok(found.clone());
        }
        let found = Arc::new(self.fetch_version(subject, &version.to_string(), None)?);
        self.write_caches().versions.insert(key, found.clone());
        Ok(found)
    }

    /// The latest version of `subject` (`GET /subjects/{subject}/versions/latest`), cached for
    /// [`RegistryConfig::latest_cache_ttl`].
    pub fn latest_version(&self, subject: &str) -> Result<Arc<RegisteredSchema>> {
        self.latest_version_with_format(subject, None)
    }

    /// The latest version of `subject` in a given `format` (see [`Self::schema_by_id_with_format`]).
    pub fn latest_version_with_format(
        &self,
        subject: &str,
        format: Option<&str>,
    ) -> Result<Arc<RegisteredSchema>> {
        let key = format!("{subject}\u{0}{}", format.unwrap_or_default());
        let fresh = |(at, found): &(Instant, Arc<RegisteredSchema>)| {
            let expired = self
                .config
                .latest_cache_ttl
                .is_some_and(|ttl| at.elapsed() >= ttl);
            (!expired).then(|| found.clone())
        };
        if let Some(found) = self.read_caches().latest.get(&key).and_then(fresh) {
            return Ok(found);
        }
        let _guard = self.lock_miss();
        if let Some(found) = self.read_caches().latest.get(&key).and_then(fresh) {
            return Ok(found);
        }
        let found = Arc::new(self.fetch_version(subject, "latest", format)?);
        self.write_caches()
            .latest
            .insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    fn fetch_version(
        &self,
        subject: &str,
        version: &str,
        format: Option<&str>,
    ) -> Result<RegisteredSchema> {
        let mut path = format!("/subjects/{}/versions/{version}", encode_component(subject));
        if let Some(format) = format {
            path.push_str("?format=");
            path.push_str(&encode_component(format));
        }
        let (url, answer) = self
            .send("GET", &path, None)
            .map_err(|refusal| match refusal {
                Ok(r) if r.status == 404 => Error::SchemaNotFound {
                    subject: subject.to_string(),
                    url: r.url,
                    message: r.message,
                },
                Ok(r) => r.into_error(),
                Err(e) => e,
            })?;
        let answer: SchemaAnswer = parse_answer(&url, &answer)?;
        let id = answer.id.ok_or_else(|| Error::BadResponse {
            url: url.clone(),
            message: "the answer has no schema id".into(),
        })?;
        let subject_answered = answer.subject.clone();
        let version = answer.version;
        let schema = schema_of(&url, answer, Some(id))?;
        Ok(RegisteredSchema {
            id,
            subject: subject_answered.or_else(|| Some(subject.to_string())),
            version,
            schema,
        })
    }

    /// All subjects (`GET /subjects`); not cached.
    pub fn subjects(&self) -> Result<Vec<String>> {
        let (url, answer) = self
            .send("GET", "/subjects", None)
            .map_err(|refusal| refusal.map_or_else(|e| e, Refusal::into_error))?;
        parse_answer(&url, &answer)
    }

    fn read_caches(&self) -> std::sync::RwLockReadGuard<'_, Caches> {
        // A panic while holding the lock cannot leave the maps half-updated (single inserts), so a poisoned lock
        // is still usable.
        self.caches.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_caches(&self) -> std::sync::RwLockWriteGuard<'_, Caches> {
        self.caches.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_miss(&self) -> std::sync::MutexGuard<'_, ()> {
        self.miss.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request to each base URL in turn until one answers. `Ok(url, body)` for a 2xx answer;
    /// `Err(Ok(refusal))` for an error answer; `Err(Err(Unreachable))` when none answered.
    #[allow(clippy::result_large_err)]
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::result::Result<(String, String), std::result::Result<Refusal, Error>> {
        let mut failures = Vec::new();
        for base in &self.urls {
            let url = format!("{base}{path}");
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = match (method, body) {
                ("POST", body) => {
                    let mut request = self
                        .agent
                        .post(&url)
                        .header("Content-Type", CONTENT_TYPE)
                        .header("Accept", ACCEPT);
                    if let Some(auth) = &self.authorization {
                        request = request.header("Authorization", auth);
                    }
                    request.send(body.unwrap_or_default())
                }
                _ => {
                    let mut request = self.agent.get(&url).header("Accept", ACCEPT);
                    if let Some(auth) = &self.authorization {
                        request = request.header("Authorization", auth);
                    }
                    request.call()
                }
            };
            let mut response = match result {
                Ok(response) => response,
                Err(e) => {
                    tracing::debug!(url = %base, error = %e, "schema registry unreachable");
                    failures.push(format!("{base}: {e}"));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = match response.body_mut().read_to_string() {
                Ok(text) => text,
                Err(e) => {
                    failures.push(format!("{base}: reading the answer failed: {e}"));
                    continue;
                }
            };
            if (200..300).contains(&status) {
                return Ok((base.clone(), text));
            }
            let parsed: Option<ErrorAnswer> = serde_json::from_str(&text).ok();
            let (error_code, message) = match parsed {
                Some(answer) => (
                    answer.error_code.unwrap_or(i64::from(status)),
                    answer.message.unwrap_or_default(),
                ),
                None => (i64::from(status), text.chars().take(200).collect()),
            };
            return Err(Ok(Refusal {
                url: base.clone(),
                status,
                error_code,
                message,
            }));
        }
        Err(Err(Error::Unreachable {
            url: self.urls.join(","),
            message: failures.join("; "),
        }))
    }
}

fn parse_answer<T: for<'de> Deserialize<'de>>(url: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::BadResponse {
        url: url.to_string(),
        message: e.to_string(),
    })
}

fn schema_of(url: &str, answer: SchemaAnswer, id: Option<u32>) -> Result<Schema> {
    let text = answer.schema.ok_or_else(|| Error::BadResponse {
        url: url.to_string(),
        message: format!(
            "the answer{} has no schema",
            id.map(|id| format!(" for id {id}")).unwrap_or_default()
        ),
    })?;
    Ok(Schema {
        schema_type: answer.schema_type.unwrap_or_default(),
        schema: text,
        references: answer.references.unwrap_or_default(),
    })
}

/// Percent-encodes a path segment or query value (everything but RFC 3986's unreserved characters).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `scheme://user:password@host/...` into the URL without user info and the credentials.
fn split_user_info(url: &str) -> Result<(String, Option<BasicAuth>)> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::Config {
            key: "schema.registry.url".into(),
            message: "a registry URL must start with http:// or https://".into(),
        });
    };
    if !matches!(scheme, "http" | "https") {
        return Err(Error::Config {
            key: "schema.registry.url".into(),
            message: format!("scheme '{scheme}' is not supported; use http:// or https://"),
        });
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let auth = BasicAuth::parse(&percent_decode(user_info))
                .map(Some)
                .map_err(|_| Error::Config {
                    key: "schema.registry.url".into(),
                    message: "user info in the URL must be 'user:password'".into(),
                })?;
            Ok((format!("{scheme}://{host}{path}"), auth))
        }
        None => Ok((url.to_string(), None)),
    }
}

fn tls_config(config: &RegistryConfig) -> Result<Option<ureq::tls::TlsConfig>> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let tls = &config.tls;
    if tls.ca_location.is_none() && tls.certificate_location.is_none() && tls.key_location.is_none()
    {
        return Ok(None);
    }
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Config {
            key: key.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let certificates = |key: &str, pem: &[u8]| -> Result<Vec<Certificate<'static>>> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(cert)) => certs.push(cert),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Config {
                        key: key.into(),
                        message: format!("bad PEM: {e}"),
                    })
                }
            }
        }
        if certs.is_empty() {
            return Err(Error::Config {
                key: key.into(),
                message: "no certificate in the PEM file".into(),
            });
        }
        Ok(certs)
    };
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &tls.ca_location {
        let certs = certificates("ssl.ca.location", &read("ssl.ca.location", ca)?)?;
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    match (&tls.certificate_location, &tls.key_location) {
        (Some(cert), Some(key)) => {
            let chain = certificates(
                "ssl.certificate.location",
                &read("ssl.certificate.location", cert)?,
            )?;
            let key_pem = read("ssl.key.location", key)?;
            let key = PrivateKey::from_pem(&key_pem).map_err(|e| Error::Config {
                key: "ssl.key.location".into(),
                message: format!("no usable private key in the PEM file: {e}"),
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config {
                key: "ssl.certificate.location".into(),
                message:
                    "a client certificate needs both ssl.certificate.location and ssl.key.location"
                        .into(),
            })
        }
    }
    Ok(Some(builder.build()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of_raw(url: &str, text: &str) -> Result<Schema> {
        schema_of(url, parse_answer(url, text)?, None)
    }

    #[test]
    fn user_info_moves_out_of_the_url() {
        let (url, auth) = split_user_info("https://bob:p%40ss@reg.example:8081/base").unwrap();
        assert_eq!(url, "https://reg.example:8081/base");
        let auth = auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.password()), ("bob", "p@ss"));
        let (url, auth) = split_user_info("http://reg:8081").unwrap();
        assert_eq!((url.as_str(), auth), ("http://reg:8081", None));
        assert!(split_user_info("ftp://x").is_err());
        assert!(split_user_info("reg:8081").is_err());
    }

    #[test]
    fn path_components_are_encoded() {
        assert_eq!(encode_component("a b/c-d.e_f~"), "a%20b%2Fc-d.e_f~");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }

    #[test]
    fn schema_answers_default_to_avro() {
        let s = schema_of_raw("u", r#"{"schema":"\"string\""}"#).unwrap();
        assert_eq!(s.schema_type, SchemaType::Avro);
        let s = schema_of_raw(
            "u",
            r#"{"schema":"x","schemaType":"PROTOBUF","references":[{"name":"a.proto","subject":"a","version":1}]}"#,
        )
        .unwrap();
        assert_eq!(s.schema_type, SchemaType::Protobuf);
        assert_eq!(s.references.len(), 1);
        assert!(schema_of_raw("u", "{}").is_err());
    }
}
