#!/usr/bin/env bash
# Where a proxy's resident memory is: VmHWM, RssAnon and RssFile, and Rss by mapping, idle and
# after load (h1-rate's: 64 connections at RATE req/s for SECS s; then 100,000 HTTP/1.1 requests
# over TLS on 64 connections; then 100,000 HTTP/2 requests over TLS on 16 connections, 10 streams
# each), nginx and portier one after the other, one route and one worker each. For portier also
# which sections of its binary are resident, and how much of .text lies outside the linked order
# (bench/resident.py; pagemap needs root).
#
#   bench/memory.sh [PORTIER_BIN]          # default target/release/portier
#   SKIP_NGINX=1 bench/memory.sh ...       # portier only
#   RUNS=1 bench/memory.sh ...             # also name the functions in each resident run of
#                                          # .text after the ordered region
#
# Needs: nginx, h2load (nghttp2-client), curl, openssl, python3, binutils. Same ports as
# bench/proxy-icount.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}; RATE=${RATE:-10000}; SECS=${SECS:-5}
D=$(mktemp -d /tmp/portier-memory.XXXX)
. "$HERE/lib.sh"
setup_comparison
report() { local pid=$1 what=$2
  echo "-- $what: $(grep -E 'VmHWM|VmRSS|RssAnon|RssFile' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')"
  python3 "$HERE/resident.py" mappings "$pid"
  if [ "$(readlink /proc/$pid/exe)" = "$(readlink -f "$BIN")" ]; then
    python3 "$HERE/resident.py" binary "$pid" "$(readlink -f "$BIN")" "$HERE/../crates/portier/symbol-order.txt" ${RUNS:+runs}
  fi
}
run() { local name=$1; shift
  "$@" > $D/$name.log 2>&1 & local P=$!
  wait_up; sleep 0.5
  echo "== $name"; report $P idle
  h2load --h1 -t 1 -c 64 --rps=$(( RATE / 64 )) -D $SECS -H ':authority: bench.example.test' http://127.0.0.1:18180/api/bench | grep 'status codes'
  report $P "after h1-rate's load"
  h2load --h1 -t 1 -c 64 -n 100000 -H ':authority: bench.example.test' https://127.0.0.1:18543/api/bench | grep 'status codes'
  report $P "after HTTP/1.1 over TLS"
  h2load -t 1 -c 16 -m 10 -n 100000 -H ':authority: bench.example.test' https://127.0.0.1:18543/api/bench | grep 'status codes'
  report $P "after HTTP/2 over TLS"
  kill -TERM $P; wait $P || true; sleep 0.3
}
[ -n "${SKIP_NGINX:-}" ] || run nginx nginx -c $D/px.conf -p $D
portier_serve_args
run portier "$BIN" "${PORTIER_SERVE[@]}"
rm -rf "$D"
