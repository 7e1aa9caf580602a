//! Writes a routes.d with N carrier rate decks of M rows each, one LCR rule
//! over them and a query corpus: the decks behind the LCR figures of
//! docs/PERFORMANCE.md, or a load test of a deployment.
//!
//! ```text
//! cargo run --release -p c4route-core --example gen_decks -- \
//!     --carriers 8 --rows 250000 [--seed 1] [--gzip] [--unique-rates] --out /tmp/lcr
//! ```
//!
//! Output: `OUT/routes.d/00-lcr.toml` (trunks `c0`… each with
//! `rates = "rates/cN.csv"`, one rule `lcr` with `then.lcr` over all),
//! `OUT/routes.d/rates/cN.csv` (or `.csv.gz` with `--gzip`), and
//! `OUT/queries.jsonl` (4096 numbers, 1 in 16 covered by no deck).
//! `--unique-rates` gives every row a rate of its own (six decimals), the
//! worst case for memory: no two rows share a tariff.

#[path = "lcrdeck/mod.rs"]
mod lcrdeck;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: gen_decks --carriers N --rows M [--seed S] [--gzip] [--unique-rates] --out DIR";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_decks: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let (mut carriers, mut rows, mut seed, mut gzip) = (8usize, 1000usize, 1u64, false);
    let mut unique = false;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        let num = |v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{e}"))
        };
        match a.as_str() {
            "--carriers" => carriers = num(value()?)? as usize,
            "--rows" => rows = num(value()?)? as usize,
            "--seed" => seed = num(value()?)?,
            "--gzip" => gzip = true,
            "--unique-rates" => unique = true,
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    let dir = out.join("routes.d");
    let rates = dir.join("rates");
    let _ = std::fs::remove_dir_all(&rates);
    std::fs::create_dir_all(&rates).map_err(|e| format!("{}: {e}", rates.display()))?;
    let decks = lcrdeck::generate_with(carriers, rows, seed, unique);
    let toml = if gzip {
        decks.toml.replace(".csv\"", ".csv.gz\"")
    } else {
        decks.toml.clone()
    };
    std::fs::write(dir.join("00-lcr.toml"), toml).map_err(|e| e.to_string())?;
    let mut bytes = 0;
    for (name, text) in &decks.csv {
        if gzip {
            let f = std::fs::File::create(rates.join(format!("{name}.gz")))
                .map_err(|e| e.to_string())?;
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
            gz.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            gz.finish().map_err(|e| e.to_string())?;
        } else {
            std::fs::write(rates.join(name), text).map_err(|e| e.to_string())?;
        }
        bytes += text.len();
    }
    let q = out.join("queries.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&q).map_err(|e| e.to_string())?);
    for i in 0..decks.numbers.len() {
        writeln!(f, "{}", decks.query(i)).map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| e.to_string())?;
    eprintln!(
        "gen_decks: {carriers} decks, {} rows in all, {:.1} MB of CSV{} in {}; {} queries in {}",
        decks.rows,
        bytes as f64 / 1e6,
        if gzip { " (gzipped)" } else { "" },
        rates.display(),
        decks.numbers.len(),
        q.display()
    );
    Ok(())
}
