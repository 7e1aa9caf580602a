#!/usr/bin/env bash
# The shared store's cost (issue 16, SPEC §9.4), side by side in one run:
#
#   (a) per-request latency of routing queries against one replica, with one connection
#       (closed loop), and throughput with four: no store / store, limited trunk (every decision
#       reserves its channel in the store) / store, unlimited trunk (the record is written in the
#       background). The no-store server decides the same two queries, so "added" compares like
#       with like.
#   (b) the store failing under a one-connection client sending limited queries: redis killed
#       (SIGKILL, then started again empty) and, separately, frozen (SIGSTOP, then SIGCONT). The
#       latency of the first request that meets the failure, and of every later one while the
#       store is down, against --state-timeout and the no-store figures of (a).
#   (c) two replicas sharing the store, limits on, four connections each at the same time,
#       against one replica without a store and four connections: the ratio of total throughput.
#
#   bash scripts/bench-store.sh                       # 3 rounds, 5 s per point, ~13 minutes
#   ROUNDS=5 DURATION=10s bash scripts/bench-store.sh
#
# Environment: ROUNDS (3), DURATION (5s per point), STATE_TIMEOUT (20ms, the serve default),
# DOWN_AT (2: seconds into a (b) run the store fails), DOWN_FOR (2: seconds it stays down),
# DOWN_RUN (6: seconds of each (b) run), DOWN_ROUNDS (5: kills and freezes each), WORK (a
# temporary directory; raw results and logs stay there), BUILD (1; 0 uses the binaries already in
# WORK/bin). The figures and how to read them: docs/PERFORMANCE.md, "Several replicas".
#
# Every process it starts (redis-server on a free 127.0.0.1 port with no persistence, three
# `c4route serve` on free 127.0.0.1 ports, the load client examples/closed_loop.rs) is stopped by
# its PID on exit; every wait is bounded. Only loopback addresses receive traffic. Nothing is
# pinned: the servers, redis and the client share the machine's CPUs as they would on one host
# (on the project's 2-core VM, two replicas + redis + the client share 2 cores in (c)).
#
# Needs redis-server (scripts/install-redis.sh installs it), curl and python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
STATE_TIMEOUT=${STATE_TIMEOUT:-20ms}
DOWN_AT=${DOWN_AT:-2}
DOWN_FOR=${DOWN_FOR:-2}
DOWN_RUN=${DOWN_RUN:-6}
DOWN_ROUNDS=${DOWN_ROUNDS:-5}
BUILD=${BUILD:-1}
WORK=${WORK:-$(mktemp -d /tmp/c4route-store-bench.XXXXXX)}
mkdir -p "$WORK/bin" "$WORK/redis" "$WORK/raw"

say() { echo "== $*" >&2; }
die() { echo "bench-store: $*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]?$ && $DOWN_ROUNDS =~ ^[1-9][0-9]?$ ]] || die "ROUNDS and DOWN_ROUNDS must be 1..99"
(( DOWN_AT >= 1 && DOWN_FOR >= 1 && DOWN_RUN > DOWN_AT + DOWN_FOR && DOWN_RUN <= 60 )) \
    || die "need 1 <= DOWN_AT, 1 <= DOWN_FOR, DOWN_AT + DOWN_FOR < DOWN_RUN <= 60"
command -v redis-server >/dev/null || die "redis-server is not installed: bash scripts/install-redis.sh"
command -v redis-cli >/dev/null || die "redis-cli is not installed (Debian: redis-tools)"
command -v curl >/dev/null || die "curl is not installed"
command -v python3 >/dev/null || die "python3 is not installed"

PIDS=()
REDIS_PID=""
cleanup() {
    local p
    # A frozen redis must be thawed to die of SIGTERM; SIGKILL needs no thaw but is the last resort.
    [[ -n $REDIS_PID ]] && kill -CONT "$REDIS_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    say "building (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin c4route --example closed_loop)
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    # Copies: a shared target directory may be rebuilt by someone else during the run.
    cp "$TARGET/release/c4route" "$TARGET/release/examples/closed_loop" "$WORK/bin/"
fi
C4="$WORK/bin/c4route"
LOAD="$WORK/bin/closed_loop"
[[ -x $C4 && -x $LOAD ]] || die "no binaries in $WORK/bin (BUILD=1 builds them)"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

# --- ports, redis, servers ---------------------------------------------------------------------
# N free ports on 127.0.0.1 (bound to port 0 and released at once).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r RPORT PA PB PC <<<"$(free_ports 4)"

redis_ping() { timeout 1 redis-cli -h 127.0.0.1 -p "$RPORT" PING 2>/dev/null | grep -q PONG; }
# Starts redis on RPORT (again after a kill: same port, empty) and waits for PONG (10 s at most).
start_redis() {
    redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no --daemonize no \
        --dir "$WORK/redis" >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!; PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do redis_ping && return 0; sleep 0.1; done
    die "redis-server did not answer on 127.0.0.1:$RPORT (log: $WORK/redis.log)"
}
rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }
# Every store point starts from an empty store (the scripts stay loaded): the benchmark sends no
# call events, so what one point reserved would otherwise expire all at once, at max_duration,
# inside the first reservation of a later point (one ZREMRANGEBYSCORE of tens of thousands of
# members), and that script's time would land on one request of that point. ASYNC: the keys are
# freed by a background thread, so the server's health check is never kept waiting. The epoch
# marker is put back in the same transaction: without it the replicas take the reset for a store
# that restarted empty, and each writes back every call it holds open, into the next point.
reset_store() {
    local epoch
    epoch=$(rcli GET c4route:epoch | tr -d '\r')
    if [[ $epoch =~ ^[0-9a-f]+$ ]]; then
        printf 'MULTI\nFLUSHALL ASYNC\nSET c4route:epoch %s PX 86400000\nEXEC\n' "$epoch" | rcli >/dev/null
    else
        rcli FLUSHALL ASYNC >/dev/null
    fi
    # The background thread frees the keys on the same 2 cores: wait until it is done (30 s at
    # most), or its work lands on the point about to be measured.
    for _ in $(seq 300); do
        [[ $(rcli INFO memory | tr -d '\r' | sed -n 's/^lazyfree_pending_objects://p') == 0 ]] && return 0
        sleep 0.1
    done
    echo "bench-store: redis still freeing the last point's keys after 30 s" >&2
}

mkdir -p "$WORK/routes.d"
cat >"$WORK/routes.d/10-bench.toml" <<'EOF'
# scripts/bench-store.sh: two trunks of two gateways each (nothing listens there: no call is
# placed and nothing is probed). Every decision of rule "limited" reserves a channel on trunk lim;
# its limit is large enough never to refuse. Rule "unlimited" goes to a trunk with no limit.
[defaults.health]
probe = "never"

[defaults.calls]
# Records left open by the benchmark (it sends no events) close after 10 s, so the shared
# channel sets stay the size a busy trunk has (tens of thousands of calls), not millions.
max_duration = "10s"

[trunks.lim]
gateways = ["sip:127.0.0.1:25061", "sip:127.0.0.1:25063"]

[trunks.lim.limits]
calls = 10000000

[trunks.free]
gateways = ["sip:127.0.0.1:25062", "sip:127.0.0.1:25064"]

[[rules]]
name = "limited"
match.to.prefix = ["1"]
then.trunks = ["lim"]

[[rules]]
name = "unlimited"
match.to.prefix = ["2"]
then.trunks = ["free"]
EOF
"$C4" check "$WORK/routes.d" >&2

health() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null || true; }
# wait_up PORT [store]: until /health answers (and, with "store", says the store is up); 20 s.
wait_up() {
    for _ in $(seq 200); do
        local h; h=$(health "$1")
        if [[ -n $h ]] && { [[ ${2:-} != store ]] || grep -q '"up":true' <<<"$h"; }; then return 0; fi
        sleep 0.1
    done
    die "c4route on :$1 not ready (${2:-}) within 20 s: $(health "$1")"
}
SERVER_PID=""
start_c4route() { # NAME PORT ARGS...
    local name=$1 port=$2; shift 2
    "$C4" serve --routes "$WORK/routes.d" --listen "127.0.0.1:$port" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
# Decisions the server itself timed (parse + decide, store wait included, + answer) above 32.8 ms,
# its histogram's last finite bucket but one: a request slower than that at the client but not here
# lost its time outside the decision (the HTTP path, or waiting for a CPU).
over_33ms() {
    curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk '
        $1 == "c4route_decision_seconds_count" {n = $2}
        $1 == "c4route_decision_seconds_bucket{le=\"0.032768\"}" {b = $2}
        END {printf "%d\n", n - b}'
}
metric() { # PORT NAME -> value (0 when absent)
    curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null \
        | awk -v m="$2" '$1 == m {print $2; found = 1} END {if (!found) print 0}'
}

start_redis
STATE=(--state "redis://127.0.0.1:$RPORT/0" --state-timeout "$STATE_TIMEOUT")
start_c4route nostore "$PA"; APID=$SERVER_PID
start_c4route store1 "$PB" "${STATE[@]}"; BPID=$SERVER_PID
start_c4route store2 "$PC" "${STATE[@]}"; CPID=$SERVER_PID
wait_up "$PA"; wait_up "$PB" store; wait_up "$PC" store

# Queries as Kamailio sends them; @ID@ becomes a new Call-ID per request.
QL='{"event":"sip-routing","source_ip":"127.0.0.1","source_port":5060,"transport":"udp","auth":0,"call_id":"@ID@","from_uri":"sip:2001@pbx.example.com","from_tag":"1928301774","to_uri":"sip:15550100123@sip.example.com","ruri":"sip:15550100123@sip.example.com","method":"INVITE"}'
QF=${QL//15550100123/25550100123}
query_of() { if [[ $1 == lim ]]; then echo "$QL"; else echo "$QF"; fi; }
for q in "$QL" "$QF"; do
    for p in "$PA" "$PB"; do
        curl -fsS --max-time 2 -H 'Content-Type: text/plain' --data-binary "${q//@ID@/sanity-$p}" \
            "http://127.0.0.1:$p/kamailio/rtjson" | grep -q '"success":true' \
            || die "sanity query to :$p did not route"
    done
done

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
per_req() { awk -v d="$1" -v n="$2" 'BEGIN {printf "%.1f", d / (n ? n : 1)}'; }
cpu_us() { awk -v t="$TICK_US" '{print ($14 + $15) * t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Context switches of all a process's threads (voluntary + not): each wake-up of a thread that
# waits for a socket or another thread is one, and on a VM each costs several µs of kernel time.
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }

# The store replica's queued writes (background records of unlimited decisions, and what it
# decided locally while the store was down) must all be written before the next point, or their
# catch-up would load it: waits until c4route_state_pending has read 0 three times in a row
# (120 s at most) and prints how long the writes took after the call, in ms.
drain_writes() {
    local t0 t1 now zero=0
    t0=$(date +%s%3N); t1=$t0
    for _ in $(seq 1200); do
        now=$(metric "$PB" c4route_state_pending)
        if [[ $now == 0 ]]; then
            zero=$((zero + 1)); [[ $zero -ge 3 ]] && break
        else
            zero=0; t1=$(date +%s%3N)
        fi
        sleep 0.1
    done
    [[ $zero -ge 3 ]] || echo "bench-store: writes still pending after 120 s" >&2
    echo $(( t1 - t0 ))
}

RAW="$WORK/raw/points.tsv"
printf 'phase\tround\tserver\tquery\tconns\trequests\trps\tp50_us\tp90_us\tp99_us\tmax_us\terrors\tnon200\tcpu_us_req\tredis_cpu_us_req\tbacklog\tcatchup_ms\tctxsw_req\tlocal\tscript_us\n' >"$RAW"

# point PHASE ROUND NAME PORT PID QUERY CONNS: one client run against one server; appends to RAW.
point() {
    local phase=$1 round=$2 name=$3 port=$4 pid=$5 qname=$6 conns=$7
    local c0 r0 x0 l0 out line n c1 r1 x1 nlocal backlog="" catchup=""
    if [[ $name != nostore ]]; then reset_store; rcli CONFIG RESETSTAT >/dev/null; fi
    l0=$(metric "$PB" c4route_state_local_decisions_total)
    c0=$(cpu_us "$pid"); r0=$(cpu_us "$REDIS_PID"); x0=$(ctxsw "$pid")
    out=$("$LOAD" --addr "127.0.0.1:$port" --connections "$conns" --duration "$DURATION" \
        --query "$(query_of "$qname")")
    c1=$(cpu_us "$pid"); r1=$(cpu_us "$REDIS_PID"); x1=$(ctxsw "$pid")
    line=$(grep '^RESULT' <<<"$out")
    n=$(field requests "$line")
    nlocal=$(( $(metric "$PB" c4route_state_local_decisions_total) - l0 ))
    # Redis's own time per script call (EVALSHA: the reservation, or a background record).
    local script=""
    [[ $name == nostore ]] || script=$(rcli INFO commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')
    if [[ $name == store1 && $qname == free ]]; then
        backlog=$(metric "$PB" c4route_state_pending)
        catchup=$(drain_writes)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$phase" "$round" "$name" "$qname" "$conns" "$n" "$(field rps "$line")" \
        "$(field p50_us "$line")" "$(field p90_us "$line")" "$(field p99_us "$line")" \
        "$(field max_us "$line")" "$(field errors "$line")" "$(field non200 "$line")" \
        "$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.1f", (b - a) / (n ? n : 1)}')" \
        "$(awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN {printf "%.1f", (b - a) / (n ? n : 1)}')" \
        "$backlog" "$catchup" "$(per_req $((x1 - x0)) "$n")" "$nlocal" "${script:-0}" >>"$RAW"
    echo "   $phase r$round $name/$qname c$conns: $line${backlog:+ backlog=$backlog catchup_ms=$catchup} local=$nlocal" >&2
}

echo "machine: $(nproc) CPUs, $(uname -r), commit $COMMIT, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "redis: $(redis-server --version | cut -d' ' -f3), --state-timeout $STATE_TIMEOUT, nothing pinned"

say "warm-up (1 s per server and query)"
for q in lim free; do
    for s in "$PA" "$PB" "$PC"; do
        "$LOAD" --addr "127.0.0.1:$s" --connections 4 --duration 1s --query "$(query_of $q)" >/dev/null
    done
done
drain_writes >/dev/null

# --- (a) latency and throughput, one replica ---------------------------------------------------
COMBOS=("nostore lim" "store1 lim" "nostore free" "store1 free")
for round in $(seq 1 "$ROUNDS"); do
    say "(a) round $round of $ROUNDS"
    for i in 0 1 2 3; do
        # Each round starts one combination later, so no configuration always runs first.
        read -r name q <<<"${COMBOS[$(( (i + round - 1) % 4 ))]}"
        if [[ $name == nostore ]]; then port=$PA pid=$APID; else port=$PB pid=$BPID; fi
        point a "$round" "$name" "$port" "$pid" "$q" 1
        point a "$round" "$name" "$port" "$pid" "$q" 4
    done
done
LOCAL_A=$(metric "$PB" c4route_state_local_decisions_total)
TIMEOUTS_A=$(metric "$PB" c4route_state_timeouts_total)

# --- (b) the store fails -----------------------------------------------------------------------
DOWN="$WORK/raw/down.tsv"
printf 'kind\tround\tfail_us\tfailed_us\tback_us\ttimeline\ttimeouts\terrors\tlocal\tover33\tcatchup_ms\n' >"$DOWN"
for round in $(seq 1 "$DOWN_ROUNDS"); do
    for kind in kill freeze; do
        say "(b) round $round: $kind"
        wait_up "$PB" store
        drain_writes >/dev/null
        reset_store
        sleep 1
        tl="$WORK/raw/down-$kind-$round.txt"
        t0=$(metric "$PB" c4route_state_timeouts_total); e0=$(metric "$PB" c4route_state_errors_total)
        l0=$(metric "$PB" c4route_state_local_decisions_total); s0=$(over_33ms "$PB")
        "$LOAD" --addr "127.0.0.1:$PB" --connections 1 --duration "${DOWN_RUN}s" \
            --query "$QL" --timeline "$tl" >"$WORK/raw/down-$kind-$round.out" &
        client=$!; PIDS+=("$client")
        sleep "$DOWN_AT"
        fail=$(date +%s%6N)
        if [[ $kind == kill ]]; then
            kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
        else
            kill -STOP "$REDIS_PID"
        fi
        failed=$(date +%s%6N)
        sleep "$DOWN_FOR"
        back=$(date +%s%6N)
        if [[ $kind == kill ]]; then start_redis; else kill -CONT "$REDIS_PID"; fi
        wait "$client"
        # The records it decided locally go to the store now; measured from the client's end.
        catchup=$(drain_writes)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$fail" "$failed" "$back" "$tl" \
            $(( $(metric "$PB" c4route_state_timeouts_total) - t0 )) \
            $(( $(metric "$PB" c4route_state_errors_total) - e0 )) \
            $(( $(metric "$PB" c4route_state_local_decisions_total) - l0 )) \
            $(( $(over_33ms "$PB") - s0 )) "$catchup" >>"$DOWN"
    done
done
wait_up "$PB" store; wait_up "$PC" store
drain_writes >/dev/null

# --- (c) two replicas ---------------------------------------------------------------------------
TWO="$WORK/raw/two.tsv"
printf 'round\tone_rps\tb_rps\tc_rps\tb_p99\tc_p99\tone_p99\terrors\tredis_cores\tone_cpu\tpair_cpu\tredis_cpu\tlocal\n' >"$TWO"
for round in $(seq 1 "$ROUNDS"); do
    say "(c) round $round of $ROUNDS"
    one="" two=""
    for step in 1 2; do
        # Odd rounds start with the single replica, even ones with the pair.
        if (( (step + round) % 2 == 0 )); then
            a0=$(cpu_us "$APID")
            one=$("$LOAD" --addr "127.0.0.1:$PA" --connections 4 --duration "$DURATION" --query "$QL")
            a1=$(cpu_us "$APID")
        else
            reset_store
            lb0=$(metric "$PB" c4route_state_local_decisions_total)
            lc0=$(metric "$PC" c4route_state_local_decisions_total)
            r0=$(cpu_us "$REDIS_PID"); b0=$(cpu_us "$BPID"); c0=$(cpu_us "$CPID"); w0=$(date +%s%6N)
            two=$("$LOAD" --addr "127.0.0.1:$PB" --addr "127.0.0.1:$PC" --connections 4 \
                --duration "$DURATION" --query "$QL")
            r1=$(cpu_us "$REDIS_PID"); b1=$(cpu_us "$BPID"); c1=$(cpu_us "$CPID"); w1=$(date +%s%6N)
            pair_local=$(( $(metric "$PB" c4route_state_local_decisions_total) - lb0 \
                + $(metric "$PC" c4route_state_local_decisions_total) - lc0 ))
        fi
    done
    lb=$(grep "^RESULT addr=127.0.0.1:$PB " <<<"$two"); lc=$(grep "^RESULT addr=127.0.0.1:$PC " <<<"$two")
    lo=$(grep '^RESULT' <<<"$one")
    echo "   one: $lo" >&2; echo "   two: $lb" >&2; echo "        $lc" >&2
    pair_n=$(( $(field requests "$lb") + $(field requests "$lc") ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$(field rps "$lo")" "$(field rps "$lb")" \
        "$(field rps "$lc")" "$(field p99_us "$lb")" "$(field p99_us "$lc")" "$(field p99_us "$lo")" \
        $(( $(field errors "$lb") + $(field errors "$lc") + $(field non200 "$lb") + $(field non200 "$lc") + $(field errors "$lo") + $(field non200 "$lo") )) \
        "$(awk -v d=$((r1 - r0)) -v w=$((w1 - w0)) 'BEGIN {printf "%.2f", d / w}')" \
        "$(per_req $((a1 - a0)) "$(field requests "$lo")")" "$(per_req $((b1 - b0 + c1 - c0)) "$pair_n")" \
        "$(per_req $((r1 - r0)) "$pair_n")" "$pair_local" >>"$TWO"
done

REJECTED=$(( $(metric "$PA" 'c4route_requests_total{outcome="rejected"}') \
    + $(metric "$PB" 'c4route_requests_total{outcome="rejected"}') \
    + $(metric "$PC" 'c4route_requests_total{outcome="rejected"}') ))
DROPPED=$(metric "$PB" c4route_state_dropped_total)
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- summary -----------------------------------------------------------------------------------
STATE_TIMEOUT_MS=$(python3 -c "
import re,sys; m=re.fullmatch(r'(\d+(?:\.\d+)?)(ms|s|us)', sys.argv[1])
print(float(m[1]) * {'ms':1,'s':1000,'us':0.001}[m[2]] if m else 20)" "$STATE_TIMEOUT")
python3 - "$RAW" "$DOWN" "$TWO" "$STATE_TIMEOUT_MS" "$LOCAL_A" "$TIMEOUTS_A" "$REJECTED" "$DROPPED" <<'EOF'
import csv, statistics as st, sys
raw, down, two, tmo_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
local_a, timeouts_a, rejected, dropped = sys.argv[5:9]
med = st.median
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def pts(server, q, conns):
    return [r for r in rows if r["phase"] == "a" and r["server"] == server and r["query"] == q
            and r["conns"] == str(conns)]
def m(server, q, conns, f):
    return med(float(r[f]) for r in pts(server, q, conns))
def added(q, f, conns=1):
    # Median of the per-round differences (store − no store, same round).
    by = {}
    for r in pts("store1", q, conns): by.setdefault(r["round"], {})["s"] = float(r[f])
    for r in pts("nostore", q, conns): by.setdefault(r["round"], {})["n"] = float(r[f])
    return med(v["s"] - v["n"] for v in by.values() if len(v) == 2)

def script(server, q):
    if server != "store1":
        return "—"
    return f"{m(server, q, 1, 'script_us'):.0f} / {m(server, q, 4, 'script_us'):.0f}"

print("\n(a) one replica, medians of the rounds; latency with 1 connection, throughput with 4\n")
print("| trunk | store | p50 µs | p99 µs | req/s (1 conn) | req/s (4 conn) | p99 µs (4 conn) | c4route CPU µs/req (4 conn) | c4route context switches/req (4 conn) | redis CPU µs/req (4 conn) | script µs/call in redis (1 / 4 conn) | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for q, label in (("lim", "limited (reserves)"), ("free", "unlimited (background record)")):
    for s in ("nostore", "store1"):
        err = sum(int(r["errors"]) + int(r["non200"]) for c in (1, 4) for r in pts(s, q, c))
        print(f"| {label} | {'yes' if s == 'store1' else 'no'} | {m(s,q,1,'p50_us'):.0f} | {m(s,q,1,'p99_us'):.0f} "
              f"| {m(s,q,1,'rps'):.0f} | {m(s,q,4,'rps'):.0f} | {m(s,q,4,'p99_us'):.0f} | {m(s,q,4,'cpu_us_req'):.1f} | {m(s,q,4,'ctxsw_req'):.1f} "
              f"| {m(s,q,4,'redis_cpu_us_req') if s == 'store1' else 0:.1f} | {script(s, q)} | {err} |")
print()
for q, label in (("lim", "limited trunk (reserves)"), ("free", "unlimited trunk (no reservation)")):
    a50, a99 = added(q, "p50_us"), added(q, "p99_us")
    print(f"added by the store, {label}: p50 {a50:+.0f} µs, p99 {a99:+.0f} µs "
          f"(median of per-round differences, 1 connection); throughput with 4 connections "
          f"{m('store1',q,4,'rps') / m('nostore',q,4,'rps'):.2f} × no store")
bl = [r for r in rows if r["server"] == "store1" and r["query"] == "free"]
for c in (1, 4):
    b = [int(r["backlog"]) for r in bl if r["conns"] == str(c)]
    k = [int(r["catchup_ms"]) for r in bl if r["conns"] == str(c)]
    print(f"background records, unlimited trunk, {c} connection(s): backlog at the end of a run "
          f"{min(b)}–{max(b)} records, written {min(k)}–{max(k)} ms after the client stopped")
print(f"limited decisions taken locally during (a): {local_a}, store timeouts: {timeouts_a} "
      + ("(every limited decision reserved in the store)" if local_a == "0" and timeouts_a == "0"
         else "(the store was slow at times: some limited decisions were local, without a round trip)"))

print("\n(b) the store fails under 1 connection of limited queries "
      f"(--state-timeout {tmo_ms:g} ms; down from the signal to the restart/SIGCONT)\n")
nos_p99 = m("nostore", "lim", 1, "p99_us"); nos_max = m("nostore", "lim", 1, "max_us")
print("| failure | round | first request µs | later: n | p50 µs | p99 µs | max µs | after recovery: p99 µs | max µs | errors | store timeouts | local decisions | catch-up after the run, ms | decisions > 32.8 ms (server) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
res = {}
for d in csv.DictReader(open(down), delimiter="\t"):
    # The signal went out between fail_us and failed_us (two clock reads around `kill`). The
    # request that met the failure is the slowest of those that ended after fail_us and started
    # before failed_us + the timeout + 100 ms; "later" requests start after it ended and before
    # the store came back (its restart or SIGCONT).
    fail, failed, back = int(d["fail_us"]), int(d["failed_us"]), int(d["back_us"])
    reqs = []
    for line in open(d["timeline"]):
        s, lat, status = line.split()
        reqs.append((int(s), float(lat), int(status)))
    reqs.sort()
    errors = sum(1 for r in reqs if r[2] != 200)
    met = [r for r in reqs if r[0] + r[1] > fail and r[0] < failed + (tmo_ms + 100) * 1000]
    if not met:
        print(f"| {d['kind']} | {d['round']} | no request ended after the failure |"); continue
    first = max(met, key=lambda r: r[1])
    first_end = first[0] + first[1]
    later = sorted(r[1] for r in reqs if r[0] >= first_end and r[0] + r[1] < back)
    rec = sorted(r[1] for r in reqs if r[0] >= back)
    def p(v, q):
        return v[min(len(v) - 1, max(0, int(q / 100 * len(v) + 0.999) - 1))] if v else float("nan")
    row = (first[1], len(later), p(later, 50), p(later, 99), later[-1] if later else float("nan"),
           p(rec, 99), rec[-1] if rec else float("nan"))
    res.setdefault(d["kind"], []).append(row)
    print(f"| {d['kind']} | {d['round']} | {row[0]:.0f} | {row[1]} | {row[2]:.0f} | {row[3]:.0f} | {row[4]:.0f} "
          f"| {row[5]:.0f} | {row[6]:.0f} | {errors} | {d['timeouts']} | {d['local']} | {d['catchup_ms']} | {d['over33']} |")
print()
for kind, rs in res.items():
    firsts = [r[0] for r in rs]; lmax = [r[4] for r in rs]; lp99 = [r[3] for r in rs]
    print(f"{kind}: first request after the failure: median {med(firsts):.0f} µs, worst {max(firsts):.0f} µs "
          f"(target ≤ --state-timeout + 1 ms = {(tmo_ms + 1) * 1000:.0f} µs: "
          f"{'met' if max(firsts) <= (tmo_ms + 1) * 1000 else 'MISSED'}); later requests while down: "
          f"p99 median {med(lp99):.0f} µs, max median {med(lmax):.0f} µs, worst {max(lmax):.0f} µs "
          f"(no store, 1 connection, (a): p99 {nos_p99:.0f} µs, max {nos_max:.0f} µs)")

print("\n(c) two replicas sharing the store (limited trunk, 4 connections each, at once) vs one replica "
      "without a store (4 connections); two replicas + redis + the client share the machine's CPUs\n")
print("| round | one, no store req/s | replica 1 req/s | replica 2 req/s | total | ratio | p99 µs one / replica 1 / replica 2 | CPU µs/req: one / pair's c4route / redis | redis CPU (cores) | decided locally | errors |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = []
local_c = 0
for r in csv.DictReader(open(two), delimiter="\t"):
    one, b, c = float(r["one_rps"]), float(r["b_rps"]), float(r["c_rps"])
    ratios.append((b + c) / one)
    print(f"| {r['round']} | {one:.0f} | {b:.0f} | {c:.0f} | {b + c:.0f} | {(b + c) / one:.2f} "
          f"| {float(r['one_p99']):.0f} / {float(r['b_p99']):.0f} / {float(r['c_p99']):.0f} "
          f"| {r['one_cpu']} / {r['pair_cpu']} / {r['redis_cpu']} | {r['redis_cores']} | {r['local']} | {r['errors']} |")
    local_c += int(r["local"])
if local_c:
    print(f"\n{local_c} of the pair's decisions were taken locally (the breaker opened): those points "
          "measure replicas that did not reserve, not the shared limits")
print(f"\nmedian ratio {med(ratios):.2f} (target ≥ 0.5: {'met' if med(ratios) >= 0.5 else 'MISSED'}); "
      f"refused decisions (outcome rejected) in the whole run: {rejected}; background records dropped: {dropped}")
EOF
echo
echo "raw results and logs: $WORK"
