//! `c4route serve --evapi` (issue 17) against a stand-in for Kamailio's evapi
//! module: c4route connects, answers netstring queries with the tindex and
//! tlabel it was given, applies events like `POST /kamailio/event`, drops a
//! connection whose framing is broken and connects again.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Server, metric};

const ROUTES: &str = r#"
[trunks.acme]
gateways = ["sip:192.0.2.1"]

[[rules]]
name = "barred"
match.to.prefix = ["0666"]
then.reject = { code = 403, reason = "Barred" }

[[rules]]
name = "all"
then.trunks = ["acme"]
"#;

/// A stand-in for Kamailio's evapi `bind_addr`.
struct Kamailio {
    listener: TcpListener,
}

impl Kamailio {
    fn bind() -> Kamailio {
        Kamailio {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind"),
        }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// The next connection from c4route, within `timeout`.
    fn accept(&self, timeout: Duration) -> TcpStream {
        let l = self.listener.try_clone().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(l.accept().map(|(s, _)| s));
        });
        let s = rx
            .recv_timeout(timeout)
            .expect("c4route connects in time")
            .expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

fn send(s: &mut TcpStream, msg: &str) {
    s.write_all(format!("{}:{msg},", msg.len()).as_bytes())
        .unwrap();
}

/// Reads one netstring; `None` at end of stream.
fn recv(s: &mut TcpStream) -> Option<Value> {
    let mut len = 0usize;
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b).expect("read within 5 s") == 0 {
            return None;
        }
        match b[0] {
            b'0'..=b'9' => len = len * 10 + usize::from(b[0] - b'0'),
            b':' => break,
            other => panic!("not a netstring: {:?}", char::from(other)),
        }
    }
    let mut payload = vec![0u8; len + 1];
    s.read_exact(&mut payload).expect("the whole frame");
    assert_eq!(payload.pop(), Some(b','));
    Some(serde_json::from_slice(&payload).expect("a JSON message"))
}

fn acme_calls(s: &Server) -> u64 {
    s.trunk("acme")["calls"].as_u64().expect("acme's calls")
}

fn wait_calls(s: &Server, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while acme_calls(s) != want {
        assert!(Instant::now() < deadline, "acme never had {want} calls");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn queries_and_events_over_evapi() {
    let kam = Kamailio::bind();
    let mut s = Server::start(&[("r.toml", ROUTES)], &["--evapi", &kam.addr()]);
    let mut k = kam.accept(Duration::from_secs(10));
    s.wait_log("evapi: connected", Duration::from_secs(5));

    // A query: the answer names the suspended transaction and the call, and
    // carries the same document as POST /rtjson; the decision holds acme.
    send(
        &mut k,
        r#"{"type":"query","tindex":1234,"tlabel":987654321,"query":{"to_uri":"sip:0201@x","call_id":"ev-\"1\""}}"#,
    );
    let a = recv(&mut k).expect("an answer");
    assert_eq!(a["type"], "answer", "{a}");
    assert_eq!(
        (a["tindex"].as_u64(), a["tlabel"].as_u64()),
        (Some(1234), Some(987_654_321))
    );
    assert_eq!(a["call_id"], "ev-\"1\"");
    assert_eq!(a["answer"]["success"], true, "{a}");
    assert_eq!(a["answer"]["rule"], "all");
    assert_eq!(a["answer"]["routes"][0]["dst_uri"], "sip:192.0.2.1");
    wait_calls(&s, 1);

    // A reject, and two messages in one write: both answered, in order.
    let q = |t: u32, to: &str| {
        format!(r#"{{"type":"query","tindex":{t},"tlabel":1,"query":{{"to_uri":"sip:{to}@x"}}}}"#)
    };
    let (q1, q2) = (q(1, "0666"), q(2, "0201"));
    k.write_all(format!("{}:{q1},\n{}:{q2},", q1.len(), q2.len()).as_bytes())
        .unwrap();
    let r1 = recv(&mut k).unwrap();
    let r2 = recv(&mut k).unwrap();
    assert_eq!(
        (r1["tindex"].as_u64(), r2["tindex"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(r1["answer"]["success"], false);
    assert_eq!(r1["answer"]["code"], 403);
    assert_eq!(r2["answer"]["success"], true);

    // A query c4route cannot read: an error naming the transaction, so that
    // Kamailio resumes it at once (with 503).
    send(
        &mut k,
        r#"{"type":"query","tindex":7,"tlabel":8,"query":"nope"}"#,
    );
    let e = recv(&mut k).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["tindex"].as_u64(), e["code"].as_u64()),
        (Some("error"), Some(7), Some(400)),
        "{e}"
    );
    send(&mut k, r#"{"type":"query","tindex":9,"tlabel":9}"#);
    let e = recv(&mut k).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["tindex"].as_u64()),
        (Some("error"), Some(9)),
        "{e}"
    );

    // An event: applied as POST /kamailio/event applies it (no answer), so
    // the call's channel is free again.
    send(
        &mut k,
        r#"{"type":"event","event":"failed","call_id":"ev-\"1\"","dst_uri":"sip:192.0.2.1","code":487}"#,
    );
    wait_calls(&s, 0);
    let m = s.metrics();
    assert_eq!(
        metric(
            &m,
            r#"c4route_call_events_total{event="failed",result="ok"}"#
        ),
        1.0
    );
    // Garbage inside a well-formed frame is logged and skipped.
    send(&mut k, "not json");
    send(
        &mut k,
        r#"{"type":"query","tindex":3,"tlabel":3,"query":{"to_uri":"sip:0666@x"}}"#,
    );
    assert_eq!(recv(&mut k).unwrap()["tindex"], 3);
    s.wait_log("not a JSON object", Duration::from_secs(5));
}

#[test]
fn a_broken_frame_drops_the_connection_and_c4route_connects_again() {
    let kam = Kamailio::bind();
    let mut s = Server::start(&[("r.toml", ROUTES)], &["--evapi", &kam.addr()]);
    for (i, junk) in [&b"12x:{},"[..], b"2:{}}", b"70000:"]
        .into_iter()
        .enumerate()
    {
        let mut k = kam.accept(Duration::from_secs(10));
        k.write_all(junk).unwrap();
        assert!(
            recv(&mut k).is_none(),
            "frame {i}: the connection is closed"
        );
        s.wait_log("dropping the connection", Duration::from_secs(5));
    }
    // It still answers on the next connection.
    let mut k = kam.accept(Duration::from_secs(10));
    send(
        &mut k,
        r#"{"type":"query","tindex":1,"tlabel":2,"query":{"to_uri":"sip:0201@x"}}"#,
    );
    assert_eq!(recv(&mut k).unwrap()["answer"]["success"], true);
    // The process is alive and well.
    assert_eq!(s.health()["status"], "ok");
}

#[test]
fn an_unreachable_evapi_peer_is_retried_and_logged_once() {
    // Nothing listens on this port yet.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut s = Server::start(&[("r.toml", ROUTES)], &["--evapi", &addr]);
    s.wait_log("evapi: cannot connect", Duration::from_secs(5));
    let series = format!(r#"c4route_evapi_connected{{peer="{addr}"}}"#);
    assert_eq!(metric(&s.metrics(), &series), 0.0, "not connected yet");
    std::thread::sleep(Duration::from_millis(800));
    let kam = Kamailio {
        listener: TcpListener::bind(&addr).expect("the port is still free"),
    };
    let _k = kam.accept(Duration::from_secs(10));
    s.wait_log("evapi: connected", Duration::from_secs(5));
    let failures = s
        .log_lines()
        .iter()
        .filter(|l| l.contains("cannot connect"))
        .count();
    assert_eq!(failures, 1, "one line per change of state");
    assert_eq!(metric(&s.metrics(), &series), 1.0, "connected");
    let connects = format!(r#"c4route_evapi_connects_total{{peer="{addr}"}}"#);
    assert_eq!(metric(&s.metrics(), &connects), 1.0);
}

#[test]
fn a_query_after_an_event_is_not_held_by_delayed_acks() {
    // Kamailio's evapi socket has Nagle on: after an event (which gets no
    // answer) its next query waits for the event's ACK. Without an
    // immediate ACK from c4route that is the delayed-ACK timer, ~40 ms.
    let kam = Kamailio::bind();
    let _s = Server::start(&[("r.toml", ROUTES)], &["--evapi", &kam.addr()]);
    let mut k = kam.accept(Duration::from_secs(10));
    let mut rtt = Vec::new();
    for i in 0..15u32 {
        send(
            &mut k,
            r#"{"type":"event","event":"ended","call_id":"none","dst_uri":"sip:192.0.2.1"}"#,
        );
        let t0 = Instant::now();
        send(
            &mut k,
            &format!(
                r#"{{"type":"query","tindex":{i},"tlabel":1,"query":{{"to_uri":"sip:0201@x"}}}}"#
            ),
        );
        assert_eq!(recv(&mut k).unwrap()["tindex"], i);
        rtt.push(t0.elapsed());
    }
    rtt.sort();
    assert!(
        rtt[rtt.len() / 2] < Duration::from_millis(15),
        "median query round trip after an event: {:?} (all: {rtt:?})",
        rtt[rtt.len() / 2]
    );
}
