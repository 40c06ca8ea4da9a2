#!/usr/bin/env bash
# What serving many hosts costs per request, with everything else equal: one portier with
# 10,001 hosts (an Ingress, Service and EndpointSlice each, as bench/candidate.py writes them),
# loaded by the same wrk script (bench/lua/hosts.lua) once with a single Host and once with a
# random Host out of 10,000. The difference is the cost of cold routes: cache and TLB misses.
# (peers.sh's `routes` scenario compares against the 1-route h1 scenario instead, whose load
# generator differs and whose rounds are apart in time.)
#
#   bench/hosts-cost.sh [PORTIER_BIN]        # CPU µs per request, ROUNDS (3) interleaved rounds
#                                            # of SECS (6) s each, proxy on cpu0, wrk on cpu1
#   CACHESIM=1 bench/hosts-cost.sh [BIN]     # instead: instructions and simulated L1/LL cache
#                                            # misses per request under callgrind
#                                            # (--cache-sim=yes), 20 s of each load; keeps the
#                                            # profiles for callgrind_annotate
#   PROFILE=1 bench/hosts-cost.sh [BIN]      # instead: perf record (cpu-clock) of SECS (6) s of
#                                            # each load; prints each symbol's µs per request
#                                            # with one Host and random Hosts, largest
#                                            # difference first (TOP lines, default 15)
#
# The simulated last level is this core's L2 (from sysfs; LL=size,ways,line to choose): the L3
# is shared with whatever else runs on the host, and in a VM valgrind may detect a nonsense one
# (here: 512 MiB, 2-way), under which nothing but cold misses reach the last level.
#
# Needs: nginx, wrk, python3, curl, taskset; valgrind for CACHESIM, perf for PROFILE. Ports as bench/lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portier}
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-6}
D=$(mktemp -d /tmp/portier-hosts.XXXX)
. "$HERE/lib.sh"
P=
start_upstream
trap 'kill $UP 2>/dev/null || true; [ -z "$P" ] || kill $P 2>/dev/null || true' EXIT

python3 - "$D" "$HERE" <<'P'
import json, sys
d, here = sys.argv[1], sys.argv[2]
sys.path.insert(0, here)
import candidate
# bench.example.test for wait_up, then the names hosts.lua asks for.
routes = [{"host": "bench.example.test", "path_prefix": "/api/", "upstream": "backend"}]
routes += [{"host": "h%04d.example.test" % i, "path_prefix": "/api/", "upstream": "backend"}
           for i in range(1, 10001)]
json.dump({"listen": {"http": "127.0.0.1:18180", "https": "127.0.0.1:18543"},
           "upstreams": {"backend": ["127.0.0.1:18101"]}, "routes": routes},
          open(d + "/routes.json", "w"))
candidate.write_manifests(d + "/routes.json", d)
P

portier_serve_args
serve() { # prefix...
    "$@" "$BIN" "${PORTIER_SERVE[@]}" > "$D/portier.log" 2>&1 &
    P=$!
}
load() { # hosts seconds [cpu]
    BENCH_HOSTS=$1 ${3:+taskset -c $3} wrk -t1 -c64 -d"$2"s -s "$HERE/lua/hosts.lua" \
        http://127.0.0.1:18180/api/bench | sed -n 's/^BENCH_JSON //p'
}
requests() { python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); assert r["err_status"] == 0, r; print(r["requests"])'; }

if [ -n "${CACHESIM:-}" ]; then
    l2=/sys/devices/system/cpu/cpu0/cache/index2
    if [ -z "${LL:-}" ] && [ -r $l2/size ]; then
        LL="$(numfmt --from=iec "$(cat $l2/size)"),$(cat $l2/ways_of_associativity),$(cat $l2/coherency_line_size)"
    fi
    for hosts in 1 10000; do
        serve valgrind --tool=callgrind --cache-sim=yes ${LL:+--LL=$LL} --instr-atstart=no \
            --callgrind-out-file="$D/hosts-$hosts.out"
        wait_up 1200
        load $hosts 5 >/dev/null
        callgrind_control -i on $P >/dev/null
        n=$(load $hosts 20 | requests)
        callgrind_control -i off $P >/dev/null
        kill -TERM $P; wait $P || true; P=
        awk -v n="$n" -v h=$hosts '/^events:/ {split($0, ev)} /^totals:/ {
            printf "%5d host(s): %d requests;", h, n
            for (i = 2; i <= NF; i++) printf " %s %.1f", ev[i], $i / n; print " per request" }' \
            "$D/hosts-$hosts.out"
    done
    echo "callgrind files: $D"
    trap 'kill $UP 2>/dev/null || true' EXIT
    exit
fi

serve taskset -c 0
wait_up 300
if [ -n "${PROFILE:-}" ]; then
    # The sampling clock sees stalls where instruction counts cannot: a locked add on a cold
    # line, a dependent miss. Absolute figures include perf's own cost; compare within a run.
    load 1 2 1 >/dev/null; load 10000 2 1 >/dev/null
    for hosts in 1 10000; do
        perf record -e cpu-clock -F 10000 -p $P -o "$D/perf-$hosts.data" -- sleep "$SECS" \
            >/dev/null 2>&1 &
        rec=$!
        n=$(load $hosts "$SECS" 1 | requests)
        wait $rec || true
        perf report -i "$D/perf-$hosts.data" --no-children --sort sym -F period,sym --stdio 2>/dev/null \
            > "$D/perf-$hosts.txt"
        echo "$hosts $n" >> "$D/requests.txt"
    done
    python3 "$HERE/perf_diff.py" "$D" "${TOP:-15}"
    echo "perf files: $D"
    exit
fi
cpu() { awk '{print $14 + $15}' /proc/$P/stat; }   # utime + stime, clock ticks
load 1 2 1 >/dev/null; load 10000 2 1 >/dev/null   # warm-up: every route's state made once
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    for hosts in 1 10000; do
        c0=$(cpu); n=$(load $hosts "$SECS" 1 | requests); c1=$(cpu)
        us=$(python3 -c "print(f'{($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / $n:.2f}')")
        line="$line $hosts host(s) $us µs/req ($n requests);"
        eval "us_$hosts=\$us"
    done
    echo "$line ratio $(python3 -c "print(f'{$us_1 / $us_10000:.3f}')")"
done
