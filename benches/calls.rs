//! Call records in the server (SPEC §9.1, §9.2; issue 14 targets "events
//! applied at ≥ 100,000 per second on one core"):
//!
//! ```text
//! cargo bench --bench calls
//! ```
//!
//! `crates/cli/live/calls.rs` as the binary builds it (jemalloc, release),
//! with 100,000 records open in the background (see
//! `examples/calls_fixture` for the table, the routes and the Call-IDs).
//! Each iteration works on a record of its own, opened (or closed) before
//! the sample is timed:
//!
//! - `events::failed_next_then_ended`: `failed` on route 0 with `next` =
//!   route 1, then `ended` on route 1 (a failover, then the end: 2 events,
//!   so divan's `item/s` is events per second);
//! - `events::ended`: `ended` on the first route;
//! - `decision::take_open`: what `live/decide.rs` adds to a decision with
//!   a Call-ID: take the first route's channel and attempt, turn the
//!   routes into board ids, open the record (the record is closed again
//!   after the sample).
//!
//! Memory per record: `cargo run --release --example calls_memory`.

#[path = "../examples/calls_fixture/mod.rs"]
mod fixture;

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use fixture::calls::{Applied, Calls};
use fixture::{Plan, plan};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOC: Jemalloc = Jemalloc;

/// Records open in the background during every bench.
const OPEN: u64 = 100_000;
/// Call-IDs the benches cycle through (each closed by the end of its sample).
const POOL: usize = 1 << 16;

fn main() {
    divan::main();
}

struct Fixture {
    calls: Calls,
    plans: Vec<Plan>,
    /// Call-IDs of the records the benches open and close.
    pool: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let calls = fixture::calls();
        let plans = fixture::plans();
        let now = Instant::now();
        let mut id = String::new();
        for k in 0..OPEN {
            fixture::call_id(1, k, &mut id);
            fixture::decide_side(&calls, &id, plan(&plans, k as usize), now);
        }
        assert_eq!(calls.open_count() as u64, OPEN);
        let pool = (0..POOL as u64)
            .map(|k| {
                fixture::call_id(2, k, &mut id);
                id.clone()
            })
            .collect();
        Fixture { calls, plans, pool }
    })
}

thread_local! {
    static NEXT: Cell<usize> = const { Cell::new(0) };
}

/// The next pool index (cycling).
fn next() -> usize {
    NEXT.with(|n| {
        let k = n.get();
        n.set((k + 1) % POOL);
        k
    })
}

/// A record opened by the timed code, closed when divan drops it after
/// the sample.
struct Opened(usize);

impl Drop for Opened {
    fn drop(&mut self) {
        let f = fixture();
        let p = plan(&f.plans, self.0);
        let r = f.calls.apply(
            &f.pool[self.0],
            &p.routes[0].gateway,
            &p.ended,
            Instant::now(),
        );
        assert!(matches!(r, Applied::Done { closed: true, .. }), "{r:?}");
    }
}

/// Opens record `k` of the pool (outside the timing).
fn open(k: usize) -> usize {
    let f = fixture();
    fixture::decide_side(&f.calls, &f.pool[k], plan(&f.plans, k), Instant::now());
    k
}

mod events {
    use super::*;

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn failed_next_then_ended(b: Bencher) {
        let f = fixture();
        b.counter(ItemsCount::new(2usize))
            .with_inputs(|| open(next()))
            .bench_local_values(|k| {
                let p = plan(&f.plans, k);
                let id = &f.pool[k];
                let now = Instant::now();
                let a = f.calls.apply(id, &p.routes[0].gateway, &p.failed_next, now);
                let e = f.calls.apply(id, &p.routes[1].gateway, &p.ended, now);
                debug_assert!(matches!(e, Applied::Done { closed: true, .. }));
                black_box((a, e))
            });
    }

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn ended(b: Bencher) {
        let f = fixture();
        b.counter(ItemsCount::new(1usize))
            .with_inputs(|| open(next()))
            .bench_local_values(|k| {
                let p = plan(&f.plans, k);
                let e = f
                    .calls
                    .apply(&f.pool[k], &p.routes[0].gateway, &p.ended, Instant::now());
                debug_assert!(matches!(e, Applied::Done { closed: true, .. }));
                black_box(e)
            });
    }
}

mod decision {
    use super::*;

    #[divan::bench(sample_count = 1000, sample_size = 64)]
    fn take_open(b: Bencher) {
        let f = fixture();
        b.counter(ItemsCount::new(1usize))
            .with_inputs(next)
            .bench_local_values(|k| {
                let now = Instant::now();
                fixture::decide_side(&f.calls, &f.pool[k], plan(&f.plans, k), now);
                Opened(k)
            });
    }
}
