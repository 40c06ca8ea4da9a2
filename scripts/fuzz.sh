#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, on the stable toolchain: the targets are
# libFuzzer binaries (libfuzzer-sys) built with the same coverage instrumentation cargo-fuzz uses,
# minus the sanitizer (which needs nightly). New inputs go to a scratch directory; the committed
# corpus under fuzz/corpus/<target>/ is only read. A crash fails the script and leaves the input
# in fuzz/artifacts/<target>/; keep it as fuzz/corpus/<target>/regression-<what> once fixed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      # default 20
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
targets=$(sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v '^portier-fuzz$')
CARGO_TARGET_DIR=$target_dir cargo build --manifest-path fuzz/Cargo.toml --locked --release \
    --target "$triple" $(printf -- '--bin %s ' $targets)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
    echo "== fuzz $t (${secs} s)" >&2
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
    "$target_dir/$triple/release/$t" "$scratch/$t" "fuzz/corpus/$t" \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 2>&1 | tail -n 4
done
