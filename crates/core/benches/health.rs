//! The cost of live gateway state in the decision (issue 9: "decision time
//! with a state snapshot within 5 % of today's").
//!
//! ```text
//! cargo bench -p c4route-core --bench health
//! ```
//!
//! One 10k-rule table from the rate-deck generator (`examples/ratedeck`), one
//! matching query, decided four ways side by side in one run:
//!
//! - `route`: `RouteTable::route`, today's API (every gateway up);
//! - `all_up`: `route_with` an empty `GatewayState` (a server without probing);
//! - `others_down`: 1,000 gateways down, none of them in this answer (a hash
//!   lookup per route, no reorder);
//! - `first_down`: the answer's first gateway down (lookups, every route
//!   built, reordered and cut at `max_routes`).

#[path = "../examples/ratedeck/mod.rs"]
mod ratedeck;

use std::sync::OnceLock;
use std::time::SystemTime;

use c4route_core::{GatewayState, GatewayStatus, Outcome, Query, RouteTable, Sources};
use divan::{Bencher, black_box};
use ratedeck::{Kind, Rng, Spec};

fn main() {
    divan::main();
}

struct Fixture {
    table: RouteTable,
    query: Query<'static>,
    others_down: GatewayState,
    first_down: GatewayState,
}

fn fixture() -> &'static Fixture {
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
        let routes: Vec<String> = match table.route(&query, SystemTime::now()).outcome {
            Outcome::Route { routes, .. } => routes.iter().map(|r| r.dst_uri.to_owned()).collect(),
            _ => panic!("the bench query must route"),
        };
        let mut others_down = GatewayState::all_up();
        for i in 0..1000 {
            let uri = format!("sip:203.0.{}.{}:5060", i / 250, i % 250);
            others_down.set(&uri, GatewayStatus::Down).unwrap();
        }
        let mut first_down = GatewayState::all_up();
        first_down.set(&routes[0], GatewayStatus::Down).unwrap();
        let moved = table.route_with(&query, &first_down, SystemTime::now());
        if let Outcome::Route { routes: r, .. } = &moved.outcome {
            assert!(
                routes.len() < 2 || r[0].dst_uri != routes[0],
                "the down gateway moved"
            );
        }
        eprintln!(
            "bench answer: {} route(s), first {}",
            routes.len(),
            routes[0]
        );
        Fixture {
            table,
            query,
            others_down,
            first_down,
        }
    })
}

fn bench(b: Bencher, state: Option<&GatewayState>) {
    let f = fixture();
    let now = SystemTime::now();
    match state {
        None => b.bench_local(|| {
            black_box(f.table.route(black_box(&f.query), now))
                .rule
                .is_some()
        }),
        Some(s) => b.bench_local(|| {
            black_box(f.table.route_with(black_box(&f.query), black_box(s), now))
                .rule
                .is_some()
        }),
    }
}

#[divan::bench(sample_count = 1000, sample_size = 64)]
fn route(b: Bencher) {
    bench(b, None);
}

#[divan::bench(sample_count = 1000, sample_size = 64)]
fn all_up(b: Bencher) {
    bench(b, Some(&GatewayState::all_up()));
}

#[divan::bench(sample_count = 1000, sample_size = 64)]
fn others_down(b: Bencher) {
    bench(b, Some(&fixture().others_down));
}

#[divan::bench(sample_count = 1000, sample_size = 64)]
fn first_down(b: Bencher) {
    bench(b, Some(&fixture().first_down));
}
