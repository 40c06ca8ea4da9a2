"""Resident pages of a running process, for bench/memory.sh.

  resident.py mappings PID                   Rss by mapping (file name and permissions)
  resident.py binary PID BIN ORDER [runs]    BIN's resident pages by section (from pagemap, so
                                             root), and how much of .text is inside the region
                                             ORDER's functions were linked into; with runs, the
                                             biggest functions in each resident run after it
"""
import bisect
import collections
import re
import struct
import subprocess
import sys

MAP = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+\s*(.*)$")


def mappings(pid: str) -> None:
    rss, cur = collections.Counter(), None
    for line in open(f"/proc/{pid}/smaps"):
        m = MAP.match(line)
        if m:
            cur = f"{(m.group(5) or '[anon]').rsplit('/', 1)[-1]} {m.group(3)}"
        elif line.startswith("Rss:"):
            rss[cur] += int(line.split()[1])
    for name, kib in rss.most_common(10):
        if kib:
            print(f"   {kib:7d} KiB  {name}")


def present_offsets(pid: str, binp: str) -> list:
    """Link-time addresses of BIN's pages that PID has resident."""
    maps = []
    for line in open(f"/proc/{pid}/maps"):
        m = MAP.match(line)
        if m and m.group(5) == binp:
            maps.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(4), 16)))
    base = maps[0][0] - maps[0][2]  # the first mapping starts at file offset 0, address 0
    out = []
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for lo, hi, _ in maps:
            pm.seek(lo // 4096 * 8)
            data = pm.read((hi - lo) // 4096 * 8)
            for i in range(0, len(data), 8):
                if struct.unpack_from("<Q", data, i)[0] >> 63:  # bit 63: present
                    out.append(lo + i // 8 * 4096 - base)
    return out


def binary(pid: str, binp: str, order: str, runs: bool) -> None:
    present = present_offsets(pid, binp)
    secs = []
    for line in subprocess.run(["readelf", "-SW", binp], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16):
            lo = int(m.group(2), 16)
            secs.append((lo, lo + int(m.group(3), 16), m.group(1)))
    by = collections.Counter()
    for a in present:
        # a page may hold the end of one section and the start of the next: name the first
        by[next((n for lo, hi, n in secs if a < hi and a + 4096 > lo), "?")] += 4
    print("   binary resident KiB by section:",
          ", ".join(f"{n} {k}" for n, k in by.most_common() if k >= 16))
    syms = []
    for line in subprocess.run(["nm", "-n", "--defined-only", binp], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        p = line.split(maxsplit=2)
        if len(p) == 3 and p[1] in "tTwW":
            syms.append((int(p[0], 16), p[2]))
    listed = {s for s in open(order).read().split() if s}
    end = max((a for a, n in syms if n in listed), default=0)
    text = next((lo, hi) for lo, hi, n in secs if n == ".text")
    tp = sorted(a for a in present if text[0] <= a < text[1])
    inside = sum(1 for a in tp if a <= end)
    spans = []
    for a in tp:
        if a <= end:
            continue
        if spans and a == spans[-1][1] + 4096:
            spans[-1][1] = a
        else:
            spans.append([a, a])
    print(f"   .text {(text[1] - text[0]) >> 10} KiB, ordered region {(end - text[0]) >> 10} KiB: "
          f"resident {inside * 4} KiB inside, {(len(tp) - inside) * 4} KiB after it in "
          f"{len(spans)} runs")
    if not runs:
        return
    addrs = [a for a, _ in syms]
    for lo, hi in spans:
        sizes = collections.Counter()
        i, j = bisect.bisect_right(addrs, lo) - 1, bisect.bisect_right(addrs, hi + 4095)
        for k in range(max(i, 0), j):
            nxt = syms[k + 1][0] if k + 1 < len(syms) else hi + 4096
            sizes[syms[k][1][:100]] += min(nxt, hi + 4096) - max(syms[k][0], lo)
        print(f"   run at {lo:#x}, {((hi - lo) >> 10) + 4} KiB:",
              "; ".join(f"{n} ({s >> 10} KiB)" for n, s in sizes.most_common(4)))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "mappings":
        mappings(args[0])
    else:
        binary(args[0], args[1], args[2], len(args) > 3)
