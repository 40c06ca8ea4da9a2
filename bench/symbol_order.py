"""The two halves of bench/symbol-order.sh that read the binary and the profiles.

  symbol_order.py check BIN ORDER             share of ORDER's names BIN defines, overall and of
                                              the HOT hottest; exit 1 under 80% or with any of
                                              the hottest missing; when all are there, records
                                              the current Cargo.lock and toolchain as ORDER's
                                              (symbol-order.stamp)
  symbol_order.py write BIN ORDER PROFILE...  ORDER from callgrind profiles, costliest first
"""
import os
import re
import subprocess
import sys


def defined(binp: str, text_only: bool) -> set:
    """Symbols BIN defines (with text_only, only functions: the linker orders nothing else)."""
    out = set()
    for line in subprocess.run(["nm", "--defined-only", binp], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        p = line.split()
        if len(p) == 3 and (not text_only or p[1] in "tTwW"):
            out.add(p[2])
    return out


def self_cost(path: str) -> dict:
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


# The hottest names serve requests. A changed signature renames a function (its hash covers the
# type), so editing the proxy can leave 99% of the names in place and the hottest one out: at
# 4776254 proxy::proxy and two more of the first 200 were missing, and an idle process kept
# 1.3 MiB more of the binary resident.
HOT = 200


def check(binp: str, order: str) -> int:
    listed = [name for name in open(order).read().split() if name]
    have = defined(binp, text_only=False)
    n = sum(1 for s in listed if s in have)
    share = n / max(len(listed), 1)
    hot = listed[:HOT]
    # LLVM numbers the local copies it makes (`name.6247`) afresh in every build that changes
    # anything; only the names a build keeps can be required.
    missing = [s for s in hot if s not in have and not re.search(r"\.\d+$", s)]
    print(f"{n} of {len(listed)} listed functions are in {binp} ({share:.0%}); "
          f"{len(hot) - len(missing)} of the {len(hot)} hottest")
    for s in missing:
        print(f"  hot and missing: {s}")
    if share >= 0.99 and not missing:
        # Still fits: a Cargo.lock change that renamed nothing (a dev-dependency) is recorded, so
        # that build.rs stops warning.
        write_stamp(order)
    return 0 if share >= 0.8 and not missing else 1


def fnv1a(data: bytes) -> int:
    """FNV-1a, 64 bits, as crates/portier/build.rs computes it."""
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_stamp(order: str) -> None:
    """What the names depend on besides the code: build.rs warns when either differs."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    lock = fnv1a(open(os.path.join(root, "Cargo.lock"), "rb").read())
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True,
                           cwd=root).stdout.strip()
    with open(os.path.splitext(order)[0] + ".stamp", "w") as f:
        f.write(f"# what symbol-order.txt was written for (bench/symbol-order.sh)\n"
                f"toolchain {rustc}\ncargo-lock-fnv1a {lock:016x}\n")


def write(binp: str, order: str, profiles: list) -> int:
    have = defined(binp, text_only=True)
    out, seen = [], set()
    for path in profiles:  # in the order given: serving first, then start-up
        for name, _ in sorted(self_cost(path).items(), key=lambda kv: -kv[1]):
            if name in have and name not in seen:
                seen.add(name)
                out.append(name)
    open(order, "w").write("\n".join(out) + "\n")
    write_stamp(order)
    print(f"{order}: {len(out)} functions")
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit(check(*args) if cmd == "check" else write(args[0], args[1], args[2:]))
