#!/usr/bin/env python3
"""Development stand-in for the capacity limits of `c4route serve` (SPEC 9.1, 9.2), written to
check kamailio/tests/run.sh's limits cases (9b) before c4route had them. NOT used by the suite
unless asked:

    C4ROUTE_LIMITS=kamailio/tests/dev/mock_limits.py bash kamailio/tests/run.sh

Takes the same command line as the suite gives c4route (`serve --routes DIR --listen ADDR`) but
ignores DIR: it hard-codes kamailio/tests/routes-limits.d (9501 -> capped (calls 5), overflow;
9502 -> cpscapped (cps 10), cpsoverflow). Holds one channel per call on the route Kamailio tries,
from the decision or a `failed` event's `next` until `ended` or `failed` without `next`. Answers
POST /kamailio/rtjson, POST /kamailio/event, GET /trunks, GET /health.
"""
import json
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRUNKS = {  # name: (dst_uri, calls limit, cps limit)
    "capped": ("sip:127.0.0.1:25081", 5, None),
    "overflow": ("sip:127.0.0.1:25082", None, None),
    "cpscapped": ("sip:127.0.0.1:25083", None, 10),
    "cpsoverflow": ("sip:127.0.0.1:25084", None, None),
}
RULES = {"9501": ["capped", "overflow"], "9502": ["cpscapped", "cpsoverflow"]}
BY_DST = {v[0]: k for k, v in TRUNKS.items()}
LOCK = threading.Lock()
held = {}  # call_id -> trunk
attempts = {t: deque() for t in TRUNKS}
left_out = {t: {"calls": 0, "cps": 0} for t in TRUNKS}


def calls_on(t):
    return sum(1 for x in held.values() if x == t)


def cps_on(t, now):
    q = attempts[t]
    while q and q[0] <= now - 1.0:
        q.popleft()
    return len(q)


def route(trunk, user):
    dst = TRUNKS[trunk][0]
    return {"uri": "sip:%s@%s" % (user, dst[4:]), "dst_uri": dst, "path": "", "socket": "",
            "headers": {"from": {"display": "", "uri": ""}, "to": {"display": "", "uri": ""}, "extra": ""},
            "branch_flags": 0, "fr_timer": 2000, "fr_inv_timer": 10000}


def decide(q):
    user = q.get("to_uri", "")[4:].split("@")[0]
    names = next((v for k, v in RULES.items() if user.startswith(k)), None)
    if names is None:
        return {"success": False, "code": 404, "reason": "Not Found"}
    now = time.time()
    with LOCK:
        ok = []
        for t in names:
            _, lc, lr = TRUNKS[t]
            if lc is not None and calls_on(t) >= lc:
                left_out[t]["calls"] += 1
            elif lr is not None and cps_on(t, now) >= lr:
                left_out[t]["cps"] += 1
            else:
                ok.append(t)
        if not ok:
            return {"success": False, "code": 503, "reason": "All Trunks Busy"}
        held[q.get("call_id")] = ok[0]
        attempts[ok[0]].append(now)
    return {"success": True, "version": "1.0", "routing": "serial", "routes": [route(t, user) for t in ok]}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.send(200, {"status": "ok", "version": "mock"})
        if self.path == "/trunks":
            now = time.time()
            with LOCK:
                out = [{"name": t, "calls": calls_on(t), "cps": cps_on(t, now),
                        "limits": {"calls": v[1], "cps": v[2]}, "left_out": dict(left_out[t]),
                        "over_limit": 0} for t, v in TRUNKS.items()]
            return self.send(200, {"trunks": out})
        return self.send(404, {"error": "unknown path"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            q = json.loads(raw)
        except ValueError:
            return self.send(400, {"error": "bad body"})
        if self.path == "/kamailio/rtjson":
            return self.send(200, {"rtjson": decide(q)})
        if self.path == "/kamailio/event":
            cid = q.get("call_id")
            with LOCK:
                if cid not in held:
                    return self.send(404, {"error": "unknown call"})
                if q.get("event") == "failed" and q.get("next") in BY_DST:
                    held[cid] = BY_DST[q["next"]]
                    attempts[held[cid]].append(time.time())
                elif q.get("event") in ("failed", "ended"):
                    del held[cid]
            return self.send(204)
        return self.send(404, {"error": "unknown path"})


def main():
    args = sys.argv[1:]
    listen = args[args.index("--listen") + 1]
    host, port = listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), H)
    srv.daemon_threads = True
    threading.Timer(600, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
