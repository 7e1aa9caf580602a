//! A throwaway `redis-server` for the shared-state tests (`serve --state`,
//! SPEC §9.4): one child process on `127.0.0.1` and a free port, with no
//! persistence and its own temporary directory, plus a tiny RESP client for
//! assertions on what c4route wrote.
//!
//! Why a real server and not a mock: the shared state is Lua scripts, TTLs and
//! streams, and only Redis runs those the way production does. Install it with
//! `scripts/install-redis.sh`; `C4ROUTE_SKIP_REDIS=1` skips these tests (each
//! says SKIPPED on stderr) on a machine without it.
//!
//! The module is `store_util`, not `redis`: the binary's `redis` crate is
//! visible to the integration tests too, and a local module of the same name
//! would make every `redis::…` path ambiguous.
//!
//! Every wait is bounded in time and every loop in count, so a broken server
//! fails a test instead of hanging it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NOT_INSTALLED: &str = "redis-server is not installed: run scripts/install-redis.sh \
     (or set C4ROUTE_SKIP_REDIS=1 to skip the shared-state tests)";

/// How long a start may take until the server answers PING.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh ports tried when the one picked was taken before redis bound it.
const START_ATTEMPTS: usize = 5;
/// Timeout of each PING while waiting for a start.
const PING_TIMEOUT: Duration = Duration::from_millis(200);
/// Timeout of each connect, write and read of [`RedisServer::cmd`].
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` child process, killed (SIGKILL) when dropped.
pub struct RedisServer {
    /// None between [`RedisServer::kill`] and [`RedisServer::restart`].
    child: Option<Child>,
    port: u16,
    /// The server's `--dir` and its log file (`redis.log`).
    dir: tempfile::TempDir,
}

/// Returns a started server, or None after a loud SKIPPED line on stderr when
/// `C4ROUTE_SKIP_REDIS=1`.
///
/// # Panics
/// When `redis-server` is not installed (with [`NOT_INSTALLED`]) or does not
/// start.
pub fn redis_or_skip() -> Option<RedisServer> {
    if skip_requested(std::env::var("C4ROUTE_SKIP_REDIS").ok().as_deref()) {
        let current = std::thread::current();
        eprintln!(
            "SKIPPED {}: C4ROUTE_SKIP_REDIS=1, this test needs redis-server",
            current.name().unwrap_or("a shared-state test")
        );
        return None;
    }
    Some(RedisServer::start())
}

fn skip_requested(var: Option<&str>) -> bool {
    var.map(str::trim) == Some("1")
}

/// A free port on 127.0.0.1: bound to port 0, then released. Another process
/// may take it before redis binds it; [`RedisServer::start`] then retries.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// Why a start failed.
#[derive(Debug)]
enum StartError {
    /// The port was taken (redis logged "Address already in use").
    PortTaken(String),
    Other(String),
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits (at most 5 s) until it
    /// answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed (with [`NOT_INSTALLED`]) or no
    /// start succeeds.
    pub fn start() -> RedisServer {
        Self::start_with("redis-server", free_port)
    }

    /// [`RedisServer::start`] with the binary and the port picker given, so
    /// the not-installed and port-taken paths are testable.
    fn start_with(bin: &str, mut pick: impl FnMut() -> u16) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("c4route-redis")
            .tempdir()
            .expect("tempdir");
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            s.port = pick();
            match s.spawn(bin) {
                Ok(()) => return s,
                Err(StartError::PortTaken(log)) => failures.push(format!("port {}: {log}", s.port)),
                Err(StartError::Other(why)) => panic!("redis-server did not start: {why}"),
            }
        }
        panic!(
            "redis-server did not start: the port was taken {START_ATTEMPTS} times:\n{}",
            failures.join("\n")
        )
    }

    /// `redis://127.0.0.1:PORT/0`, for `serve --state`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The PID of the running server (None after [`RedisServer::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. Its data
    /// is gone (no persistence). Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this child's PID on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if it
    /// runs), empty. Retries for a second while the old socket is released.
    ///
    /// # Panics
    /// When it does not answer PING, or the port stays taken (by another
    /// process: a restart cannot move to another port).
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..10 {
            match self.spawn("redis-server") {
                Ok(()) => return,
                Err(StartError::PortTaken(log)) => last = log,
                Err(StartError::Other(why)) => panic!("redis-server did not restart: {why}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}: still taken:\n{last}",
            self.port
        )
    }

    /// Sends one command and reads its reply.
    ///
    /// # Panics
    /// When the server cannot be reached or the reply is not RESP; an error
    /// reply (`-ERR …`) is returned as [`Reply::Error`], not a panic.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    /// [`RedisServer::cmd`] returning the I/O error, for a server that may be
    /// down. One connection per command, so a restart needs no reconnect.
    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Reply> {
        self.cmd_within(args, IO_TIMEOUT)
    }

    fn cmd_within(&self, args: &[&str], timeout: Duration) -> std::io::Result<Reply> {
        let s = TcpStream::connect_timeout(&self.addr(), timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut r = BufReader::new(s);
        r.get_mut().write_all(&encode(args))?;
        read_reply(&mut r)
    }

    /// The server's log so far (redis logs to stdout, which goes to a file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// One process start on `self.port`: spawns, then waits until PING
    /// answers PONG or the process exits.
    fn spawn(&mut self, bin: &str) -> Result<(), StartError> {
        let dir = self.dir.path();
        let log_path = dir.join("redis.log");
        let log = File::create(&log_path).expect("create redis.log");
        let log2 = log.try_clone().expect("clone the log file");
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_INSTALLED}"),
            Err(e) => return Err(StartError::Other(format!("spawn {bin}: {e}"))),
        };
        self.child = Some(child);
        self.wait_ready(&log_path)
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(st))) => Some(st.to_string()),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(format!("wait: {e}")),
                None => Some("not started".to_owned()),
            };
            if let Some(status) = exited {
                self.child = None;
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                return Err(if log.contains("Address already in use") {
                    StartError::PortTaken(log)
                } else {
                    StartError::Other(format!("exited ({status}); log:\n{log}"))
                });
            }
            // A short timeout: while the port is someone else's, a connect
            // may succeed and the PING never be answered; the process exit
            // says why on the next turn.
            let ping = self.cmd_within(&["PING"], PING_TIMEOUT);
            if matches!(&ping, Ok(Reply::Status(s)) if s == "PONG") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(StartError::Other(format!(
                    "no PONG on port {} within {START_TIMEOUT:?} (last: {ping:?}); log:\n{}",
                    self.port,
                    std::fs::read_to_string(log_path).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- RESP

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`, `+string` (TYPE).
    Status(String),
    /// `-ERR …`, `-WRONGTYPE …`: the whole line without the `-`.
    Error(String),
    /// `:n`: ZCARD, XLEN, TTL, PTTL, EXISTS, DEL.
    Int(i64),
    /// `$n` (None for `$-1`, a missing key): GET.
    Bulk(Option<String>),
    /// `*n` (None for `*-1`): KEYS, ZRANGE, XRANGE.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply (None for a nil bulk).
    ///
    /// # Panics
    /// On any other kind of reply.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Status(s) => Some(s),
            Reply::Bulk(b) => b.as_deref(),
            other => panic!("expected a status or bulk reply, got {other:?}"),
        }
    }

    /// # Panics
    /// Unless the reply is an integer.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The texts of an array of bulk strings (KEYS), sorted, for assertions
    /// independent of the server's order.
    ///
    /// # Panics
    /// Unless the reply is an array of non-nil bulk or status strings.
    pub fn sorted_texts(&self) -> Vec<String> {
        let Reply::Array(Some(items)) = self else {
            panic!("expected an array reply, got {self:?}");
        };
        let mut v: Vec<String> = items
            .iter()
            .map(|i| {
                i.text()
                    .unwrap_or_else(|| panic!("nil in {self:?}"))
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Larger bulks or arrays are a broken stream, not a test's data.
const MAX_LEN: usize = 16 << 20;
/// Nesting limit of arrays (XRANGE nests three deep).
const MAX_DEPTH: usize = 8;

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    read_at(r, 0)
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn read_at(r: &mut impl BufRead, depth: usize) -> std::io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad(format!("arrays nested deeper than {MAX_DEPTH}")));
    }
    let mut line = Vec::new();
    // Bounded: a line longer than MAX_LEN is not RESP from redis.
    r.take(MAX_LEN as u64).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(bad(format!(
            "reply line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    };
    let text = String::from_utf8_lossy(&body[1..]).into_owned();
    // A length: -1 is nil, anything else must fit MAX_LEN.
    let len = |t: &str| -> std::io::Result<Option<usize>> {
        match t.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if (0..=MAX_LEN as i64).contains(&n) => Ok(Some(n as usize)),
            _ => Err(bad(format!("bad length {t:?}"))),
        }
    };
    match body[0] {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => text
            .parse()
            .map(Reply::Int)
            .map_err(|_| bad(format!("bad integer {text:?}"))),
        b'$' => {
            let Some(n) = len(&text)? else {
                return Ok(Reply::Bulk(None));
            };
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(bad(format!("bulk of {n} bytes without CRLF")));
            }
            data.truncate(n);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&data).into_owned(),
            )))
        }
        b'*' => {
            let Some(n) = len(&text)? else {
                return Ok(Reply::Array(None));
            };
            let items = (0..n)
                .map(|_| read_at(r, depth + 1))
                .collect::<std::io::Result<_>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(bad(format!("unknown reply type {:?}", char::from(other)))),
    }
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> std::io::Result<Reply> {
        read_reply(&mut &bytes[..])
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.to_owned()))
    }

    #[test]
    fn resp_parses_every_reply_kind() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Reply::Status("PONG".into()));
        assert_eq!(
            parse(b"-WRONGTYPE Operation\r\n").unwrap(),
            Reply::Error("WRONGTYPE Operation".into())
        );
        assert_eq!(parse(b":-2\r\n").unwrap(), Reply::Int(-2));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        // A bulk may hold CRLF: its length, not a line end, delimits it.
        assert_eq!(parse(b"$4\r\na\r\nb\r\n").unwrap(), bulk("a\r\nb"));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Array(None));
        assert_eq!(
            parse(b"*2\r\n$1\r\nk\r\n*1\r\n:7\r\n").unwrap(),
            Reply::Array(Some(vec![
                bulk("k"),
                Reply::Array(Some(vec![Reply::Int(7)]))
            ]))
        );
    }

    #[test]
    fn resp_rejects_broken_replies_without_panicking() {
        for broken in [
            &b""[..],
            b"+PONG",
            b"?x\r\n",
            b":x\r\n",
            b"$5\r\nab\r\n",
            b"$2\r\nabcd",
            b"$99999999999\r\n",
            b"*2\r\n:1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(
                parse(broken).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn skip_only_when_the_variable_is_1() {
        assert!(skip_requested(Some("1")));
        assert!(skip_requested(Some(" 1\n")));
        assert!(!skip_requested(None));
        assert!(!skip_requested(Some("0")));
        assert!(!skip_requested(Some("")));
        assert!(!skip_requested(Some("yes")));
    }

    #[test]
    #[should_panic(expected = "redis-server is not installed: run scripts/install-redis.sh")]
    fn a_missing_binary_says_how_to_install_it() {
        RedisServer::start_with("c4route-no-such-redis-server", free_port);
    }

    #[test]
    fn starts_on_loopback_and_answers_ping() {
        let Some(r) = redis_or_skip() else { return };
        assert_ne!(r.port(), 0);
        assert_eq!(r.url(), format!("redis://127.0.0.1:{}/0", r.port()));
        assert_eq!(r.cmd(&["PING"]), Reply::Status("PONG".into()));
        // No persistence: nothing would survive a restart anyway, and no
        // dump.rdb lands in the working directory.
        let save = r.cmd(&["CONFIG", "GET", "save"]).sorted_texts();
        assert_eq!(save, ["", "save"], "{save:?}");
        let aof = r.cmd(&["CONFIG", "GET", "appendonly"]).sorted_texts();
        assert_eq!(aof, ["appendonly", "no"]);
        let bind = r.cmd(&["CONFIG", "GET", "bind"]).sorted_texts();
        assert_eq!(bind, ["127.0.0.1", "bind"]);
        assert!(
            r.log().contains("Ready to accept connections"),
            "{}",
            r.log()
        );
    }

    #[test]
    fn cmd_reads_what_the_state_tests_assert_on() {
        let Some(r) = redis_or_skip() else { return };
        assert_eq!(
            r.cmd(&["SET", "c4route:k", "v 1"]),
            Reply::Status("OK".into())
        );
        assert_eq!(r.cmd(&["GET", "c4route:k"]).text(), Some("v 1"));
        assert_eq!(r.cmd(&["GET", "c4route:none"]), Reply::Bulk(None));
        assert_eq!(r.cmd(&["TTL", "c4route:k"]).int(), -1);
        assert_eq!(r.cmd(&["TTL", "c4route:none"]).int(), -2);
        r.cmd(&["SET", "c4route:t", "x", "PX", "60000"]);
        let pttl = r.cmd(&["PTTL", "c4route:t"]).int();
        assert!((1..=60_000).contains(&pttl), "{pttl}");
        assert_eq!(r.cmd(&["ZADD", "c4route:z", "1", "a", "2", "b"]).int(), 2);
        assert_eq!(r.cmd(&["ZCARD", "c4route:z"]).int(), 2);
        r.cmd(&["XADD", "c4route:s", "*", "f", "v"]);
        assert_eq!(r.cmd(&["XLEN", "c4route:s"]).int(), 1);
        assert_eq!(
            r.cmd(&["KEYS", "c4route:*"]).sorted_texts(),
            ["c4route:k", "c4route:s", "c4route:t", "c4route:z"]
        );
        let Reply::Error(e) = r.cmd(&["ZCARD", "c4route:k"]) else {
            panic!("ZCARD of a string is an error reply");
        };
        assert!(e.starts_with("WRONGTYPE"), "{e}");
    }

    #[test]
    fn kill_then_restart_on_the_same_port_empty() {
        let Some(mut r) = redis_or_skip() else { return };
        let port = r.port();
        let pid = r.pid().unwrap();
        r.cmd(&["SET", "k", "v"]);
        r.kill();
        assert_eq!(r.pid(), None);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} left"
        );
        assert!(r.try_cmd(&["PING"]).is_err(), "a killed server answered");
        r.kill(); // again: nothing to do

        r.restart();
        assert_eq!(r.port(), port);
        assert_ne!(r.pid(), Some(pid));
        assert_eq!(r.cmd(&["PING"]), Reply::Status("PONG".into()));
        assert_eq!(r.cmd(&["GET", "k"]), Reply::Bulk(None), "data survived");

        // restart of a running server kills it first.
        let pid = r.pid().unwrap();
        r.restart();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} left"
        );
        assert_eq!(r.cmd(&["PING"]), Reply::Status("PONG".into()));
    }

    #[test]
    fn drop_kills_the_process() {
        let Some(r) = redis_or_skip() else { return };
        let pid = r.pid().unwrap();
        let proc_dir = format!("/proc/{pid}");
        assert!(Path::new(&proc_dir).exists());
        let addr = r.addr();
        drop(r);
        assert!(!Path::new(&proc_dir).exists(), "pid {pid} left after drop");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_taken_port_is_retried_on_another() {
        if redis_or_skip().is_none() {
            return;
        }
        // Linux refuses to bind a port that has a listener, SO_REUSEADDR or not.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut picks = 0;
        let r = RedisServer::start_with("redis-server", || {
            picks += 1;
            if picks == 1 { taken_port } else { free_port() }
        });
        assert_eq!(picks, 2);
        assert_ne!(r.port(), taken_port);
        assert_eq!(r.cmd(&["PING"]), Reply::Status("PONG".into()));
    }

    #[test]
    fn two_servers_run_side_by_side() {
        let (Some(a), Some(b)) = (redis_or_skip(), redis_or_skip()) else {
            return;
        };
        assert_ne!(a.port(), b.port());
        a.cmd(&["SET", "k", "a"]);
        assert_eq!(b.cmd(&["GET", "k"]), Reply::Bulk(None));
    }
}
