//! Live gateway state in the order of an answer (SPEC §8).
//!
//! Routes of down gateways move behind all other routes, each group keeping
//! its static order; they are never removed, so when every gateway is down
//! the static order is still tried. `max_routes` applies *after* this, so
//! when a rule lists more gateways than `max_routes`, the up gateways that
//! the static order would have cut move in, and the down ones are the first
//! to fall off the end: a cut never keeps a down gateway while it drops an
//! up one. Disabled gateways are left out as `enabled = false` does.
//!
//! `routes.rs` builds the routes of up gateways into the answer and those
//! of down gateways aside, and stops once `max_routes` up routes are built
//! (no down route could survive the cut then); [`last`] joins the two.
//! With every gateway up nothing here runs: one branch per route.

use super::decision::RouteAnswer;

/// Appends the routes of down gateways (`late`, in static order) after
/// the others, as far as `max` allows.
pub(crate) fn last<'t>(
    routes: &mut Vec<RouteAnswer<'t>>,
    mut late: Vec<RouteAnswer<'t>>,
    max: usize,
) {
    if !late.is_empty() {
        late.truncate(max.saturating_sub(routes.len()));
        routes.append(&mut late);
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::{GatewayState, GatewayStatus, Outcome, Query, RouteTable, Sources};

    const ROUTES: &str = r#"
        [defaults]
        max_routes = 3
        [trunks.a]
        gateways = [
            { uri = "sip:192.0.2.1", priority = 1 },
            { uri = "sip:192.0.2.2", priority = 2 },
        ]
        [trunks.b]
        gateways = [
            { uri = "sip:192.0.2.3", priority = 1 },
            { uri = "sip:192.0.2.4:5060;transport=udp", priority = 2 },
        ]
        [[rules]]
        name = "all"
        then.trunks = ["a", "b"]
    "#;

    fn table() -> RouteTable {
        let mut s = Sources::new();
        s.add("routes.d/10.toml", ROUTES);
        s.build().unwrap()
    }

    fn order(t: &RouteTable, state: &GatewayState) -> Vec<String> {
        let q = Query::from_json(br#"{"to_uri":"sip:123@x","call_id":"c"}"#).unwrap();
        match t.route_with(&q, state, SystemTime::UNIX_EPOCH).outcome {
            Outcome::Route { routes, .. } => routes.iter().map(|r| r.dst_uri.to_owned()).collect(),
            Outcome::Reject { code, .. } => vec![format!("reject {code}")],
        }
    }

    fn state(items: &[(&str, GatewayStatus)]) -> GatewayState {
        GatewayState::from_statuses(items.iter().copied()).unwrap()
    }

    /// One case per line: the gateways not up, and the dst_uris expected
    /// (max_routes = 3 of four gateways).
    #[test]
    fn down_gateways_go_last_disabled_ones_go_and_the_cut_comes_after() {
        use GatewayStatus::{Disabled, Down};
        let t = table();
        let (g1, g2, g3, g4) = (
            "sip:192.0.2.1",
            "sip:192.0.2.2",
            "sip:192.0.2.3",
            "sip:192.0.2.4:5060;transport=udp",
        );
        type Case<'a> = (&'a [(&'a str, GatewayStatus)], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (&[], &[g1, g2, g3]),
            // Another spelling of gateway 1 is the same gateway.
            (&[("sip:192.0.2.1:5060", Down)], &[g2, g3, g4]),
            (&[(g2, Down)], &[g1, g3, g4]),
            (&[(g1, Down), (g2, Down)], &[g3, g4, g1]),
            // Every gateway down: the static order, cut as usual.
            (
                &[(g1, Down), (g2, Down), (g3, Down), (g4, Down)],
                &[g1, g2, g3],
            ),
            (&[(g1, Disabled)], &[g2, g3, g4]),
            (&[(g1, Disabled), (g3, Down)], &[g2, g4, g3]),
            (&[(g4, Down)], &[g1, g2, g3]),
            // A gateway no trunk lists changes nothing.
            (&[("sip:198.51.100.1", Down)], &[g1, g2, g3]),
        ];
        for (not_up, want) in cases {
            assert_eq!(order(&t, &state(not_up)), *want, "{not_up:?}");
        }
        let all_off = state(&[
            (g1, Disabled),
            (g2, Disabled),
            (g3, Disabled),
            (g4, Disabled),
        ]);
        assert_eq!(order(&t, &all_off), ["reject 503"]);
    }

    #[test]
    fn an_empty_state_answers_exactly_like_route() {
        let t = table();
        let q = Query::from_json(br#"{"to_uri":"sip:123@x","call_id":"c"}"#).unwrap();
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            t.route(&q, now),
            t.route_with(&q, &GatewayState::all_up(), now)
        );
    }

    #[test]
    fn the_table_lists_each_gateway_once_with_its_trunks() {
        let mut s = Sources::new();
        s.add(
            "routes.d/10.toml",
            r#"
            [defaults.health]
            probe = "always"
            [trunks.a]
            gateways = ["sip:192.0.2.1", "sips:192.0.2.9"]
            [trunks.b]
            gateways = ["sip:192.0.2.1:5060", { uri = "sip:192.0.2.2", enabled = false }]
            health = { interval = 5, down_after = 1 }
            [[rules]]
            name = "r"
            then.trunks = ["a", "b"]
        "#,
        );
        let t = s.build().unwrap();
        let gws: Vec<(&str, Vec<String>)> = t
            .gateways()
            .iter()
            .map(|g| (g.key.as_str(), g.trunks.clone()))
            .collect();
        assert_eq!(
            gws,
            [
                (
                    "sip:192.0.2.1:5060;transport=udp",
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("sips:192.0.2.9:5061;transport=tls", vec!["a".to_string()]),
            ]
        );
        let w = t.warnings().to_string();
        assert!(
            w.contains("10.toml:5:42: warning: gateway \"sips:192.0.2.9\" cannot be probed"),
            "{w}"
        );
        assert!(
            w.contains("with different health settings; it is one gateway, and `a`'s apply"),
            "{w}"
        );
        assert_eq!(w.matches("cannot be probed").count(), 1, "{w}");
    }

    #[test]
    fn a_test_decides_with_its_down_gateways() {
        let tests = r#"
            [[tests]]
            name = "gateway 1 down"
            query = { to_uri = "sip:123@x", call_id = "c" }
            down = ["sip:192.0.2.1:5060"]
            expect.routes = ["sip:192.0.2.2", "sip:192.0.2.3", "sip:192.0.2.4:5060;transport=udp"]
            [[tests]]
            name = "all up: this one fails"
            query = { to_uri = "sip:123@x", call_id = "c" }
            expect.routes = ["sip:192.0.2.2", "sip:192.0.2.3", "sip:192.0.2.4:5060;transport=udp"]
        "#;
        let mut s = Sources::new();
        s.add("routes.d/10.toml", ROUTES);
        s.add("routes.d/20.toml", tests);
        let r = s.build().unwrap().run_tests();
        assert!(r[0].failures.is_empty(), "{:?}", r[0].failures);
        assert_eq!(r[1].failures.len(), 1);
        let mut s = Sources::new();
        s.add("routes.d/10.toml", ROUTES);
        s.add(
            "routes.d/20.toml",
            tests.replace("sip:192.0.2.1:5060\"]", "sip:192.0.2.9\", \"tel:1\"]"),
        );
        let Err(crate::Error::Config(d)) = s.build() else {
            panic!("an unknown down gateway must not compile");
        };
        let d = d.to_string();
        assert!(d.contains("20.toml:5:21: error: down names \"sip:192.0.2.9\", which no trunk lists as a gateway"), "{d}");
        assert!(
            d.contains("20.toml:5:38: error: down: \"tel:1\" is not a sip: or sips: gateway URI"),
            "{d}"
        );
    }
}
