//! Loads a routes.d with rate decks the way `c4route serve` does and reports
//! what it cost: CPU seconds (user + system, all threads) and wall time of
//! reading and of building, resident memory per rate row once the file
//! texts are dropped, and the peak per row.
//!
//! ```text
//! cargo run --release -p c4route-core --example gen_decks -- --carriers 8 --rows 125000 --out /tmp/lcr-1m
//! cargo run --release -p c4route-core --example load_decks -- /tmp/lcr-1m [--queries]
//! ```
//!
//! The argument is a routes.d or a directory holding `routes.d/` (then
//! `--queries` also times `route` over `queries.jsonl` beside it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use c4route_core::{Query, Sources};

mod procstat;

use procstat::{cpu, rss};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_decks: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut dir: Option<PathBuf> = None;
    let mut queries = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--queries" => queries = true,
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(a.into()),
            _ => return Err(format!("usage: load_decks DIR [--queries] (got {a:?})")),
        }
    }
    let dir = dir.ok_or("usage: load_decks DIR [--queries]")?;
    let routes = if dir.join("routes.d").is_dir() {
        dir.join("routes.d")
    } else {
        dir.clone()
    };
    let (rss0, _) = rss();
    let (c0, t0) = (cpu(), Instant::now());
    let sources = Sources::read_dir(&routes).map_err(|e| e.to_string())?;
    let (c1, t1) = (cpu(), Instant::now());
    let bytes: usize = sources
        .rate_files()
        .map(|(_, b)| b.map_or(0, <[u8]>::len))
        .sum();
    let (rss_text, _) = rss();
    let table = sources.build().map_err(|e| e.to_string())?;
    let (c2, t2) = (cpu(), Instant::now());
    let (rss_built, _) = rss();
    drop(sources);
    let (rss1, hwm) = rss();
    let rows = table.rate_row_count().max(1) as u64;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("routes.d            {}", routes.display());
    println!(
        "rate rows           {} in {} deck(s), {:.1} MB of deck files",
        table.rate_row_count(),
        table.rate_files().count(),
        bytes as f64 / 1e6
    );
    println!(
        "read                {:7.3} s CPU, {:7.3} s wall",
        c1 - c0,
        (t1 - t0).as_secs_f64()
    );
    println!(
        "build               {:7.3} s CPU, {:7.3} s wall (parse, validate, index every deck)",
        c2 - c1,
        (t2 - t1).as_secs_f64()
    );
    println!(
        "read + build        {:7.3} s CPU = {:.0} ns CPU per row",
        c2 - c0,
        (c2 - c0) * 1e9 / rows as f64
    );
    println!(
        "VmRSS               {:.1} MB before, {:.1} MB with the files, {:.1} MB with the table, {:.1} MB after dropping the files",
        mb(rss0),
        mb(rss_text),
        mb(rss_built),
        mb(rss1)
    );
    let resident = rss1.saturating_sub(rss0);
    println!(
        "resident per row    {:.1} B (VmRSS after - before, {:.1} MB)",
        resident as f64 / rows as f64,
        mb(resident)
    );
    println!(
        "heap per row        {:.1} B (rate_heap_bytes(), {:.1} MB)",
        c4route_core::bench::rate_heap_bytes(&table) as f64 / rows as f64,
        mb(c4route_core::bench::rate_heap_bytes(&table) as u64)
    );
    println!(
        "peak per row        {:.1} B (VmHWM - VmRSS before, {:.1} MB; includes the files)",
        hwm.saturating_sub(rss0) as f64 / rows as f64,
        mb(hwm.saturating_sub(rss0))
    );
    if queries {
        let path = dir.join("queries.jsonl");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let qs: Vec<Query<'static>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Query::from_json(l.as_bytes()).map(Query::into_owned))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        let mut routed = 0u64;
        let t = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            for q in &qs {
                routed += u64::from(matches!(
                    table.route(q, now).outcome,
                    c4route_core::Outcome::Route { .. }
                ));
            }
        }
        let n = (qs.len() * rounds) as f64;
        println!(
            "route               {:.0} ns per query on average over {} queries ({} routed)",
            t.elapsed().as_secs_f64() * 1e9 / n,
            n,
            routed
        );
    }
    Ok(())
}
