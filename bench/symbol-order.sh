#!/usr/bin/env bash
# Writes crates/portier/symbol-order.txt: the functions a release portier runs, hottest first
# (request handling over HTTP/1.1, HTTP/2, TLS, the admin API, a reload), then those only start-up
# runs. crates/portier/build.rs hands the file to the linker, which places them side by side, so
# the pages the process touches (and keeps resident) are few. See build.rs for why.
#
#   bench/symbol-order.sh            # build, profile under callgrind, write the file, relink
#   bench/symbol-order.sh --check [BIN]
#                                    # how many listed functions BIN (default target/release/
#                                    # portier) still has; exits 1 under 80%
#
# The names carry hashes that change with the toolchain and with dependency versions. Regenerate
# after `cargo update` or a toolchain upgrade, and when --check reports a low share.
# Needs: valgrind, nginx, h2load (nghttp2-client), curl, openssl, python3, binutils (nm).
# Ports 18101, 18180, 18543, 18901 on 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ORDER=$ROOT/crates/portier/symbol-order.txt

coverage() { # BIN -> prints share, returns 1 under 80%
    python3 - "$1" "$ORDER" <<'P'
import subprocess, sys
binp, order = sys.argv[1], sys.argv[2]
listed = [l for l in open(order).read().split() if l]
have = set()
for line in subprocess.run(["nm", "--defined-only", binp], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    p = line.split()
    if len(p) == 3:
        have.add(p[2])
n = sum(1 for s in listed if s in have)
share = n / max(len(listed), 1)
print(f"{n} of {len(listed)} listed functions are in {binp} ({share:.0%})")
sys.exit(0 if share >= 0.8 else 1)
P
}

if [ "${1:-}" = "--check" ]; then
    coverage "${2:-$ROOT/target/release/portier}"
    exit
fi

cd "$ROOT"
cargo build --release -p portier
BIN=$ROOT/target/release/portier
D=$(mktemp -d /tmp/portier-order.XXXX)
BODY=$(python3 -c 'print("x"*255)')
cat > $D/up.conf <<C
worker_processes 1; daemon off; pid $D/up.pid; error_log $D/up.err warn;
events { worker_connections 1024; }
http { access_log off;
$(for k in client_body proxy fastcgi uwsgi scgi; do echo "  ${k}_temp_path $D/tmp-$k;"; done)
 server { listen 127.0.0.1:18101; location / { default_type text/plain; return 200 "$BODY"; } } }
C
nginx -c $D/up.conf -p $D >/dev/null 2>&1 & UP=$!
P=
trap 'kill $UP 2>/dev/null || true; [ -z "$P" ] || kill $P 2>/dev/null || true' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $D/k.pem -out $D/c.pem \
    -days 2 -subj /CN=bench.example.test -addext subjectAltName=DNS:bench.example.test 2>/dev/null
cat > $D/routes.json <<C
{"listen": {"http": "127.0.0.1:18180", "https": "127.0.0.1:18543"}, "tls": {"cert": "$D/c.pem", "key": "$D/k.pem"},
 "upstreams": {"backend": ["127.0.0.1:18101"]}, "routes": [{"host": "bench.example.test", "path_prefix": "/api/", "upstream": "backend"}]}
C
python3 - "$D" "$HERE" <<'P'
import sys
sys.path.insert(0, sys.argv[2])
import candidate
candidate.write_manifests(sys.argv[1] + "/routes.json", sys.argv[1])
P

# Two profiles: start-up until the first request is answered (dumped to out.1), then serving.
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$D/out \
    "$BIN" serve --config $D/manifests --http-listen 127.0.0.1:18180 --https-listen 127.0.0.1:18543 \
    --admin-listen 127.0.0.1:18901 --state-dir $D/state --configmap bench/portier \
    --worker-threads 1 --access-log off > $D/portier.log 2>&1 & P=$!
up=
for _ in $(seq 600); do
    if curl -s -o /dev/null -H 'host: bench.example.test' http://127.0.0.1:18180/api/x; then up=1; break; fi
    sleep 0.1
done
[ -n "$up" ] || { echo "portier did not start; see $D/portier.log" >&2; exit 1; }
callgrind_control -d $P >/dev/null
H=':authority: bench.example.test'
h2load --h1 -n 2000 -c 16 -t 1 -H "$H" http://127.0.0.1:18180/api/bench | grep 'status codes'
h2load -n 2000 -c 4 -m 10 -t 1 -H "$H" https://127.0.0.1:18543/api/bench | grep 'status codes'
h2load --h1 -n 500 -c 4 -t 1 -H "$H" https://127.0.0.1:18543/api/bench | grep 'status codes'
h2load -n 500 -c 4 -m 10 -t 1 -H "$H" http://127.0.0.1:18180/api/bench | grep 'status codes'
curl -s -o /dev/null -H 'host: unknown.example.test' http://127.0.0.1:18180/
for p in /metrics /healthz /readyz /api/v1/routes /api/v1/diagnostics /api/v1/certificates; do
    curl -s -o /dev/null http://127.0.0.1:18901$p
done
echo "# touched by bench/symbol-order.sh" >> $D/manifests/bench.yaml   # a hot reload
sleep 2
curl -s -o /dev/null -H 'host: bench.example.test' http://127.0.0.1:18180/api/x
kill -TERM $P; wait $P || true; P=

python3 - "$BIN" "$ORDER" "$D/out" "$D/out.1" <<'P'
import re, subprocess, sys
binp, order, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]

def self_cost(path):
    """Exclusive instruction count per function name (callgrind's compressed names resolved)."""
    names, cost, cur, call_line = {}, {}, None, False
    for line in open(path):
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m.group(2) is not None:
                names[m.group(1)] = m.group(2).strip()
            if line.startswith("fn="):
                cur = names[m.group(1)]
                cost.setdefault(cur, 0)
            continue
        if line.startswith("calls="):
            call_line = True  # the next cost line is the call's inclusive cost
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if call_line:
                call_line = False
            elif cur is not None:
                parts = line.split()
                if len(parts) >= 2:
                    cost[cur] += int(parts[1])
    return cost

defined = set()
for line in subprocess.run(["nm", "--defined-only", binp], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        defined.add(p[2])
out, seen = [], set()
for path in profiles:  # serving first, then start-up
    for name, _ in sorted(self_cost(path).items(), key=lambda kv: -kv[1]):
        if name in defined and name not in seen:
            seen.add(name)
            out.append(name)
open(order, "w").write("\n".join(out) + "\n")
print(f"{order}: {len(out)} functions")
P
cargo build --release -p portier
coverage "$BIN"
rm -rf "$D"
