#!/usr/bin/env bash
# Load benchmark of `c4route serve` against the fixed-answer server (the HTTP
# ceiling of this machine), side by side in one run, plus resident memory
# with 1M rules and the time to reload 100k rules. Figures go to stdout as a
# Markdown table; docs/PERFORMANCE.md ("## HTTP service") records a run.
#
#   scripts/load.sh                       # 10 s per point, 1/16/64 connections
#   DURATION=5s CONNECTIONS="16 64" scripts/load.sh
#   PIN=0 scripts/load.sh                 # do not pin server and wrk to cores
#
# Environment: DURATION (10s per wrk run), ROUNDS (3), CONNECTIONS ("1 16 64"), RULES (100000),
# BIG_RULES (1000000; 0 skips the memory point), RELOADS (3), PIN (1),
# SERVER_CPUS (0), CLIENT_CPUS (1), WORK (a temporary directory).
#
# With PIN=1 (default) each server runs on SERVER_CPUS and wrk on
# CLIENT_CPUS via taskset, so the load generator does not steal the
# server's core; tokio sizes its worker pool from the CPUs the process may
# use, so each server gets one worker per pinned CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-"1 16 64"}
RULES=${RULES:-100000}
BIG_RULES=${BIG_RULES:-1000000}
RELOADS=${RELOADS:-3}
PIN=${PIN:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
C4_PORT=${C4_PORT:-18080}
FIXED_PORT=${FIXED_PORT:-18081}
BIG_PORT=${BIG_PORT:-18082}
WORK=${WORK:-$(mktemp -d /tmp/c4route-load.XXXXXX)}
mkdir -p "$WORK"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

say() { echo "== $*" >&2; }
# Only ever called as `bg_server CMD... &`: exec keeps $! the server's own PID.
bg_server() { if [ "$PIN" = 1 ]; then exec taskset -c "$SERVER_CPUS" "$@"; else exec "$@"; fi; }
on_client() { if [ "$PIN" = 1 ]; then taskset -c "$CLIENT_CPUS" "$@"; else "$@"; fi; }
now_ms() { date +%s%3N; }

wait_http() { # URL, timeout in seconds
    local deadline=$(( $(date +%s) + $2 ))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1" >&2; return 1; }
        sleep 0.05
    done
}

# start_c4route ROUTES_DIR PORT LOG TIMEOUT_S: start c4route serve in the background, wait until
# /health answers; sets STARTED_PID and STARTED_MS (time from start to serving).
start_c4route() {
    local started
    started=$(now_ms)
    bg_server "$C4" serve --routes "$1" --listen "127.0.0.1:$2" 2>"$3" &
    STARTED_PID=$!; PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$2/health" "$4"
    STARTED_MS=$(( $(now_ms) - started ))
}

command -v wrk >/dev/null || { say "installing wrk"; apt-get install -y wrk >/dev/null; }
command -v curl >/dev/null || { say "installing curl"; apt-get install -y curl >/dev/null; }

say "building (release)"
(cd "$ROOT" && cargo build --release --quiet --bin c4route --example fixed_answer \
    && cargo build --release --quiet -p c4route-core --example gen_routes)
C4="$ROOT/target/release/c4route"
FIXED="$ROOT/target/release/examples/fixed_answer"
GEN="$ROOT/target/release/examples/gen_routes"

say "generating $RULES rules in $WORK/deck"
rm -rf "$WORK/deck"
"$GEN" --rules "$RULES" --queries 10000 --seed 1 --out "$WORK/deck" >&2
QUERIES="$WORK/deck/queries.jsonl"

say "starting c4route on :$C4_PORT and fixed_answer on :$FIXED_PORT"
start_c4route "$WORK/deck/routes.d" "$C4_PORT" "$WORK/c4route.log" 120
C4_PID=$STARTED_PID; load_ms=$STARTED_MS
bg_server "$FIXED" --listen "127.0.0.1:$FIXED_PORT" --uri "sip:127.0.0.1:5080" \
    2>"$WORK/fixed.log" &
FIXED_PID=$!; PIDS+=("$FIXED_PID")
wait_http "http://127.0.0.1:$FIXED_PORT/health" 10

# One sanity query each, so a broken setup does not produce fast nonsense.
head -1 "$QUERIES" | curl -fsS -H 'Content-Type: text/plain' --data-binary @- \
    "http://127.0.0.1:$C4_PORT/kamailio/rtjson" | grep -q '"rtjson"'
head -1 "$QUERIES" | curl -fsS -H 'Content-Type: text/plain' --data-binary @- \
    "http://127.0.0.1:$FIXED_PORT/kamailio/rtjson" | grep -q '"rtjson"'

run_wrk() { # PORT CONNECTIONS -> RESULT line
    C4ROUTE_QUERIES="$QUERIES" C4ROUTE_PATH=/kamailio/rtjson \
        on_client wrk -t1 -c"$2" -d"$DURATION" --timeout 2s -s "$ROOT/scripts/load/rotate.lua" \
        "http://127.0.0.1:$1" | grep '^RESULT'
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# This is a shared 2-core box in CI-like setups: say how busy it was.
echo "machine: $(nproc) CPUs, $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$PIN" = 1 ] && echo "pinned: servers on CPU $SERVER_CPUS, wrk on CPU $CLIENT_CPUS (taskset)"
say "warm-up"
DURATION=2s run_wrk "$FIXED_PORT" 16 >/dev/null
DURATION=2s run_wrk "$C4_PORT" 16 >/dev/null

# CPU time a process has used, in µs (utime + stime): unlike req/s, CPU per
# request hardly moves when other work shares the machine.
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cpu_us() { awk -v t="$TICK_US" '{print ($14 + $15) * t}' "/proc/$1/stat"; }
run_measured() { # PID PORT CONNECTIONS -> RESULT line with cpu_us_per_req=
    local before after line
    before=$(cpu_us "$1"); line=$(run_wrk "$2" "$3"); after=$(cpu_us "$1")
    echo "$line cpu_us_per_req=$(awk -v a="$before" -v b="$after" -v n="$(field requests "$line")" \
        'BEGIN {printf "%.1f", (b - a) / (n ? n : 1)}')"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "Median of $ROUNDS interleaved rounds of $DURATION each (fixed_answer, then c4route, per round)."
echo
echo "| connections | fixed_answer req/s | c4route req/s | ratio | fixed p50 / p99 (µs) | c4route p50 / p99 (µs) | p99 ratio | CPU µs/req fixed / c4route | c4route errors |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CONNECTIONS; do
    frps=""; rrps=""; f50=""; f99=""; r50=""; r99=""; fcpu=""; rcpu=""; errs=0
    for round in $(seq 1 "$ROUNDS"); do
        say "wrk -c$c -d$DURATION round $round: fixed_answer, c4route"
        f=$(run_measured "$FIXED_PID" "$FIXED_PORT" "$c"); r=$(run_measured "$C4_PID" "$C4_PORT" "$c")
        fcpu+=" $(field cpu_us_per_req "$f")"; rcpu+=" $(field cpu_us_per_req "$r")"
        echo "$f" >>"$WORK/fixed-c$c.txt"; echo "$r" >>"$WORK/c4route-c$c.txt"
        frps+=" $(field rps "$f")"; rrps+=" $(field rps "$r")"
        f50+=" $(field p50_us "$f")"; f99+=" $(field p99_us "$f")"
        r50+=" $(field p50_us "$r")"; r99+=" $(field p99_us "$r")"
        errs=$(( errs + $(field errors "$r") + $(field non2xx "$r") ))
    done
    awk -v c="$c" -v frps="$(median <<<"$frps")" -v rrps="$(median <<<"$rrps")" \
        -v f50="$(median <<<"$f50")" -v f99="$(median <<<"$f99")" \
        -v r50="$(median <<<"$r50")" -v r99="$(median <<<"$r99")" -v e="$errs" \
        -v fcpu="$(median <<<"$fcpu")" -v rcpu="$(median <<<"$rcpu")" 'BEGIN {
        printf "| %s | %d | %d | %.2f | %d / %d | %d / %d | %.2f | %.1f / %.1f | %d |\n",
            c, frps, rrps, rrps / frps, f50, f99, r50, r99, r99 / (f99 ? f99 : 1), fcpu, rcpu, e }'
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
echo
echo "c4route with $RULES rules: startup load ${load_ms} ms, VmRSS $(( $(rss_kb "$C4_PID") / 1024 )) MiB after the run"

say "reloading $RULES rules $RELOADS times (file change -> new version on /health)"
echo
echo "| reload | file change → new table served (ms) | read + compile + swap (ms, from /metrics) |"
echo "|---:|---:|---:|"
version() { curl -fsS "http://127.0.0.1:$C4_PORT/health" | sed -n 's/.*"version":"\([0-9a-f]*\)".*/\1/p'; }
for i in $(seq 1 "$RELOADS"); do
    before=$(version)
    t0=$(now_ms)
    echo "# touched $i $t0" >>"$WORK/deck/routes.d/00-trunks.toml"
    deadline=$(( t0 + 20000 ))
    while [ "$(version)" = "$before" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || { echo "reload $i: no new version within 20 s" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(now_ms)
    compile=$(curl -fsS "http://127.0.0.1:$C4_PORT/metrics" \
        | awk '/^c4route_config_last_reload_duration_seconds / {printf "%d", $2 * 1000}')
    echo "| $i | $(( t1 - t0 )) | $compile |"
    sleep 0.5
done
echo
echo "c4route after the reloads: VmRSS $(( $(rss_kb "$C4_PID") / 1024 )) MiB, peak VmHWM $(( $(hwm_kb "$C4_PID") / 1024 )) MiB (compiling holds the new table's build state next to the serving table)"

if [ "$BIG_RULES" -gt 0 ]; then
    say "generating $BIG_RULES rules for the memory point"
    rm -rf "$WORK/big"
    "$GEN" --rules "$BIG_RULES" --queries 1000 --seed 2 --out "$WORK/big" >&2
    start_c4route "$WORK/big/routes.d" "$BIG_PORT" "$WORK/big.log" 300
    BIG_PID=$STARTED_PID; big_ms=$STARTED_MS
    # A few queries so the steady state includes touched pages.
    C4ROUTE_QUERIES="$WORK/big/queries.jsonl" on_client wrk -t1 -c4 -d2s \
        -s "$ROOT/scripts/load/rotate.lua" "http://127.0.0.1:$BIG_PORT" | grep '^RESULT' >&2
    echo
    echo "c4route with $BIG_RULES rules: startup load ${big_ms} ms, VmRSS $(( $(rss_kb "$BIG_PID") / 1024 )) MiB, peak VmHWM $(( $(hwm_kb "$BIG_PID") / 1024 )) MiB, routes.d $(du -sm "$WORK/big/routes.d" | cut -f1) MB of TOML"
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw wrk results and server logs: $WORK"
