#!/usr/bin/env bash
# Runs the main demo: the US-shareholders application (use case 1) on the embedded broker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_build_prereqs
# The dev profile builds dependencies optimised and shares them with the test build.
exec cargo run -p examples --bin us_shareholders -- "$@"
