//! Helpers of the end-to-end tests: a `c4route serve` child process on
//! `127.0.0.1:0` with a temporary routes.d, and a minimal HTTP/1.1 client.
//!
//! Every wait is bounded in time and every loop in count, so a broken
//! server fails a test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const QUERY: &str = r#"{"to_uri":"sip:02079460123@example.com","from_uri":"sip:alice@pbx.example","call_id":"serve-test-1"}"#;

/// A routes file whose answer names its table everywhere: rule, gateways
/// and header. `n` picks the gateway addresses.
pub fn table(tag: &str, n: u8) -> String {
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

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Starts `c4route serve` on a fresh routes.d holding `files`.
    pub fn start(files: &[(&str, &str)], extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("routes.d");
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self::start_in(tmp, dir, extra)
    }

    pub fn start_in(tmp: tempfile::TempDir, dir: PathBuf, extra: &[&str]) -> Server {
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
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
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

    /// Every stderr line so far (those already arrived, without waiting).
    pub fn log_lines(&mut self) -> &[String] {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    pub fn health(&self) -> Value {
        let r = self.conn().get("/health");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("health is JSON")
    }

    /// One trunk of `GET /trunks` (load, limits, times left out).
    pub fn trunk(&self, name: &str) -> Value {
        let r = self.conn().get("/trunks");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["trunks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no trunk {name} in GET /trunks: {}", r.body))
    }

    pub fn metrics(&self) -> String {
        let r = self.conn().get("/metrics");
        assert_eq!(r.status, 200);
        r.body
    }

    /// Polls /health until `pred` holds (at most `timeout`).
    pub fn wait_health(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
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

    pub fn wait_generation(&self, generation: u64) -> Value {
        self.wait_health(
            &format!("generation {generation}"),
            Duration::from_secs(5),
            |h| h["generation"].as_u64() == Some(generation),
        )
    }

    /// The rule that answers `QUERY` now.
    pub fn rule(&self) -> String {
        let r = self
            .conn()
            .post("/kamailio/rtjson", "text/plain", QUERY.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["rtjson"]["rule"].as_str().unwrap_or("").to_owned()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
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
pub fn atomic_write(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------- client

/// A minimal HTTP/1.1 client over one keep-alive connection.
pub struct Conn {
    pub r: BufReader<TcpStream>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("write");
    }

    pub fn try_request(
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

    pub fn read_response(&mut self) -> std::io::Result<Resp> {
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
            // A 204 has no body and no Content-Length.
            .or((status == 204).then_some(0))
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

    pub fn request(&mut self, method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> Resp {
        self.try_request(method, path, ct, body)
            .expect("HTTP exchange")
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None, b"")
    }

    pub fn post(&mut self, path: &str, ct: &str, body: &[u8]) -> Resp {
        self.request("POST", path, Some(ct), body)
    }

    /// Whether the server has closed this connection (EOF within `wait`).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
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

pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// Runs the built `c4route` with `args`, feeding `stdin` (or closing it).
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c4route"));
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn c4route");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

/// Output bytes as text, for assertions.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
