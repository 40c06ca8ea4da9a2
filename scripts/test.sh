#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian machine, then runs
# every check CI runs. Exits non-zero when anything fails.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # tests only (no fmt, clippy, bench build, fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

# --- system packages the build and the tests use -------------------------------------------
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]]; then
        echo "test.sh: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "test.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
        exit 1
    fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi

# Two cores: keep test binaries from starving each other's servers of CPU.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

if ((quick == 0)); then
    echo "== cargo fmt --check" >&2
    cargo fmt --all -- --check
    echo "== cargo clippy" >&2
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

echo "== cargo test" >&2
cargo test --workspace --locked

# --- black-box battery (tests/blackbox/): pytest over real sockets against the built binary ----
# Python 3 with venv, and testssl.sh for the TLS scan, from Debian when missing (as root); pytest,
# h2 and cryptography from PyPI into a venv under target/. See tests/blackbox/README.md.
echo "== black-box battery" >&2
bb_missing=()
command -v python3 >/dev/null 2>&1 || bb_missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || bb_missing+=(python3-venv)
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || bb_missing+=(testssl.sh)
if ((${#bb_missing[@]})); then
    if [[ $(id -u) == 0 ]]; then
        echo "test.sh: installing ${bb_missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${bb_missing[@]}" >/dev/null
    else
        echo "test.sh: missing ${bb_missing[*]}; install them (apt-get install ${bb_missing[*]}) or run as root" >&2
        exit 1
    fi
fi
bb_target="${CARGO_TARGET_DIR:-target}"
bb_venv="$bb_target/blackbox-venv"
[[ -x "$bb_venv/bin/python" ]] || python3 -m venv "$bb_venv"
"$bb_venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest h2 cryptography
cargo build -p portier --bin portier --locked
PORTIER_BIN="${PORTIER_BIN:-$bb_target/debug/portier}" \
    "$bb_venv/bin/python" -m pytest tests/blackbox -q -p no:cacheprovider

if ((quick == 0)); then
    echo "== benches compile" >&2
    cargo bench --workspace --locked --no-run
    # The fuzz crate lives outside the workspace; running it needs nightly and cargo-fuzz. Where
    # they exist, each target runs for a bounded time; elsewhere it is at least type-checked.
    if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
        for t in $(cargo +nightly fuzz list --fuzz-dir fuzz); do
            echo "== fuzz $t (30 s)" >&2
            cargo +nightly fuzz run --fuzz-dir fuzz "$t" -- -max_total_time=30 -rss_limit_mb=2048
        done
    else
        echo "== fuzz crate check (no nightly cargo-fuzz here)" >&2
        cargo check --manifest-path fuzz/Cargo.toml --locked
    fi
fi
echo "test.sh: all checks passed" >&2
