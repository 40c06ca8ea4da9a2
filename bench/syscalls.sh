#!/usr/bin/env bash
# System calls per proxied HTTP/1.1 request, nginx and portier one after the other (strace -c on
# the one worker while N requests run on 16 keep-alive connections, after a warm-up): tells
# kernel-side work apart from user-space instructions (bench/proxy-icount.sh).
#
#   bench/syscalls.sh [PORTIER_BIN] [N]     # default target/release/portier, 20000
#   PORTIER_ACCESS_LOG=/tmp/access.log ...  # with the access log written to a file
#   SKIP_NGINX=1 bench/syscalls.sh ...       # portier only
#   TLS=1 bench/syscalls.sh ...              # HTTP/1.1 over TLS 1.3 (port 18543)
#   H2=1 bench/syscalls.sh ...               # HTTP/2 over TLS 1.3, 16 connections x 4 streams (the
#                                            # peers' h2-tls shape)
#   RATE=10000 bench/syscalls.sh ...         # at a fixed offered rate on 64 connections for
#                                            # N/RATE seconds, as peers.sh's h1-rate scenario;
#                                            # counted with perf stat (strace would slow the
#                                            # proxy below the rate), CPU us/request included
#
# Needs: strace (perf with RATE), nginx, h2load (nghttp2-client), curl, openssl, python3. Same ports as
# bench/proxy-icount.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}; N=${2:-20000}
D=$(mktemp -d /tmp/portier-syscalls.XXXX)
. "$HERE/lib.sh"
setup_comparison
load() {
  local url=http://127.0.0.1:18180/api/bench
  [ -z "${TLS:-}${H2:-}" ] || url=https://127.0.0.1:18543/api/bench
  if [ -n "${H2:-}" ]; then
    h2load -n $1 -c 16 -m 4 -t 1 -H ':authority: bench.example.test' $url | grep 'status codes' >&2
  elif [ -n "${RATE:-}" ]; then
    h2load --h1 -t 1 -c 64 --rps=$(( RATE / 64 )) -D $(( ($1 + RATE - 1) / RATE )) -H ':authority: bench.example.test' $url | grep 'status codes' >&2
  else
    h2load --h1 -n $1 -c 16 -t 1 -H ':authority: bench.example.test' $url | grep 'status codes' >&2
  fi
}
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_getsockopt,syscalls:sys_enter_futex,context-switches,task-clock
run() { local name=$1; shift
  "$@" > $D/$name.log 2>&1 & local P=$!
  wait_up; load 2000
  if [ -n "${RATE:-}" ]; then
    # ptrace would slow the proxy below the offered rate; perf's counters do not.
    perf stat -x, -e $EVENTS -p $P -o $D/$name.perf & local S=$!
  else
    strace -c -f -p $P -o $D/$name.strace & local S=$!
  fi
  sleep 0.5; local done; done=$(load $N 2>&1 | awk '{print $3}'); sleep 0.3; kill -INT $S; wait $S || true
  kill -TERM $P; wait $P || true; sleep 0.3
  echo "== $name (per request, $done requests)"
  if [ -n "${RATE:-}" ]; then
    awk -F, -v n=$done '/^[0-9]/ { ev=$3; sub(/^(raw_)?syscalls:sys_enter_?/, "", ev); if (ev == "") ev="all syscalls";
      if (ev == "task-clock") printf "  %-16s %8.2f us/req\n", "cpu", $1*1000/n; else printf "  %-16s %8.2f /req\n", ev, $1/n }' $D/$name.perf
  else
    awk -v n=$done '/^ *[0-9]/ && NF>=5 { name=$NF; calls=$4; if ($5 ~ /^[0-9]+$/) {errs=$5} else {errs=0}; printf "  %-16s %6.2f calls/req  %6.2f errors/req\n", name, calls/n, errs/n }' $D/$name.strace | sort -k2 -rn | head -12
  fi
}
[ -n "${SKIP_NGINX:-}" ] || run nginx nginx -c $D/px.conf -p $D
portier_serve_args "${PORTIER_ACCESS_LOG:-off}"
run portier "$BIN" "${PORTIER_SERVE[@]}"
