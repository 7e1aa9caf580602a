//! Memory of open call records (issue 14: "100,000 open call records: at
//! most 200 bytes each").
//!
//! ```text
//! cargo run --release --example calls_memory [-- RECORDS]
//! ```
//!
//! Opens RECORDS (default 100,000) records the way `live/decide.rs` does
//! (take the first channel, then open a record of three routes over two or
//! three trunks, 36-character Call-IDs; see `calls_fixture`) and prints,
//! per record:
//!
//! - the bytes requested from the allocator and still held (the `cap`
//!   crate's counting wrapper around jemalloc: every `alloc` − `dealloc`,
//!   by `Layout::size`);
//! - the growth of the resident set (`VmRSS`) with jemalloc, the binary's
//!   allocator: what the kernel charges, size classes and the hash tables'
//!   freed smaller arrays included.
//!
//! The calls arrive 1.8 ms apart on the decision's clock (555 calls per
//! second: 100,000 calls of 180 s on average), so each trunk's `cps` log of
//! the last second holds what it would at that load and not a burst.

#[path = "calls_fixture/mod.rs"]
mod fixture;
#[path = "../crates/core/examples/procstat/mod.rs"]
mod procstat;

use std::time::{Duration, Instant};

use cap::Cap;
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOC: Cap<Jemalloc> = Cap::new(Jemalloc, usize::MAX);

fn main() {
    let records: u64 = match std::env::args().nth(1) {
        None => 100_000,
        Some(a) => match a.replace('_', "").parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("calls_memory: {a:?} is not a number of records (> 0)");
                std::process::exit(2);
            }
        },
    };
    let calls = fixture::calls();
    let plans = fixture::plans();
    let mut id = String::with_capacity(64);
    let t0 = Instant::now();
    // Warm up every size class and slot the records use, then close.
    for k in 0..1000 {
        fixture::call_id(0, k, &mut id);
        fixture::decide_side(&calls, &id, fixture::plan(&plans, k as usize), t0);
    }
    calls.expire(Duration::ZERO, t0);
    assert_eq!(calls.open_count(), 0);

    let (rss0, _) = procstat::rss();
    let req0 = ALLOC.allocated();
    let started = Instant::now();
    for k in 0..records {
        fixture::call_id(1, k, &mut id);
        let now = t0 + Duration::from_micros(1800 * k);
        fixture::decide_side(&calls, &id, fixture::plan(&plans, k as usize), now);
    }
    let took = started.elapsed();
    let req1 = ALLOC.allocated();
    let (rss1, hwm) = procstat::rss();
    let open = calls.open_count() as u64;
    assert_eq!(open, records, "every record stays open");

    let per = |bytes: i128| bytes as f64 / records as f64;
    println!("open records:                 {open}");
    println!(
        "requested from the allocator: {} bytes = {:.1} bytes/record",
        req1 as i128 - req0 as i128,
        per(req1 as i128 - req0 as i128)
    );
    println!(
        "resident set growth (jemalloc): {} bytes = {:.1} bytes/record (VmRSS {:.1} → {:.1} MiB, VmHWM {:.1} MiB)",
        rss1 as i128 - rss0 as i128,
        per(rss1 as i128 - rss0 as i128),
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    println!(
        "opening them took {:.1} ms ({:.0} ns/record, including the Call-ID text)",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / records as f64
    );
    // Closing releases every channel.
    calls.expire(Duration::ZERO, t0 + Duration::from_secs(100_000));
    assert_eq!(calls.open_count(), 0);
}
