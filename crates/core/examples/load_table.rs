//! Loads a routes.d the way `c4route serve` does and reports what it cost:
//! wall time of reading and of compiling, resident memory (VmRSS) before,
//! with the source texts still held, and after dropping them, and the peak.
//!
//! ```text
//! cargo run --release -p c4route-core --example gen_routes -- --rules 1000000 --out /tmp/deck
//! cargo run --release -p c4route-core --example load_table -- /tmp/deck [--queries]
//! ```
//!
//! The argument is a routes.d directory or a directory holding `routes.d/`
//! (then `queries.jsonl` beside it is used by `--queries`, which also times
//! a pass of `route` + `write_json` over the corpus as a sanity check;
//! `--repeat N` makes N passes, for a profiler). `--toml-floor` first times
//! the toml crate's parse alone, the floor of the compile.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use c4route_core::{Query, Sources, Wrap};

mod procstat;

use procstat::rss;

// The allocator `c4route` ships with (crates/cli/main.rs), so that the
// resident figures are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_table: {e}");
            ExitCode::from(2)
        }
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn run() -> Result<(), String> {
    let mut dir: Option<PathBuf> = None;
    let mut with_queries = false;
    let mut toml_floor = false;
    let mut repeat = 1u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--queries" => with_queries = true,
            "--toml-floor" => toml_floor = true,
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--repeat needs a number")?;
            }
            _ if dir.is_none() && !a.starts_with('-') => dir = Some(a.into()),
            _ => {
                return Err(format!(
                    "usage: load_table DIR [--toml-floor] [--queries [--repeat N]] (got {a:?})"
                ));
            }
        }
    }
    let dir = dir.ok_or("usage: load_table DIR [--queries]")?;
    let (routes, queries) = if dir.join("routes.d").is_dir() {
        (dir.join("routes.d"), dir.join("queries.jsonl"))
    } else {
        (dir.clone(), dir.join("../queries.jsonl"))
    };

    let (rss0, _) = rss();
    let t0 = Instant::now();
    let sources = Sources::read_dir(&routes).map_err(|e| e.to_string())?;
    let read = t0.elapsed();
    let (rss_text, _) = rss();
    if toml_floor {
        // The toml crate's own span-keeping parse (the tree `toml::from_str`
        // deserialises from), file by file: the floor of any compile that
        // goes through it.
        let t = Instant::now();
        for (path, text) in sources.files() {
            toml::de::DeTable::parse(text).map_err(|e| format!("{path}: {e}"))?;
        }
        println!(
            "toml parse only   {:8.1} ms (toml::de::DeTable::parse of every file)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t1 = Instant::now();
    let table = sources.build().map_err(|e| e.to_string())?;
    let t2 = Instant::now();
    let (rss1, _) = rss();
    let text_bytes: usize = sources.files().map(|(_, t)| t.len()).sum();
    drop(sources);
    // The core frees a large deck's build state on a background thread:
    // give it time before reading what stays resident.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (rss2, hwm) = rss();

    let rules = table.rule_count().max(1) as u64;
    let resident = rss2.saturating_sub(rss0);
    println!("routes.d          {}", routes.display());
    println!(
        "rules             {} ({} trunks), {:.1} MB of TOML",
        table.rule_count(),
        table.trunk_count(),
        text_bytes as f64 / 1e6
    );
    let compile = t2 - t1;
    println!("read              {:8.1} ms", read.as_secs_f64() * 1e3);
    println!("compile           {:8.1} ms", compile.as_secs_f64() * 1e3);
    println!(
        "read + compile    {:8.1} ms",
        (read + compile).as_secs_f64() * 1e3
    );
    println!(
        "VmRSS             {:.1} MB before, {:.1} MB with text, {:.1} MB with table + text, \
         {:.1} MB after dropping the text (peak {:.1} MB)",
        mb(rss0),
        mb(rss_text),
        mb(rss1),
        mb(rss2),
        mb(hwm)
    );
    println!(
        "table resident    {:.1} MB = {} bytes per rule (VmRSS after - before)",
        mb(resident),
        resident / rules
    );
    println!(
        "heap_bytes()      {:.1} MB = {} bytes per rule",
        mb(c4route_core::bench::heap_bytes(&table) as u64),
        c4route_core::bench::heap_bytes(&table) as u64 / rules
    );

    if with_queries {
        let text =
            std::fs::read_to_string(&queries).map_err(|e| format!("{}: {e}", queries.display()))?;
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(4096);
        let (mut n, mut routed, mut bytes) = (0u64, 0u64, 0usize);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let t = Instant::now();
        for line in (0..repeat).flat_map(|_| lines.iter()) {
            let q = Query::from_json(line.as_bytes()).map_err(|e| e.to_string())?;
            let d = table.route(&q, now);
            routed += u64::from(d.rule.is_some());
            out.clear();
            d.write_json(&mut out, Wrap::Rtjson);
            bytes += out.len();
            n += 1;
        }
        let el = t.elapsed();
        println!(
            "queries           {n} (parse + route + write_json) in {:.1} ms = {:.0} ns each; \
             {routed} matched a rule, {:.0} bytes of rtjson on average",
            el.as_secs_f64() * 1e3,
            el.as_secs_f64() * 1e9 / n.max(1) as f64,
            bytes as f64 / n.max(1) as f64
        );
    }
    Ok(())
}
