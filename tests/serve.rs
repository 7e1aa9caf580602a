//! End-to-end tests of `c4route serve` (SPEC §5): the built binary on
//! `127.0.0.1:0`, a temporary routes.d, and real HTTP/1.1 over TCP.
//!
//! Every wait is bounded in time and every loop in count, so a broken
//! server fails a test instead of hanging it.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{QUERY, Server, metric, table};

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
    assert_eq!(
        h["version"].as_str().map(str::len),
        Some(64),
        "a BLAKE3 digest in hex"
    );
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
    // Every background task (gateway state, prober, call expiry, reload
    // thread) stopped at the signal and was awaited within its bound.
    let log = s.log_lines().join("\n");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("did not stop within") && !log.contains("still busy"),
        "a background task outlived the shutdown:\n{log}"
    );
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
