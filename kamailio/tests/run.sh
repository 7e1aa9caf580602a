#!/usr/bin/env bash
# End-to-end suite: SIPp caller -> Kamailio (kamailio/kamailio.cfg, unmodified) -> c4route serve
# -> SIPp gateways, all on 127.0.0.1. Proves with SIPp's exit status and message traces that the
# shipped config and c4route's answers work with the real Debian Kamailio 5.6.3.
#
#   bash kamailio/install.sh && bash kamailio/tests/run.sh
#
# Needs: kamailio with http_async_client (kamailio/install.sh), sipp, python3, and
# target/release/c4route ($CARGO_TARGET_DIR/release/c4route when that is set; built with
# `cargo build --release` when missing).
# Call events (SPEC 9.1) go through tests/event_recorder.py, which passes them on to c4route and
# logs what Kamailio sent and what c4route answered. The events, limits, quality and replica
# cases need a c4route with /kamailio/event, GET /trunks, [trunks.*.limits] and --state
# (SPEC 9.1-9.4): they fail against a binary without them.
# Environment: C4ROUTE=/path/to/c4route to test another binary (C4ROUTE_LIMITS= another one
# for the capacity-limit cases only, e.g. tests/dev/mock_limits.py); KEEP_OUT=1 keeps the
# traces of a passing run (always kept on failure) under kamailio/tests/out/.
# Prints `N passed, M failed` last; exits 1 if anything failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kdir=$(cd "$here/.." && pwd)
repo=$(cd "$kdir/.." && pwd)
scen="$here/scenarios"

# Loopback ports (gateway ports must match kamailio/tests/routes.d/00-defaults.toml).
IP=127.0.0.1
KAM_PORT=25060
KAM_PORT2=25061
KAM_PORT3=25062
KAM_PORT4=25063     # C4_NO_EVENTS variant
KAM_PORT5=25064     # capacity limits (second c4route)
KAM_PORT6=25065     # queries through the event recorder (late and broken answers)
KAM_PORT7=25066     # C4_EVAPI: queries and events over evapi
EVAPI_PORT=28448    # that Kamailio's evapi bind_addr
HTTP_PORT3=28082    # the c4route connected to it (--evapi), for GET /trunks
HTTP_PORT=28080
REC_PORT=28090      # event recorder -> c4route
HTTP_PORT2=28081    # c4route on routes-limits.d
REC_PORT2=28091     # event recorder -> c4route on routes-limits.d
SLOWRING=25077 CAPPED=25081 OVERFLOW=25082 CPSCAPPED=25083 CPSOVERFLOW=25084
POORQ=25085 GOODQ=25086
CALLER_PORT=25090
GW1=25071 GW2=25072 GW503=25073 SILENT=25074 RINGING=25075
HTTP_TIMEOUT_MS=500
# replicas sharing one store (SPEC 9.4): two Kamailios, two c4routes, one redis-server, a
# second caller port (the two callers run at once); the gateways are CAPPED and OVERFLOW
KAM_PORT8=25067 KAM_PORT9=25068
HTTP_PORT4=28083 HTTP_PORT5=28084
REDIS_PORT=28379
CALLER_PORT2=25091

# cargo's output directory: CARGO_TARGET_DIR when set (relative to the repository, as cargo reads it)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
[[ $target_dir == /* ]] || target_dir="$repo/$target_dir"
C4ROUTE=${C4ROUTE:-$target_dir/release/c4route}
OUT="$here/out/run-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$OUT"

passed=0
failed=0
failures=()
pids=()
c4_pid=""
kam_pid=""

say() { printf '%s\n' "$*"; }
pass() { passed=$((passed + 1)); say "PASS  $1"; }
fail() {
    failed=$((failed + 1)); failures+=("$1")
    say "FAIL  $1"
    shift
    local l
    for l in "$@"; do say "      $l"; done
}

. "$kdir/lib.sh"

cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    cleanup
    say ""
    if [[ $failed -gt 0 ]]; then
        say "failed: ${failures[*]}"
        say "traces and logs: $OUT"
    elif [[ -z "${KEEP_OUT:-}" ]]; then
        rm -rf "$OUT"
    else
        say "traces and logs: $OUT"
    fi
    say "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit $?
}

now_ms() { date +%s%3N; }

# http GET helper (python3 stdlib; curl is not a dependency)
http_get() { # URL -> body on stdout, fails on error
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stdout.write(getattr(e, "read", lambda: b"")().decode() if hasattr(e, "read") else "")
    sys.exit(1)
EOF
}

# Messages of one call in a SIPp message trace: each block is a sent/received message.
# msg FILE CALLID FIRSTLINE-REGEX -> the matching blocks
msg() {
    awk -v cidline="Call-ID: $2" -v first="$3" '
        function flush() { if (blk != "" && hascid && hit) printf "%s====\n", blk; blk = ""; hascid = 0; hit = 0; fl = "" }
        /^----------------------------------------------- / { flush(); next }
        { sub(/\r$/, ""); blk = blk $0 "\n" }
        fl == "" && $0 != "" && $0 !~ /^(UDP|TCP|TLS|SCTP) message/ { fl = $0; if (fl ~ first) hit = 1 }
        $0 == cidline { hascid = 1 }
        END { flush() }' "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
say "c4route Kamailio e2e suite ($(date -u +%FT%TZ)); output in $OUT"

for cmd in kamailio sipp python3 kamcmd; do
    command -v "$cmd" >/dev/null || { fail "prerequisites" "$cmd not found: run kamailio/install.sh"; finish; }
done
if ! kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" -A C4_HTTP >"$OUT/kamailio-check.log" 2>&1; then
    fail "prerequisites" "kamailio -c rejects kamailio/kamailio.cfg (http_async_client missing? run kamailio/install.sh)" \
        "$(grep -m3 -E 'ERROR|CRITICAL' "$OUT/kamailio-check.log")"
    finish
fi
# every mode the config offers must parse too: the defines switch modules and routes on and off
bad_combos=""
for combo in "C4_HTTP_SYNC" "C4_HTTP_SYNC C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS" "C4_NO_FEEDBACK" \
    "C4_HTTP_SYNC C4_NO_FEEDBACK" "C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS" "DROUTING" "STATIC_ROUTING" \
    "STATIC_ROUTING C4_NO_FEEDBACK" "DROUTING C4_NO_FEEDBACK" \
    "C4_NO_EVENTS" "C4_NO_EVENTS C4_NO_FEEDBACK" "C4_HTTP_SYNC C4_NO_EVENTS" \
    "C4_HTTP_SYNC C4_NO_EVENTS C4_NO_FEEDBACK" "C4_HTTP_SYNC C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS C4_NO_EVENTS" \
    "C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS C4_NO_EVENTS" "C4_EVENT_ANSWERED" "C4_HTTP_SYNC C4_EVENT_ANSWERED" \
    "STATIC_ROUTING C4_NO_EVENTS" "DROUTING C4_NO_EVENTS" \
    "C4_EVAPI" "C4_EVAPI C4_FAST_SUCCESS" "C4_EVAPI C4_NO_EVENTS" "C4_EVAPI C4_NO_EVENTS C4_NO_FEEDBACK" \
    "C4_EVAPI C4_EVENT_ANSWERED" "" "C4_HTTP" "C4_HTTP C4_NO_FEEDBACK" "C4_HTTP C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS" \
    "C4_HTTP C4_NO_EVENTS" "C4_HTTP C4_NO_EVENTS C4_NO_FEEDBACK" "C4_HTTP C4_EVENT_ANSWERED"; do
    defs=()
    for d in $combo; do defs+=(-A "$d"); done
    kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" "${defs[@]}" >"$OUT/kamailio-check-combo.log" 2>&1 \
        || bad_combos+=" [$combo]"
done
# the modes without c4route never send events: no dialog module, no event route
no_ev_bad=""
for combo in "STATIC_ROUTING" "DROUTING" "C4_NO_EVENTS" "C4_HTTP C4_NO_EVENTS"; do
    # shellcheck disable=SC2086 # a combo is a list of defines
    set -- $combo; combo_defs=(); for d in "$@"; do combo_defs+=(-A "$d"); done
    kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" "${combo_defs[@]}" -A C4_LOG_LEVEL=3 >"$OUT/kamailio-check-noev.log" 2>&1
    grep -qE 'dialog\.so|C4_EV_' "$OUT/kamailio-check-noev.log" && no_ev_bad+=" [$combo]"
done
kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" -A C4_LOG_LEVEL=3 >"$OUT/kamailio-check-ev.log" 2>&1
grep -q 'dialog\.so' "$OUT/kamailio-check-ev.log" || no_ev_bad+=" [default mode does not load dialog.so]"
grep -q 'evapi\.so' "$OUT/kamailio-check-ev.log" || no_ev_bad+=" [default mode does not load evapi.so]"
if [[ -z "$no_ev_bad" ]]; then
    pass "call events: the default mode loads dialog.so; STATIC_ROUTING, DROUTING and C4_NO_EVENTS do not"
else
    fail "events only in the c4route modes" "wrong:$no_ev_bad"
fi
if [[ -z "$bad_combos" ]]; then
    pass "kamailio -c accepts kamailio.cfg with every mode's defines"
else
    fail "kamailio -c with defines" "rejected:$bad_combos"
fi

if [[ ! -x "$C4ROUTE" ]]; then
    say "building c4route (cargo build --release --bin c4route)"
    (cd "$repo" && cargo build --release --bin c4route) >"$OUT/cargo-build.log" 2>&1 \
        || { fail "prerequisites" "cargo build --release failed (see $OUT/cargo-build.log)"; finish; }
fi
if ! "$C4ROUTE" serve --help >/dev/null 2>&1; then
    fail "prerequisites" "$C4ROUTE has no working 'serve' subcommand"
    finish
fi

for port in $KAM_PORT $KAM_PORT2 $KAM_PORT3 $KAM_PORT4 $KAM_PORT5 $KAM_PORT6 $KAM_PORT7 $KAM_PORT8 $KAM_PORT9 \
    $CALLER_PORT $CALLER_PORT2 $GW1 $GW2 $GW503 $SILENT $RINGING \
    $SLOWRING $CAPPED $OVERFLOW $CPSCAPPED $CPSOVERFLOW $POORQ $GOODQ; do
    if ss -Hlun "sport = :$port" 2>/dev/null | grep -q .; then
        fail "prerequisites" "UDP port $port on this machine is already in use"; finish
    fi
done
for port in $HTTP_PORT $REC_PORT $HTTP_PORT2 $REC_PORT2 $HTTP_PORT3 $EVAPI_PORT $HTTP_PORT4 $HTTP_PORT5 $REDIS_PORT; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        fail "prerequisites" "TCP port $port is already in use"; finish
    fi
done

# --- c4route on a private copy of the test routes.d (the reload test edits it) ---------------
routes="$OUT/routes.d"
mkdir -p "$routes"
cp "$here"/routes.d/*.toml "$routes/"
cp -r "$here/routes.d/rates" "$routes/"     # the rate decks of 20-lcr.toml

start_c4route() {
    "$C4ROUTE" serve --routes "$routes" --listen "$IP:$HTTP_PORT" >>"$OUT/c4route.log" 2>&1 &
    c4_pid=$!
    pids+=("$c4_pid")
    local i
    for i in $(seq 100); do
        http_get "http://$IP:$HTTP_PORT/health" >/dev/null 2>&1 && return 0
        kill -0 "$c4_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
if ! start_c4route; then
    fail "c4route starts" "$(tail -5 "$OUT/c4route.log")"
    finish
fi
say "c4route serve pid $c4_pid on $IP:$HTTP_PORT"

# the event recorder: Kamailio's events and reports -> recorder -> c4route (bounded lifetime)
EVENTS="$OUT/events.jsonl"
: >"$EVENTS"
start_recorder() { # listen-port upstream-port log [--delay USER=MS | --break USER]...
    local l=$1 u=$2 log=$3
    shift 3
    python3 "$here/event_recorder.py" "$IP:$l" "$IP:$u" "$log" 600 "$@" >>"$OUT/event_recorder.log" 2>&1 &
    pids+=("$!")
    local i
    for i in $(seq 50); do (exec 3<>"/dev/tcp/$IP/$l") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# (queries of a Kamailio pointed at it: 1201 answered 400 ms late, 2201 broken for rtjson)
if ! start_recorder $REC_PORT $HTTP_PORT "$EVENTS" --delay 1201=400 --break 2201; then
    fail "event recorder starts" "$(tail -5 "$OUT/event_recorder.log")"
    finish
fi

# --- Kamailio on the shipped config, overrides as -A defines -----------------------------------
# start_kamailio NAME PORT [extra -A defines...]: sets KPID, KCTL; log in $OUT/kamailio-NAME.log
start_kamailio() {
    local name=$1 port=$2 i mode=(-A C4_HTTP)
    shift 2
    # evapi is the shipped default (issue 17); a case names its mode, and the HTTP cases get
    # C4_HTTP unless they ask for another one
    case " $* " in *C4_EVAPI*|*C4_HTTP_SYNC*|*STATIC_ROUTING*|*DROUTING*) mode=() ;; esac
    KCTL="unix:$OUT/kamailio-$name.ctl"
    # started from $OUT: import_file looks for kamailio-local.cfg in the current directory first
    (cd "$OUT" && exec kamailio -f "$kdir/kamailio.cfg" -DD -E -m 128 -M 16 -w "$OUT" -P "$OUT/kamailio-$name.pid" \
        -A "C4_LISTEN=udp:$IP:$port" \
        -A "C4_HTTP_TIMEOUT=$HTTP_TIMEOUT_MS" \
        -A "C4_HTTP_WORKERS=2" -A "C4_CHILDREN=2" \
        -A "C4_CTL_SOCKET=\"$KCTL\"" \
        -A "C4_FEEDBACK_URL=\"http://$IP:${REPORT_PORT:-$REC_PORT}/kamailio/feedback\"" \
        -A "C4_EVENT_URL=\"http://$IP:${REPORT_PORT:-$REC_PORT}/kamailio/event\"" \
        "${mode[@]}" "$@") >"$OUT/kamailio-$name.log" 2>&1 &
    KPID=$!
    pids+=("$KPID")
    for i in $(seq 100); do
        kamcmd -s "$KCTL" core.uptime >/dev/null 2>&1 && return 0
        kill -0 "$KPID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
# the shipped default: POST /kamailio/rtjson, wrapped answer
if ! start_kamailio main $KAM_PORT -A "C4_API_URL=\"http://$IP:$HTTP_PORT/kamailio/rtjson\""; then
    fail "kamailio starts" "$(grep -m5 -E 'ERROR|CRITICAL' "$OUT/kamailio-main.log")"
    finish
fi
kam_pid=$KPID
ctl=$KCTL
say "kamailio pid $kam_pid on udp:$IP:$KAM_PORT"

# --- SIPp gateways ---------------------------------------------------------------------------
start_gw() { # name scenario port
    sipp -sf "$scen/$2.xml" -i "$IP" -p "$3" -nostdin -timeout 300 \
        -trace_msg -message_file "$OUT/gw-$1.msg" -trace_err -error_file "$OUT/gw-$1.err" \
        >"$OUT/gw-$1.out" 2>&1 &
    pids+=("$!")
}
start_gw gw1 uas_200 $GW1
start_gw gw2 uas_200 $GW2
start_gw gw503 uas_503 $GW503
start_gw silent uas_silent $SILENT
start_gw ringing uas_ring $RINGING
start_gw slowring uas_slow_answer $SLOWRING
sleep 0.5

# --- one call --------------------------------------------------------------------------------
# call NAME NUMBER SCENARIO: sets CID, RC, ELAPSED (ms), CALLER (trace file)
call() {
    local name=$1 number=$2 sf=$3 t0
    CID="c4e2e-$name-$$"
    CALLER="$OUT/caller-$name.msg"
    t0=$(now_ms)
    timeout 30 sipp "$IP:${TARGET_PORT:-$KAM_PORT}" -sf "$scen/$sf.xml" -s "$number" -i "$IP" -p "$CALLER_PORT" \
        -m 1 -nostdin -timeout 20 -timeout_error -cid_str "$CID" ${CALL_ARGS:-} \
        -trace_msg -message_file "$CALLER" -trace_err -error_file "$OUT/caller-$name.err" \
        >"$OUT/caller-$name.out" 2>&1
    RC=$?
    ELAPSED=$(( $(now_ms) - t0 ))
}
has() { # has FILE CALLID FIRSTLINE-REGEX [LINE-REGEX...]: the call's message with that first line contains every LINE-REGEX
    local f=$1 cid=$2 first=$3 blk
    shift 3
    blk=$(msg "$f" "$cid" "$first")
    [[ -n "$blk" ]] || return 1
    local re
    for re in "$@"; do
        grep -qE -- "$re" <<<"$blk" || { MISSING="$re"; return 1; }
    done
    return 0
}

# ev_ok CALLID EXPR [LOG]: waits (up to 3 s) until the Python expression EXPR holds over the
# call's records in the recorder log: E = bodies of its /kamailio/event requests (arrival order),
# F = bodies of its /kamailio/feedback requests, S = c4route's statuses for its events. Sets
# EV_SEEN to the events seen (compact JSON) for the messages. 0 when EXPR held.
ev_ok() {
    local out rc
    out=$(python3 - "$1" "$2" "${3:-$EVENTS}" <<'PYEOF'
import json, sys, time
cid, expr, log = sys.argv[1:4]
deadline = time.time() + 3.0
settled = False
while True:
    E, F, S = [], [], []
    for line in open(log):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        j = r.get("json") or {}
        if not isinstance(j, dict) or j.get("call_id") != cid:
            continue
        if r["path"] == "/kamailio/event":
            E.append(j); S.append(r["status"])
        elif r["path"] == "/kamailio/feedback":
            F.append(j)
    try:
        ok = bool(eval("(" + expr + ")"))
    except Exception:
        ok = False
    if ok and not settled:      # held: look once more 0.3 s later (an extra late event fails it)
        settled = True
        time.sleep(0.3)
        continue
    if (ok and settled) or time.time() > deadline:
        break
    settled = False
    time.sleep(0.1)
seen = json.dumps(E, separators=(",", ":"), sort_keys=True)
if F:
    seen += " feedback " + json.dumps(F, separators=(",", ":"), sort_keys=True)
print(seen)
sys.exit(0 if ok else 1)
PYEOF
)
    rc=$?
    EV_SEEN=$out
    return $rc
}

# 1. basic: the call reaches gateway 1, Kamailio stays in the path (Record-Route)
call basic 1001 uac_ok
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE sip:1001@127.0.0.1:25071' '^Record-Route: <sip:127.0.0.1:25060;lr;ftag=' \
    && has "$OUT/gw-gw1.msg" "$CID" '^BYE '; then
    pass "call reaches gateway 1 (INVITE, ACK, BYE through Kamailio) [${ELAPSED} ms]"
else
    fail "basic call to gateway 1" "sipp rc=$RC; see $CALLER and $OUT/gw-gw1.msg"
fi

# 2. 503 from the first gateway: next route
call failover-503 2001 uac_ok
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw503.msg" "$CID" '^SIP/2.0 503' && has "$OUT/gw-gw503.msg" "$CID" '^ACK ' \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:2001@127.0.0.1:25072'; then
    pass "503 from gateway 1 fails over to gateway 2 [${ELAPSED} ms]"
else
    fail "failover on 503" "sipp rc=$RC; see $CALLER, gw-gw503.msg, gw-gw2.msg"
fi

# 2b. least-cost routing: the cheapest carrier (gw503) answers 503, the next cheapest (gw2) 200;
# the dearest (gw1) is never tried
call lcr-failover 442079460123 uac_ok
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw503.msg" "$CID" '^INVITE sip:442079460123@127.0.0.1:25073' \
    && has "$OUT/gw-gw503.msg" "$CID" '^SIP/2.0 503' \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:442079460123@127.0.0.1:25072' \
    && ! has "$OUT/gw-gw1.msg" "$CID" '^INVITE '; then
    pass "LCR: 503 from the cheapest carrier fails over to the next cheapest, in price order [${ELAPSED} ms]"
else
    fail "LCR failover in price order" "sipp rc=$RC; see $CALLER, gw-gw503.msg, gw-gw2.msg, gw-gw1.msg"
fi

# 3. silent first gateway: next route after the route's fr_timer (1000 ms)
call failover-timeout 3001 uac_ok
if [[ $RC -eq 0 ]] && has "$OUT/gw-silent.msg" "$CID" '^INVITE sip:3001@127.0.0.1:25074' \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:3001@127.0.0.1:25072' \
    && [[ $ELAPSED -ge 1000 && $ELAPSED -lt 3500 ]]; then
    pass "gateway 1 never answering fails over after fr_timer=1000 ms [${ELAPSED} ms]"
else
    fail "failover after fr_timer" "sipp rc=$RC, elapsed ${ELAPSED} ms (want 1000..3500); see $CALLER, gw-silent.msg, gw-gw2.msg"
fi

# 4. first gateway rings and never answers: CANCEL after the route's fr_inv_timer (1500 ms)
call failover-ringing 4001 uac_ok
if [[ $RC -eq 0 ]] && has "$OUT/gw-ringing.msg" "$CID" '^CANCEL sip:4001@127.0.0.1:25075' \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:4001@127.0.0.1:25072' \
    && has "$CALLER" "$CID" '^SIP/2.0 180' \
    && [[ $ELAPSED -ge 1500 && $ELAPSED -lt 4000 ]]; then
    pass "gateway 1 ringing without answer fails over after fr_inv_timer=1500 ms [${ELAPSED} ms]"
else
    fail "failover after fr_inv_timer" "sipp rc=$RC, elapsed ${ELAPSED} ms (want 1500..4000); see $CALLER, gw-ringing.msg, gw-gw2.msg"
fi

# 5. rewrites and headers as configured in the rule and trunk
call rewrites 5001 uac_ok
MISSING=""
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE ' \
    '^INVITE sip:99\+44001@127\.0\.0\.1:25071 SIP/2\.0' \
    '^From: "Acme alice" <sip:\+1alice@127\.0\.0\.1:25090>;tag=' \
    '^To: "Bob Example" <sip:\+445001@127\.0\.0\.1:25060>' \
    "^X-Route: rewrites" \
    "^X-Orig-Caller: Alice O'Hara" \
    '^X-Carrier: acme'; then
    pass "From/To display and URI rewrites, R-URI strip/prefix and extra headers arrive at the gateway"
else
    fail "rewrites and headers" "sipp rc=$RC; missing ${MISSING:-the INVITE}; see $OUT/gw-gw1.msg"
fi
# the rewritten From URI must also be what the gateway sees in the BYE (uac restores it from the
# Record-Route `vsf` parameter; 5.6.3's uac restores the URI only, not the display name)
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^BYE ' '^From: .*<sip:\+1alice@127\.0\.0\.1:25090>;tag='; then
    pass "rewritten From URI is kept for in-dialog requests (BYE)"
else
    fail "From rewrite in BYE" "see the BYE of $CID in $OUT/gw-gw1.msg"
fi

# 5b. a display name full of JSON-significant characters still makes a valid query
call tricky-display 8001 uac_tricky
if [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE sip:8001@' '^X-Caller: .*The Builder.*Neil'; then
    pass "display name with \" \\ ' is escaped into valid JSON ($(msg "$OUT/gw-gw1.msg" "$CID" '^INVITE ' | grep -m1 '^X-Caller:'))"
else
    fail "JSON escaping of the display name" "sipp rc=$RC; see $CALLER, gw-gw1.msg, c4route.log"
fi

# 6. reject rule: its code and reason reach the caller
call reject 6001 uac_fail
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 403 Forbidden By Policy$'; then
    pass "reject rule's code and reason reach the caller (403 Forbidden By Policy)"
else
    fail "reject rule" "sipp rc=$RC; see $CALLER"
fi

# 7. no rule matches: 404
call no-match 9999 uac_fail
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 404 Not Found$'; then
    pass "no matching rule gives 404 Not Found"
else
    fail "no match" "sipp rc=$RC; see $CALLER"
fi

# 8. hot reload: editing routes.d changes where new calls go
call reload-before 7001 uac_ok
before_ok=0
[[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE sip:7001@' && before_ok=1
v0=$(http_get "http://$IP:$HTTP_PORT/health" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("version",""))' 2>/dev/null)
cat >"$routes/.50-reload.toml.new" <<'EOF'
# edited by run.sh: the reload rule now sends 7001 to gw2
[[rules]]
name = "reload"
match.to.prefix = ["7001"]
then.trunks = ["gw2"]
EOF
mv -f "$routes/.50-reload.toml.new" "$routes/50-reload.toml"   # atomic rename, as editors and git do
reloaded=0
for i in $(seq 50); do
    v1=$(http_get "http://$IP:$HTTP_PORT/health" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("version",""))' 2>/dev/null)
    if [[ -n "$v1" && "$v1" != "$v0" ]]; then reloaded=1; break; fi
    sleep 0.1
done
[[ $reloaded -eq 1 ]] || sleep 2   # no usable /health version: give the watcher time anyway
call reload-after 7001 uac_ok
if [[ $before_ok -eq 1 && $RC -eq 0 ]] && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:7001@127.0.0.1:25072'; then
    pass "editing routes.d while running sends new calls to the new gateway (health version changed: $([[ $reloaded -eq 1 ]] && echo yes || echo no))"
else
    fail "hot reload" "before: $before_ok, after: sipp rc=$RC; see caller-reload-*.msg, gw-gw2.msg, c4route.log"
fi

# 8a. call events (SPEC 9.1), as the recorder saw them on their way to c4route. The contents
# are Kamailio's work; c4route's 204 for each is checked at the end [needs c4route 9.1].
GW503_URI="sip:$IP:$GW503" GW2_URI="sip:$IP:$GW2" SILENT_URI="sip:$IP:$SILENT"
RINGING_URI="sip:$IP:$RINGING" SLOWRING_URI="sip:$IP:$SLOWRING" UNSENDABLE_URI="sip:$IP:25079;transport=tcp"
ev_cids=()
# answered on its first route, held 1.5 s; the gateway rings after 300 ms: one `ended`
CALL_ARGS="-d 1500" call ev-answered 1101 uac_hold
if [[ $RC -eq 0 ]] && ev_ok "$CID" "len(E) == 1 and not F and E[0]['event'] == 'ended' and E[0]['dst_uri'] == '$SLOWRING_URI'
        and 250 <= E[0]['pdd_ms'] <= 1000 and 1 <= E[0]['duration_s'] <= 2 and set(E[0]) == {'event','call_id','dst_uri','pdd_ms','duration_s'}"; then
    pass "events: a call answered on route 1 sends exactly one 'ended' (pdd_ms ~300, duration_s of a 1.5 s call): $EV_SEEN"
else
    fail "events: answered call" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS"
fi
ev_cids+=("$CID")
# 503 then 200: `failed` (503, next = gateway 2, no pdd_ms: it never rang), then `ended`
call ev-failover 2001 uac_ok
if [[ $RC -eq 0 ]] && ev_ok "$CID" "len(E) == 2 and not F
        and [e['event'] for e in E if e['event'] == 'failed'] == ['failed'] and [e['event'] for e in E if e['event'] == 'ended'] == ['ended']
        and [e for e in E if e['event'] == 'failed'][0] == {'event':'failed','call_id':'$CID','dst_uri':'$GW503_URI','code':503,'next':'$GW2_URI'}
        and [e for e in E if e['event'] == 'ended'][0]['dst_uri'] == '$GW2_URI'"; then
    pass "events: failover 503 -> 200 sends one 'failed' (503, next = gateway 2) and one 'ended', no separate feedback report: $EV_SEEN"
else
    fail "events: failover" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS"
fi
ev_cids+=("$CID")
# every route fails: 503 (next = the silent gateway), then its fr_timer: 408 without next
call ev-all-fail 2101 uac_fail
if [[ $RC -eq 0 ]] && ev_ok "$CID" "len(E) == 2 and not F and all(e['event'] == 'failed' for e in E)
        and sorted(E, key=lambda e: 'next' in e) == [{'event':'failed','call_id':'$CID','dst_uri':'$SILENT_URI','code':408},
                                                     {'event':'failed','call_id':'$CID','dst_uri':'$GW503_URI','code':503,'next':'$SILENT_URI'}]"; then
    pass "events: all routes failing sends 'failed' per route, the last (fr_timer expiry, 408) without next: $EV_SEEN"
else
    fail "events: all routes fail" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS"
fi
ev_cids+=("$CID")
# fr_timer expiry on route 1, then gateway 2 answers
call ev-timeout 3001 uac_ok
if [[ $RC -eq 0 ]] && ev_ok "$CID" "len(E) == 2 and {'event':'failed','call_id':'$CID','dst_uri':'$SILENT_URI','code':408,'next':'$GW2_URI'} in E
        and any(e['event'] == 'ended' and e['dst_uri'] == '$GW2_URI' for e in E)"; then
    pass "events: fr_timer expiry sends 'failed' 408 with next, then 'ended': $EV_SEEN"
else
    fail "events: fr_timer expiry" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS"
fi
ev_cids+=("$CID")
# the caller cancels while gateway 1 rings: `failed` 487, pdd_ms (it rang), no next
call ev-cancel 4001 uac_cancel_ringing
if [[ $RC -eq 0 ]] && ev_ok "$CID" "len(E) == 1 and E[0]['event'] == 'failed' and E[0]['code'] == 487 and E[0]['dst_uri'] == '$RINGING_URI'
        and 'next' not in E[0] and 0 <= E[0]['pdd_ms'] < 1000"; then
    pass "events: a CANCEL while the gateway rings sends 'failed' 487 with pdd_ms and no next: $EV_SEEN"
else
    fail "events: CANCEL" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS, $CALLER"
fi
ev_cids+=("$CID")
# route 1 cannot be sent (TCP, and Kamailio listens on UDP only): `failed` with the caller's 500
EV_SEEN=""
call ev-unsendable 9101 uac_fail
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 500' \
    && ev_ok "$CID" "E == [{'event':'failed','call_id':'$CID','dst_uri':'$UNSENDABLE_URI','code':500}]"; then
    pass "events: a route t_relay cannot send is reported 'failed' with the code the caller gets (500): $EV_SEEN"
else
    fail "events: unsendable route" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS, $CALLER"
fi
ev_cids+=("$CID")
# 503, then the next route cannot be sent: the first names it as next, it fails with the caller's 500
EV_SEEN=""
call ev-unsendable-next 9102 uac_fail
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 500 Relay Failed' \
    && ev_ok "$CID" "len(E) == 2 and {'event':'failed','call_id':'$CID','dst_uri':'$GW503_URI','code':503,'next':'$UNSENDABLE_URI'} in E
        and {'event':'failed','call_id':'$CID','dst_uri':'$UNSENDABLE_URI','code':500} in E"; then
    pass "events: a next route t_relay cannot send is named as next, then reported 'failed' with the caller's 500: $EV_SEEN"
else
    fail "events: unsendable next route" "sipp rc=$RC; events: $EV_SEEN; see $EVENTS, $CALLER"
fi
ev_cids+=("$CID")
# Lost-event holes: a Kamailio whose queries pass through the recorder (late or broken answers).
# trunk_calls NAME -> the trunk's calls in c4route's GET /trunks (empty when unreadable)
trunk_calls() {
    http_get "http://$IP:$HTTP_PORT/trunks" | python3 -c 'import json, sys
print({t["name"]: t["calls"] for t in json.load(sys.stdin)["trunks"]}[sys.argv[1]])' "$1" 2>/dev/null
}
# waits (3 s at most) until trunk $1 holds no call; sets TC to the last count seen
trunk_free() {
    local i
    for i in $(seq 30); do TC=$(trunk_calls "$1"); [[ "$TC" == "0" ]] && return 0; sleep 0.1; done
    return 1
}
GW1_URI="sip:$IP:$GW1"
if start_kamailio proxied $KAM_PORT6 -A "C4_API_URL=\"http://$IP:$REC_PORT/kamailio/rtjson\""; then
    proxied_pid=$KPID
    TARGET_PORT=$KAM_PORT6
    # the caller cancels at 200 ms, c4route's answer (route 0 = gw1) comes at 400 ms: the resume
    # answers 487 and frees route 0 with `failed` 487
    EV_SEEN=""
    call ev-cancel-while-routing 1201 uac_cancel
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 487' && has "$CALLER" "$CID" '^SIP/2.0 200' '^CSeq: 1 CANCEL' \
        && ! grep -q "Call-ID: $CID" "$OUT/gw-gw1.msg" \
        && ev_ok "$CID" "E == [{'event':'failed','call_id':'$CID','dst_uri':'$GW1_URI','code':487}]" && trunk_free gw1; then
        pass "events: CANCEL before c4route's answer: 487 to the caller, 'failed' 487 for the answer's route 0, GET /trunks gw1 back to 0 calls: $EV_SEEN"
    else
        fail "events: CANCEL before the answer" "sipp rc=$RC; events: $EV_SEEN; gw1 calls: ${TC:-?}; see $CALLER, $EVENTS, kamailio-proxied.log"
    fi
    ev_cids+=("$CID")
    # rtjson refuses the answer (routing "broken"): 503 to the caller, `failed` 503 for route 0
    EV_SEEN=""
    call ev-refused-answer 2201 uac_fail
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && ! grep -q "Call-ID: $CID" "$OUT/gw-gw503.msg" \
        && ev_ok "$CID" "E == [{'event':'failed','call_id':'$CID','dst_uri':'$GW503_URI','code':503}]" && trunk_free gw503; then
        pass "events: an answer rtjson refuses: 503 to the caller, 'failed' 503 for its route 0, GET /trunks gw503 back to 0 calls: $EV_SEEN"
    else
        fail "events: answer refused by rtjson" "sipp rc=$RC; events: $EV_SEEN; gw503 calls: ${TC:-?}; see $CALLER, $EVENTS, kamailio-proxied.log"
    fi
    ev_cids+=("$CID")
    unset TARGET_PORT
    stop_pid "$proxied_pid"
else
    fail "events: CANCEL before the answer" "kamailio (proxied) did not start: $(grep -m3 -E 'ERROR|CRITICAL' "$OUT/kamailio-proxied.log")"
    fail "events: answer refused by rtjson" "not run: see above"
fi
# c4route takes every event: 204 [needs c4route 9.1; today's main binary answers 404]
# (one look: every event above has already been seen by its own case)
bad_status=$(python3 - "$EVENTS" "${ev_cids[@]}" <<'PYEOF'
import json, sys
cids, st = sys.argv[2:], {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    cid = (r.get("json") or {}).get("call_id")
    if r["path"] == "/kamailio/event" and cid in cids:
        st.setdefault(cid, []).append(r["status"])
print(" ".join("%s:%s" % (c, ",".join(map(str, st.get(c, ["none"])))) for c in cids if st.get(c, [0]) != [204] * len(st.get(c, [0]))))
PYEOF
)
if [[ -z "$bad_status" ]]; then
    pass "c4route answers 204 to every call event above"
else
    fail "c4route takes the events" "statuses other than 204: $bad_status"
fi

# 8b. live gateway state (SPEC section 8): the failure route reports each failed branch to
# c4route; with probing turned on, the silent gateway is found down and calls to it go straight
# to gateway 2 instead of waiting fr_timer. Asserts the order of the setup times, not the times.
metric_of() { # metric_of SERIES -> value (0 when absent)
    http_get "http://$IP:$HTTP_PORT/metrics" | awk -v s="$1" '$1 == s {v = $2} END {print (v == "" ? 0 : v)}'
}
silent_state() {
    http_get "http://$IP:$HTTP_PORT/gateways" | python3 -c 'import json, sys
for g in json.load(sys.stdin)["gateways"]:
    if g["key"] == "sip:127.0.0.1:25074;transport=udp": print(g["state"])' 2>/dev/null
}
fails0=$(metric_of 'c4route_gateway_reports_total{result="failure"}')
call health-before 3001 uac_ok
before_ms=$ELAPSED before_ok=0
[[ $RC -eq 0 ]] && has "$OUT/gw-silent.msg" "$CID" '^INVITE sip:3001@' \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:3001@' && before_ok=1
reported=0
for i in $(seq 40); do
    fails1=$(metric_of 'c4route_gateway_reports_total{result="failure"}')
    if awk -v a="$fails1" -v b="$fails0" 'BEGIN {exit !(a > b)}'; then reported=1; break; fi
    sleep 0.05
done
# turn probing on for the silent gateway (an edit of routes.d, picked up by the reload), and
# probe a SIPp that answers OPTIONS (the prober reads a real SIPp 200)
OPTIONS_GW=25076
start_gw options uas_options $OPTIONS_GW
printf '[trunks.options]\ngateways = ["sip:%s:%s"]\nhealth = { probe = "always", interval = 0.3, timeout = 0.3 }\n' \
    "$IP" "$OPTIONS_GW" >"$routes/60-health.toml"
sed 's/^\[trunks\.silent\]$/[trunks.silent]\nhealth = { probe = "always", interval = 0.3, timeout = 0.3, down_after = 2 }/' \
    "$routes/00-defaults.toml" >"$routes/.00-defaults.toml.new"
mv -f "$routes/.00-defaults.toml.new" "$routes/00-defaults.toml"
detected=0
for i in $(seq 100); do
    [[ "$(silent_state)" == "down" ]] && { detected=1; break; }
    sleep 0.1
done
sipp_probe=""
for i in $(seq 30); do
    sipp_probe=$(http_get "http://$IP:$HTTP_PORT/gateways" | python3 -c 'import json, sys
for g in json.load(sys.stdin)["gateways"]:
    if g["key"] == "sip:127.0.0.1:25076;transport=udp" and g["last_probe"]: print(g["state"], g["last_probe"]["code"])' 2>/dev/null)
    [[ "$sipp_probe" == "up 200" ]] && break
    sleep 0.1
done
if [[ "$sipp_probe" == "up 200" ]] && grep -q '^OPTIONS sip:127.0.0.1:25076 SIP/2.0' "$OUT/gw-options.msg" \
    && grep -q '^User-Agent: c4route/' "$OUT/gw-options.msg"; then
    pass "c4route probes a SIPp gateway with OPTIONS and reads its 200 (/gateways: $sipp_probe)"
else
    fail "OPTIONS probe answered by SIPp" "/gateways says '${sipp_probe}'; see gw-options.msg, c4route.log"
fi
call health-after 3001 uac_ok
after_ms=$ELAPSED
if [[ $before_ok -eq 1 && $reported -eq 1 && $detected -eq 1 && $RC -eq 0 ]] \
    && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:3001@127.0.0.1:25072' \
    && ! grep -q "Call-ID: $CID" "$OUT/gw-silent.msg" \
    && [[ $after_ms -lt $before_ms ]]; then
    pass "silent gateway probed down: call setup ${before_ms} ms before detection (fr_timer, then gateway 2), ${after_ms} ms after (gateway 2 directly); Kamailio reported the failed branch (its 'failed' event counts as the report)"
else
    fail "live gateway state" "before: ok=$before_ok ${before_ms} ms; failure reported: $reported; probed down: $detected; after: rc=$RC ${after_ms} ms; see caller-health-*.msg, gw-silent.msg, c4route.log"
fi

# 9. the other answer layout, and the blocking query: a second Kamailio with
# C4_RTJSON_UNWRAPPED and C4_FAST_SUCCESS (POST /rtjson, bare document), a third with C4_HTTP_SYNC (http_client,
# kept-alive named connection); each routes, rewrites, fails over and rejects the same way.
# variant NAME PORT [defines...]
variant() {
    local name=$1 port=$2
    shift 2
    if ! start_kamailio "$name" "$port" "$@"; then
        fail "$name answers" "kamailio did not start: $(grep -m3 -E 'ERROR|CRITICAL' "$OUT/kamailio-$name.log")"
        return 1
    fi
    TARGET_PORT=$port
    local ok=1 why=""
    call "$name-basic" 1001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE sip:1001@127.0.0.1:25071'; } || { ok=0; why+=" basic(rc=$RC)"; }
    local cid_basic=$CID
    call "$name-rewrites" 5001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE ' '^INVITE sip:99\+44001@' '^From: "Acme alice" <sip:\+1alice@' '^X-Carrier: acme'; } || { ok=0; why+=" rewrites(rc=$RC)"; }
    call "$name-failover" 2001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:2001@127.0.0.1:25072'; } || { ok=0; why+=" failover(rc=$RC)"; }
    local cid_failover=$CID
    call "$name-reject" 6001 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 403 Forbidden By Policy$'; } || { ok=0; why+=" reject(rc=$RC)"; }
    call "$name-no-match" 9999 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 404 Not Found$'; } || { ok=0; why+=" no-match(rc=$RC)"; }
    unset TARGET_PORT
    # its events: `ended` alone for the basic call; `failed` (503, next) and `ended` for the failover
    if [[ " $* " == *" C4_NO_EVENTS "* ]]; then
        ev_ok "$cid_basic" "not E and not F" || { ok=0; why+=" events-basic($EV_SEEN)"; }
        ev_ok "$cid_failover" "not E and F == [{'dst_uri':'sip:$IP:$GW503','code':503,'call_id':'$cid_failover'}]" \
            || { ok=0; why+=" feedback-failover($EV_SEEN)"; }
    else
        ev_ok "$cid_basic" "not F and [e['event'] for e in E] == ['ended']" || { ok=0; why+=" events-basic($EV_SEEN)"; }
        ev_ok "$cid_failover" "not F and sorted(e['event'] for e in E) == ['ended','failed'] and {'event':'failed','call_id':'$cid_failover','dst_uri':'sip:$IP:$GW503','code':503,'next':'sip:$IP:$GW2'} in E" \
            || { ok=0; why+=" events-failover($EV_SEEN)"; }
    fi
    if [[ $ok -eq 1 ]]; then
        pass "$name answers ($*): route, rewrites, failover, reject, no match; call events as expected"
    else
        fail "$name answers" "failed:$why; see caller-$name-*.msg, kamailio-$name.log"
    fi
}
# (C4_FAST_SUCCESS: routed answers skip jansson; rejects and no match still take the general path)
variant unwrapped $KAM_PORT2 -A C4_RTJSON_UNWRAPPED -A C4_FAST_SUCCESS -A "C4_API_URL=\"http://$IP:$HTTP_PORT/rtjson\"" && stop_pid "$KPID"
sync_pid=""
variant sync $KAM_PORT3 -A C4_HTTP_SYNC -A "C4_HTTPCON=\"c4route=>http://$IP:$HTTP_PORT/kamailio/rtjson\"" && sync_pid=$KPID
# events off: today's behaviour, the failure route's section 8 report instead of events
variant noevents $KAM_PORT4 -A C4_NO_EVENTS -A "C4_API_URL=\"http://$IP:$HTTP_PORT/kamailio/rtjson\"" && stop_pid "$KPID"

# 9b. capacity limits (SPEC 9.2) [needs c4route 9.2]: a second c4route on routes-limits.d, its own
# Kamailio (events through a second recorder) and four SIPp gateways answering 200. Concurrency
# and rates are measured on the gateways' side, from their message traces.
# uas_stats FILE... -> per file: "<INVITEs> <max calls at once>", and a last line
# "<first INVITE time> <last INVITE time> <max INVITEs of FILE 1 in any 1 s window>"
uas_stats() {
    python3 - "$@" <<'PYEOF'
import re, sys
from datetime import datetime
allt, first = [], None
for k, path in enumerate(sys.argv[1:]):
    inv, bye = {}, {}
    try:
        text = "\n" + open(path, errors="replace").read()
    except OSError:
        text = ""
    for blk in text.split("\n-----------------------------------------------")[0:]:
        m = re.match(r"\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(UDP message received[^\n]*)\n\n(\S+)", blk)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        cid = re.search(r"^Call-ID: *(\S+)", blk, re.M | re.I)
        if not cid:
            continue
        d = {"INVITE": inv, "BYE": bye}.get(m.group(3))
        if d is not None:
            d.setdefault(cid.group(1), t)
    ev = sorted([(t, 1) for t in inv.values()] + [(t, -1) for t in bye.values()], key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in ev:
        cur += d; peak = max(peak, cur)
    print(len(inv), peak)
    ts = sorted(inv.values())
    allt += ts
    if k == 0:
        first = ts
w = 0
j = 0
for i, t in enumerate(first or []):
    while first[j] <= t - 1.0:
        j += 1
    w = max(w, i - j + 1)
allt.sort()
print("%.3f %.3f %d" % (allt[0] if allt else 0, allt[-1] if allt else 0, w))
PYEOF
}
trunks_json() { http_get "http://$IP:$HTTP_PORT2/trunks"; }
limits_c4=""
"${C4ROUTE_LIMITS:-$C4ROUTE}" serve --routes "$here/routes-limits.d" --listen "$IP:$HTTP_PORT2" >>"$OUT/c4route-limits.log" 2>&1 &
limits_c4=$!
pids+=("$limits_c4")
lim_up=0
for i in $(seq 50); do
    http_get "http://$IP:$HTTP_PORT2/health" >/dev/null 2>&1 && { lim_up=1; break; }
    kill -0 "$limits_c4" 2>/dev/null || break
    sleep 0.1
done
EVENTS2="$OUT/events-limits.jsonl"
: >"$EVENTS2"
if [[ $lim_up -eq 1 ]] && start_recorder $REC_PORT2 $HTTP_PORT2 "$EVENTS2" \
    && REPORT_PORT=$REC_PORT2 start_kamailio limits $KAM_PORT5 -A "C4_API_URL=\"http://$IP:$HTTP_PORT2/kamailio/rtjson\""; then
    lim_kam=$KPID
    lim_gws=()
    for g in "capped $CAPPED" "overflow $OVERFLOW" "cpscapped $CPSCAPPED" "cpsoverflow $CPSOVERFLOW"; do
        set -- $g
        start_gw "$1" uas_200 "$2"
        lim_gws+=("${pids[-1]}")
    done
    sleep 0.5
    # (1) calls = 5 on `capped`: 40 calls held 2 s each, up to 20 at once
    CID="c4e2e-limits-calls-$$"
    timeout 60 sipp "$IP:$KAM_PORT5" -sf "$scen/uac_hold.xml" -s 9501 -i "$IP" -p "$CALLER_PORT" -d 2000 \
        -r 20 -l 20 -m 40 -nostdin -timeout 40 -timeout_error -cid_str "$CID-%u" \
        -trace_err -error_file "$OUT/caller-limits-calls.err" >"$OUT/caller-limits-calls.out" 2>&1
    RC=$?
    read -r cap_n cap_peak <<<"$(uas_stats "$OUT/gw-capped.msg" | sed -n 1p)"
    read -r ovf_n ovf_peak <<<"$(uas_stats "$OUT/gw-overflow.msg" | sed -n 1p)"
    # every call ended, so nothing is held any more once the `ended` events are in
    tr_ok=0 tr=""
    for i in $(seq 30); do
        tr=$(trunks_json)
        python3 -c 'import json, sys
t = {x["name"]: x for x in json.loads(sys.argv[1])["trunks"]}
c, o = t["capped"], t["overflow"]
sys.exit(0 if c["calls"] == 0 and o["calls"] == 0 and c["limits"]["calls"] == 5 and c["left_out"]["calls"] > 0 else 1)' "$tr" 2>/dev/null && { tr_ok=1; break; }
        sleep 0.1
    done
    if [[ $RC -eq 0 && $cap_peak -ge 1 && $cap_peak -le 5 && $cap_n -gt 5 && $ovf_n -ge 1 && $(( cap_n + ovf_n )) -eq 40 && $tr_ok -eq 1 ]]; then
        pass "calls = 5: capped gateway at most $cap_peak calls at once ($cap_n calls in all, took calls again as others ended), overflow $ovf_n (peak $ovf_peak), 0 failed; GET /trunks back to 0 calls after the 'ended' events"
    else
        fail "calls limit" "sipp rc=$RC; capped: $cap_n calls, peak $cap_peak (want 1..5, >5 in all); overflow: $ovf_n, peak $ovf_peak; sum want 40; GET /trunks ok=$tr_ok: ${tr:0:300}; see caller-limits-calls.out, gw-capped.msg, c4route-limits.log, events-limits.jsonl"
    fi
    # (2) cps = 10 on `cpscapped` under 30 CPS for 3 s
    CID="c4e2e-limits-cps-$$"
    timeout 60 sipp "$IP:$KAM_PORT5" -sf "$scen/uac_hold.xml" -s 9502 -i "$IP" -p "$CALLER_PORT" -d 100 \
        -r 30 -l 200 -m 90 -nostdin -timeout 40 -timeout_error -cid_str "$CID-%u" \
        -trace_err -error_file "$OUT/caller-limits-cps.err" >"$OUT/caller-limits-cps.out" 2>&1
    RC=$?
    st=$(uas_stats "$OUT/gw-cpscapped.msg" "$OUT/gw-cpsoverflow.msg")
    read -r cc_n _ <<<"$(sed -n 1p <<<"$st")"
    read -r co_n _ <<<"$(sed -n 2p <<<"$st")"
    read -r t_first t_last w_max <<<"$(sed -n 3p <<<"$st")"
    rate=$(awk -v n="$cc_n" -v a="$t_first" -v b="$t_last" 'BEGIN {d = b - a; if (d < 1) d = 1; printf "%.1f", n / d}')
    if [[ $RC -eq 0 && $(( cc_n + co_n )) -eq 90 && $co_n -ge 1 && $w_max -le 12 ]] \
        && awk -v r="$rate" 'BEGIN {exit !(r >= 8 && r <= 12)}'; then
        pass "cps = 10 under 30 CPS: capped gateway took $cc_n calls over $(awk -v a="$t_first" -v b="$t_last" 'BEGIN {printf "%.2f", b - a}') s ($rate per second, at most $w_max in any 1 s), the other trunk $co_n, 0 failed"
    else
        fail "cps limit" "sipp rc=$RC; capped $cc_n calls ($rate/s, want 8..12; max $w_max in 1 s, want <= 12), other trunk $co_n (sum want 90); see caller-limits-cps.out, gw-cpscapped.msg, c4route-limits.log"
    fi
    # (3) quality (SPEC 9.3) on the same c4route: `poorq` answers 480 (not a failure for gateway
    # state, so only quality can move it) and `goodq` 200. After min_calls = 5 attempts with an
    # ASR under 0.5, goodq takes the calls first; poorq is still tried after it, never removed.
    # Then goodq answers 480 too and poorq 200: the failovers fill poorq's window with good calls,
    # and at 5 answered of 10 it is first again.
    count_inv() { uas_stats "$1" | sed -n 1p | cut -d' ' -f1; }
    poorq_verdict() { # "<poor> <attempts> <asr>" of poorq for the group "quality", from GET /gateways
        python3 -c 'import json, sys
g = [x for x in json.loads(sys.argv[1])["gateways"] if x["key"].startswith("sip:127.0.0.1:25085")][0]
q = [x for x in g["quality"] if x["group"] == "quality"]
print("%s %s %s" % (q[0]["poor"], q[0]["attempts"], q[0]["asr"]) if q else "none")' "$(http_get "http://$IP:$HTTP_PORT2/gateways")" 2>/dev/null
    }
    gwq() { # name scenario port: (re)starts a quality gateway, remembering its pid
        local v="qpid_$1"
        [[ -n "${!v:-}" ]] && stop_pid "${!v}"
        start_gw "$1" "$2" "$3"
        printf -v "$v" '%s' "${pids[-1]}"
    }
    stop_q() { local v="qpid_$1"; [[ -n "${!v:-}" ]] && stop_pid "${!v}"; printf -v "$v" '%s' ""; }
    gwq poorq uas_480 $POORQ
    gwq goodq uas_200 $GOODQ
    sleep 0.3
    CID="c4e2e-quality-$$"
    qcalls() { # phase calls: one call at a time, so each event is in before the next decision
        timeout 60 sipp "$IP:$KAM_PORT5" -sf "$scen/uac_ok.xml" -s 9503 -i "$IP" -p "$CALLER_PORT" \
            -r 4 -l 1 -m "$2" -nostdin -timeout 40 -timeout_error -cid_str "$CID-$1-%u" \
            -trace_err -error_file "$OUT/caller-quality-$1.err" >"$OUT/caller-quality-$1.out" 2>&1
    }
    qcalls a 12
    RC1=$?
    pq1=$(count_inv "$OUT/gw-poorq.msg"); gq1=$(count_inv "$OUT/gw-goodq.msg")
    poor1=$(poorq_verdict)
    # now the good one refuses (480, which Kamailio fails over on) and the poor one answers;
    # new trace files, so each phase counts its own INVITEs
    stop_q goodq; stop_q poorq
    gwq goodqb uas_480 $GOODQ
    gwq poorqb uas_200 $POORQ
    sleep 0.3
    qcalls b 8
    RC2=$?
    pq2=$(count_inv "$OUT/gw-poorqb.msg"); gq2=$(count_inv "$OUT/gw-goodqb.msg")
    poor2=$(poorq_verdict)
    # phase a: poorq first for exactly min_calls = 5 calls, then behind (so only on failover,
    # which never comes: goodq answers), goodq answers all 12.
    # phase b: 5 calls go goodq (480) then poorq (200); from the 6th, poorq is first again and
    # answers, so goodq sees 5 of the 8.
    if [[ $RC1 -eq 0 && $RC2 -eq 0 && $pq1 -eq 5 && $gq1 -eq 12 && "${poor1%% *}" == True \
        && $pq2 -eq 8 && $gq2 -eq 5 && "${poor2%% *}" == False ]]; then
        pass "quality: the 480 gateway was first for 5 calls, then behind (poor: attempts/ASR ${poor1#* }); 12 of 12 answered; when it answered again its window filled and it came back after 5 failovers (attempts/ASR ${poor2#* }), 0 failed"
    else
        fail "quality order" "sipp rc=$RC1/$RC2; phase a: poorq $pq1 INVITEs (want 5), goodq $gq1 (want 12), verdict $poor1 (want True); phase b: poorq $pq2 (want 8), goodq $gq2 (want 5), verdict $poor2 (want False); see caller-quality-*.out, gw-poorq.msg, gw-goodq.msg, c4route-limits.log"
    fi
    stop_pid "$lim_kam"
    # the replica case below runs its own gateways on CAPPED and OVERFLOW
    for p in "${lim_gws[@]}"; do stop_pid "$p"; done
else
    fail "calls limit" "the c4route on routes-limits.d did not start (or its Kamailio): $(tail -3 "$OUT/c4route-limits.log" | tr '\n' ' ')"
    fail "cps limit" "not run: see above"
fi
stop_pid "$limits_c4"

# 9c. the evapi mode (issue 17): a Kamailio with C4_EVAPI, and a c4route connected to it with
# --evapi (on the unmodified test routes.d); queries, answers and events all go over evapi.
evapi_conns() { kamcmd -s "$1" pv.shvGet c4evapi 2>/dev/null | awk '/value:/ {print $2}'; }
if start_kamailio evapi $KAM_PORT7 -A C4_EVAPI -A "C4_EVAPI_BIND=\"$IP:$EVAPI_PORT\""; then
    evapi_kam=$KPID evapi_ctl=$KCTL
    "$C4ROUTE" serve --routes "$here/routes.d" --listen "$IP:$HTTP_PORT3" --evapi "$IP:$EVAPI_PORT" \
        >>"$OUT/c4route-evapi.log" 2>&1 &
    evapi_c4=$!
    pids+=("$evapi_c4")
    up=0
    for i in $(seq 50); do [[ "$(evapi_conns "$evapi_ctl")" == "1" ]] && { up=1; break; }; sleep 0.1; done
    TARGET_PORT=$KAM_PORT7
    ok=1 why=""
    [[ $up -eq 1 ]] || { ok=0; why+=" no-connection($(evapi_conns "$evapi_ctl"))"; }
    call evapi-basic 1001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE sip:1001@127.0.0.1:25071' && has "$OUT/gw-gw1.msg" "$CID" '^BYE '; } || { ok=0; why+=" basic(rc=$RC)"; }
    call evapi-rewrites 5001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE ' '^INVITE sip:99\+44001@' '^From: "Acme alice" <sip:\+1alice@' '^X-Carrier: acme'; } || { ok=0; why+=" rewrites(rc=$RC)"; }
    call evapi-failover 2001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw503.msg" "$CID" '^SIP/2.0 503' && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:2001@127.0.0.1:25072'; } || { ok=0; why+=" failover(rc=$RC)"; }
    call evapi-reject 6001 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 403 Forbidden By Policy$'; } || { ok=0; why+=" reject(rc=$RC)"; }
    call evapi-no-match 9999 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 404 Not Found$'; } || { ok=0; why+=" no-match(rc=$RC)"; }
    call evapi-all-fail 2101 uac_fail
    { [[ $RC -eq 0 ]] && has "$OUT/gw-silent.msg" "$CID" '^INVITE sip:2101@'; } || { ok=0; why+=" all-fail(rc=$RC)"; }
    if [[ $ok -eq 1 ]]; then
        pass "evapi mode (C4_EVAPI): route, rewrites, failover, reject, no match, every route failing"
    else
        fail "evapi mode answers" "failed:$why; see caller-evapi-*.msg, kamailio-evapi.log, c4route-evapi.log"
    fi
    # the events came over evapi too: every call above has ended, so c4route holds nothing (a
    # lost `ended` or `failed` would leave its trunk's calls above 0 for max_duration)
    tr="" ev_free=0
    for i in $(seq 30); do
        tr=$(http_get "http://$IP:$HTTP_PORT3/trunks")
        python3 -c 'import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if d["calls_open"] == 0 and all(t["calls"] == 0 for t in d["trunks"]) else 1)' "$tr" 2>/dev/null && { ev_free=1; break; }
        sleep 0.1
    done
    evs=$(http_get "http://$IP:$HTTP_PORT3/metrics" | awk '/^c4route_call_events_total\{/ && /result="ok"/ {n += $2} END {print n + 0}')
    if [[ $ev_free -eq 1 && ${evs:-0} -ge 6 ]]; then
        pass "evapi mode: events over evapi_relay: GET /trunks back to 0 calls and 0 open records after the calls ($evs events applied)"
    else
        fail "evapi mode: events" "GET /trunks: ${tr:0:300}; events applied: ${evs:-?} (want >= 6); see c4route-evapi.log"
    fi
    # c4route slow: a client that takes the queries and never answers. 503 after C4_HTTP_TIMEOUT
    # (the suspended transaction's fr_timer); a CANCEL meanwhile gets 200 and then 487.
    stop_pid "$evapi_c4"
    for i in $(seq 50); do [[ "$(evapi_conns "$evapi_ctl")" == "0" ]] && break; sleep 0.1; done
    python3 -c 'import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.settimeout(0.5)
end = time.time() + 20          # bounded: gone after 20 s
while time.time() < end:
    try:
        if not s.recv(65536):
            break
    except socket.timeout:
        pass' "$IP" "$EVAPI_PORT" >"$OUT/evapi-stall.log" 2>&1 &
    evapi_stall=$!
    pids+=("$evapi_stall")
    for i in $(seq 50); do [[ "$(evapi_conns "$evapi_ctl")" == "1" ]] && break; sleep 0.1; done
    call evapi-slow 1001 uac_fail
    limit=$((HTTP_TIMEOUT_MS + 1000))
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && [[ $ELAPSED -ge $((HTTP_TIMEOUT_MS - 50)) && $ELAPSED -lt $limit ]]; then
        pass "evapi mode, c4route not answering: caller gets 503 after the ${HTTP_TIMEOUT_MS} ms timeout [${ELAPSED} ms]"
    else
        fail "evapi mode: c4route slow" "sipp rc=$RC, elapsed ${ELAPSED} ms (want $((HTTP_TIMEOUT_MS - 50))..${limit}); see $CALLER, kamailio-evapi.log"
    fi
    call evapi-cancel 1001 uac_cancel
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 487' && has "$CALLER" "$CID" '^SIP/2.0 200' '^CSeq: 1 CANCEL'; then
        pass "evapi mode, CANCEL while c4route does not answer: 200 for the CANCEL, 487 for the INVITE [${ELAPSED} ms]"
    else
        fail "evapi mode: CANCEL while waiting" "sipp rc=$RC; see $CALLER, kamailio-evapi.log"
    fi
    # c4route gone: no connection, 503 at once
    stop_pid "$evapi_stall"
    for i in $(seq 50); do [[ "$(evapi_conns "$evapi_ctl")" == "0" ]] && break; sleep 0.1; done
    call evapi-down 1001 uac_fail
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && [[ $ELAPSED -lt $limit ]]; then
        pass "evapi mode, no c4route connected: caller gets 503 in ${ELAPSED} ms (limit ${limit} ms)"
    else
        fail "evapi mode: c4route down" "sipp rc=$RC, elapsed ${ELAPSED} ms (limit ${limit} ms); see $CALLER"
    fi
    unset TARGET_PORT
    stop_pid "$evapi_kam"
else
    fail "evapi mode answers" "kamailio (C4_EVAPI) did not start: $(grep -m3 -E 'ERROR|CRITICAL' "$OUT/kamailio-evapi.log")"
fi

# 9d. replicas sharing one store (SPEC 9.4, issue 16): one redis-server (started here, empty, no
# persistence), two c4routes on routes-limits.d with --state on it, each with its own Kamailio
# (queries and events of a Kamailio go to its own c4route only), and the gateways CAPPED
# (calls = 5) and OVERFLOW answering 200. (1) Two callers at once, one per Kamailio: the capped
# gateway never has more than 5 calls at once ACROSS BOTH (measured on its side, as in 9b), both
# replicas put calls on it, no call fails, and no channel stays held, here or in the store.
# (2) redis killed (SIGKILL, a crash) while calls come in: no call fails (each replica decides
# from its own state and limits), /health says degraded on both; redis restarted on the same
# port: both ok again, what they queued meanwhile is written, and the next call through each
# takes its channel in the store again.
forget_pid() { # PID: drop a reaped process from the cleanup list (its PID may be reused)
    local p keep=()
    for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
redis_ping() {
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && read -r l <&3 && [[ $l == +PONG* ]]' \
        "$IP" "$REDIS_PORT" 2>/dev/null
}
redis_pid=""
start_redis() { # an empty redis-server on REDIS_PORT; 0 once it answers PING (at most 5 s)
    mkdir -p "$OUT/redis"
    redis-server --bind "$IP" --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
        --dir "$OUT/redis" >>"$OUT/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    local i
    for i in $(seq 50); do
        redis_ping && return 0
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
start_replica() { # NAME PORT: c4route --state on routes-limits.d; sets RPID; 0 once /health answers
    "$C4ROUTE" serve --routes "$here/routes-limits.d" --listen "$IP:$2" --state "redis://$IP:$REDIS_PORT/0" \
        --state-timeout "$STATE_TIMEOUT" >>"$OUT/c4route-$1.log" 2>&1 &
    RPID=$!
    pids+=("$RPID")
    local i
    for i in $(seq 50); do
        http_get "http://$IP:$2/health" >/dev/null 2>&1 && return 0
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
rep_health() { # PORT -> "<status> <state.up> <state.pending> <state.outages>" of GET /health
    python3 -c 'import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    h = json.loads(r.read())
s = h.get("state") or {}
print(h["status"], s.get("up"), s.get("pending"), s.get("outages"))' "http://$IP:$1/health" 2>/dev/null \
        || echo "unreachable"
}
both_health() { # WANT TRIES: 0 once GET /health of both replicas says status WANT (0.1 s a try)
    local i
    for i in $(seq "$2"); do
        [[ "$(rep_health $HTTP_PORT4)" == "$1 "* && "$(rep_health $HTTP_PORT5)" == "$1 "* ]] && return 0
        sleep 0.1
    done
    return 1
}
rep_metric() { # PORT NAME -> a metric's value, summed over its labels (0 when absent)
    http_get "http://$IP:$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {v += $2} END {print v + 0}'
}
rep_free() { # PORT: 0 when neither capped nor overflow holds a call, on this replica nor in the store
    python3 -c 'import json, sys
t = {x["name"]: x for x in json.loads(sys.argv[1])["trunks"]}
sys.exit(0 if all(t[n]["calls"] == 0 and t[n]["shared_calls"] == 0 for n in ("capped", "overflow")) else 1)' \
        "$(http_get "http://$IP:$1/trunks")" 2>/dev/null
}
both_free() { # TRIES (0.1 s a try)
    local i
    for i in $(seq "$1"); do rep_free $HTTP_PORT4 && rep_free $HTTP_PORT5 && return 0; sleep 0.1; done
    return 1
}
cids() { # FILE PREFIX -> how many distinct Call-IDs starting with PREFIX a SIPp trace holds
    tr -d '\r' <"$1" 2>/dev/null | grep -o "^Call-ID: $2[^ ]*" | sort -u | wc -l
}
rep_gws() { # PHASE: (re)starts the capped and overflow gateways with traces gw-PHASE-*.msg
    local p
    for p in "${rep_gw_pids[@]}"; do stop_pid "$p"; forget_pid "$p"; done
    rep_gw_pids=()
    start_gw "$1-capped" uas_200 $CAPPED; rep_gw_pids+=("${pids[-1]}")
    start_gw "$1-overflow" uas_200 $OVERFLOW; rep_gw_pids+=("${pids[-1]}")
    sleep 0.3
}
rep_start() { # PHASE HOLD-MS: 20 calls to the capped rule through each Kamailio at once, 5 a
    # second each, every call held HOLD-MS; Call-IDs c4e2e-PHASE-a-… (Kamailio a), …-b-… (b)
    local side kport cport
    uac_pids=()
    for side in a b; do
        if [[ $side == a ]]; then kport=$KAM_PORT8 cport=$CALLER_PORT; else kport=$KAM_PORT9 cport=$CALLER_PORT2; fi
        timeout 60 sipp "$IP:$kport" -sf "$scen/uac_hold.xml" -s 9501 -i "$IP" -p "$cport" -d "$2" \
            -r 5 -l 20 -m 20 -nostdin -timeout 40 -timeout_error -cid_str "c4e2e-$1-$side-$$-%u" \
            -trace_err -error_file "$OUT/caller-$1-$side.err" >"$OUT/caller-$1-$side.out" 2>&1 &
        uac_pids+=("$!")
        pids+=("$!")
    done
}
rep_wait() { # sets RCA RCB, the callers' exit statuses
    wait "${uac_pids[0]}"; RCA=$?
    wait "${uac_pids[1]}"; RCB=$?
    forget_pid "${uac_pids[0]}"; forget_pid "${uac_pids[1]}"
}
# a loaded 2-core machine may stall a loopback round trip beyond the default 20 ms; a stalled
# reservation decides from local limits (by design), which is not what (1) measures
STATE_TIMEOUT=200ms
rep_gw_pids=()
if ! command -v redis-server >/dev/null; then
    if [[ "${C4ROUTE_SKIP_REDIS:-0}" == 1 ]]; then
        say "SKIP  replicas sharing a store: C4ROUTE_SKIP_REDIS=1 and no redis-server"
    else
        fail "replicas sharing a store" "redis-server not found: run scripts/install-redis.sh (or C4ROUTE_SKIP_REDIS=1 to skip)"
    fi
elif ! start_redis; then
    fail "replicas sharing a store" "redis-server did not start on $IP:$REDIS_PORT: $(tail -3 "$OUT/redis.log" | tr '\n' ' ')"
elif ! { start_replica repa $HTTP_PORT4 && rep_a=$RPID && start_replica repb $HTTP_PORT5 && rep_b=$RPID; } \
    || ! both_health ok 50; then
    fail "replicas sharing a store" "the c4route replicas did not start, or not with the store up: a: $(rep_health $HTTP_PORT4), b: $(rep_health $HTTP_PORT5); see c4route-repa.log, c4route-repb.log"
elif ! { REPORT_PORT=$HTTP_PORT4 start_kamailio repa $KAM_PORT8 -A "C4_API_URL=\"http://$IP:$HTTP_PORT4/kamailio/rtjson\"" \
    && kam_a=$KPID && REPORT_PORT=$HTTP_PORT5 start_kamailio repb $KAM_PORT9 -A "C4_API_URL=\"http://$IP:$HTTP_PORT5/kamailio/rtjson\"" \
    && kam_b=$KPID; }; then
    fail "replicas sharing a store" "a Kamailio did not start: $(grep -h -m3 -E 'ERROR|CRITICAL' "$OUT"/kamailio-rep?.log | tr '\n' ' ')"
else
    # (1) the limit across both: 40 calls, ~20 held at once (10 a second, 2 s each)
    rep_gws rep1
    rep_start rep1 2000
    rep_wait
    read -r cap_n cap_peak <<<"$(uas_stats "$OUT/gw-rep1-capped.msg" | sed -n 1p)"
    read -r ovf_n ovf_peak <<<"$(uas_stats "$OUT/gw-rep1-overflow.msg" | sed -n 1p)"
    cap_a=$(cids "$OUT/gw-rep1-capped.msg" "c4e2e-rep1-a-")
    cap_b=$(cids "$OUT/gw-rep1-capped.msg" "c4e2e-rep1-b-")
    free1=0
    both_free 30 && free1=1
    loc1_a=$(rep_metric $HTTP_PORT4 c4route_state_local_decisions_total)
    loc1_b=$(rep_metric $HTTP_PORT5 c4route_state_local_decisions_total)
    if [[ $RCA -eq 0 && $RCB -eq 0 && $cap_peak -ge 1 && $cap_peak -le 5 && $cap_a -ge 1 && $cap_b -ge 1 && $cap_n -gt 5 \
        && $(( cap_n + ovf_n )) -eq 40 && $free1 -eq 1 ]]; then
        pass "two replicas, one store: the capped gateway had at most $cap_peak calls at once across both Kamailios ($cap_n calls: $cap_a via a, $cap_b via b), overflow $ovf_n (peak $ovf_peak), 0 failed; GET /trunks of both: 0 calls, 0 shared"
    else
        fail "calls limit across replicas" "sipp rc=$RCA/$RCB; capped: $cap_n calls (a $cap_a, b $cap_b; want >= 1 each, > 5 in all), peak $cap_peak (want 1..5); overflow $ovf_n (sum want 40); channels freed: $free1; local decisions (store slow): a $loc1_a, b $loc1_b; see caller-rep1-*.out, gw-rep1-capped.msg, c4route-rep?.log"
    fi
    # (2) the store crashes in the middle of a run, and comes back
    rep_gws rep2
    rep_start rep2 1000
    sleep 1.5
    kill -KILL "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    forget_pid "$redis_pid"
    t_kill=$(now_ms)
    deg=0 deg_ms=""
    both_health degraded 30 && { deg=1; deg_ms=$(( $(now_ms) - t_kill )); }
    rep_wait
    # still degraded once every call is done (nothing closes the breaker but an answer)
    h_a=$(rep_health $HTTP_PORT4) h_b=$(rep_health $HTTP_PORT5)
    [[ "$h_a" == "degraded False "* && "$h_b" == "degraded False "* ]] || deg=0
    out_a=${h_a##* } out_b=${h_b##* }    # state.outages: no new one may follow the restart
    read -r cap_n cap_peak <<<"$(uas_stats "$OUT/gw-rep2-capped.msg" | sed -n 1p)"
    read -r ovf_n _ <<<"$(uas_stats "$OUT/gw-rep2-overflow.msg" | sed -n 1p)"
    loc_a=$(( $(rep_metric $HTTP_PORT4 c4route_state_local_decisions_total) - loc1_a ))
    loc_b=$(( $(rep_metric $HTTP_PORT5 c4route_state_local_decisions_total) - loc1_b ))
    # each replica keeps its own limit while it decides alone: at most 5 + 5
    if [[ $RCA -eq 0 && $RCB -eq 0 && $(( cap_n + ovf_n )) -eq 40 && $cap_peak -le 10 && $deg -eq 1 && $loc_a -ge 1 && $loc_b -ge 1 ]]; then
        pass "redis killed during calls: all 40 calls answered (capped $cap_n, peak $cap_peak <= 5 per replica; overflow $ovf_n), 0 failed; /health seen degraded on both $deg_ms ms after the kill; decisions from local state: a $loc_a, b $loc_b"
    else
        fail "replicas with the store killed" "sipp rc=$RCA/$RCB; answered $(( cap_n + ovf_n )) of 40 (capped $cap_n, peak $cap_peak, want <= 10); degraded on both: $deg (a: $h_a; b: $h_b); local decisions a $loc_a, b $loc_b (want >= 1 each); see caller-rep2-*.out, c4route-rep?.log"
    fi
    t_up=$(now_ms)
    up=0 up_ms="" pend=0 free2=0
    if start_redis && both_health ok 50; then
        up=1 up_ms=$(( $(now_ms) - t_up ))
    fi
    for i in $(seq 30); do
        [[ "$(rep_health $HTTP_PORT4)" == "ok True 0 "* && "$(rep_health $HTTP_PORT5)" == "ok True 0 "* ]] && { pend=1; break; }
        sleep 0.1
    done
    both_free 30 && free2=1
    # the next call through each Kamailio reserves in the store again (no local decision)
    before=$(( loc1_a + loc_a + loc1_b + loc_b ))
    TARGET_PORT=$KAM_PORT8 call rep3-a 9501 uac_ok
    rc3a=$RC
    TARGET_PORT=$KAM_PORT9 call rep3-b 9501 uac_ok
    rc3b=$RC
    after=$(( $(rep_metric $HTTP_PORT4 c4route_state_local_decisions_total) + $(rep_metric $HTTP_PORT5 c4route_state_local_decisions_total) ))
    h_a=$(rep_health $HTTP_PORT4) h_b=$(rep_health $HTTP_PORT5)
    if [[ $up -eq 1 && $pend -eq 1 && $free2 -eq 1 && $rc3a -eq 0 && $rc3b -eq 0 && $after -eq $before \
        && "$h_a" == "ok True 0 $out_a" && "$h_b" == "ok True 0 $out_b" ]]; then
        pass "redis restarted on the same port: /health seen ok on both $up_ms ms after the start and stays ok, queued writes flushed (pending 0), 0 calls held here or in the store, and new calls through each reserve in the store again"
    else
        fail "replicas after the store restarted" "ok on both: $up, still ok with no new outage (had $out_a/$out_b; a: $h_a; b: $h_b); pending flushed: $pend; channels free: $free2; new calls rc=$rc3a/$rc3b, local decisions $before -> $after (want unchanged); see c4route-rep?.log, redis.log"
    fi
    stop_pid "$kam_a"; stop_pid "$kam_b"
fi
for p in "${rep_gw_pids[@]}"; do stop_pid "$p"; done
stop_pid "${rep_a:-}"; stop_pid "${rep_b:-}"
stop_pid "$redis_pid"

# 10. c4route stopped: 503 within the HTTP timeout plus a margin, no transaction left behind
stop_pid "$c4_pid"
say "c4route stopped"
call c4route-down 1001 uac_fail
limit=$((HTTP_TIMEOUT_MS + 1000))
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && [[ $ELAPSED -lt $limit ]]; then
    pass "c4route stopped: caller gets 503 in ${ELAPSED} ms (limit ${limit} ms)"
else
    fail "503 with c4route stopped" "sipp rc=$RC, elapsed ${ELAPSED} ms (limit ${limit} ms); see $CALLER"
fi
if [[ -n "$sync_pid" ]]; then
    TARGET_PORT=$KAM_PORT3
    call sync-c4route-down 1001 uac_fail
    unset TARGET_PORT
    stop_pid "$sync_pid"
    if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && [[ $ELAPSED -lt $limit ]]; then
        pass "c4route stopped, blocking query (C4_HTTP_SYNC): caller gets 503 in ${ELAPSED} ms (limit ${limit} ms)"
    else
        fail "503 with c4route stopped (C4_HTTP_SYNC)" "sipp rc=$RC, elapsed ${ELAPSED} ms (limit ${limit} ms); see $CALLER, kamailio-sync.log"
    fi
fi

# 11. c4route hanging (accepts, never answers): 503 after the HTTP timeout, not tm's fr_timer
python3 - "$IP" "$HTTP_PORT" >"$OUT/stall.log" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64); s.settimeout(0.5)
held, end = [], time.time() + 20          # bounded: gone after 20 s
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
EOF
stall_pid=$!
pids+=("$stall_pid")
sleep 0.3
call c4route-hangs 1001 uac_fail
low=$HTTP_TIMEOUT_MS
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 503' && [[ $ELAPSED -ge $((low - 50)) && $ELAPSED -lt $limit ]]; then
    pass "c4route not answering: caller gets 503 after the ${HTTP_TIMEOUT_MS} ms HTTP timeout [${ELAPSED} ms]"
else
    fail "503 with c4route hanging" "sipp rc=$RC, elapsed ${ELAPSED} ms (want $((low - 50))..${limit}); see $CALLER"
fi

# 12. the caller cancels while Kamailio still waits for the answer: 200 for the CANCEL, 487
call cancel-while-routing 1001 uac_cancel
stop_pid "$stall_pid"
if [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 487' && has "$CALLER" "$CID" '^SIP/2.0 200' '^CSeq: 1 CANCEL' \
    && ! grep -q "Call-ID: $CID" "$OUT/gw-gw1.msg"; then
    pass "CANCEL while the query is pending: 200 for the CANCEL and 487 to the caller, nothing sent to a gateway"
else
    fail "CANCEL while routing" "sipp rc=$RC; see $CALLER"
fi

# tm.stats: `current` still counts finished transactions in their wait state (wait_timer, 5 s);
# `current - waiting` is what is still in progress, and must drop to 0.
active="?"
for i in $(seq 30); do
    active=$(kamcmd -s "$ctl" tm.stats 2>/dev/null | awk -F': *' '/current:/ {c=$2} /waiting:/ {w=$2} END {if (c != "") print c - w}')
    [[ "$active" == "0" ]] && break
    sleep 0.1
done
if [[ "$active" == "0" ]]; then
    pass "no transaction left in progress in Kamailio (tm.stats current - waiting = 0)"
else
    fail "transactions left" "tm.stats current - waiting = '${active}'"
fi

# --- Kamailio health over the whole run --------------------------------------------------------
kamcmd -s "$ctl" stats.get_statistics http_async_client: >"$OUT/http_async_client.stats" 2>&1 || true
flood=$(grep -c 'event_cb(): Cell for handler' "$OUT/kamailio-main.log" || true)
if kill -0 "$kam_pid" 2>/dev/null && ! grep -qE 'exited by a signal|child process [0-9]+ exited|Segmentation' "$OUT/kamailio-main.log"; then
    pass "kamailio still running, no process died (http_async_client: $(tr '\n' ' ' <"$OUT/http_async_client.stats" | sed 's/http_async_client://g; s/  */ /g'); event_cb log lines: $flood)"
else
    fail "kamailio health" "$(grep -m3 -E 'exited|Segmentation|CRITICAL' "$OUT/kamailio-main.log")"
fi

finish
