#!/usr/bin/env bash
# Where a proxy's CPU per request goes: user space or the kernel. nginx, HAProxy and portier
# in turn (interleaved rounds), each one worker pinned to cpu0, the load generator on cpu1, the
# peers' TLS scenarios: h1-tls (wrk, 64 connections) and h2-tls (h2load, 16 connections x 4
# streams). Reads the proxy's utime and stime from /proc around each round.
#
#   bench/cpu-split.sh [PORTIER_BIN]        # default target/release/portier
#   SCENARIO=h1-tls|h2-tls (default both) ROUNDS=3 SECS=8 PROXIES="nginx haproxy portier"
#   BARE=PATH bench/cpu-split.sh ...       # adds `bare` to PROXIES: a proxy made of portier's
#                                          # libraries used as they come (cargo build --release
#                                          # -p portier-dataplane --example bare_proxy; PATH is
#                                          # target/release/examples/bare_proxy)
#
# What it shows: the kernel's share (loopback TCP, both sides of the proxy) is the same for the
# three proxies, and most of the total; so a ratio of totals is bounded by it, and only the
# user-space column is each proxy's own.
#
# Needs: nginx, haproxy, wrk, h2load (nghttp2-client), curl, openssl, taskset, python3. Ports as
# bench/lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-8}
PROXIES=${PROXIES:-nginx haproxy portier}
[ -z "${BARE:-}" ] || [[ " $PROXIES " == *" bare "* ]] || PROXIES="$PROXIES bare"
SCENARIOS=${SCENARIO:-h1-tls h2-tls}
D=$(mktemp -d /tmp/portier-cpusplit.XXXX)
. "$HERE/lib.sh"
P=
setup_comparison
trap 'kill $UP 2>/dev/null || true; [ -z "$P" ] || kill $P 2>/dev/null || true' EXIT

# HAProxy exactly as peers.sh configures it (peers.py's haproxy_cfg), on this script's ports.
cat "$D/c.pem" "$D/k.pem" > "$D/haproxy.pem"
python3 - "$D" "$HERE" <<'P' > "$D/haproxy.cfg"
import sys
sys.path.insert(0, sys.argv[2])
import peers
d = sys.argv[1]
print(peers.haproxy_cfg({"http_port": 18180, "https_port": 18543, "pem": d + "/haproxy.pem",
                         "upstream_port": 18101, "dir": d}, 0))
P
portier_serve_args off

start() { # proxy
    case $1 in
        nginx) taskset -c 0 nginx -c "$D/px.conf" -p "$D" > "$D/nginx.log" 2>&1 & ;;
        haproxy) taskset -c 0 haproxy -db -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 & ;;
        portier) taskset -c 0 "$BIN" "${PORTIER_SERVE[@]}" > "$D/portier.log" 2>&1 & ;;
        bare) taskset -c 0 "$BARE" "$D/c.pem" "$D/k.pem" 127.0.0.1:18180 127.0.0.1:18543 \
            127.0.0.1:18101 > "$D/bare.log" 2>&1 & ;;
    esac
    P=$!
    wait_up 300
}
stop() { kill -TERM "$P"; wait "$P" 2>/dev/null || true; P=; sleep 0.3; }
load() { # scenario seconds -> requests done, on stdout
    local url=https://127.0.0.1:18543/api/bench out
    if [ "$1" = h2-tls ]; then
        out=$(taskset -c 1 h2load -D "$2" -t1 -c16 -m4 -H ':authority: bench.example.test' "$url")
        echo "$out" | grep -q ' 0 failed' || { echo "h2load failed: $out" >&2; exit 1; }
        echo "$out" | awk '/^requests:/ {print $8}'
    else
        out=$(taskset -c 1 wrk -t1 -c64 -d"$2"s -H 'Host: bench.example.test' "$url")
        if echo "$out" | grep -q 'Non-2xx'; then echo "wrk: non-2xx answers: $out" >&2; exit 1; fi
        echo "$out" | awk '/requests in/ {print $1}'
    fi
}
ticks() { awk '{print $14, $15}' "/proc/$P/stat"; }   # utime stime, clock ticks

for scenario in $SCENARIOS; do
    echo "$scenario: CPU µs per request, user + kernel = total"
    for round in $(seq "$ROUNDS"); do
        for proxy in $PROXIES; do
            start "$proxy"
            load "$scenario" 2 >/dev/null   # warm-up: handshakes, pools
            read -r u0 k0 <<<"$(ticks)"
            n=$(load "$scenario" "$SECS")
            read -r u1 k1 <<<"$(ticks)"
            stop
            python3 -c "
t = 1e6 / $(getconf CLK_TCK) / $n
u, k = ($u1 - $u0) * t, ($k1 - $k0) * t
print(f'  round $round {\"$proxy\":8} {u:6.2f} + {k:6.2f} = {u + k:6.2f}   ({$n} requests)')"
        done
    done
done
