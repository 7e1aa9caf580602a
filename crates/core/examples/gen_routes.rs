//! Writes a synthetic rate-deck routes.d and a query corpus, to reproduce the
//! figures in docs/PERFORMANCE.md or to load-test a deployment.
//!
//! ```text
//! cargo run --release -p c4route-core --example gen_routes -- \
//!     --rules 1000000 [--cidr-rules 10000] [--regex-rules 100] \
//!     [--queries 10000] [--seed 1] [--grouped] --out /tmp/deck
//! ```
//!
//! Output: `OUT/routes.d/00-trunks.toml` (defaults and trunks `t0`…`t7`),
//! `OUT/routes.d/10-rules-NNN.toml` (100 000 prefix rules each),
//! (or, with `--grouped`, `10-group-NNN.toml`: one rule per trunk list
//! holding all its prefixes, the same routing in far less TOML),
//! `20-sources.toml` and `30-regex.toml` when asked for, and
//! `OUT/queries.jsonl`: one query per line, matching, deep, non-matching,
//! source-only and regex numbers in rotation (`c4route eval` reads it).

#[path = "ratedeck/mod.rs"]
mod ratedeck;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ratedeck::Spec;

const USAGE: &str = "usage: gen_routes --rules N [--cidr-rules M] [--regex-rules K] \
                     [--queries Q] [--seed S] [--grouped] --out DIR";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_routes: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut spec = Spec::prefixes(0);
    let mut queries = 10_000usize;
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
                .map_err(|e| format!("{a}: {e}"))
        };
        match a.as_str() {
            "--rules" => spec.rules = num(value()?)? as usize,
            "--cidr-rules" => spec.cidr_rules = num(value()?)? as usize,
            "--regex-rules" => spec.regex_rules = num(value()?)? as usize,
            "--queries" => queries = num(value()?)? as usize,
            "--seed" => spec.seed = num(value()?)?,
            "--grouped" => spec.grouped = true,
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
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A smaller deck written over a larger one must not leave files behind.
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = [
            "00-trunks",
            "10-rules-",
            "10-group-",
            "20-sources",
            "30-regex",
        ]
        .iter()
        .any(|p| name.starts_with(p));
        if ours && name.ends_with(".toml") {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }

    let deck = ratedeck::generate(spec);
    let mut bytes = 0;
    for (name, text) in &deck.files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += text.len();
    }
    let qpath = out.join("queries.jsonl");
    let mut q = std::io::BufWriter::new(
        std::fs::File::create(&qpath).map_err(|e| format!("{}: {e}", qpath.display()))?,
    );
    for line in deck.queries(queries, spec.seed ^ 0x5eed) {
        writeln!(q, "{line}").map_err(|e| format!("{}: {e}", qpath.display()))?;
    }
    q.flush().map_err(|e| format!("{}: {e}", qpath.display()))?;
    eprintln!(
        "gen_routes: {} prefixes{}, {} cidr rules, {} regex rules in {} files, {:.1} MB of TOML \
         in {}; {queries} queries in {}",
        deck.prefixes.len(),
        if spec.grouped {
            " (grouped by trunk list)"
        } else {
            " (one rule each)"
        },
        deck.nets.len(),
        deck.regex_heads.len(),
        deck.files.len(),
        bytes as f64 / 1e6,
        dir.display(),
        qpath.display(),
    );
    Ok(())
}
