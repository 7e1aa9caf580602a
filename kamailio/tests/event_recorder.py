#!/usr/bin/env python3
"""Recording HTTP proxy for the Kamailio e2e suite (kamailio/tests/run.sh).

    python3 kamailio/tests/event_recorder.py LISTEN UPSTREAM LOG [LIFETIME_S] [--delay USER=MS]... [--break USER]...
    e.g.    python3 kamailio/tests/event_recorder.py 127.0.0.1:28090 127.0.0.1:28080 out/events.jsonl

Kamailio sends its call events (POST /kamailio/event) and gateway reports (POST
/kamailio/feedback) here instead of to c4route. Every request is passed on unchanged to the real
`c4route serve` at UPSTREAM and its answer (status and body) returned to Kamailio; one JSON line
per request is appended to LOG:

    {"t": <unix time, s>, "method", "path", "content_type", "body": <raw text>,
     "json": <parsed body or null>, "status": <c4route's status, or 502 when unreachable>}

so the suite sees exactly what Kamailio sent, and what c4route answered. Loopback only; the
process exits by itself after LIFETIME_S seconds (default 600).

Queries can go through it too (C4_API_URL pointing here), so that the suite can make c4route's
answer late or broken for one called number (the R-URI user of the query) while c4route itself
decides as usual (and opens its call record):
    --delay USER=MS   return c4route's answer MS milliseconds late
    --break USER      return it with "routing":"serial" turned into "routing":"broken", which
                      rtjson refuses
"""
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as http_async_client's workers use it

    def log_message(self, *args):  # no access log on stderr
        pass

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        status, body, ctype = 502, b"", "text/plain"
        req = urllib.request.Request(
            "http://%s%s" % (self.server.upstream, self.path),
            data=raw if self.command == "POST" else None,
            method=self.command,
            headers={"Content-Type": self.headers.get("Content-Type", "")} if self.command == "POST" else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", ctype)
        except urllib.error.HTTPError as e:
            status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", ctype)
        except (urllib.error.URLError, OSError) as e:
            body = ("upstream unreachable: %s" % e).encode()
        user = query_user(parsed)
        if user is not None and user in self.server.broken:
            body = re.sub(rb'"routing"\s*:\s*"serial"', b'"routing":"broken"', body)
        if user is not None and user in self.server.delays:
            time.sleep(self.server.delays[user] / 1000.0)
        line = json.dumps({"t": time.time(), "method": self.command, "path": self.path,
                           "content_type": self.headers.get("Content-Type"), "body": text,
                           "json": parsed, "status": status}, sort_keys=True)
        with LOCK, open(self.server.log_path, "a") as f:
            f.write(line + "\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = _handle
    do_GET = _handle


def query_user(parsed):
    """The R-URI user of a routing query (SPEC 2), or None for anything else."""
    if not isinstance(parsed, dict) or "ruri" not in parsed:
        return None
    m = re.match(r"^sips?:([^@;]+)@", str(parsed.get("ruri") or ""))
    return m.group(1) if m else None


def main():
    args, delays, broken = [], {}, set()
    rest = sys.argv[1:]
    while rest:
        a = rest.pop(0)
        if a == "--delay" and rest:
            user, _, ms = rest.pop(0).partition("=")
            delays[user] = float(ms)
        elif a == "--break" and rest:
            broken.add(rest.pop(0))
        else:
            args.append(a)
    if len(args) not in (3, 4):
        sys.exit(__doc__)
    sys.argv = [sys.argv[0]] + args
    host, port = sys.argv[1].rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("event_recorder: loopback addresses only")
    srv = ThreadingHTTPServer((host, int(port)), Recorder)
    srv.daemon_threads = True
    srv.upstream = sys.argv[2]
    srv.log_path = sys.argv[3]
    srv.delays = delays
    srv.broken = broken
    lifetime = float(sys.argv[4]) if len(sys.argv) == 5 else 600.0
    threading.Timer(lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
