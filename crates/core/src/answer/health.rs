//! Live facts through the whole decision (SPEC §8, §9.2): down gateways
//! last, disabled ones and full trunks left out, the `max_routes` cut after
//! both. The steps themselves are in `pipeline.rs`; these tests pin what a
//! table answers with them.

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::{GatewayState, GatewayStatus, Live, Outcome, Query, RouteTable, Sources, decide};

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
        let live = Live::builder().gateway_state(state.clone()).build();
        match decide(t, &live, &q, SystemTime::UNIX_EPOCH).outcome {
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
        assert_eq!(t.route(&q, now), decide(&t, &Live::default(), &q, now));
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

/// SPEC §9.2 through the whole decision: limits, `no_capacity`, a test's
/// `load`, and the diagnostics of every limit value.
#[cfg(test)]
mod limits {
    use std::time::SystemTime;

    use crate::{Limit, Live, Outcome, Query, RouteTable, Sources, TrunkLoad, decide};

    const ROUTES: &str = r#"
        [trunks.capped]
        gateways = [{ uri = "sip:192.0.2.1", calls = 2 }, "sip:192.0.2.2"]
        limits = { calls = 5, cps = 10 }
        [trunks.overflow]
        gateways = ["sip:192.0.2.3"]
        [[rules]]
        name = "both"
        match.to.prefix = ["1"]
        then.trunks = ["capped", "overflow"]
        [[rules]]
        name = "capped-only"
        match.to.prefix = ["2"]
        then.trunks = ["capped"]
        then.no_capacity = { code = 480, reason = "Carrier Full" }
        [[rules]]
        name = "capped-default"
        match.to.prefix = ["3"]
        then.trunks = ["capped"]
    "#;

    fn table(extra: &str) -> Result<RouteTable, crate::Error> {
        let mut s = Sources::new();
        s.add("routes.d/10.toml", ROUTES);
        s.add("routes.d/20.toml", extra);
        s.build()
    }

    fn answer(t: &RouteTable, live: &Live, to: &str) -> Vec<String> {
        let body = format!(r#"{{"to_uri":"sip:{to}@x","call_id":"c"}}"#);
        let q = Query::from_json(body.as_bytes()).unwrap();
        match decide(t, live, &q, SystemTime::UNIX_EPOCH).outcome {
            Outcome::Route { routes, .. } => routes.iter().map(|r| r.dst_uri.to_owned()).collect(),
            Outcome::Reject { code, reason, .. } => vec![format!("{code} {reason}")],
        }
    }

    #[test]
    fn a_trunk_at_its_limit_is_left_out_and_no_capacity_answers_when_nothing_is_left() {
        let t = table("").unwrap();
        let free = Live::default();
        let full = Live::builder()
            .trunk_load("capped", TrunkLoad::new(5, 0))
            .build();
        let cps_full = Live::builder()
            .trunk_load("capped", TrunkLoad::new(0, 10))
            .build();
        let gw_full = Live::builder()
            .gateway_calls("sip:192.0.2.1", 2)
            .unwrap()
            .build();
        assert_eq!(
            answer(&t, &free, "1"),
            ["sip:192.0.2.1", "sip:192.0.2.2", "sip:192.0.2.3"]
        );
        assert_eq!(answer(&t, &full, "1"), ["sip:192.0.2.3"]);
        assert_eq!(answer(&t, &cps_full, "1"), ["sip:192.0.2.3"]);
        assert_eq!(
            answer(&t, &gw_full, "1"),
            ["sip:192.0.2.2", "sip:192.0.2.3"]
        );
        assert_eq!(answer(&t, &full, "2"), ["480 Carrier Full"]);
        assert_eq!(answer(&t, &full, "3"), ["503 All Trunks Busy"]);
        // One below the limit leaves everything in.
        let four = Live::builder()
            .trunk_load("capped", TrunkLoad::new(4, 9))
            .build();
        assert_eq!(answer(&t, &four, "3").len(), 2);
        // The decision says what was left out, once per trunk.
        let q = Query::from_json(br#"{"to_uri":"sip:1@x"}"#).unwrap();
        let d = decide(&t, &full, &q, SystemTime::UNIX_EPOCH);
        assert_eq!(d.left_out.len(), 1);
        assert_eq!(
            (d.left_out[0].trunk, d.left_out[0].limit),
            ("capped", Limit::TrunkCalls)
        );
        assert!(
            decide(&t, &free, &q, SystemTime::UNIX_EPOCH)
                .left_out
                .is_empty()
        );
    }

    #[test]
    fn a_test_decides_with_its_load() {
        let t = table(
            r#"
            [[tests]]
            name = "capped is full"
            query = { to_uri = "sip:1@x", call_id = "c" }
            load = { capped = 5 }
            expect.routes = ["sip:192.0.2.3"]
            [[tests]]
            name = "without load: this one fails"
            query = { to_uri = "sip:1@x", call_id = "c" }
            expect.routes = ["sip:192.0.2.3"]
            [[tests]]
            name = "full, and no trunk left"
            query = { to_uri = "sip:3@x", call_id = "c" }
            load = { capped = 7 }
            expect.reject = 503
        "#,
        )
        .unwrap();
        let r = t.run_tests();
        assert!(r[0].failures.is_empty(), "{:?}", r[0].failures);
        assert_eq!(r[1].failures.len(), 1);
        assert!(r[2].failures.is_empty(), "{:?}", r[2].failures);
        assert_eq!(t.trunk_limits("capped"), Some((Some(5), Some(10))));
        assert_eq!(
            t.gateway_calls_limit("sip:192.0.2.1:5060;transport=udp"),
            Some(2)
        );
    }

    #[test]
    fn a_gateway_listed_twice_takes_the_smaller_cap() {
        let t = table(
            r#"
            [trunks.again]
            gateways = [{ uri = "sip:192.0.2.1:5060", calls = 7 }, { uri = "sip:192.0.2.2", calls = 1 }]
            [[rules]]
            name = "again"
            match.to.prefix = ["9"]
            then.trunks = ["again"]
        "#,
        )
        .unwrap();
        let key = |n| format!("sip:192.0.2.{n}:5060;transport=udp");
        assert_eq!(t.gateway_calls_limit(&key(1)), Some(2));
        assert_eq!(t.gateway_calls_limit(&key(2)), Some(1));
        assert_eq!(t.gateway_calls_limit(&key(3)), None);
    }

    #[test]
    fn every_limit_value_is_checked_at_its_place() {
        let bad = r#"
[trunks.a]
gateways = [{ uri = "sip:192.0.2.9", calls = -1 }]
limits = { calls = 0, cps = 20000000 }
[trunks.b]
gateways = ["sip:192.0.2.8"]
limits = {}
[defaults.calls]
max_duration = "forever"
[[rules]]
name = "r"
then.reject = { code = 403 }
then.no_capacity = { code = 503 }
[[tests]]
name = "t"
query = { to_uri = "sip:1@x" }
load = { nosuch = 1, capped = -2 }
expect.reject = 403
"#;
        let Err(crate::Error::Config(d)) = table(bad) else {
            panic!("invalid limits must not compile");
        };
        let d = d.to_string();
        for want in [
            "20.toml:3:13: error: gateway calls must be a count in 1..=10000000, found -1",
            "20.toml:4:20: error: limits.calls = 0 would leave it out of every answer",
            "20.toml:4:29: error: limits.cps must be a count in 1..=10000000, found 20000000",
            "20.toml:7:10: warning: limits is empty",
            "20.toml:9:16: error: calls.max_duration must be a duration",
            "then.no_capacity only apply to routed calls",
            "20.toml:17:10: error: load names trunk `nosuch`, which is not defined",
            "20.toml:17:31: error: load.capped must be a number of calls >= 0, found -2",
        ] {
            assert!(d.contains(want), "missing {want:?} in\n{d}");
        }
    }
}
