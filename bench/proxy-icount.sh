#!/usr/bin/env bash
# User-space instructions per proxied HTTP/1.1 request, nginx and portier side by side, under
# valgrind's callgrind: counted only while N requests run (16 keep-alive connections, h2load),
# after a warm-up, so start-up is excluded. Instruction counts do not depend on machine noise.
#
#   bench/proxy-icount.sh [PORTIER_BIN] [N]     # default target/release/portier, 20000
#   SKIP_NGINX=1 bench/proxy-icount.sh ...      # portier only
#   PORTIER_ACCESS_LOG=/tmp/access.log ...      # with the access log written to a file
#   H2=1 bench/proxy-icount.sh ...              # HTTP/2 over TLS 1.3 (4 connections × 10 streams)
#   TLS=1 bench/proxy-icount.sh ...             # HTTP/1.1 over TLS 1.3 (16 connections)
#
# Needs: valgrind, nginx, h2load (nghttp2-client), curl, openssl, python3. Ports 18101 (upstream),
# 18180 (proxy), 18543 on 127.0.0.1. Keeps its work dir (callgrind.out files for
# callgrind_annotate) and prints its path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}; N=${2:-20000}
D=$(mktemp -d /tmp/portier-icount.XXXX)
. "$HERE/lib.sh"
setup_comparison
load() {
  if [ -n "${H2:-}" ]; then
    h2load -n $1 -c 4 -m 10 -t 1 -H ':authority: bench.example.test' https://127.0.0.1:18543/api/bench | grep 'status codes' >&2
  elif [ -n "${TLS:-}" ]; then
    h2load --h1 -n $1 -c 16 -t 1 -H ':authority: bench.example.test' https://127.0.0.1:18543/api/bench | grep 'status codes' >&2
  else
    h2load --h1 -n $1 -c 16 -t 1 -H ':authority: bench.example.test' http://127.0.0.1:18180/api/bench | grep 'status codes' >&2
  fi
}
measure() { # name cmd...
  local name=$1; shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$D/$name.out "$@" > $D/$name.log 2>&1 & local P=$!
  wait_up; load 1000
  callgrind_control -i on $P >/dev/null; load $N; callgrind_control -i off $P >/dev/null
  sleep 0.3; kill -TERM $P; wait $P || true; sleep 0.5
  local tot=$(awk '/^totals:/ {print $2; exit}' $D/$name.out)
  echo "$name: $(( tot / N )) instructions/request  (total $tot)"
}
[ -n "${SKIP_NGINX:-}" ] || measure nginx nginx -c $D/px.conf -p $D
portier_serve_args "${PORTIER_ACCESS_LOG:-off}"
measure portier "$BIN" "${PORTIER_SERVE[@]}"
echo "callgrind files: $D"
