//! Runs `tests/py/interop.py` (Confluent's Python serializers) with an interpreter that has `confluent-kafka`
//! and its Avro, Protobuf and JSON Schema extras.
//!
//! The interpreter is `$STREAMS_INTEROP_PYTHON`, else the venv `scripts/env.sh` makes
//! (`$XDG_CACHE_HOME/streams-rs/py-interop`, by default under `~/.cache`), else `python3`. When none can import
//! the serializers the tests print a SKIP line and pass, unless `STREAMS_REQUIRE_PYTHON` is set.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const IMPORTS: &str = "import confluent_kafka.schema_registry.avro, \
    confluent_kafka.schema_registry.protobuf, confluent_kafka.schema_registry.json_schema, fastavro, \
    jsonschema, google.protobuf";

/// An interpreter that can run the interop script.
pub struct Python {
    interpreter: PathBuf,
}

fn candidates() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(p) = std::env::var("STREAMS_INTEROP_PYTHON") {
        if !p.is_empty() {
            found.push(PathBuf::from(p));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        found.push(cache.join("streams-rs/py-interop/bin/python"));
    }
    found.push(PathBuf::from("python3"));
    found
}

impl Python {
    /// The interpreter, or `None` after printing why the test is skipped (panics instead when
    /// `STREAMS_REQUIRE_PYTHON` is set).
    pub fn find(test: &str) -> Option<Python> {
        for interpreter in candidates() {
            let ok = Command::new(&interpreter)
                .args(["-c", IMPORTS])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Some(Python { interpreter });
            }
        }
        let why =
            "no Python with confluent-kafka[avro,json,protobuf] (run `source scripts/env.sh && \
                   ensure_python_interop`, or set STREAMS_INTEROP_PYTHON)";
        if std::env::var_os("STREAMS_REQUIRE_PYTHON").is_some() {
            panic!("{test}: {why}, and STREAMS_REQUIRE_PYTHON is set");
        }
        println!("SKIP {test}: {why}");
        eprintln!("SKIP {test}: {why}");
        None
    }

    /// Runs the interop script with `request` (JSON) on its standard input and returns its JSON answer; panics
    /// when the script fails.
    pub fn run(&self, request: &Value) -> Value {
        self.try_run(request)
            .unwrap_or_else(|e| panic!("interop script failed: {e}"))
    }

    /// Runs the interop script; `Err` with its standard error when it fails.
    pub fn try_run(&self, request: &Value) -> Result<Value, String> {
        let script = manifest_dir().join("tests/py/interop.py");
        let mut child = Command::new(&self.interpreter)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.interpreter.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(request.to_string().as_bytes())
                .map_err(|e| format!("writing the request: {e}"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| format!("waiting for the script: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{}:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "no JSON answer ({e}):\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The package's directory, as cargo gives it when it runs the binary: a build cache shared between checkouts
/// can hand out a binary compiled in another checkout, whose compile-time path would point there.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
