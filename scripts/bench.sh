#!/usr/bin/env bash
# Runs the benchmarks: `engine` (in-process, beside a plain Rust loop), `broker` (through tansu, beside a raw
# rdkafka consume -> produce pipe), or both when no argument is given. They use the dev profile, whose engine
# crates and dependencies are optimised (see Cargo.toml), so they share the build of RocksDB with the tests;
# `cargo bench` works too, with its own build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_build_prereqs
which="${1:-all}"
if [ "$which" = engine ] || [ "$which" = all ]; then
    cargo bench --profile dev -p streams-dsl --bench engine
fi
if [ "$which" = broker ] || [ "$which" = all ]; then
    ensure_tansu
    cargo bench --profile dev -p tests --bench broker
fi
