//! The frozen routing table and the decision procedure.
//!
//! `route` gathers candidate rules from the populated indexes only (exact and
//! prefix user lookups, source networks, one regex set per field, and a short
//! list of rules with no indexable condition), checks each candidate's
//! remaining conditions, and keeps the one with the smallest [`Specificity`].
//! Its cost depends on the query (the length of the numbers, the number of
//! covering networks), not on the number of rules.

use std::sync::Arc;
use std::time::SystemTime;

use regex::{RegexSet, SetMatches};

use crate::Query;
use crate::answer::Plan;
use crate::candidate::Candidate;
use crate::diag::Diagnostics;
use crate::health::{GatewayInfo, GatewayStatus};
use crate::live::{Live, TrunkLoad};
use crate::matcher::ip::SourceIndex;
use crate::matcher::prefix::StrIndex;
use crate::rule::{Conds, Env, Field, Loc, RegexEval, RuleId, SpecParts, Specificity, user_spec};
use crate::schedule::Schedule;

/// What a `[[tests]]` entry expects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expect {
    /// The deciding rule's name.
    pub rule: Option<String>,
    /// `dst_uri` of every route, in order.
    pub routes: Option<Vec<String>>,
    /// The first route's `uri`.
    pub ruri: Option<String>,
    /// The reject (or no-match) code.
    pub reject: Option<u16>,
}

/// One `[[tests]]` entry, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// `file:line` of the entry.
    pub location: String,
    /// The query.
    pub query: Query<'static>,
    /// The time to decide at (`None`: the current time).
    pub at: Option<SystemTime>,
    /// The gateways to decide as down (SPEC §8), as [`crate::gateway_key`]s.
    pub down: Vec<String>,
    /// Trunks to decide as carrying this many calls (SPEC §9.2).
    pub load: Vec<(String, u32)>,
    /// Gateways (keys) to decide as poor for a group (SPEC §9.3).
    pub poor: Vec<(String, String)>,
    /// What it expects.
    pub expect: Expect,
}

/// A test's result: empty `failures` means it passed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// `file:line` of the test.
    pub location: String,
    /// One line per unmet expectation: what was expected and what came out.
    pub failures: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub name_off: u32,
    pub name_len: u32,
    pub action: u32,
    pub priority: i64,
    /// The conditions no index checked; `None` when the index said it all.
    pub conds: Option<Box<Conds>>,
}

/// Decides where a call goes (SPEC §1, §9): the winning rule for `query`
/// at `now`, and its routes ordered with what `live` knows — drained
/// gateways and trunks or gateways at their capacity limit left out, poor
/// gateways behind good ones, down gateways last, and `max_routes` cut
/// after all of that, so what falls off the end is the worst. Pure: no
/// I/O, no locks, and the same inputs always give the same decision.
pub fn decide<'t>(
    table: &'t RouteTable,
    live: &Live,
    query: &Query<'_>,
    now: SystemTime,
) -> crate::Decision<'t> {
    let c = Candidate::new(query);
    let best = table.search(&c, now, None);
    let winner = best.map(|(id, _)| {
        let r = &table.rules[id as usize];
        (RuleId(id), table.rule_name(RuleId(id)), r.action)
    });
    table.plan.decide(winner, &c, live, now)
}

/// Which index a rule was filed under, and so what a hit proves.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    pub exact: [Option<StrIndex>; 3],
    pub prefix: [Option<StrIndex>; 3],
    pub source: Option<SourceIndex>,
    /// Rules filed under regex pattern `n` of each field.
    pub regex: [Box<[Box<[u32]>]>; 3],
    pub always: Box<[u32]>,
}

/// One regex set per field, for conditions and for indexing.
#[derive(Debug, Default)]
pub(crate) struct Regexes {
    pub sets: [Option<RegexSet>; 3],
}

struct SetEval<'a> {
    sets: &'a Regexes,
    cache: [Option<SetMatches>; 3],
}

impl SetEval<'_> {
    fn matches(&mut self, field: Field, text: &str) -> Option<&SetMatches> {
        let set = self.sets.sets[field as usize].as_ref()?;
        Some(self.cache[field as usize].get_or_insert_with(|| set.matches(text)))
    }
}

impl RegexEval for SetEval<'_> {
    fn is_match(&mut self, field: Field, idx: u32, text: &str) -> bool {
        self.matches(field, text)
            .is_some_and(|m| m.matched(idx as usize))
    }
}

/// A compiled, immutable routing table. Cheap to share (`Send + Sync`);
/// [`RouteTable::route`] takes `&self`.
#[derive(Debug)]
pub struct RouteTable {
    pub(crate) rules: Box<[Rule]>,
    /// Every rule's name, concatenated (a million small boxes cost more).
    pub(crate) names: Box<str>,
    pub(crate) locs: Box<[Loc]>,
    /// The actions, trunks and defaults that turn a winner into an answer.
    pub(crate) plan: Plan,
    pub(crate) schedules: Box<[Schedule]>,
    pub(crate) regexes: Regexes,
    pub(crate) idx: Indexes,
    pub(crate) files: Box<[Arc<str>]>,
    pub(crate) tests: Box<[TestCase]>,
    /// The distinct gateways (SPEC §8), for a server that probes them.
    pub(crate) gateways: Box<[GatewayInfo]>,
    /// Indexes into `gateways`, sorted by key, for [`RouteTable::gateway`].
    pub(crate) gateways_by_key: Box<[u32]>,
    pub(crate) warnings: Diagnostics,
    pub(crate) version: Box<str>,
}

const _: fn() = || {
    fn ok<T: Send + Sync + 'static>() {}
    ok::<RouteTable>();
};

/// A rule that matched a query, for `--explain`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuleMatch {
    /// The rule.
    pub id: RuleId,
    /// Its name.
    pub name: String,
    /// `file:line:col` of its declaration.
    pub location: String,
    /// How it ranks.
    pub specificity: Specificity,
}

impl RouteTable {
    pub(crate) fn set_warnings(&mut self, warnings: Diagnostics) {
        self.warnings = warnings;
    }

    /// Number of enabled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Number of trunks.
    pub fn trunk_count(&self) -> usize {
        self.plan.trunks.len()
    }

    /// The name of a rule.
    ///
    /// # Panics
    /// If `id` does not come from this table.
    pub fn rule_name(&self, id: RuleId) -> &str {
        let r = &self.rules[id.0 as usize];
        &self.names[r.name_off as usize..(r.name_off + r.name_len) as usize]
    }

    /// Every rule's name, in declaration order (the order of [`RuleId`]s).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| &self.names[r.name_off as usize..(r.name_off + r.name_len) as usize])
    }

    /// `file:line:col` where a rule is declared.
    ///
    /// # Panics
    /// If `id` does not come from this table.
    pub fn rule_location(&self, id: RuleId) -> String {
        let l = self.locs[id.0 as usize];
        format!("{}:{}:{}", self.files[l.file as usize], l.line, l.col)
    }

    /// A digest of the source texts: equal digests mean equal configurations.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Warnings found while loading (unused trunks, shadowed rules, …).
    pub fn warnings(&self) -> &Diagnostics {
        &self.warnings
    }

    /// The `[[tests]]` entries.
    pub fn tests(&self) -> &[TestCase] {
        &self.tests
    }

    /// Decides where a call goes knowing nothing live: every gateway up,
    /// no load, no quality verdict. Pure: no I/O, no locks; `now` only
    /// matters for schedules and rate decks. See [`crate::decide`].
    pub fn route<'t>(&'t self, query: &Query<'_>, now: SystemTime) -> crate::Decision<'t> {
        decide(self, Live::nothing(), query, now)
    }

    /// How long a call record may go without an event (`[defaults.calls]
    /// max_duration`, SPEC §9.1).
    pub fn max_call_duration(&self) -> std::time::Duration {
        self.plan.defaults.max_call_duration
    }

    /// The limits of a trunk by name (`None` when no trunk has that name):
    /// `(calls, cps)`, each `None` when unset.
    pub fn trunk_limits(&self, name: &str) -> Option<(Option<u32>, Option<u32>)> {
        self.plan
            .trunks
            .iter()
            .find(|t| &*t.name == name)
            .map(|t| (t.limits.calls, t.limits.cps))
    }

    /// Every trunk's name with its limits `(calls, cps)`, in name order.
    pub fn trunks(&self) -> impl Iterator<Item = (&str, Option<u32>, Option<u32>)> {
        self.plan
            .trunks
            .iter()
            .map(|t| (&*t.name, t.limits.calls, t.limits.cps))
    }

    /// The most calls at once on a gateway (`calls` in its trunk's
    /// `gateways`), by its key; the smallest when several trunks list it.
    pub fn gateway_calls_limit(&self, key: &str) -> Option<u32> {
        self.gateway(key).and_then(|g| g.calls)
    }

    /// The distinct gateways the trunks list (one per [`crate::gateway_key`],
    /// however many trunks name it), with their trunks and effective health
    /// settings: what a server probes and reports about.
    pub fn gateways(&self) -> &[GatewayInfo] {
        &self.gateways
    }

    /// The gateway whose [`crate::gateway_key`] is `key`, if a trunk lists it
    /// (a binary search: reports look gateways up one by one).
    pub fn gateway(&self, key: &str) -> Option<&GatewayInfo> {
        self.gateways_by_key
            .binary_search_by(|&i| self.gateways[i as usize].key.as_str().cmp(key))
            .ok()
            .map(|n| &self.gateways[self.gateways_by_key[n] as usize])
    }

    /// Every rule that matches `query`, best first (the first one decides).
    pub fn explain(&self, query: &Query<'_>, now: SystemTime) -> Vec<RuleMatch> {
        let c = Candidate::new(query);
        let mut all = Vec::new();
        self.search(&c, now, Some(&mut all));
        all.sort_by_key(|m: &(u32, Specificity)| (m.0, m.1));
        all.dedup_by_key(|m| m.0);
        all.sort_by_key(|m| m.1);
        all.into_iter()
            .map(|(id, spec)| RuleMatch {
                id: RuleId(id),
                name: self.rule_name(RuleId(id)).to_owned(),
                location: self.rule_location(RuleId(id)),
                specificity: spec,
            })
            .collect()
    }

    fn search(
        &self,
        c: &Candidate<'_>,
        now: SystemTime,
        explain: Option<&mut Vec<(u32, Specificity)>>,
    ) -> Option<(u32, Specificity)> {
        let mut s = Search {
            t: self,
            c,
            env: Env {
                now,
                schedules: &self.schedules,
            },
            rx: SetEval {
                sets: &self.regexes,
                cache: Default::default(),
            },
            best: None,
            all: explain,
        };
        for f in Field::ALL {
            let indexed = self.idx.exact[f as usize].is_some()
                || self.idx.prefix[f as usize].is_some()
                || !self.idx.regex[f as usize].is_empty();
            if !indexed {
                continue;
            }
            let p = f.party(c);
            if !p.present {
                continue;
            }
            let user: &str = &p.user;
            if let Some(ix) = &self.idx.exact[f as usize] {
                ix.exact(user, |id| s.consider(id, hit(f, user_spec::EXACT)));
            }
            if let Some(ix) = &self.idx.prefix[f as usize] {
                ix.prefixes_of(user, |id, n| s.consider(id, hit(f, user_spec::prefix(n))));
            }
            if !self.idx.regex[f as usize].is_empty() {
                let matched: Vec<usize> = match s.rx.matches(f, user) {
                    Some(m) => m.iter().collect(),
                    None => Vec::new(),
                };
                for pat in matched {
                    for &id in self.idx.regex[f as usize][pat].iter() {
                        s.consider(id, hit(f, user_spec::REGEX));
                    }
                }
            }
        }
        if let (Some(ix), Some(ip)) = (&self.idx.source, c.source_ip) {
            ix.covering(ip, |id, len| {
                s.consider(
                    id,
                    SpecParts {
                        source: len + 1,
                        ..SpecParts::default()
                    },
                )
            });
        }
        for &id in self.idx.always.iter() {
            s.consider(id, SpecParts::default());
        }
        s.best
    }

    /// Runs every `[[tests]]` entry.
    pub fn run_tests(&self) -> Vec<TestResult> {
        self.tests
            .iter()
            .map(|t| {
                let mut live = Live::builder();
                for k in &t.down {
                    live = live.gateway_status_key(k.clone(), GatewayStatus::Down);
                }
                for (trunk, calls) in &t.load {
                    live = live.trunk_load(trunk, TrunkLoad::new(*calls, 0));
                }
                for (key, group) in &t.poor {
                    live = live.poor_key(key, group, true);
                }
                let at = t.at.unwrap_or_else(SystemTime::now);
                let d = decide(self, &live.build(), &t.query, at);
                TestResult {
                    name: t.name.clone(),
                    location: t.location.clone(),
                    failures: check_expect(&t.expect, &d),
                }
            })
            .collect()
    }

    /// Approximate heap bytes of the rules and their indexes (the bulk of
    /// a large table), for a memory metric or a benchmark.
    pub(crate) fn heap_bytes(&self) -> usize {
        let strs: usize = self
            .idx
            .exact
            .iter()
            .chain(self.idx.prefix.iter())
            .flatten()
            .map(StrIndex::heap_bytes)
            .sum();
        strs + self.rules.len() * std::mem::size_of::<Rule>()
            + self.locs.len() * std::mem::size_of::<Loc>()
            + self.names.len()
    }
}

fn hit(f: Field, spec: u32) -> SpecParts {
    match f {
        Field::From => SpecParts {
            from: spec,
            ..SpecParts::default()
        },
        Field::To | Field::Ruri => SpecParts {
            to: spec,
            ..SpecParts::default()
        },
    }
}

struct Search<'a, 'q> {
    t: &'a RouteTable,
    c: &'a Candidate<'q>,
    env: Env<'a>,
    rx: SetEval<'a>,
    best: Option<(u32, Specificity)>,
    all: Option<&'a mut Vec<(u32, Specificity)>>,
}

impl Search<'_, '_> {
    fn consider(&mut self, id: u32, parts: SpecParts) {
        let r = &self.t.rules[id as usize];
        if self.all.is_none()
            && let Some((_, b)) = &self.best
            && r.priority > b.priority()
        {
            return;
        }
        let extra = match &r.conds {
            None => SpecParts::default(),
            Some(cs) => match cs.eval(self.c, &self.env, &mut self.rx) {
                Some(p) => p,
                None => return,
            },
        };
        let spec = Specificity::new(r.priority, parts.max(extra), id);
        if let Some(all) = self.all.as_deref_mut() {
            all.push((id, spec));
        }
        if self.best.is_none_or(|(_, b)| spec < b) {
            self.best = Some((id, spec));
        }
    }
}

fn check_expect(e: &Expect, d: &crate::Decision<'_>) -> Vec<String> {
    use crate::Outcome;
    let mut out = Vec::new();
    let shown = |r: Option<&str>| r.map_or("(none)".to_string(), |r| format!("`{r}`"));
    if let Some(rule) = &e.rule
        && d.rule != Some(rule.as_str())
    {
        out.push(format!("rule: expected `{rule}`, got {}", shown(d.rule)));
    }
    match (&d.outcome, e.reject) {
        (Outcome::Reject { code, reason, .. }, Some(want)) if *code != want => {
            out.push(format!("reject: expected {want}, got {code} {reason}"));
        }
        (Outcome::Route { routes, .. }, Some(want)) => {
            out.push(format!(
                "reject: expected {want}, got {} route(s) starting with {}",
                routes.len(),
                routes.first().map_or("", |r| r.dst_uri)
            ));
        }
        _ => {}
    }
    if e.routes.is_some() || e.ruri.is_some() {
        match &d.outcome {
            Outcome::Route { routes, .. } => {
                if let Some(want) = &e.routes {
                    let got: Vec<&str> = routes.iter().map(|r| r.dst_uri).collect();
                    if got != *want {
                        out.push(format!("routes: expected {want:?}, got {got:?}"));
                    }
                }
                if let Some(want) = &e.ruri {
                    let got = routes.first().map_or("", |r| r.uri.as_str());
                    if got != want {
                        out.push(format!("ruri: expected {want:?}, got {got:?}"));
                    }
                }
            }
            Outcome::Reject { code, reason, .. } => {
                out.push(format!(
                    "routes: expected a routed call, got reject {code} {reason}"
                ));
            }
        }
    }
    out
}
