#!/usr/bin/env bash
# The prober's cost (issue 9 target: 10,000 gateways probed every 10 s cost at most 5 % of one
# core in `c4route serve`).
#
#   cargo build --release --locked && bash scripts/bench-probe.sh [GATEWAYS] [INTERVAL_S] [WINDOW_S]
#
# 10,000 distinct gateways (sip:127.0.X.Y:25999, one per loopback address) all answered by one
# SIP responder (python3, one UDP socket on port 25999 of every local address; only loopback
# traffic is sent to it). serve probes each gateway every INTERVAL_S seconds; after one interval
# of warm-up the script reads serve's CPU time (utime + stime, /proc/PID/stat) over WINDOW_S
# seconds and prints it as a share of one core, with the probes answered in that window.
# Bounded: everything it starts is stopped by PID on exit; the whole run takes about
# INTERVAL_S + WINDOW_S + a few seconds.
set -euo pipefail

N=${1:-10000}
INTERVAL=${2:-10}
WINDOW=${3:-30}
PORT=25999
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${C4ROUTE:-$repo/target/release/c4route}
[[ -x "$BIN" ]] || { echo "build first: cargo build --release --locked" >&2; exit 2; }
tmp=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir "$tmp/routes.d"
python3 - "$N" "$INTERVAL" "$PORT" >"$tmp/routes.d/10-gateways.toml" <<'EOF'
import sys
n, interval, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f'[defaults.health]\nprobe = "always"\ninterval = {interval}\ntimeout = 2\n')
per = 100
trunks = (n + per - 1) // per
for t in range(trunks):
    gws = []
    for i in range(t * per, min(n, (t + 1) * per)):
        a, b = divmod(i, 250)
        gws.append(f'"sip:127.0.{a}.{b + 1}:{port}"')
    print(f'[trunks.t{t}]\ngateways = [{", ".join(gws)}]\n')
print('[[rules]]\nname = "all"\nthen.trunks = [' + ", ".join(f'"t{t}"' for t in range(trunks)) + ']')
EOF

# The responder: 200 OK to every OPTIONS, counting them; stops by itself after the run's length.
python3 - "$PORT" "$((INTERVAL + WINDOW + 30))" "$tmp/answered" <<'EOF' &
import socket, sys, time
port, life, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", port))
s.settimeout(0.2)
n, end, last = 0, time.time() + life, 0.0
while time.time() < end:
    try:
        data, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    lines = data.decode(errors="replace").split("\r\n")
    keep = [l for l in lines if l.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    s.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode(), peer)
    n += 1
    if time.time() - last > 0.5:
        open(out, "w").write(str(n)); last = time.time()
open(out, "w").write(str(n))
EOF
pids+=("$!")

"$BIN" serve --routes "$tmp/routes.d" --listen 127.0.0.1:0 --probe-bind 127.0.0.1:0 \
    >"$tmp/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
for _ in $(seq 100); do grep -q "listening on" "$tmp/serve.log" && break; sleep 0.1; done
grep -q "listening on" "$tmp/serve.log" || { cat "$tmp/serve.log" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$serve/stat"; }
hz=$(getconf CLK_TCK)
echo "warming up for one interval (${INTERVAL} s): every gateway probed once"
sleep "$INTERVAL"
a0=$(cat "$tmp/answered" 2>/dev/null || echo 0)
t0=$(ticks); s0=$(date +%s.%N)
sleep "$WINDOW"
t1=$(ticks); s1=$(date +%s.%N)
a1=$(cat "$tmp/answered" 2>/dev/null || echo 0)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$serve/status")
down=$(grep -c "gateway up -> down" "$tmp/serve.log" || true)
python3 - "$t0" "$t1" "$s0" "$s1" "$hz" "$a0" "$a1" "$N" "$INTERVAL" "$rss" "$down" <<'EOF'
import sys
t0, t1, s0, s1, hz, a0, a1, n, interval, rss, down = sys.argv[1:]
wall = float(s1) - float(s0)
cpu = (int(t1) - int(t0)) / int(hz)
probes = int(a1) - int(a0)
print(f"gateways {n}, interval {interval} s: {probes} probes answered in {wall:.1f} s "
      f"({probes / wall:.0f}/s, expected {int(n) / float(interval):.0f}/s)")
print(f"serve CPU {cpu:.2f} s in {wall:.1f} s = {100 * cpu / wall:.2f} % of one core "
      f"(target <= 5 %); RSS {int(rss) / 1024:.0f} MiB; gateways gone down: {down}")
EOF
