#!/usr/bin/env bash
# Builds the portier binary as it is meant to ship, and prints its path.
#
#   scripts/build-release.sh                          # the release profile
#   PORTIER_PROFILE=quick-release scripts/build-release.sh   # or another cargo profile
#
# On Linux with glibc (x86_64, aarch64) the C library is linked in (static-pie, through rustc's
# `-C target-feature=+crt-static`). Why:
# - Memory. A dynamically linked portier maps libc, libm, libgcc_s and ld.so, and the kernel maps
#   each in 64 KiB windows around every page touched: ~1.9 MiB resident of an idle process's
#   ~6.5 MiB. Linked in, only the C functions portier calls are there, and the symbol order
#   (crates/portier/build.rs) places them with the Rust code that calls them.
# - It runs on any Linux of the same architecture, whatever its glibc, and in an image with no
#   C library at all.
# What it gives up: glibc resolves host names itself (nsswitch.conf's `files` and `dns`, which
#   glibc 2.34 and later carry inside libc) but loads any other NSS module named there
#   (`mdns4`, `resolve`, `myhostname`) from the machine's glibc, which must then be the same
#   version as the one linked in. portier resolves host names only to reach ACME servers:
#   upstreams are addresses.
#
# Only the final link differs from `cargo build --release -p portier`: the flag reaches the
# binary's crate alone (cargo would pass RUSTFLAGS to proc-macros too, which cannot be static), so
# both share every dependency artifact. Elsewhere, or without glibc's static archive (Debian:
# libc6-dev), this is a plain `cargo build` and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PORTIER_PROFILE:-release}
dir=$profile
[[ "$profile" == dev ]] && dir=debug
out="${CARGO_TARGET_DIR:-target}/$dir/portier"

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu)
    libc_a=$(cc -print-file-name=libc.a 2>/dev/null || true)
    if [[ "$libc_a" == /* && -f "$libc_a" ]]; then
        cargo rustc --profile "$profile" --locked -p portier --bin portier -- \
            -C target-feature=+crt-static >&2
        realpath "$out"
        exit 0
    fi
    echo "build-release.sh: no static glibc (libc.a; Debian: apt-get install libc6-dev); linking dynamically" >&2
    ;;
*)
    echo "build-release.sh: $host links dynamically (static glibc is for *-linux-gnu)" >&2
    ;;
esac
cargo build --profile "$profile" --locked -p portier >&2
realpath "$out"
