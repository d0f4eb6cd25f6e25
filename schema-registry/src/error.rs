//! The error type of this crate, and how it becomes a [`SerdeError`].

use state_store::{SerdeError, SerdeErrorKind};

/// Everything that can go wrong while talking to a Schema Registry or encoding and decoding the Confluent wire
/// format.
///
/// No variant ever carries a credential: registry URLs are shown without their user-info part and the basic-auth
/// password is never formatted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration key has a value that cannot be used.
    #[error("invalid schema registry configuration '{key}': {message}")]
    Config {
        /// The key (dotted, as in Confluent's clients).
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The registry could not be reached (connection refused, DNS failure, TLS handshake failure, timeout).
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable {
        /// The URL that was tried, without credentials.
        url: String,
        /// What the transport reported.
        message: String,
    },
    /// The registry refused the request's credentials (HTTP 401) or their permissions (HTTP 403).
    #[error(
        "schema registry at {url} refused the request (HTTP {status}): check basic.auth.user.info"
    )]
    Unauthorized {
        /// The registry URL, without credentials.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// No schema has this id (HTTP 404, error code 40403 on `GET /schemas/ids/{id}`).
    #[error("schema id {id} is unknown to the schema registry at {url}")]
    UnknownSchemaId {
        /// The id read from the record or asked for.
        id: u32,
        /// The registry URL, without credentials.
        url: String,
    },
    /// The subject does not exist (error code 40401), or the schema is not registered under it (40403 on lookup),
    /// or the version does not exist (40402).
    #[error("schema not found under subject '{subject}' at {url}: {message}")]
    SchemaNotFound {
        /// The subject asked for.
        subject: String,
        /// The registry URL, without credentials.
        url: String,
        /// The registry's message.
        message: String,
    },
    /// The registry rejected a new schema as incompatible with the subject's earlier versions (HTTP 409).
    #[error("schema is incompatible with earlier versions of subject '{subject}': {message}")]
    IncompatibleSchema {
        /// The subject registered under.
        subject: String,
        /// The registry's message.
        message: String,
    },
    /// The registry rejected the schema as invalid (HTTP 422, error codes 42201 and 42202).
    #[error("schema registry rejected the schema for subject '{subject}' as invalid: {message}")]
    InvalidSchema {
        /// The subject registered under.
        subject: String,
        /// The registry's message.
        message: String,
    },
    /// Any other error answer of the registry.
    #[error(
        "schema registry at {url} answered HTTP {status} (error code {error_code}): {message}"
    )]
    Registry {
        /// The registry URL, without credentials.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Confluent's `error_code`, or the HTTP status when the body had none.
        error_code: i64,
        /// The registry's message.
        message: String,
    },
    /// The registry's answer could not be understood.
    #[error("unexpected answer from the schema registry at {url}: {message}")]
    BadResponse {
        /// The registry URL, without credentials.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The data does not start with the Confluent magic byte 0.
    #[error("unknown magic byte {found:#04x}: the data is not in the Confluent wire format (which starts with 0x00)")]
    BadMagicByte {
        /// The first byte of the data.
        found: u8,
    },
    /// The data ends before the wire-format header (or a Protobuf message index) is complete.
    #[error("truncated payload: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A Protobuf message-index array is malformed or points at no message.
    #[error("bad Protobuf message index {indexes:?}: {message}")]
    BadMessageIndex {
        /// The indexes read.
        indexes: Vec<i64>,
        /// What is wrong.
        message: String,
    },
    /// The schema with this id is not of the format this serde reads.
    #[error("schema id {id} is a {found} schema, but this serde reads {expected}")]
    SchemaTypeMismatch {
        /// The schema id.
        id: u32,
        /// What this serde reads.
        expected: &'static str,
        /// What the registry holds.
        found: String,
    },
    /// A schema (given by the application or fetched from the registry) could not be parsed.
    #[error("cannot parse {format} schema{}: {message}", .id.map(|id| format!(" id {id}")).unwrap_or_default())]
    SchemaParse {
        /// The schema format.
        format: &'static str,
        /// The schema id, when it came from the registry.
        id: Option<u32>,
        /// The parser's message.
        message: String,
    },
    /// A value does not match the schema it is written with, or a payload does not decode with its writer's
    /// schema (or does not validate against it).
    #[error("{direction} {format} data does not match schema{}: {message}", .id.map(|id| format!(" id {id}")).unwrap_or_default())]
    SchemaMismatch {
        /// The schema format.
        format: &'static str,
        /// `"writing"` or `"reading"`.
        direction: &'static str,
        /// The schema id, when known.
        id: Option<u32>,
        /// The encoder's, decoder's or validator's message.
        message: String,
    },
}

impl Error {
    /// Whether a retry may succeed: the registry was unreachable or answered with a server error (5xx).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Registry { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Converts into the error type of the [`Serde`](state_store::serde::Serde) trait for values of type
    /// `type_name`: kind [`SerdeErrorKind::Other`], with this error's full message (so a deserialization handler
    /// logs or dead-letters it with the cause).
    pub fn into_serde_error(self, type_name: &'static str) -> SerdeError {
        SerdeError::new(type_name, SerdeErrorKind::Other, self.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
