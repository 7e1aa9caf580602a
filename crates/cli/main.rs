//! The `c4route` command: `check`, `eval`, `test`, `diff`, `rates` and `serve`.
//!
//! Machine output (JSON Lines) goes to stdout; everything meant for a person
//! goes to stderr, so the commands compose in pipelines and CI jobs.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use c4route_core::{
    Decision, Error, GatewayStatus, Live, Outcome, Query, RouteTable, Severity, Sources, TrunkLoad,
    Wrap, decide,
};
use clap::{Parser, Subcommand};
use tikv_jemallocator::Jemalloc;

mod call_metrics;
mod gateway_metrics;
mod guard;
mod lcr;
mod live;
mod metrics;
mod quality_metrics;
mod reload;
mod report;
mod serve;
mod state;
mod store_metrics;

use report::print_diagnostics;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// c4route: the SIP routing brain behind Kamailio.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse, validate and compile routes.d; print errors and warnings.
    Check {
        /// The routes directory.
        #[arg(default_value = "routes.d")]
        dir: PathBuf,
    },
    /// Answer queries offline: a JSON object, an array, or JSON Lines.
    Eval {
        /// The routes directory.
        #[arg(default_value = "routes.d")]
        dir: PathBuf,
        /// Query file, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Explain on stderr which rules matched, which won and why.
        #[arg(long)]
        explain: bool,
        /// Decide as at this time (RFC 3339, e.g. 2026-12-24T09:00:00Z).
        #[arg(long, value_parser = parse_at)]
        at: Option<SystemTime>,
        /// Print the bare rtjson document (as POST /rtjson) instead of {"rtjson": …}.
        #[arg(long)]
        bare: bool,
        #[command(flatten)]
        facts: LiveFacts,
    },
    /// Run every [[tests]] entry of routes.d.
    Test {
        /// The routes directory.
        #[arg(default_value = "routes.d")]
        dir: PathBuf,
    },
    /// Show which queries change their decision between two routes directories.
    Diff {
        /// The deployed routes directory.
        old: PathBuf,
        /// The proposed routes directory.
        new: PathBuf,
        /// Queries (object, array or JSON Lines); default: the [[tests]] queries of both.
        queries: Option<PathBuf>,
        /// Decide as at this time (RFC 3339).
        #[arg(long, value_parser = parse_at)]
        at: Option<SystemTime>,
    },
    /// Answer Kamailio's routing queries over HTTP, reloading routes.d on change.
    Serve(Box<serve::ServeArgs>),
    /// Show, per trunk with a rate deck, the row that prices a number.
    Rates {
        /// The number (digits, optionally after `+`), as the LCR rule prices it.
        number: String,
        /// The routes directory.
        #[arg(default_value = "routes.d")]
        dir: PathBuf,
        /// Price as at this time (RFC 3339), e.g. to see next week's deck.
        #[arg(long, value_parser = parse_at)]
        at: Option<SystemTime>,
        /// One JSON object per trunk instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `eval` decides as if it were live (SPEC §8, §9).
#[derive(clap::Args, Debug, Default)]
struct LiveFacts {
    /// Decide as if this gateway were down (repeatable; any spelling of its URI).
    #[arg(long, value_name = "URI")]
    down: Vec<String>,
    /// Decide as if this trunk carried this many calls (repeatable), e.g. acme=120.
    #[arg(long, value_name = "TRUNK=CALLS")]
    load: Vec<String>,
    /// Decide as if this gateway were poor for this destination group (a
    /// rule's name, or rule@prefix for an LCR route); without @GROUP, for
    /// every group (repeatable).
    #[arg(long, value_name = "URI[@GROUP]")]
    poor: Vec<String>,
}

fn parse_at(s: &str) -> Result<SystemTime, c4route_core::TimeError> {
    c4route_core::parse_time(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { dir } => check(&dir),
        Command::Eval {
            dir,
            input,
            explain,
            at,
            bare,
            facts,
        } => eval(&dir, &input, explain, at, bare, &facts),
        Command::Test { dir } => test(&dir),
        Command::Diff {
            old,
            new,
            queries,
            at,
        } => diff(&old, &new, queries.as_deref(), at),
        Command::Serve(args) => serve::run(*args),
        Command::Rates {
            number,
            dir,
            at,
            json,
        } => lcr::rates(&dir, &number, at, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("c4route: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads a table; an invalid directory prints its diagnostics and yields `Ok(Err(1))`.
fn load(dir: &Path) -> anyhow::Result<Result<RouteTable, ExitCode>> {
    let sources = match Sources::read_dir(dir) {
        Ok(s) => s,
        Err(e) => return Err(e).with_context(|| format!("cannot load {}", dir.display())),
    };
    match sources.build() {
        Ok(t) => Ok(Ok(t)),
        Err(Error::Config(d)) => {
            print_diagnostics(&d);
            let errors = d.errors().count();
            eprintln!(
                "{}: {errors} error(s), {} warning(s)",
                dir.display(),
                d.len() - errors
            );
            Ok(Err(ExitCode::from(1)))
        }
        Err(e) => Err(e).with_context(|| format!("cannot load {}", dir.display())),
    }
}

fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let table = match load(dir)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let expired = table.expired_rate_rows(SystemTime::now());
    print_diagnostics(&expired);
    let w = table.warnings();
    print_diagnostics(w);
    eprintln!(
        "{}: ok: {} rule(s), {} trunk(s), {} test(s), {} warning(s)",
        dir.display(),
        table.rule_count(),
        table.trunk_count(),
        table.tests().len(),
        w.iter().filter(|d| d.severity == Severity::Warning).count() + expired.len()
    );
    if table.rate_row_count() > 0 {
        eprintln!(
            "{}: {} rate row(s) in the trunks' decks",
            dir.display(),
            table.rate_row_count()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads queries: one object, an array of objects, or JSON Lines. Each item is
/// `(line number, raw JSON text)` or a parse error for that line.
fn read_queries(text: &str) -> Vec<(usize, Result<String, String>)> {
    let trimmed = text.trim_start();
    let first_line = text.len() - trimmed.len();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
            Ok(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i + 1, Ok(v.to_string())))
                .collect(),
            Err(e) => vec![(line_of(first_line) + e.line() - 1, Err(e.to_string()))],
        };
    }
    // One (possibly pretty-printed) object?
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(trimmed) {
        return vec![(line_of(first_line), Ok(trimmed.trim_end().to_string()))];
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, Ok(l.trim().to_string())))
        .collect()
}

fn read_input(input: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if input == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
    }
    Ok(text)
}

fn eval(
    dir: &Path,
    input: &Path,
    explain: bool,
    at: Option<SystemTime>,
    bare: bool,
    facts: &LiveFacts,
) -> anyhow::Result<ExitCode> {
    let table = match load(dir)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let live = match eval_live(&table, &facts.down, &facts.load, &facts.poor) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let text = read_input(input)?;
    let now = at.unwrap_or_else(SystemTime::now);
    let wrap = if bare { Wrap::Bare } else { Wrap::Rtjson };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    let mut buf = Vec::with_capacity(1024);
    for (line, item) in read_queries(&text) {
        let parsed = item.and_then(|json| {
            Query::from_json(json.as_bytes())
                .map(Query::into_owned)
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(q) => {
                let d = decide(&table, &live, &q, now);
                buf.clear();
                d.write_json(&mut buf, wrap);
                buf.push(b'\n');
                out.write_all(&buf)?;
                if explain {
                    out.flush()?;
                    explain_to_stderr(&table, &live, &q, now, line, &d);
                }
            }
            Err(e) => {
                failed = true;
                let msg = serde_json::json!({ "error": format!("line {line}: {e}") });
                writeln!(out, "{msg}")?;
            }
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn explain_to_stderr(
    table: &RouteTable,
    live: &Live,
    q: &Query<'_>,
    now: SystemTime,
    line: usize,
    d: &Decision<'_>,
) {
    let matches = table.explain(q, now);
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "query at line {line}: {} rule(s) matched", matches.len());
    let Some(winner) = matches.first() else {
        let _ = writeln!(e, "  no rule matched: the no-match answer applies");
        return;
    };
    for (i, m) in matches.iter().enumerate() {
        let s = &m.specificity;
        if i == 0 {
            let _ = writeln!(
                e,
                "  winner: `{}` ({}), priority {}",
                m.name,
                m.location,
                s.priority()
            );
        } else {
            let _ = writeln!(
                e,
                "  lost:   `{}` ({}): `{}` wins by {}",
                m.name,
                m.location,
                winner.name,
                winner.specificity.why_before(s)
            );
        }
    }
    lcr::explain(table, q, now, &mut e);
    match &d.outcome {
        Outcome::Route {
            routing, routes, ..
        } => {
            let _ = writeln!(e, "  => {} route(s), {}:", routes.len(), routing.as_str());
            for r in routes {
                // What the live pipeline did to this route (answer/pipeline.rs).
                let moved = match live.gateways().status_of_key(r.gateway) {
                    GatewayStatus::Down => " — down: moved behind the others".to_owned(),
                    _ if live.is_poor(r.gateway, &r.group) => {
                        format!(" — poor for {}: moved behind the good ones", r.group)
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    e,
                    "     {} via {} (trunk {}){moved}",
                    r.uri, r.dst_uri, r.trunk
                );
            }
        }
        Outcome::Reject { code, reason, .. } => {
            let _ = writeln!(e, "  => reject {code} {reason}");
        }
        _ => {
            let _ = writeln!(e, "  => {}", d.outcome_label());
        }
    }
    for lo in &d.left_out {
        let what = match lo.gateway {
            Some(g) => format!("gateway {g} of trunk {}", lo.trunk),
            None => format!("trunk {}", lo.trunk),
        };
        let _ = writeln!(e, "  left out: {what}, at its {} limit", lo.limit.as_str());
    }
}

fn test(dir: &Path) -> anyhow::Result<ExitCode> {
    let table = match load(dir)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let results = table.run_tests();
    let mut e = std::io::stderr().lock();
    let mut failed = 0;
    for r in &results {
        if !r.failures.is_empty() {
            failed += 1;
            writeln!(e, "FAIL {} ({})", r.name, r.location)?;
            for f in &r.failures {
                writeln!(e, "     {f}")?;
            }
        }
    }
    writeln!(e, "{} passed, {} failed", results.len() - failed, failed)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn diff(
    old: &Path,
    new: &Path,
    queries: Option<&Path>,
    at: Option<SystemTime>,
) -> anyhow::Result<ExitCode> {
    let (a, b) = match (load(old)?, load(new)?) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Ok(ExitCode::from(2)),
    };
    let now = at.unwrap_or_else(SystemTime::now);
    // (label, query, time)
    let mut items: Vec<(String, Query<'static>, SystemTime)> = Vec::new();
    match queries {
        Some(path) => {
            let text = read_input(path)?;
            for (line, item) in read_queries(&text) {
                let q = item
                    .and_then(|j| {
                        Query::from_json(j.as_bytes())
                            .map(Query::into_owned)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| anyhow::anyhow!("{}: line {line}: {e}", path.display()))?;
                items.push((format!("line {line}"), q, now));
            }
        }
        None => {
            let mut seen = std::collections::HashSet::new();
            for t in a.tests().iter().chain(b.tests()) {
                let key = serde_json::to_string(&t.query)?;
                if seen.insert((key, t.at)) {
                    items.push((
                        format!("test \"{}\" ({})", t.name, t.location),
                        t.query.clone(),
                        t.at.unwrap_or(now),
                    ));
                }
            }
        }
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut changed = 0;
    for (label, q, when) in &items {
        let da = a.route(q, *when);
        let db = b.route(q, *when);
        let (ja, jb) = (da.to_json(Wrap::Bare), db.to_json(Wrap::Bare));
        if ja != jb {
            changed += 1;
            let old_v: serde_json::Value = serde_json::from_slice(&ja)?;
            let new_v: serde_json::Value = serde_json::from_slice(&jb)?;
            writeln!(
                out,
                "{}",
                serde_json::json!({"query": q, "source": label, "old": old_v, "new": new_v})
            )?;
            eprintln!("changed: {label}: {} -> {}", summary(&da), summary(&db));
        }
    }
    out.flush()?;
    eprintln!("{changed} of {} queries change their decision", items.len());
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary(d: &Decision<'_>) -> String {
    let rule = d.rule.unwrap_or("(no rule)");
    match &d.outcome {
        Outcome::Route { routes, .. } => format!(
            "{rule}: {}",
            routes
                .iter()
                .map(|r| r.dst_uri)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Outcome::Reject { code, reason, .. } => format!("{rule}: reject {code} {reason}"),
        _ => format!("{rule}: {}", d.outcome_label()),
    }
}

/// The live facts `eval --down/--load/--poor` decide with. A gateway or
/// trunk the table does not know is an error: a typo must not silently
/// change nothing.
fn eval_live(
    table: &RouteTable,
    down: &[String],
    load: &[String],
    poor: &[String],
) -> Result<Live, ExitCode> {
    let fail = |flag: &str, e: String| {
        eprintln!("c4route: {flag}: {e}");
        ExitCode::from(2)
    };
    let known = |uri: &str| live::gateways::known_gateway(table, uri).map_err(|e| e.to_string());
    let mut live = Live::builder();
    for uri in down {
        let k = known(uri).map_err(|e| fail("--down", e))?;
        live = live.gateway_status_key(k, GatewayStatus::Down);
    }
    for item in load {
        let Some((trunk, n)) = item.split_once('=') else {
            return Err(fail(
                "--load",
                format!("{item:?} is not TRUNK=CALLS, e.g. acme=120"),
            ));
        };
        let trunk = trunk.trim();
        if table.trunk_limits(trunk).is_none() {
            return Err(fail("--load", format!("no trunk is named {trunk:?}")));
        }
        let calls: u32 = n
            .trim()
            .parse()
            .map_err(|_| fail("--load", format!("{n:?} is not a number of calls")))?;
        live = live.trunk_load(trunk, TrunkLoad::new(calls, 0));
    }
    for item in poor {
        // The URI has no user part, so its first `@` starts the group
        // (which may hold another: `rule@prefix`).
        let (uri, group) = match item.split_once('@') {
            Some((u, g)) => (u, Some(g)),
            None => (item.as_str(), None),
        };
        let k = known(uri).map_err(|e| fail("--poor", e))?;
        live = live.poor_key(&k, group.unwrap_or(c4route_core::ANY_GROUP), true);
    }
    Ok(live.build())
}
