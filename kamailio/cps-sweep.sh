#!/usr/bin/env bash
# CPS sweep: SIPp caller -> Kamailio (kamailio/kamailio.cfg) -> SIPp gateway answering 200, all
# on 127.0.0.1, for people and benchmarks (not CI). Every routing mode runs its own Kamailio
# (same start options; only -A defines differ), all started before the first step, and the steps
# are INTERLEAVED: mode 1, mode 2, ... at one rate, then the next rate, so that a noisy moment
# on the machine hits every mode alike. Two phases:
#   1. REF_ROUNDS rounds at REF_RATE CPS (the mode order rotates each round): Kamailio and
#      router CPU per call, reported as medians. The steadier comparison.
#   2. the highest rate with zero failed calls: each mode doubles from START_RATE until a step
#      fails (or MAX_RATE), then bisects BISECT times; the modes still searching run in turn.
# Every call dials a number from an N-prefix deck (PREFIXES, default 100k) that c4route and
# drouting both load: c4route as one [[rules]] per prefix, drouting as db_text dr_rules rows.
# Every prefix routes to the one SIPp gateway.
#
# Modes (MODES, space-separated):
#   static          STATIC_ROUTING: relay to the gateway without any routing (the floor)
#   drouting        DROUTING: Kamailio's drouting module, db_text tables, do_routing + use_next_gw
#   c4route         C4_HTTP: http_async_client -> c4route serve, POST /kamailio/rtjson (the default
#                   until issue 17)
#   unwrapped       ... POST /rtjson with C4_RTJSON_UNWRAPPED (one jansson_get less per call)
#   sync            C4_HTTP_SYNC: blocking http_client on a kept-alive named connection
#   sync-unwrapped  C4_HTTP_SYNC and C4_RTJSON_UNWRAPPED
#   evapi           C4_EVAPI (the shipped default since issue 17): queries (evapi_async_unicast) and
#                   events (evapi_relay) over evapi; the
#                   c4route under test connects to this Kamailio with --evapi (issue 17); several
#                   evapi modes (evapi evapi+C4_NO_EVENTS) each get their own evapi port
#   fixed           http_async_client -> target/release/examples/fixed_answer (constant answer)
#   fixed-unwrapped fixed_answer's bare document (POST /rtjson); FIXED_BIN= picks another binary
#   fixed2, fixed2-unwrapped   the same with FIXED2_BIN (a second binary, e.g. a smaller answer)
#   c4route2, unwrapped2, sync2, sync-unwrapped2   the same against a second `c4route serve` started
#                   with C4ROUTE2_ARGS (default "--threads 1"), to compare server options side by side
#   BASE+DEF=VAL+DEF2  any mode above with more -A defines, e.g. c4route+C4_HTTP_WORKERS=2,
#                   c4route+C4_HTTP_MEMORY_MANAGER="sys" (quotes kept), sync+C4_CHILDREN=8
#
#   bash kamailio/cps-sweep.sh                                   # static drouting c4route sync
#   MODES="drouting c4route" REF_ROUNDS=5 MAX_PHASE=0 bash kamailio/cps-sweep.sh
#   LOAD_PREFIXES=1000000 bash kamailio/cps-sweep.sh             # load time and memory only
#   MODES="c4route c4route+C4_NO_EVENTS" MAX_PHASE=0 REF_ROUNDS=5 bash kamailio/cps-sweep.sh
#                                        # call events on and off side by side (SPEC 9.1 cost)
#
# Environment (defaults): MODES="static drouting c4route sync", PREFIXES=100000, ALLOC=tlsf (or
# qm), STEP_SECONDS=10, REF_RATE=1000, REF_ROUNDS=3, MAX_PHASE=1 (0: skip phase 2),
# START_RATE=500, MAX_RATE=8000, BISECT=2, QUIET_WAIT=10, SHM_MB=1024, CHILDREN=4,
# HTTP_WORKERS=4, MAX_MINUTES=40, EXTRA_DEFINES= (-A defines for every mode),
# PERF_MODE= (mode names: `perf record` each one's Kamailio during one extra REF_RATE step; needs
# linux-perf: bash kamailio/install.sh --profile), PERF_SECONDS=8, TRACE= (1: SIPp traces),
# OUT=kamailio/tests/out/cps-<time>.
# Writes OUT/steps.csv (every step) and OUT/summary.md (the tables for docs/PERFORMANCE.md).
#
# Gateway health reports (Kamailio's failure_route POSTing each failed branch to c4route, on by
# default) must cost nothing on calls that succeed: every call here succeeds, the c4route modes
# send their reports to the c4route under test (C4_FEEDBACK_URL), and the column "router
# requests per call" (routing queries of every outcome plus gateway reports, from c4route's
# /metrics) shows 1.00 when nothing but the routing query reaches c4route.
# Call events (SPEC 9.1, on by default in the c4route modes) go to the c4route under test too
# (C4_EVENT_URL): every call here is answered and ended at once with a BYE, so each costs one
# `ended` event; "Kamailio HTTP requests/call" (http_async_client's counter) shows 2.00 for
# `c4route` (query + event) and 1.00 for `c4route+C4_NO_EVENTS`. With both modes in MODES the
# summary ends with the events' cost: Kamailio CPU per successful call, on ÷ off.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
scen="$here/tests/scenarios"

MODES=${MODES:-"static drouting c4route sync"}
PREFIXES=${PREFIXES:-100000}
ALLOC=${ALLOC:-tlsf}
STEP_SECONDS=${STEP_SECONDS:-10}
REF_RATE=${REF_RATE:-1000}
REF_ROUNDS=${REF_ROUNDS:-3}
MAX_PHASE=${MAX_PHASE:-1}
START_RATE=${START_RATE:-500}
MAX_RATE=${MAX_RATE:-8000}
BISECT=${BISECT:-2}
QUIET_WAIT=${QUIET_WAIT:-10}  # at most this many seconds of waiting for >= 90 % idle before a step
SHM_MB=${SHM_MB:-1024}
PKG_MB=${PKG_MB:-32}         # -M: drouting's db_text query result lives in private memory (1M rows: 1024)
CHILDREN=${CHILDREN:-4}
HTTP_WORKERS=${HTTP_WORKERS:-4}
MAX_MINUTES=${MAX_MINUTES:-40}
EXTRA_DEFINES=${EXTRA_DEFINES:-}
PERF_MODE=${PERF_MODE:-}
PERF_SECONDS=${PERF_SECONDS:-8}
TRACE=${TRACE:-}
LOAD_PREFIXES=${LOAD_PREFIXES:-}
OUT=${OUT:-"$here/tests/out/cps-$(date +%Y%m%d-%H%M%S)"}

IP=127.0.0.1
MODE_INDEX=0
KAM_PORT0=26100 EVAPI_PORT=28190 GW_PORT=26071 CALLER_PORT=26090 C4_PORT=28180 FIXED_PORT=28181 FIXED2_PORT=28182 C4_PORT2=28183
C4ROUTE2_ARGS=${C4ROUTE2_ARGS:-"--threads 1"}
C4ROUTE=${C4ROUTE:-"$repo/target/release/c4route"}
FIXED_BIN=${FIXED_BIN:-"$repo/target/release/examples/fixed_answer"}
FIXED2_BIN=${FIXED2_BIN:-}   # modes fixed2*: a second fixed-answer binary (say, a prototype answer)
CLK_TCK=$(getconf CLK_TCK)
deadline=$(( $(date +%s) + MAX_MINUTES * 60 ))

mkdir -p "$OUT"
pids=()
log() { printf '[sweep %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/sweep.log" >&2; }
die() { log "ERROR: $*"; exit 1; }

. "$here/lib.sh"
# Kamailio's children can outlive a main process that died during start (a child_init failure):
# their PIDs are collected while waiting for each Kamailio (kids) and stopped here too, if still
# ours (their command line names $OUT).
kids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    for p in "${kids[@]}"; do
        grep -qF -- "$OUT" "/proc/$p/cmdline" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    done
    pids=() kids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ---------------------------------------------------------------------------
for cmd in kamailio sipp kamcmd python3; do
    command -v "$cmd" >/dev/null || die "$cmd not found: run kamailio/install.sh"
done
[[ -n "$PERF_MODE" ]] && { command -v perf >/dev/null || die "perf not found: run kamailio/install.sh --profile"; }
if [[ -n "$LOAD_PREFIXES" ]]; then
    MODES="static drouting c4route"
    [[ $PKG_MB -lt 1024 && $LOAD_PREFIXES -gt 100000 ]] && PKG_MB=1024
    [[ $SHM_MB -lt 2048 && $LOAD_PREFIXES -gt 100000 ]] && SHM_MB=2048
fi
need_c4=0 need_c4b=0 need_fixed=0 need_fixed2=0 need_evapi=0
for m in $MODES; do
    case ${m%%+*} in
        c4route|unwrapped|sync|sync-unwrapped) need_c4=1 ;;
        evapi) need_c4=1; need_evapi=1 ;;
        c4route2|unwrapped2|sync2|sync-unwrapped2) need_c4=1; need_c4b=1 ;;
        fixed|fixed-unwrapped) need_fixed=1 ;;
        fixed2|fixed2-unwrapped) [[ -x "$FIXED2_BIN" ]] || die "mode $m needs FIXED2_BIN (a second fixed-answer binary)"; need_fixed2=1 ;;
        static|drouting) ;;
        *) die "unknown mode $m" ;;
    esac
done
if [[ $need_c4 -eq 1 && ! -x "$C4ROUTE" ]]; then
    log "building c4route"; (cd "$repo" && cargo build --release --locked --bin c4route) >"$OUT/cargo.log" 2>&1 || die "cargo build failed"
fi
if [[ $need_fixed -eq 1 && ! -x "$FIXED_BIN" ]]; then
    log "building fixed_answer"; (cd "$repo" && cargo build --release --locked --example fixed_answer) >"$OUT/cargo.log" 2>&1 || die "cargo build --example fixed_answer failed"
fi

# --- the deck: N prefixes, the same for c4route and drouting ----------------------------------
# make_deck N DIR: DIR/routes.d (c4route), DIR/dbtext (drouting's db_text tables), DIR/numbers.csv
# (SIPp injection file: numbers that match a prefix of the deck, in random order)
make_deck() {
    python3 - "$1" "$2" "$IP" "$GW_PORT" <<'EOF'
import os, random, sys
n, out, ip, gw_port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rnd = random.Random(10)
prefixes, seen = [], set()
while len(prefixes) < n:                  # 3 to 9 digits, like a carrier's rate deck
    p = str(rnd.randint(1, 9)) + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(2, 8)))
    if p not in seen:
        seen.add(p); prefixes.append(p)
rd, dt = os.path.join(out, "routes.d"), os.path.join(out, "dbtext")
os.makedirs(rd, exist_ok=True); os.makedirs(dt, exist_ok=True)
with open(os.path.join(rd, "00-trunks.toml"), "w") as f:
    f.write('# generated by kamailio/cps-sweep.sh: every prefix to one SIPp gateway\n'
            '[defaults]\nrouting = "serial"\n\n[trunks.gw]\ngateways = ["sip:%s:%s"]\n' % (ip, gw_port))
per_file = 100000
for k in range(0, n, per_file):
    with open(os.path.join(rd, "10-rules-%03d.toml" % (k // per_file)), "w") as f:
        for p in prefixes[k:k + per_file]:
            f.write('[[rules]]\nname = "p%s"\nmatch.to.prefix = ["%s"]\nthen.trunks = ["gw"]\n' % (p, p))
# db_text: one line per row, ':' separated, ':' inside a value escaped
with open(os.path.join(dt, "version"), "w") as f:
    f.write("id(int,auto) table_name(string) table_version(int)\n"
            "1:dr_gateways:3\n2:dr_rules:3\n3:dr_groups:2\n4:dr_gw_lists:1\n")
with open(os.path.join(dt, "dr_gateways"), "w") as f:
    f.write("gwid(int,auto) type(int) address(string) strip(int) pri_prefix(string,null) attrs(string,null) description(string)\n")
    f.write("1:0:%s\\:%s:0:::sipp-gateway\n" % (ip, gw_port))
with open(os.path.join(dt, "dr_groups"), "w") as f:
    f.write("id(int,auto) username(string) domain(string) groupid(int) description(string)\n")
with open(os.path.join(dt, "dr_gw_lists"), "w") as f:
    f.write("id(int,auto) gwlist(string) description(string)\n")
with open(os.path.join(dt, "dr_rules"), "w") as f:
    f.write("ruleid(int,auto) groupid(string) prefix(string) timerec(string) priority(int) routeid(string) gwlist(string) description(string)\n")
    for i, p in enumerate(prefixes, 1):
        f.write("%d:0:%s::0::1:\n" % (i, p))
with open(os.path.join(out, "numbers.csv"), "w") as f:
    f.write("RANDOM\n")
    for _ in range(10000):                 # 11-digit numbers under random prefixes
        p = rnd.choice(prefixes)
        f.write(p + "".join(rnd.choice("0123456789") for _ in range(11 - len(p))) + "\n")
EOF
}

# --- helpers ---------------------------------------------------------------------------------
cpu_ticks() { # sum of utime+stime of the given PIDs (threads included)
    local p total=0 f
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        f=$(sed 's/^.*) //' "/proc/$p/stat")
        total=$(( total + $(awk '{print $12 + $13}' <<<"$f") ))
    done
    echo "$total"
}
kam_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
rss_kb() { local p t=0; for p in "$@"; do t=$(( t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo "$t"; }

LAST_IDLE=0
wait_quiet() { # until the machine is >= 90 % idle over 1 s (at most QUIET_WAIT s)
    local i a b
    for i in $(seq "$QUIET_WAIT"); do
        a=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
        LAST_IDLE=$(awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; v = 0; if (t > 0) v = 100 * (y[1] - x[1]) / t; printf "%d", v}')
        [[ $LAST_IDLE -ge 90 ]] && return 0
    done
    log "machine not quiet after $QUIET_WAIT s (idle ${LAST_IDLE}%); going on"
}

hac_stats() { # ctl -> "requests replies errors timeouts" (zeros without http_async_client)
    kamcmd -s "$1" stats.get_statistics http_async_client: 2>/dev/null \
        | awk -F' = ' '/requests/ {r=$2} /replies/ {p=$2} /errors/ {e=$2} /timeouts/ {t=$2} END {print r+0, p+0, e+0, t+0}'
}
c4_requests() { # PORT -> all requests that c4route counted (every outcome)
    python3 - "http://$IP:$1/metrics" <<'EOF' 2>/dev/null || echo 0
import re, sys, urllib.request
t = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
print(sum(int(float(v)) for v in re.findall(r'^c4route_(?:requests|gateway_reports)_total\{[^}]*\} (\S+)$', t, re.M)))
EOF
}
shm_used() { # ctl -> real_used bytes of shared memory
    kamcmd -s "$1" core.shmmem 2>/dev/null | awk '/real_used/ {print $2}'
}
udp_drops() { awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp; }   # RcvbufErrors, machine-wide

start_gw() {
    sipp -sf "$scen/uas_200.xml" -i "$IP" -p "$GW_PORT" -nostdin -timeout 7200 -buff_size 4194304 \
        ${TRACE:+-trace_msg -message_file "$OUT/gw.msg"} -trace_err -error_file "$OUT/gw.err" >"$OUT/gw.out" 2>&1 &
    gw_pid=$!; pids+=("$gw_pid")
}

wait_tcp() { local i; for i in $(seq "$2"); do (exec 3<>"/dev/tcp/$IP/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

c4_pid="" c4b_pid="" fixed_pid="" fixed2_pid=""
start_c4route() { # routes dir -> c4_pid; C4_LOAD_S: seconds until it accepted connections
    local t0; t0=$(date +%s.%N)
    # one --evapi per evapi mode (its Kamailio listens on EVAPI_PORT + its index in MODES);
    # c4route connects once each evapi Kamailio is up
    local ev=() j=0 m
    for m in $MODES; do
        [[ ${m%%+*} == evapi ]] && ev+=(--evapi "$IP:$(( EVAPI_PORT + j ))")
        j=$(( j + 1 ))
    done
    "$C4ROUTE" serve --routes "$1" --listen "$IP:$C4_PORT" "${ev[@]}" >>"$OUT/c4route.log" 2>&1 &
    c4_pid=$!; pids+=("$c4_pid")
    wait_tcp "$C4_PORT" 1200 || die "c4route did not start (see $OUT/c4route.log)"
    C4_LOAD_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
}
start_fixed() {
    "$FIXED_BIN" --listen "$IP:$FIXED_PORT" --uri "sip:$IP:$GW_PORT" >>"$OUT/fixed_answer.log" 2>&1 &
    fixed_pid=$!; pids+=("$fixed_pid")
    wait_tcp "$FIXED_PORT" 100 || die "fixed_answer did not start"
    if [[ $need_fixed2 -eq 1 ]]; then
        "$FIXED2_BIN" --listen "$IP:$FIXED2_PORT" --uri "sip:$IP:$GW_PORT" >>"$OUT/fixed2_answer.log" 2>&1 &
        fixed2_pid=$!; pids+=("$fixed2_pid")
        wait_tcp "$FIXED2_PORT" 100 || die "$FIXED2_BIN did not start"
    fi
}

# mode_defines MODE -> the -A defines of a mode, one per line; sets MODE_SERVER (c4|fixed|"")
mode_defines() {
    local base=${1%%+*} rest d port=$C4_PORT c4=c4
    MODE_SERVER=""
    case $base in c4route2|unwrapped2|sync2|sync-unwrapped2) base=${base%2}; port=$C4_PORT2; c4=c4b ;; esac
    case $base in
        static) echo STATIC_ROUTING ;;
        drouting) echo DROUTING; echo "C4_DR_DB_URL=\"text://$deck/dbtext\""; echo "C4_DR_MAX_ROWS=$(( ${LOAD_PREFIXES:-$PREFIXES} + 1000 ))" ;;
        c4route) MODE_SERVER=$c4; echo C4_HTTP; echo "C4_API_URL=\"http://$IP:$port/kamailio/rtjson\"" ;;
        unwrapped) MODE_SERVER=$c4; echo C4_HTTP; echo C4_RTJSON_UNWRAPPED; echo "C4_API_URL=\"http://$IP:$port/rtjson\"" ;;
        sync) MODE_SERVER=$c4; echo C4_HTTP_SYNC; echo "C4_HTTPCON=\"c4route=>http://$IP:$port/kamailio/rtjson\"" ;;
        sync-unwrapped) MODE_SERVER=$c4; echo C4_HTTP_SYNC; echo C4_RTJSON_UNWRAPPED; echo "C4_HTTPCON=\"c4route=>http://$IP:$port/rtjson\"" ;;
        evapi) MODE_SERVER=$c4; echo C4_EVAPI; echo "C4_EVAPI_BIND=\"$IP:$(( EVAPI_PORT + MODE_INDEX ))\"" ;;
        fixed) MODE_SERVER=fixed; echo C4_HTTP; echo "C4_API_URL=\"http://$IP:$FIXED_PORT/kamailio/rtjson\"" ;;
        fixed-unwrapped) MODE_SERVER=fixed; echo C4_HTTP; echo C4_RTJSON_UNWRAPPED; echo "C4_API_URL=\"http://$IP:$FIXED_PORT/rtjson\"" ;;
        fixed2) MODE_SERVER=fixed2; echo C4_HTTP; echo "C4_API_URL=\"http://$IP:$FIXED2_PORT/kamailio/rtjson\"" ;;
        fixed2-unwrapped) MODE_SERVER=fixed2; echo C4_HTTP; echo C4_RTJSON_UNWRAPPED; echo "C4_API_URL=\"http://$IP:$FIXED2_PORT/rtjson\"" ;;
    esac
    # failed branches are reported to the c4route under test, so the requests column counts them;
    # so do the call events (one `ended` per call here: every call is answered, then BYE)
    [[ $MODE_SERVER == c4* ]] && echo "C4_FEEDBACK_URL=\"http://$IP:$port/kamailio/feedback\""
    [[ $MODE_SERVER == c4* ]] && echo "C4_EVENT_URL=\"http://$IP:$port/kamailio/event\""
    case $MODE_SERVER in
        fixed) echo "C4_EVENT_URL=\"http://$IP:$FIXED_PORT/kamailio/event\"" ;;
        fixed2) echo "C4_EVENT_URL=\"http://$IP:$FIXED2_PORT/kamailio/event\"" ;;
    esac
    if [[ $1 == *+* ]]; then
        rest=${1#*+}
        IFS='+' read -ra ds <<<"$rest"
        for d in "${ds[@]}"; do echo "$d"; done
    fi
    for d in $EXTRA_DEFINES; do echo "$d"; done
}

declare -A kpid kport kctl klog kserver
# start_kamailio INDEX MODE: Kamailio for MODE on port KAM_PORT0+INDEX (26100 and up)
start_kamailio() {
    local i=$1 mode=$2 port=$(( KAM_PORT0 + $1 )) extra=() defs=() d
    [[ $ALLOC == tlsf ]] && extra=(-x tlsf -X tlsf)
    local ctl="unix:$OUT/kamailio-$i.ctl"
    MODE_INDEX=$i
    local mdefs; mdefs=$(mode_defines "$mode")
    defs=(-A "C4_LISTEN=udp:$IP:$port" -A "C4_CTL_SOCKET=\"$ctl\"" -A "C4_STATIC_DST=\"sip:$IP:$GW_PORT\"")
    # a mode's own C4_CHILDREN / C4_HTTP_WORKERS replace the sweep's (Kamailio refuses a define twice)
    grep -q '^C4_CHILDREN=' <<<"$mdefs" || defs+=(-A "C4_CHILDREN=$CHILDREN")
    grep -q '^C4_HTTP_WORKERS=' <<<"$mdefs" || defs+=(-A "C4_HTTP_WORKERS=$HTTP_WORKERS")
    while IFS= read -r d; do [[ -n "$d" ]] && defs+=(-A "$d"); done <<<"$mdefs"
    mode_defines "$mode" >/dev/null   # sets MODE_SERVER in this shell
    local lg="$OUT/kamailio-$i.log"
    echo "$mode: kamailio -f kamailio/kamailio.cfg -DD -E -m $SHM_MB -M $PKG_MB ${extra[*]} ${defs[*]}" >>"$OUT/kamailio.cmds"
    (cd "$OUT" && exec kamailio -f "$here/kamailio.cfg" -DD -E -m "$SHM_MB" -M "$PKG_MB" "${extra[@]}" -w "$OUT" \
        -P "$OUT/kamailio-$i.pid" "${defs[@]}") >"$lg" 2>&1 &
    local p=$!; pids+=("$p")
    kpid[$mode]=$p kport[$mode]=$port kctl[$mode]=$ctl klog[$mode]=$lg kserver[$mode]=$MODE_SERVER
    local n
    for n in $(seq 100); do
        kamcmd -s "$ctl" core.uptime >/dev/null 2>&1 && return 0
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    die "kamailio ($mode) did not start: $(grep -m3 -E 'ERROR|CRITICAL' "$lg")"
}

# probe MODE: one call through MODE's Kamailio; 0 when it completed
probe() {
    timeout -k 5 20 sipp "$IP:${kport[$1]}" -sf "$scen/uac_cps.xml" -inf "$deck/numbers.csv" -i "$IP" -p "$CALLER_PORT" \
        -m 1 -nostdin -timeout 10 -timeout_error -buff_size 4194304 >/dev/null 2>&1
}

# wait_ready MODE: until MODE's Kamailio has finished loading (drouting loads its table in the
# first SIP child, after the port is open) and a probe call completes. Sets READY_S (seconds since
# the start), READY_CPU (CPU seconds of all its processes so far).
wait_ready() {
    local m=$1 t0=$2 k0 k1 quiet=0 n
    for n in $(seq 1200); do        # at most ~10 minutes
        kids+=($(pgrep -P "${kpid[$m]}"))
        k0=$(cpu_ticks $(kam_pids "${kpid[$m]}"))
        sleep 0.5
        k1=$(cpu_ticks $(kam_pids "${kpid[$m]}"))
        if [[ $(( k1 - k0 )) -le 2 ]]; then quiet=$(( quiet + 1 )); else quiet=0; fi
        if [[ $quiet -ge 2 ]] && probe "$m"; then
            READY_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
            READY_CPU=$(awk -v t="$k1" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", t / h}')
            return 0
        fi
        kill -0 "${kpid[$m]}" 2>/dev/null || die "kamailio ($m) died while loading: $(grep -m3 -E 'ERROR|CRITICAL' "${klog[$m]}")"
    done
    die "kamailio ($m) not ready after 10 minutes"
}

server_pid() { case ${kserver[$1]} in c4) echo "$c4_pid" ;; c4b) echo "$c4b_pid" ;; fixed) echo "$fixed_pid" ;; fixed2) echo "$fixed2_pid" ;; *) echo "" ;; esac; }

# run_step MODE RATE -> "ok|fail calls successful failed retrans avg_rt_ms kam_ms/call
#   router_ms/call hac_err hac_timeouts router_req/call udp_rcvbuf_errors idle_pct_before
#   hac_req/call" (the last: http_async_client requests per successful call: queries in the
#   non-blocking modes, plus call events and reports)
run_step() {
    local m=$1 rate=$2 calls=$(( $2 * STEP_SECONDS )) tag; tag=$(tr -c 'A-Za-z0-9_.-' '_' <<<"$1" | sed 's/_$//')
    local stf="$OUT/step-$tag-$rate-$(date +%H%M%S).csv"
    wait_quiet
    local kp hp; kp=$(kam_pids "${kpid[$m]}"); hp=$(server_pid "$m")
    local k0 h0 s0 u0 r0 k1 h1 s1 u1 r1
    k0=$(cpu_ticks $kp); h0=$( [[ -n "$hp" ]] && cpu_ticks "$hp" || echo 0); s0=$(hac_stats "${kctl[$m]}"); u0=$(udp_drops)
    local rport=$C4_PORT; [[ ${kserver[$m]} == c4b ]] && rport=$C4_PORT2
    r0=$( [[ ${kserver[$m]} == c4* ]] && c4_requests "$rport" || echo 0)
    # -k: a SIPp caller stuck after an overloaded step ignored timeout's SIGTERM for minutes
    timeout -k 10 $(( STEP_SECONDS + 30 )) sipp "$IP:${kport[$m]}" -sf "$scen/uac_cps.xml" -inf "$deck/numbers.csv" -i "$IP" -p "$CALLER_PORT" \
        -r "$rate" -m "$calls" -l $(( rate * 4 + 100 )) -buff_size 4194304 -nostdin -timeout $(( STEP_SECONDS + 10 )) -timeout_error \
        -trace_stat -stf "$stf" -fd 1 ${TRACE:+-trace_msg -message_file "$OUT/caller-$tag-$rate.msg"} -trace_err -error_file "$OUT/caller-$tag-$rate.err" \
        >"$OUT/caller.out" 2>&1 &
    local sipp_pid=$!
    if [[ -n "${PERF_DATA:-}" ]]; then   # profile the middle of the step
        sleep 1
        perf record -F 2999 -g -p "$(tr ' ' ',' <<<"$kp" | sed 's/,*$//')" -o "$PERF_DATA" -- sleep "$PERF_SECONDS" >"$PERF_DATA.log" 2>&1
    fi
    wait "$sipp_pid"
    local rc=$?
    sleep 0.5
    k1=$(cpu_ticks $kp); h1=$( [[ -n "$hp" ]] && cpu_ticks "$hp" || echo 0); s1=$(hac_stats "${kctl[$m]}"); u1=$(udp_drops)
    r1=$( [[ ${kserver[$m]} == c4* ]] && c4_requests "$rport" || echo 0)
    python3 - "$stf" "$rc" "$calls" "$((k1 - k0))" "$((h1 - h0))" "$CLK_TCK" "$s0" "$s1" "$((u1 - u0))" "$LAST_IDLE" "$((r1 - r0))" "${kserver[$m]:-none}" <<'EOF'
import csv, sys
stf, rc, calls, kt, ht, tck, s0, s1, udp, idle, req, server = sys.argv[1:13]
rc, calls, kt, ht, tck, req = int(rc), int(calls), int(kt), int(ht), int(tck), int(req)
row = {}
try:
    rows = list(csv.DictReader(open(stf), delimiter=";"))
    row = rows[-1] if rows else {}
except OSError:
    pass
g = lambda k: row.get(k, "0") or "0"
succ, failed = int(g("SuccessfulCall(C)")), int(g("FailedCall(C)"))
retr = int(g("Retransmissions(C)"))
rt = g("ResponseTime1(C)")            # hh:mm:ss:microseconds, average INVITE->200
try:
    h, m, s, us = (int(x) for x in rt.split(":")); rt_ms = "%.1f" % (((h * 60 + m) * 60 + s) * 1000 + us / 1000)
except ValueError:
    rt_ms = "-"
a, b = [list(map(int, x.split())) for x in (s0, s1)]
d = [y - x for x, y in zip(a, b)]
ok = rc == 0 and failed == 0 and succ == calls and d[2] == 0 and d[3] == 0
n = max(succ, 1)
hc = "%.4f" % (ht * 1000 / tck / n) if server != "none" else "-"
rq = "%.3f" % (req / n) if server.startswith("c4") else "-"
print("ok" if ok else "fail", calls, succ, failed, retr, rt_ms,
      "%.4f" % (kt * 1000 / tck / n), hc, d[2], d[3], rq, udp, idle, "%.3f" % (d[0] / n))
EOF
}

# --- load-only measurement (LOAD_PREFIXES) -----------------------------------------------------
if [[ -n "$LOAD_PREFIXES" ]]; then
    deck="$OUT/deck-$LOAD_PREFIXES"
    log "load test: generating a $LOAD_PREFIXES-prefix deck in $deck"
    make_deck "$LOAD_PREFIXES" "$deck"
    start_gw
    {
        echo "| what ($LOAD_PREFIXES prefixes, -m $SHM_MB -M $PKG_MB, $ALLOC, $CHILDREN children) | ready after (s, wall) | CPU to load (s) | memory |"
        echo "|---|---:|---:|---|"
    } >"$OUT/load.md"
    i=0
    for m in static drouting; do
        t0=$(date +%s.%N)
        start_kamailio "$i" "$m"
        wait_ready "$m" "$t0"
        shm=$(shm_used "${kctl[$m]}")
        rss=$(rss_kb $(kam_pids "${kpid[$m]}"))
        log "$m: ready after $READY_S s, $READY_CPU s CPU; shm real_used $shm B; RSS of all processes $rss kB"
        eval "shm_$m=$shm rss_$m=$rss"
        echo "| Kamailio, $m | $READY_S | $READY_CPU | shm real_used $(( shm / 1048576 )) MiB, RSS (sum of processes) $(( rss / 1024 )) MiB |" >>"$OUT/load.md"
        stop_pid "${kpid[$m]}"
        i=$(( i + 1 ))
    done
    per_rule=$(awk -v a="$shm_drouting" -v b="$shm_static" -v n="$LOAD_PREFIXES" 'BEGIN {printf "%.0f", (a - b) / n}')
    echo "| drouting minus static: shared memory per rule (drouting tree + db_text's cached rows) | | | $per_rule B/rule |" >>"$OUT/load.md"
    start_c4route "$deck/routes.d"
    sleep 1
    c4rss=$(rss_kb "$c4_pid")
    echo "| c4route serve (until it accepts connections) | $C4_LOAD_S | $(awk -v t="$(cpu_ticks "$c4_pid")" -v h="$CLK_TCK" 'BEGIN {printf "%.1f", t / h}') | VmRSS $(( c4rss / 1024 )) MiB ($(( c4rss * 1024 / LOAD_PREFIXES )) B/rule) |" >>"$OUT/load.md"
    cat "$OUT/load.md"
    exit 0
fi

# --- the sweep -------------------------------------------------------------------------------
deck="$OUT/deck-$PREFIXES"
log "output in $OUT; modes: $MODES; $PREFIXES prefixes; $ALLOC; step ${STEP_SECONDS}s; -m $SHM_MB, children $CHILDREN, http workers $HTTP_WORKERS"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg); kamailio $(kamailio -v | sed -n 's/^version: //p')"
make_deck "$PREFIXES" "$deck"
start_gw
[[ $need_c4 -eq 1 ]] && { start_c4route "$deck/routes.d"; log "c4route pid $c4_pid loaded $PREFIXES rules in $C4_LOAD_S s"; }
if [[ $need_c4b -eq 1 ]]; then
    # shellcheck disable=SC2086 # C4ROUTE2_ARGS is a list of words
    "$C4ROUTE" serve --routes "$deck/routes.d" --listen "$IP:$C4_PORT2" $C4ROUTE2_ARGS >>"$OUT/c4route2.log" 2>&1 &
    c4b_pid=$!; pids+=("$c4b_pid")
    wait_tcp "$C4_PORT2" 1200 || die "the second c4route ($C4ROUTE2_ARGS) did not start (see $OUT/c4route2.log)"
    log "second c4route pid $c4b_pid: serve $C4ROUTE2_ARGS"
fi
[[ $need_fixed -eq 1 || $need_fixed2 -eq 1 ]] && start_fixed
i=0
for m in $MODES; do
    t0=$(date +%s.%N)
    start_kamailio "$i" "$m"
    wait_ready "$m" "$t0"
    log "$m: kamailio pid ${kpid[$m]} on port ${kport[$m]}, ready after $READY_S s ($READY_CPU s CPU)"
    kamcmd -s "${kctl[$m]}" core.psx >"$OUT/psx-$(tr -c 'A-Za-z0-9_.-' '_' <<<"$m" | sed 's/_$//').txt" 2>&1
    i=$(( i + 1 ))
done

echo "phase,mode,rate,result,calls,successful,failed,retransmissions,avg_invite_rt_ms,kamailio_cpu_ms_per_call,router_cpu_ms_per_call,hac_errors,hac_timeouts,router_requests_per_call,udp_rcvbuf_errors,idle_pct_before,hac_requests_per_call" >"$OUT/steps.csv"
declare -A refs best best_row searching good bad
timed_out=0
step() { # phase mode rate -> 0 if ok
    local r; r=$(run_step "$2" "$3")
    echo "$1,$2,$3,${r// /,}" >>"$OUT/steps.csv"
    log "$1 $2 $3 cps: $r"
    LAST_ROW=$r
    [[ $r == ok* ]]
}

# phase 1: REF_ROUNDS interleaved rounds at REF_RATE
read -ra mode_list <<<"$MODES"
nm=${#mode_list[@]}
for r in $(seq "$REF_ROUNDS"); do
    for j in $(seq 0 $(( nm - 1 ))); do
        m=${mode_list[$(( (j + r - 1) % nm ))]}
        [[ $(date +%s) -lt $deadline ]] || { timed_out=1; break 2; }
        step ref "$m" "$REF_RATE"
        refs[$m]+="$LAST_ROW;"
    done
done

# optional profile: perf record of each PERF_MODE's Kamailio (all its processes) during PERF_SECONDS
# of one more REF_RATE step
for m in $PERF_MODE; do
    [[ -n "${kpid[$m]:-}" ]] || die "PERF_MODE=$m is not one of MODES"
    tag=$(tr -c 'A-Za-z0-9_.-' '_' <<<"$m" | sed 's/_$//')
    log "perf: recording kamailio ($m) for $PERF_SECONDS s at $REF_RATE cps"
    PERF_DATA="$OUT/perf-$tag.data" step perf "$m" "$REF_RATE"
    perf report -i "$OUT/perf-$tag.data" --no-children --sort dso --stdio -g none >"$OUT/perf-$tag-dso.txt" 2>/dev/null
    perf report -i "$OUT/perf-$tag.data" --no-children --sort dso,sym --stdio -g none >"$OUT/perf-$tag-sym.txt" 2>/dev/null
    perf report -i "$OUT/perf-$tag.data" --children --sort sym --stdio -g none >"$OUT/perf-$tag-children.txt" 2>/dev/null
    log "perf: $OUT/perf-$tag-{dso,sym,children}.txt"
done
if [[ -n "$PERF_MODE" ]]; then
    python3 "$here/perf-breakdown.py" "$OUT" $PERF_MODE --calls $(( PERF_SECONDS * REF_RATE )) >"$OUT/perf-breakdown.md" 2>"$OUT/perf-breakdown.err"
    log "perf breakdown: $OUT/perf-breakdown.md"
fi

# phase 2: highest rate with zero failed calls, modes interleaved
if [[ $MAX_PHASE -eq 1 ]]; then
    declare -A next bis
    for m in $MODES; do next[$m]=$START_RATE; bis[$m]=0; good[$m]=0; bad[$m]=0; searching[$m]=1; done
    while :; do
        any=0
        for m in $MODES; do
            [[ ${searching[$m]} -eq 1 ]] || continue
            [[ $(date +%s) -lt $deadline ]] || { timed_out=1; break 2; }
            any=1
            rate=${next[$m]}
            if step max "$m" "$rate"; then good[$m]=$rate; best_row[$m]=$LAST_ROW; else bad[$m]=$rate; fi
            if [[ ${bad[$m]} -eq 0 ]]; then
                next[$m]=$(( rate * 2 ))
                [[ ${next[$m]} -le $MAX_RATE ]] || searching[$m]=0
            else
                mid=$(( (good[$m] + bad[$m]) / 2 ))
                if [[ ${bis[$m]} -ge $BISECT || $(( bad[$m] - mid )) -lt 25 || $(( mid - good[$m] )) -lt 25 ]]; then
                    searching[$m]=0
                else
                    bis[$m]=$(( bis[$m] + 1 )); next[$m]=$mid
                fi
            fi
        done
        [[ $any -eq 1 ]] || break
    done
fi

flood() { grep -c 'event_cb(): Cell for handler' "${klog[$1]}" 2>/dev/null || true; }
died() { grep -cE 'exited by a signal|child process [0-9]+ exited|Segmentation' "${klog[$1]}" 2>/dev/null || true; }

# --- summary ---------------------------------------------------------------------------------
python3 - "$OUT/steps.csv" "$MODES" "$REF_RATE" "$MAX_PHASE" "$PREFIXES" "$ALLOC" "$(for m in $MODES; do printf '%s=%s/%s ' "$m" "$(flood "$m")" "$(died "$m")"; done)" <<'EOF' >"$OUT/summary.md"
import csv, statistics, sys
steps, modes, ref_rate, max_phase, prefixes, alloc, health = sys.argv[1:8]
modes = modes.split(); rows = list(csv.DictReader(open(steps)))
health = dict(x.rsplit("=", 1) for x in health.split())
def med(v):
    v = [float(x) for x in v if x not in ("-", "")]
    return statistics.median(v) if v else None
def f(x, p=3):
    return "-" if x is None else ("%." + str(p) + "f") % x
ref = {m: [r for r in rows if r["phase"] == "ref" and r["mode"] == m] for m in modes}
mx = {m: [r for r in rows if r["phase"] == "max" and r["mode"] == m] for m in modes}
kam = {m: med(r["kamailio_cpu_ms_per_call"] for r in ref[m] if r["result"] == "ok") for m in modes}
rtr = {m: med(r["router_cpu_ms_per_call"] for r in ref[m] if r["result"] == "ok") for m in modes}
req = {m: med(r["router_requests_per_call"] for r in ref[m] if r["result"] == "ok") for m in modes}
best = {}
for m in modes:
    ok = [int(r["rate"]) for r in mx[m] if r["result"] == "ok"]
    best[m] = max(ok) if ok else (0 if mx[m] else None)
bkam = {}
for m in modes:
    okr = [r for r in mx[m] if r["result"] == "ok" and int(r["rate"]) == best.get(m)]
    bkam[m] = float(okr[-1]["kamailio_cpu_ms_per_call"]) if okr else None
base = "drouting" if "drouting" in modes else None
print("%s prefixes, %s, Kamailio CPU per call = CPU time of all its processes / completed calls; medians of the ok steps at %s CPS (n = steps)." % (prefixes, alloc, ref_rate))
print()
hreq = {m: med(r.get("hac_requests_per_call", "-") for r in ref[m] if r["result"] == "ok") for m in modes}
print("| mode | max CPS, 0 failed | Kamailio CPU ms/call at %s CPS (n) | router CPU ms/call | router ÷ Kamailio | Kamailio ÷ drouting | max CPS ÷ drouting | Kamailio ms/call at max CPS | router requests/call | Kamailio HTTP requests/call | event_cb lines / died |" % ref_rate)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in modes:
    n = len([r for r in ref[m] if r["result"] == "ok"])
    rk = f(rtr[m] / kam[m], 2) if (rtr[m] is not None and kam[m]) else "-"
    vk = f(kam[m] / kam[base], 2) if (base and kam[m] and kam[base]) else "-"
    vc = f(best[m] / best[base], 2) if (base and best.get(m) is not None and best.get(base)) else "-"
    b = "-" if best.get(m) is None else str(best[m])
    print("| %s | %s | %s (%d) | %s | %s | %s | %s | %s | %s | %s | %s |" % (m, b, f(kam[m]), n, f(rtr[m], 4), rk, vk, vc, f(bkam[m]), f(req[m], 2), f(hreq[m], 2), health.get(m, "-")))
# call events' cost: each mode against the same mode with +C4_NO_EVENTS, when both ran
pairs = [(m, m + "+C4_NO_EVENTS") for m in modes if "C4_NO_EVENTS" not in m and m + "+C4_NO_EVENTS" in modes]
if pairs:
    print()
    for on, off in pairs:
        r = f(kam[on] / kam[off], 3) if (kam[on] and kam[off]) else "-"
        rs = [float(a["kamailio_cpu_ms_per_call"]) / float(b["kamailio_cpu_ms_per_call"])
              for a, b in zip([x for x in ref[on] if x["result"] == "ok"], [x for x in ref[off] if x["result"] == "ok"])]
        print("Call events' cost: Kamailio CPU per successful call, %s ÷ %s = %s (medians; per round: %s; target <= 1.15)"
              % (on, off, r, ", ".join("%.3f" % x for x in rs) or "-"))
fails = [r for r in rows if r["phase"] == "ref" and r["result"] != "ok"]
if fails:
    print()
    print("Failed steps at %s CPS (left out of the medians): %s" % (ref_rate, ", ".join("%s (%s/%s ok)" % (r["mode"], r["successful"], r["calls"]) for r in fails)))
print()
print("Every step at %s CPS, Kamailio CPU ms/call (router):" % ref_rate)
print()
for m in modes:
    print("- %s: %s" % (m, ", ".join("%s%s" % (r["kamailio_cpu_ms_per_call"], "" if r["router_cpu_ms_per_call"] == "-" else " (%s)" % r["router_cpu_ms_per_call"]) + ("" if r["result"] == "ok" else " FAIL") for r in ref[m])))
EOF
[[ $timed_out -eq 1 ]] && printf '\nTime budget (MAX_MINUTES=%s) ran out: some steps were skipped.\n' "$MAX_MINUTES" >>"$OUT/summary.md"
cat "$OUT/summary.md"
log "steps: $OUT/steps.csv; summary: $OUT/summary.md"
