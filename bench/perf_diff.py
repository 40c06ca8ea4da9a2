#!/usr/bin/env python3
"""Per-symbol CPU per request, one Host against random Hosts, from bench/hosts-cost.sh's PROFILE mode.

    perf_diff.py DIR [TOP]

DIR holds perf-1.txt and perf-10000.txt (`perf report --sort sym -F period,sym --stdio` of a
cpu-clock recording: each symbol's CPU time in ns) and requests.txt (`HOSTS REQUESTS` per line).
Prints the totals, user space and kernel apart, then the TOP symbols whose µs per request grew
most with random Hosts.
"""

import re
import sys
from pathlib import Path


def load(path: Path) -> dict[str, float]:
    """ns of CPU per symbol (`[.] name` user space, `[k] name` kernel)."""
    out: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"\s*(\d+)\s+(\[[.k]\]\s+.*\S)", line)
        if m:
            out[m.group(2)] = out.get(m.group(2), 0.0) + float(m.group(1))
    return out


def main() -> None:
    d = Path(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    requests = {}
    for line in (d / "requests.txt").read_text().split("\n"):
        if line.strip():
            hosts, n = line.split()
            requests[int(hosts)] = int(n)
    per_req = {}
    for hosts, n in requests.items():
        per_req[hosts] = {k: ns / 1000 / n for k, ns in load(d / f"perf-{hosts}.txt").items()}
    one, many = per_req[1], per_req[10000]

    def total(p: dict[str, float], kind: str) -> float:
        return sum(v for k, v in p.items() if k.startswith(kind))

    for name, p in (("1 host", one), ("random hosts", many)):
        print(f"{name:>13}: {total(p, '[.]') + total(p, '[k]'):6.2f} µs/request "
              f"(user {total(p, '[.]'):.2f}, kernel {total(p, '[k]'):.2f}), {requests[1 if p is one else 10000]} requests")
    rows = sorted(((many.get(k, 0) - one.get(k, 0), one.get(k, 0), many.get(k, 0), k)
                   for k in set(one) | set(many)), reverse=True)
    print(f"{'difference':>10} {'1 host':>8} {'random':>8}  symbol (µs/request)")
    for diff, a, b, k in rows[:top]:
        print(f"{diff:10.3f} {a:8.3f} {b:8.3f}  {k[:110]}")


if __name__ == "__main__":
    main()
