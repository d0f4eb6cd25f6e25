#!/usr/bin/env bash
# Runs the benchmarks: `engine` (in-process, beside a plain Rust loop), `broker` (through tansu, beside a raw
# rdkafka consume -> produce pipe), or both when no argument is given; `suite [--quick] [options]` runs the
# benchmark suite (SimpleBenchmark's workloads through tansu, beside the raw limit and beside Quix Streams,
# which it installs into a private virtual environment; the passthrough and the count also under exactly_once_v2,
# and the restart after kill -9 of an exactly-once count; options: --no-peer, --only NAME, --out DIR, --compare OLD.json). They use the dev profile, whose engine
# crates and dependencies are optimised (see Cargo.toml), so they share the build of RocksDB with the tests;
# `cargo bench` works too, with its own build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_build_prereqs
which="${1:-all}"
if [ "$which" = suite ]; then
    shift
    ensure_tansu
    ensure_quix_venv() {
        # The peer, Quix Streams, in a virtual environment of its own under the build cache.
        local venv="${XDG_CACHE_HOME:-$HOME/.cache}/streams-rs/quix-venv"
        local py="${PYTHON:-python3}"
        if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import quixstreams' 2>/dev/null; then
            echo "Installing the peer (Quix Streams) into $venv" >&2
            if ! "$py" -m venv "$venv" >&2; then
                echo "error: cannot create a virtual environment; install the venv module with:" >&2
                echo "    sudo apt-get install -y python3-venv" >&2
                echo "or run the suite without the peer: bash scripts/bench.sh suite --no-peer" >&2
                return 1
            fi
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "quixstreams${QUIX_VERSION:+==$QUIX_VERSION}" >&2 || {
                echo "error: could not install quixstreams; run: $venv/bin/python -m pip install quixstreams" >&2
                return 1
            }
        fi
        export BENCH_QUIX_PYTHON="$venv/bin/python"
    }
    args=("$@")
    case " $* " in
        *" --no-peer "*) ;;
        *)
            if ! ensure_quix_venv; then
                # BENCH_PEER_OPTIONAL=1 (CI): run our side alone rather than fail for want of the peer.
                [ "${BENCH_PEER_OPTIONAL:-0}" = 1 ] || exit 1
                echo "warning: running the suite without the peer" >&2
                args+=(--no-peer)
            fi
            ;;
    esac
    cargo bench --profile dev -p tests --bench suite -- "${args[@]}"
    exit
fi
if [ "$which" = engine ] || [ "$which" = all ]; then
    cargo bench --profile dev -p streams-dsl --bench engine
fi
if [ "$which" = broker ] || [ "$which" = all ]; then
    ensure_tansu
    cargo bench --profile dev -p tests --bench broker
fi
