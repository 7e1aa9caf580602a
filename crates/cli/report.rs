//! Diagnostics for people: the `file:line:col: level: message` lines that
//! `check`, `eval`, `test`, `diff` and a refused `serve` startup print, and
//! the bounded summary of a failed reload that `/health` shows.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::hash::Hash;
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

/// How much of a failed reload's diagnostics [`bounded`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Lines kept per kind; the rest of that kind become one "more" line.
    pub per_kind: usize,
    /// Lines kept in all, whatever their kind.
    pub max_lines: usize,
    /// Characters kept of one line.
    pub max_line_chars: usize,
}

impl Bounds {
    /// For `/health`'s `last_error`: at most about 100 lines of 500
    /// characters, so a routes.d with 100k errors still gives a small probe
    /// answer; the complete list is in the log and in `c4route check`.
    pub const HEALTH: Bounds = Bounds {
        per_kind: 20,
        max_lines: 100,
        max_line_chars: 500,
    };
}

/// Joins rendered diagnostic lines, keeping the first `per_kind` of each
/// kind. Where a kind has more, one line (in the place of its first omitted
/// one) says how many more there are of that kind; past `max_lines` lines
/// nothing more is shown. The last line is the total.
///
/// The kind is whatever the caller groups by: today a message with its
/// names left out ([`diagnostic_kind`]), later the core's diagnostic kind.
pub fn bounded<K: Eq + Hash + Display + Clone>(
    items: impl IntoIterator<Item = (K, String)>,
    b: Bounds,
) -> String {
    enum Out {
        Line(String),
        /// The "more of this kind" line of kind number `usize`.
        More(usize),
    }
    struct Kind<K> {
        kind: K,
        seen: usize,
        shown: usize,
    }
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut kinds: Vec<Kind<K>> = Vec::new();
    let mut out: Vec<Out> = Vec::new();
    let (mut total, mut shown) = (0usize, 0usize);
    for (kind, line) in items {
        total += 1;
        let k = match index.get(&kind) {
            Some(&k) => k,
            None => {
                index.insert(kind.clone(), kinds.len());
                kinds.push(Kind {
                    kind,
                    seen: 0,
                    shown: 0,
                });
                kinds.len() - 1
            }
        };
        let kind = &mut kinds[k];
        kind.seen += 1;
        if kind.seen <= b.per_kind && shown < b.max_lines {
            kind.shown += 1;
            shown += 1;
            out.push(Out::Line(truncate(line, b.max_line_chars)));
        } else if kind.seen == b.per_kind + 1 && kind.shown > 0 {
            out.push(Out::More(k));
        }
    }
    let mut text = String::new();
    for o in &out {
        match o {
            Out::Line(l) => text.push_str(l),
            Out::More(k) => {
                let kind = &kinds[*k];
                let more = kind.seen - kind.shown;
                let label = truncate(kind.kind.to_string(), b.max_line_chars);
                let _ = write!(text, "... and {more} more like this: {label}");
            }
        }
        text.push('\n');
    }
    let _ = if shown == total {
        write!(text, "{total} error(s)")
    } else {
        write!(text, "{total} error(s) in all, {shown} shown")
    };
    text
}

fn truncate(mut s: String, max_chars: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max_chars) {
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// A diagnostic message with the parts that name things left out: text in
/// backticks or double quotes becomes `…`, and runs of digits become `N`.
/// So "unknown trunk `nope7`" and "unknown trunk `x`" are one kind. A proxy
/// until the core gives each diagnostic a kind of its own.
pub fn diagnostic_kind(message: &str) -> String {
    let mut kind = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' | '"' => {
                kind.push(c);
                kind.push('…');
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == c && !escaped {
                        break;
                    }
                    escaped = c == '"' && d == '\\' && !escaped;
                }
                kind.push(c);
            }
            '0'..='9' => {
                if !kind.ends_with('N') {
                    kind.push('N');
                }
            }
            _ => kind.push(c),
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_leave_names_out() {
        assert_eq!(
            diagnostic_kind("unknown trunk `nope7`; defined trunks: a"),
            "unknown trunk `…`; defined trunks: a"
        );
        assert_eq!(
            diagnostic_kind(r#"header "X-\"Y\": 1" must be a complete `Name: value` line"#),
            "header \"…\" must be a complete `…` line"
        );
        assert_eq!(
            diagnostic_kind("reject code must be in 400..=699, found 7001"),
            "reject code must be in N..=N, found N"
        );
    }

    #[test]
    fn bounded_keeps_per_kind_and_counts_the_rest() {
        let b = Bounds::HEALTH;
        // 1000 of kind A interleaved with 5 of kind B, then 1 of kind C.
        let mut items: Vec<(String, String)> = Vec::new();
        for i in 0..1000 {
            items.push(("A".into(), format!("a.toml:{i}:1: error: a {i}")));
            if i < 5 {
                items.push(("B".into(), format!("b.toml:{i}:1: error: b {i}")));
            }
        }
        items.push(("C".into(), "c.toml:1:1: error: c".into()));
        let text = bounded(items, b);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.contains(": a ")).count(), 20);
        assert_eq!(lines.iter().filter(|l| l.contains(": b ")).count(), 5);
        assert!(lines.contains(&"c.toml:1:1: error: c"));
        // The "more" line sits where kind A's first omitted line was.
        let more = lines.iter().position(|l| l.starts_with("... and")).unwrap();
        assert_eq!(lines[more], "... and 980 more like this: A");
        assert_eq!(lines[more - 1], "a.toml:19:1: error: a 19");
        assert_eq!(lines.iter().filter(|l| l.starts_with("... and")).count(), 1);
        assert_eq!(*lines.last().unwrap(), "1006 error(s) in all, 26 shown");
        assert_eq!(lines.len(), 20 + 5 + 1 + 1 + 1);
    }

    #[test]
    fn bounded_is_small_for_100k_diagnostics_of_many_kinds() {
        // 100k diagnostics over 10k kinds (the kind proxy can miss), and
        // long lines: still about max_lines lines of bounded length.
        let long = "x".repeat(10_000);
        let items = (0..100_000).map(|i| (i % 10_000, format!("f.toml:{i}:1: error: {long}")));
        let text = bounded(items, Bounds::HEALTH);
        assert!(text.len() < 60_000, "{} bytes", text.len());
        assert!(
            text.ends_with("100000 error(s) in all, 100 shown"),
            "{}",
            &text[text.len() - 80..]
        );
        assert!(text.lines().count() <= 2 * Bounds::HEALTH.max_lines + 1);
    }

    #[test]
    fn bounded_shows_everything_when_small() {
        let items = [("k", "a.toml:1:1: error: one".to_owned())];
        assert_eq!(
            bounded(items, Bounds::HEALTH),
            "a.toml:1:1: error: one\n1 error(s)"
        );
        assert_eq!(
            bounded(Vec::<(u8, String)>::new(), Bounds::HEALTH),
            "0 error(s)"
        );
    }
}
