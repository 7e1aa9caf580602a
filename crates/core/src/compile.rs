//! Phase two and three: validate the parsed files and compile them into a
//! frozen [`RouteTable`].
//!
//! Every file is parsed, then every definition is checked, and all problems
//! are collected before anything is built: a broken directory yields one
//! complete list of diagnostics and never a half-built table.

// foldhash instead of SipHash: the maps here hold one entry per rule, and
// SipHash was 4% of compiling a 100k-rule table.
use hashbrown::{HashMap, HashTable};
use std::hash::BuildHasher as _;
use std::ops::Range;
use std::sync::Arc;

use ipnet::IpNet;
use toml::Spanned;

use crate::config::{
    DefaultsDef, EditDef, GatewayDef, PartyRewriteDef, RangeDef, RejectDef, RouteFile, RuleDef,
    ScheduleDef, TestDef, TrunkDef, UserMatchDef,
};
use crate::diag::{Diagnostic, Diagnostics, LineIndex, Severity};
use crate::rule::{
    Action, Conds, DomainPat, Field, Gateway, Loc, PartyRewrite, Rewrite, Rewrites, RouteAction,
    Routing, RuleSpec, Trunk, UserConds,
};
use crate::schedule::{self, Schedule};
use crate::table::{Defaults, Expect, RouteTable, TestCase};
use crate::template::Template;
use crate::uri::{Scheme, parse_uri};
use crate::{Error, Query};

/// Headers a rule may never set: rtjson would duplicate or break them.
const PROTECTED_HEADERS: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-length",
    "content-type",
    "max-forwards",
    "route",
    "record-route",
    // compact forms
    "v",
    "f",
    "t",
    "i",
    "m",
    "l",
    "c",
];

pub(crate) const MAX_URI: usize = 1023;

struct File<'s> {
    path: Arc<str>,
    text: &'s str,
    /// Built on first use: while the parser threads run (see
    /// [`Compiler::parse_units`]), or for a diagnostic.
    lines: std::sync::OnceLock<LineIndex<'s>>,
}

impl<'s> File<'s> {
    fn lines(&self) -> &LineIndex<'s> {
        self.lines.get_or_init(|| LineIndex::new(self.text))
    }
}

/// A piece of a file parsed as its own TOML document: a whole file, or a run
/// of `[[rules]]` of a large one. Spans inside it are relative to `base`.
struct Unit<'s> {
    file: usize,
    base: usize,
    text: &'s str,
}

/// Files at least this large are split at `[[rules]]` lines and the pieces
/// parsed on all cores: TOML parsing is most of compiling a large rate deck.
const SPLIT_MIN: usize = 256 * 1024;

/// Splits `text` into about `pieces` runs, each starting at a line that is
/// exactly `[[rules]]` (so every piece is a valid document on its own).
/// Files with multi-line strings are never split: such a line could be text.
fn split_points(text: &str, pieces: usize) -> Vec<usize> {
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

/// The rule names seen so far, for duplicates and for tests' `expect.rule`.
/// The hash table holds 4-byte indexes into `names`: with a million rules,
/// a table of (name, location) pairs was 46 MB of random writes, and this
/// one stays mostly in cache.
struct RuleNames<'a> {
    names: Vec<(&'a str, At)>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<'a> RuleNames<'a> {
    fn with_capacity(n: usize) -> Self {
        RuleNames {
            names: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    /// Adds `name`, or returns where it was first defined.
    fn insert(&mut self, name: &'a str, at: At) -> Result<(), At> {
        let names = &self.names;
        let hasher = &self.hasher;
        match self.table.entry(
            hasher.hash_one(name),
            |&j| names[j as usize].0 == name,
            |&j| hasher.hash_one(names[j as usize].0),
        ) {
            hashbrown::hash_table::Entry::Occupied(o) => Err(names[*o.get() as usize].1.clone()),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(names.len() as u32);
                self.names.push((name, at));
                Ok(())
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.table
            .find(self.hasher.hash_one(name), |&j| {
                self.names[j as usize].0 == name
            })
            .is_some()
    }
}

/// Frees what compiling a large deck leaves behind (the parsed files, the
/// validated rules) on another thread: a million rules take a few hundred
/// milliseconds to free, which need not delay the new table.
fn drop_later<T: Send + 'static>(garbage: T, rules: usize) {
    if rules >= PARALLEL_MIN {
        // If no thread can be started, the closure (and the garbage) drop here.
        let _ = std::thread::Builder::new()
            .name("c4route-free".into())
            .spawn(move || drop(garbage));
    }
}

/// Everything validated, ready to be frozen.
pub(crate) struct Validated {
    pub defaults: Defaults,
    pub trunks: Vec<Trunk>,
    pub schedules: Vec<Schedule>,
    pub rules: Vec<RuleSpec>,
    pub actions: Vec<Action>,
    pub regex_patterns: [Vec<String>; 3],
    pub tests: Vec<TestCase>,
    pub files: Vec<Arc<str>>,
}

/// What [`Compiler::validate`] leaves: the validated rest (`None` when a
/// trunk failed), the rules with their `[[rules]]` locations, and whether the
/// shadow check applies (it does not while a file fails to parse).
struct Outcome {
    rest: Option<Validated>,
    rules: Vec<RuleSpec>,
    rule_ats: Vec<At>,
    check_shadow: bool,
}

/// Warnings found by a check step: where, and what.
type Found = Vec<(At, String)>;

/// `` `name` (file:line:col) `` of a rule, by index.
type LocFn<'a> = dyn Fn(usize) -> String + Sync + 'a;

/// From this many rules on, independent compile steps run on two threads.
const PARALLEL_MIN: usize = 10_000;

pub(crate) struct Compiler<'s> {
    root: Arc<str>,
    files: Vec<File<'s>>,
    units: Vec<Unit<'s>>,
    threads: usize,
    diags: Vec<Diagnostic>,
}

/// A value's location: unit index and byte span within the unit.
type At = (usize, Range<usize>);

impl<'s> Compiler<'s> {
    pub(crate) fn new(root: Arc<str>, sources: &'s [(Arc<str>, String)]) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Self::with_split(root, sources, SPLIT_MIN, threads)
    }

    fn with_split(
        root: Arc<str>,
        sources: &'s [(Arc<str>, String)],
        split_min: usize,
        threads: usize,
    ) -> Self {
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
        Compiler {
            root,
            files: sources
                .iter()
                .map(|(p, t)| File {
                    path: p.clone(),
                    text: t,
                    lines: std::sync::OnceLock::new(),
                })
                .collect(),
            units,
            threads,
            diags: Vec::new(),
        }
    }

    /// Whether steps over `rules` rules run on two threads.
    fn parallel(&self, rules: usize) -> bool {
        self.threads > 1 && rules >= PARALLEL_MIN
    }

    /// The file, absolute span, line and column of a location.
    fn resolve(&self, at: &At) -> (&File<'s>, usize, Range<usize>, usize, usize) {
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

    fn push(&mut self, sev: Severity, at: &At, message: String, note: Option<String>) {
        let (f, _, span, line, col) = self.resolve(at);
        let path = f.path.clone();
        self.diags.push(Diagnostic {
            path,
            span,
            line,
            col,
            severity: sev,
            message,
            note,
        });
    }

    fn err(&mut self, at: &At, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into(), None);
    }

    /// An error when a list that must name something is empty.
    fn non_empty<T>(&mut self, i: usize, list: &Spanned<Vec<T>>, key: &str, advice: &str) {
        if list.get_ref().is_empty() {
            self.err(&(i, list.span()), format!("{key} is empty; {advice}"));
        }
    }

    fn warn(&mut self, at: &At, message: impl Into<String>, note: Option<String>) {
        self.push(Severity::Warning, at, message.into(), note);
    }

    /// A warning about the directory as a whole (it may have no files at all).
    fn warn_global(&mut self, message: String, note: Option<String>) {
        self.diags.push(Diagnostic {
            path: self.root.clone(),
            span: 0..0,
            line: 1,
            col: 1,
            severity: Severity::Warning,
            message,
            note,
        });
    }

    fn loc_text(&self, at: &At) -> String {
        let (f, _, _, line, col) = self.resolve(at);
        format!("{}:{}:{}", f.path, line, col)
    }

    fn loc(&self, at: &At) -> Loc {
        let (_, file, _, line, col) = self.resolve(at);
        Loc {
            file: file as u32,
            line: line as u32,
            col: col as u32,
        }
    }

    /// Parses, validates and compiles; `Err` carries every diagnostic.
    /// `version` is called once the table is about to be frozen (the
    /// caller may compute it on another thread meanwhile).
    pub(crate) fn run(mut self, version: impl FnOnce() -> String) -> Result<RouteTable, Error> {
        let (
            v,
            Outcome {
                rules,
                rule_ats,
                check_shadow,
                ..
            },
        ) = self.checked()?;
        // The shadow check only reads the rules, and freezing only reads
        // them too: on a large table they run side by side.
        let (table, shadow) = if check_shadow && self.parallel(rules.len()) {
            std::thread::scope(|s| {
                let shadow = s.spawn(|| self.shadow_warnings(&rules, &rule_ats));
                let table = RouteTable::freeze(v, &rules, version());
                // The check cannot panic on valid rules; if it did, the
                // table is still right, only without those warnings.
                (table, shadow.join().unwrap_or_default())
            })
        } else {
            let shadow = if check_shadow {
                self.shadow_warnings(&rules, &rule_ats)
            } else {
                Vec::new()
            };
            (RouteTable::freeze(v, &rules, version()), shadow)
        };
        let n = rules.len();
        drop_later(rules, n);
        for (at, msg) in shadow {
            self.warn(&at, msg, None);
        }
        let diags = self.sorted_diags();
        match table {
            Ok(mut t) => {
                t.set_warnings(diags);
                Ok(t)
            }
            Err(m) => Err(Error::Config(Diagnostics(vec![Diagnostic {
                path: "routes.d".into(),
                span: 0..0,
                line: 1,
                col: 1,
                severity: Severity::Error,
                message: m,
                note: None,
            }]))),
        }
    }

    /// Validation only, for the reference evaluator.
    pub(crate) fn validated(mut self) -> Result<Validated, Error> {
        let (mut v, o) = self.checked()?;
        v.rules = o.rules;
        Ok(v)
    }

    /// Validates; on any error, adds the shadow check's warnings and returns
    /// every diagnostic. The returned outcome's `rest` is taken.
    fn checked(&mut self) -> Result<(Validated, Outcome), Error> {
        let mut o = self.validate();
        match o.rest.take() {
            Some(v) if self.error_count() == 0 => Ok((v, o)),
            _ => {
                self.push_shadow_warnings(o.check_shadow, &o.rules, &o.rule_ats);
                Err(Error::Config(self.sorted_diags()))
            }
        }
    }

    fn push_shadow_warnings(&mut self, check: bool, rules: &[RuleSpec], ats: &[At]) {
        if check {
            for (at, msg) in self.shadow_warnings(rules, ats) {
                self.warn(&at, msg, None);
            }
        }
    }

    fn sorted_diags(&mut self) -> Diagnostics {
        let mut diags = Diagnostics(std::mem::take(&mut self.diags));
        diags.sort();
        diags
    }

    /// Everything but the shadow check, which [`Compiler::run`] overlaps
    /// with freezing the table.
    fn validate(&mut self) -> Outcome {
        let mut parsed: Vec<(usize, RouteFile)> = Vec::new();
        let mut parse_failed = false;
        for (i, result) in self.parse_units().into_iter().enumerate() {
            match result {
                Ok(f) => parsed.push((i, f)),
                Err(e) => {
                    parse_failed = true;
                    let span = e.span().unwrap_or(0..0);
                    let msg = e.message().trim().replace('\n', " ");
                    self.err(&(i, span), msg);
                }
            }
        }

        // [defaults]: at most once.
        let mut defaults_def: Option<(usize, &Spanned<DefaultsDef>)> = None;
        for (i, f) in &parsed {
            if let Some(d) = &f.defaults {
                if let Some((j, first)) = defaults_def {
                    let note = format!("first defined at {}", self.loc_text(&(j, first.span())));
                    self.push(
                        Severity::Error,
                        &(*i, d.span()),
                        "[defaults] is defined twice; it may appear once across all files".into(),
                        Some(note),
                    );
                } else {
                    defaults_def = Some((*i, d));
                }
            }
        }
        let defaults = self.defaults(defaults_def);

        // Schedules and trunks: names unique across files.
        let mut schedule_ids: HashMap<&str, (u32, At)> = HashMap::new();
        let mut schedules = Vec::new();
        let mut trunk_ids: HashMap<&str, (u32, At)> = HashMap::new();
        let mut trunks = Vec::new();
        let mut trunk_ats = Vec::new();
        for (i, f) in &parsed {
            for (name, def) in &f.schedules {
                let at = (*i, name.span());
                if let Some((_, first)) = schedule_ids.get(name.get_ref().as_str()) {
                    let note = format!("first defined at {}", self.loc_text(first));
                    self.push(
                        Severity::Error,
                        &at,
                        format!("schedule `{}` is defined twice", name.get_ref()),
                        Some(note),
                    );
                    continue;
                }
                let s = self.schedule(*i, def, &defaults);
                schedule_ids.insert(name.get_ref(), (schedules.len() as u32, at));
                schedules.push(s);
            }
            for (name, def) in &f.trunks {
                let at = (*i, name.span());
                if let Some((_, first)) = trunk_ids.get(name.get_ref().as_str()) {
                    let note = format!("first defined at {}", self.loc_text(first));
                    self.push(
                        Severity::Error,
                        &at,
                        format!("trunk `{}` is defined twice", name.get_ref()),
                        Some(note),
                    );
                    continue;
                }
                let t = self.trunk(*i, name.get_ref(), def, &defaults);
                trunk_ids.insert(name.get_ref(), (trunks.len() as u32, at.clone()));
                trunks.push(t);
                trunk_ats.push(at);
            }
        }
        // Trunk ids index `trunks` with failed trunks still in place (`None`).
        let trunks_ok = trunks.iter().all(Option::is_some);

        // Rules.
        let mut ctx = RuleCtx {
            trunk_ids: &trunk_ids,
            schedule_ids: &schedule_ids,
            defaults: &defaults,
            trunks: &trunks,
            parse_failed,
            regex_patterns: Default::default(),
            regex_ids: Default::default(),
            actions: Vec::new(),
            action_ids: HashMap::new(),
            used_trunks: vec![false; trunks.len()],
            used_schedules: vec![false; schedules.len()],
        };
        let n_rules = parsed.iter().map(|(_, f)| f.rules.len()).sum();
        let mut rules = Vec::with_capacity(n_rules);
        let mut rule_ats: Vec<At> = Vec::with_capacity(n_rules);
        let mut rule_names = RuleNames::with_capacity(n_rules);
        for (i, f) in &parsed {
            for r in &f.rules {
                let name = r.get_ref().name.get_ref();
                let at = (*i, r.get_ref().name.span());
                if let Err(first) = rule_names.insert(name, at.clone()) {
                    let note = format!("first defined at {}", self.loc_text(&first));
                    self.push(
                        Severity::Error,
                        &at,
                        format!("rule `{name}` is defined twice"),
                        Some(note),
                    );
                    continue;
                }
                if let Some(spec) = self.rule(*i, r, &mut ctx) {
                    rules.push(spec);
                    rule_ats.push((*i, r.span()));
                }
            }
        }

        // Tests.
        let mut tests = Vec::new();
        for (i, f) in &parsed {
            for t in &f.tests {
                if let Some(tc) = self.test(*i, t, &rule_names) {
                    tests.push(tc);
                }
            }
        }

        // Warnings that need the whole picture.
        if !parse_failed {
            for (k, used) in ctx.used_trunks.iter().enumerate() {
                if let (false, Some(t)) = (*used, &trunks[k]) {
                    let at = trunk_ats[k].clone();
                    self.warn(
                        &at,
                        format!("trunk `{}` is not used by any rule", t.name),
                        None,
                    );
                }
            }
            let mut unused: Vec<(&str, At)> = schedule_ids
                .iter()
                .filter(|(_, (id, _))| !ctx.used_schedules[*id as usize])
                .map(|(n, (_, at))| (*n, at.clone()))
                .collect();
            unused.sort_by_key(|a| (a.1.0, a.1.1.start));
            for (n, at) in unused {
                self.warn(&at, format!("schedule `{n}` is not used by any rule"), None);
            }
            if rules.is_empty() && self.error_count() == 0 {
                self.warn_global(
                    format!(
                        "routes.d has no enabled rules: every query gets the no-match answer ({} {})",
                        defaults.no_match.0, defaults.no_match.1
                    ),
                    None,
                );
            }
        }
        let actions = std::mem::take(&mut ctx.actions);
        let regex_patterns = std::mem::take(&mut ctx.regex_patterns);
        // What borrows the parsed files goes first (see drop_later below).
        drop(ctx);
        drop((rule_names, trunk_ids, schedule_ids));
        let check_shadow = !parse_failed;
        if !trunks_ok {
            return Outcome {
                rest: None,
                rules,
                rule_ats,
                check_shadow,
            };
        }
        let trunks: Vec<Trunk> = trunks.into_iter().flatten().collect();
        // Schedule ids, like trunk ids, index the list with failures in place;
        // a failed schedule is an error, so ids only survive when all are kept.
        let schedules: Vec<Schedule> = schedules.into_iter().flatten().collect();
        let files = self.files.iter().map(|f| f.path.clone()).collect();
        drop_later(parsed, n_rules);
        Outcome {
            rest: Some(Validated {
                defaults,
                trunks,
                schedules,
                rules: Vec::new(),
                actions,
                regex_patterns,
                tests,
                files,
            }),
            rules,
            rule_ats,
            check_shadow,
        }
    }

    /// Rules that can never win, and ties that only declaration order breaks,
    /// as (location, message) in a fixed order. Linear in the number of
    /// rules: identical conditions are grouped by hash, and catch-all rules
    /// are compared with every other rule. On a large table the tie check
    /// runs on a second thread.
    fn shadow_warnings(&self, rules: &[RuleSpec], ats: &[At]) -> Found {
        let loc = |k: usize| format!("`{}` ({})", rules[k].name, self.loc_text(&ats[k]));
        let (mut out, ties) = if self.parallel(rules.len()) {
            std::thread::scope(|s| {
                let ties = s.spawn(|| Self::ties(rules, &loc));
                let out = Self::identical(rules, ats, &loc);
                // A panic in the tie check is a bug; report no ties rather
                // than fail the build.
                (out, ties.join().unwrap_or_default())
            })
        } else {
            (Self::identical(rules, ats, &loc), Self::ties(rules, &loc))
        };
        out.extend(ties.into_iter().map(|(k, m)| (ats[k].clone(), m)));
        out.extend(Self::covered(rules, ats, &loc));
        out.extend(Self::behind_catch_all(rules, ats, &loc));
        out
    }

    /// Step 1, identical conditions: only the best (priority, then declaration) can win.
    fn identical(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        // Both groupings below keep rule indexes only (8 bytes a slot) and
        // rebuild keys from the rules: a map holding the keys themselves
        // wrote 200 bytes per rule of fresh memory, a quarter of compiling
        // a 1M-rule deck.
        let hasher = hashbrown::DefaultHashBuilder::default();
        let mut first: HashTable<usize> = HashTable::with_capacity(rules.len());
        for (k, r) in rules.iter().enumerate() {
            let hash = hasher.hash_one(&r.conds);
            match first.entry(
                hash,
                |&j| rules[j].conds == r.conds,
                |&j| hasher.hash_one(&rules[j].conds),
            ) {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(k);
                }
                hashbrown::hash_table::Entry::Occupied(mut slot) => {
                    let j = *slot.get();
                    let (winner, loser) = if rules[k].priority < rules[j].priority {
                        (k, j)
                    } else {
                        (j, k)
                    };
                    let msg = if rules[winner].priority == rules[loser].priority {
                        format!(
                            "rule `{}` can never win: it has the same conditions and priority as {}, declared earlier (a tie broken only by declaration order)",
                            rules[loser].name,
                            loc(winner)
                        )
                    } else {
                        format!(
                            "rule `{}` is shadowed by {}: same conditions, lower priority number",
                            rules[loser].name,
                            loc(winner)
                        )
                    };
                    if winner == k {
                        *slot.get_mut() = k;
                    }
                    let at = ats[loser].clone();
                    out.push((at, msg));
                }
            }
        }
        out
    }

    /// Step 2, same priority and equally specific conditions, but not
    /// identical: when both match, only declaration order decides. Returns rule indexes.
    fn ties(rules: &[RuleSpec], loc: &LocFn<'_>) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let hasher = hashbrown::DefaultHashBuilder::default();
        /// prefix, exact, regex and length: what ranks a user condition.
        type UserRank<'a> = (
            Option<&'a [Box<str>]>,
            Option<&'a [Box<str>]>,
            Option<u32>,
            Option<(u32, u32)>,
        );
        #[derive(PartialEq, Eq, Hash)]
        struct RankKey<'a> {
            priority: i64,
            users: [UserRank<'a>; 3],
            source: Option<&'a [IpNet]>,
        }
        fn rank_key(r: &RuleSpec) -> RankKey<'_> {
            let u = &r.conds.users;
            RankKey {
                priority: r.priority,
                users: [0, 1, 2].map(|f| {
                    (
                        u[f].prefix.as_deref(),
                        u[f].exact.as_deref(),
                        u[f].regex,
                        u[f].length,
                    )
                }),
                source: r.conds.source.as_deref(),
            }
        }
        let mut groups: HashTable<usize> = HashTable::with_capacity(rules.len());
        for (k, r) in rules.iter().enumerate() {
            let key = rank_key(r);
            let hash = hasher.hash_one(&key);
            match groups.entry(
                hash,
                |&j| rank_key(&rules[j]) == key,
                |&j| hasher.hash_one(rank_key(&rules[j])),
            ) {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(k);
                }
                hashbrown::hash_table::Entry::Occupied(o) => {
                    let j = *o.get();
                    if rules[j].conds != r.conds && !rules[j].conds.disjoint(&r.conds) {
                        let msg = format!(
                            "rule `{}` ties with {}: same priority and equally specific conditions, so when both match only declaration order decides; give one a lower priority number",
                            r.name,
                            loc(j)
                        );
                        let at = k;
                        out.push((at, msg));
                    }
                }
            }
        }
        out
    }

    /// Step 3: a rule whose only condition is `to.prefix` matches every call to those
    /// prefixes: a rule at a higher priority number whose every `to` prefix or
    /// exact value it covers can never win.
    fn covered(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        let only_to_prefix = |c: &Conds| {
            let to = &c.users[Field::To as usize];
            to.prefix.is_some()
                && to.exact.is_none()
                && to.regex.is_none()
                && to.length.is_none()
                && to.domain.is_none()
                && c.users[Field::From as usize].is_empty()
                && c.users[Field::Ruri as usize].is_empty()
                && c.source.is_none()
                && c.ports.is_none()
                && c.transports == 0
                && c.auth.is_none()
                && c.schedule.is_none()
        };
        // Only possible when some prefix-only rule ranks before some other rule (a rate
        // deck at one priority skips building the map).
        let lowest_prefix_only = rules
            .iter()
            .filter(|r| only_to_prefix(&r.conds))
            .map(|r| r.priority)
            .min();
        let highest = rules.iter().map(|r| r.priority).max();
        let mut cover: HashMap<&str, (i64, usize)> = HashMap::new();
        for (k, r) in rules.iter().enumerate() {
            if lowest_prefix_only >= highest {
                break;
            }
            if only_to_prefix(&r.conds) {
                for p in r.conds.users[Field::To as usize].prefix.iter().flatten() {
                    let e = cover.entry(&**p).or_insert((r.priority, k));
                    *e = (*e).min((r.priority, k));
                }
            }
        }
        let lowest = cover.values().map(|v| v.0).min();
        for (k, r) in rules.iter().enumerate() {
            let Some(lowest) = lowest else { break };
            if r.priority <= lowest {
                continue;
            }
            let to = &r.conds.users[Field::To as usize];
            let values: Vec<&str> = to
                .prefix
                .iter()
                .chain(to.exact.iter())
                .flatten()
                .map(|v| &**v)
                .collect();
            if values.is_empty() {
                continue;
            }
            let mut by = None;
            let all_covered = values.iter().all(|v| {
                let hit = (0..=v.len())
                    .filter(|&n| v.is_char_boundary(n))
                    .filter_map(|n| cover.get(&v[..n]))
                    .filter(|(prio, _)| *prio < r.priority)
                    .min();
                by = by.or(hit.map(|h| h.1));
                hit.is_some()
            });
            if let (true, Some(j)) = (all_covered, by) {
                let msg = format!(
                    "rule `{}` can never win: every number it matches also matches {}, which has only a to.prefix condition and a lower priority number",
                    r.name,
                    loc(j)
                );
                let at = ats[k].clone();
                out.push((at, msg));
            }
        }

        out
    }

    /// Step 4: a rule without conditions matches everything: rules it outranks never win.
    fn behind_catch_all(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        let Some(catch_all) = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.conds.is_empty())
            .min_by_key(|(k, r)| (r.priority, *k))
            .map(|(k, _)| k)
        else {
            return out;
        };
        let ca = &rules[catch_all];
        for (k, r) in rules.iter().enumerate() {
            if k == catch_all || r.conds.is_empty() {
                continue;
            }
            let shadowed = r.priority > ca.priority
                || (r.priority == ca.priority && k > catch_all && !r.conds.can_outrank_catch_all());
            if shadowed {
                let msg = format!(
                    "rule `{}` can never win: {} matches every call and ranks before it",
                    r.name,
                    loc(catch_all)
                );
                let at = ats[k].clone();
                out.push((at, msg));
            }
        }
        out
    }

    fn u32_field(&mut self, file: usize, v: &Option<Spanned<i64>>, what: &str) -> Option<u32> {
        let v = v.as_ref()?;
        match u32::try_from(*v.get_ref()) {
            Ok(x) => Some(x),
            Err(_) => {
                self.err(
                    &(file, v.span()),
                    format!(
                        "{what} must be an integer in 0..=4294967295, found {}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn routing(&mut self, file: usize, v: &Spanned<String>) -> Option<Routing> {
        match v.get_ref().as_str() {
            "serial" => Some(Routing::Serial),
            "parallel" => Some(Routing::Parallel),
            other => {
                self.err(
                    &(file, v.span()),
                    format!("routing must be \"serial\" or \"parallel\", found {other:?}"),
                );
                None
            }
        }
    }

    fn reject(&mut self, file: usize, r: &Spanned<RejectDef>) -> Option<(u16, Box<str>)> {
        let def = r.get_ref();
        let code = *def.code.get_ref();
        if !(400..=699).contains(&code) {
            self.err(
                &(file, def.code.span()),
                format!("reject code must be a SIP final failure code in 400..=699, found {code}"),
            );
            return None;
        }
        let reason = match &def.reason {
            Some(s) => {
                let t = s.get_ref().trim();
                if t.is_empty() || t.contains(['\r', '\n', '\0']) {
                    self.err(
                        &(file, s.span()),
                        "reject reason must be a non-empty single line of text",
                    );
                    return None;
                }
                t.into()
            }
            None => default_reason(code as u16).into(),
        };
        Some((code as u16, reason))
    }

    fn defaults(&mut self, def: Option<(usize, &Spanned<DefaultsDef>)>) -> Defaults {
        let mut d = Defaults::default();
        let Some((i, def)) = def else { return d };
        let def = def.get_ref();
        if let Some(r) = &def.routing {
            d.routing = self.routing(i, r).unwrap_or(Routing::Serial);
        }
        d.fr_timer = self.u32_field(i, &def.fr_timer, "fr_timer").unwrap_or(0);
        d.fr_inv_timer = self
            .u32_field(i, &def.fr_inv_timer, "fr_inv_timer")
            .unwrap_or(0);
        d.branch_flags = self
            .u32_field(i, &def.branch_flags, "branch_flags")
            .unwrap_or(0);
        if let Some(m) = &def.max_routes {
            let v = *m.get_ref();
            if (1..=31).contains(&v) {
                d.max_routes = v as u32;
                if v > 11 {
                    self.warn(
                        &(i, m.span()),
                        format!("max_routes = {v} exceeds what Kamailio's default max_branches (12) allows with an async query (11)"),
                        None,
                    );
                }
            } else {
                self.err(
                    &(i, m.span()),
                    format!(
                        "max_routes must be in 1..=31 (Kamailio's max_branches limit), found {v}"
                    ),
                );
            }
        }
        if let Some(nm) = &def.no_match
            && let Some(r) = self.reject(i, nm)
        {
            d.no_match = r;
        }
        if let Some(tz) = &def.timezone {
            match schedule::time_zone(tz.get_ref()) {
                Ok(z) => d.timezone = z,
                Err(e) => self.err(&(i, tz.span()), e),
            }
        }
        d
    }

    fn schedule(
        &mut self,
        i: usize,
        def: &Spanned<ScheduleDef>,
        defaults: &Defaults,
    ) -> Option<Schedule> {
        let def = def.get_ref();
        let mut ok = true;
        let tz = match &def.timezone {
            Some(t) => match schedule::time_zone(t.get_ref()) {
                Ok(z) => z,
                Err(e) => {
                    self.err(&(i, t.span()), e);
                    ok = false;
                    defaults.timezone.clone()
                }
            },
            None => defaults.timezone.clone(),
        };
        let days = self.parse_each(i, &def.days, schedule::parse_days);
        let hours = self.parse_each(i, &def.hours, schedule::parse_hours);
        let except = self.parse_each(i, &def.except, schedule::parse_date);
        let (Some(days), Some(hours), Some(except)) = (days, hours, except) else {
            return None;
        };
        let days = days.into_iter().fold(0u8, |m, d| m | d);
        ok.then(|| Schedule::new(tz, days, hours, except))
    }

    /// Parses every string of an optional list; each bad one is an error at its
    /// own position. `None` if any failed.
    fn parse_each<T>(
        &mut self,
        i: usize,
        list: &Option<Vec<Spanned<String>>>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in list.iter().flatten() {
            match parse(item.get_ref()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.err(&(i, item.span()), e);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn template(&mut self, i: usize, s: &Spanned<String>, allow_trunk: bool) -> Option<Template> {
        match Template::parse(s.get_ref(), allow_trunk) {
            Ok(t) => Some(t),
            Err(e) => {
                let start = s.span().start + 1 + e.offset;
                self.err(&(i, start..start + 1), e.message);
                None
            }
        }
    }

    fn header(&mut self, i: usize, s: &Spanned<String>) -> Option<Template> {
        let text = s.get_ref();
        let at = (i, s.span());
        let Some((name, value)) = text.split_once(':') else {
            self.err(
                &at,
                format!("header {text:?} must be a complete `Name: value` line"),
            );
            return None;
        };
        if !crate::uri::is_token(name) {
            self.err(
                &at,
                format!("header name {name:?} must be a SIP token (letters, digits, `-`, `.`, `!`, `%`, `*`, `_`, `+`, `` ` ``, `'`, `~`) with no spaces"),
            );
            return None;
        }
        if PROTECTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            self.err(
                &at,
                format!("header `{name}` may not be set by a route: Kamailio manages Via, From, To, Call-ID, CSeq, Contact, Content-Length, Content-Type, Max-Forwards, Route and Record-Route (use rewrite for From and To)"),
            );
            return None;
        }
        if value.contains(['\r', '\n', '\0']) {
            self.err(&at, "header value may not contain CR, LF or NUL");
            return None;
        }
        let t = self.template(i, s, true)?;
        Some(t)
    }

    fn sip_uri(&mut self, at: &At, uri: &str, what: &str) -> Option<(Box<str>, Box<str>)> {
        let Some(p) = parse_uri(uri) else {
            self.err(at, format!("{what} {uri:?} is not a SIP URI; expected something like \"sip:198.51.100.10:5060\""));
            return None;
        };
        if p.scheme == Scheme::Tel || p.scheme_text.is_empty() {
            self.err(at, format!("{what} {uri:?} must start with sip: or sips:"));
            return None;
        }
        if !p.user_raw.is_empty() {
            self.err(at, format!("{what} {uri:?} must not have a user part: the call's number is inserted as the user"));
            return None;
        }
        if uri.len() > MAX_URI || uri.contains(|c: char| c.is_whitespace() || c.is_control()) {
            self.err(
                at,
                format!(
                    "{what} must be at most {MAX_URI} bytes without spaces or control characters"
                ),
            );
            return None;
        }
        Some((p.scheme_text.into(), p.host_rest.into()))
    }

    fn trunk(
        &mut self,
        i: usize,
        name: &str,
        def: &Spanned<TrunkDef>,
        defaults: &Defaults,
    ) -> Option<Trunk> {
        let d = def.get_ref();
        let errors_before = self.error_count();
        let mut gateways = Vec::new();
        if d.gateways.get_ref().is_empty() {
            self.err(
                &(i, d.gateways.span()),
                format!("trunk `{name}` has no gateways; list at least one"),
            );
        }
        for g in d.gateways.get_ref() {
            let at = (i, g.span());
            let GatewayDef {
                uri,
                priority,
                weight,
                enabled,
            } = g.get_ref();
            let parts = self.sip_uri(&at, uri, "gateway");
            let priority = u16::try_from(*priority).map_err(|_| {
                self.err(
                    &at,
                    format!("gateway priority must be in 0..=65535, found {priority}"),
                );
            });
            let weight = u32::try_from(*weight).map_err(|_| {
                self.err(
                    &at,
                    format!("gateway weight must be in 0..=4294967295, found {weight}"),
                );
            });
            if let (Some((scheme, host_rest)), Ok(priority), Ok(weight)) = (parts, priority, weight)
                && *enabled
            {
                gateways.push(Gateway {
                    uri: uri.as_str().into(),
                    scheme,
                    host_rest,
                    priority,
                    weight,
                });
            }
        }
        if gateways.is_empty()
            && !d.gateways.get_ref().is_empty()
            && self.error_count() == errors_before
        {
            self.warn(
                &(i, d.gateways.span()),
                format!("every gateway of trunk `{name}` is disabled: rules using only this trunk answer 503"),
                None,
            );
        }
        gateways.sort_by_key(|g| g.priority);
        let strip = match &d.strip {
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(v) => v,
                Err(_) => {
                    self.err(
                        &(i, s.span()),
                        format!(
                            "strip must be a number of characters >= 0, found {}",
                            s.get_ref()
                        ),
                    );
                    0
                }
            },
            None => 0,
        };
        let prefix = match &d.prefix {
            Some(p)
                if p.get_ref()
                    .contains(|c: char| c.is_whitespace() || c.is_control() || c == '@') =>
            {
                self.err(
                    &(i, p.span()),
                    "trunk prefix may not contain spaces, control characters or `@`",
                );
                Box::from("")
            }
            Some(p) => p.get_ref().as_str().into(),
            None => "".into(),
        };
        let proxy = match &d.proxy {
            Some(p) if !p.get_ref().is_empty() => {
                self.sip_uri(&(i, p.span()), p.get_ref(), "proxy");
                Some(p.get_ref().as_str().into())
            }
            _ => None,
        };
        let socket = match &d.socket {
            Some(s) if !s.get_ref().is_empty() => {
                if let Err(e) = check_socket(s.get_ref()) {
                    self.err(&(i, s.span()), e);
                }
                s.get_ref().as_str().into()
            }
            _ => "".into(),
        };
        let fr_timer = self
            .u32_field(i, &d.fr_timer, "fr_timer")
            .unwrap_or(defaults.fr_timer);
        let fr_inv_timer = self
            .u32_field(i, &d.fr_inv_timer, "fr_inv_timer")
            .unwrap_or(defaults.fr_inv_timer);
        let branch_flags = self
            .u32_field(i, &d.branch_flags, "branch_flags")
            .unwrap_or(defaults.branch_flags);
        let mut headers = Vec::new();
        for h in d.headers.iter().flatten() {
            if let Some(t) = self.header(i, h) {
                headers.push(t);
            }
        }
        (self.error_count() == errors_before).then(|| Trunk {
            name: name.into(),
            gateways: gateways.into(),
            strip,
            prefix,
            proxy,
            socket,
            fr_timer,
            fr_inv_timer,
            branch_flags,
            headers: headers.into(),
        })
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    fn user_conds(
        &mut self,
        i: usize,
        field: Field,
        def: Option<&UserMatchDef>,
        ctx: &mut RuleCtx<'_>,
    ) -> UserConds {
        let mut u = UserConds::default();
        let Some(def) = def else { return u };
        let strings = |v: &Spanned<Vec<Spanned<String>>>| -> Box<[Box<str>]> {
            v.get_ref()
                .iter()
                .map(|s| Box::from(s.get_ref().as_str()))
                .collect()
        };
        if let Some(p) = &def.prefix {
            let key = format!("match.{}.prefix", field.name());
            self.non_empty(i, p, &key, "list at least one prefix or remove it");
            u.prefix = Some(strings(p));
        }
        if let Some(p) = &def.exact {
            let key = format!("match.{}.exact", field.name());
            self.non_empty(i, p, &key, "list at least one value or remove it");
            u.exact = Some(strings(p));
        }
        if let Some(r) = &def.regex {
            match regex::Regex::new(r.get_ref()) {
                Ok(_) => {
                    let pats = &mut ctx.regex_patterns[field as usize];
                    let ids = &mut ctx.regex_ids[field as usize];
                    let id = *ids.entry(r.get_ref().clone()).or_insert_with(|| {
                        pats.push(r.get_ref().clone());
                        (pats.len() - 1) as u32
                    });
                    u.regex = Some(id);
                }
                Err(e) => self.err(&(i, r.span()), regex_error(&e)),
            }
        }
        if let Some(l) = &def.length {
            match parse_range::<u32>(l.get_ref(), "length", "0..=4294967295") {
                Ok(x) => u.length = Some(x),
                Err(e) => self.err(&(i, l.span()), e),
            }
        }
        if let Some(d) = &def.domain {
            let mut pats = Vec::new();
            for s in d.get_ref() {
                let v = s.get_ref().trim().to_ascii_lowercase();
                if let Some(rest) = v.strip_prefix("*.") {
                    if rest.is_empty() || rest.contains('*') {
                        self.err(&(i, s.span()), format!("invalid domain pattern {:?}; expected \"example.com\" or \"*.example.com\"", s.get_ref()));
                    }
                    pats.push(DomainPat::Suffix(format!(".{rest}").into()));
                } else if v.is_empty() || v.contains('*') {
                    self.err(&(i, s.span()), format!("invalid domain pattern {:?}; expected \"example.com\" or \"*.example.com\"", s.get_ref()));
                } else {
                    pats.push(DomainPat::Exact(v.into()));
                }
            }
            u.domain = Some(pats.into());
        }
        u
    }

    fn rule(&mut self, i: usize, r: &Spanned<RuleDef>, ctx: &mut RuleCtx<'_>) -> Option<RuleSpec> {
        let def = r.get_ref();
        let name = def.name.get_ref();
        let rule_at = (i, r.span());
        let errors_before = self.error_count();
        if name.trim().is_empty() || name.contains(|c: char| c.is_control()) {
            self.err(
                &(i, def.name.span()),
                "rule name must be non-empty text without control characters",
            );
        }
        let priority = def.priority.as_ref().map_or(100, |p| *p.get_ref());
        let m = &def.matches;
        let mut conds = Conds::default();
        if let Some(src) = &m.source {
            let mut nets = Vec::new();
            for s in src.get_ref() {
                match parse_net(s.get_ref()) {
                    Ok(n) => nets.push(n),
                    Err(e) => self.err(&(i, s.span()), e),
                }
            }
            self.non_empty(
                i,
                src,
                "match.source",
                "list at least one network or remove it",
            );
            conds.source = Some(nets.into());
        }
        if let Some(ports) = &m.source_port {
            let mut out = Vec::new();
            for p in ports.get_ref() {
                match parse_range::<u16>(p.get_ref(), "port", "0..=65535") {
                    Ok(x) => out.push(x),
                    Err(e) => self.err(&(i, p.span()), e),
                }
            }
            self.non_empty(
                i,
                ports,
                "match.source_port",
                "list at least one port or remove it",
            );
            conds.ports = Some(out.into());
        }
        if let Some(ts) = &m.transport {
            for t in ts.get_ref() {
                match crate::candidate::transport::bit(t.get_ref()) {
                    Some(b) => conds.transports |= b,
                    None => self.err(
                        &(i, t.span()),
                        format!(
                            "unknown transport {:?}; expected one of udp, tcp, tls, ws, wss, sctp",
                            t.get_ref()
                        ),
                    ),
                }
            }
            self.non_empty(
                i,
                ts,
                "match.transport",
                "list at least one transport or remove it",
            );
        }
        conds.auth = m.auth.as_ref().map(|a| *a.get_ref());
        conds.users[Field::To as usize] = self.user_conds(i, Field::To, m.to.as_deref(), ctx);
        conds.users[Field::From as usize] = self.user_conds(i, Field::From, m.from.as_deref(), ctx);
        conds.users[Field::Ruri as usize] = self.user_conds(i, Field::Ruri, m.ruri.as_deref(), ctx);
        if let Some(s) = &m.schedule
            && let Some(id) = self.lookup(i, "schedule", ctx.schedule_ids, s, ctx.parse_failed)
        {
            conds.schedule = Some(id);
            ctx.used_schedules[id as usize] = true;
        }
        let action = match &def.then {
            None => {
                self.err(&rule_at, format!("rule `{name}` has no `then`; expected then.trunks = [...] or then.reject = {{ code = ... }}"));
                None
            }
            Some(then) => self.action(i, name, then, ctx),
        };
        if def.enabled == Some(false) {
            return None;
        }
        if self.error_count() != errors_before {
            return None;
        }
        Some(RuleSpec {
            name: name.as_str().into(),
            priority,
            conds,
            action: action?,
            loc: self.loc(&rule_at),
        })
    }

    fn rewrite(&mut self, i: usize, def: &Option<Spanned<EditDef>>, what: &str) -> Option<Rewrite> {
        let def = def.as_ref()?;
        let at = (i, def.span());
        match def.get_ref() {
            EditDef::Template(t) => {
                let s = Spanned::new(def.span(), t.clone());
                self.template(i, &s, false).map(Rewrite::Template)
            }
            EditDef::Table(t) => {
                let edit = t.strip.is_some() || t.prefix.is_some() || t.suffix.is_some();
                let re = t.regex.is_some() || t.replace.is_some();
                if edit && re {
                    self.err(&at, format!("rewrite of {what}: use either strip/prefix/suffix or regex/replace, not both"));
                    return None;
                }
                if re {
                    let (Some(pattern), Some(replace)) = (&t.regex, &t.replace) else {
                        self.err(
                            &at,
                            format!("rewrite of {what}: regex and replace go together"),
                        );
                        return None;
                    };
                    return match regex::Regex::new(pattern) {
                        Ok(re) => Some(Rewrite::Regex {
                            re,
                            replace: replace.as_str().into(),
                        }),
                        Err(e) => {
                            self.err(&at, regex_error(&e));
                            None
                        }
                    };
                }
                if !edit {
                    self.err(&at, format!("rewrite of {what} is empty; expected strip/prefix/suffix or regex/replace"));
                    return None;
                }
                let strip = match u32::try_from(t.strip.unwrap_or(0)) {
                    Ok(s) => s,
                    Err(_) => {
                        self.err(&at, "strip must be >= 0");
                        return None;
                    }
                };
                Some(Rewrite::Edit {
                    strip,
                    prefix: t.prefix.clone().unwrap_or_default().into(),
                    suffix: t.suffix.clone().unwrap_or_default().into(),
                })
            }
        }
    }

    /// Resolves a trunk or schedule name; an unknown one is an error listing
    /// the defined names (unless a file failed to parse, which may define it).
    fn lookup(
        &mut self,
        i: usize,
        kind: &str,
        ids: &HashMap<&str, (u32, At)>,
        name: &Spanned<String>,
        parse_failed: bool,
    ) -> Option<u32> {
        if let Some((id, _)) = ids.get(name.get_ref().as_str()) {
            return Some(*id);
        }
        if !parse_failed {
            let mut known: Vec<&str> = ids.keys().copied().collect();
            known.sort();
            self.err(
                &(i, name.span()),
                format!(
                    "unknown {kind} `{}`; defined {kind}s: {}",
                    name.get_ref(),
                    list_or_none(&known)
                ),
            );
        }
        None
    }

    fn party_rewrite(
        &mut self,
        i: usize,
        def: Option<&PartyRewriteDef>,
        party: &str,
    ) -> PartyRewrite {
        let Some(p) = def else {
            return PartyRewrite::default();
        };
        PartyRewrite {
            user: self.rewrite(i, &p.user, &format!("{party}.user")),
            display: self.rewrite(i, &p.display, &format!("{party}.display")),
            uri: self.rewrite(i, &p.uri, &format!("{party}.uri")),
        }
    }

    fn action(
        &mut self,
        i: usize,
        name: &str,
        then: &Spanned<crate::config::ThenDef>,
        ctx: &mut RuleCtx<'_>,
    ) -> Option<u32> {
        let t = then.get_ref();
        let at = (i, then.span());
        match (&t.trunks, &t.reject) {
            (Some(trunks), Some(r)) => {
                self.err(&(i, r.span()), format!("rule `{name}` has both then.trunks and then.reject; they are mutually exclusive"));
                // Keep validating both, so every problem shows in one pass.
                self.reject(i, r);
                self.route_action(i, name, then, trunks, ctx);
                None
            }
            (None, None) => {
                self.err(
                    &at,
                    format!(
                        "rule `{name}` needs then.trunks = [...] or then.reject = {{ code = ... }}"
                    ),
                );
                None
            }
            (None, Some(r)) => {
                if t.routing.is_some() || t.rewrite.is_some() || t.headers.is_some() {
                    self.err(&at, format!("rule `{name}` rejects; then.routing, then.rewrite and then.headers only apply to routed calls"));
                }
                let (code, reason) = self.reject(i, r)?;
                let key = format!("R{code}|{reason}");
                Some(ctx.intern(key, || Action::Reject { code, reason }))
            }
            (Some(trunks), None) => self.route_action(i, name, then, trunks, ctx),
        }
    }

    fn route_action(
        &mut self,
        i: usize,
        name: &str,
        then: &Spanned<crate::config::ThenDef>,
        trunks: &Spanned<Vec<Spanned<String>>>,
        ctx: &mut RuleCtx<'_>,
    ) -> Option<u32> {
        let t = then.get_ref();
        let at = (i, then.span());
        let mut ids = Vec::new();
        self.non_empty(i, trunks, "then.trunks", "list at least one trunk");
        for tn in trunks.get_ref() {
            if let Some(id) = self.lookup(i, "trunk", ctx.trunk_ids, tn, ctx.parse_failed) {
                ids.push(id);
                if let Some(u) = ctx.used_trunks.get_mut(id as usize) {
                    *u = true;
                }
            }
        }
        let routing = match &t.routing {
            Some(r) => self.routing(i, r)?,
            None => ctx.defaults.routing,
        };
        let mut rw = Rewrites::default();
        if let Some(r) = &t.rewrite {
            let r = r.get_ref();
            if let Some(ru) = &r.ruri {
                rw.ruri_user = self.rewrite(i, &ru.user, "ruri.user");
            }
            rw.to = self.party_rewrite(i, r.to.as_ref(), "to");
            rw.from = self.party_rewrite(i, r.from.as_ref(), "from");
        }
        let mut headers = Vec::new();
        if let Some(hs) = &t.headers {
            for h in hs.get_ref() {
                if let Some(tpl) = self.header(i, h) {
                    headers.push(tpl);
                }
            }
        }
        if routing == Routing::Parallel {
            if !rw.to.is_empty() || !rw.from.is_empty() || t.headers.is_some() {
                self.err(&at, format!("rule `{name}` routes in parallel, but rtjson applies headers and From/To rewrites only in serial mode; use routing = \"serial\" or remove them"));
            }
            for id in &ids {
                let Some(Some(tr)) = ctx.trunks.get(*id as usize) else {
                    continue;
                };
                if !tr.headers.is_empty()
                    || tr.fr_timer != ctx.defaults.fr_timer
                    || tr.fr_inv_timer != ctx.defaults.fr_inv_timer
                {
                    self.err(&at, format!("rule `{name}` routes in parallel through trunk `{}`, whose headers or timers rtjson applies only in serial mode", tr.name));
                }
            }
        }
        let gw_count: usize = ids
            .iter()
            .map(|id| {
                ctx.trunks
                    .get(*id as usize)
                    .and_then(Option::as_ref)
                    .map_or(0, |t| t.gateways.len())
            })
            .sum();
        if gw_count > ctx.defaults.max_routes as usize {
            self.warn(&at, format!("rule `{name}` can produce {gw_count} routes, more than max_routes = {}; the answer keeps the first {}", ctx.defaults.max_routes, ctx.defaults.max_routes), None);
        }
        let simple =
            rw.ruri_user.is_none() && rw.to.is_empty() && rw.from.is_empty() && headers.is_empty();
        let action = || {
            Action::Route(Box::new(RouteAction {
                trunks: ids.clone().into(),
                routing,
                rewrites: if simple {
                    None
                } else {
                    Some(Box::new(rw.clone()))
                },
                headers: headers.clone().into(),
            }))
        };
        if simple {
            let key = format!("T{}|{:?}", routing.as_str(), ids);
            Some(ctx.intern(key, action))
        } else {
            ctx.actions.push(action());
            Some((ctx.actions.len() - 1) as u32)
        }
    }

    fn test(
        &mut self,
        i: usize,
        t: &Spanned<TestDef>,
        rule_names: &RuleNames<'_>,
    ) -> Option<TestCase> {
        let def = t.get_ref();
        let errors_before = self.error_count();
        let json = match serde_json::to_vec(def.query.get_ref()) {
            Ok(j) => j,
            Err(e) => {
                self.err(
                    &(i, def.query.span()),
                    format!("test query cannot be encoded as JSON: {e}"),
                );
                return None;
            }
        };
        // On a bad query, keep checking the rest of the test.
        let query = match Query::from_json(&json) {
            Ok(q) => q.into_owned(),
            Err(e) => {
                self.err(
                    &(i, def.query.span()),
                    format!("test query is not a valid query: {e}"),
                );
                Query::default()
            }
        };
        let at = match &def.at {
            Some(a) => match parse_time(a.get_ref()) {
                Ok(ts) => Some(ts),
                Err(e) => {
                    self.err(&(i, a.span()), e);
                    None
                }
            },
            None => None,
        };
        let e = def.expect.get_ref();
        if let Some(r) = &e.rule
            && !rule_names.contains(r.get_ref())
        {
            self.err(
                &(i, r.span()),
                format!(
                    "expect.rule names rule `{}`, which is not defined",
                    r.get_ref()
                ),
            );
        }
        if let Some(code) = &e.reject {
            if !(400..=699).contains(code.get_ref()) {
                self.err(
                    &(i, code.span()),
                    format!(
                        "expect.reject must be a SIP code in 400..=699, found {}",
                        code.get_ref()
                    ),
                );
            }
            if e.routes.is_some() || e.ruri.is_some() {
                self.err(
                    &(i, def.expect.span()),
                    "expect.reject cannot be combined with expect.routes or expect.ruri",
                );
            }
        }
        if e.rule.is_none() && e.routes.is_none() && e.ruri.is_none() && e.reject.is_none() {
            self.err(
                &(i, def.expect.span()),
                "expect is empty; expected at least one of rule, routes, ruri, reject",
            );
        }
        if self.error_count() != errors_before {
            return None;
        }
        let (file, _, _, line, _) = self.resolve(&(i, t.span()));
        let path = file.path.clone();
        Some(TestCase {
            name: def.name.get_ref().clone(),
            location: format!("{path}:{line}"),
            query,
            at,
            expect: Expect {
                rule: e.rule.as_ref().map(|r| r.get_ref().clone()),
                routes: e.routes.clone(),
                ruri: e.ruri.clone(),
                reject: e.reject.as_ref().map(|c| *c.get_ref() as u16),
            },
        })
    }
}

struct RuleCtx<'a> {
    trunk_ids: &'a HashMap<&'a str, (u32, At)>,
    schedule_ids: &'a HashMap<&'a str, (u32, At)>,
    defaults: &'a Defaults,
    trunks: &'a [Option<Trunk>],
    parse_failed: bool,
    regex_patterns: [Vec<String>; 3],
    regex_ids: [HashMap<String, u32>; 3],
    actions: Vec<Action>,
    action_ids: HashMap<String, u32>,
    used_trunks: Vec<bool>,
    used_schedules: Vec<bool>,
}

impl RuleCtx<'_> {
    fn intern(&mut self, key: String, make: impl FnOnce() -> Action) -> u32 {
        let actions = &mut self.actions;
        *self.action_ids.entry(key).or_insert_with(|| {
            actions.push(make());
            (actions.len() - 1) as u32
        })
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let detail = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_string();
    format!("invalid regex: {detail}")
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(ip) = t.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    Err(format!(
        "invalid source {s:?}; expected an IP address or a CIDR network like \"10.0.0.0/8\" or \"2001:db8::/32\""
    ))
}

/// An inclusive range from `5060`, `"5060"` or `"5080-5089"`.
fn parse_range<T>(d: &RangeDef, what: &str, bounds: &str) -> Result<(T, T), String>
where
    T: std::str::FromStr + TryFrom<i64> + Ord + Copy + std::fmt::Display,
{
    let num = |s: &str| s.trim().parse::<T>().ok();
    let r = match d {
        RangeDef::Int(n) => T::try_from(*n).ok().map(|n| (n, n)),
        RangeDef::Text(s) => match s.split_once('-') {
            Some((a, b)) => num(a).zip(num(b)),
            None => num(s).map(|n| (n, n)),
        },
    };
    match r {
        Some((a, b)) if a <= b => Ok((a, b)),
        _ => Err(format!(
            "invalid {what} {d}; expected a number in {bounds} or a range \"low-high\" with low <= high"
        )),
    }
}

fn check_socket(s: &str) -> Result<(), String> {
    let err = || {
        format!(
            "invalid socket {s:?}; expected \"proto:ip:port\" matching a Kamailio listen socket, such as \"udp:192.0.2.20:5060\""
        )
    };
    let (proto, rest) = s.split_once(':').ok_or_else(err)?;
    if crate::candidate::transport::bit(proto).is_none() {
        return Err(err());
    }
    let (ip, port) = rest.rsplit_once(':').ok_or_else(err)?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    ip.parse::<std::net::IpAddr>().map_err(|_| err())?;
    port.parse::<u16>().map_err(|_| err())?;
    Ok(())
}

/// Parses an RFC 3339 instant such as `2026-12-24T09:00:00Z`.
pub(crate) fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .map(std::time::SystemTime::from)
        .map_err(|e| {
            format!("invalid time {s:?}: {e}; expected RFC 3339 like \"2026-12-24T09:00:00Z\"")
        })
}

/// The standard reason phrase of a SIP failure code.
pub(crate) fn default_reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deck(n: usize, broken: bool) -> String {
        let mut s = String::from("[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n");
        for i in 0..n {
            s += &format!(
                "[[rules]]\nname = \"r{i}\"\nmatch.to.prefix = [\"{}\"]\nthen.trunks = [\"a\"]\n",
                i % 37
            );
            if broken && i == n / 2 {
                s += "match.from.regex = '('\n";
            }
        }
        s
    }

    fn build(text: &str, split_min: usize, threads: usize) -> Result<RouteTable, Error> {
        let sources = vec![(Arc::from("big.toml"), text.to_string())];
        Compiler::with_split("routes.d".into(), &sources, split_min, threads).run(String::new)
    }

    #[test]
    fn split_points_land_on_rules_headers() {
        let text = deck(100, false);
        let points = split_points(&text, 4);
        assert_eq!(points.len(), 4);
        for p in &points[1..] {
            assert!(text[*p..].starts_with("[[rules]]\n"));
        }
        assert_eq!(split_points("x = '''\n[[rules]]\n'''\n", 4), vec![0]);
    }

    #[test]
    fn a_split_parse_compiles_exactly_like_a_whole_one() {
        let text = deck(300, false);
        let whole = build(&text, usize::MAX, 1).unwrap();
        let split = build(&text, 1, 4).unwrap();
        assert_eq!(whole.warnings().to_string(), split.warnings().to_string());
        assert!(!whole.warnings().is_empty(), "the deck has ties to report");
        for id in 0..whole.rule_count() as u32 {
            let id = crate::RuleId(id);
            assert_eq!(whole.rule_name(id), split.rule_name(id));
            assert_eq!(whole.rule_location(id), split.rule_location(id));
        }
        let broken = deck(300, true);
        let (Err(Error::Config(a)), Err(Error::Config(b))) =
            (build(&broken, usize::MAX, 1), build(&broken, 1, 4))
        else {
            panic!("the broken deck must not compile");
        };
        assert_eq!(a.to_string(), b.to_string());
        assert!(a.to_string().contains("big.toml:"), "{a}");
    }

    #[test]
    fn every_empty_list_is_an_error_at_its_line() {
        let text = "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"e\"\n\
            match.source = []\nmatch.source_port = []\nmatch.transport = []\n\
            match.to.prefix = []\nmatch.from.exact = []\nthen.trunks = []\n";
        let Err(Error::Config(d)) = build(text, usize::MAX, 1) else {
            panic!("empty lists must not compile");
        };
        let d = d.to_string();
        for (line, key, what) in [
            (5, "match.source", "network"),
            (6, "match.source_port", "port"),
            (7, "match.transport", "transport"),
            (8, "match.to.prefix", "prefix"),
            (9, "match.from.exact", "value"),
            (10, "then.trunks", "trunk"),
        ] {
            let want = format!(":{line}:");
            assert!(
                d.lines().any(|l| l.contains(&want)
                    && l.contains(&format!("{key} is empty; list at least one {what}"))),
                "{key} at line {line}:\n{d}"
            );
        }
    }

    /// Above PARALLEL_MIN rules the shadow check runs beside the freeze and
    /// its tie step on a thread of its own, and most pieces take the fast
    /// parser: the result must not change.
    #[test]
    fn a_large_deck_compiles_the_same_on_one_thread_and_on_two() {
        let mut text = deck(PARALLEL_MIN + 2_000, false);
        text += "[[rules]]\nname = \"all\"\npriority = 150\nthen.trunks = [\"a\"]\n";
        text += "[[rules]]\nname = \"late\"\npriority = 200\nmatch.to.prefix = [\"9\"]\nthen.trunks = [\"a\"]\n";
        text += "[[rules]]\nname = \"tie\"\nmatch.to.prefix = [\"3\"]\nmatch.to.domain = [\"x\"]\nthen.trunks = [\"a\"]\n";
        let one = build(&text, usize::MAX, 1).unwrap();
        let two = build(&text, 1, 2).unwrap();
        assert_eq!(one.rule_count(), PARALLEL_MIN + 2_003);
        assert_eq!(one.warnings().to_string(), two.warnings().to_string());
        let w = one.warnings().to_string();
        for kind in ["same conditions", "ties with", "matches every call"] {
            assert!(w.contains(kind), "no {kind:?} warning");
        }
        for id in (0..one.rule_count() as u32).step_by(97) {
            let id = crate::RuleId(id);
            assert_eq!(one.rule_name(id), two.rule_name(id));
            assert_eq!(one.rule_location(id), two.rule_location(id));
        }
        let at = std::time::UNIX_EPOCH;
        let names = |t: &RouteTable, q: &Query<'_>| -> Vec<String> {
            t.explain(q, at).into_iter().map(|m| m.name).collect()
        };
        for uri in ["sip:3@x", "sip:3@y", "sip:36@x", "sip:12345@x", "sip:+1@x"] {
            let q = format!(r#"{{"to_uri":"{uri}","call_id":"c"}}"#);
            let q = Query::parse(q.as_bytes(), None).unwrap();
            let (a, b) = (names(&one, &q), names(&two, &q));
            assert_eq!(a, b, "{uri}");
            // The domain condition of `tie` survives the freeze.
            let tie = uri.starts_with("sip:3") && uri.ends_with("@x");
            assert_eq!(a.contains(&"tie".to_string()), tie, "{uri}");
            assert!(a.contains(&"all".to_string()), "{uri}");
        }
    }
}
