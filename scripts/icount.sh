#!/usr/bin/env bash
# Instruction-count regression check for route lookup: counts the instructions one
# RouteTable::find costs (valgrind, not wall time, so it is stable on shared CI machines) and
# fails when a figure exceeds its budget in bench/icount-budget by more than 10%.
#
#   scripts/icount.sh            # build, measure, compare with bench/icount-budget
#   scripts/icount.sh --bless    # build, measure, rewrite bench/icount-budget (measured + 5%)
#
# Workload: crates/snapshot/examples/lookup_icount.rs. For each table size and case, it runs the
# example under `valgrind --tool=cachegrind --cache-sim=no` twice, with 0 and with N lookups; the
# difference divided by N is the cost of one lookup, set-up excluded. `mix` is the mean of the
# four cases. Counts depend on the compiler: after a toolchain update, check the figures and
# --bless. Honours CARGO_TARGET_DIR (default: target); PORTIER_ICOUNT_LOOKUPS sets N.
set -euo pipefail
cd "$(dirname "$0")/.."

bless=0
case "${1:-}" in
    --bless) bless=1 ;;
    "") ;;
    *)
        echo "usage: scripts/icount.sh [--bless]" >&2
        exit 2
        ;;
esac

budget_file=bench/icount-budget
tolerance_pct=10 # fail above budget × (1 + tolerance)
headroom_pct=5   # --bless: budget = measured × (1 + headroom)
lookups="${PORTIER_ICOUNT_LOOKUPS:-100000}"
target="${CARGO_TARGET_DIR:-target}"

# apt_install: installs Debian packages as root, else says what to install and stops.
source scripts/lib.sh
command -v valgrind >/dev/null 2>&1 || apt_install valgrind

echo "icount.sh: building the lookup_icount example (release)" >&2
cargo build --release --locked -p portier-snapshot --example lookup_icount
bin="$target/release/examples/lookup_icount"

# Instructions executed by `lookup_icount HOSTS CASE N`.
irefs() {
    local out
    if ! out=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$@" 2>&1); then
        echo "icount.sh: lookup_icount $* failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    # "==123== I   refs:      74,679,070"
    sed -n 's/^==[0-9]*== I *refs: *\([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,
}

names=()
declare -A measured
for hosts in 100 10000; do
    sum=0
    for case in exact wildcard miss long; do
        base=$(irefs "$hosts" "$case" 0)
        full=$(irefs "$hosts" "$case" "$lookups")
        if [[ -z "$base" || -z "$full" ]]; then
            echo "icount.sh: no instruction count in valgrind's output" >&2
            exit 1
        fi
        per=$(((full - base + lookups / 2) / lookups))
        name="route_lookup_${hosts}_${case}_instructions_per_lookup"
        names+=("$name")
        measured[$name]=$per
        sum=$((sum + full - base))
    done
    name="route_lookup_${hosts}_mix_instructions_per_lookup"
    names+=("$name")
    measured[$name]=$(((sum + 2 * lookups) / (4 * lookups)))
done

if ((bless)); then
    {
        echo "# Instructions per RouteTable::find, measured by scripts/icount.sh (valgrind; see there)."
        echo "# scripts/icount.sh fails when a figure exceeds its budget by more than ${tolerance_pct}%."
        echo "# Rewritten by \`scripts/icount.sh --bless\` (measured + ${headroom_pct}%)."
        echo "# measured with: $(rustc --version 2>/dev/null || echo 'rustc ?'), $(valgrind --version)"
        for name in "${names[@]}"; do
            echo "$name $(((measured[$name] * (100 + headroom_pct) + 99) / 100))"
        done
    } >"$budget_file"
    for name in "${names[@]}"; do
        printf '%-52s %6d\n' "$name" "${measured[$name]}"
    done
    echo "icount.sh: wrote $budget_file" >&2
    exit 0
fi

declare -A budget
if [[ -f "$budget_file" ]]; then
    while read -r key value _; do
        [[ -z "$key" || "$key" == \#* ]] && continue
        budget[$key]=$value
    done <"$budget_file"
fi

failed=0
printf '%-52s %8s %8s %7s\n' figure measured budget ratio
for name in "${names[@]}"; do
    got=${measured[$name]}
    want=${budget[$name]:-}
    if [[ -z "$want" ]]; then
        printf '%-52s %8d %8s %7s  NO BUDGET\n' "$name" "$got" - -
        failed=1
        continue
    fi
    ratio=$(awk -v g="$got" -v w="$want" 'BEGIN { printf "%.2f", g / w }')
    verdict=""
    if ((got * 100 > want * (100 + tolerance_pct))); then
        verdict="  OVER BUDGET (> +${tolerance_pct}%)"
        failed=1
    elif ((got * 100 < want * 80)); then
        verdict="  (well under budget: consider --bless)"
    fi
    printf '%-52s %8d %8d %7s%s\n' "$name" "$got" "$want" "$ratio" "$verdict"
done
if ((failed)); then
    echo "icount.sh: route lookup instruction counts exceed $budget_file;" \
        "if the increase is intended, run scripts/icount.sh --bless and commit the file" >&2
    exit 1
fi
echo "icount.sh: route lookup within budget" >&2
