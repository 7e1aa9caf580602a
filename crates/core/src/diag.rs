//! Diagnostics: every problem found in routes.d, each pointing at `file:line:col`.
//!
//! Loading never stops at the first semantic problem: the builder collects every
//! error and warning of every file into one [`Diagnostics`] value, so an operator
//! fixes a whole batch of typos in one round trip instead of one per reload.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// The configuration is usable, but probably not what was meant.
    Warning,
    /// The configuration cannot be loaded.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem, located in one source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the builder (for `read_dir`, the path of the file).
    pub path: Arc<str>,
    /// Byte range in the file.
    pub span: Range<usize>,
    /// 1-based line of `span.start`.
    pub line: usize,
    /// 1-based column (in characters) of `span.start`.
    pub col: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, and what was expected.
    pub message: String,
    /// An optional second location or hint, such as "first defined at a.toml:3:1".
    pub note: Option<String>,
    /// What kind of problem this is: the place in the compiler that found
    /// it. Reports are bounded per kind ([`Diagnostics::shown`]).
    pub(crate) kind: &'static Location<'static>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path, self.line, self.col, self.severity, self.message
        )?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// A list of diagnostics, errors and warnings, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

/// How many diagnostics of one kind a bounded report shows.
pub const SHOWN_PER_KIND: usize = 20;

impl Diagnostics {
    /// The diagnostics a person should read: the first `per_kind` of each
    /// kind (an unknown trunk, a bad regex, a shadowed rule, …), each with
    /// the number of diagnostics of its kind left out after it (non-zero
    /// only on the last one shown of a kind). A deck with 100k rules naming
    /// one unknown trunk prints 20 lines and a count, not 100k lines.
    /// Linear in the number of diagnostics.
    pub fn shown(&self, per_kind: usize) -> impl Iterator<Item = (&Diagnostic, usize)> {
        let key = |d: &Diagnostic| (d.severity, *d.kind);
        let mut total: HashMap<_, usize> = HashMap::new();
        for d in &self.0 {
            *total.entry(key(d)).or_default() += 1;
        }
        let mut seen: HashMap<_, usize> = HashMap::new();
        self.0.iter().filter_map(move |d| {
            let k = key(d);
            let n = seen.entry(k).or_default();
            *n += 1;
            if *n > per_kind {
                return None;
            }
            let all = total.get(&k).copied().unwrap_or(0);
            let hidden = if *n == per_kind { all - per_kind } else { 0 };
            Some((d, hidden))
        })
    }

    /// The report of [`Diagnostics::shown`] as text, for diagnostics of
    /// severity `least` or worse: one per line
    /// (`file:line:col: level: message (note)`), each cut kind followed by
    /// a line `... and N more like the line above`, and a last line with
    /// the exact totals.
    pub fn bounded(&self, per_kind: usize, least: Severity) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (d, hidden) in self.shown(per_kind) {
            if d.severity < least {
                continue;
            }
            let _ = writeln!(out, "{d}");
            if hidden > 0 {
                let _ = writeln!(out, "... and {hidden} more like the line above");
            }
        }
        let errors = self.errors().count();
        let _ = write!(
            out,
            "{errors} error(s), {} warning(s)",
            self.0.len() - errors
        );
        out
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterate over all diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub(crate) fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.path, a.span.start).cmp(&(&b.path, b.span.start)));
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line, as `file:line:col: level: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Maps byte offsets of one file to 1-based line and column.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// The line of the previous lookup.
    hint: AtomicUsize,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text,
            starts,
            hint: AtomicUsize::new(0),
        }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Locations are mostly asked for in file order (one per rule, a few
        // lines apart): look just after the previous answer before searching
        // the whole index.
        let hint = self.hint.load(Ordering::Relaxed);
        let near = self
            .starts
            .get(hint..)
            .filter(|s| s.first().is_some_and(|&s| s <= offset))
            .and_then(|s| {
                let ahead = &s[..s.len().min(8)];
                let n = ahead.partition_point(|&s| s <= offset);
                (n < ahead.len()).then(|| hint + n - 1)
            });
        let line = near.unwrap_or_else(|| self.starts.partition_point(|&s| s <= offset) - 1);
        self.hint.store(line, Ordering::Relaxed);
        let start = self.starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line + 1, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let idx = LineIndex::new("ab\ncdé\nf");
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(1), (1, 2));
        assert_eq!(idx.line_col(3), (2, 1));
        assert_eq!(idx.line_col(8), (3, 1));
        assert_eq!(idx.line_col(5), (2, 3));
        assert_eq!(idx.line_col(100), (3, 2));
        // Backwards after the hint moved on, and again forwards.
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(5), (2, 3));
    }
}
