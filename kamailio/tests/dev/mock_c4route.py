#!/usr/bin/env python3
"""Development stand-in for `c4route serve` (SPEC section 3), used while the real binary did
not exist yet. NOT used by kamailio/tests/run.sh. Answers by the To user with canned decisions
that mirror kamailio/tests/routes.d; logs every query body to stderr.

    python3 kamailio/tests/dev/mock_c4route.py 127.0.0.1:28080
"""
import hashlib, json, os, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GW = {n: f"sip:127.0.0.1:{p}" for n, p in
      dict(gw1=25071, gw2=25072, gw503=25073, silent=25074, ringing=25075).items()}


def route(gw, user, **extra):
    host = GW[gw][4:]
    r = {"uri": f"sip:{user}@{host}", "dst_uri": GW[gw], "path": "", "socket": "",
         "headers": {"from": {"display": "", "uri": ""}, "to": {"display": "", "uri": ""}, "extra": ""},
         "branch_flags": 0, "fr_timer": 2000, "fr_inv_timer": 10000}
    r.update(extra)
    return r


def decide(q):
    to = q.get("to_uri", "")
    m = re.match(r"^(?:sips?:)?([^@;]*)@", to)
    user = m.group(1) if m else ""
    ok = lambda rule, routes: {"success": True, "version": "1.0", "routing": "serial", "rule": rule, "routes": routes}
    if user.startswith("1001"):
        return ok("basic", [route("gw1", user)])
    if user.startswith("2001"):
        return ok("failover-503", [route("gw503", user), route("gw2", user)])
    if user.startswith("3001"):
        return ok("failover-timeout", [route("silent", user, fr_timer=1000), route("gw2", user)])
    if user.startswith("4001"):
        return ok("failover-ringing", [route("ringing", user, fr_inv_timer=1500), route("gw2", user)])
    if user.startswith("5001"):
        fu = q.get("from_uri", "")
        fname = q.get("from_name", "").strip('"')
        hdrs = {"from": {"display": "\"Acme " + fu[4:].split("@")[0] + "\"", "uri": "sip:+1" + fu[4:]},
                "to": {"display": "\"Bob Example\"", "uri": "sip:+44" + to[4:]},
                "extra": f"X-Route: rewrites\r\nX-Orig-Caller: {fname}\r\nX-Carrier: acme\r\n"}
        return ok("rewrites", [route("gw1", "99+44" + user[1:], headers=hdrs)])
    if user.startswith("7001"):
        text = open(os.path.join(ROUTES, "50-reload.toml")).read() if ROUTES else ""
        m = re.search(r'then.trunks = \["(\w+)"\]', text)
        return ok("reload", [route(m.group(1) if m else "gw1", user)])
    if user.startswith("6001"):
        return {"success": False, "code": 403, "reason": "Forbidden By Policy", "rule": "reject"}
    return {"success": False, "code": 404, "reason": "Not Found", "rule": None}


ROUTES = None


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/health":
            return self.send(404, {"error": "unknown path"})
        h = hashlib.sha256()
        for f in sorted(os.listdir(ROUTES or ".")):
            if f.endswith(".toml") and not f.startswith("."):
                h.update(open(os.path.join(ROUTES, f), "rb").read())
        return self.send(200, {"status": "ok", "version": h.hexdigest()[:16]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(n)
        sys.stderr.write(f"{self.path} {self.headers.get('Content-Type')} {raw.decode(errors='replace')}\n")
        try:
            q = json.loads(raw)
        except ValueError as e:
            return self.send(400, {"error": str(e)})
        d = decide(q)
        if self.path in ("/kamailio/rtjson", "/1.0/kamailio/routing"):
            return self.send(200, {"rtjson": d})
        if self.path == "/rtjson":
            return self.send(200, d)
        return self.send(404, {"error": "unknown path"})

    def send(self, code, obj):
        b = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass


if __name__ == "__main__":
    # also accepts c4route's own arguments: serve --routes DIR --listen ADDR
    args = sys.argv[1:]
    if args and args[0] == "serve":
        if "--help" in args:
            sys.exit(0)
        ROUTES = args[args.index("--routes") + 1]
        args = [args[args.index("--listen") + 1]]
    host, port = args[0].rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), H).serve_forever()
