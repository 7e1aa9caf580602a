//! Rate decks (SPEC §7): one carrier's prices per dialling prefix, read from
//! CSV by `load.rs` and frozen here into a compact longest-prefix index.
//!
//! # Layout
//!
//! A prefix of at most 15 digits is one `u64` *key*: its digits padded with
//! zeros to 15 digits, times 16, plus its length. Sorting keys sorts the
//! prefixes lexicographically, a prefix before its extensions (`44` <
//! `440` < `4471` < `45`). The deck keeps:
//!
//! - `entries`: every distinct prefix, sorted, each with the index of its
//!   longest proper prefix in the deck (or `NONE`) and the tariff of its
//!   first row: 16 bytes, so a lookup reads one entry and one tariff;
//! - `multi`: the few prefixes with more than one row (a price change),
//!   which says where each prefix's rows are in `rows`;
//! - `lines`: the file line of every row, grouped by prefix and ordered by
//!   `effective_from` (4 bytes a row);
//! - `tariffs`: the distinct (rate, connect fee, initial, increment,
//!   effective range, name) tuples, shared by the rows that have them (a
//!   deck prices a destination, and all its prefixes share its tuple);
//! - or, when most rows have a rate of their own (many carriers price
//!   every prefix differently), `tariffs` hold the rest of the tuple (the
//!   *terms*, still shared) and `slots` the rate of every row, as written,
//!   in a fixed-width slot of a few bytes: a 56-byte tariff per row was
//!   most of such a deck. `load.rs` picks whichever is smaller;
//! - `buckets`: the first key index of every leading-`d`-digit bucket.
//!
//! A lookup finds the greatest key ≤ the number's key in its bucket (a few
//! entries), then walks `parent` up until it meets a prefix of the number
//! that has a row in effect: every prefix of the number that the deck holds
//! is on that chain, longest first. So the cost is a bucket read, a short
//! binary search and a walk of at most 15 steps, whatever the deck's size.

mod cells;
mod code;
pub(crate) mod load;
mod newlines;
mod share;
pub(crate) mod source;

use std::sync::Arc;

use code::slot_nanos;
pub(crate) use code::{ODD, code_nanos, rate_code, rate_width, write_rate};

/// At most this many digits in a prefix (E.164's maximum).
pub(crate) const MAX_DIGITS: usize = 15;

/// `10^k` for `k` in `0..=15`.
const POW10: [u64; 16] = {
    let mut p = [1u64; 16];
    let mut i = 1;
    while i < 16 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// No parent prefix.
const NONE: u32 = u32::MAX;

/// Seconds since the Unix epoch; `i64::MIN` / `i64::MAX` mean unbounded.
pub(crate) type Secs = i64;

/// The key of a digit string of at most 15 ASCII digits.
pub(crate) fn key_of(digits: &[u8]) -> u64 {
    let n = digits.len().min(MAX_DIGITS);
    let v = digits[..n]
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
    ((v * POW10[MAX_DIGITS - n]) << 4) | n as u64
}

fn key_len(k: u64) -> usize {
    (k & 15) as usize
}

fn key_pad(k: u64) -> u64 {
    k >> 4
}

/// Whether the prefix of key `p` is a prefix of the number of key `n`.
fn is_prefix(p: u64, n: u64) -> bool {
    let lp = key_len(p);
    lp <= key_len(n) && key_pad(p) / POW10[MAX_DIGITS - lp] == key_pad(n) / POW10[MAX_DIGITS - lp]
}

/// The digits of a key.
fn key_digits(k: u64) -> String {
    let n = key_len(k);
    let v = key_pad(k) / POW10[MAX_DIGITS - n];
    format!("{v:0n$}")
}

/// A price and the conditions it comes with: shared by every row that has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Tariff {
    /// Per minute, in units of 10⁻⁹.
    pub rate: u64,
    /// Per call, in units of 10⁻⁹.
    pub connect_fee: u64,
    /// Billing: the first `initial` seconds, then steps of `increment`.
    pub initial: u32,
    pub increment: u32,
    /// In effect from (inclusive) until (exclusive).
    pub from: Secs,
    pub until: Secs,
    /// The rate as written in the file, and the name: ranges of `text`.
    pub rate_text: (u32, u32),
    pub name: (u32, u32),
}

impl Tariff {
    pub(crate) fn in_effect(&self, now: Secs) -> bool {
        self.from <= now && now < self.until
    }

    /// 60 × the cost of a call of `duration` seconds, in units of 10⁻⁹:
    /// `connect_fee + rate / 60 × billed`, kept exact (an integer) so that
    /// equal costs compare equal.
    pub(crate) fn cost60(&self, duration: u32) -> u128 {
        let billed = if duration <= self.initial {
            u128::from(self.initial)
        } else {
            let inc = u128::from(self.increment.max(1));
            let rest = u128::from(duration - self.initial);
            u128::from(self.initial) + rest.div_ceil(inc) * inc
        };
        u128::from(self.connect_fee) * 60 + u128::from(self.rate) * billed
    }
}

/// One row of a deck being loaded: 24 bytes, sorted by `(key, line)`
/// before the deck is frozen from them (see `load.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    pub key: u64,
    /// The rate ([`rate_code`]).
    pub rate: u64,
    /// The tariff: its terms, or (once [`RateDeck::new`] is given shared
    /// tariffs) the whole tariff.
    pub tariff: u32,
    pub line: u32,
}

/// One distinct prefix of a deck.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    /// Its longest proper prefix in the deck, or `NONE`.
    parent: u32,
    /// The tariff of its first row, with [`MULTI`] set when it has more rows.
    tariff: u32,
}

/// In [`Entry::tariff`]: the prefix has more than one row.
const MULTI: u32 = 1 << 31;

/// A frozen rate deck; see the module documentation for the layout.
#[derive(Debug)]
pub(crate) struct RateDeck {
    /// The file, as diagnostics show it.
    pub path: Arc<str>,
    /// Sorted by key.
    entries: Box<[Entry]>,
    /// `(entry, extra)` for each entry with more than one row, by entry:
    /// `extra` counts the rows beyond the first of this entry and of every
    /// earlier one (rows are in entry order, so entry `i` starts at row
    /// `i` + the extra rows before it).
    multi: Box<[(u32, u32)]>,
    /// The file line of every row (rows are grouped by entry, in entry
    /// order, each entry's by `effective_from`).
    lines: Box<[u32]>,
    /// The tariffs of the rows after an entry's first (whose tariff is in
    /// the entry), in row order.
    more: Box<[u32]>,
    tariffs: Box<[Tariff]>,
    /// With rates by row: every row's rate as written, `width` bytes each
    /// (shorter ones padded with zero bytes); else empty, and the rates
    /// are in `tariffs`.
    slots: Box<[u8]>,
    width: usize,
    text: Box<str>,
    /// `buckets[b]` is the first key whose leading `bucket_digits` digits
    /// (of the padded 15) are ≥ `b`; one more entry at the end.
    buckets: Box<[u32]>,
    bucket_digits: u32,
}

/// A row found for a number: the prefix entry and the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub entry: u32,
    pub row: u32,
}

impl RateDeck {
    /// Freezes the rows of a deck, sorted by `(key, effective_from)` and
    /// validated (see `load.rs`). `slots` is `Some(width)` to keep every
    /// row's rate in a slot (then `tariffs` are terms without a rate, and
    /// `odd` the texts of `ODD` rate codes); `None` when each row's
    /// `tariff` is a whole tariff already.
    pub(crate) fn new(
        path: Arc<str>,
        rows: &[Staged],
        tariffs: Vec<Tariff>,
        text: String,
        slots: Option<(usize, &[(u32, u32)])>,
    ) -> Self {
        let distinct = rows.windows(2).filter(|w| w[0].key != w[1].key).count()
            + usize::from(!rows.is_empty());
        // Each prefix's parent: the nearest earlier key that is its prefix.
        // A stack of the current chain does it in one pass.
        let mut entries: Vec<Entry> = Vec::with_capacity(distinct);
        let mut multi = Vec::new();
        let mut more = Vec::new();
        let mut lines = Vec::with_capacity(rows.len());
        let width = slots.map_or(0, |s| s.0);
        let mut slot_bytes = vec![0u8; rows.len() * width];
        let mut chain: Vec<u32> = Vec::with_capacity(MAX_DIGITS);
        let mut i = 0;
        while i < rows.len() {
            let k = rows[i].key;
            let mut j = i + 1;
            while j < rows.len() && rows[j].key == k {
                j += 1;
            }
            while let Some(&top) = chain.last() {
                if is_prefix(entries[top as usize].key, k) {
                    break;
                }
                chain.pop();
            }
            let extra = (j - i - 1) as u32;
            let e = entries.len() as u32;
            if extra > 0 {
                let before = multi.last().map_or(0, |m: &(u32, u32)| m.1);
                multi.push((e, before + extra));
                more.extend(rows[i + 1..j].iter().map(|r| r.tariff));
            }
            let t = rows[i].tariff;
            entries.push(Entry {
                key: k,
                parent: chain.last().copied().unwrap_or(NONE),
                tariff: if extra > 0 { t | MULTI } else { t },
            });
            chain.push(e);
            i = j;
        }
        for (r, row) in rows.iter().enumerate() {
            lines.push(row.line);
            if let Some((w, odd)) = slots {
                let slot = &mut slot_bytes[r * w..(r + 1) * w];
                if row.rate >> 60 == ODD {
                    let (o, l) = odd[code_nanos(row.rate) as usize];
                    let t = text
                        .as_bytes()
                        .get(o as usize..(o + l) as usize)
                        .unwrap_or(b"");
                    let n = t.len().min(w);
                    slot[..n].copy_from_slice(&t[..n]);
                } else {
                    write_rate(row.rate, slot);
                }
            }
        }
        // About two keys per bucket, at most a million buckets.
        let mut digits = 1u32;
        while digits < 6 && POW10[digits as usize + 1] * 2 <= entries.len() as u64 {
            digits += 1;
        }
        let n = POW10[digits as usize] as usize;
        let div = POW10[MAX_DIGITS - digits as usize];
        let mut buckets = vec![0u32; n + 1];
        let mut b = 0usize;
        for (i, e) in entries.iter().enumerate() {
            let kb = (key_pad(e.key) / div) as usize;
            while b <= kb {
                buckets[b] = i as u32;
                b += 1;
            }
        }
        while b <= n {
            buckets[b] = entries.len() as u32;
            b += 1;
        }
        RateDeck {
            path,
            entries: entries.into(),
            multi: multi.into(),
            lines: lines.into(),
            more: more.into(),
            tariffs: tariffs.into(),
            slots: slot_bytes.into(),
            width,
            text: text.into(),
            buckets: buckets.into(),
            bucket_digits: digits,
        }
    }

    /// A deck without rows.
    pub(crate) fn empty() -> Self {
        RateDeck::new("".into(), &[], Vec::new(), String::new(), None)
    }

    /// Number of rows.
    pub(crate) fn row_count(&self) -> usize {
        self.lines.len()
    }

    /// Number of distinct prefixes.
    #[cfg(test)]
    pub(crate) fn prefix_count(&self) -> usize {
        self.entries.len()
    }

    /// Heap bytes of the frozen deck.
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.entries.len() * size_of::<Entry>()
            + self.multi.len() * 8
            + self.lines.len() * 4
            + self.more.len() * 4
            + self.tariffs.len() * size_of::<Tariff>()
            + self.slots.len()
            + self.text.len()
            + self.buckets.len() * 4
    }

    /// The rows of entry `i`.
    fn rows_of(&self, i: usize) -> std::ops::Range<u32> {
        let i = i as u32;
        let k = self.multi.partition_point(|m| m.0 < i);
        let before = if k > 0 { self.multi[k - 1].1 } else { 0 };
        let own = match self.multi.get(k) {
            Some(m) if m.0 == i => m.1 - before,
            _ => 0,
        };
        i + before..i + before + 1 + own
    }

    /// The entries of the bucket of `nk`.
    fn bucket(&self, nk: u64) -> (usize, usize) {
        let div = POW10[MAX_DIGITS - self.bucket_digits as usize];
        let b = (key_pad(nk) / div) as usize;
        (self.buckets[b] as usize, self.buckets[b + 1] as usize)
    }

    /// The index of the greatest key ≤ `nk` given its bucket, if any.
    fn floor_in(&self, nk: u64, (lo, hi): (usize, usize)) -> Option<usize> {
        let in_bucket = self.entries[lo..hi].partition_point(|e| e.key <= nk);
        (lo + in_bucket).checked_sub(1)
    }

    /// The index of the greatest key ≤ `nk`, if any.
    fn floor(&self, nk: u64) -> Option<usize> {
        self.floor_in(nk, self.bucket(nk))
    }

    /// From entry `i` (the floor of `nk`) up its parents: the first that is
    /// a prefix of `nk`.
    fn up(&self, nk: u64, mut i: usize) -> Option<usize> {
        loop {
            let e = self.entries[i];
            if is_prefix(e.key, nk) {
                return Some(i);
            }
            if e.parent == NONE {
                return None;
            }
            i = e.parent as usize;
        }
    }

    /// [`RateDeck::lookup`] of one number in several decks at once, into
    /// `out` (one slot per deck). Step by step across the decks (every
    /// bucket, then every search, …) so that their cache misses overlap
    /// instead of adding up: a lookup in a large deck is a few misses deep.
    pub(crate) fn lookup_all(
        decks: &[&RateDeck],
        number: &[u8],
        now: Secs,
        out: &mut [Option<Hit>],
    ) {
        const MAX: usize = 16;
        if number.is_empty() || decks.len() > MAX {
            for (d, o) in decks.iter().zip(out.iter_mut()) {
                *o = d.lookup(number, now);
            }
            return;
        }
        let nk = key_of(number);
        let n = decks.len();
        // Each step only loads, for every deck, what the next one needs,
        // before any branch depends on it: a mispredicted branch would
        // otherwise hold back the next deck's load until this one's miss
        // is served, and the misses would add up instead of overlapping.
        let mut at = [(0usize, 0usize); MAX];
        for k in 0..n {
            at[k] = decks[k].bucket(nk);
        }
        let mut first = [u64::MAX; MAX];
        for k in 0..n {
            let e = &decks[k].entries;
            if let Some(x) = e.get(at[k].0.min(at[k].1.saturating_sub(1))) {
                first[k] = x.key;
            }
        }
        let mut idx = [None::<usize>; MAX];
        for k in 0..n {
            let (lo, hi) = at[k];
            idx[k] = if lo == hi || first[k] > nk {
                lo.checked_sub(1)
            } else {
                decks[k].floor_in(nk, (lo, hi))
            };
        }
        // Up the parents, one step for every deck per round.
        let mut done = [false; MAX];
        for _ in 0..=MAX_DIGITS {
            let mut key = [0u64; MAX];
            let mut pending = false;
            for k in 0..n {
                if let (false, Some(i)) = (done[k], idx[k]) {
                    key[k] = decks[k].entries[i].key;
                    pending = true;
                }
            }
            if !pending {
                break;
            }
            for k in 0..n {
                if let (false, Some(i)) = (done[k], idx[k]) {
                    if is_prefix(key[k], nk) {
                        done[k] = true;
                    } else {
                        let p = decks[k].entries[i].parent;
                        idx[k] = (p != NONE).then_some(p as usize);
                    }
                }
            }
        }
        let mut tariff = [MULTI; MAX];
        for k in 0..n {
            if let Some(i) = idx[k] {
                tariff[k] = decks[k].entries[i].tariff;
            }
        }
        let mut range = [(i64::MAX, i64::MIN); MAX];
        for k in 0..n {
            if let Some(t) = decks[k].tariffs.get((tariff[k] & !MULTI) as usize) {
                range[k] = (t.from, t.until);
            }
        }
        for k in 0..n {
            let d = decks[k];
            out[k] = match idx[k] {
                None => None,
                // One row (the usual case) in effect: done; else the slow path.
                Some(i) if tariff[k] & MULTI == 0 && range[k].0 <= now && now < range[k].1 => {
                    Some(Hit {
                        entry: i as u32,
                        row: d.rows_of(i).start,
                    })
                }
                Some(_) => d.lookup(number, now),
            };
        }
    }

    /// The row in effect at `now` with the longest prefix of `number`
    /// (ASCII digits; only the first 15 count).
    pub(crate) fn lookup(&self, number: &[u8], now: Secs) -> Option<Hit> {
        if number.is_empty() {
            return None;
        }
        let nk = key_of(number);
        let mut i = self.floor(nk)?;
        loop {
            let e = self.entries[i];
            if is_prefix(e.key, nk) {
                for r in self.rows_of(i) {
                    if self.terms(i as u32, r).in_effect(now) {
                        return Some(Hit {
                            entry: i as u32,
                            row: r,
                        });
                    }
                }
            }
            if e.parent == NONE {
                return None;
            }
            i = e.parent as usize;
        }
    }

    /// Every row of the longest prefix of `number` the deck holds, whatever
    /// their dates (for explaining why a trunk has no price).
    pub(crate) fn longest_rows(&self, number: &[u8]) -> Option<(u32, std::ops::Range<u32>)> {
        if number.is_empty() {
            return None;
        }
        let nk = key_of(number);
        let i = self.up(nk, self.floor(nk)?)?;
        Some((i as u32, self.rows_of(i)))
    }

    /// The file line of row `r`.
    pub(crate) fn line(&self, r: u32) -> u32 {
        self.lines[r as usize]
    }

    /// The stored tariff of row `r` of entry `e`: all of it, or (with
    /// rates by row) its terms, whose `rate` is 0. Enough for dates.
    pub(crate) fn terms(&self, e: u32, r: u32) -> &Tariff {
        let first = self.rows_of(e as usize).start;
        let t = if r == first {
            self.entries[e as usize].tariff & !MULTI
        } else {
            // The extra rows before this entry, then this one's.
            let k = self.multi.partition_point(|m| m.0 < e);
            let before = if k > 0 { self.multi[k - 1].1 } else { 0 };
            self.more[(before + r - first - 1) as usize]
        };
        &self.tariffs[t as usize]
    }

    /// The tariff of row `r` of entry `e`, its rate included.
    pub(crate) fn tariff(&self, e: u32, r: u32) -> Tariff {
        let mut t = *self.terms(e, r);
        if self.width > 0 {
            t.rate = slot_nanos(self.slot(r));
        }
        t
    }

    /// Row `r`'s rate slot, without its padding.
    fn slot(&self, r: u32) -> &[u8] {
        let w = self.width;
        let s = self
            .slots
            .get(r as usize * w..(r as usize + 1) * w)
            .unwrap_or(&[]);
        let n = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..n]
    }

    /// The rate of row `r` of entry `e` as the file writes it.
    pub(crate) fn rate_text(&self, e: u32, r: u32) -> &str {
        if self.width > 0 {
            std::str::from_utf8(self.slot(r)).unwrap_or("")
        } else {
            self.text(self.terms(e, r).rate_text)
        }
    }

    /// Whether the deck keeps its rates by row (see the module docs).
    #[cfg(test)]
    pub(crate) fn rates_by_row(&self) -> bool {
        self.width > 0
    }

    /// The digits of prefix entry `e`.
    pub(crate) fn prefix(&self, e: u32) -> String {
        key_digits(self.entries[e as usize].key)
    }

    pub(crate) fn text(&self, range: (u32, u32)) -> &str {
        self.text
            .get(range.0 as usize..(range.0 + range.1) as usize)
            .unwrap_or("")
    }

    /// The rows whose effective range ended at or before `now`: how many,
    /// and the first line of one.
    pub(crate) fn expired(&self, now: Secs) -> (usize, u32) {
        let mut n = 0;
        let mut first = u32::MAX;
        for e in 0..self.entries.len() {
            for r in self.rows_of(e) {
                if self.terms(e as u32, r).until <= now {
                    n += 1;
                    first = first.min(self.lines[r as usize]);
                }
            }
        }
        (n, first)
    }
}

/// Formats an amount in units of 10⁻⁹ with at least `min` decimals.
pub(crate) fn fmt_nanos(n: u128, min: usize) -> String {
    let int = n / 1_000_000_000;
    let frac = format!("{:09}", n % 1_000_000_000);
    let keep = frac.trim_end_matches('0').len().max(min).min(9);
    if keep == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", &frac[..keep])
    }
}

/// Formats a time of a deck: a date when it is midnight UTC.
pub(crate) fn fmt_secs(s: Secs) -> Option<String> {
    if s == i64::MIN || s == i64::MAX {
        return None;
    }
    let ts = jiff::Timestamp::from_second(s).ok()?;
    if s.rem_euclid(86_400) == 0 {
        Some(ts.strftime("%Y-%m-%d").to_string())
    } else {
        Some(ts.to_string())
    }
}

/// `now` in whole seconds since the epoch (before 1970: negative).
pub(crate) fn secs(now: std::time::SystemTime) -> Secs {
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX - 1),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX - 1);
            if d.subsec_nanos() > 0 { -s - 1 } else { -s }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_lexicographically_and_test_prefixes() {
        let mut v = ["45", "4471", "44", "440", "4", "1", "0"];
        let mut keys: Vec<u64> = v.iter().map(|s| key_of(s.as_bytes())).collect();
        keys.sort_unstable();
        v.sort_unstable();
        let back: Vec<String> = keys.iter().map(|&k| key_digits(k)).collect();
        assert_eq!(back, v);
        let n = key_of(b"447123");
        assert!(is_prefix(key_of(b"44"), n));
        assert!(is_prefix(key_of(b"447123"), n));
        assert!(!is_prefix(key_of(b"4471234"), n));
        assert!(!is_prefix(key_of(b"440"), n));
        assert_eq!(key_digits(key_of(b"0044")), "0044");
    }

    /// The batch lookup across decks finds exactly what one lookup per
    /// deck finds, dated rows and several rows per prefix included.
    #[test]
    fn lookup_all_agrees_with_lookup() {
        let mut x: u64 = 7;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let mut decks = Vec::new();
        for _ in 0..5 {
            let mut csv = String::from("prefix,rate,effective_from,effective_until\n");
            let mut seen = std::collections::HashSet::new();
            for _ in 0..300 {
                let len = 1 + next(6) as usize;
                let p: String = (0..len).map(|_| char::from(b'0' + next(4) as u8)).collect();
                if !seen.insert(p.clone()) {
                    continue;
                }
                match next(4) {
                    0 => csv += &format!("{p},0.0{},,2026-06-01\n{p},0.1,2026-06-01,\n", next(9)),
                    1 => csv += &format!("{p},0.0{},2026-06-01,\n", next(9)),
                    _ => csv += &format!("{p},0.0{},,\n", next(9)),
                }
            }
            let l = load::load("d.csv".into(), csv.as_bytes());
            decks.push(l.deck.unwrap_or_else(|| panic!("{:?}", l.issues)));
        }
        let refs: Vec<&RateDeck> = decks.iter().collect();
        for t in [1_770_000_000, 1_790_000_000] {
            for _ in 0..2000 {
                let len = 1 + next(9) as usize;
                let n: String = (0..len).map(|_| char::from(b'0' + next(4) as u8)).collect();
                let mut out = vec![None; refs.len()];
                RateDeck::lookup_all(&refs, n.as_bytes(), t, &mut out);
                for (d, o) in refs.iter().zip(&out) {
                    assert_eq!(*o, d.lookup(n.as_bytes(), t), "{n}");
                }
            }
        }
    }

    #[test]
    fn cost_follows_initial_and_increment() {
        let t = |rate, fee, initial, increment| Tariff {
            rate,
            connect_fee: fee,
            initial,
            increment,
            from: i64::MIN,
            until: i64::MAX,
            rate_text: (0, 0),
            name: (0, 0),
        };
        // 0.06/min, per second: 60 s cost 0.06.
        assert_eq!(t(60_000_000, 0, 1, 1).cost60(60), 60_000_000 * 60);
        // 60/60 billing of a 61 s call bills 120 s.
        assert_eq!(t(60_000_000, 0, 60, 60).cost60(61), 60_000_000 * 120);
        // 30/6: 61 s → 30 + ceil(31/6)*6 = 66 s.
        assert_eq!(t(60_000_000, 0, 30, 6).cost60(61), 60_000_000 * 66);
        // A call shorter than the initial interval bills the interval.
        assert_eq!(t(60_000_000, 0, 60, 60).cost60(10), 60_000_000 * 60);
        assert_eq!(t(0, 10_000_000, 1, 1).cost60(60), 10_000_000 * 60);
    }

    #[test]
    fn amounts_and_times_format() {
        assert_eq!(fmt_nanos(12_000_000, 4), "0.0120");
        assert_eq!(fmt_nanos(1_500_000_000, 0), "1.5");
        assert_eq!(fmt_nanos(0, 0), "0");
        assert_eq!(fmt_nanos(123_456_789, 2), "0.123456789");
        assert_eq!(fmt_secs(1_796_083_200).as_deref(), Some("2026-12-01"));
        assert_eq!(fmt_secs(i64::MAX), None);
        let t = std::time::UNIX_EPOCH - std::time::Duration::from_millis(500);
        assert_eq!(secs(t), -1);
    }
}
