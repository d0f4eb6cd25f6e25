//! Test helpers: the mock registry (`schema_registry::mock`) started for one test, the Protobuf schema of the
//! tests, and the Python interop runner.
#![allow(dead_code)]

pub mod python;
pub mod shop_proto;

pub use schema_registry::mock::Call;
use schema_registry::mock::MockSchemaRegistry;

/// A mock registry for one test.
pub struct MockRegistry {
    inner: MockSchemaRegistry,
    /// Its base URL.
    pub url: String,
}

impl MockRegistry {
    pub fn start() -> Self {
        Self::wrap(MockSchemaRegistry::start().expect("start the mock registry"))
    }

    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::wrap(
            MockSchemaRegistry::start_with_auth(user, password).expect("start the mock registry"),
        )
    }

    fn wrap(inner: MockSchemaRegistry) -> Self {
        MockRegistry {
            url: inner.url().to_string(),
            inner,
        }
    }

    pub fn make_incompatible(&self, subject: &str) {
        self.inner.make_incompatible(subject)
    }

    pub fn calls(&self, call: Call) -> u64 {
        self.inner.calls(call)
    }

    /// Registers directly; panics when refused.
    pub fn put(&self, subject: &str, schema_type: &str, schema: &str) -> u32 {
        self.inner
            .put(subject, schema_type, schema)
            .unwrap_or_else(|| panic!("{subject} refused the schema"))
    }

    pub fn subjects(&self) -> Vec<String> {
        self.inner.subjects()
    }
}
