//! End-to-end tests of `c4route serve` (SPEC §5): the built binary on
//! `127.0.0.1:0`, a temporary routes.d, and real HTTP/1.1 over TCP.
//!
//! Every wait is bounded in time and every loop in count, so a broken
//! server fails a test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

const QUERY: &str = r#"{"to_uri":"sip:02079460123@example.com","from_uri":"sip:alice@pbx.example","call_id":"serve-test-1"}"#;

/// A routes file whose answer names its table everywhere: rule, gateways
/// and header. `n` picks the gateway addresses.
fn table(tag: &str, n: u8) -> String {
    format!(
        r#"
[trunks.t-{tag}]
gateways = ["sip:192.0.2.{n}:5060", "sip:198.51.100.{n}:5080"]
headers = ["X-Table: {tag}"]

[[rules]]
name = "{tag}"
then.trunks = ["t-{tag}"]

[[rules]]
name = "{tag}-barred"
match.to.prefix = ["0666"]
then.reject = {{ code = 403, reason = "Barred {tag}" }}
"#
    )
}

// ---------------------------------------------------------------- server

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Starts `c4route serve` on a fresh routes.d holding `files`.
    fn start(files: &[(&str, &str)], extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("routes.d");
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self::start_in(tmp, dir, extra)
    }

    fn start_in(tmp: tempfile::TempDir, dir: PathBuf, extra: &[&str]) -> Server {
        let debounce: &[&str] = if extra.contains(&"--reload-debounce") {
            &[]
        } else {
            &["--reload-debounce", "30ms"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_c4route"))
            .arg("serve")
            .arg("--routes")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .args(debounce)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn c4route serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            dir,
            _tmp: tmp,
            log,
            seen: Vec::new(),
        };
        let line = s.wait_log("listening on http://", Duration::from_secs(20));
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address in the listening line");
        s.addr = addr.parse().expect("a socket address");
        s
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no log line with {needle:?} within {timeout:?}; log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    fn health(&self) -> Value {
        let r = self.conn().get("/health");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("health is JSON")
    }

    fn metrics(&self) -> String {
        let r = self.conn().get("/metrics");
        assert_eq!(r.status, 200);
        r.body
    }

    /// Polls /health until `pred` holds (at most `timeout`).
    fn wait_health(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.health();
            if pred(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /health: {h}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_generation(&self, generation: u64) -> Value {
        self.wait_health(
            &format!("generation {generation}"),
            Duration::from_secs(5),
            |h| h["generation"].as_u64() == Some(generation),
        )
    }

    /// The rule that answers `QUERY` now.
    fn rule(&self) -> String {
        let r = self
            .conn()
            .post("/kamailio/rtjson", "text/plain", QUERY.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["rtjson"]["rule"].as_str().unwrap_or("").to_owned()
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Waits (bounded) for the process to exit and returns its status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces a file the way editors and config tools do: write a temporary
/// file next to it, then rename it over the old one.
fn atomic_write(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------- client

/// A minimal HTTP/1.1 client over one keep-alive connection.
struct Conn {
    r: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("write");
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: c4route\r\n");
        if let Some(ct) = ct {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if method == "POST" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.r.get_mut().write_all(&msg)?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap_or((h, ""));
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        let body = String::from_utf8(body).map_err(std::io::Error::other)?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    fn request(&mut self, method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> Resp {
        self.try_request(method, path, ct, body)
            .expect("HTTP exchange")
    }

    fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None, b"")
    }

    fn post(&mut self, path: &str, ct: &str, body: &[u8]) -> Resp {
        self.request("POST", path, Some(ct), body)
    }

    /// Whether the server has closed this connection (EOF within `wait`).
    fn closed_within(&mut self, wait: Duration) -> bool {
        self.r.get_mut().set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        // End of stream, or a reset, is a closed connection.
        match self.r.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

// ---------------------------------------------------------------- tests

#[test]
fn endpoints_answer_and_errors_are_json() {
    let alpha = table("alpha", 1);
    let s = Server::start(&[("10-routes.toml", &alpha)], &[]);
    let mut c = s.conn();

    // Wrapped answer on both Kamailio paths, any content type, one line.
    let a = c.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes());
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
    assert!(!a.body.contains('\n'), "single-line JSON: {}", a.body);
    let v = a.json();
    assert_eq!(v["rtjson"]["success"], true);
    assert_eq!(v["rtjson"]["rule"], "alpha");
    let dst: Vec<_> = v["rtjson"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst_uri"].as_str().unwrap())
        .collect();
    assert!(
        dst.contains(&"sip:192.0.2.1:5060") && dst.contains(&"sip:198.51.100.1:5080"),
        "{dst:?}"
    );
    assert_eq!(
        v["rtjson"]["routes"][0]["headers"]["extra"],
        "X-Table: alpha\r\n"
    );
    let legacy = c.post(
        "/1.0/kamailio/routing",
        "application/json",
        QUERY.as_bytes(),
    );
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body, a.body);
    let none = c.request("POST", "/kamailio/rtjson", None, QUERY.as_bytes());
    assert_eq!(none.body, a.body);
    // JSON sent with libcurl's default form content type is still JSON.
    let curl = c.post(
        "/kamailio/rtjson",
        "application/x-www-form-urlencoded",
        QUERY.as_bytes(),
    );
    assert_eq!(curl.body, a.body);

    // Bare answer: the inner object itself.
    let bare = c.post("/rtjson", "text/plain", QUERY.as_bytes());
    assert_eq!(bare.status, 200);
    assert_eq!(bare.json(), v["rtjson"]);

    // Form data, and a reject.
    let form = c.post(
        "/kamailio/rtjson",
        "application/x-www-form-urlencoded",
        b"to_uri=sip%3A0666123%40example.com&call_id=x",
    );
    assert_eq!(form.status, 200);
    let f = form.json();
    assert_eq!(f["rtjson"]["success"], false);
    assert_eq!(f["rtjson"]["code"], 403);
    assert_eq!(f["rtjson"]["reason"], "Barred alpha");

    // /health
    let h = c.get("/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["rules"], 2);
    assert_eq!(h["trunks"], 1);
    assert_eq!(h["generation"], 1);
    assert!(h["last_error"].is_null());
    assert_eq!(h["version"].as_str().map(str::len), Some(32));
    assert!(h["loaded_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // Client errors.
    for (method, path, body, status) in [
        ("POST", "/kamailio/rtjson", &b"not json"[..], 400),
        ("POST", "/kamailio/rtjson", b"[1,2]", 400),
        ("POST", "/rtjson", b"{\"source_port\":\"http\"}", 400),
        ("POST", "/nope", b"{}", 404),
        ("GET", "/", b"", 404),
        ("GET", "/kamailio/rtjson", b"", 405),
        ("PUT", "/1.0/kamailio/routing", b"{}", 405),
        ("POST", "/health", b"{}", 405),
        ("DELETE", "/metrics", b"", 405),
    ] {
        let r = c.request(method, path, Some("application/json"), body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{method} {path}: {}", r.body);
        if status == 405 {
            assert!(r.header("allow").is_some());
        }
    }
    // 413 by Content-Length, and by a chunked body that grows too large. A
    // client that writes its whole body before reading still gets the 413
    // (the server drains up to 1 MiB instead of resetting under the writes).
    for len in [64 * 1024 + 1, 200 * 1024, 1024 * 1024] {
        let big = vec![b' '; len];
        let r = s.conn().post("/kamailio/rtjson", "application/json", &big);
        assert_eq!(r.status, 413, "{len} bytes");
        assert!(r.json()["error"].is_string());
        assert_eq!(r.header("connection"), Some("close"));
    }
    let mut chunked = s.conn();
    chunked
        .send(b"POST /kamailio/rtjson HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        chunked.send(format!("{:x}\r\n", 30_000).as_bytes());
        chunked.send(&[b' '; 30_000]);
        chunked.send(b"\r\n");
    }
    chunked.send(b"0\r\n\r\n");
    let r = chunked.read_response().expect("413 answer");
    assert_eq!(r.status, 413);

    // /metrics counts what happened.
    let m = s.metrics();
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"routed\"}"),
        5.0
    );
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"rejected\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"bad_request\"}"),
        7.0
    );
    assert_eq!(metric(&m, "c4route_rule_hits_total{rule=\"alpha\"}"), 5.0);
    assert_eq!(
        metric(&m, "c4route_rule_hits_total{rule=\"alpha-barred\"}"),
        1.0
    );
    assert_eq!(metric(&m, "c4route_decision_seconds_count"), 6.0);
    assert_eq!(metric(&m, "c4route_table_rules"), 2.0);
    assert_eq!(metric(&m, "c4route_table_generation"), 1.0);
    assert_eq!(metric(&m, "c4route_config_last_reload_success"), 1.0);
    assert!(metric(&m, "c4route_config_last_reload_success_timestamp_seconds") > 1.7e9);
    assert!(m.contains("c4route_reloads_total{result=\"failed\"} 0"));
    assert!(m.trim_end().ends_with("# EOF"));
}

#[test]
fn skipped_from_rewrites_are_counted() {
    let routes = "[trunks.t]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"t\"]\nthen.rewrite.from.user = \"{to.user}\"\n";
    let s = Server::start(&[("10-routes.toml", routes)], &[]);
    let mut c = s.conn();
    let evil = r#"{"from_uri":"sip:alice@x;tag=1\r\nX-Evil: 1","to_uri":"sip:bob@y"}"#;
    for query in [evil, QUERY] {
        let r = c.post("/kamailio/rtjson", "application/json", query.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = c.post("/kamailio/rtjson", "application/json", evil.as_bytes());
    assert_eq!(
        r.json()["rtjson"]["routes"][0]["headers"]["from"]["uri"],
        ""
    );
    assert_eq!(metric(&s.metrics(), "c4route_rewrites_skipped_total"), 2.0);
}

#[test]
fn invalid_routes_at_startup_exit_1_with_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("10-bad.toml"),
        "[[rules]]\nname = \"x\"\nthen.trunks = [\"nope\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_c4route"))
        .args(["serve", "--listen", "127.0.0.1:0", "--routes"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10-bad.toml:3:"), "{err}");
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn allow_list_refuses_other_clients_with_403() {
    let alpha = table("alpha", 1);
    let s = Server::start(
        &[("10-routes.toml", &alpha)],
        &["--allow", "10.0.0.0/8", "--allow", "2001:db8::/32"],
    );
    let mut c = s.conn();
    let r = c.post("/kamailio/rtjson", "application/json", QUERY.as_bytes());
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(c.get("/health").status, 200, "probes stay open");
    let m = s.metrics();
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"forbidden\"}"),
        1.0
    );

    let ok = Server::start(&[("10-routes.toml", &alpha)], &["--allow", "127.0.0.0/8"]);
    assert_eq!(ok.rule(), "alpha");
}

#[test]
fn keep_alive_is_reused_and_idle_connections_time_out() {
    let alpha = table("alpha", 1);
    let s = Server::start(&[("10-routes.toml", &alpha)], &["--idle-timeout", "700ms"]);
    let mut c = s.conn();
    let local = c.r.get_ref().local_addr().unwrap();
    for _ in 0..20 {
        let r = c.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes());
        assert_eq!(r.status, 200);
        assert_ne!(r.header("connection"), Some("close"));
    }
    assert_eq!(c.r.get_ref().local_addr().unwrap(), local, "one connection");
    let m = c.get("/metrics").body;
    assert_eq!(metric(&m, "c4route_http_connections"), 1.0);
    // Idle past the timeout: the server closes; a new connection works.
    let started = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "idle connection closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(s.rule(), "alpha");
}

#[test]
fn slow_clients_do_not_block_others() {
    let alpha = table("alpha", 1);
    let s = Server::start(
        &[("10-routes.toml", &alpha)],
        &["--idle-timeout", "4s", "--body-timeout", "4s"],
    );
    // Half a request head, and a head with half a body.
    let mut half_head = s.conn();
    half_head.send(b"POST /kamailio/rtjson HTTP/1.1\r\nHost: x\r\nContent-Le");
    let mut half_body = s.conn();
    half_body.send(
        b"POST /kamailio/rtjson HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"to_uri\":",
    );
    let started = Instant::now();
    let mut c = s.conn();
    for _ in 0..20 {
        assert_eq!(
            c.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
                .status,
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "others served while slow clients wait"
    );
    // The slow ones are timed out.
    let r = half_body
        .read_response()
        .expect("an answer to the stalled body");
    assert_eq!(r.status, 408);
    assert!(half_head.closed_within(Duration::from_secs(6)));
}

#[test]
fn reloads_on_edit_rename_create_and_delete() {
    let s = Server::start(&[("10-routes.toml", &table("alpha", 1))], &[]);
    let main = s.dir.join("10-routes.toml");
    assert_eq!(s.rule(), "alpha");

    // In-place write (truncate + write).
    std::fs::write(&main, table("beta", 2)).unwrap();
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");

    // Atomic rename over the file.
    atomic_write(&main, &table("gamma", 3));
    s.wait_generation(3);
    assert_eq!(s.rule(), "gamma");

    // A new file with a rule that wins (lower priority value).
    let extra = s.dir.join("20-extra.toml");
    std::fs::write(
        &extra,
        "[[rules]]\nname = \"delta\"\npriority = 10\nthen.reject = { code = 480, reason = \"Delta\" }\n",
    )
    .unwrap();
    s.wait_generation(4);
    assert_eq!(s.rule(), "delta");
    assert_eq!(s.health()["rules"], 3);

    // Deleting it restores gamma.
    std::fs::remove_file(&extra).unwrap();
    let h = s.wait_generation(5);
    assert_eq!(h["rules"], 2);
    assert_eq!(s.rule(), "gamma");

    // Editor leftovers and vim's probe file change nothing.
    std::fs::write(s.dir.join("4913"), "x").unwrap();
    std::fs::write(s.dir.join(".10-routes.toml.swp"), "garbage [[").unwrap();
    std::fs::remove_file(s.dir.join("4913")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let h = s.health();
    assert_eq!(h["generation"], 5, "unchanged content does not swap");
    assert_eq!(h["status"], "ok");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_table_generation"), 5.0);
    let reloads = metric(&m, "c4route_reloads_total{result=\"ok\"}");
    assert!(reloads >= 4.0);
    // Reading routes.d must not itself trigger another reload (notify
    // reports IN_OPEN events too).
    std::thread::sleep(Duration::from_millis(300));
    let again = metric(&s.metrics(), "c4route_reloads_total{result=\"ok\"}");
    assert_eq!(again, reloads, "reloads keep happening with no change");
}

#[test]
fn reloads_on_configmap_symlink_swap() {
    // The layout kubelet gives a ConfigMap volume:
    //   ..2026_a/10-routes.toml, ..data -> ..2026_a, 10-routes.toml -> ..data/10-routes.toml
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("routes.d");
    std::fs::create_dir_all(dir.join("..2026_a")).unwrap();
    std::fs::write(dir.join("..2026_a/10-routes.toml"), table("alpha", 1)).unwrap();
    std::os::unix::fs::symlink("..2026_a", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/10-routes.toml", dir.join("10-routes.toml")).unwrap();
    let s = Server::start_in(tmp, dir.clone(), &[]);
    assert_eq!(s.rule(), "alpha");

    // kubelet's atomic update: new timestamped dir, new link, rename over ..data.
    std::fs::create_dir_all(dir.join("..2026_b")).unwrap();
    std::fs::write(dir.join("..2026_b/10-routes.toml"), table("beta", 2)).unwrap();
    std::os::unix::fs::symlink("..2026_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_a")).unwrap();
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");
}

#[test]
fn sighup_reloads_without_a_watcher() {
    let mut s = Server::start(&[("10-routes.toml", &table("alpha", 1))], &["--no-watch"]);
    std::fs::write(s.dir.join("10-routes.toml"), table("beta", 2)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.health()["generation"], 1, "--no-watch ignores the change");
    assert_eq!(s.rule(), "alpha");
    s.signal("HUP");
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");
    s.wait_log("routes.d reloaded", Duration::from_secs(5));
    // SIGHUP with nothing changed: no swap.
    s.signal("HUP");
    s.wait_log("unchanged", Duration::from_secs(5));
    assert_eq!(s.health()["generation"], 2);
}

#[test]
fn broken_file_keeps_last_good_table_until_fixed() {
    let alpha = table("alpha", 1);
    let mut s = Server::start(&[("10-routes.toml", &alpha)], &[]);
    let main = s.dir.join("10-routes.toml");

    atomic_write(
        &main,
        &format!("{alpha}\n[[rules]]\nname = \"broken\"\nthen.trunks = [\"nope\"]\n"),
    );
    let h = s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    assert_eq!(h["generation"], 1);
    assert_eq!(h["rules"], 2);
    let err = h["last_error"].as_str().expect("last_error is a string");
    assert!(err.contains("10-routes.toml:"), "{err}");
    assert!(err.contains("error:"), "{err}");
    assert_eq!(s.rule(), "alpha", "the last good table keeps serving");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_reloads_total{result=\"failed\"}"), 1.0);
    assert_eq!(metric(&m, "c4route_config_last_reload_success"), 0.0);
    s.wait_log("10-routes.toml:", Duration::from_secs(5));
    s.wait_log("last good table", Duration::from_secs(5));

    // Restoring the served content: healthy again, nothing to swap.
    atomic_write(&main, &alpha);
    let h = s.wait_health("ok again", Duration::from_secs(5), |h| h["status"] == "ok");
    assert_eq!(h["generation"], 1);
    assert!(h["last_error"].is_null());

    // Broken again, then fixed with new content: swaps.
    std::fs::write(&main, "[[rules]\n").unwrap();
    s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    std::fs::write(&main, table("beta", 2)).unwrap();
    let h = s.wait_health("recovered", Duration::from_secs(5), |h| h["status"] == "ok");
    assert_eq!(h["generation"], 2);
    assert_eq!(s.rule(), "beta");
    assert_eq!(
        metric(&s.metrics(), "c4route_config_last_reload_success"),
        1.0
    );
}

#[test]
fn many_reloads_under_load_never_fail_or_mix() {
    const RELOADS: u64 = 200;
    let (a, b) = (table("alpha", 1), table("beta", 2));
    let s = Server::start(&[("10-routes.toml", &a)], &["--reload-debounce", "2ms"]);
    let main = s.dir.join("10-routes.toml");
    let answer = || {
        s.conn()
            .post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
            .body
    };
    let body_a = answer();
    atomic_write(&main, &b);
    s.wait_generation(2);
    let body_b = answer();
    assert_ne!(body_a, body_b);
    assert!(body_a.contains("alpha") && !body_a.contains("beta"));
    let expected = Arc::new([body_a, body_b]);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, answered, expected, addr) =
                (stop.clone(), answered.clone(), expected.clone(), s.addr);
            std::thread::spawn(move || -> Result<(), String> {
                let keep_alive = i % 2 == 0;
                let mut c = Conn::open(addr);
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut seen = [0usize; 2];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if !keep_alive {
                        c = Conn::open(addr);
                    }
                    let path = if i < 2 {
                        "/kamailio/rtjson"
                    } else {
                        "/1.0/kamailio/routing"
                    };
                    let r = c
                        .try_request("POST", path, Some("text/plain"), QUERY.as_bytes())
                        .map_err(|e| format!("client {i}: request failed: {e}"))?;
                    if r.status != 200 {
                        return Err(format!("client {i}: status {}: {}", r.status, r.body));
                    }
                    match expected.iter().position(|e| *e == r.body) {
                        Some(k) => seen[k] += 1,
                        None => {
                            return Err(format!("client {i}: mixed or unknown answer {}", r.body));
                        }
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();

    let started = Instant::now();
    for n in 0..RELOADS {
        let generation = 3 + n;
        atomic_write(&main, if n % 2 == 0 { &a } else { &b });
        s.wait_generation(generation);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "reloads too slow"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .expect("client thread")
            .expect("no failed or mixed answers");
    }
    let n = answered.load(Ordering::Relaxed);
    assert!(n >= 200, "only {n} answers during {RELOADS} reloads");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_table_generation"), (RELOADS + 2) as f64);
    assert_eq!(metric(&m, "c4route_reloads_total{result=\"failed\"}"), 0.0);
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"bad_request\"}"),
        0.0
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let mut s = Server::start(&[("10-routes.toml", &table("alpha", 1))], &[]);
    let expected = s
        .conn()
        .post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
        .body;
    let idle = s.conn();
    let mut c = s.conn();
    let (first, rest) = QUERY.as_bytes().split_at(QUERY.len() / 2);
    c.send(
        format!("POST /kamailio/rtjson HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", QUERY.len())
            .as_bytes(),
    );
    c.send(first);
    std::thread::sleep(Duration::from_millis(100));
    s.signal("TERM");
    s.wait_log("shutting down", Duration::from_secs(5));
    // No new connections once shutdown started.
    let deadline = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect_timeout(&s.addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "waits for the request in flight"
    );
    c.send(rest);
    let r = c
        .read_response()
        .expect("the in-flight request is answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, expected);
    drop(idle);
    let st = s.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let s = Server::start(
        &[("10-routes.toml", &table("alpha", 1))],
        &["--max-connections", "2"],
    );
    let mut a = s.conn();
    assert_eq!(
        a.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
            .status,
        200
    );
    let mut b = s.conn();
    assert_eq!(
        b.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
            .status,
        200
    );
    // The third connects (kernel backlog) but is not served while two are open.
    let mut c = s.conn();
    c.r.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let waiting = c.try_request(
        "POST",
        "/kamailio/rtjson",
        Some("text/plain"),
        QUERY.as_bytes(),
    );
    assert!(
        waiting.is_err(),
        "served beyond --max-connections: {waiting:?}"
    );
    drop(a);
    c.r.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = c.read_response().expect("served once a slot is free");
    assert_eq!(r.status, 200);
    assert_eq!(
        b.post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
            .status,
        200
    );
}
