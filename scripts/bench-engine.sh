#!/usr/bin/env bash
# Reproduces the figures of docs/PERFORMANCE.md, "## Routing engine":
#   1. generates the synthetic rate decks (gen_routes example),
#   2. loads each like `c4route serve` would and reports wall time, VmRSS and
#      the toml parse floor (load_table example),
#   3. runs the divan benches (crates/core/benches/lookup.rs),
#   4. prints a summary of medians and the 1M-vs-100 ratios against the targets.
#
# usage: scripts/bench-engine.sh [OUT_DIR]   (default target/bench-engine)
#        SKIP_BENCH=1 scripts/bench-engine.sh   only steps 1-2 (about a minute)
# Extra divan arguments can be passed in BENCH_ARGS, e.g. BENCH_ARGS="route".
# Takes about 5 minutes on a 2-core machine; run nothing else heavy meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench-engine}
mkdir -p "$OUT"

echo "== build (release)" >&2
cargo build --release -q -p c4route-core --examples
GEN=target/release/examples/gen_routes
LOAD=target/release/examples/load_table

echo "== generate decks in $OUT" >&2
"$GEN" --rules 1000000 --out "$OUT/deck-1m"
"$GEN" --rules 1000000 --grouped --out "$OUT/deck-1m-grouped"
"$GEN" --rules 100000 --cidr-rules 10000 --regex-rules 100 --out "$OUT/deck-mix"

echo "== load (read + compile, memory)" >&2
for d in deck-1m deck-1m-grouped deck-mix; do
    echo "-- $d"
    "$LOAD" "$OUT/$d" --toml-floor --queries
done | tee "$OUT/load.txt"

if [ "${SKIP_BENCH:-0}" = 1 ]; then
    exit 0
fi

echo "== divan benches" >&2
# shellcheck disable=SC2086 # BENCH_ARGS is a list of words on purpose
cargo bench -q -p c4route-core --bench lookup -- ${BENCH_ARGS:-} | tee "$OUT/bench.txt"

echo
echo "== summary (medians; fastest in brackets)"
awk '
function ns(v, u) {
    if (u == "ns") return v; if (u == "µs") return v * 1e3
    if (u == "ms") return v * 1e6; if (u == "s") return v * 1e9; return v
}
# Rows look like: "│  │  ├─ 1000000   1.805 µs │ 67.09 µs │ 1.843 µs │ 2.666 µs │ 300 │ 19200"
/─ / {
    line = $0; sub(/^.*─ /, "", line)
    split(line, f, /│/)
    split(f[1], a, " ")
    name = a[1]
    if (a[2] == "") {                  # a group, or a bench with arguments
        if (name ~ /^(compile|json|mix|route)$/) { group = name; fn = "" } else { fn = name }
        next
    }
    if (name ~ /^[0-9]+$/) key = group "/" fn "/" name; else key = group "/" name
    split(f[3], m, " "); med[key] = ns(m[1], m[2]); fast[key] = a[2] " " a[3]
    order[++k] = key; shown[key] = m[1] " " m[2]
}
END {
    for (i = 1; i <= k; i++) printf "%-28s %12s   [%s]\n", order[i], shown[order[i]], fast[order[i]]
    print ""
    split("route/matching route/deep route/miss route/corpus json/matching json/miss", kinds, " ")
    for (i = 1; i <= 6; i++) {
        x = med[kinds[i] "/100"]; y = med[kinds[i] "/1000000"]
        if (x > 0 && y > 0)
            printf "%-16s 1M / 100 rules = %.2f  (target <= 2)   1M median %.0f ns (target <= 1000)\n", kinds[i], y / x, y
    }
    c = med["compile/rules_1m"]; g = med["compile/grouped_1m"]
    if (c > 0) printf "compile 1M rules           %.1f s (target <= 3 s)\n", c / 1e9
    if (g > 0) printf "compile 1M grouped         %.1f s (target <= 3 s)\n", g / 1e9
}' "$OUT/bench.txt"
echo
grep -E "^-- |compile |toml parse|after dropping|index_bytes|queries " "$OUT/load.txt"
