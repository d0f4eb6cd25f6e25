#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, property and doc tests) and prints a total.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_build_prereqs
ensure_tansu
ensure_tls_proxy
# With Chromium there, the operator page's browser test must run rather than skip.
ensure_chromium && export STREAMS_REQUIRE_CHROMIUM="${STREAMS_REQUIRE_CHROMIUM:-1}"
ensure_python_interop
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
ignored=$(grep -o '[0-9]* ignored' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed, $ignored skipped"
exit "$status"
