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
    """Symbols BIN defines (with text_only, only functions: the linker orders nothing else).
    `i` is an IFUNC: glibc's name for the resolver that picks a variant (`memcpy`); valgrind
    reports the resolver under that name, and the kernel maps it at start-up like any code."""
    out = set()
    for line in subprocess.run(["nm", "--defined-only", binp], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        p = line.split()
        if len(p) == 3 and (not text_only or p[1] in "tTwWi"):
            out.add(p[2])
    return out


def links_libc_dynamically(binp: str) -> bool:
    dynamic = subprocess.run(["readelf", "-d", binp], capture_output=True, text=True,
                             check=True).stdout
    return re.search(r"\(NEEDED\).*libc\.so", dynamic) is not None


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
    # anything; only the names a build keeps can be required. The file is written from the
    # binary scripts/build-release.sh links, with glibc inside; a binary that loads libc.so
    # instead lacks glibc's functions (malloc, memcpy, ...), not a stale order.
    dynamic = links_libc_dynamically(binp)
    missing = [s for s in hot if s not in have and not re.search(r"\.\d+$", s)
               and not (dynamic and not s.startswith(("_ZN", "_R")))]
    if dynamic:
        print(f"{binp} loads the C library at run time: only Rust names are required")
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


# glibc's string functions come in variants per instruction set (`__memmove_avx_unaligned_erms`,
# `__memmove_evex_unaligned_erms`, ...), one picked at start-up for the CPU. Valgrind's CPU has no
# AVX-512, so the profile names the AVX2 variant while a machine with AVX-512 runs the EVEX one.
GLIBC_VARIANT = re.compile(
    r"^__(\w+?)_(?:sse2|ssse3|sse4_1|sse4_2|avx|avx2|evex|avx512|fma|fma4)(?:_\w+)?$")


# Code that only a CPU with AVX-512 runs, whatever valgrind ran instead: aws-lc's AES-GCM
# (`aes_gcm_encrypt_avx512`, where valgrind runs `_aesni_ctr32_ghash_6x`) and glibc's EVEX
# string functions. Placed after the serving code: `perf record -e page-faults -d` on an h2 over
# TLS load found each of them mapping 64 KiB windows of unrelated code around it.
AVX512_ONLY = re.compile(r"avx512|_evex")


def variants(have: set) -> dict:
    """glibc's variants of each function BIN defines, by function: `memmove` -> `__memmove_*`."""
    out = {}
    for s in have:
        m = GLIBC_VARIANT.match(s)
        if m:
            out.setdefault(m.group(1), []).append(s)
    return out


def siblings(name: str, have: set, variants: dict) -> list:
    """The other variants of a function the profile ran, which other CPUs pick: glibc's per
    instruction set, aws-lc's `x` and `x_alt` (with and without BMI2/ADX)."""
    alt = [s for s in (name[:-4] if name.endswith("_alt") else name + "_alt",) if s in have]
    m = GLIBC_VARIANT.match(name)
    return alt + (sorted(s for s in variants.get(m.group(1), []) if s != name) if m else [])


def write(binp: str, order: str, profiles: list) -> int:
    have = defined(binp, text_only=True)
    by_function = variants(have)
    out, seen = [], set()

    def add(names) -> None:
        for s in names:
            if s not in seen:
                seen.add(s)
                out.append(s)

    for i, path in enumerate(profiles):  # in the order given: serving, reloading, start-up
        for name, _ in sorted(self_cost(path).items(), key=lambda kv: -kv[1]):
            if name in have:
                add([name] + siblings(name, have, by_function))
        if i == 0:
            add(sorted(s for s in have if AVX512_ONLY.search(s)))
    # Valgrind calls the code before main "(below main)"; each page of it touched outside the
    # order maps another 64 KiB.
    add(s for s in ("_start", "__libc_start_main", "__libc_start_main_impl", "__libc_start_call_main")
        if s in have)
    open(order, "w").write("\n".join(out) + "\n")
    write_stamp(order)
    print(f"{order}: {len(out)} functions")
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit(check(*args) if cmd == "check" else write(args[0], args[1], args[2:]))
