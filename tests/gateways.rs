//! Live gateway state (SPEC §8) through the built binary: SIP OPTIONS
//! probes against UDP responders on loopback that answer 200, answer 503
//! or stay silent; Kamailio's reports; drain and restore; reloads; the
//! offline `eval --down`.
//!
//! Every wait is bounded; intervals are a fraction of a second so the
//! whole file takes a few seconds.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Server, atomic_write, metric};

pub(crate) const OK: u8 = 0;
const FAIL: u8 = 1;
const SILENT: u8 = 2;

/// A SIP UDP responder on 127.0.0.1 answering OPTIONS with 200, 503 or nothing.
/// `replicas.rs` counts the probes of several replicas with it.
pub(crate) struct Responder {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    pub(crate) seen: Arc<AtomicUsize>,
    /// Every request received, as text.
    requests: Receiver<String>,
    /// The code of every reply sent.
    replies: Receiver<u16>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    pub(crate) fn start(mode: u8) -> Responder {
        Self::start_from(mode, None)
    }

    /// A responder on 127.0.0.1 that sends its replies from another socket,
    /// bound to `reply_from` (`127.0.0.2:0`: another host on loopback).
    fn start_from(mode: u8, reply_from: Option<&str>) -> Responder {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let out = reply_from.map(|a| UdpSocket::bind(a).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(mode));
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (req_tx, requests) = channel();
        let (rep_tx, replies) = channel();
        let (m, n, s) = (mode.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Bounded: stops when the test drops it, or after a minute.
            let end = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                n.fetch_add(1, Ordering::SeqCst);
                let code = match m.load(Ordering::SeqCst) {
                    OK => 200,
                    FAIL => 503,
                    _ => 0,
                };
                if code != 0 {
                    let via = out.as_ref().unwrap_or(&sock);
                    let _ = via.send_to(reply(&text, code).as_bytes(), from);
                    let _ = rep_tx.send(code);
                }
                let _ = req_tx.send(text);
            }
        });
        Responder {
            addr,
            mode,
            seen,
            requests,
            replies,
            stop,
        }
    }

    pub(crate) fn uri(&self) -> String {
        format!("sip:{}", self.addr)
    }

    pub(crate) fn key(&self) -> String {
        format!("sip:{};transport=udp", self.addr)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A reply as SIPp's uas scenarios build it: the request's Via, From, To,
/// Call-ID and CSeq echoed, a To tag added.
fn reply(req: &str, code: u16) -> String {
    let reason = if code == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" => out.push_str(&format!("{line};tag=resp\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

fn branch(req: &str) -> String {
    header(req, "via")
        .split(';')
        .find_map(|p| p.strip_prefix("branch="))
        .unwrap_or("")
        .to_owned()
}

/// The dst_uris the server answers QUERY with.
fn order(s: &Server) -> Vec<String> {
    let r = s.conn().post(
        "/kamailio/rtjson",
        "text/plain",
        br#"{"to_uri":"sip:123@example.com","call_id":"gw-test"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["rtjson"]["routes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["dst_uri"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn gateways(s: &Server) -> Vec<Value> {
    let r = s.conn().get("/gateways");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["gateways"].as_array().cloned().unwrap_or_default()
}

fn gateway(s: &Server, key: &str) -> Value {
    gateways(s)
        .into_iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in /gateways"))
}

/// Polls until `pred` holds on `/gateways` (at most `secs`).
fn wait_gateways(s: &Server, what: &str, secs: u64, pred: impl Fn(&[Value]) -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let g = gateways(s);
        if pred(&g) {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {g:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_of(g: &[Value], key: &str) -> String {
    g.iter()
        .find(|x| x["key"] == key)
        .and_then(|x| x["state"].as_str())
        .unwrap_or("?")
        .to_owned()
}

#[test]
fn probes_take_silent_and_failing_gateways_down_behind_the_others_and_back() {
    let (silent, fail, ok) = (
        Responder::start(SILENT),
        Responder::start(FAIL),
        Responder::start(OK),
    );
    let routes = format!(
        r#"
[defaults.health]
probe = "always"
interval = 0.2
timeout = 0.3
down_after = 2
up_after = 1

[trunks.s]
gateways = ["{silent}"]
# Long enough for two retransmissions (500 ms, then 1 s).
health = {{ interval = 1.5, timeout = 1.2 }}

[trunks.t]
gateways = [{{ uri = "{fail}", priority = 1 }}, {{ uri = "{ok}", priority = 2 }}]

[trunks.u]
# The same gateway as in t: one probe stream.
gateways = ["{ok}"]

[[rules]]
name = "all"
then.trunks = ["s", "t"]

[[rules]]
name = "u"
priority = 200
then.trunks = ["u"]
"#,
        silent = silent.uri(),
        fail = fail.uri(),
        ok = ok.uri()
    );
    let mut s = Server::start(&[("10.toml", &routes)], &["--probe-bind", "127.0.0.1:0"]);
    let (ks, kf, ko) = (silent.key(), fail.key(), ok.key());
    wait_gateways(&s, "silent and 503 down", 10, |g| {
        state_of(g, &ks) == "down" && state_of(g, &kf) == "down" && state_of(g, &ko) == "up"
    });
    // Down gateways go last, in their static order; none is removed.
    assert_eq!(order(&s), [ok.uri(), silent.uri(), fail.uri()]);

    let g = gateway(&s, &kf);
    assert_eq!(g["last_probe"]["code"], 503, "{g}");
    assert_eq!(g["trunks"], serde_json::json!(["t"]));
    assert!(g["failures"].as_u64().unwrap() >= 2, "{g}");
    let g = gateway(&s, &ko);
    assert_eq!(g["last_probe"]["code"], 200, "{g}");
    assert!(g["last_probe"]["rtt_ms"].as_f64().is_some(), "{g}");
    assert_eq!(g["trunks"], serde_json::json!(["t", "u"]));
    assert_eq!(gateway(&s, &ks)["last_probe"]["code"], Value::Null);

    // The OPTIONS as sent: RFC 3261 §8.1.1 headers, rport, a fresh branch.
    let reqs: Vec<String> = ok.requests.try_iter().collect();
    assert!(reqs.len() >= 2, "{reqs:?}");
    let r = &reqs[0];
    assert!(
        r.starts_with(&format!("OPTIONS {} SIP/2.0\r\n", ok.uri())),
        "{r}"
    );
    let via = header(r, "via");
    assert!(
        via.starts_with("SIP/2.0/UDP 127.0.0.1:") && via.ends_with(";rport"),
        "{via}"
    );
    assert!(branch(r).starts_with("z9hG4bK"), "{r}");
    assert_eq!(header(r, "max-forwards"), "70");
    assert_eq!(header(r, "cseq"), "1 OPTIONS");
    assert!(header(r, "from").contains(";tag="), "{r}");
    assert!(header(r, "user-agent").starts_with("c4route/"), "{r}");
    assert_eq!(header(r, "content-length"), "0");
    assert_ne!(branch(&reqs[0]), branch(&reqs[1]));
    assert_ne!(header(&reqs[0], "call-id"), header(&reqs[1], "call-id"));
    // One probe stream for a gateway two trunks name: about one probe per
    // 0.2 s interval, not two.
    let n0 = ok.seen.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1000));
    let per_s = ok.seen.load(Ordering::SeqCst) - n0;
    assert!(
        (3..=7).contains(&per_s),
        "{per_s} probes in 1 s at a 0.2 s interval"
    );

    // Timer A: the silent gateway got the same transaction more than once.
    let silent_reqs: Vec<String> = silent.requests.try_iter().collect();
    let first = branch(&silent_reqs[0]);
    let copies = silent_reqs.iter().filter(|r| branch(r) == first).count();
    assert!(copies >= 2, "no retransmission of {first}: {silent_reqs:?}");

    let m = s.metrics();
    assert_eq!(
        metric(&m, &format!("c4route_gateway_up{{gateway=\"{kf}\"}}")),
        0.0
    );
    assert_eq!(
        metric(&m, &format!("c4route_gateway_up{{gateway=\"{ko}\"}}")),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            &format!("c4route_gateway_transitions_total{{gateway=\"{kf}\",state=\"down\"}}")
        ),
        1.0
    );
    assert!(metric(&m, "c4route_probe_rtt_seconds_count") >= 2.0);
    let line = s.wait_log("gateway up -> down", Duration::from_secs(1));
    assert!(line.contains("consecutive failures"), "{line}");

    // The 503 gateway recovers: back in its static place.
    fail.set(OK);
    wait_gateways(&s, "503 gateway up again", 5, |g| state_of(g, &kf) == "up");
    assert_eq!(order(&s), [fail.uri(), ok.uri(), silent.uri()]);
    let line = s.wait_log("gateway down -> up", Duration::from_secs(1));
    assert!(line.contains("probe: 200"), "{line}");
}

#[test]
fn a_state_change_is_in_the_very_next_answer() {
    let gw = Responder::start(OK);
    let routes = format!(
        r#"
[trunks.a]
gateways = ["{gw}"]
health = {{ probe = "always", interval = 1, timeout = 0.5, down_after = 1 }}

[trunks.b]
gateways = ["sip:192.0.2.2"]

[[rules]]
name = "all"
then.trunks = ["a", "b"]
"#,
        gw = gw.uri()
    );
    let s = Server::start(&[("10.toml", &routes)], &["--probe-bind", "127.0.0.1:0"]);
    // Wait for the first successful probe.
    gw.replies
        .recv_timeout(Duration::from_secs(5))
        .expect("a first probe");
    assert_eq!(order(&s)[0], gw.uri());
    gw.set(FAIL);
    // The reply that reaches the threshold (down_after = 1).
    loop {
        let code = gw
            .replies
            .recv_timeout(Duration::from_secs(5))
            .expect("a probe");
        if code == 503 {
            break;
        }
    }
    let tipped = Instant::now();
    let probes = gw.seen.load(Ordering::SeqCst);
    // Visible in an answer before the next probe (1 s later) leaves: no
    // batching, the snapshot is published when the reply is read.
    let end = tipped + Duration::from_secs(2);
    loop {
        if order(&s)[0] != gw.uri() {
            break;
        }
        assert!(Instant::now() < end, "the change never showed");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = tipped.elapsed();
    assert_eq!(
        gw.seen.load(Ordering::SeqCst),
        probes,
        "the change showed only after another probe ({took:?})"
    );
    eprintln!("state change visible in answers {took:?} after the tipping reply left the gateway");
}

#[test]
fn reports_drain_restore_and_clear_errors() {
    let routes = r#"
[defaults.health]
down_after = 3
up_after = 2

[trunks.a]
gateways = [{ uri = "sip:192.0.2.1", priority = 1 }, { uri = "sip:192.0.2.2:5060", priority = 2 }]

[[rules]]
name = "all"
then.trunks = ["a"]
"#;
    let mut s = Server::start(&[("10.toml", routes)], &[]);
    assert_eq!(order(&s), ["sip:192.0.2.1", "sip:192.0.2.2:5060"]);
    let json = |s: &Server, path: &str, body: &str| {
        s.conn().post(path, "application/json", body.as_bytes())
    };
    for _ in 0..3 {
        let r = json(
            &s,
            "/kamailio/feedback",
            r#"{"dst_uri":"sip:192.0.2.1:5060","code":503,"call_id":"c1"}"#,
        );
        assert_eq!(r.status, 204, "{}", r.body);
    }
    wait_gateways(&s, "reported down", 2, |g| {
        state_of(g, "sip:192.0.2.1:5060;transport=udp") == "down"
    });
    assert_eq!(order(&s), ["sip:192.0.2.2:5060", "sip:192.0.2.1"]);
    let line = s.wait_log("gateway up -> down", Duration::from_secs(1));
    assert!(
        line.contains("report: 503 (call c1): 3 consecutive failures"),
        "{line}"
    );
    // Form-encoded, as curl sends it; 200 is a success.
    for _ in 0..2 {
        let r = s.conn().post(
            "/kamailio/feedback",
            "application/x-www-form-urlencoded",
            b"dst_uri=sip%3A192.0.2.1&code=200&call_id=c2",
        );
        assert_eq!(r.status, 204, "{}", r.body);
    }
    wait_gateways(&s, "reported up", 2, |g| {
        state_of(g, "sip:192.0.2.1:5060;transport=udp") == "up"
    });

    // Clear 4xx errors.
    for (body, status, needle) in [
        (
            r#"{"dst_uri":"sip:203.0.113.9","code":503}"#,
            404,
            "no trunk lists the gateway",
        ),
        ("not json", 400, "not JSON"),
        ("[1]", 400, "JSON object"),
        (r#"{"code":503}"#, 400, "dst_uri is missing"),
        (r#"{"dst_uri":"sip:192.0.2.1"}"#, 400, "code is missing"),
        (
            r#"{"dst_uri":"sip:192.0.2.1","code":180}"#,
            400,
            "final SIP code",
        ),
        (
            r#"{"dst_uri":"tel:+44","code":503}"#,
            400,
            "not a sip: or sips: gateway URI",
        ),
    ] {
        let r = json(&s, "/kamailio/feedback", body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(needle),
            "{body}: {}",
            r.body
        );
    }
    let r = json(&s, "/gateways/disable", r#"{"uri":"sip:203.0.113.9"}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no trunk lists")
    );
    let r = json(&s, "/gateways/disable", r#"{}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(s.conn().get("/gateways/disable").status, 405);

    // Drain and restore; the answer changes as soon as the call returns.
    let r = json(&s, "/gateways/disable", r#"{"uri":"sip:192.0.2.1"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "disabled");
    assert_eq!(order(&s), ["sip:192.0.2.2:5060"]);
    let m = s.metrics();
    assert_eq!(
        metric(&m, "c4route_gateway_reports_total{result=\"failure\"}"),
        3.0
    );
    assert_eq!(
        metric(&m, "c4route_gateway_reports_total{result=\"success\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "c4route_gateway_reports_total{result=\"unknown_gateway\"}"
        ),
        1.0
    );

    // A reload keeps the state of a gateway still listed…
    atomic_write(
        &s.dir.join("10.toml"),
        &routes.replace(
            "priority = 2 }]",
            "priority = 2 }, { uri = \"sip:192.0.2.3\", priority = 3 }]",
        ),
    );
    s.wait_generation(2);
    wait_gateways(&s, "the new gateway", 2, |g| g.len() == 3);
    assert_eq!(order(&s), ["sip:192.0.2.2:5060", "sip:192.0.2.3"]);
    let r = json(
        &s,
        "/gateways/enable",
        r#"{"uri":"sip:192.0.2.1:5060;transport=udp"}"#,
    );
    assert_eq!(r.json()["state"], "up");
    assert_eq!(
        order(&s),
        ["sip:192.0.2.1", "sip:192.0.2.2:5060", "sip:192.0.2.3"]
    );
    json(&s, "/gateways/disable", r#"{"uri":"sip:192.0.2.1"}"#);
    // …and forgets one that left.
    atomic_write(
        &s.dir.join("10.toml"),
        &routes.replace("{ uri = \"sip:192.0.2.1\", priority = 1 }, ", ""),
    );
    s.wait_generation(3);
    wait_gateways(&s, "the gateway forgotten", 2, |g| g.len() == 1);
    let r = json(&s, "/gateways/disable", r#"{"uri":"sip:192.0.2.1"}"#);
    assert_eq!(r.status, 404);
    s.wait_log("its state is forgotten", Duration::from_secs(2));
    assert!(!s.metrics().contains("192.0.2.1:5060"));
}

#[test]
fn drain_and_reports_obey_allow() {
    let routes = "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\n";
    let s = Server::start(&[("10.toml", routes)], &["--allow", "10.0.0.0/8"]);
    for path in [
        "/gateways/disable",
        "/gateways/enable",
        "/kamailio/feedback",
    ] {
        let r = s.conn().post(
            path,
            "application/json",
            br#"{"uri":"sip:192.0.2.1","dst_uri":"sip:192.0.2.1","code":503}"#,
        );
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    // The gateways' state names carriers' addresses: not for everyone.
    let r = s.conn().get("/gateways");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("not allowed"));
    // /health and /metrics stay open.
    assert_eq!(s.conn().get("/health").status, 200);
    assert_eq!(s.conn().get("/metrics").status, 200);
}

fn c4route(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_c4route"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_down_and_check_say_what_they_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("routes.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("10.toml"),
        r#"
[defaults.health]
probe = "always"
[trunks.a]
gateways = [
  { uri = "sip:192.0.2.1", priority = 1 },
  { uri = "sip:192.0.2.2", priority = 2 },
  { uri = "sips:192.0.2.3", priority = 3 },
]
[[rules]]
name = "r"
then.trunks = ["a"]
"#,
    )
    .unwrap();
    let q = tmp.path().join("q.json");
    std::fs::write(&q, r#"{"to_uri":"sip:1@x","call_id":"c"}"#).unwrap();
    let (d, q) = (dir.to_str().unwrap(), q.to_str().unwrap());
    let dsts = |out: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v["rtjson"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dst_uri"].as_str().unwrap().to_owned())
            .collect()
    };
    let (code, out, _) = c4route(&["eval", d, q]);
    assert_eq!(code, 0);
    assert_eq!(
        dsts(&out),
        ["sip:192.0.2.1", "sip:192.0.2.2", "sips:192.0.2.3"]
    );
    let (code, out, _) = c4route(&[
        "eval",
        d,
        q,
        "--down",
        "sip:192.0.2.1:5060",
        "--down",
        "SIP:192.0.2.2",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        dsts(&out),
        ["sips:192.0.2.3", "sip:192.0.2.1", "sip:192.0.2.2"]
    );
    let (code, _, err) = c4route(&["eval", d, q, "--down", "sip:192.0.2.9"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--down: no trunk lists the gateway \"sip:192.0.2.9\""),
        "{err}"
    );
    let (code, _, err) = c4route(&["check", d]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("cannot be probed").count(), 1, "{err}");
    assert!(
        err.contains("gateway \"sips:192.0.2.3\" cannot be probed"),
        "{err}"
    );
}

/// A SIP TCP responder answering every OPTIONS on its connections with `code`.
fn tcp_responder(code: u16) -> (SocketAddr, Arc<AtomicBool>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        while !s.load(Ordering::Relaxed) && Instant::now() < end {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let req = String::from_utf8_lossy(&buf).into_owned();
            let _ = c.write_all(reply(&req, code).as_bytes());
        }
    });
    (addr, stop)
}

#[test]
fn tcp_gateways_are_probed_over_tcp() {
    let (addr, stop) = tcp_responder(503);
    let routes = format!(
        r#"
[trunks.a]
gateways = ["sip:{addr};transport=tcp"]
health = {{ probe = "always", interval = 0.2, timeout = 1, down_after = 2 }}

[[rules]]
name = "all"
then.trunks = ["a"]
"#
    );
    let s = Server::start(&[("10.toml", &routes)], &[]);
    let key = format!("sip:{addr};transport=tcp");
    wait_gateways(&s, "the TCP gateway down", 5, |g| {
        state_of(g, &key) == "down"
    });
    let g = gateway(&s, &key);
    assert_eq!(g["last_probe"]["code"], 503, "{g}");
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_reply_from_another_host_does_not_answer_a_probe() {
    // The gateway itself is silent; a reply carrying its probe's branch and
    // Call-ID comes from 127.0.0.2, another host. A second gateway answers
    // from another port of its own host, which RFC 3261 allows.
    let forged = Responder::start_from(OK, Some("127.0.0.2:0"));
    let other_port = Responder::start_from(OK, Some("127.0.0.1:0"));
    let routes = format!(
        r#"
[defaults.health]
probe = "always"
interval = 0.2
timeout = 0.3
down_after = 2

[trunks.a]
gateways = ["{forged}", "{other}"]

[[rules]]
name = "all"
then.trunks = ["a"]
"#,
        forged = forged.uri(),
        other = other_port.uri()
    );
    let s = Server::start(&[("10.toml", &routes)], &["--probe-bind", "127.0.0.1:0"]);
    let (kf, ko) = (forged.key(), other_port.key());
    wait_gateways(&s, "the gateway with forged replies down", 5, |g| {
        state_of(g, &kf) == "down"
    });
    assert!(
        forged.replies.try_iter().count() >= 2,
        "forged replies were sent"
    );
    let g = gateways(&s);
    assert_eq!(state_of(&g, &ko), "up", "{g:?}");
    assert_eq!(gateway(&s, &ko)["last_probe"]["code"], 200);
    let m = s.metrics();
    assert!(
        metric(
            &m,
            "c4route_probe_replies_dropped_total{reason=\"wrong_source\"}"
        ) >= 2.0,
        "{m}"
    );
}

#[test]
fn a_dead_gateway_goes_down_when_interval_is_longer_than_retry_after() {
    // interval 1.5 s > retry_after 1 s: every failed probe comes more than
    // retry_after after the previous one, and they still add up.
    let silent = Responder::start(SILENT);
    let routes = format!(
        r#"
[trunks.a]
gateways = ["{gw}"]
health = {{ probe = "always", interval = 1.5, timeout = 0.3, down_after = 2, retry_after = 1 }}

[[rules]]
name = "all"
then.trunks = ["a"]
"#,
        gw = silent.uri()
    );
    let s = Server::start(&[("10.toml", &routes)], &["--probe-bind", "127.0.0.1:0"]);
    wait_gateways(&s, "the silent gateway down", 8, |g| {
        state_of(g, &silent.key()) == "down"
    });
}

#[test]
fn when_down_probes_only_a_gateway_that_is_down_disabled_or_not() {
    let gw = Responder::start(OK);
    let routes = format!(
        r#"
[trunks.a]
gateways = ["{gw}"]
health = {{ probe = "when_down", interval = 0.1, timeout = 0.3, down_after = 1, up_after = 1 }}

[[rules]]
name = "all"
then.trunks = ["a"]
"#,
        gw = gw.uri()
    );
    let s = Server::start(&[("10.toml", &routes)], &["--probe-bind", "127.0.0.1:0"]);
    let post = |path: &str, body: &str| s.conn().post(path, "application/json", body.as_bytes());
    let uri = format!(r#"{{"uri":"{}"}}"#, gw.uri());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gw.seen.load(Ordering::SeqCst), 0, "up: not probed");
    // Disabled while healthy: still not probed.
    assert_eq!(post("/gateways/disable", &uri).status, 200);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        gw.seen.load(Ordering::SeqCst),
        0,
        "a disabled gateway that is up was probed"
    );
    // Down by a report while disabled: probed until its probes bring it up.
    let report = format!(r#"{{"dst_uri":"{}","code":503}}"#, gw.uri());
    assert_eq!(post("/kamailio/feedback", &report).status, 204);
    gw.replies
        .recv_timeout(Duration::from_secs(3))
        .expect("a probe of the down, disabled gateway");
    wait_gateways(&s, "up by health (still disabled)", 3, |g| {
        g[0]["failures"] == 0 && g[0]["successes"].as_u64() >= Some(1)
    });
    assert_eq!(gateway(&s, &gw.key())["state"], "disabled");
    let r = post("/gateways/enable", &uri);
    assert_eq!(r.json()["state"], "up", "{}", r.body);
}

#[test]
fn oversized_report_and_command_bodies_get_413() {
    let routes = "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\n";
    let s = Server::start(&[("10.toml", routes)], &[]);
    let pad = "x".repeat(70 * 1024);
    let body =
        format!(r#"{{"dst_uri":"sip:192.0.2.1","uri":"sip:192.0.2.1","code":503,"pad":"{pad}"}}"#);
    for path in [
        "/kamailio/feedback",
        "/gateways/disable",
        "/gateways/enable",
        "/kamailio/rtjson",
    ] {
        let r = s.conn().post(path, "application/json", body.as_bytes());
        assert_eq!(r.status, 413, "{path}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("larger than"),
            "{path}: {}",
            r.body
        );
        assert_eq!(r.header("connection"), Some("close"), "{path}");
    }
    assert_eq!(
        gateway(&s, "sip:192.0.2.1:5060;transport=udp")["state"],
        "up"
    );
}

/// Sends `requests` in one write (HTTP/1.1 pipelining) and reads as many
/// responses.
fn pipelined(s: &Server, requests: &[(&str, &str)]) -> Vec<crate::util::Resp> {
    let mut c = s.conn();
    let mut bytes = Vec::new();
    for (path, body) in requests {
        bytes.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: c4route\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    c.send(&bytes);
    requests
        .iter()
        .map(|_| c.read_response().expect("a pipelined response"))
        .collect()
}

#[test]
fn a_report_is_in_force_when_its_204_is_sent() {
    let routes = r#"
[defaults.health]
down_after = 1
up_after = 1

[trunks.a]
gateways = [{ uri = "sip:192.0.2.1", priority = 1 }, { uri = "sip:192.0.2.2", priority = 2 }]

[[rules]]
name = "all"
then.trunks = ["a"]
"#;
    // One worker thread: the state task can run only when the connection
    // yields, so a 204 sent before the report is applied shows at once.
    let s = Server::start(&[("10.toml", routes)], &["--threads", "1"]);
    let query = r#"{"to_uri":"sip:123@example.com","call_id":"gw-test"}"#;
    let first = |r: &crate::util::Resp| -> String {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["rtjson"]["routes"][0]["dst_uri"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    for round in 0..10 {
        for (code, want) in [(503, "sip:192.0.2.2"), (200, "sip:192.0.2.1")] {
            let report = format!(r#"{{"dst_uri":"sip:192.0.2.1","code":{code}}}"#);
            let r = pipelined(
                &s,
                &[("/kamailio/feedback", &report), ("/kamailio/rtjson", query)],
            );
            assert_eq!(r[0].status, 204, "{}", r[0].body);
            assert_eq!(first(&r[1]), want, "round {round}, after a {code}");
        }
    }
}
