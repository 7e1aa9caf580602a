//! Least-cost routing (SPEC §7): the trunks of `then.lcr`, priced by their
//! rate decks and ordered by the cost of a call; and, for people, why each
//! trunk landed where it did.

use std::borrow::Cow;
use std::time::SystemTime;

use super::Plan;
use crate::candidate::Candidate;
use crate::rates::{Hit, RateDeck, Secs, fmt_nanos, fmt_secs, secs};
use crate::rule::{LcrSpec, RouteAction};

/// A trunk of `then.lcr` with a price for the call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Priced {
    pub trunk: u32,
    pub deck: u32,
    pub hit: Hit,
    /// 60 × the cost, in units of 10⁻⁹ (exact; see [`crate::rates::Tariff::cost60`]).
    pub cost60: u128,
}

/// The digits that are priced: the number without a leading `+`, up to the
/// first character that is not a digit.
pub(crate) fn priced_digits(user: &str) -> &[u8] {
    let b = user.strip_prefix('+').unwrap_or(user).as_bytes();
    let n = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    &b[..n]
}

/// A deck with no rows, to fill arrays.
static EMPTY_DECK: std::sync::LazyLock<RateDeck> = std::sync::LazyLock::new(RateDeck::empty);

/// Why a trunk of `then.lcr` was left out.
enum LeftOut {
    NoDeck,
    NoRow,
    /// The row found, whose rate is above `then.max_rate`.
    TooDear(Hit),
}

/// The R-URI user a route action sends (and LCR prices): the query's,
/// after the rule's `then.rewrite.ruri.user`, if any. Both the answer
/// (`routes.rs`) and [`crate::explain::lcr`] take it from here.
pub(crate) fn ruri_user<'c>(ra: &RouteAction, c: &'c Candidate<'_>, rule: &str) -> Cow<'c, str> {
    match ra.rewrites.as_deref().and_then(|r| r.ruri_user.as_ref()) {
        Some(r) => Cow::Owned(r.apply(&c.ruri().user, c, rule)),
        None => Cow::Borrowed(&c.ruri().user),
    }
}

impl Plan {
    fn deck_of(&self, trunk: u32) -> Option<(u32, &RateDeck)> {
        let d = (*self.trunk_deck.get(trunk as usize)?)?;
        Some((d, &self.decks[d as usize]))
    }

    /// The one pricing of a trunk whose deck `d` has row `hit` for the
    /// number: left out above `then.max_rate`, else its cost. The answer's
    /// order ([`Plan::lcr_order`]) and the report ([`Plan::lcr_report`])
    /// both price through here.
    fn price(&self, trunk: u32, d: u32, hit: Hit, spec: &LcrSpec) -> Result<Priced, LeftOut> {
        let t = self.decks[d as usize].tariff(hit.entry, hit.row);
        if spec.max_rate.is_some_and(|m| t.rate > m) {
            return Err(LeftOut::TooDear(hit));
        }
        Ok(Priced {
            trunk,
            deck: d,
            hit,
            cost60: t.cost60(self.defaults.lcr_duration),
        })
    }

    /// Looks `number` up in the trunk's deck, then [`Plan::price`].
    fn price_one(
        &self,
        trunk: u32,
        spec: &LcrSpec,
        number: &[u8],
        now: Secs,
    ) -> Result<Priced, LeftOut> {
        let (d, deck) = self.deck_of(trunk).ok_or(LeftOut::NoDeck)?;
        let hit = deck.lookup(number, now).ok_or(LeftOut::NoRow)?;
        self.price(trunk, d, hit, spec)
    }

    /// The priced trunks of `ra` for `number`, cheapest first (ties in
    /// `then.lcr` order), into `out`.
    pub(crate) fn lcr_order(
        &self,
        ra: &RouteAction,
        spec: &LcrSpec,
        number: &str,
        now: SystemTime,
        out: &mut Vec<Priced>,
    ) {
        let digits = priced_digits(number);
        let now = secs(now);
        out.clear();
        // Every deck at once (their cache misses overlap), then the prices.
        const MAX: usize = 16;
        if ra.trunks.len() <= MAX {
            let mut decks: [Option<(u32, &RateDeck)>; MAX] = [None; MAX];
            let mut refs: [&RateDeck; MAX] = [&EMPTY_DECK; MAX];
            let mut n = 0;
            for (k, &t) in ra.trunks.iter().enumerate() {
                decks[k] = self.deck_of(t);
                if let Some((_, d)) = decks[k] {
                    refs[n] = d;
                    n += 1;
                }
            }
            let mut hits = [None; MAX];
            RateDeck::lookup_all(&refs[..n], digits, now, &mut hits[..n]);
            let mut j = 0;
            for (k, &t) in ra.trunks.iter().enumerate() {
                let Some((d, _)) = decks[k] else { continue };
                let hit = hits[j];
                j += 1;
                if let Some(p) = hit.and_then(|h| self.price(t, d, h, spec).ok()) {
                    out.push(p);
                }
            }
        } else {
            out.extend(
                ra.trunks
                    .iter()
                    .filter_map(|&t| self.price_one(t, spec, digits, now).ok()),
            );
        }
        // Stable: equal costs keep the order of then.lcr.
        out.sort_by_key(|p| p.cost60);
    }

    /// `({rate}, {rate_prefix})` of a priced trunk.
    pub(crate) fn rate_vars(&self, p: &Priced) -> (&str, String) {
        let deck = &self.decks[p.deck as usize];
        (
            deck.rate_text(p.hit.entry, p.hit.row),
            deck.prefix(p.hit.entry),
        )
    }

    /// A deck row, for people.
    pub(crate) fn rate_row(&self, deck: u32, entry: u32, row: u32) -> RateRow {
        let d = &self.decks[deck as usize];
        let t = d.tariff(entry, row);
        RateRow {
            file: d.path.to_string(),
            line: d.line(row),
            prefix: d.prefix(entry),
            rate: d.rate_text(entry, row).to_owned(),
            connect_fee: fmt_nanos(u128::from(t.connect_fee), 0),
            initial: t.initial,
            increment: t.increment,
            effective_from: fmt_secs(t.from),
            effective_until: fmt_secs(t.until),
            name: d.text(t.name).to_owned(),
        }
    }

    /// Per trunk of `ra` (in `then.lcr` order), what priced it or why it was
    /// left out; `rank` is its place in the answer.
    pub(crate) fn lcr_report(
        &self,
        rule: &str,
        ra: &RouteAction,
        spec: &LcrSpec,
        number: &str,
        now: SystemTime,
    ) -> LcrReport {
        let digits = priced_digits(number);
        let at = secs(now);
        let mut order = Vec::new();
        self.lcr_order(ra, spec, number, now, &mut order);
        let trunks = ra
            .trunks
            .iter()
            .map(|&t| {
                let name = self.trunks[t as usize].name.to_string();
                let deck = self.deck_of(t).map(|(_, d)| d.path.to_string());
                match self.price_one(t, spec, digits, at) {
                    Ok(p) => LcrTrunk {
                        trunk: name,
                        deck,
                        rank: order.iter().position(|o| o.trunk == t).map(|r| r + 1),
                        row: Some(self.rate_row(p.deck, p.hit.entry, p.hit.row)),
                        cost: Some(fmt_cost(p.cost60)),
                        left_out: None,
                    },
                    Err(why) => {
                        let (row, reason) = self.left_out(t, spec, digits, at, why);
                        LcrTrunk {
                            trunk: name,
                            deck,
                            rank: None,
                            row,
                            cost: None,
                            left_out: Some(reason),
                        }
                    }
                }
            })
            .collect();
        LcrReport {
            rule: rule.to_owned(),
            number: String::from_utf8_lossy(digits).into_owned(),
            duration: self.defaults.lcr_duration,
            max_rate: spec.max_rate.map(|m| fmt_nanos(u128::from(m), 0)),
            trunks,
        }
    }

    fn left_out(
        &self,
        t: u32,
        spec: &LcrSpec,
        digits: &[u8],
        now: Secs,
        why: LeftOut,
    ) -> (Option<RateRow>, String) {
        let Some((d, deck)) = self.deck_of(t) else {
            return (None, "the trunk has no rate deck".into());
        };
        let number = String::from_utf8_lossy(digits);
        match why {
            LeftOut::NoDeck => (None, "the trunk has no rate deck".into()),
            LeftOut::TooDear(h) => {
                let row = self.rate_row(d, h.entry, h.row);
                let rate = row.rate.clone();
                let max = spec
                    .max_rate
                    .map_or(String::new(), |m| fmt_nanos(u128::from(m), 0));
                (
                    Some(row),
                    format!("rate {rate} is above then.max_rate {max}"),
                )
            }
            LeftOut::NoRow if digits.is_empty() => (
                None,
                "the number has no digits to price (after the rewrite, without a leading +)".into(),
            ),
            LeftOut::NoRow => match deck.longest_rows(digits) {
                None => (None, format!("no prefix of {number} in the deck")),
                Some((entry, rows)) => {
                    // The longest prefix has rows, none in effect: say when.
                    let r = rows.start;
                    let row = self.rate_row(d, entry, r);
                    let when = match (&row.effective_from, &row.effective_until) {
                        (Some(f), _) if deck.terms(entry, r).from > now => format!("from {f}"),
                        (_, Some(u)) => format!("until {u}"),
                        _ => String::new(),
                    };
                    (
                        Some(row),
                        format!(
                            "no row in effect at the decision time for any prefix of {number} (the longest, {}, is in effect {when})",
                            deck.prefix(entry)
                        ),
                    )
                }
            },
        }
    }

    /// Per trunk with a deck, the row that prices `number` at `now`.
    pub(crate) fn rate_lookup(&self, number: &str, now: SystemTime) -> Vec<RateLookup> {
        let digits = priced_digits(number);
        let at = secs(now);
        self.trunks
            .iter()
            .enumerate()
            .filter_map(|(t, tr)| {
                let (d, deck) = self.deck_of(t as u32)?;
                let row = deck
                    .lookup(digits, at)
                    .map(|h| self.rate_row(d, h.entry, h.row));
                let others = deck
                    .longest_rows(digits)
                    .map(|(e, rows)| {
                        rows.filter(|&r| row.as_ref().is_none_or(|x| x.line != deck.line(r)))
                            .map(|r| self.rate_row(d, e, r))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(RateLookup {
                    trunk: tr.name.to_string(),
                    deck: deck.path.to_string(),
                    row,
                    other_rows: others,
                })
            })
            .collect()
    }
}

/// A cost (60 × in units of 10⁻⁹) as a decimal, to 6 places at most.
fn fmt_cost(cost60: u128) -> String {
    // Round to 10⁻⁹, then show at least 4 and at most 6 decimals.
    let nanos = (cost60 + 30) / 60;
    fmt_nanos((nanos + 500) / 1000 * 1000, 4)
}

/// One row of a rate deck, as `eval --explain` and `c4route rates` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateRow {
    /// The deck file.
    pub file: String,
    /// Its line in the file.
    pub line: u32,
    /// The row's prefix (digits only).
    pub prefix: String,
    /// The rate per minute, as written.
    pub rate: String,
    /// The connect fee per call.
    pub connect_fee: String,
    /// Billing: the first interval, in seconds.
    pub initial: u32,
    /// Billing: the following steps, in seconds.
    pub increment: u32,
    /// In effect from (a date or an RFC 3339 time); `None`: always.
    pub effective_from: Option<String>,
    /// In effect until (exclusive); `None`: forever.
    pub effective_until: Option<String>,
    /// The destination's name, or `""`.
    pub name: String,
}

/// How `then.lcr` priced a call: see [`crate::explain::lcr`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LcrReport {
    /// The rule.
    pub rule: String,
    /// The digits priced (the R-URI user after the rewrite, without `+`).
    pub number: String,
    /// The call duration the costs are for (`[defaults] lcr_duration`).
    pub duration: u32,
    /// `then.max_rate`, if any.
    pub max_rate: Option<String>,
    /// Every trunk of `then.lcr`, in the rule's order.
    pub trunks: Vec<LcrTrunk>,
}

/// One trunk of an [`LcrReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LcrTrunk {
    /// The trunk.
    pub trunk: String,
    /// Its deck file.
    pub deck: Option<String>,
    /// Its place in the answer's price order (1 = cheapest), or `None`
    /// when it was left out.
    pub rank: Option<usize>,
    /// The row that priced it (or, when left out, the row that would have).
    pub row: Option<RateRow>,
    /// The cost of an `lcr_duration` call.
    pub cost: Option<String>,
    /// Why it was left out.
    pub left_out: Option<String>,
}

/// What one trunk's deck says about a number: see [`crate::explain::rates`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLookup {
    /// The trunk.
    pub trunk: String,
    /// Its deck file.
    pub deck: String,
    /// The row in effect with the longest prefix of the number.
    pub row: Option<RateRow>,
    /// The other rows of the longest prefix the deck holds (earlier or
    /// later prices).
    pub other_rows: Vec<RateRow>,
}

impl crate::RouteTable {
    /// How `then.lcr` priced `query` at `now`: the number priced and, per
    /// trunk of the deciding rule, the row found (file:line, prefix, rate,
    /// cost) or why it was left out. `None` when the deciding rule (if
    /// any) is not an LCR rule.
    pub(crate) fn explain_lcr(
        &self,
        query: &crate::Query<'_>,
        now: SystemTime,
    ) -> Option<LcrReport> {
        let id = self.route(query, now).rule_id?;
        let rule = self.rule_name(id);
        let action = self.rules[id.index()].action;
        let crate::rule::Action::Route(ra) = &self.plan.actions[action as usize] else {
            return None;
        };
        let spec = ra.lcr.as_deref()?;
        let c = Candidate::new(query);
        let user = ruri_user(ra, &c, rule);
        Some(self.plan.lcr_report(rule, ra, spec, &user, now))
    }

    /// Per trunk with a rate deck, the row that prices `number` at `now`
    /// (the longest prefix in effect; a leading `+` is ignored), and the
    /// other rows of the longest prefix the deck holds.
    pub(crate) fn rates(&self, number: &str, now: SystemTime) -> Vec<RateLookup> {
        self.plan.rate_lookup(number, now)
    }

    /// The rate deck files of the table, as diagnostics show them (for
    /// `serve`, which watches the folders that hold them).
    pub fn rate_files(&self) -> impl Iterator<Item = &str> {
        self.plan.decks.iter().map(|d| &*d.path)
    }

    /// Rows of the rate decks in all.
    pub fn rate_row_count(&self) -> usize {
        self.plan.decks.iter().map(RateDeck::row_count).sum()
    }

    /// Approximate heap bytes of the frozen rate decks.
    pub(crate) fn rate_heap_bytes(&self) -> usize {
        self.plan.decks.iter().map(RateDeck::heap_bytes).sum()
    }

    /// One warning per deck with rows whose `effective_until` is at or
    /// before `now` (`c4route check` shows them): such rows price no call
    /// any more and only make the deck larger.
    pub fn expired_rate_rows(&self, now: SystemTime) -> crate::Diagnostics {
        let at = secs(now);
        let mut out = Vec::new();
        for d in self.plan.decks.iter() {
            let (n, first) = d.expired(at);
            if n == 0 {
                continue;
            }
            let when =
                jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string());
            out.push(crate::Diagnostic {
                path: d.path.clone(),
                span: 0..0,
                line: first as usize,
                col: 1,
                severity: crate::Severity::Warning,
                message: format!(
                    "{n} row{} expired before {when} (effective_until in the past; the first at line {first}): {} no call any more; drop {} from the deck",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it prices" } else { "they price" },
                    if n == 1 { "it" } else { "them" },
                ),
                note: None,
                kind: std::panic::Location::caller(),
            });
        }
        crate::Diagnostics::from(out)
    }
}
