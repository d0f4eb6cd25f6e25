//! The error type of the engine.

use state_store::{SerdeError, StoreError};

/// How the runtime should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The application cannot go on; it moves to the `Error` state.
    Fatal,
    /// A transient condition; retrying the same operation can succeed.
    Retriable,
    /// The task now belongs to another instance; drop it and rejoin.
    TaskMigrated,
}

/// Why a connection to the cluster failed (see [`StreamsError::Connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// The broker's TLS certificate could not be verified against the configured CA (`ssl.ca.location`,
    /// `ssl.ca.pem`), or it does not name the broker's address.
    Certificate,
    /// The TLS handshake failed for another reason: the broker refused the client certificate, the listener does
    /// not speak TLS, or the client's key or certificate cannot be used.
    Tls,
    /// The broker refused the SASL mechanism or credentials, or an OAUTHBEARER token could not be obtained.
    Authentication,
    /// No broker answered within the time allowed.
    Unreachable,
}

/// Errors of the engine: topology construction, processing, state and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The topology is malformed; the message says where.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
    /// Two nodes, stores or sources share a name.
    #[error(
        "invalid topology: the name '{0}' is already used; give each node and store a unique name"
    )]
    DuplicateName(String),
    /// A node refers to a node that does not exist (yet).
    #[error("invalid topology: unknown node '{name}' (add a node before naming it as a parent)")]
    UnknownNode {
        /// The missing node.
        name: String,
    },
    /// A node's output type does not match what its child accepts.
    #[error(
        "invalid topology: '{parent}' forwards ({produced}) but its child '{child}' accepts ({expected})"
    )]
    TypeMismatch {
        /// Upstream node.
        parent: String,
        /// Downstream node.
        child: String,
        /// Key and value types the parent forwards.
        produced: String,
        /// Key and value types the child accepts.
        expected: String,
    },
    /// A processor asked for a store that does not exist or is not connected to it.
    #[error("processor '{processor}' cannot access store '{store}': {reason}")]
    StoreAccess {
        /// The processor.
        processor: String,
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
    /// No store of that name exists (or none of its tasks runs here).
    #[error("unknown store '{store}'{hint}")]
    UnknownStore {
        /// The store asked for.
        store: String,
        /// Known store names, formatted for the message.
        hint: String,
    },
    /// A store cannot be queried right now: the instance is not running, or is rebalancing or restoring.
    #[error("store '{store}' cannot be queried now: {reason}")]
    StoreUnavailable {
        /// The store.
        store: String,
        /// Why, and when to retry.
        reason: String,
    },
    /// A stream-table join was given a grace period but its table is not versioned (Kafka: "KTable must be
    /// versioned to use a grace period in a stream table join."): buffered records are joined with the table as
    /// of their time, which only a versioned table can answer.
    #[error(
        "stream-table join '{join}': the table must be versioned to use a grace period (materialize it with \
         Materialized::as_versioned_store)"
    )]
    GracePeriodNeedsVersionedTable {
        /// The join.
        join: String,
    },
    /// A stream-table join's grace period is longer than its versioned table's history retention (Kafka:
    /// "History retention must be at least grace period."): the table could not answer for the oldest
    /// buffered records.
    #[error(
        "stream-table join '{join}': the table's history retention ({history_retention_ms} ms) must be at least \
         the grace period ({grace_ms} ms)"
    )]
    GracePeriodExceedsHistoryRetention {
        /// The join.
        join: String,
        /// The grace period.
        grace_ms: i64,
        /// The table store's history retention.
        history_retention_ms: i64,
    },
    /// A store was asked for with other key or value types than it holds.
    #[error("store '{store}' holds <{actual}> but <{requested}> was requested")]
    StoreTypeMismatch {
        /// The store.
        store: String,
        /// Its key and value types.
        actual: String,
        /// What was asked for.
        requested: String,
    },
    /// An operation needs a serde that was neither given nor known for the type.
    #[error("{operation} needs a {role} serde for type {type_name}; pass one explicitly (for example {hint})")]
    MissingSerde {
        /// The operation or node needing it.
        operation: String,
        /// "key" or "value".
        role: &'static str,
        /// The Rust type.
        type_name: &'static str,
        /// How to provide it.
        hint: &'static str,
    },
    /// A record read from a topic could not be deserialized.
    #[error(
        "cannot deserialize the {role} of the record at {topic}-{partition}@{offset}: {source}"
    )]
    Deserialization {
        /// Source topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// "key" or "value".
        role: &'static str,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },
    /// A record could not be serialized for a topic.
    #[error("cannot serialize the {role} of a record for topic '{topic}': {source}")]
    Serialization {
        /// Destination topic.
        topic: String,
        /// "key" or "value".
        role: &'static str,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },
    /// A timestamp extractor returned a negative timestamp.
    #[error("invalid timestamp {timestamp} for the record at {topic}-{partition}@{offset}: timestamps must be >= 0")]
    InvalidTimestamp {
        /// Source topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// What was extracted.
        timestamp: i64,
    },
    /// A state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another instance of the application (in this process or another) holds the state directory.
    #[error(
        "the state directory {path} is in use by another instance of this application (in this or another \
         process); give each instance its own state.dir"
    )]
    StateDirLocked {
        /// The application's state directory.
        path: String,
    },
    /// A processor reported an error.
    #[error("processor '{node}' failed: {message}")]
    Processor {
        /// The node (empty when raised outside a node).
        node: String,
        /// What happened.
        message: String,
    },
    /// The group is rebalancing or this member left it: the task may belong to another instance now.
    #[error("task migrated: {0}")]
    TaskMigrated(String),
    /// Under exactly-once: the thread's transaction had to be aborted (a record could not be sent or delivered,
    /// or the broker refused a transactional request). The thread's tasks go back to their last commit and
    /// process again from there.
    #[error("transaction aborted: {0}")]
    TransactionAborted(String),
    /// Under exactly-once: another producer with this thread's transactional id, or the group's newer
    /// generation, fenced the thread's producer. Its tasks are closed without committing and the producer is
    /// created again.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// A topic the topology uses is unknown to the broker or the test driver.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// Topics that must be co-partitioned (the inputs of a join) have different partition counts.
    #[error(
        "topics joined together must have the same number of partitions, but they have: {}; give them equal partition \
         counts (or repartition one side with a fixed count)",
        describe_counts(topics)
    )]
    CopartitionMismatch {
        /// Each topic of the group (internal ones by full name) with its partition count.
        topics: Vec<(String, i32)>,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration '{key}': {message}")]
    Config {
        /// The configuration key.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The cluster could not be reached, or refused this client's TLS handshake or SASL credentials. The message
    /// names the broker and the setting to check; it never holds a secret.
    #[error("cannot connect to the broker at {broker}: {detail}; check {setting}")]
    Connection {
        /// What went wrong.
        failure: ConnectionFailure,
        /// The broker (`host:port`) the failure was seen on, or the bootstrap servers when none answered.
        broker: String,
        /// The settings to check, e.g. `ssl.ca.location` or `sasl.username and sasl.password`.
        setting: String,
        /// librdkafka's description of the failure, with secrets removed.
        detail: String,
    },
    /// Application code (a processor, a punctuation, a serde, a timestamp extractor) panicked on a stream thread.
    /// The panic is caught and the thread stops as it does on a returned error: the uncaught error handler decides
    /// whether the instance moves to `Error` or the thread is replaced. A panic of a processor or a punctuation is
    /// given to the processing exception handler first, which may skip the record instead.
    #[error("{}", describe_panic(thread, task.as_ref(), processor.as_deref(), message))]
    Panic {
        /// The stream thread.
        thread: String,
        /// The task that was running, when known.
        task: Option<crate::processor::TaskId>,
        /// The processor node that was running, when known.
        processor: Option<String>,
        /// The panic's message.
        message: String,
    },
    /// An I/O operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn describe_panic(
    thread: &str,
    task: Option<&crate::processor::TaskId>,
    processor: Option<&str>,
    message: &str,
) -> String {
    let mut s = format!("stream thread '{thread}' panicked");
    if let Some(t) = task {
        s.push_str(&format!(" in task {t}"));
    }
    if let Some(p) = processor {
        s.push_str(&format!(" at processor '{p}'"));
    }
    s.push_str(&format!(": {message}"));
    s
}

/// The message of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

fn describe_counts(topics: &[(String, i32)]) -> String {
    topics
        .iter()
        .map(|(t, n)| format!("{t} ({n} partitions)"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl StreamsError {
    /// An error raised by application code in a processor.
    pub fn processor(message: impl Into<String>) -> Self {
        StreamsError::Processor {
            node: String::new(),
            message: message.into(),
        }
    }

    /// How the runtime treats this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            StreamsError::UnknownTopic(_) => ErrorClass::Retriable,
            StreamsError::TaskMigrated(_)
            | StreamsError::TransactionAborted(_)
            | StreamsError::ProducerFenced(_) => ErrorClass::TaskMigrated,
            _ => ErrorClass::Fatal,
        }
    }
}
