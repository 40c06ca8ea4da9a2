#!/usr/bin/env bash
# Writes crates/portier/symbol-order.txt: the functions a release portier runs to serve requests
# (HTTP/1.1, HTTP/2, TLS), hottest first, then those the admin API and a reload add, then those
# only start-up runs. crates/portier/build.rs hands the file to the linker, which places them side
# by side, so the pages the process touches (and keeps resident) are few. See build.rs for why.
# Serving comes apart from reloading because portier gives back the binary's pages after start-up
# and after each reload (crates/portier/src/resident.rs): what serving alone touches then decides
# what stays resident, and code a reload ran, interleaved with it, would come back with it.
#
#   bench/symbol-order.sh            # build, profile under callgrind, write the file, relink
#   bench/symbol-order.sh --check [BIN]
#                                    # how many listed functions BIN (default target/release/
#                                    # portier) still has; exits 1 under 80% or when one of
#                                    # the 200 hottest is missing; at 99% with all of those,
#                                    # records the current Cargo.lock and toolchain as the
#                                    # file's (symbol-order.stamp), which build.rs checks
#
# The binary profiled is scripts/build-release.sh's, with glibc linked in where it can be, so the
# C functions portier calls (malloc, memcpy, ...) are ordered with the rest; a dynamically linked
# build simply lacks those names.
# The names carry hashes that change with the toolchain and with dependency versions. Regenerate
# after `cargo update` or a toolchain upgrade, and when --check reports a low share.
# Needs: valgrind, nginx, h2load (nghttp2-client), wrk, curl, openssl, python3, binutils (nm).
# Ports 18101, 18180, 18543, 18901 on 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ORDER=$ROOT/crates/portier/symbol-order.txt

coverage() { python3 "$HERE/symbol_order.py" check "$1" "$ORDER"; } # exits 1 under 80% or a hot name missing

if [ "${1:-}" = "--check" ]; then
    coverage "${2:-$ROOT/target/release/portier}"
    exit
fi

cd "$ROOT"
BIN=$("$ROOT/scripts/build-release.sh")   # the binary as shipped: glibc linked in, where it can be
D=$(mktemp -d /tmp/portier-order.XXXX)
. "$HERE/lib.sh"
P=
start_upstream
trap 'kill $UP 2>/dev/null || true; [ -z "$P" ] || kill $P 2>/dev/null || true' EXIT
write_route

# Three profiles: start-up until the first request is answered (dumped to out.1), serving requests
# (out.2), then the admin API and a reload (out, at exit).
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$D/out \
    "$BIN" serve --config $D/manifests --http-listen 127.0.0.1:18180 --https-listen 127.0.0.1:18543 \
    --admin-listen 127.0.0.1:18901 --state-dir $D/state --configmap bench/portier \
    --worker-threads 1 --access-log off > $D/portier.log 2>&1 & P=$!
wait_up 600
callgrind_control -d $P >/dev/null
H=':authority: bench.example.test'
h2load --h1 -n 2000 -c 16 -t 1 -H "$H" http://127.0.0.1:18180/api/bench | grep 'status codes'
h2load -n 2000 -c 4 -m 10 -t 1 -H "$H" https://127.0.0.1:18543/api/bench | grep 'status codes'
h2load --h1 -n 500 -c 4 -t 1 -H "$H" https://127.0.0.1:18543/api/bench | grep 'status codes'
h2load -n 500 -c 4 -m 10 -t 1 -H "$H" http://127.0.0.1:18180/api/bench | grep 'status codes'
# Clients that stop with requests in flight (h2load -D, wrk), and wrk's IP address as SNI: code
# the runs above never reach. It ran anyway in the peers' h1-tls and h2-tls, where each of its
# functions, outside the order, was alone in a 64 KiB block the kernel maps around a page fault:
# 0.5-1 MiB more resident.
h2load -D 2 -c 4 -m 10 -t 1 -H "$H" https://127.0.0.1:18543/api/bench | grep 'status codes'
h2load --h1 -D 2 -c 4 -t 1 -H "$H" http://127.0.0.1:18180/api/bench | grep 'status codes'
wrk -t1 -c8 -d2s -H 'Host: bench.example.test' https://127.0.0.1:18543/api/bench | grep -E "requests in|Non-2xx"
wrk -t1 -c8 -d2s -H 'Host: bench.example.test' http://127.0.0.1:18180/api/bench | grep -E "requests in|Non-2xx"
curl -s -o /dev/null -H 'host: unknown.example.test' http://127.0.0.1:18180/
# A client that names the host in SNI, as browsers and most clients do (h2load to an address
# sends none), over HTTP/2 and HTTP/1.1, closing its connection after the response.
for v in --http2 --http1.1; do
    curl -sk $v --resolve bench.example.test:18543:127.0.0.1 \
        -o /dev/null https://bench.example.test:18543/api/bench -o /dev/null https://bench.example.test:18543/api/bench
done
callgrind_control -d $P >/dev/null
for p in /metrics /healthz /readyz /api/v1/routes /api/v1/diagnostics /api/v1/certificates; do
    curl -s -o /dev/null http://127.0.0.1:18901$p
done
echo "# touched by bench/symbol-order.sh" >> $D/manifests/bench.yaml   # a hot reload
sleep 2
curl -s -o /dev/null -H 'host: bench.example.test' http://127.0.0.1:18180/api/x
kill -TERM $P; wait $P || true; P=

python3 "$HERE/symbol_order.py" write "$BIN" "$ORDER" "$D/out.2" "$D/out" "$D/out.1"
"$ROOT/scripts/build-release.sh" >/dev/null
coverage "$BIN"
rm -rf "$D"
