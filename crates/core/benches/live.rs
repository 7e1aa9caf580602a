//! The cost of live facts in the decision (SPEC §8, §9):
//!
//! ```text
//! cargo bench -p c4route-core --bench live
//! ```
//!
//! Gateway state (issue 9: "within 5 % of a decision without it"), on one
//! 10k-rule table from the rate-deck generator (`examples/ratedeck`) and one
//! matching query, side by side in one run:
//!
//! - `gateways::nothing`: `RouteTable::route` (`Live::default()`);
//! - `gateways::others_down`: 1,000 gateways down, none in this answer;
//! - `gateways::first_down`: the answer's first gateway down (reordered).
//!
//! Capacity limits (issue 14: "a decision with limits on a table of 1,000
//! trunks costs at most 10 % more than without"), on a generated table of
//! 1,000 trunks (two gateways each) and 10,000 prefix rules routing to three
//! trunks each, in two copies that differ only in `[trunks.X.limits]`
//! (`calls`, `cps`) and a per-gateway `calls`:
//!
//! - `limits::off`: the copy without limits, `Live::default()`;
//! - `limits::on`: the copy with limits, and a snapshot carrying a load
//!   below the limit for every one of the 1,000 trunks and 2,000 gateways
//!   (a look-up per trunk and gateway of the answer, nothing left out);
//! - `limits::first_full`: the same, with the answer's first trunk full.
//!
//! Quality (issue 15: "within 5 % with 10,000 gateways × 100 groups holding
//! statistics"), on the limits table:
//!
//! - `quality::poor_elsewhere`: 10,000 (gateway, group) pairs judged poor,
//!   none of them in this answer (a look-up per route);
//! - `quality::first_poor`: the answer's first gateway poor for its group.

#[path = "../examples/ratedeck/mod.rs"]
mod ratedeck;

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use c4route_core::{GatewayStatus, Live, Outcome, Query, RouteTable, Sources, TrunkLoad, decide};
use divan::{Bencher, black_box};
use ratedeck::{Kind, Rng, Spec};

fn main() {
    divan::main();
}

fn first_route(table: &RouteTable, live: &Live, q: &Query<'_>) -> (String, String, String) {
    match decide(table, live, q, SystemTime::now()).outcome {
        Outcome::Route { routes, .. } => (
            routes[0].dst_uri.to_owned(),
            routes[0].trunk.to_owned(),
            routes[0].group.to_string(),
        ),
        Outcome::Reject { code, .. } => panic!("the bench query must route, got {code}"),
        _ => panic!("the bench query must route"),
    }
}

fn run(b: Bencher, table: &RouteTable, live: &Live, q: &Query<'_>) {
    let now = SystemTime::now();
    b.bench_local(|| {
        black_box(decide(table, black_box(live), black_box(q), now))
            .rule
            .is_some()
    });
}

mod gateways {
    use super::*;

    pub struct Fixture {
        pub table: RouteTable,
        pub query: Query<'static>,
        pub others_down: Live,
        pub first_down: Live,
    }

    pub fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let deck = ratedeck::generate(Spec::prefixes(10_000));
            let mut s = Sources::new();
            for (name, text) in &deck.files {
                s.add(format!("routes.d/{name}"), text.clone());
            }
            let table = s.build().expect("a generated deck compiles");
            let body = deck.query(Kind::Match, &mut Rng::new(7));
            let query = Query::from_json(body.as_bytes()).unwrap().into_owned();
            let (first, _, _) = first_route(&table, &Live::default(), &query);
            let mut others = Live::builder();
            for i in 0..1000 {
                let uri = format!("sip:203.0.{}.{}:5060", i / 250, i % 250);
                others = others.gateway_status(&uri, GatewayStatus::Down).unwrap();
            }
            let first_down = Live::builder()
                .gateway_status(&first, GatewayStatus::Down)
                .unwrap()
                .build();
            assert_ne!(first_route(&table, &first_down, &query).0, first);
            Fixture {
                table,
                query,
                others_down: others.build(),
                first_down,
            }
        })
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn nothing(b: Bencher) {
        let f = fixture();
        run(b, &f.table, &Live::default(), &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn others_down(b: Bencher) {
        let f = fixture();
        run(b, &f.table, &f.others_down, &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn first_down(b: Bencher) {
        let f = fixture();
        run(b, &f.table, &f.first_down, &f.query);
    }
}

const TRUNKS: usize = 1000;
const RULES: usize = 10_000;

/// 1,000 trunks and 10,000 rules; with `limits`, every trunk has
/// `calls = 100, cps = 50` and its first gateway `calls = 60`.
fn limits_table(limits: bool) -> RouteTable {
    let mut text = String::new();
    for t in 0..TRUNKS {
        let (a, b) = (t / 250, t % 250);
        let gw_calls = if limits { ", calls = 60" } else { "" };
        writeln!(
            text,
            "[trunks.t{t}]\ngateways = [{{ uri = \"sip:198.18.{a}.{b}\"{gw_calls} }}, \"sip:198.19.{a}.{b}\"]"
        )
        .unwrap();
        if limits {
            writeln!(text, "limits = {{ calls = 100, cps = 50 }}").unwrap();
        }
    }
    for r in 0..RULES {
        let t = r % TRUNKS;
        writeln!(
            text,
            "[[rules]]\nname = \"r{r}\"\nmatch.to.prefix = [\"{}\"]\nthen.trunks = [\"t{t}\", \"t{}\", \"t{}\"]",
            100_000 + r,
            (t + 1) % TRUNKS,
            (t + 2) % TRUNKS
        )
        .unwrap();
    }
    let mut s = Sources::new();
    s.add("routes.d/10.toml", text);
    s.build().expect("the limits table compiles")
}

mod limits {
    use super::*;

    pub struct Fixture {
        pub off: RouteTable,
        pub on: RouteTable,
        pub query: Query<'static>,
        pub below: Live,
        pub first_full: Live,
        pub poor_elsewhere: Live,
        pub first_poor: Live,
    }

    pub fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let off = limits_table(false);
            let on = limits_table(true);
            let query = Query::from_json(br#"{"to_uri":"sip:1042421234@x","call_id":"bench"}"#)
                .unwrap()
                .into_owned();
            let mut below = Live::builder();
            for t in 0..TRUNKS {
                let (a, b) = (t / 250, t % 250);
                below = below
                    .trunk_load(&format!("t{t}"), TrunkLoad::new(99, 49))
                    .gateway_calls(&format!("sip:198.18.{a}.{b}"), 59)
                    .unwrap()
                    .gateway_calls(&format!("sip:198.19.{a}.{b}"), 1)
                    .unwrap();
            }
            let below = below.build();
            let (first, trunk, group) = first_route(&on, &below, &query);
            let first_full = below
                .to_builder()
                .trunk_load(&trunk, TrunkLoad::new(100, 0))
                .build();
            assert_ne!(first_route(&on, &first_full, &query).1, trunk);
            let mut poor = Live::builder();
            for g in 0..100 {
                for t in 0..100 {
                    let (a, b) = (t / 250, 100 + t % 150);
                    poor = poor
                        .poor(&format!("sip:198.18.{a}.{b}"), &format!("r{g}"))
                        .unwrap();
                }
            }
            let poor_elsewhere = poor.build();
            let first_poor = Live::builder().poor(&first, &group).unwrap().build();
            assert_ne!(first_route(&on, &first_poor, &query).0, first);
            assert_eq!(first_route(&on, &poor_elsewhere, &query).0, first);
            Fixture {
                off,
                on,
                query,
                below,
                first_full,
                poor_elsewhere,
                first_poor,
            }
        })
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn off(b: Bencher) {
        let f = fixture();
        run(b, &f.off, &Live::default(), &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn on(b: Bencher) {
        let f = fixture();
        run(b, &f.on, &f.below, &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn first_full(b: Bencher) {
        let f = fixture();
        run(b, &f.on, &f.first_full, &f.query);
    }
}

mod quality {
    use super::*;

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn off(b: Bencher) {
        let f = limits::fixture();
        run(b, &f.off, &Live::default(), &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn poor_elsewhere(b: Bencher) {
        let f = limits::fixture();
        run(b, &f.off, &f.poor_elsewhere, &f.query);
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn first_poor(b: Bencher) {
        let f = limits::fixture();
        run(b, &f.off, &f.first_poor, &f.query);
    }
}
