//! Step one: cut the sources into units and parse them, on all cores.
//!
//! A unit is a whole file, or a run of `[[rules]]` of a large one: TOML
//! parsing is most of compiling a large rate deck, and pieces that start at a
//! `[[rules]]` line are valid documents on their own. Spans inside a unit are
//! relative to its `base`; [`Compiler::resolve`] maps them back.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use super::{At, Compiler, Parsed};
use crate::config::RouteFile;
use crate::diag::LineIndex;

pub(super) struct File<'s> {
    pub(super) path: Arc<str>,
    text: &'s str,
    /// Built on first use: while the parser threads run (see
    /// [`Compiler::parse_units`]), or for a diagnostic.
    lines: OnceLock<LineIndex<'s>>,
}

impl<'s> File<'s> {
    pub(super) fn lines(&self) -> &LineIndex<'s> {
        self.lines.get_or_init(|| LineIndex::new(self.text))
    }
}

/// A piece of a file parsed as its own TOML document: a whole file, or a run
/// of `[[rules]]` of a large one. Spans inside it are relative to `base`.
pub(super) struct Unit<'s> {
    file: usize,
    base: usize,
    text: &'s str,
}

/// Files at least this large are split at `[[rules]]` lines and the pieces
/// parsed on all cores: TOML parsing is most of compiling a large rate deck.
pub(super) const SPLIT_MIN: usize = 256 * 1024;

/// Splits `text` into about `pieces` runs, each starting at a line that is
/// exactly `[[rules]]` (so every piece is a valid document on its own).
/// Files with multi-line strings are never split: such a line could be text.
pub(super) fn split_points(text: &str, pieces: usize) -> Vec<usize> {
    let mut out = vec![0];
    if pieces <= 1 || text.contains("\"\"\"") || text.contains("'''") {
        return out;
    }
    let step = text.len() / pieces;
    for k in 1..pieces {
        let from = (k * step).max(*out.last().unwrap_or(&0) + 1);
        let Some(rest) = text.get(from..) else { break };
        let found = rest.match_indices("\n[[rules]]").find(|(i, m)| {
            let after = &rest[i + m.len()..];
            after.starts_with('\n') || after.starts_with("\r\n")
        });
        match found {
            Some((i, _)) => out.push(from + i + 1),
            None => break,
        }
    }
    out
}

/// The files and their units: a file of at least `split_min` bytes is cut
/// into about `threads` pieces.
pub(super) fn units<'s>(
    sources: &'s [(Arc<str>, String)],
    split_min: usize,
    threads: usize,
) -> (Vec<File<'s>>, Vec<Unit<'s>>) {
    let mut units = Vec::new();
    for (file, (_, text)) in sources.iter().enumerate() {
        let pieces = if text.len() >= split_min { threads } else { 1 };
        let points = split_points(text, pieces);
        for (k, &base) in points.iter().enumerate() {
            let end = points.get(k + 1).copied().unwrap_or(text.len());
            units.push(Unit {
                file,
                base,
                text: &text[base..end],
            });
        }
    }
    let files = sources
        .iter()
        .map(|(p, t)| File {
            path: p.clone(),
            text: t,
            lines: OnceLock::new(),
        })
        .collect();
    (files, units)
}

impl<'s> Compiler<'s> {
    /// The file, absolute span, line and column of a location.
    pub(super) fn resolve(&self, at: &At) -> (&File<'s>, usize, Range<usize>, usize, usize) {
        let u = &self.units[at.0];
        let span = u.base + at.1.start..u.base + at.1.end;
        let f = &self.files[u.file];
        let (line, col) = f.lines().line_col(span.start);
        (f, u.file, span, line, col)
    }

    /// Parses every unit, on up to `threads` threads, in unit order.
    fn parse_units(&self) -> Vec<Result<RouteFile, toml::de::Error>> {
        // Rate-deck pieces take the fast path; anything else (and every
        // error) comes from toml.
        let parse = |u: &Unit<'_>| match crate::fastparse::parse(u.text) {
            Some(f) => Ok(f),
            None => toml::from_str::<RouteFile>(u.text),
        };
        if self.threads <= 1 || self.units.len() <= 1 {
            return self.units.iter().map(parse).collect();
        }
        // Hand out units to threads by size, largest first.
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.units[i].text.len()));
        let mut loads = vec![(0usize, Vec::new()); self.threads.min(self.units.len())];
        for i in order {
            if let Some(l) = loads.iter_mut().min_by_key(|l| l.0) {
                l.0 += self.units[i].text.len();
                l.1.push(i);
            }
        }
        let mut out: Vec<Option<Result<RouteFile, toml::de::Error>>> =
            (0..self.units.len()).map(|_| None).collect();
        let units = &self.units;
        std::thread::scope(|s| {
            let handles: Vec<_> = loads
                .into_iter()
                .map(|(_, ids)| {
                    s.spawn(move || {
                        ids.into_iter()
                            .map(|i| (i, parse(&units[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // Meanwhile, index the lines every rule's location needs.
            for f in &self.files {
                f.lines();
            }
            for h in handles {
                // A parser thread cannot panic on any input (toml returns errors),
                // so a join error is only possible if it ran out of memory.
                if let Ok(results) = h.join() {
                    for (i, r) in results {
                        out[i] = Some(r);
                    }
                }
            }
        });
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| parse(&self.units[i])))
            .collect()
    }

    /// Parses every unit; a unit that fails is an error at its position.
    /// Returns the parsed units and whether any failed.
    pub(super) fn parse_all(&mut self) -> (Parsed, bool) {
        let mut parsed = Vec::new();
        let mut failed = false;
        for (i, result) in self.parse_units().into_iter().enumerate() {
            match result {
                Ok(f) => parsed.push((i, f)),
                Err(e) => {
                    failed = true;
                    let span = e.span().unwrap_or(0..0);
                    let msg = e.message().trim().replace('\n', " ");
                    self.err(&(i, span), msg);
                }
            }
        }
        (parsed, failed)
    }
}
