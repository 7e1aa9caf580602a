//! Calls in progress and capacity limits through `c4route serve` (SPEC
//! §9.1, §9.2): decisions hold channels, `POST /kamailio/event` moves and
//! frees them, `GET /trunks` shows them, and decisions at once never put a
//! trunk past its limit.

use std::time::Duration;

use crate::util::{Server, metric};

const ROUTES: &str = r#"
[trunks.capped]
gateways = ["sip:192.0.2.1"]
limits = { calls = 5, cps = 1000 }

[trunks.overflow]
gateways = ["sip:192.0.2.2"]

[[rules]]
name = "all"
then.trunks = ["capped", "overflow"]
"#;

fn first_route(s: &Server, call_id: &str) -> String {
    let body = format!(r#"{{"to_uri":"sip:123@x","call_id":"{call_id}"}}"#);
    let r = s
        .conn()
        .post("/kamailio/rtjson", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let routes = v["rtjson"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    routes
        .first()
        .map(|r| r["dst_uri"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| format!("reject {}", v["rtjson"]["code"]))
}

fn event(s: &Server, body: &str) -> (u16, String) {
    // As curl sends a form without a Content-Type header.
    let ct = if body.starts_with("event=") {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    let r = s.conn().post("/kamailio/event", ct, body.as_bytes());
    (r.status, r.body)
}

#[test]
fn a_full_trunk_is_left_out_until_its_calls_end() {
    let s = Server::start(&[("10.toml", ROUTES)], &[]);
    for i in 0..5 {
        assert_eq!(first_route(&s, &format!("c{i}")), "sip:192.0.2.1");
    }
    // Five channels held: the sixth call goes to the overflow trunk.
    assert_eq!(first_route(&s, "c5"), "sip:192.0.2.2");
    let t = s.trunk("capped");
    assert_eq!(t["calls"], 5, "{t}");
    assert_eq!(t["limits"]["calls"], 5, "{t}");
    assert!(t["left_out"]["calls"].as_u64().unwrap() >= 1, "{t}");
    // A query without a Call-ID holds no channel (nothing would free it).
    let r = s.conn().post(
        "/kamailio/rtjson",
        "application/json",
        br#"{"to_uri":"sip:123@x"}"#,
    );
    assert!(r.body.contains("192.0.2.2"), "{}", r.body);

    // c0 ends (BYE): the trunk takes a call again.
    let (st, b) = event(
        &s,
        r#"{"event":"ended","call_id":"c0","dst_uri":"sip:192.0.2.1:5060","pdd_ms":900,"duration_s":42}"#,
    );
    assert_eq!(st, 204, "{b}");
    assert_eq!(s.trunk("capped")["calls"], 4);
    // The same event again: the call is closed already.
    let (st, b) = event(
        &s,
        r#"{"event":"ended","call_id":"c0","dst_uri":"sip:192.0.2.1","duration_s":42}"#,
    );
    assert_eq!(st, 404, "{b}");
    assert!(b.contains("no call") && b.contains("c0"), "{b}");
    assert_eq!(first_route(&s, "c6"), "sip:192.0.2.1");

    // c1 fails over to the overflow trunk: its channel moves.
    let (st, b) = event(
        &s,
        "event=failed&call_id=c1&dst_uri=sip%3A192.0.2.1&code=503&next=sip%3A192.0.2.2",
    );
    assert_eq!(st, 204, "{b}");
    assert_eq!(s.trunk("capped")["calls"], 4);
    assert_eq!(s.trunk("overflow")["calls"], 2);
    // Its last route fails: the call is over, nothing is held.
    let (st, _) = event(
        &s,
        r#"{"event":"failed","call_id":"c1","dst_uri":"sip:192.0.2.2","code":486}"#,
    );
    assert_eq!(st, 204);
    assert_eq!(s.trunk("overflow")["calls"], 1);

    // Bad events say what is wrong.
    for (body, status, want) in [
        (
            r#"{"event":"hangup","call_id":"c2","dst_uri":"sip:192.0.2.1"}"#,
            400,
            "event must be",
        ),
        (
            r#"{"event":"ended","dst_uri":"sip:192.0.2.1"}"#,
            400,
            "call_id is missing",
        ),
        (
            r#"{"event":"failed","call_id":"c2","dst_uri":"sip:192.0.2.1"}"#,
            400,
            "code is missing",
        ),
        (
            r#"{"event":"ended","call_id":"c2","dst_uri":"sip:198.51.100.9"}"#,
            404,
            "has no route",
        ),
        ("not json", 400, "not JSON"),
    ] {
        let (st, b) = event(&s, body);
        assert_eq!(st, status, "{body}: {b}");
        assert!(b.contains(want), "{body}: {b}");
    }
    let m = s.metrics();
    assert_eq!(
        metric(&m, "c4route_trunk_calls{trunk=\"capped\"}"),
        4.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "c4route_trunk_left_out_total{trunk=\"capped\",limit=\"calls\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &m,
            "c4route_call_events_total{event=\"ended\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "c4route_calls_open"), 5.0, "{m}");
}

#[test]
fn trunks_are_listed_before_the_first_query() {
    // A replica that has decided nothing yet (just started, or one that
    // only takes events) shows every trunk, idle.
    let s = Server::start(&[("10.toml", ROUTES)], &[]);
    let t = s.trunk("capped");
    assert_eq!(t["calls"], 0, "{t}");
    assert_eq!(t["limits"]["calls"], 5, "{t}");
    assert_eq!(s.trunk("overflow")["calls"], 0);
}

#[test]
fn decisions_at_once_never_put_a_trunk_past_its_limit() {
    let s = Server::start(&[("10.toml", ROUTES)], &[]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = crate::util::Conn::open(addr);
                let mut capped = 0;
                for i in 0..25 {
                    let body = format!(r#"{{"to_uri":"sip:1@x","call_id":"t{t}-{i}"}}"#);
                    let r = c.post("/kamailio/rtjson", "application/json", body.as_bytes());
                    assert_eq!(r.status, 200);
                    let v = r.json();
                    if v["rtjson"]["routes"][0]["dst_uri"] == "sip:192.0.2.1" {
                        capped += 1;
                    }
                }
                capped
            })
        })
        .collect();
    let capped: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        capped, 5,
        "200 calls at once, none ended: exactly 5 on the capped trunk"
    );
    assert_eq!(s.trunk("capped")["calls"], 5);
    assert_eq!(s.trunk("overflow")["calls"], 195);
}

#[test]
fn cps_limits_attempts_per_second_and_no_capacity_answers() {
    let routes = r#"
[trunks.slow]
gateways = ["sip:192.0.2.1"]
limits = { cps = 3 }

[[rules]]
name = "slow-only"
then.trunks = ["slow"]
then.no_capacity = { code = 480, reason = "Try Later" }
"#;
    let s = Server::start(&[("10.toml", routes)], &[]);
    let mut routed = 0;
    let mut busy = 0;
    for i in 0..6 {
        let r = first_route(&s, &format!("p{i}"));
        if r == "sip:192.0.2.1" {
            routed += 1;
        } else {
            assert_eq!(r, "reject 480");
            busy += 1;
        }
    }
    assert_eq!((routed, busy), (3, 3));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(first_route(&s, "p9"), "sip:192.0.2.1");
    let t = s.trunk("slow");
    assert!(t["left_out"]["cps"].as_u64().unwrap() >= 3, "{t}");
}

#[test]
fn records_survive_a_reload_and_failed_events_are_reports() {
    let mut s = Server::start(&[("10.toml", ROUTES)], &[]);
    assert_eq!(first_route(&s, "r1"), "sip:192.0.2.1");
    // A reload that keeps the trunk keeps its count and the record.
    let more = ROUTES.replace("calls = 5", "calls = 6");
    crate::util::atomic_write(&s.dir.join("10.toml"), &more);
    s.wait_generation(2);
    assert_eq!(s.trunk("capped")["calls"], 1);
    assert_eq!(s.trunk("capped")["limits"]["calls"], 6);
    // A failed event is also a gateway report (down after 3 by default).
    let (st, _) = event(
        &s,
        r#"{"event":"failed","call_id":"r1","dst_uri":"sip:192.0.2.1","code":503,"next":"sip:192.0.2.2"}"#,
    );
    assert_eq!(st, 204);
    let m = s.metrics();
    assert_eq!(
        metric(&m, "c4route_gateway_reports_total{result=\"failure\"}"),
        1.0,
        "{m}"
    );
    // For an unknown call it is still a report, and the answer says 404.
    for _ in 0..2 {
        let (st, _) = event(
            &s,
            r#"{"event":"failed","call_id":"gone","dst_uri":"sip:192.0.2.1","code":503}"#,
        );
        assert_eq!(st, 404);
    }
    let line = s.wait_log("gateway up -> down", Duration::from_secs(2));
    assert!(line.contains("192.0.2.1"), "{line}");
    assert_eq!(first_route(&s, "r2"), "sip:192.0.2.2");
}

#[test]
fn events_obey_allow() {
    let s = Server::start(&[("10.toml", ROUTES)], &["--allow", "10.0.0.0/8"]);
    let (st, b) = event(
        &s,
        r#"{"event":"ended","call_id":"x","dst_uri":"sip:192.0.2.1"}"#,
    );
    assert_eq!(st, 403, "{b}");
    assert_eq!(s.conn().get("/trunks").status, 403);
}

#[test]
fn eval_load_and_poor_decide_offline_and_say_so() {
    let q = r#"{"to_uri":"sip:07700900123@x","ruri":"sip:07700900123@x","source_ip":"10.1.0.10","call_id":"e1"}"#;
    let out = crate::util::run(
        &["eval", "routes.d", "-", "--load", "globex=30", "--explain"],
        Some(q),
    );
    let stdout = crate::util::text(&out.stdout);
    let stderr = crate::util::text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(r#""dst_uri":"sip:198.51.100.10:5060""#),
        "{stdout}"
    );
    assert!(!stdout.contains("203.0.113.20"), "globex is full: {stdout}");
    assert!(
        stderr.contains("left out: trunk globex, at its calls limit"),
        "{stderr}"
    );
    let out = crate::util::run(
        &[
            "eval",
            "routes.d",
            "-",
            "--poor",
            "sip:203.0.113.20@uk-mobile",
            "--explain",
        ],
        Some(q),
    );
    let stderr = crate::util::text(&out.stderr);
    assert!(
        stderr.contains("poor for uk-mobile: moved behind the good ones"),
        "{stderr}"
    );
    // A typo is an error, never a silent no-op.
    for (flag, value, want) in [
        ("--load", "globx=30", "no trunk is named \"globx\""),
        ("--load", "globex", "is not TRUNK=CALLS"),
        ("--poor", "sip:203.0.113.99", "no trunk lists the gateway"),
    ] {
        let out = crate::util::run(&["eval", "routes.d", "-", flag, value], Some(q));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = crate::util::text(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
}

#[test]
fn events_name_a_proxied_route_by_its_proxy() {
    let routes = r#"
[trunks.via-sbc]
gateways = ["sip:192.0.2.1", "sip:192.0.2.2"]
proxy = "sip:198.51.100.1:5070"
limits = { calls = 1 }

[trunks.direct]
gateways = ["sip:192.0.2.3"]

[[rules]]
name = "all"
then.trunks = ["via-sbc", "direct"]
"#;
    let s = Server::start(&[("10.toml", routes)], &[]);
    assert_eq!(first_route(&s, "p1"), "sip:198.51.100.1:5070");
    // Full: the next call goes direct.
    assert_eq!(first_route(&s, "p2"), "sip:192.0.2.3");
    // Kamailio names the route by its dst_uri, the proxy; the first
    // gateway fails over to the second, both behind the same proxy.
    let (st, b) = event(
        &s,
        r#"{"event":"failed","call_id":"p1","dst_uri":"sip:198.51.100.1:5070","code":503,"next":"sip:198.51.100.1:5070"}"#,
    );
    assert_eq!(st, 204, "{b}");
    assert_eq!(s.trunk("via-sbc")["calls"], 1);
    let (st, b) = event(
        &s,
        r#"{"event":"ended","call_id":"p1","dst_uri":"sip:198.51.100.1:5070","duration_s":3}"#,
    );
    assert_eq!(st, 204, "{b}");
    assert_eq!(s.trunk("via-sbc")["calls"], 0);
    assert_eq!(first_route(&s, "p3"), "sip:198.51.100.1:5070");
}
