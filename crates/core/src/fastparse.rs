//! A fast path for rate-deck TOML: a document made only of `[[rules]]`
//! tables written one `key = value` per line, with the plain values such
//! decks use (basic strings without escapes, decimal integers, booleans and
//! single-line arrays of those).
//!
//! [`parse`] either returns exactly the [`RouteFile`] (spans included) that
//! `toml::from_str` would, or `None` as soon as anything falls outside that
//! subset: another table header, a quoted or spaced key, an escape, a
//! multi-line array, an unknown or repeated key, a value of the wrong type,
//! a missing `name`. The caller then parses the text with `toml`, which
//! produces the real result or the real error. So this module never decides
//! what is valid; it only recognises the common, certainly-valid shape
//! faster than a general parser can. `tests` compares both parsers' output
//! on the shipped files, generated decks and random mutations of them.
//!
//! On the 1M one-prefix-rule deck of `scripts/bench-engine.sh` the parse
//! phase now takes about 1 s on two cores, where toml's own parse of the
//! same text takes 7 s on one (docs/PERFORMANCE.md, "Rate-deck fast path").

use std::ops::Range;

use toml::Spanned;

use crate::config::{MatchDef, RangeDef, RejectDef, RouteFile, RuleDef, ThenDef};

/// Parses `text` if it is entirely in the fast subset; `None` otherwise.
pub(crate) fn parse(text: &str) -> Option<RouteFile> {
    // Control characters other than tab and LF (CR included) are errors or
    // CRLF line ends in TOML; leave both to the full parser.
    if text
        .bytes()
        .any(|b| (b < 0x20 && b != b'\t' && b != b'\n') || b == 0x7f)
    {
        return None;
    }
    // Sized once: a rule is 528 bytes here, and growing a 1M-rule vector
    // by doubling copied it into fresh pages again and again.
    let mut rules: Vec<Spanned<RuleDef>> = Vec::with_capacity(text.matches("[[rules]]").count());
    let mut cur: Option<Rule> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let line = line.strip_suffix('\n').unwrap_or(line);
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let body = &line[indent..];
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if let Some(rest) = body.strip_prefix("[[rules]]") {
            if !is_end(rest) {
                return None;
            }
            if let Some(r) = cur.take() {
                rules.push(r.finish()?);
            }
            let at = start + indent;
            cur = Some(Rule::new(at..at + "[[rules]]".len()));
            continue;
        }
        // A key/value line, which must belong to a rule.
        let rule = cur.as_mut()?;
        rule.assign(body, start + indent)?;
    }
    if let Some(r) = cur.take() {
        rules.push(r.finish()?);
    }
    Some(RouteFile {
        defaults: None,
        trunks: Default::default(),
        rules,
        schedules: Default::default(),
        tests: Vec::new(),
    })
}

/// Whitespace, then an optional comment, up to the end of the line.
fn is_end(rest: &str) -> bool {
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.is_empty() || rest.starts_with('#')
}

/// A parsed value and its span (absolute).
enum Value<'a> {
    Str(&'a str, Range<usize>),
    Int(i64, Range<usize>),
    Bool(bool, Range<usize>),
    /// An array already checked to hold `count` scalars; its items are
    /// read again by [`Value::items`] straight into their final type, so a
    /// one-prefix array costs one allocation.
    Array(Items<'a>, Range<usize>),
}

/// Where an array's items start, to read them again.
struct Items<'a> {
    cursor: Cursor<'a>,
    count: usize,
}

impl Items<'_> {
    fn collect<T>(mut self, f: impl Fn(Value<'_>) -> Option<T>) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(self.count);
        let c = &mut self.cursor;
        for _ in 0..self.count {
            c.skip_ws();
            out.push(f(c.scalar()?)?);
            c.skip_ws();
            c.eat(b',');
        }
        Some(out)
    }
}

/// A cursor over one line; `base` is the line's offset in the document.
#[derive(Clone)]
struct Cursor<'a> {
    s: &'a str,
    i: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.s.as_bytes().get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.as_bytes().get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn abs(&self, from: usize) -> Range<usize> {
        self.base + from..self.base + self.i
    }

    /// A basic string with no escapes.
    fn string(&mut self) -> Option<Value<'a>> {
        let from = self.i;
        if !self.eat(b'"') {
            return None;
        }
        let rest = &self.s[self.i..];
        let end = rest.find(['"', '\\'])?;
        if rest.as_bytes()[end] != b'"' {
            return None;
        }
        let v = &rest[..end];
        self.i += end + 1;
        Some(Value::Str(v, self.abs(from)))
    }

    /// A decimal integer as TOML writes it, without underscores.
    fn int(&mut self) -> Option<Value<'a>> {
        let from = self.i;
        let b = self.s.as_bytes();
        let mut j = self.i;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let digits = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let n = j - digits;
        if n == 0 || (n > 1 && b[digits] == b'0') {
            return None;
        }
        // What may follow a number here: the end, a comma, a bracket.
        if !matches!(b.get(j), None | Some(b' ' | b'\t' | b'#' | b',' | b']')) {
            return None;
        }
        let v: i64 = self.s[from..j].parse().ok()?;
        self.i = j;
        Some(Value::Int(v, self.abs(from)))
    }

    fn boolean(&mut self) -> Option<Value<'a>> {
        let from = self.i;
        let rest = &self.s[self.i..];
        let (v, len) = if rest.starts_with("true") {
            (true, 4)
        } else if rest.starts_with("false") {
            (false, 5)
        } else {
            return None;
        };
        if !matches!(
            rest.as_bytes().get(len),
            None | Some(b' ' | b'\t' | b'#' | b',' | b']')
        ) {
            return None;
        }
        self.i += len;
        Some(Value::Bool(v, self.abs(from)))
    }

    fn scalar(&mut self) -> Option<Value<'a>> {
        match self.s.as_bytes().get(self.i)? {
            b'"' => self.string(),
            b't' | b'f' => self.boolean(),
            b'+' | b'-' | b'0'..=b'9' => self.int(),
            _ => None,
        }
    }

    /// A value; arrays hold scalars and end on the same line.
    fn value(&mut self) -> Option<Value<'a>> {
        if self.s.as_bytes().get(self.i) != Some(&b'[') {
            return self.scalar();
        }
        let from = self.i;
        self.i += 1;
        let start = self.clone();
        let mut count = 0;
        self.skip_ws();
        while !self.eat(b']') {
            self.scalar()?;
            count += 1;
            self.skip_ws();
            if self.eat(b',') {
                self.skip_ws();
            } else {
                self.skip_ws();
                if !self.eat(b']') {
                    return None;
                }
                break;
            }
        }
        Some(Value::Array(
            Items {
                cursor: start,
                count,
            },
            self.abs(from),
        ))
    }
}

/// The dotted keys the fast path knows, one bit each.
#[derive(Clone, Copy)]
enum Key {
    Name,
    Priority,
    Enabled,
    Source,
    SourcePort,
    Transport,
    Auth,
    Schedule,
    User(Party, UserKey),
    Trunks,
    Routing,
    Headers,
    RejectCode,
    RejectReason,
}

#[derive(Clone, Copy)]
enum Party {
    To,
    From,
    Ruri,
}

#[derive(Clone, Copy)]
enum UserKey {
    Prefix,
    Exact,
    Regex,
    Length,
    Domain,
}

impl Key {
    fn parse(key: &str) -> Option<Key> {
        // `name.` or `match..to` are TOML errors, not `name` or `match.to`.
        if key.split('.').any(str::is_empty) {
            return None;
        }
        let (head, rest) = key.split_once('.').unwrap_or((key, ""));
        Some(match (head, rest) {
            ("name", "") => Key::Name,
            ("priority", "") => Key::Priority,
            ("enabled", "") => Key::Enabled,
            ("match", m) => match m.split_once('.') {
                None => match m {
                    "source" => Key::Source,
                    "source_port" => Key::SourcePort,
                    "transport" => Key::Transport,
                    "auth" => Key::Auth,
                    "schedule" => Key::Schedule,
                    _ => return None,
                },
                Some((party, field)) => {
                    let party = match party {
                        "to" => Party::To,
                        "from" => Party::From,
                        "ruri" => Party::Ruri,
                        _ => return None,
                    };
                    let field = match field {
                        "prefix" => UserKey::Prefix,
                        "exact" => UserKey::Exact,
                        "regex" => UserKey::Regex,
                        "length" => UserKey::Length,
                        "domain" => UserKey::Domain,
                        _ => return None,
                    };
                    Key::User(party, field)
                }
            },
            ("then", t) => match t {
                "trunks" => Key::Trunks,
                "routing" => Key::Routing,
                "headers" => Key::Headers,
                "reject.code" => Key::RejectCode,
                "reject.reason" => Key::RejectReason,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn bit(self) -> u32 {
        match self {
            Key::Name => 0,
            Key::Priority => 1,
            Key::Enabled => 2,
            Key::Source => 3,
            Key::SourcePort => 4,
            Key::Transport => 5,
            Key::Auth => 6,
            Key::Schedule => 7,
            Key::Trunks => 8,
            Key::Routing => 9,
            Key::Headers => 10,
            Key::RejectCode => 11,
            Key::RejectReason => 12,
            Key::User(p, f) => 13 + 5 * p as u32 + f as u32,
        }
    }
}

/// One `[[rules]]` table being filled.
struct Rule {
    header: Range<usize>,
    seen: u32,
    name: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    enabled: Option<bool>,
    matches: MatchDef,
    /// The span of the first `then` key, and what is under it.
    then: Option<(Range<usize>, ThenDef)>,
    /// The span of the first `reject` key, and its fields.
    reject: Option<Reject>,
}

/// `then.reject.*` so far: the span of the first `reject` key, code, reason.
type Reject = (Range<usize>, Option<Spanned<i64>>, Option<Spanned<String>>);

fn spanned_str(v: Value<'_>) -> Option<Spanned<String>> {
    match v {
        Value::Str(s, at) => Some(Spanned::new(at, s.to_owned())),
        _ => None,
    }
}

fn spanned_strs(v: Value<'_>) -> Option<Spanned<Vec<Spanned<String>>>> {
    match v {
        Value::Array(items, at) => Some(Spanned::new(at, items.collect(spanned_str)?)),
        _ => None,
    }
}

fn range_def(v: Value<'_>) -> Option<Spanned<RangeDef>> {
    match v {
        Value::Int(n, at) => Some(Spanned::new(at, RangeDef::Int(n))),
        Value::Str(s, at) => Some(Spanned::new(at, RangeDef::Text(s.to_owned()))),
        _ => None,
    }
}

impl Rule {
    fn new(header: Range<usize>) -> Rule {
        Rule {
            header,
            seen: 0,
            name: None,
            priority: None,
            enabled: None,
            matches: MatchDef::default(),
            then: None,
            reject: None,
        }
    }

    /// One `key = value` line starting at absolute offset `at`.
    fn assign(&mut self, line: &str, at: usize) -> Option<()> {
        let key_len = line
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
            .unwrap_or(line.len());
        let key_text = &line[..key_len];
        let key = Key::parse(key_text)?;
        let bit = 1 << key.bit();
        if self.seen & bit != 0 {
            return None; // a duplicate key: toml's error
        }
        self.seen |= bit;
        let mut c = Cursor {
            s: line,
            i: key_len,
            base: at,
        };
        c.skip_ws();
        if !c.eat(b'=') {
            return None;
        }
        c.skip_ws();
        let value = c.value()?;
        if !is_end(&line[c.i..]) {
            return None;
        }
        // The span of the key segment at `depth` (0 = first).
        let segment = |depth: usize| -> Range<usize> {
            let mut from = 0;
            for _ in 0..depth {
                from += key_text[from..].find('.').map_or(0, |d| d + 1);
            }
            let len = key_text[from..].find('.').unwrap_or(key_text.len() - from);
            at + from..at + from + len
        };
        match key {
            Key::Name => self.name = Some(spanned_str(value)?),
            Key::Priority => match value {
                Value::Int(n, s) => self.priority = Some(Spanned::new(s, n)),
                _ => return None,
            },
            Key::Enabled => match value {
                Value::Bool(b, _) => self.enabled = Some(b),
                _ => return None,
            },
            Key::Source => self.matches.source = Some(Box::new(spanned_strs(value)?)),
            Key::Transport => self.matches.transport = Some(Box::new(spanned_strs(value)?)),
            Key::SourcePort => match value {
                Value::Array(items, s) => {
                    self.matches.source_port =
                        Some(Box::new(Spanned::new(s, items.collect(range_def)?)));
                }
                _ => return None,
            },
            Key::Auth => match value {
                Value::Bool(b, s) => self.matches.auth = Some(Spanned::new(s, b)),
                _ => return None,
            },
            Key::Schedule => self.matches.schedule = Some(Box::new(spanned_str(value)?)),
            Key::User(party, field) => {
                let slot = match party {
                    Party::To => &mut self.matches.to,
                    Party::From => &mut self.matches.from,
                    Party::Ruri => &mut self.matches.ruri,
                };
                let u = slot.get_or_insert_with(Box::default);
                match field {
                    UserKey::Prefix => u.prefix = Some(spanned_strs(value)?),
                    UserKey::Exact => u.exact = Some(spanned_strs(value)?),
                    UserKey::Domain => u.domain = Some(Box::new(spanned_strs(value)?)),
                    UserKey::Regex => u.regex = Some(Box::new(spanned_str(value)?)),
                    UserKey::Length => u.length = Some(Box::new(range_def(value)?)),
                }
            }
            Key::Trunks | Key::Routing | Key::Headers | Key::RejectCode | Key::RejectReason => {
                let then = &mut self
                    .then
                    .get_or_insert_with(|| (segment(0), ThenDef::default()))
                    .1;
                match key {
                    Key::Trunks => then.trunks = Some(spanned_strs(value)?),
                    Key::Routing => then.routing = Some(Box::new(spanned_str(value)?)),
                    Key::Headers => then.headers = Some(Box::new(spanned_strs(value)?)),
                    _ => {
                        let r = self.reject.get_or_insert_with(|| (segment(1), None, None));
                        match (key, value) {
                            (Key::RejectCode, Value::Int(n, s)) => {
                                r.1 = Some(Spanned::new(s, n));
                            }
                            (Key::RejectReason, v @ Value::Str(..)) => r.2 = spanned_str(v),
                            _ => return None,
                        }
                    }
                }
            }
        }
        Some(())
    }

    fn finish(self) -> Option<Spanned<RuleDef>> {
        let mut then = self.then;
        if let Some((at, code, reason)) = self.reject {
            let t = &mut then.as_mut()?.1;
            t.reject = Some(Box::new(Spanned::new(
                at,
                RejectDef {
                    code: code?,
                    reason,
                },
            )));
        }
        Some(Spanned::new(
            self.header,
            RuleDef {
                name: self.name?,
                priority: self.priority,
                enabled: self.enabled,
                matches: self.matches,
                then: then.map(|(at, t)| Spanned::new(at, t)),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Both parsers agree: the fast one declines, or gives toml's exact result.
    fn agree(text: &str) -> bool {
        let Some(fast) = parse(text) else {
            return false;
        };
        let slow = toml::from_str::<RouteFile>(text)
            .unwrap_or_else(|e| panic!("fast path accepted what toml rejects: {e}\n{text}"));
        assert_eq!(format!("{fast:#?}"), format!("{slow:#?}"), "\n{text}");
        true
    }

    #[test]
    fn a_rate_deck_takes_the_fast_path() {
        let text = "# generated\n[[rules]]\nname = \"p1\"\npriority = 5\nmatch.to.prefix = [\"48\", \"49\"]\nmatch.to.length = \"8-9\"\nthen.trunks = [\"t2\"]\n\n[[rules]]  # two\n  name = \"p2\"\nmatch.from.exact = [ \"1\" , ]\nmatch.auth = true\nthen.reject.code = 403\nthen.reject.reason = \"No\"\nthen.trunks = []\nmatch.source_port = [5060, \"5070-5080\"]\nenabled = false\n";
        assert!(agree(text));
        assert!(agree(""));
        assert!(agree("# only a comment\n\n"));
    }

    #[test]
    fn anything_else_falls_back() {
        for text in [
            "[trunks.a]\ngateways = [\"sip:a\"]\n",
            "[[rules]]\nname = \"a\\tb\"\n",
            "[[rules]]\nname = 'lit'\n",
            "[[rules]]\n\"name\" = \"q\"\n",
            "[[rules]]\nname = \"a\"\nname = \"b\"\n",
            "[[rules]]\nname = \"a\"\nthen.reject = { code = 403 }\n",
            "[[rules]]\nname = \"a\"\nthen.trunks = [\n\"t\"]\n",
            "[[rules]]\nname = \"a\"\nmatch.to.prefx = [\"1\"]\n",
            "[[rules]]\npriority = 1\n",
            "[[rules]]\nname = \"a\"\nthen.reject.reason = \"x\"\n",
            "[[rules]]\nname = \"a\"\npriority = 012\n",
            "[[rules]]\nname = \"a\"\npriority = 1_000\n",
            "[[rules]]\nname = \"a\"\npriority = 99999999999999999999\n",
            "[[rules]]\nname = \"a\"\npriority = \"1\"\n",
            "[[rules]]\nname = \"a\"\r\n",
            "name = \"a\"\n[[rules]]\nname = \"b\"\n",
            "[[rules]]\nname = \"a\" x\n",
            "[[rules]]\nmatch . to.prefix = [\"1\"]\nname = \"a\"\n",
            "[[ rules ]]\nname = \"a\"\n",
            "[[rules]]\nname. = \"a\"\n",
            "[[rules]]\nname = \"a\"\nthen..trunks = []\n",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
    }

    /// Every `[[rules]]` block of the shipped routes.d, on its own: those
    /// the fast path takes must parse exactly as toml parses them.
    #[test]
    fn the_shipped_rules_agree_when_taken() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../routes.d");
        let (mut blocks, mut taken) = (0, 0);
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue; // rates/, the rate decks
            }
            let text = std::fs::read_to_string(path).unwrap();
            for block in text.split("\n[[rules]]\n").skip(1) {
                blocks += 1;
                taken += usize::from(agree(&format!("[[rules]]\n{block}")));
            }
        }
        assert!(blocks > 10, "{blocks} rule blocks");
        assert!(taken > 0, "no shipped rule takes the fast path");
    }

    /// A key line, with the key's number so a rule can hold each key once
    /// (comments and blank lines have none).
    fn line() -> impl Strategy<Value = (Option<u8>, String)> {
        let s = "\"[a-z0-9+*. ]{0,6}\"";
        let key = |k: u8, st: BoxedStrategy<String>| st.prop_map(move |l| (Some(k), l));
        prop_oneof![
            key(
                1,
                "[+-]?[0-9]{1,4}"
                    .prop_map(|v| format!("priority = {v}"))
                    .boxed()
            ),
            key(
                2,
                prop_oneof![Just("true"), Just("false")]
                    .prop_map(|v| format!("enabled={v}"))
                    .boxed()
            ),
            (0u8..9, prop::collection::vec(s, 0..3)).prop_map(|(k, v)| {
                let (p, f) = (
                    ["to", "from", "ruri"][k as usize / 3],
                    ["prefix", "exact", "domain"][k as usize % 3],
                );
                (Some(10 + k), format!("match.{p}.{f} = [{}]", v.join(", ")))
            }),
            key(3, s.prop_map(|v| format!("match.to.regex = {v}")).boxed()),
            key(
                4,
                prop_oneof![s.boxed(), "[0-9]{1,2}".boxed()]
                    .prop_map(|v| format!("match.to.length = {v}"))
                    .boxed()
            ),
            key(
                5,
                prop::collection::vec(s, 0..3)
                    .prop_map(|v| format!("then.trunks = [{}]", v.join(",")))
                    .boxed()
            ),
            key(
                6,
                "[0-9]{3}"
                    .prop_map(|v| format!("  then.reject.code = {v} # why"))
                    .boxed()
            ),
            key(
                7,
                s.prop_map(|v| format!("then.reject.reason\t= {v}")).boxed()
            ),
            key(8, s.prop_map(|v| format!("then.routing = {v}")).boxed()),
            key(9, s.prop_map(|v| format!("match.schedule = {v}")).boxed()),
            key(
                20,
                prop::collection::vec(prop_oneof![s.boxed(), "[0-9]{1,5}".boxed()], 0..3)
                    .prop_map(|v| format!("match.source_port = [{}]", v.join(", ")))
                    .boxed()
            ),
            Just((Some(21), "match.auth = false".to_owned())),
            Just((None, "# a comment".to_owned())),
            Just((None, String::new())),
        ]
    }

    /// Rules of random keys, each key at most once per rule.
    fn deck() -> impl Strategy<Value = String> {
        let rule =
            ("\"[a-z0-9]{1,4}\"", prop::collection::vec(line(), 0..8)).prop_map(|(name, lines)| {
                let mut seen = std::collections::HashSet::new();
                let mut out = vec!["[[rules]]".to_owned(), format!("name = {name}")];
                for (k, l) in lines {
                    if k.is_none_or(|k| seen.insert(k)) {
                        out.push(l);
                    }
                }
                out.join("\n")
            });
        prop::collection::vec(rule, 0..5).prop_map(|r| r.join("\n") + "\n")
    }

    /// A byte-level mutation: an insertion from characters that matter to
    /// TOML, or a deletion.
    fn mutate(text: &str, at: usize, ch: char, delete: bool) -> String {
        let mut t: Vec<char> = text.chars().collect();
        if t.is_empty() {
            return ch.to_string();
        }
        let at = at % t.len();
        if delete {
            t.remove(at);
        } else {
            t.insert(at, ch);
        }
        t.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_toml_on_generated_decks(text in deck()) {
            // Every generated line is in the fast subset: the fast path must
            // take every generated deck that toml reads (else this compares
            // nothing), and agree with it.
            let valid = toml::from_str::<RouteFile>(&text).is_ok();
            prop_assert!(agree(&text) || !valid, "the fast path declined a valid deck:\n{}", text);
        }

        #[test]
        fn agrees_with_toml_on_mutated_decks(
            text in deck(),
            edits in prop::collection::vec(
                (any::<usize>(), prop::sample::select(
                    vec!['"', '\'', '[', ']', '=', '.', ',', '#', ' ', '\t', '\n', '\r', '\\', '0', '_', '{', 'x', '-', '+', 'e', ':', '\u{7f}', 'é']),
                    any::<bool>()),
                1..4),
        ) {
            let mut text = text;
            for (at, ch, delete) in edits {
                text = mutate(&text, at, ch, delete);
            }
            // A mutated deck may leave the fast subset (then toml reads it);
            // when the fast path takes it, `agree` fails on any difference.
            agree(&text);
        }
    }
}
