//! Diagnostics for people: the `file:line:col: level: message` lines that
//! `check`, `eval`, `test`, `diff` and a refused `serve` startup print.
//! `/health` shows the same bounded report ([`Diagnostics::bounded`]).

use std::io::Write as _;

use c4route_core::{Diagnostics, SHOWN_PER_KIND};

/// Prints diagnostics to stderr as `file:line:col: level: message`, notes
/// indented on the next line; after the first 20 of one kind (say, 100k
/// rules naming one unknown trunk), one line counts the rest of that kind.
/// The caller prints the exact totals.
pub fn print_diagnostics(d: &Diagnostics) {
    let mut err = std::io::stderr().lock();
    for (x, hidden) in d.shown(SHOWN_PER_KIND) {
        let _ = writeln!(
            err,
            "{}:{}:{}: {}: {}",
            x.path, x.line, x.col, x.severity, x.message
        );
        if let Some(n) = &x.note {
            let _ = writeln!(err, "    note: {n}");
        }
        if hidden > 0 {
            let _ = writeln!(err, "... and {hidden} more like the line above");
        }
    }
}
