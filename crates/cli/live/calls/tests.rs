//! Unit tests of `calls.rs`: channels, order-free events, limits, expiry.

use super::*;
use c4route_core::Sources;

fn table(limits: &str) -> RouteTable {
    let mut s = Sources::new();
    s.add(
        "routes.d/10.toml",
        format!(
            r#"
            [trunks.a]
            gateways = [{{ uri = "sip:192.0.2.1", calls = 2 }}, "sip:192.0.2.2"]
            {limits}
            [trunks.b]
            gateways = ["sip:192.0.2.3"]
            [[rules]]
            name = "r"
            then.trunks = ["a", "b"]
        "#
        ),
    );
    s.build().unwrap()
}

fn key(n: u8) -> Arc<str> {
    format!("sip:192.0.2.{n}:5060;transport=udp").into()
}

fn routes(calls: &Calls, gws: &[(&str, u8)]) -> Vec<RouteRef> {
    let b = calls.board.load();
    let group = calls.group_id("r");
    gws.iter()
        .map(|&(t, g)| b.route(t, &key(g), &key(g), group).unwrap())
        .collect()
}

fn setup(limits: &str) -> Calls {
    let c = Calls::default();
    c.follow(&table(limits));
    c
}

fn counts(c: &Calls) -> (u32, u32, u32, u32) {
    let b = c.board.load();
    (
        b.trunk("a").unwrap().calls(),
        b.trunk("b").unwrap().calls(),
        b.gateway(&key(1)).unwrap().calls(),
        b.gateway(&key(3)).unwrap().calls(),
    )
}

fn failed(next: Option<u8>) -> Event {
    Event::Failed {
        code: 503,
        next: next.map(|n| key(n).to_string()),
        pdd: None,
    }
}

fn open_call(c: &Calls, id: &str, now: Instant) {
    let b = c.board.load();
    c.take(
        b.trunk("a").unwrap(),
        b.gateway(&key(1)).unwrap(),
        true,
        now,
    )
    .unwrap();
    c.open(id, routes(c, &[("a", 1), ("a", 2), ("b", 3)]), now);
}

#[test]
fn a_channel_is_held_from_the_decision_to_the_end_and_moves_with_failover() {
    let c = setup("limits = { calls = 5 }");
    let now = Instant::now();
    open_call(&c, "x", now);
    assert_eq!(counts(&c), (1, 0, 1, 0));
    // Failover from gateway 1 to gateway 3 (trunk b).
    let r = c.apply("x", &key(1), &failed(Some(3)), now);
    assert!(matches!(r, Applied::Done { closed: false, .. }), "{r:?}");
    assert_eq!(counts(&c), (0, 1, 0, 1));
    // The same event again changes nothing.
    c.apply("x", &key(1), &failed(Some(3)), now);
    assert_eq!(counts(&c), (0, 1, 0, 1));
    let end = Event::Ended {
        pdd: Some(Duration::from_millis(800)),
        duration: Some(Duration::from_secs(30)),
    };
    let r = c.apply("x", &key(3), &end, now);
    assert_eq!(
        r,
        Applied::Done {
            ended: Some(RouteEnd {
                gateway: key(3),
                group: c.group_id("r"),
                answered_before: false,
            }),
            closed: true
        }
    );
    assert_eq!(&*c.group(c.group_id("r")), "r");
    assert_eq!(counts(&c), (0, 0, 0, 0));
    assert_eq!(c.apply("x", &key(3), &end, now), Applied::UnknownCall);
    assert_eq!(c.open_count(), 0);
}

#[test]
fn events_out_of_order_never_hold_an_ended_route() {
    let c = setup("");
    let now = Instant::now();
    open_call(&c, "y", now);
    // The failure of route 3 (the last) arrives before the failover
    // that started it.
    c.apply("y", &key(3), &failed(None), now);
    assert_eq!(counts(&c), (1, 0, 1, 0));
    let r = c.apply("y", &key(1), &failed(Some(3)), now);
    assert!(matches!(r, Applied::Done { closed: true, .. }), "{r:?}");
    assert_eq!(counts(&c), (0, 0, 0, 0));
    assert_eq!(
        c.apply("y", &key(9), &failed(None), now),
        Applied::UnknownCall
    );
    open_call(&c, "z", now);
    assert_eq!(
        c.apply("z", &key(9), &failed(None), now),
        Applied::UnknownRoute
    );
}

#[test]
fn limits_refuse_the_channel_after_the_last_one_and_roll_back() {
    let c = setup("limits = { calls = 2, cps = 3 }");
    let b = c.board.load();
    let (a, g1, g2) = (
        b.trunk("a").unwrap(),
        b.gateway(&key(1)).unwrap(),
        b.gateway(&key(2)).unwrap(),
    );
    let now = Instant::now();
    assert!(c.take(a, g1, true, now).is_ok());
    assert!(c.take(a, g1, true, now).is_ok());
    // Gateway 1 allows 2, trunk a allows 2: the third is refused by the trunk.
    assert_eq!(c.take(a, g2, true, now), Err(Limit::TrunkCalls));
    assert_eq!((a.calls(), g2.calls()), (2, 0));
    // One call ends on gateway 2's side of the trunk count only:
    // gateway 1 is still at its own limit of 2.
    a.release();
    assert_eq!(c.take(a, g1, true, now), Err(Limit::GatewayCalls));
    assert_eq!(a.calls(), 1);
    // cps: 2 attempts so far, one more fits, then refused until a second passes.
    assert!(c.take(a, g2, false, now).is_ok());
    assert_eq!(c.take(a, g2, true, now), Err(Limit::TrunkCps));
    assert_eq!((a.calls(), g2.calls()), (1, 0));
    assert_eq!(a.cps(now), 3);
    let later = now + Duration::from_millis(1001);
    assert_eq!(a.cps(later), 0);
    assert!(c.take(a, g2, true, later).is_ok());
}

#[test]
fn a_failover_takes_its_channel_past_the_limit_and_counts_it() {
    let c = setup("limits = { calls = 1 }");
    let now = Instant::now();
    let b = c.board.load();
    // A call on trunk b fails over to trunk a, which is full.
    c.take(
        b.trunk("a").unwrap(),
        b.gateway(&key(2)).unwrap(),
        true,
        now,
    )
    .unwrap();
    c.take(
        b.trunk("b").unwrap(),
        b.gateway(&key(3)).unwrap(),
        true,
        now,
    )
    .unwrap();
    c.open("f", routes(&c, &[("b", 3), ("a", 1)]), now);
    c.apply("f", &key(3), &failed(Some(1)), now);
    assert_eq!(b.trunk("a").unwrap().calls(), 2);
    assert_eq!(b.trunk("a").unwrap().counters().2, 1);
}

#[test]
fn records_expire_and_survive_a_reload() {
    let c = setup("limits = { calls = 5 }");
    let now = Instant::now();
    open_call(&c, "old", now);
    open_call(&c, "new", now + Duration::from_secs(10));
    // A reload that keeps trunk a keeps its count.
    c.follow(&table("limits = { calls = 9 }"));
    assert_eq!(counts(&c).0, 2);
    assert_eq!(c.board.load().trunk("a").unwrap().limits().0, Some(9));
    assert_eq!(
        c.expire(Duration::from_secs(5), now + Duration::from_secs(12)),
        1
    );
    assert_eq!(counts(&c).0, 1);
    // The remaining record still releases the slot after the reload.
    c.apply("new", &key(1), &failed(None), now);
    assert_eq!(counts(&c), (0, 0, 0, 0));
    // Opening the same Call-ID twice releases the first record.
    open_call(&c, "dup", now);
    open_call(&c, "dup", now);
    assert_eq!(counts(&c).0, 1);
    c.clear();
    assert_eq!(counts(&c).0, 0);
}
