//! Diagnostics for people: the `file:line:col: level: message` lines that
//! `check`, `eval`, `test`, `diff` and a refused `serve` startup print.

use std::io::Write as _;

use c4route_core::Diagnostics;

/// Prints diagnostics to stderr as `file:line:col: level: message`, notes
/// indented on the next line.
pub fn print_diagnostics(d: &Diagnostics) {
    let mut err = std::io::stderr().lock();
    for x in d {
        let _ = writeln!(
            err,
            "{}:{}:{}: {}: {}",
            x.path, x.line, x.col, x.severity, x.message
        );
        if let Some(n) = &x.note {
            let _ = writeln!(err, "    note: {n}");
        }
    }
}
