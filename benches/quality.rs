//! The cost of quality statistics (SPEC §9.3, issue 15): one attempt's
//! update, and the memory of a (gateway, group) pair with statistics.
//!
//! ```text
//! cargo bench --bench quality
//! ```
//!
//! Targets: an update under 1 µs (median) with 10,000 gateways × 100
//! groups holding statistics; at most 1 KiB per pair.
//!
//! - Before the benches run, `main` fills 10,000 × 100 pairs (one attempt
//!   each) and prints the resident memory that took, per pair (the
//!   process's RSS before and after, from `/proc/self/statm`: what the
//!   machine pays, allocator overhead included).
//! - `record::one_pair`: updates of a single pair (the hash look-ups and
//!   counters at their cheapest).
//! - `record::million_pairs`: updates of random pairs among the 10,000 ×
//!   100, the clock moving 1 ms per update so buckets age as in service;
//!   every threshold set, so each update judges.
//! - `sweep::million_pairs`: one [`Quality::sweep`] over the 10,000 × 100.
//! - `fill::pairs_1000x100`: filling 1,000 × 100 pairs; the allocation
//!   profiler's bytes ÷ 100,000 is a second figure for memory per pair
//!   (allocated bytes, counting hash-table growth, so an upper bound).

#[allow(dead_code)]
#[path = "../crates/cli/live/quality.rs"]
mod quality;

use std::time::{Duration, Instant};

use c4route_core::QualitySettings;
use divan::{AllocProfiler, Bencher, black_box};
use quality::{Attempt, Quality};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const GATEWAYS: usize = 10_000;
const GROUPS: usize = 100;

fn main() {
    let keys = keys(GATEWAYS);
    let groups = groups(GROUPS);
    let before = resident_bytes();
    let q = fill(&keys, &groups, Instant::now());
    let after = resident_bytes();
    if let (Some(b), Some(a)) = (before, after) {
        let pairs = q.pair_count();
        println!(
            "quality memory: {pairs} pairs, {} MiB resident more, {:.0} bytes per pair",
            (a.saturating_sub(b)) >> 20,
            a.saturating_sub(b) as f64 / pairs as f64
        );
    }
    drop(q);
    divan::main();
}

/// The process's resident set in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("sip:10.{}.{}.1:5060;transport=udp", i / 256, i % 256))
        .collect()
}

/// Rule names and LCR groups (`rule@prefix`), half each.
fn groups(n: usize) -> Vec<String> {
    (0..n)
        .map(|j| {
            if j % 2 == 0 {
                format!("wholesale-{j}")
            } else {
                format!("intl-lcr@44{}", 7000 + j)
            }
        })
        .collect()
}

fn settings() -> QualitySettings {
    QualitySettings::default()
        .with_min_asr(Some(0.25))
        .with_max_pdd(Some(Duration::from_secs(8)))
        .with_min_acd(Some(Duration::from_secs(20)))
}

fn fill(keys: &[String], groups: &[String], now: Instant) -> Quality {
    let s = settings();
    let mut q = Quality::new();
    for k in keys {
        for g in groups {
            q.record(
                k,
                g,
                &s,
                Attempt::ended(Some(Duration::from_secs(3)), Duration::from_secs(90)),
                now,
            );
        }
    }
    q
}

/// xorshift64: a cheap, fixed sequence of pair choices.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One attempt of each kind in turn: failed, failed after ringing, answered.
fn attempt(i: u64) -> Attempt {
    match i % 3 {
        0 => Attempt::failed(None),
        1 => Attempt::failed(Some(Duration::from_millis(4200))),
        _ => Attempt::ended(Some(Duration::from_millis(2100)), Duration::from_secs(75)),
    }
}

mod record {
    use super::*;

    #[divan::bench]
    fn one_pair(b: Bencher) {
        let s = settings();
        let mut q = Quality::new();
        let t0 = Instant::now();
        let mut i = 0u64;
        b.bench_local(|| {
            i += 1;
            q.record(
                black_box("sip:10.0.0.1:5060;transport=udp"),
                black_box("wholesale-1"),
                &s,
                attempt(i),
                t0 + Duration::from_millis(i),
            )
        });
    }

    #[divan::bench(sample_count = 1000, sample_size = 100)]
    fn million_pairs(b: Bencher) {
        let keys = keys(GATEWAYS);
        let groups = groups(GROUPS);
        let t0 = Instant::now();
        let mut q = fill(&keys, &groups, t0);
        let s = settings();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut i = 0u64;
        b.bench_local(|| {
            i += 1;
            let r = next(&mut x);
            let k = &keys[(r % GATEWAYS as u64) as usize];
            let g = &groups[((r >> 32) % GROUPS as u64) as usize];
            q.record(k, g, &s, attempt(i), t0 + Duration::from_millis(i))
        });
    }
}

mod sweep {
    use super::*;

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn million_pairs(b: Bencher) {
        let keys = keys(GATEWAYS);
        let groups = groups(GROUPS);
        let t0 = Instant::now();
        let mut q = fill(&keys, &groups, t0);
        let mut i = 0u64;
        b.bench_local(|| {
            // Each sweep one bucket (30 s) later: every pair ages a bucket
            // and stays (its calls are within the window for 15 minutes).
            i += 1;
            q.sweep(t0 + Duration::from_secs(30 * i.min(25)))
        });
    }
}

mod fill {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn pairs_1000x100(b: Bencher) {
        let keys = keys(1000);
        let groups = groups(GROUPS);
        b.bench_local(|| fill(&keys, &groups, Instant::now()));
    }
}
