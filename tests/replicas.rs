//! Several replicas sharing state through one Redis (SPEC §9.4, issue 16):
//! each test starts a throwaway `redis-server` (`store_util`) and two or
//! three `c4route serve --state URL` processes on the same routes.d, then
//! checks what one replica does is seen by the others: limits held across
//! replicas, events taken at any replica, gateway state and quality shared
//! within a second, a new replica starting from the shared state, probe
//! leases, and a store outage that never fails or slows a query.
//!
//! Gateways are loopback addresses nothing listens on (no probes are sent
//! to them), except the UDP responder of the lease test. Every wait is
//! bounded in time and every loop in count.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateways::{OK, Responder};
use crate::store_util::{RedisServer, redis_or_skip};
use crate::util::{Conn, Server, metric};

/// The capped trunk's gateway and the overflow's, as answers name them.
const CAPPED: &str = "sip:127.0.0.1:15061";
const OVERFLOW: &str = "sip:127.0.0.1:15062";
const PACED: &str = "sip:127.0.0.1:15063";

/// Calls to 1… go to the capped trunk first, calls to 2… to the paced one.
const LIMITS: &str = r#"
[trunks.capped]
gateways = ["sip:127.0.0.1:15061"]
limits = { calls = 5 }

[trunks.paced]
gateways = ["sip:127.0.0.1:15063"]
limits = { cps = 10 }

[trunks.overflow]
gateways = ["sip:127.0.0.1:15062"]

[[rules]]
name = "capped"
match.to.prefix = ["1"]
then.trunks = ["capped", "overflow"]

[[rules]]
name = "paced"
match.to.prefix = ["2"]
then.trunks = ["paced", "overflow"]
"#;

/// Long enough that a loaded test machine never trips the breaker by
/// accident (the outage test sets its own).
const TIMEOUT: &str = "1s";

/// Starts one replica on `redis` and waits (bounded) until its store is up.
fn replica(routes: &str, redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--state", url.as_str()];
    if !extra.contains(&"--state-timeout") {
        args.extend(["--state-timeout", TIMEOUT]);
    }
    args.extend_from_slice(extra);
    let s = Server::start(&[("10.toml", routes)], &args);
    wait_up(&s, Duration::from_secs(5));
    s
}

fn wait_up(s: &Server, within: Duration) -> Value {
    s.wait_health("the shared store up", within, |h| h["state"]["up"] == true)
}

/// Polls `f` every 10 ms until it returns `Some` (at most `within`).
fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The dst_uris of the answer to a call to `to`, or `reject CODE`.
fn routes_on(c: &mut Conn, to: &str, call_id: &str) -> Vec<String> {
    let body = format!(r#"{{"to_uri":"sip:{to}@x","call_id":"{call_id}"}}"#);
    let r = c.post("/kamailio/rtjson", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    match v["rtjson"]["routes"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|r| r["dst_uri"].as_str().unwrap_or("").to_owned())
            .collect(),
        _ => vec![format!("reject {}", v["rtjson"]["code"])],
    }
}

fn routes(s: &Server, to: &str, call_id: &str) -> Vec<String> {
    routes_on(&mut s.conn(), to, call_id)
}

fn event(s: &Server, body: &str) -> (u16, String) {
    let r = s
        .conn()
        .post("/kamailio/event", "application/json", body.as_bytes());
    (r.status, r.body)
}

fn ended(s: &Server, call_id: &str, dst: &str) -> u16 {
    let (st, b) = event(
        s,
        &format!(r#"{{"event":"ended","call_id":"{call_id}","dst_uri":"{dst}","duration_s":5}}"#),
    );
    assert!(st == 204 || st == 404, "{st} {b}");
    st
}

fn zcard(r: &RedisServer, key: &str) -> i64 {
    r.cmd(&["ZCARD", key]).int()
}

fn exists(r: &RedisServer, key: &str) -> bool {
    r.cmd(&["EXISTS", key]).int() == 1
}

/// Whether the store holds the call open (a closed record stays a minute
/// as a tombstone, with `o` = 1).
fn open_call(r: &RedisServer, call_id: &str) -> bool {
    let key = format!("c4route:call:{call_id}");
    exists(r, &key) && r.cmd(&["HGET", &key, "o"]).text() != Some("1")
}

fn gateway(s: &Server, key: &str) -> Value {
    let r = s.conn().get("/gateways");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["gateways"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["key"] == key).cloned())
        .unwrap_or_else(|| panic!("no gateway {key} in {}", r.body))
}

/// Sends `ids` in `threads` client threads per replica, all at once, and
/// returns how many answers put `want` first.
fn at_once(servers: &[&Server], threads: usize, to: &str, ids: &[String], want: &str) -> usize {
    let conns = servers.len() * threads;
    let start = std::sync::Arc::new(std::sync::Barrier::new(conns));
    let handles: Vec<_> = (0..conns)
        .map(|n| {
            let addr = servers[n % servers.len()].addr;
            let mine: Vec<String> = ids.iter().skip(n).step_by(conns).cloned().collect();
            let (to, want, start) = (to.to_owned(), want.to_owned(), start.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                start.wait();
                mine.iter()
                    .filter(|id| routes_on(&mut c, &to, id)[0] == want)
                    .count()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn limits_hold_across_replicas() {
    let Some(redis) = redis_or_skip() else { return };
    let a = replica(LIMITS, &redis, &[]);
    let b = replica(LIMITS, &redis, &[]);

    // 200 calls at once, 8 client threads on each replica, none ended.
    let ids: Vec<String> = (0..200).map(|i| format!("lim-{i}")).collect();
    let capped = at_once(&[&a, &b], 8, "100", &ids, CAPPED);
    assert_eq!(capped, 5, "exactly `calls` answers on the capped trunk");
    assert_eq!(zcard(&redis, "c4route:tc:capped"), 5);
    // The overflow trunk has no limit: its records are written after the
    // answers, in the background.
    wait_for("195 overflow records", Duration::from_secs(2), || {
        (zcard(&redis, "c4route:tc:overflow") == 195).then_some(())
    });
    let (ta, tb) = (a.trunk("capped"), b.trunk("capped"));
    assert_eq!(ta["shared_calls"], 5, "{ta}");
    assert_eq!(tb["shared_calls"], 5, "{tb}");
    assert_eq!(
        ta["calls"].as_u64().unwrap() + tb["calls"].as_u64().unwrap(),
        5,
        "each replica counts its own: {ta} {tb}"
    );
    let left_out =
        ta["left_out"]["calls"].as_u64().unwrap() + tb["left_out"]["calls"].as_u64().unwrap();
    assert!(left_out >= 195, "{ta} {tb}");

    // cps = 10: 40 attempts at once on both replicas, within one second.
    let ids: Vec<String> = (0..40).map(|i| format!("cps-{i}")).collect();
    let t0 = Instant::now();
    let paced = at_once(&[&a, &b], 4, "200", &ids, PACED);
    let took = t0.elapsed();
    if took < Duration::from_millis(900) {
        assert_eq!(
            paced, 10,
            "40 attempts in {took:?}: exactly `cps` on the paced trunk"
        );
    } else {
        // A slow machine: the window slid while the attempts were sent.
        let windows = took.as_secs() as usize + 1;
        assert!((10..=10 * windows).contains(&paced), "{paced} in {took:?}");
    }
}

#[test]
fn events_apply_at_any_replica() {
    let Some(redis) = redis_or_skip() else { return };
    let a = replica(LIMITS, &redis, &[]);
    let b = replica(LIMITS, &redis, &[]);
    let tc = "c4route:tc:capped";

    // Decided at A, ended at B.
    assert_eq!(routes(&a, "100", "e1"), [CAPPED, OVERFLOW]);
    assert_eq!(zcard(&redis, tc), 1);
    assert_eq!(a.trunk("capped")["calls"], 1);
    assert_eq!(b.trunk("capped")["shared_calls"], 1);
    assert_eq!(ended(&b, "e1", CAPPED), 204);
    assert_eq!(zcard(&redis, tc), 0);
    assert!(!open_call(&redis, "e1"), "the record is closed");
    assert_eq!(b.trunk("capped")["shared_calls"], 0);
    // A hears of it through the stream and frees its own record.
    let t0 = Instant::now();
    wait_for("A's own count to drop", Duration::from_secs(1), || {
        (a.trunk("capped")["calls"] == 0).then_some(())
    });
    eprintln!(
        "A's own record freed {:?} after the event at B",
        t0.elapsed()
    );
    // Closed everywhere: the same event again is unknown at both.
    assert_eq!(ended(&b, "e1", CAPPED), 404);
    assert_eq!(ended(&a, "e1", CAPPED), 404);

    // Failover at B: the channel moves to the next trunk in the store.
    assert_eq!(routes(&a, "100", "e2")[0], CAPPED);
    let failed = r#"{"event":"failed","call_id":"e2","dst_uri":"sip:127.0.0.1:15061","code":486,"next":"sip:127.0.0.1:15062"}"#;
    assert_eq!(event(&b, failed).0, 204);
    assert_eq!(zcard(&redis, tc), 0);
    assert_eq!(zcard(&redis, "c4route:tc:overflow"), 1);
    // Repeated, at either replica: nothing moves twice.
    assert_eq!(event(&b, failed).0, 204);
    assert_eq!(event(&a, failed).0, 204);
    assert_eq!(zcard(&redis, tc), 0);
    assert_eq!(zcard(&redis, "c4route:tc:overflow"), 1);
    assert_eq!(b.trunk("overflow")["shared_calls"], 1);
    assert_eq!(ended(&a, "e2", OVERFLOW), 204);
    assert_eq!(zcard(&redis, "c4route:tc:overflow"), 0);
    assert!(!open_call(&redis, "e2"));

    // Out of order: the answered branch's `ended` before the `failed`
    // that started it; the late `failed` holds nothing again.
    assert_eq!(routes(&b, "100", "e3")[0], CAPPED);
    assert_eq!(ended(&a, "e3", OVERFLOW), 204);
    assert_eq!(zcard(&redis, tc), 1, "the first branch is still trying");
    let failed3 = failed.replace("e2", "e3");
    assert_eq!(event(&a, &failed3).0, 204);
    assert_eq!(zcard(&redis, tc), 0);
    assert_eq!(zcard(&redis, "c4route:tc:overflow"), 0);
    assert!(!open_call(&redis, "e3"));
    wait_for(
        "B's own record of e3 closed",
        Duration::from_secs(1),
        || (b.trunk("capped")["calls"] == 0 && b.trunk("overflow")["calls"] == 0).then_some(()),
    );

    // A call neither replica knows.
    for s in [&a, &b] {
        let (st, body) = event(
            s,
            r#"{"event":"ended","call_id":"nobody","dst_uri":"sip:127.0.0.1:15061"}"#,
        );
        assert_eq!(st, 404, "{body}");
        assert!(body.contains("no call"), "{body}");
    }

    // Kamailio asks again for the same call (at the other replica): the
    // call holds one channel, not two, and its end frees it everywhere.
    assert_eq!(routes(&a, "100", "e4")[0], CAPPED);
    assert_eq!(routes(&b, "100", "e4")[0], CAPPED);
    assert_eq!(zcard(&redis, tc), 1, "a re-asked call holds one channel");
    assert_eq!(ended(&a, "e4", CAPPED), 204);
    assert_eq!(zcard(&redis, tc), 0);
    wait_for(
        "both replicas' records of e4 closed",
        Duration::from_secs(1),
        || (a.trunk("capped")["calls"] == 0 && b.trunk("capped")["calls"] == 0).then_some(()),
    );
    let m = a.metrics();
    assert_eq!(metric(&m, "c4route_state_local_events_total"), 0.0, "{m}");
    assert_eq!(
        metric(&m, "c4route_state_local_decisions_total"),
        0.0,
        "{m}"
    );
}

const FAILOVER: &str = r#"
[defaults.health]
down_after = 2

[trunks.t]
gateways = [
  { uri = "sip:127.0.0.1:15071", priority = 1 },
  { uri = "sip:127.0.0.1:15072", priority = 2 },
  { uri = "sip:127.0.0.1:15073", priority = 3 },
]

[[rules]]
name = "all"
then.trunks = ["t"]
"#;
const G1: &str = "sip:127.0.0.1:15071";
const G2: &str = "sip:127.0.0.1:15072";
const G3: &str = "sip:127.0.0.1:15073";

#[test]
fn gateway_state_reaches_every_replica_and_a_new_one() {
    let Some(redis) = redis_or_skip() else { return };
    let a = replica(FAILOVER, &redis, &[]);
    let b = replica(FAILOVER, &redis, &[]);
    let key = |g: &str| format!("{g};transport=udp");
    assert_eq!(routes(&b, "1", "g0"), [G1, G2, G3]);

    // Two failure reports at A: down at B within a second.
    for _ in 0..2 {
        let body = format!(r#"{{"dst_uri":"{G1}","code":503,"call_id":"g1"}}"#);
        let r = a
            .conn()
            .post("/kamailio/feedback", "application/json", body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let t0 = Instant::now();
    assert_eq!(gateway(&a, &key(G1))["state"], "down");
    wait_for("G1 down at B", Duration::from_secs(1), || {
        (gateway(&b, &key(G1))["state"] == "down").then_some(())
    });
    eprintln!("a report at A showed at B after {:?}", t0.elapsed());
    assert_eq!(routes(&b, "1", "g2"), [G2, G3, G1], "down goes last");

    // A drain at A: B leaves the gateway out.
    let body = format!(r#"{{"uri":"{G2}"}}"#);
    let r = a
        .conn()
        .post("/gateways/disable", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("G2 disabled at B", Duration::from_secs(1), || {
        (gateway(&b, &key(G2))["state"] == "disabled").then_some(())
    });
    assert_eq!(routes(&b, "1", "g3"), [G3, G1]);

    // A third replica starts from the shared state: no new report.
    let t0 = Instant::now();
    let c = replica(FAILOVER, &redis, &[]);
    wait_for(
        "G1 down and G2 disabled at C",
        Duration::from_secs(2),
        || {
            (gateway(&c, &key(G1))["state"] == "down"
                && gateway(&c, &key(G2))["state"] == "disabled")
                .then_some(())
        },
    );
    eprintln!(
        "a new replica had the shared state {:?} after its start",
        t0.elapsed()
    );
    assert_eq!(routes(&c, "1", "g4"), [G3, G1]);

    // Restored at C: A and B take it back.
    let r = c
        .conn()
        .post("/gateways/enable", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("G2 up at A and B", Duration::from_secs(1), || {
        (gateway(&a, &key(G2))["state"] == "up" && gateway(&b, &key(G2))["state"] == "up")
            .then_some(())
    });
    assert_eq!(routes(&a, "1", "g5"), [G2, G3, G1]);
}

const QUALITY: &str = r#"
[defaults.quality]
window = "30s"
min_calls = 4
min_asr = 0.5

[trunks.a]
gateways = ["sip:127.0.0.1:15081"]
[trunks.b]
gateways = ["sip:127.0.0.1:15082"]

[[rules]]
name = "uk"
match.to.prefix = ["44"]
then.trunks = ["a", "b"]

[[rules]]
name = "us"
match.to.prefix = ["1"]
then.trunks = ["a", "b"]
"#;
const Q1: &str = "sip:127.0.0.1:15081";
const Q2: &str = "sip:127.0.0.1:15082";

fn poor_for(s: &Server, key: &str, group: &str) -> bool {
    gateway(s, key)["quality"]
        .as_array()
        .and_then(|q| q.iter().find(|g| g["group"] == group).cloned())
        .is_some_and(|g| g["poor"] == true)
}

#[test]
fn quality_is_shared_and_a_new_replica_starts_with_it() {
    let Some(redis) = redis_or_skip() else { return };
    let a = replica(QUALITY, &redis, &[]);
    let b = replica(QUALITY, &redis, &[]);
    let q1 = format!("{Q1};transport=udp");

    // Four unanswered calls at Q1 for uk, decided and failed at A (480
    // is no §8 failure: the gateway stays up, only its quality suffers).
    for i in 0..4 {
        let id = format!("q{i}");
        assert_eq!(routes(&a, "4420", &id)[0], Q1);
        let body = format!(r#"{{"event":"failed","call_id":"{id}","dst_uri":"{Q1}","code":480}}"#);
        assert_eq!(event(&a, &body).0, 204);
    }
    wait_for("Q1 poor for uk at A", Duration::from_secs(1), || {
        poor_for(&a, &q1, "uk").then_some(())
    });
    let t0 = Instant::now();
    wait_for("Q1 behind for uk at B", Duration::from_secs(1), || {
        (routes(&b, "4420", "qb")[0] == Q2).then_some(())
    });
    eprintln!("a poor verdict at A showed at B after {:?}", t0.elapsed());
    assert_eq!(routes(&b, "4420", "qb2"), [Q2, Q1]);
    assert_eq!(routes(&b, "1202", "qb3")[0], Q1, "only for its group");
    assert!(poor_for(&b, &q1, "uk"));
    assert_eq!(gateway(&b, &q1)["state"], "up");

    // Counted once across replicas: A's window has 4 attempts, not 8.
    let uk = |s: &Server| {
        gateway(s, &q1)["quality"]
            .as_array()
            .and_then(|q| q.iter().find(|g| g["group"] == "uk").cloned())
            .unwrap()
    };
    assert_eq!(uk(&a)["attempts"], 4, "{}", uk(&a));
    assert_eq!(uk(&b)["attempts"], 4, "{}", uk(&b));

    // A third replica starts with the windows of the others.
    let t0 = Instant::now();
    let c = replica(QUALITY, &redis, &[]);
    wait_for("Q1 poor for uk at C", Duration::from_secs(2), || {
        poor_for(&c, &q1, "uk").then_some(())
    });
    eprintln!(
        "a new replica had the verdict {:?} after its start",
        t0.elapsed()
    );
    assert_eq!(routes(&c, "4420", "qc"), [Q2, Q1]);
    assert_eq!(uk(&c)["attempts"], 4, "{}", uk(&c));
}

#[test]
fn one_replica_probes_a_gateway_and_another_takes_over() {
    let Some(redis) = redis_or_skip() else { return };
    let gw = Responder::start(OK);
    let routes_toml = format!(
        r#"
[defaults.health]
probe = "always"
interval = 0.5
timeout = 0.4

[trunks.t]
gateways = ["{gw}"]

[[rules]]
name = "all"
then.trunks = ["t"]
"#,
        gw = gw.uri()
    );
    let probe = ["--probe-bind", "127.0.0.1:0"];
    let a = replica(&routes_toml, &redis, &probe);
    let b = replica(&routes_toml, &redis, &probe);
    let lease = format!("c4route:lease:{}", gw.key());

    // Both up; over 3 s (6 intervals) the gateway gets about one OPTIONS
    // per interval, not one per replica.
    std::thread::sleep(Duration::from_millis(600));
    let n0 = gw.seen.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    let n = gw.seen.load(Ordering::SeqCst) - n0;
    assert!(
        (4..=8).contains(&n),
        "{n} OPTIONS in 3 s at a 0.5 s interval from two replicas"
    );
    // The replica that does not probe shows the other's results.
    for s in [&a, &b] {
        let g = gateway(s, &gw.key());
        assert_eq!(g["last_probe"]["code"], 200, "{g}");
        assert_eq!(g["state"], "up", "{g}");
    }

    // Kill the lease holder: the other takes over within about two
    // intervals (the lease is one and a half).
    let holder = redis.cmd(&["GET", &lease]).text().map(str::to_owned);
    let id = |s: &Server| s.health()["state"]["replica"].as_str().unwrap().to_owned();
    let (ida, idb) = (id(&a), id(&b));
    let (survivor, survivor_id) = if holder.as_deref() == Some(ida.as_str()) {
        drop(a);
        (b, idb)
    } else {
        assert_eq!(
            holder.as_deref(),
            Some(idb.as_str()),
            "the lease holder is a replica"
        );
        drop(b);
        (a, ida)
    };
    let killed = Instant::now();
    let n0 = gw.seen.load(Ordering::SeqCst);
    wait_for(
        "an OPTIONS from the surviving replica",
        Duration::from_millis(1500),
        || (gw.seen.load(Ordering::SeqCst) > n0).then_some(()),
    );
    eprintln!(
        "the next OPTIONS {:?} after the holder died",
        killed.elapsed()
    );
    assert_eq!(
        redis.cmd(&["GET", &lease]).text(),
        Some(survivor_id.as_str()),
        "the survivor holds the lease"
    );
    let n1 = gw.seen.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    let n = gw.seen.load(Ordering::SeqCst) - n1;
    assert!((1..=3).contains(&n), "{n} OPTIONS in 1 s from the survivor");
    assert_eq!(gateway(&survivor, &gw.key())["state"], "up");
}

#[test]
fn a_store_outage_never_fails_a_query_and_the_replicas_catch_up() {
    let Some(mut redis) = redis_or_skip() else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let extra = ["--state-timeout", "200ms"];
    let a = replica(LIMITS, &redis, &extra);
    let b = replica(LIMITS, &redis, &extra);
    // One call before the outage, ended during it.
    assert_eq!(routes(&a, "100", "pre")[0], CAPPED);

    redis.kill();
    // Every query answered, none waiting longer than the timeout, and
    // after the first none anywhere near it. A's local limit holds.
    let mut times = Vec::new();
    let mut on_capped = Vec::new();
    let mut ca = a.conn();
    for i in 0..12 {
        let id = format!("out-{i}");
        let t0 = Instant::now();
        let r = routes_on(&mut ca, "100", &id);
        times.push(t0.elapsed());
        if r[0] == CAPPED {
            on_capped.push(id);
        }
    }
    eprintln!("query times during the outage: {times:?}");
    let worst = times.iter().max().unwrap();
    assert!(*worst < timeout + Duration::from_millis(300), "{times:?}");
    let slow = times[1..].iter().filter(|t| **t >= timeout / 2).count();
    assert!(
        slow <= 1,
        "queries after the first waited for the store: {times:?}"
    );
    assert_eq!(
        on_capped.len(),
        4,
        "A's local limit: 5 with the call before: {on_capped:?}"
    );

    let h = a.wait_health("degraded", Duration::from_secs(2), |h| {
        h["status"] == "degraded"
    });
    assert_eq!(h["state"]["up"], false, "{h}");
    assert!(
        h["state"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{h}"
    );
    b.wait_health("B degraded", Duration::from_secs(2), |h| {
        h["status"] == "degraded"
    });
    let m = a.metrics();
    assert_eq!(metric(&m, "c4route_state_up"), 0.0);
    assert!(
        metric(&m, "c4route_state_local_decisions_total") >= 12.0,
        "{m}"
    );
    assert_eq!(a.trunk("capped")["shared_calls"], Value::Null);

    // Events during the outage: answered 204, applied locally, queued.
    assert_eq!(ended(&a, "pre", CAPPED), 204);
    assert_eq!(ended(&a, &on_capped[0], CAPPED), 204);
    assert_eq!(ended(&a, &on_capped[1], CAPPED), 204);
    assert_eq!(a.trunk("capped")["calls"], 2);
    // One reaches B, which never saw the call: accepted and queued too.
    assert_eq!(ended(&b, &on_capped[2], CAPPED), 204);
    let m = a.metrics();
    assert_eq!(metric(&m, "c4route_state_local_events_total"), 3.0, "{m}");
    assert_eq!(
        metric(&b.metrics(), "c4route_state_local_events_total"),
        1.0
    );
    assert!(metric(&m, "c4route_state_pending") > 0.0, "{m}");

    // The store returns, empty (no persistence), on the same port. A is
    // paused (SIGSTOP) so B catches up first: B's event for A's call
    // reaches the store before the call's record does.
    a.signal("STOP");
    redis.restart();
    let t0 = Instant::now();
    let h = b.wait_health("B up again", Duration::from_secs(2), |h| {
        h["status"] == "ok"
    });
    eprintln!("B up {:?} after the store returned", t0.elapsed());
    // B's event waits for the record rather than being dropped.
    std::thread::sleep(Duration::from_millis(300));
    let h2 = b.health();
    assert_eq!(
        h2["state"]["pending"], 1,
        "the event for A's call waits: {h} {h2}"
    );
    a.signal("CONT");
    let t0 = Instant::now();
    for s in [&a, &b] {
        s.wait_health("ok again, nothing pending", Duration::from_secs(3), |h| {
            h["status"] == "ok" && h["state"]["pending"] == 0
        });
    }
    eprintln!("both replicas caught up {:?} after A resumed", t0.elapsed());
    assert_eq!(metric(&a.metrics(), "c4route_state_up"), 1.0);
    assert_eq!(metric(&a.metrics(), "c4route_state_pending"), 0.0);

    // What was decided during the outage is in the store now, minus what
    // ended: on_capped[3] alone still holds its channel there.
    let tc = "c4route:tc:capped";
    let held = redis.cmd(&["ZRANGE", tc, "0", "-1"]).sorted_texts();
    assert_eq!(held, [format!("{}\x1f0", on_capped[3])]);
    for id in &on_capped[..3] {
        assert!(!open_call(&redis, id), "{id} left open");
    }
    // B's event reached A through the stream: A's own record is closed.
    wait_for(
        "A's record of the call ended at B closed",
        Duration::from_secs(1),
        || (a.trunk("capped")["calls"] == 1).then_some(()),
    );
    assert!(open_call(&redis, &on_capped[3]));
    // The overflow calls were recorded too.
    assert_eq!(zcard(&redis, "c4route:tc:overflow"), 8);
    // And the shared limit holds again: 4 free channels on the trunk.
    let ids: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    assert_eq!(at_once(&[&a, &b], 2, "100", &ids, CAPPED), 4);
    assert_eq!(zcard(&redis, tc), 5);
    // Every replica counted every ended attempt in its quality windows:
    // B the event it queued for A's call, and B the call A decided before
    // the outage and ended during it (the restarted store no longer knew
    // it; A publishes what its own record counted).
    let capped = format!("{CAPPED};transport=udp");
    let attempts = |s: &Server| {
        gateway(s, &capped)["quality"]
            .as_array()
            .map(|q| {
                q.iter()
                    .map(|g| g["attempts"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    wait_for(
        "A and B count the same attempts",
        Duration::from_secs(2),
        || {
            let (na, nb) = (attempts(&a), attempts(&b));

            (na == nb && na >= 4).then_some(())
        },
    );
}

#[test]
fn a_store_that_restarts_empty_gets_the_open_calls_back() {
    let Some(mut redis) = redis_or_skip() else {
        return;
    };
    let a = replica(LIMITS, &redis, &[]);
    let b = replica(LIMITS, &redis, &[]);
    // Three calls up on the capped trunk, decided at both replicas.
    for (s, id) in [(&a, "kept-0"), (&b, "kept-1"), (&a, "kept-2")] {
        assert_eq!(routes(s, "100", id)[0], CAPPED);
    }
    let tc = "c4route:tc:capped";
    assert_eq!(zcard(&redis, tc), 3);

    // The store restarts without its data (no persistence).
    redis.kill();
    redis.restart();
    for s in [&a, &b] {
        wait_up(s, Duration::from_secs(5));
    }
    // Each replica writes back the calls it holds: the shared count knows
    // them again, and the limit holds at 5 across both.
    wait_for(
        "the open calls written back",
        Duration::from_secs(3),
        || (zcard(&redis, tc) == 3).then_some(()),
    );
    for id in ["kept-0", "kept-1", "kept-2"] {
        assert!(open_call(&redis, id), "{id}");
    }
    let ids: Vec<String> = (0..8).map(|i| format!("new-{i}")).collect();
    assert_eq!(at_once(&[&a, &b], 2, "100", &ids, CAPPED), 2);
    assert_eq!(zcard(&redis, tc), 5);
    // An event for a written-back call frees its channel in the store.
    assert_eq!(ended(&b, "kept-0", CAPPED), 204);
    assert_eq!(zcard(&redis, tc), 4);
}
