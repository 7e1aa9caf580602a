//! Reading one rate deck: CSV (or gzip-compressed CSV) bytes → a frozen
//! [`RateDeck`], or every problem of the file, each at `line:col`.
//!
//! The file is streamed record by record (the `csv` crate, one reused
//! record buffer) into a flat staging array of `(prefix key, rate, terms,
//! line)`, 24 bytes a row, sized once from the file's line count; that
//! array is sorted once and frozen straight into the deck's arrays. A
//! row's rate is parsed into an eight-byte code (`code.rs`); its *terms*
//! (connect fee, billing, effective range, name) usually repeat those of
//! the previous row (a destination's prefixes are listed together), so a
//! row whose term cells are byte-for-byte the previous row's reuses them
//! without parsing; other rows find theirs in a hash table keyed by those
//! cells. `share.rs` then decides whether rows share whole tariffs (rate
//! and terms) or keep a rate each.
//!
//! Never a panic, never a half-loaded deck: any error, and the deck is
//! `None` with every problem listed (up to [`MAX_ISSUES`], then a count).

use std::hash::BuildHasher as _;
use std::io::Read;
use std::panic::Location;
use std::sync::Arc;

use hashbrown::HashTable;

use super::cells::{parse_amount, parse_interval, parse_when};
use super::newlines::{LoneCrAsLf, count_lines, line_offsets};
use super::{MAX_DIGITS, RateDeck, Secs, Staged, Tariff, fmt_secs, key_of, rate_code};
use crate::diag::Severity;

/// Problems listed per file; the rest are counted in one more line.
pub(crate) const MAX_ISSUES: usize = 1000;

/// The columns a deck may have.
pub(crate) const COLUMNS: [&str; 8] = [
    "prefix",
    "rate",
    "connect_fee",
    "initial",
    "increment",
    "effective_from",
    "effective_until",
    "name",
];

const PREFIX: usize = 0;
const RATE: usize = 1;
const FEE: usize = 2;
const INITIAL: usize = 3;
const INCREMENT: usize = 4;
const FROM: usize = 5;
const UNTIL: usize = 6;
const NAME: usize = 7;

/// One problem of a deck, located in it.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub line: u32,
    pub col: u32,
    /// Byte offset in the (decompressed) file.
    pub offset: usize,
    pub severity: Severity,
    pub message: String,
    pub note: Option<String>,
    pub kind: &'static Location<'static>,
}

/// What loading a deck gave: the deck (`None` on any error) and the
/// problems found (warnings too).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub deck: Option<RateDeck>,
    pub issues: Vec<Issue>,
}

struct Issues {
    list: Vec<Issue>,
    errors: usize,
    dropped: usize,
}

impl Issues {
    #[track_caller]
    fn push(
        &mut self,
        sev: Severity,
        at: (u32, u32, usize),
        message: String,
        note: Option<String>,
    ) {
        if sev == Severity::Error {
            self.errors += 1;
        }
        if self.list.len() >= MAX_ISSUES {
            self.dropped += 1;
            return;
        }
        self.list.push(Issue {
            line: at.0,
            col: at.1,
            offset: at.2,
            severity: sev,
            message,
            note,
            kind: Location::caller(),
        });
    }

    #[track_caller]
    fn err(&mut self, at: (u32, u32, usize), message: String) {
        self.push(Severity::Error, at, message, None);
    }
}

/// Where field `i` of a record starts: (column, byte offset). `raw` is the
/// file's text when it is not compressed; without it the column is counted
/// from the cells (exact unless cells were quoted or padded).
fn field_pos(raw: Option<&[u8]>, start: usize, rec: &csv::ByteRecord, i: usize) -> (u32, usize) {
    if let Some(raw) = raw {
        let line = &raw[start.min(raw.len())..];
        let mut field = 0;
        let mut quoted = false;
        let mut at = 0;
        for (j, &b) in line.iter().enumerate() {
            if field == i {
                at = j;
                break;
            }
            match b {
                b'"' => quoted = !quoted,
                b',' if !quoted => field += 1,
                b'\n' | b'\r' if !quoted => break,
                _ => {}
            }
            at = j + 1;
        }
        let col = String::from_utf8_lossy(&line[..at]).chars().count() + 1;
        return (col as u32, start + at);
    }
    let before: usize = (0..i).map(|k| rec.get(k).map_or(0, <[u8]>::len) + 1).sum();
    (before as u32 + 1, start + before)
}

/// A header cell as a column name: trimmed, lower case, without a BOM.
fn header_name(cell: &[u8]) -> String {
    String::from_utf8_lossy(cell)
        .trim_start_matches('\u{feff}')
        .trim()
        .to_ascii_lowercase()
}

/// The cells of a row's terms (all but the prefix and the rate), framed,
/// to compare rows and intern terms.
fn terms_signature(buf: &mut Vec<u8>, rec: &csv::ByteRecord, cols: &[Option<usize>; 8]) {
    buf.clear();
    for c in [FEE, INITIAL, INCREMENT, FROM, UNTIL, NAME] {
        let cell = cols[c].and_then(|i| rec.get(i)).unwrap_or(b"");
        buf.extend_from_slice(&(cell.len() as u32).to_le_bytes());
        buf.extend_from_slice(cell);
    }
}

/// Loads a deck from its bytes (CSV, or gzip when they start with gzip's
/// magic number). `path` is what diagnostics show.
pub(crate) fn load(path: Arc<str>, bytes: &[u8]) -> Loaded {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut issues = Issues {
        list: Vec::new(),
        errors: 0,
        dropped: 0,
    };
    let deck = if gz {
        let d = flate2::read::MultiGzDecoder::new(bytes);
        read(path.clone(), LoneCrAsLf::new(d), None, &mut issues, 0)
    } else {
        // About one row per line: reserve once instead of growing.
        let lines = count_lines(bytes);
        read(
            path.clone(),
            LoneCrAsLf::new(bytes),
            Some(bytes),
            &mut issues,
            lines,
        )
    };
    // Overlaps are found after sorting, by line only: give them offsets.
    let need: Vec<u32> = {
        let mut v: Vec<u32> = issues
            .list
            .iter()
            .filter(|i| i.offset == usize::MAX)
            .map(|i| i.line)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if !need.is_empty() {
        let text: std::borrow::Cow<'_, [u8]> = if gz {
            let mut v = Vec::new();
            let _ = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut v);
            v.into()
        } else {
            bytes.into()
        };
        let offs = line_offsets(&text, &need);
        for i in issues.list.iter_mut().filter(|i| i.offset == usize::MAX) {
            let k = need.partition_point(|&l| l < i.line);
            i.offset = offs.get(k).copied().unwrap_or(0);
        }
    }
    if issues.dropped > 0 {
        let last = issues
            .list
            .last()
            .map_or((1, 1, 0), |i| (i.line, i.col, i.offset + 1));
        let n = issues.dropped;
        issues.list.push(Issue {
            line: last.0,
            col: last.1,
            offset: last.2,
            severity: Severity::Error,
            message: format!(
                "... and {n} more problems in this file (the first {MAX_ISSUES} are listed)"
            ),
            note: None,
            kind: Location::caller(),
        });
    }
    Loaded {
        deck: if issues.errors == 0 { deck } else { None },
        issues: issues.list,
    }
}

fn read(
    path: Arc<str>,
    input: impl Read,
    raw: Option<&[u8]>,
    issues: &mut Issues,
    rows_hint: usize,
) -> Option<RateDeck> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rec = csv::ByteRecord::new();
    let io_err = |issues: &mut Issues, e: csv::Error, line: u32| {
        let what = if raw.is_none() {
            "cannot decompress the file (is it gzip?)"
        } else {
            "cannot read the file"
        };
        issues.err((line, 1, 0), format!("{what}: {e}"));
    };

    // The header row.
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => {}
        Ok(false) => {
            issues.err(
                (1, 1, 0),
                "the file is empty; expected a header row such as `prefix,rate` and one row per prefix"
                    .into(),
            );
            return None;
        }
        Err(e) => {
            io_err(issues, e, 1);
            return None;
        }
    }
    let header_start = rec.position().map_or(0, |p| p.byte() as usize);
    let header_line = rec.position().map_or(1, |p| p.line() as u32);
    let mut cols: [Option<usize>; 8] = [None; 8];
    let mut ignored = Vec::new();
    // Cells after the last named one (a trailing comma) name nothing and
    // are ignored silently; an empty cell between names gets a warning.
    let named = rec
        .iter()
        .rposition(|c| !header_name(c).is_empty())
        .map_or(0, |i| i + 1);
    for (i, cell) in rec.iter().enumerate().take(named) {
        let name = header_name(cell);
        let (col, off) = field_pos(raw, header_start, &rec, i);
        if name.is_empty() {
            issues.push(
                Severity::Warning,
                (header_line, col, off),
                format!(
                    "column {} of the header has no name: its cells are ignored",
                    i + 1
                ),
                Some("name the column, or remove it (and its cells) from every row".into()),
            );
            continue;
        }
        match COLUMNS.iter().position(|c| *c == name) {
            Some(c) if cols[c].is_some() => issues.err(
                (header_line, col, off),
                format!("column `{name}` appears twice in the header"),
            ),
            Some(c) => cols[c] = Some(i),
            None => ignored.push((name, col, off)),
        }
    }
    let mut missing = Vec::new();
    for c in [PREFIX, RATE] {
        if cols[c].is_none() {
            missing.push(COLUMNS[c]);
        }
    }
    if !missing.is_empty() {
        let found: Vec<String> = rec
            .iter()
            .take(named)
            .map(|c| format!("`{}`", String::from_utf8_lossy(c)))
            .collect();
        issues.err(
            (header_line, 1, header_start),
            format!(
                "missing required column{} {}; the header row has {}; expected the columns {} (prefix and rate required, in any order)",
                if missing.len() > 1 { "s" } else { "" },
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" and "),
                if found.is_empty() { "no columns".into() } else { found.join(", ") },
                COLUMNS.join(", ")
            ),
        );
        return None;
    }
    if let Some((_, col, off)) = ignored.first() {
        let names: Vec<String> = ignored.iter().map(|(n, _, _)| format!("`{n}`")).collect();
        issues.push(
            Severity::Warning,
            (header_line, *col, *off),
            format!(
                "column{} {} {} ignored; the columns c4route reads are {}",
                if names.len() > 1 { "s" } else { "" },
                names.join(", "),
                if names.len() > 1 { "are" } else { "is" },
                COLUMNS.join(", ")
            ),
            Some("a misspelt column (say `conect_fee`) silently keeps its default: rename it, or drop the column".into()),
        );
    }
    let ncols = rec.len();

    let mut staged: Vec<Staged> = Vec::with_capacity(rows_hint);
    let mut tariffs: Vec<Tariff> = Vec::new();
    let mut text = String::new();
    // Interning of terms: signatures of the terms so far, framed in one buffer.
    let mut sigs: Vec<u8> = Vec::new();
    let mut sig_at: Vec<(u32, u32)> = Vec::new();
    let mut table: HashTable<u32> = HashTable::new();
    let hasher = hashbrown::DefaultHashBuilder::default();
    let mut sig = Vec::with_capacity(128);
    let mut last: Option<(Vec<u8>, u32)> = None;
    let mut last_rate: Option<(Vec<u8>, u64)> = None;
    let mut names = Names::default();
    // Rates not written as `write_rate` would: their text, in `text`.
    let mut odd: Vec<(u32, u32)> = Vec::new();
    let mut odd_ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();

    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = staged.last().map_or(header_line + 1, |s| s.line + 1);
                io_err(issues, e, line);
                return None;
            }
        }
        let pos = rec.position();
        let line = pos.map_or(0, |p| p.line() as u32);
        let start = pos.map_or(0, |p| p.byte() as usize);
        let at = |i: usize| {
            let (col, off) = field_pos(raw, start, &rec, i);
            (line, col, off)
        };
        if rec.len() == 1 && rec.get(0).is_some_and(<[u8]>::is_empty) {
            continue; // a line of spaces
        }
        if rec.len() > ncols && rec.iter().skip(ncols).any(|c| !c.is_empty()) {
            issues.err(
                at(ncols),
                format!(
                    "this row has {} cells but the header names {ncols} columns; quote a cell that contains a comma",
                    rec.len()
                ),
            );
            continue;
        }
        let cell = |c: usize| cols[c].and_then(|i| rec.get(i)).unwrap_or(b"");

        // The prefix.
        let p = cell(PREFIX);
        let digits = p.strip_prefix(b"+").unwrap_or(p);
        let pcol = cols[PREFIX].unwrap_or(0);
        let key = if digits.is_empty() {
            issues.err(
                at(pcol),
                "prefix is empty; expected 1 to 15 digits, optionally after a `+`".into(),
            );
            None
        } else if !digits.iter().all(u8::is_ascii_digit) {
            issues.err(
                at(pcol),
                format!(
                    "prefix {:?} is not a number; expected 1 to 15 digits, optionally after a `+` (no spaces, dashes or letters)",
                    String::from_utf8_lossy(p)
                ),
            );
            None
        } else if digits.len() > MAX_DIGITS {
            issues.err(
                at(pcol),
                format!(
                    "prefix {:?} has {} digits; at most {MAX_DIGITS} (an E.164 number has at most 15)",
                    String::from_utf8_lossy(p),
                    digits.len()
                ),
            );
            None
        } else {
            Some(key_of(digits))
        };

        // The rate: a row's own (many decks give each prefix its own).
        let rate_text = std::str::from_utf8(cell(RATE)).unwrap_or("\u{fffd}");
        let rate = if let Some((_, code)) = last_rate.as_ref().filter(|l| l.0 == cell(RATE)) {
            // The previous row's rate, as in a deck that prices destinations.
            Some(*code)
        } else if rate_text.is_empty() {
            issues.err(
                at(cols[RATE].unwrap_or(0)),
                "rate is empty; every row needs a rate per minute (a decimal number >= 0)".into(),
            );
            None
        } else {
            match parse_amount(rate_text) {
                Ok(nanos) => Some(rate_code(rate_text, nanos, || {
                    *odd_ids.entry(rate_text.to_owned()).or_insert_with(|| {
                        odd.push((text.len() as u32, rate_text.len() as u32));
                        text.push_str(rate_text);
                        odd.len() as u64 - 1
                    })
                })),
                Err(e) => {
                    issues.err(
                        at(cols[RATE].unwrap_or(0)),
                        format!("rate {rate_text:?} {e}"),
                    );
                    None
                }
            }
        };

        if let Some(code) = rate {
            let l = last_rate.get_or_insert_with(|| (Vec::with_capacity(16), 0));
            if l.1 != code || l.0 != cell(RATE) {
                l.0.clear();
                l.0.extend_from_slice(cell(RATE));
                l.1 = code;
            }
        }

        // The terms: the previous row's, an earlier one's, or new ones.
        terms_signature(&mut sig, &rec, &cols);
        let terms = match &last {
            Some((s, id)) if *s == sig => Some(*id),
            _ => {
                let hash = hasher.hash_one(&sig);
                let found = table
                    .find(hash, |&j| {
                        let (o, l) = sig_at[j as usize];
                        sigs[o as usize..(o + l) as usize] == sig[..]
                    })
                    .copied();
                match found {
                    Some(id) => Some(id),
                    None => match terms(
                        &rec,
                        &cols,
                        &at,
                        issues,
                        &mut text,
                        &mut names,
                        rate.is_some(),
                    ) {
                        Some(t) => {
                            let id = tariffs.len() as u32;
                            tariffs.push(t);
                            sig_at.push((sigs.len() as u32, sig.len() as u32));
                            sigs.extend_from_slice(&sig);
                            table.insert_unique(hash, id, |&j| {
                                let (o, l) = sig_at[j as usize];
                                hasher.hash_one(&sigs[o as usize..(o + l) as usize])
                            });
                            Some(id)
                        }
                        None => None,
                    },
                }
            }
        };
        if let Some(id) = terms {
            match &mut last {
                Some((s, i)) => {
                    s.clear();
                    s.extend_from_slice(&sig);
                    *i = id;
                }
                None => last = Some((sig.clone(), id)),
            }
        }
        if let (Some(key), Some(rate), Some(tariff)) = (key, rate, terms) {
            staged.push(Staged {
                key,
                rate,
                tariff,
                line,
            });
        }
    }
    drop((table, sigs, sig_at, odd_ids));
    if issues.errors > 0 {
        return None;
    }
    if staged.is_empty() {
        issues.push(
            Severity::Warning,
            (header_line, 1, header_start),
            "the deck has no rows: no number gets a price from it".into(),
            None,
        );
    }

    // Group by prefix, in file order, then by effective_from.
    staged.sort_unstable_by_key(|s| (s.key, s.line));
    let mut i = 0;
    while i < staged.len() {
        let mut j = i + 1;
        while j < staged.len() && staged[j].key == staged[i].key {
            j += 1;
        }
        if j - i > 1 {
            let group = &mut staged[i..j];
            group.sort_by_key(|s| tariffs[s.tariff as usize].from);
            for w in group.windows(2) {
                let (a, b) = (
                    &tariffs[w[0].tariff as usize],
                    &tariffs[w[1].tariff as usize],
                );
                if a.until > b.from {
                    let range = |t: &Tariff| {
                        format!(
                            "{} until {}",
                            fmt_secs(t.from).unwrap_or_else(|| "always".into()),
                            fmt_secs(t.until).unwrap_or_else(|| "forever".into())
                        )
                    };
                    let (first, second) = if w[0].line < w[1].line {
                        (w[0], w[1])
                    } else {
                        (w[1], w[0])
                    };
                    let prefix = super::key_digits(w[0].key);
                    issues.push(
                        Severity::Error,
                        (second.line, 1, usize::MAX),
                        format!(
                            "two rows for prefix {prefix} are in effect at the same time: line {} ({}) and line {} ({}); give them effective_from/effective_until ranges that do not overlap",
                            w[0].line,
                            range(a),
                            w[1].line,
                            range(b),
                        ),
                        Some(format!("the other row is at {path}:{}", first.line)),
                    );
                }
            }
        }
        i = j;
    }
    if issues.errors > 0 {
        return None;
    }
    let deck = match super::share::share_tariffs(&mut staged, &tariffs, &odd, &mut text) {
        super::share::Shared::Yes(whole) => {
            drop(tariffs);
            text.shrink_to_fit();
            RateDeck::new(path, &staged, whole, text, None)
        }
        super::share::Shared::No(width) => {
            tariffs.shrink_to_fit();
            text.shrink_to_fit();
            RateDeck::new(path, &staged, tariffs, text, Some((width, &odd)))
        }
    };
    Some(deck)
}

/// Destination names, each stored once in the deck's text (a destination's
/// name comes back with every price change and billing variant).
#[derive(Default)]
struct Names {
    table: HashTable<(u32, u32)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Names {
    fn intern(&mut self, text: &mut String, name: &str) -> (u32, u32) {
        let hash = self.hasher.hash_one(name);
        fn get(t: &str, r: (u32, u32)) -> &str {
            t.get(r.0 as usize..(r.0 + r.1) as usize).unwrap_or("")
        }
        if let Some(r) = self.table.find(hash, |&r| get(text, r) == name) {
            return *r;
        }
        let r = (text.len() as u32, name.len() as u32);
        text.push_str(name);
        let hasher = &self.hasher;
        let t: &str = text;
        self.table
            .insert_unique(hash, r, |&r| hasher.hash_one(get(t, r)));
        r
    }
}

/// Parses the terms of a row (its cells but the prefix and the rate);
/// `None` (with the problems reported) when one is invalid. `rate_ok`:
/// whether the row's rate was valid (a bad one silences the check of the
/// effective range, as when the rate was parsed here).
fn terms(
    rec: &csv::ByteRecord,
    cols: &[Option<usize>; 8],
    at: &dyn Fn(usize) -> (u32, u32, usize),
    issues: &mut Issues,
    text: &mut String,
    names: &mut Names,
    rate_ok: bool,
) -> Option<Tariff> {
    let before = issues.errors;
    let cell = |c: usize| -> &str {
        let b = cols[c].and_then(|i| rec.get(i)).unwrap_or(b"");
        std::str::from_utf8(b).unwrap_or("\u{fffd}")
    };
    let pos = |c: usize| at(cols[c].unwrap_or(0));
    let fee = match cell(FEE) {
        "" => 0,
        s => parse_amount(s).unwrap_or_else(|e| {
            issues.err(pos(FEE), format!("connect_fee {s:?} {e}"));
            0
        }),
    };
    let interval = |c: usize, min: u32, issues: &mut Issues| match cell(c) {
        "" => 1,
        s => parse_interval(s, min).unwrap_or_else(|e| {
            issues.err(pos(c), format!("{} {s:?} {e}", COLUMNS[c]));
            1
        }),
    };
    let initial = interval(INITIAL, 0, issues);
    let increment = interval(INCREMENT, 1, issues);
    let when = |c: usize, default: Secs, issues: &mut Issues| match cell(c) {
        "" => default,
        s => parse_when(s).unwrap_or_else(|e| {
            issues.err(pos(c), format!("{} {s:?} {e}", COLUMNS[c]));
            default
        }),
    };
    let from = when(FROM, i64::MIN, issues);
    let until = when(UNTIL, i64::MAX, issues);
    if from >= until && rate_ok && issues.errors == before {
        issues.err(
            pos(UNTIL),
            format!(
                "effective_until {:?} is not after effective_from {:?}: the row would never be in effect",
                cell(UNTIL),
                cell(FROM)
            ),
        );
    }
    let name_bytes = cols[NAME].and_then(|i| rec.get(i)).unwrap_or(b"");
    let name = match std::str::from_utf8(name_bytes) {
        Ok(n) => n,
        Err(_) => {
            issues.err(
                pos(NAME),
                "name is not UTF-8 text; save the file as UTF-8".into(),
            );
            ""
        }
    };
    if name.contains(|c: char| c.is_control()) {
        issues.err(pos(NAME), "name contains a control character".into());
    }
    if issues.errors != before {
        return None;
    }
    Some(Tariff {
        rate: 0,
        connect_fee: fee,
        initial,
        increment,
        from,
        until,
        rate_text: (0, 0),
        name: names.intern(text, name),
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
