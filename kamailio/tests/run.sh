#!/usr/bin/env bash
# End-to-end suite: SIPp caller -> Kamailio (kamailio/kamailio.cfg, unmodified) -> c4route serve
# -> SIPp gateways, all on 127.0.0.1. Proves with SIPp's exit status and message traces that the
# shipped config and c4route's answers work with the real Debian Kamailio 5.6.3.
#
#   bash kamailio/install.sh && bash kamailio/tests/run.sh
#
# Needs: kamailio with http_async_client (kamailio/install.sh), sipp, python3, and
# target/release/c4route (built with `cargo build --release` when missing).
# Environment: C4ROUTE=/path/to/c4route to test another binary; KEEP_OUT=1 keeps the
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
HTTP_PORT=28080
CALLER_PORT=25090
GW1=25071 GW2=25072 GW503=25073 SILENT=25074 RINGING=25075
HTTP_TIMEOUT_MS=500

C4ROUTE=${C4ROUTE:-$repo/target/release/c4route}
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
if ! kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" >"$OUT/kamailio-check.log" 2>&1; then
    fail "prerequisites" "kamailio -c rejects kamailio/kamailio.cfg (http_async_client missing? run kamailio/install.sh)" \
        "$(grep -m3 -E 'ERROR|CRITICAL' "$OUT/kamailio-check.log")"
    finish
fi
# every mode the config offers must parse too: the defines switch modules and routes on and off
bad_combos=""
for combo in "C4_HTTP_SYNC" "C4_HTTP_SYNC C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS" "C4_NO_FEEDBACK" \
    "C4_HTTP_SYNC C4_NO_FEEDBACK" "C4_RTJSON_UNWRAPPED C4_FAST_SUCCESS" "DROUTING" "STATIC_ROUTING" \
    "STATIC_ROUTING C4_NO_FEEDBACK" "DROUTING C4_NO_FEEDBACK"; do
    defs=()
    for d in $combo; do defs+=(-A "$d"); done
    kamailio -c -f "$kdir/kamailio.cfg" -A "C4_LISTEN=udp:$IP:$KAM_PORT" "${defs[@]}" >"$OUT/kamailio-check-combo.log" 2>&1 \
        || bad_combos+=" [$combo]"
done
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

for port in $KAM_PORT $KAM_PORT2 $KAM_PORT3 $CALLER_PORT $GW1 $GW2 $GW503 $SILENT $RINGING; do
    if ss -Hlun "sport = :$port" 2>/dev/null | grep -q .; then
        fail "prerequisites" "UDP port $port on this machine is already in use"; finish
    fi
done
if ss -Hltn "sport = :$HTTP_PORT" 2>/dev/null | grep -q .; then
    fail "prerequisites" "TCP port $HTTP_PORT is already in use"; finish
fi

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

# --- Kamailio on the shipped config, overrides as -A defines -----------------------------------
# start_kamailio NAME PORT [extra -A defines...]: sets KPID, KCTL; log in $OUT/kamailio-NAME.log
start_kamailio() {
    local name=$1 port=$2 i
    shift 2
    KCTL="unix:$OUT/kamailio-$name.ctl"
    # started from $OUT: import_file looks for kamailio-local.cfg in the current directory first
    (cd "$OUT" && exec kamailio -f "$kdir/kamailio.cfg" -DD -E -m 128 -M 16 -w "$OUT" -P "$OUT/kamailio-$name.pid" \
        -A "C4_LISTEN=udp:$IP:$port" \
        -A "C4_HTTP_TIMEOUT=$HTTP_TIMEOUT_MS" \
        -A "C4_HTTP_WORKERS=2" -A "C4_CHILDREN=2" \
        -A "C4_CTL_SOCKET=\"$KCTL\"" \
        -A "C4_FEEDBACK_URL=\"http://$IP:$HTTP_PORT/kamailio/feedback\"" \
        "$@") >"$OUT/kamailio-$name.log" 2>&1 &
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
sleep 0.5

# --- one call --------------------------------------------------------------------------------
# call NAME NUMBER SCENARIO: sets CID, RC, ELAPSED (ms), CALLER (trace file)
call() {
    local name=$1 number=$2 sf=$3 t0
    CID="c4e2e-$name-$$"
    CALLER="$OUT/caller-$name.msg"
    t0=$(now_ms)
    timeout 30 sipp "$IP:${TARGET_PORT:-$KAM_PORT}" -sf "$scen/$sf.xml" -s "$number" -i "$IP" -p "$CALLER_PORT" \
        -m 1 -nostdin -timeout 20 -timeout_error -cid_str "$CID" \
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
    pass "silent gateway probed down: call setup ${before_ms} ms before detection (fr_timer, then gateway 2), ${after_ms} ms after (gateway 2 directly); Kamailio reported the failed branch"
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
    call "$name-rewrites" 5001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw1.msg" "$CID" '^INVITE ' '^INVITE sip:99\+44001@' '^From: "Acme alice" <sip:\+1alice@' '^X-Carrier: acme'; } || { ok=0; why+=" rewrites(rc=$RC)"; }
    call "$name-failover" 2001 uac_ok
    { [[ $RC -eq 0 ]] && has "$OUT/gw-gw2.msg" "$CID" '^INVITE sip:2001@127.0.0.1:25072'; } || { ok=0; why+=" failover(rc=$RC)"; }
    call "$name-reject" 6001 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 403 Forbidden By Policy$'; } || { ok=0; why+=" reject(rc=$RC)"; }
    call "$name-no-match" 9999 uac_fail
    { [[ $RC -eq 0 ]] && has "$CALLER" "$CID" '^SIP/2.0 404 Not Found$'; } || { ok=0; why+=" no-match(rc=$RC)"; }
    unset TARGET_PORT
    if [[ $ok -eq 1 ]]; then
        pass "$name answers ($*): route, rewrites, failover, reject, no match"
    else
        fail "$name answers" "failed:$why; see caller-$name-*.msg, kamailio-$name.log"
    fi
}
# (C4_FAST_SUCCESS: routed answers skip jansson; rejects and no match still take the general path)
variant unwrapped $KAM_PORT2 -A C4_RTJSON_UNWRAPPED -A C4_FAST_SUCCESS -A "C4_API_URL=\"http://$IP:$HTTP_PORT/rtjson\"" && stop_pid "$KPID"
sync_pid=""
variant sync $KAM_PORT3 -A C4_HTTP_SYNC -A "C4_HTTPCON=\"c4route=>http://$IP:$HTTP_PORT/kamailio/rtjson\"" && sync_pid=$KPID

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
