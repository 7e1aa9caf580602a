//! Decision and compile benchmarks of the routing engine (issue 2, "Performance").
//!
//! ```text
//! cargo bench -p c4route-core --bench lookup
//! ```
//!
//! Tables come from the same seeded rate-deck generator as the `gen_routes`
//! example (`examples/ratedeck/mod.rs`), built in memory once per size and
//! shared by every bench of that size. `route` is the decision alone
//! (`RouteTable::route`, which also builds the answer's routes); `json` adds
//! the rtjson serialisation into a reused buffer, as the server does. Query
//! kinds:
//!
//! - `matching`: a 11–13 digit number under a random prefix of the deck;
//! - `deep`: a 13-digit number under the 10-digit prefix with the most
//!   covering prefixes (every probe length hits);
//! - `miss`: a number no prefix covers (404);
//! - `corpus`: 4096 different generated queries in turn (the kinds above, and
//!   in `mix` also source-only and regex numbers), so that a big table is not
//!   measured from a cache kept warm by one repeated number.
//!
//! `mix` is 100k prefix rules plus 10k source-CIDR rules and 100 regex rules
//! (one `RegexSet`), queried by number, by source network and by regex.
//! `compile` is TOML text → table (parse, validate, index) of 100k and 1M
//! rules, and of the same 1M prefixes grouped into one rule per trunk list;
//! its `alloc − dealloc` bytes are what the finished table keeps.
//! docs/PERFORMANCE.md records the figures and how to read them.

#[path = "../examples/ratedeck/mod.rs"]
mod ratedeck;

use std::sync::OnceLock;
use std::time::SystemTime;

use c4route_core::{Query, RouteTable, Sources, Wrap};
use divan::{Bencher, black_box};
use ratedeck::{Deck, Kind, Rng, Spec};

/// Counts allocations: each bench also reports allocations per decision, and
/// `compile` reports the bytes the finished table keeps (alloc − dealloc).
#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const SIZES: [usize; 4] = [100, 10_000, 100_000, 1_000_000];
/// Queries in each fixture's rotating corpus.
const CORPUS: usize = 4096;

/// A table and one query of each kind it can serve.
struct Fixture {
    sources: Sources,
    table: RouteTable,
    queries: Vec<(Kind, Query<'static>)>,
    /// Distinct queries of every kind in rotation, so that a large table is
    /// not served from a warm cache by one repeated number.
    corpus: Vec<Query<'static>>,
}

impl Fixture {
    fn new(spec: Spec) -> Fixture {
        let deck = ratedeck::generate(spec);
        let sources = sources(&deck);
        let table = sources.build().expect("a generated deck compiles");
        let mut rng = Rng::new(7);
        let queries = Kind::ALL
            .into_iter()
            .map(|k| {
                let body = deck.query(k, &mut rng);
                let q = Query::from_json(body.as_bytes())
                    .expect("a generated query parses")
                    .into_owned();
                (k, q)
            })
            .collect();
        let corpus = deck
            .queries(CORPUS, 11)
            .iter()
            .map(|body| {
                Query::from_json(body.as_bytes())
                    .expect("a generated query parses")
                    .into_owned()
            })
            .collect();
        Fixture {
            sources,
            table,
            queries,
            corpus,
        }
    }

    fn query(&self, kind: Kind) -> &Query<'static> {
        &self
            .queries
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind")
            .1
    }
}

fn sources(deck: &Deck) -> Sources {
    let mut s = Sources::new();
    for (name, text) in &deck.files {
        s.add(format!("routes.d/{name}"), text.clone());
    }
    s
}

/// The prefix-only table of `n` rules, built on first use.
fn prefixes(n: usize) -> &'static Fixture {
    static TABLES: [OnceLock<Fixture>; 4] = [const { OnceLock::new() }; 4];
    let i = SIZES.iter().position(|&s| s == n).expect("a bench size");
    TABLES[i].get_or_init(|| Fixture::new(Spec::prefixes(n)))
}

/// 100k prefix rules, 10k source-CIDR rules and 100 regex rules.
fn mixed() -> &'static Fixture {
    static MIX: OnceLock<Fixture> = OnceLock::new();
    MIX.get_or_init(|| {
        Fixture::new(Spec {
            rules: 100_000,
            cidr_rules: 10_000,
            regex_rules: 100,
            seed: 1,
            grouped: false,
        })
    })
}

fn decide(b: Bencher, f: &'static Fixture, kind: Kind) {
    let q = f.query(kind);
    let now = SystemTime::now();
    // The decision is dropped inside the timed loop, as the server does.
    b.bench_local(|| black_box(f.table.route(black_box(q), now)).rule.is_some());
}

fn decide_corpus(b: Bencher, f: &'static Fixture) {
    let now = SystemTime::now();
    let mut i = 0;
    b.bench_local(|| {
        i = (i + 1) % f.corpus.len();
        black_box(f.table.route(black_box(&f.corpus[i]), now))
            .rule
            .is_some()
    });
}

fn decide_json(b: Bencher, f: &'static Fixture, kind: Kind) {
    let q = f.query(kind);
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(4096);
    b.bench_local(|| {
        out.clear();
        f.table
            .route(black_box(q), now)
            .write_json(&mut out, Wrap::Rtjson);
        out.len()
    });
}

/// `RouteTable::route` alone, by table size.
mod route {
    use super::*;

    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn matching(b: Bencher, n: usize) {
        decide(b, prefixes(n), Kind::Match);
    }

    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn deep(b: Bencher, n: usize) {
        decide(b, prefixes(n), Kind::Deep);
    }

    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn miss(b: Bencher, n: usize) {
        decide(b, prefixes(n), Kind::Miss);
    }

    /// 4096 different queries (matching, deep, miss) in turn.
    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn corpus(b: Bencher, n: usize) {
        decide_corpus(b, prefixes(n));
    }
}

/// `route` + `write_json` (the rtjson the server sends), by table size.
mod json {
    use super::*;

    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn matching(b: Bencher, n: usize) {
        decide_json(b, prefixes(n), Kind::Match);
    }

    #[divan::bench(args = SIZES, sample_count = 300, sample_size = 64)]
    fn miss(b: Bencher, n: usize) {
        decide_json(b, prefixes(n), Kind::Miss);
    }
}

/// 100k prefix + 10k source-CIDR + 100 regex rules.
mod mix {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn matching(b: Bencher) {
        decide(b, mixed(), Kind::Match);
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn deep(b: Bencher) {
        decide(b, mixed(), Kind::Deep);
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn source_only(b: Bencher) {
        decide(b, mixed(), Kind::Source);
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn regex(b: Bencher) {
        decide(b, mixed(), Kind::Regex);
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn miss(b: Bencher) {
        decide(b, mixed(), Kind::Miss);
    }

    /// 4096 different queries of every kind in turn.
    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn corpus(b: Bencher) {
        decide_corpus(b, mixed());
    }
}

/// TOML text → table (parse, validate, index). Few samples: seconds each.
mod compile {
    use super::*;

    fn build(b: Bencher, n: usize) {
        let s = &prefixes(n).sources;
        b.bench(|| s.build().expect("compiles"));
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn rules_100k(b: Bencher) {
        build(b, 100_000);
    }

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn rules_1m(b: Bencher) {
        build(b, 1_000_000);
    }

    /// The same 1M prefixes written as one rule per trunk list.
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn grouped_1m(b: Bencher) {
        let s = sources(&ratedeck::generate(Spec {
            grouped: true,
            ..Spec::prefixes(1_000_000)
        }));
        b.bench(|| s.build().expect("compiles"));
    }

    /// 100k rules that all name an unknown trunk (issue 7, defect 1): every
    /// one is an error. This took 26 s when each error rescanned the list
    /// and sorted every trunk name; it is linear now.
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn broken_100k(b: Bencher) {
        let mut text = String::from("[trunks.known]\ngateways = [\"sip:192.0.2.1\"]\n");
        for i in 0..100_000 {
            text += &format!(
                "[[rules]]\nname = \"r{i}\"\nmatch.to.prefix = [\"{i}\"]\nthen.trunks = [\"nope\"]\n"
            );
        }
        let mut s = Sources::new();
        s.add("routes.d/10-broken.toml", text);
        b.bench(|| s.build().expect_err("an unknown trunk"));
    }
}
