//! Step one: cut the sources into units and parse them, on all cores.
//!
//! A unit is a whole file, or a run of `[[rules]]` of a large one: TOML
//! parsing is most of compiling a large rate deck, and pieces that start at a
//! `[[rules]]` line are valid documents on their own. Spans inside a unit are
//! relative to its `base`; [`Compiler::resolve`] maps them back.
//!
//! Units that can hold nothing but `[[rules]]` ([`rules_only`]) are parsed
//! last and *streamed*: parser threads run a few units ahead of the rule
//! lowering, which takes each parsed unit in order and frees it. A parsed
//! rule is several times the size of its text, so holding a million of them
//! at once was most of a large deck's peak memory (docs/PERFORMANCE.md,
//! "Compile memory").

use std::ops::Range;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, OnceLock};

use super::{At, Compiler};
use crate::config::RouteFile;
use crate::diag::LineIndex;

/// What parsing one unit gives.
pub(super) type ParseResult = Result<RouteFile, toml::de::Error>;

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
    pub(super) text: &'s str,
}

/// Files at least this large are split at `[[rules]]` lines and the pieces
/// parsed on all cores: TOML parsing is most of compiling a large rate deck.
pub(super) const SPLIT_MIN: usize = 256 * 1024;

/// About the size of a piece of a split file: small enough that the few
/// pieces parsed ahead of the rule lowering stay a few megabytes.
const PIECE: usize = 1 << 20;

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

/// Whether a unit can define nothing but `[[rules]]` entries, judged from
/// its text alone and conservatively: its first line that is not blank or a
/// comment is a `[[rules]]` header, every line starting with `[` is one, and
/// it has no multi-line string (whose lines could look like anything).
/// Every key of such a document belongs to some `[[rules]]` table, so
/// parsing it yields rules or an error, never defaults, trunks, schedules or
/// tests, which the rules need before they can be lowered.
pub(super) fn rules_only(text: &str) -> bool {
    if text.contains("\"\"\"") || text.contains("'''") {
        return false;
    }
    let mut seen_header = false;
    for line in text.lines() {
        let body = line.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('[') {
            let Some(rest) = body.strip_prefix("[[rules]]") else {
                return false;
            };
            let rest = rest.trim_start_matches([' ', '\t']);
            if !(rest.is_empty() || rest.starts_with('#')) {
                return false;
            }
            seen_header = true;
        } else if !seen_header {
            return false;
        }
    }
    seen_header
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
        let pieces = if text.len() >= split_min {
            threads.max(text.len() / PIECE)
        } else {
            1
        };
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

    /// Parses the units `ids` on up to `threads` threads and hands each
    /// result to `each` in the order of `ids`, as soon as it and those
    /// before it are parsed. Each thread parses at most two units ahead of
    /// `each`, so only a few parsed units exist at any time.
    pub(super) fn parse_stream(
        &mut self,
        ids: &[usize],
        mut each: impl FnMut(&mut Self, usize, ParseResult),
    ) {
        let texts: Vec<&'s str> = ids.iter().map(|&i| self.units[i].text).collect();
        let threads = self.threads.min(ids.len());
        if threads <= 1 {
            for (k, &i) in ids.iter().enumerate() {
                each(self, i, parse(texts[k]));
            }
            return;
        }
        let texts = &texts;
        std::thread::scope(|s| {
            // Thread `w` parses units w, w + threads, …; the consumer takes
            // them round-robin from one bounded channel per thread.
            let (rxs, handles): (Vec<_>, Vec<_>) = (0..threads)
                .map(|w| {
                    let (tx, rx) = sync_channel::<ParseResult>(1);
                    let h = s.spawn(move || {
                        for text in texts.iter().skip(w).step_by(threads) {
                            if tx.send(parse(text)).is_err() {
                                break;
                            }
                        }
                    });
                    (rx, h)
                })
                .unzip();
            // Meanwhile, index the lines every rule's location needs.
            for f in &self.files {
                f.lines();
            }
            for (k, &i) in ids.iter().enumerate() {
                // A parser thread cannot panic on any input (toml returns
                // errors), so a closed channel means it ran out of memory:
                // parse here instead.
                let r = rxs[k % threads].recv().unwrap_or_else(|_| parse(texts[k]));
                each(self, i, r);
            }
            drop(rxs);
            for h in handles {
                // Any result was replaced above; a panic is not ours to raise.
                let _ = h.join();
            }
        });
    }

    /// Reports a unit that failed to parse, at its position.
    pub(super) fn parse_error(&mut self, i: usize, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().replace('\n', " ");
        self.err(&(i, span), msg);
    }
}

/// Parses one unit: rate-deck pieces take the fast path; anything else (and
/// every error) comes from toml.
fn parse(text: &str) -> ParseResult {
    match crate::fastparse::parse(text) {
        Some(f) => Ok(f),
        None => toml::from_str::<RouteFile>(text),
    }
}
