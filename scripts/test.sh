#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian machine, then runs
# every check CI runs. Exits non-zero when anything fails.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # tests only (no fmt, clippy, fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

# --- system packages the build and the tests use -------------------------------------------
# apt_install: installs Debian packages as root, else says what to install and stops.
source scripts/lib.sh
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
# glibc's static archive: scripts/build-release.sh links it into the binary the battery runs.
[[ "$(cc -print-file-name=libc.a 2>/dev/null)" == /* ]] || missing+=(libc6-dev)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
apt_install "${missing[@]}"
if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi

# CI builds once from a clean clone: incremental caches would only take disk (1.9 GB of a
# 7 GB target directory once, when CI ran out of space).
[[ "${CI:-}" == true ]] && export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Two cores: keep test binaries from starving each other's servers of CPU.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

if ((quick == 0)); then
    echo "== cargo fmt --check" >&2
    cargo fmt --all -- --check
    echo "== cargo clippy" >&2
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

# --- ACME test servers: pebble, pebble-challtestsrv and bind9 on 127.0.0.1 --------------------
# scripts/acme-env-up installs them from Debian when missing (as root) and prints an env file;
# the ACME tests fail under CI=true when it is not sourced. Three worlds on their own ports:
# 14100 pebble's fast settings (every ACME test), 14200 certificates valid 30 s (the renewal
# test, named by PORTIER_ACME_SHORT_ENV_FILE), 14300 pebble's strict settings (bad nonces,
# validation sleeps, authorization reuse) for a second run of the issuance tests.
echo "== ACME test servers" >&2
acme_dirs=()
trap 'for d in "${acme_dirs[@]}"; do scripts/acme-env-down --purge "$d" >/dev/null 2>&1 || true; done' EXIT
acme_env=$(ACME_ENV_PORT_BASE=14100 scripts/acme-env-up)
acme_dirs+=("${acme_env%/*}")
short_env=$(ACME_ENV_PORT_BASE=14200 ACME_ENV_CERT_VALIDITY_SECS=30 scripts/acme-env-up)
acme_dirs+=("${short_env%/*}")
strict_env=$(ACME_ENV_PORT_BASE=14300 ACME_ENV_PRESET=strict scripts/acme-env-up)
acme_dirs+=("${strict_env%/*}")
# shellcheck source=/dev/null
. "$acme_env"
export PORTIER_ACME_SHORT_ENV_FILE="$short_env"

echo "== cargo test" >&2
cargo test --workspace --locked

echo "== ACME issuance against pebble's strict settings" >&2
(
    # shellcheck source=/dev/null
    . "$strict_env"
    # --workspace, as above: with -p, cargo resolves dependency features for that package alone
    # and builds a second copy of the dependencies and the binary.
    cargo test --workspace --locked --test pebble --test e2e -- \
        http01_issues dns01_over a_second_engine acme::issues
)

# --- black-box battery (tests/blackbox/): pytest over real sockets against the built binary ----
# Python 3 with venv, and testssl.sh for the TLS scan, from Debian when missing (as root); pytest,
# h2 and cryptography from PyPI into a venv under target/. See tests/blackbox/README.md.
echo "== black-box battery" >&2
bb_missing=()
command -v python3 >/dev/null 2>&1 || bb_missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || bb_missing+=(python3-venv)
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || bb_missing+=(testssl.sh)
apt_install "${bb_missing[@]}"
bb_target="${CARGO_TARGET_DIR:-target}"
bb_venv="$bb_target/blackbox-venv"
[[ -x "$bb_venv/bin/python" ]] || python3 -m venv "$bb_venv"
"$bb_venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest h2 cryptography
cargo build --workspace --bins --locked
# The battery runs against the binary as it ships: relinked with glibc inside where
# scripts/build-release.sh does that (only the binary's crate is rebuilt, a few seconds).
PORTIER_PROFILE=dev scripts/build-release.sh >/dev/null
PORTIER_BIN="${PORTIER_BIN:-$bb_target/debug/portier}" \
    "$bb_venv/bin/python" -m pytest tests/blackbox -q -p no:cacheprovider

# --- instruction-count regression check of route lookup (bench/icount-budget) ---------------
# valgrind counts, not wall time; scripts/icount.sh installs valgrind when missing (as root) and
# builds one example in release mode into the same target dir. --bless after intended changes.
echo "== route lookup instruction counts" >&2
scripts/icount.sh

if ((quick == 0)); then
    # Benches are type-checked by clippy --all-targets above; building them in release would
    # double the suite's time for nothing they do not already prove.
    echo "== fuzz targets, bounded" >&2
    scripts/fuzz.sh "${PORTIER_FUZZ_SECONDS:-20}"
fi
echo "test.sh: all checks passed" >&2
