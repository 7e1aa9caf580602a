//! Collecting diagnostics while compiling.
//!
//! Every step reports into one [`Reporter`]; it keeps a running count of
//! errors, because steps ask "did this item add an error?" once per item: a
//! count that rescanned the list made 100k broken rules cost quadratic time.
//! Each diagnostic remembers the line of the compiler that raised it, which
//! is its *kind*: reports are bounded per kind (see
//! [`crate::Diagnostics::shown`]), the totals stay exact.

use std::panic::Location;
use std::sync::Arc;

use toml::Spanned;

use super::{At, Compiler};
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::rule::Loc;

/// The diagnostics found so far.
#[derive(Default)]
pub(super) struct Reporter {
    diags: Vec<Diagnostic>,
    errors: usize,
    /// Errors that stand only if every file parses (see
    /// [`Reporter::mark_provisional`]), by index in `diags`.
    provisional: Vec<usize>,
}

impl Reporter {
    fn add(&mut self, d: Diagnostic) {
        if d.severity == Severity::Error {
            self.errors += 1;
        }
        self.diags.push(d);
    }

    /// The number of errors so far (constant time).
    pub(super) fn errors(&self) -> usize {
        self.errors
    }

    /// Marks the last diagnostic as provisional: an "unknown trunk" or
    /// "unknown schedule" error raised while some files are still being
    /// parsed. A file that fails to parse may define the name, so such
    /// errors are not reported then ([`Reporter::settle`]).
    pub(super) fn mark_provisional(&mut self) {
        if let Some(last) = self.diags.len().checked_sub(1) {
            self.provisional.push(last);
        }
    }

    /// Keeps the provisional diagnostics if every file parsed, else drops
    /// them, leaving the others in order.
    pub(super) fn settle(&mut self, parse_failed: bool) {
        let provisional = std::mem::take(&mut self.provisional);
        if !parse_failed || provisional.is_empty() {
            return;
        }
        let mut drop = vec![false; self.diags.len()];
        for i in provisional {
            drop[i] = true;
            if self.diags[i].severity == Severity::Error {
                self.errors -= 1;
            }
        }
        let mut k = 0;
        self.diags.retain(|_| {
            k += 1;
            !drop[k - 1]
        });
    }

    /// A diagnostic about the directory as a whole (it may have no files).
    #[track_caller]
    pub(super) fn global(&mut self, root: Arc<str>, severity: Severity, message: String) {
        self.add(Diagnostic {
            path: root,
            span: 0..0,
            line: 1,
            col: 1,
            severity,
            message,
            note: None,
            kind: Location::caller(),
        });
    }

    /// Everything, in file order.
    pub(super) fn into_sorted(self) -> Diagnostics {
        let mut d = Diagnostics::from(self.diags);
        d.sort();
        d
    }
}

impl Compiler<'_> {
    #[track_caller]
    pub(super) fn push(&mut self, sev: Severity, at: &At, message: String, note: Option<String>) {
        let kind = Location::caller();
        let (f, _, span, line, col) = self.resolve(at);
        let path = f.path.clone();
        self.rep.add(Diagnostic {
            path,
            span,
            line,
            col,
            severity: sev,
            message,
            note,
            kind,
        });
    }

    #[track_caller]
    pub(super) fn err(&mut self, at: &At, message: impl std::fmt::Display) {
        self.push(Severity::Error, at, message.to_string(), None);
    }

    #[track_caller]
    pub(super) fn warn(&mut self, at: &At, message: impl std::fmt::Display, note: Option<String>) {
        self.push(Severity::Warning, at, message.to_string(), note);
    }

    /// A diagnostic located in another file than a routes.d TOML file (a
    /// rate deck).
    pub(super) fn push_diag(&mut self, d: Diagnostic) {
        self.rep.add(d);
    }

    /// An error when a list that must name something is empty.
    #[track_caller]
    pub(super) fn non_empty<T>(
        &mut self,
        i: usize,
        list: &Spanned<Vec<T>>,
        key: &str,
        advice: &str,
    ) {
        if list.get_ref().is_empty() {
            self.err(&(i, list.span()), format!("{key} is empty; {advice}"));
        }
    }

    /// `file:line:col` of a location, for notes.
    pub(super) fn loc_text(&self, at: &At) -> String {
        let (f, _, _, line, col) = self.resolve(at);
        format!("{}:{}:{}", f.path, line, col)
    }

    /// The compact location a table keeps per rule.
    pub(super) fn loc(&self, at: &At) -> Loc {
        let (_, file, _, line, col) = self.resolve(at);
        Loc {
            file: file as u32,
            line: line as u32,
            col: col as u32,
        }
    }

    /// The number of errors so far.
    pub(super) fn error_count(&self) -> usize {
        self.rep.errors()
    }
}
