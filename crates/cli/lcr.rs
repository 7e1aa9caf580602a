//! Rate decks for people: the LCR part of `eval --explain`, and
//! `c4route rates NUMBER`, which says which row of each trunk's deck
//! prices a number (what an operator asks first about a new deck).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use c4route_core::explain::{self, LcrReport, RateRow};
use c4route_core::{Query, RouteTable};

use crate::load;

fn when(r: &RateRow) -> String {
    match (&r.effective_from, &r.effective_until) {
        (None, None) => String::new(),
        (Some(f), None) => format!(", from {f}"),
        (None, Some(u)) => format!(", until {u}"),
        (Some(f), Some(u)) => format!(", from {f} until {u}"),
    }
}

fn billing(r: &RateRow) -> String {
    let fee = if r.connect_fee == "0" {
        String::new()
    } else {
        format!(" + {} per call", r.connect_fee)
    };
    format!(
        "{}/min{fee}, billed {}/{}{}",
        r.rate,
        r.initial,
        r.increment,
        when(r)
    )
}

fn name(r: &RateRow) -> String {
    if r.name.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", r.name)
    }
}

/// The LCR lines of `eval --explain`: per trunk of the deciding rule, the
/// row (file:line, prefix, rate, cost) or why it was left out.
pub fn explain(table: &RouteTable, q: &Query<'_>, now: SystemTime, e: &mut impl std::io::Write) {
    let Some(r) = explain::lcr(table, q, now) else {
        return;
    };
    print_report(&r, e);
}

fn print_report(r: &LcrReport, e: &mut impl std::io::Write) {
    let max = r
        .max_rate
        .as_ref()
        .map_or(String::new(), |m| format!(", max_rate {m}"));
    let _ = writeln!(
        e,
        "  lcr: `{}` prices {} for a {} s call{max}:",
        r.rule, r.number, r.duration
    );
    for t in &r.trunks {
        match (&t.rank, &t.row, &t.left_out) {
            (Some(rank), Some(row), _) => {
                let _ = writeln!(
                    e,
                    "     #{rank} {}: cost {} = prefix {} at {}:{} ({}){}",
                    t.trunk,
                    t.cost.as_deref().unwrap_or(""),
                    row.prefix,
                    row.file,
                    row.line,
                    billing(row),
                    name(row)
                );
            }
            (_, row, Some(why)) => {
                let at = row
                    .as_ref()
                    .map_or(String::new(), |r| format!(" ({}:{})", r.file, r.line));
                let _ = writeln!(e, "     -- {}: left out: {why}{at}", t.trunk);
            }
            _ => {}
        }
    }
}

/// `c4route rates NUMBER [--at T] [DIR]`.
pub fn rates(
    dir: &Path,
    number: &str,
    at: Option<SystemTime>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let table = match load(dir)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let now = at.unwrap_or_else(SystemTime::now);
    let found = explain::rates(&table, number, now);
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        eprintln!(
            "{}: no trunk has a rate deck (`rates = \"…\"` in [trunks.NAME])",
            dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    let mut priced = 0;
    for l in &found {
        priced += usize::from(l.row.is_some());
        if json {
            let row = |r: &RateRow| {
                serde_json::json!({
                    "file": r.file, "line": r.line, "prefix": r.prefix, "rate": r.rate,
                    "connect_fee": r.connect_fee, "initial": r.initial, "increment": r.increment,
                    "effective_from": r.effective_from, "effective_until": r.effective_until,
                    "name": r.name,
                })
            };
            let v = serde_json::json!({
                "trunk": l.trunk,
                "deck": l.deck,
                "row": l.row.as_ref().map(row),
                "other_rows": l.other_rows.iter().map(row).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}")?;
            continue;
        }
        match &l.row {
            Some(r) => writeln!(
                out,
                "{}: prefix {} at {}:{}: {}{}",
                l.trunk,
                r.prefix,
                r.file,
                r.line,
                billing(r),
                name(r)
            )?,
            None => writeln!(
                out,
                "{}: no row in effect for {number} in {}",
                l.trunk, l.deck
            )?,
        }
        for r in &l.other_rows {
            writeln!(
                out,
                "    also prefix {} at {}:{}: {}{}",
                r.prefix,
                r.file,
                r.line,
                billing(r),
                name(r)
            )?;
        }
    }
    Ok(if priced > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
