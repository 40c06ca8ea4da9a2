#!/usr/bin/env bash
# Which runtime shape serves more requests per CPU on several cores. portier's own: one process,
# `--worker-threads N`, each worker thread with a current-thread runtime and a listening socket
# of its own (SO_REUSEPORT). Against the ideal of that shape, N processes with `--worker-threads 1`
# sharing nothing, each on its own port, the load split evenly; and, given BASE (a build up to
# 2b68a81, which ran tokio's work-stealing multi-thread runtime for N > 1), that shape too. nginx
# with N workers for reference.
# Fixed offered load (RATE req/s over 64 HTTP/1.1 keep-alive connections, two h2load), nothing
# pinned; proxy CPU per request from /proc (all processes, all threads). Interleaved rounds.
# CHURN=1: instead a new connection per request (`Connection: close`, two wrk of 16 connections,
# as fast as they go): what accepting costs in each shape.
#
#   bench/runtime-shape.sh [PORTIER_BIN]      # default target/release/portier
#   RATE=20000 DUR=8 ROUNDS=3 N=2 BASE=/path/to/older/portier bench/runtime-shape.sh ...
#   CHURN=1 ... bench/runtime-shape.sh ...
#
# Needs: nginx, h2load (nghttp2-client), wrk (CHURN), curl, openssl, python3. Ports 18101 (upstream),
# 18180/18280 (proxies; TLS 18543/18643 unused) on 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}
RATE=${RATE:-20000}; DUR=${DUR:-8}; ROUNDS=${ROUNDS:-3}; N=${N:-2}
D=$(mktemp -d /tmp/portier-shape.XXXX)
. "$HERE/lib.sh"
setup_comparison
PIDS=()
trap 'kill $UP "${PIDS[@]}" 2>/dev/null || true' EXIT
sed -e 's/master_process off; worker_processes 1;/worker_processes '"$N"';/' "$D/px.conf" > "$D/px-n.conf"

ticks() { # pids... -> utime+stime of them and their children
    local t=0 p
    for p in "$@" $(pgrep -P "$(echo "$@" | tr ' ' ',')" || true); do
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
    done
    echo $t
}
load() { # seconds port port: two h2load, each half the rate on 32 connections
    local a
    if [ -n "${CHURN:-}" ]; then
        wrk -t1 -c16 -d"$1"s -H 'Host: bench.example.test' -H 'Connection: close' \
            "http://127.0.0.1:$2/api/bench" > "$D/l1.out" & a=$!
        wrk -t1 -c16 -d"$1"s -H 'Host: bench.example.test' -H 'Connection: close' \
            "http://127.0.0.1:$3/api/bench" > "$D/l2.out"
        wait $a
        return
    fi
    h2load --h1 -t1 -c32 --rps=$(( RATE / 64 )) -D "$1" -H ':authority: bench.example.test' \
        "http://127.0.0.1:$2/api/bench" > "$D/l1.out" & a=$!
    h2load --h1 -t1 -c32 --rps=$(( RATE / 64 )) -D "$1" -H ':authority: bench.example.test' \
        "http://127.0.0.1:$3/api/bench" > "$D/l2.out"
    wait $a
}
serve() { # port workers [binary] -> pid
    "${3:-$BIN}" serve --config "$D/manifests" --http-listen "127.0.0.1:$1" --https-listen "127.0.0.1:$(( $1 + 363 ))" \
        --admin-listen 127.0.0.1:0 --state-dir "$D/state$1" --configmap bench/portier \
        --worker-threads "$2" --access-log off > "$D/portier-$1.log" 2>&1 &
    echo $!
}
measure() { # name port port pids...
    local name=$1 p1=$2 p2=$3; shift 3
    wait_up 200 "$p1"; wait_up 200 "$p2"; load 2 "$p1" "$p2"
    local t0 t1 n
    t0=$(ticks "$@"); load "$DUR" "$p1" "$p2"; t1=$(ticks "$@")
    if [ -n "${CHURN:-}" ]; then
        n=$(cat "$D/l1.out" "$D/l2.out" | awk '/requests in/ {s += $1} END {print s}')
        echo "$name: $(( (t1 - t0) * 10000000 / n ))e-3 us/request ($n requests, one connection each)"
    else
        n=$(cat "$D/l1.out" "$D/l2.out" | awk '/^requests:/ {s += $8} END {print s}')
        echo "$name: $(( (t1 - t0) * 10000000 / n ))e-3 us/request ($n requests, mean latency $(awk '/time for request:/ {print $6}' "$D/l1.out"))"
    fi
    kill "$@"; wait "$@" 2>/dev/null || true
}
for r in $(seq "$ROUNDS"); do
    echo "== round $r (N=$N, $RATE req/s)"
    P=$(serve 18180 "$N"); PIDS=($P); measure "portier, $N worker threads" 18180 18180 $P
    if [ -n "${BASE:-}" ]; then
        P=$(serve 18180 "$N" "$BASE"); PIDS=($P); measure "BASE, multi-thread runtime, $N workers" 18180 18180 $P
    fi
    PIDS=(); for i in $(seq "$N"); do PIDS+=("$(serve $(( 18080 + 100 * i )) 1)"); done
    measure "portier, $N current-thread processes" 18180 18280 "${PIDS[@]}"
    nginx -c "$D/px-n.conf" -p "$D" & P=$!; PIDS=($P); measure "nginx, $N workers" 18180 18180 $P
done
