//! Configuration of the registry client and of the serdes: typed fields that also accept Confluent's dotted keys.
//!
//! ```
//! use schema_registry::{RegistryConfig, SerdeConfig, SubjectNameStrategy};
//!
//! let registry = RegistryConfig::from_pairs([
//!     ("schema.registry.url", "https://registry.example:8081"),
//!     ("basic.auth.user.info", "svc:s3cret"),
//! ])
//! .unwrap();
//! assert_eq!(registry.urls, vec!["https://registry.example:8081".to_string()]);
//! assert!(!format!("{registry:?}").contains("s3cret"));
//!
//! let serde = SerdeConfig::from_pairs([
//!     ("auto.register.schemas", "false"),
//!     ("use.latest.version", "true"),
//!     ("value.subject.name.strategy", "io.confluent.kafka.serializers.subject.RecordNameStrategy"),
//! ])
//! .unwrap();
//! assert!(!serde.auto_register_schemas);
//! assert_eq!(serde.value_subject_name_strategy, SubjectNameStrategy::RecordName);
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::subject::SubjectNameStrategy;

/// Basic-auth credentials (`basic.auth.user.info`, `user:password`). The password is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub user: String,
    password: String,
}

impl BasicAuth {
    /// Credentials from a user name and a password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        BasicAuth {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Parses Confluent's `user:password` form (the password may contain `:`).
    pub fn parse(user_info: &str) -> Result<Self> {
        match user_info.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(BasicAuth::new(user, password)),
            _ => Err(Error::Config {
                key: "basic.auth.user.info".into(),
                message: "expected 'user:password'".into(),
            }),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings for `https://` registry URLs. Without any, the system's usual web roots are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust instead of the built-in web roots (`ssl.ca.location`).
    pub ca_location: Option<PathBuf>,
    /// PEM file of the client certificate chain, for mutual TLS (`ssl.certificate.location`).
    pub certificate_location: Option<PathBuf>,
    /// PEM file of the client's private key (`ssl.key.location`).
    pub key_location: Option<PathBuf>,
}

/// How to reach a Schema Registry.
///
/// Every field has a Confluent key, accepted by [`RegistryConfig::set`] with or without the `schema.registry.`
/// prefix: `schema.registry.url` (comma-separated; tried in order while unreachable), `basic.auth.user.info`,
/// `basic.auth.credentials.source` (`USER_INFO` or `URL`), `ssl.ca.location`, `ssl.certificate.location`,
/// `ssl.key.location`, `request.timeout.ms`, `latest.cache.ttl.sec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URLs of the registry (`schema.registry.url`).
    pub urls: Vec<String>,
    /// Basic-auth credentials (`basic.auth.user.info`).
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Time limit of one HTTP request, connection included (`request.timeout.ms`, default 30 s).
    pub request_timeout: Duration,
    /// How long the latest version of a subject is cached (`latest.cache.ttl.sec`; `None`, from `-1`, the
    /// default: as long as the client lives).
    pub latest_cache_ttl: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            urls: Vec::new(),
            basic_auth: None,
            tls: TlsConfig::default(),
            request_timeout: Duration::from_secs(30),
            latest_cache_ttl: None,
        }
    }
}

impl RegistryConfig {
    /// A configuration for the registry at `url` (comma-separated for several).
    pub fn new(url: &str) -> Self {
        RegistryConfig {
            urls: split_urls(url),
            ..RegistryConfig::default()
        }
    }

    /// Sets basic-auth credentials.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some(BasicAuth::new(user, password));
        self
    }

    /// Builds a configuration from dotted keys.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut config = RegistryConfig::default();
        for (key, value) in pairs {
            config.set(key.as_ref(), value.as_ref())?;
        }
        Ok(config)
    }

    /// Sets one field by its Confluent key. Unknown keys are an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let short = key.strip_prefix("schema.registry.").unwrap_or(key);
        match (key, short) {
            ("schema.registry.url", _) | (_, "url") => self.urls = split_urls(value),
            (_, "basic.auth.user.info") => {
                self.basic_auth = if value.is_empty() {
                    None
                } else {
                    Some(BasicAuth::parse(value)?)
                }
            }
            (_, "basic.auth.credentials.source") => {
                if !matches!(value, "USER_INFO" | "URL") {
                    return Err(Error::Config {
                        key: key.into(),
                        message: format!(
                            "'{value}' is not supported; use USER_INFO (basic.auth.user.info) or URL \
                             (credentials in schema.registry.url)"
                        ),
                    });
                }
            }
            (_, "ssl.ca.location") => self.tls.ca_location = non_empty_path(value),
            (_, "ssl.certificate.location") => {
                self.tls.certificate_location = non_empty_path(value)
            }
            (_, "ssl.key.location") => self.tls.key_location = non_empty_path(value),
            (_, "request.timeout.ms") => {
                self.request_timeout = Duration::from_millis(parse_number(key, value)?)
            }
            (_, "latest.cache.ttl.sec") => {
                let secs: i64 = value.trim().parse().map_err(|_| Error::Config {
                    key: key.into(),
                    message: format!("'{value}' is not a number of seconds (-1 for no expiry)"),
                })?;
                self.latest_cache_ttl = u64::try_from(secs).ok().map(Duration::from_secs);
            }
            _ => {
                return Err(Error::Config {
                    key: key.into(),
                    message: "unknown schema registry client key".into(),
                })
            }
        }
        Ok(())
    }
}

/// How a serde finds and registers its schema.
///
/// Keys accepted by [`SerdeConfig::set`]: `auto.register.schemas`, `use.latest.version`, `normalize.schemas`,
/// `key.subject.name.strategy`, `value.subject.name.strategy` (also `subject.name.strategy` for both), and
/// `json.fail.invalid.schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerdeConfig {
    /// Register the writer schema when it is not yet registered (`auto.register.schemas`, default `true`).
    /// When `false`, the schema must already be registered under the subject (looked up with
    /// `POST /subjects/{subject}`).
    pub auto_register_schemas: bool,
    /// Write with the id of the subject's latest version instead of registering or looking up the serde's own
    /// schema (`use.latest.version`, default `false`). The latest schema is also the one values are encoded with.
    pub use_latest_version: bool,
    /// Ask the registry to normalize schemas when registering and looking up (`normalize.schemas`).
    pub normalize_schemas: bool,
    /// Subject of keys (`key.subject.name.strategy`, default [`SubjectNameStrategy::TopicName`]).
    pub key_subject_name_strategy: SubjectNameStrategy,
    /// Subject of values (`value.subject.name.strategy`, default [`SubjectNameStrategy::TopicName`]).
    pub value_subject_name_strategy: SubjectNameStrategy,
    /// JSON Schema serdes validate values when writing and reading (`json.fail.invalid.schema`, default
    /// `true`).
    pub json_fail_invalid_schema: bool,
}

impl Default for SerdeConfig {
    fn default() -> Self {
        SerdeConfig {
            auto_register_schemas: true,
            use_latest_version: false,
            normalize_schemas: false,
            key_subject_name_strategy: SubjectNameStrategy::TopicName,
            value_subject_name_strategy: SubjectNameStrategy::TopicName,
            json_fail_invalid_schema: true,
        }
    }
}

impl SerdeConfig {
    /// Builds a configuration from dotted keys.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut config = SerdeConfig::default();
        for (key, value) in pairs {
            config.set(key.as_ref(), value.as_ref())?;
        }
        Ok(config)
    }

    /// Sets one field by its Confluent key. Unknown keys are an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "auto.register.schemas" => self.auto_register_schemas = parse_bool(key, value)?,
            "use.latest.version" => self.use_latest_version = parse_bool(key, value)?,
            "normalize.schemas" => self.normalize_schemas = parse_bool(key, value)?,
            "json.fail.invalid.schema" => self.json_fail_invalid_schema = parse_bool(key, value)?,
            "key.subject.name.strategy" => {
                self.key_subject_name_strategy = SubjectNameStrategy::parse(key, value)?
            }
            "value.subject.name.strategy" => {
                self.value_subject_name_strategy = SubjectNameStrategy::parse(key, value)?
            }
            "subject.name.strategy" => {
                let strategy = SubjectNameStrategy::parse(key, value)?;
                self.key_subject_name_strategy = strategy;
                self.value_subject_name_strategy = strategy;
            }
            _ => {
                return Err(Error::Config {
                    key: key.into(),
                    message: "unknown serde key".into(),
                })
            }
        }
        Ok(())
    }

    /// The strategy for keys (`is_key`) or values.
    pub fn subject_name_strategy(&self, is_key: bool) -> SubjectNameStrategy {
        if is_key {
            self.key_subject_name_strategy
        } else {
            self.value_subject_name_strategy
        }
    }
}

fn split_urls(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_string())
        .collect()
}

fn non_empty_path(value: &str) -> Option<PathBuf> {
    (!value.trim().is_empty()).then(|| PathBuf::from(value.trim()))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config {
            key: key.into(),
            message: format!("'{value}' is not a boolean (true or false)"),
        }),
    }
}

fn parse_number(key: &str, value: &str) -> Result<u64> {
    value.trim().parse().map_err(|_| Error::Config {
        key: key.into(),
        message: format!("'{value}' is not a non-negative integer"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_fill_typed_fields() {
        let c = RegistryConfig::from_pairs([
            ("schema.registry.url", "http://a:1/, http://b:2"),
            ("schema.registry.basic.auth.user.info", "u:p:with:colons"),
            ("basic.auth.credentials.source", "USER_INFO"),
            ("ssl.ca.location", "/tmp/ca.pem"),
            ("request.timeout.ms", "1500"),
            ("latest.cache.ttl.sec", "60"),
        ])
        .unwrap();
        assert_eq!(c.urls, ["http://a:1", "http://b:2"]);
        let auth = c.basic_auth.as_ref().unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password()),
            ("u", "p:with:colons")
        );
        assert_eq!(c.tls.ca_location, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.latest_cache_ttl, Some(Duration::from_secs(60)));
        assert!(!format!("{c:?}").contains("with:colons"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = RegistryConfig::from_pairs([("basic.auth.user.info", "nocolon")]).unwrap_err();
        assert!(err.to_string().contains("basic.auth.user.info"));
        assert!(!err.to_string().contains("nocolon"));
        let err = RegistryConfig::from_pairs([("schema.registry.bogus", "1")]).unwrap_err();
        assert!(err.to_string().contains("schema.registry.bogus"));
        let err = SerdeConfig::from_pairs([("auto.register.schemas", "yes")]).unwrap_err();
        assert!(err.to_string().contains("auto.register.schemas"));
        let err = SerdeConfig::from_pairs([("subject.name.strategy", "Nope")]).unwrap_err();
        assert!(err.to_string().contains("subject.name.strategy"));
    }
}
