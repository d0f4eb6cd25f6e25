#!/usr/bin/env bash
# Runs the engine benchmark. It uses the dev profile, whose engine crates and dependencies are optimised (see
# Cargo.toml), so it shares the build of RocksDB with the tests. `cargo bench` works too, with its own build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_build_prereqs
exec cargo bench --profile dev -p streams-dsl --bench engine "$@"
