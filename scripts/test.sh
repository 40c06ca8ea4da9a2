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
