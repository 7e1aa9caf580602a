//! Least-cost routing decisions (SPEC §7, issue 8): `RouteTable::route` for
//! an LCR rule over 8 carriers, with decks of 1k and of 250k rows each.
//!
//! ```text
//! cargo bench -p c4route-core --bench lcr
//! ```
//!
//! Decks come from the `gen_decks` generator (`examples/lcrdeck/mod.rs`),
//! built in memory once per size. The rule prices the number in all 8
//! decks, orders the carriers by the cost of a 60 s call and answers with
//! one route per carrier (8 routes). Kinds:
//!
//! - `one`: the same number again and again (a hot cache);
//! - `corpus`: 4096 different numbers in turn (1 in 16 priced by no deck,
//!   answered `no_rate`), so that a big deck is not measured from a cache
//!   kept warm by one number;
//! - `no_rate`: a number no deck prices: the 8 lookups without the answer.
//!
//! `load` builds the 8 × 250k decks (2M rows) from their CSV text.

#[path = "../examples/lcrdeck/mod.rs"]
mod lcrdeck;

use std::sync::OnceLock;
use std::time::SystemTime;

use c4route_core::{Query, RouteTable, Sources};
use divan::{Bencher, black_box};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const ROWS: [usize; 2] = [1_000, 250_000];

struct Fixture {
    sources: Sources,
    table: RouteTable,
    corpus: Vec<Query<'static>>,
}

fn fixture(rows: usize) -> &'static Fixture {
    static F: [OnceLock<Fixture>; 2] = [const { OnceLock::new() }; 2];
    let i = ROWS.iter().position(|&r| r == rows).expect("a bench size");
    F[i].get_or_init(|| {
        let decks = lcrdeck::generate(8, rows, 1);
        let sources = decks.sources();
        let table = sources.build().expect("generated decks compile");
        let corpus = (0..decks.numbers.len())
            .map(|i| {
                Query::from_json(decks.query(i).as_bytes())
                    .expect("a generated query")
                    .into_owned()
            })
            .collect();
        Fixture {
            sources,
            table,
            corpus,
        }
    })
}

fn now() -> SystemTime {
    c4route_core::parse_time("2026-12-01T10:00:00Z").expect("a time")
}

mod route {
    use super::*;

    /// One priced number, again and again.
    #[divan::bench(args = ROWS, sample_count = 300, sample_size = 64)]
    fn one(b: Bencher, rows: usize) {
        let f = fixture(rows);
        let q = &f.corpus[0];
        let now = now();
        b.bench_local(|| black_box(f.table.route(black_box(q), now)).rule.is_some());
    }

    /// 4096 different numbers in turn.
    #[divan::bench(args = ROWS, sample_count = 300, sample_size = 64)]
    fn corpus(b: Bencher, rows: usize) {
        let f = fixture(rows);
        let now = now();
        let mut i = 0;
        b.bench_local(|| {
            i = (i + 1) % f.corpus.len();
            black_box(f.table.route(black_box(&f.corpus[i]), now))
                .rule
                .is_some()
        });
    }

    /// A number no deck prices: eight lookups, then the no_rate answer.
    #[divan::bench(args = ROWS, sample_count = 300, sample_size = 64)]
    fn no_rate(b: Bencher, rows: usize) {
        let f = fixture(rows);
        let q = &f.corpus[15];
        let now = now();
        b.bench_local(|| black_box(f.table.route(black_box(q), now)).rule.is_some());
    }
}

/// CSV text → table of 8 × 250k rows. Few samples: ~0.5 s each.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn load(b: Bencher) {
    let s = &fixture(250_000).sources;
    b.bench(|| s.build().expect("compiles"));
}
