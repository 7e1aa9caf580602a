//! Compiled rules: conditions, precedence and actions.
//!
//! Precedence is a type: [`Specificity`] orders two matching rules exactly as
//! SPEC §4.3 says (priority, then the `to`/`ruri` user condition, then the
//! `from` user condition, then the source prefix, then declaration order).

use std::cmp::Ordering;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::candidate::{Candidate, Party};
use crate::schedule::Schedule;
use crate::template::Template;

/// Which party a user condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    To = 0,
    From = 1,
    Ruri = 2,
}

impl Field {
    pub(crate) const ALL: [Field; 3] = [Field::To, Field::From, Field::Ruri];

    pub(crate) fn party<'a, 'q>(self, c: &'a Candidate<'q>) -> &'a Party<'q> {
        match self {
            Field::To => c.to(),
            Field::From => c.from(),
            Field::Ruri => c.ruri(),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::To => "to",
            Field::From => "from",
            Field::Ruri => "ruri",
        }
    }
}

/// How specific a matched user condition was: none < length < regex <
/// prefix (longer is more specific) < exact.
pub(crate) mod user_spec {
    pub const NONE: u32 = 0;
    pub const LENGTH: u32 = 1;
    pub const REGEX: u32 = 2;
    pub const EXACT: u32 = u32::MAX;
    pub fn prefix(len: usize) -> u32 {
        3 + len.min(1 << 20) as u32
    }
}

/// `*.example.net` (any subdomain) or `example.com` (that host).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DomainPat {
    Exact(Box<str>),
    /// The suffix with its leading dot: `.example.net`.
    Suffix(Box<str>),
}

impl DomainPat {
    fn is_match(&self, domain: &str) -> bool {
        match self {
            DomainPat::Exact(d) => **d == *domain,
            DomainPat::Suffix(s) => domain.len() > s.len() && domain.ends_with(&**s),
        }
    }
}

/// Conditions on one party's user and domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct UserConds {
    pub prefix: Option<Box<[Box<str>]>>,
    pub exact: Option<Box<[Box<str>]>>,
    /// Index of the pattern in the field's regex set.
    pub regex: Option<u32>,
    /// Inclusive bounds on the user length in characters.
    pub length: Option<(u32, u32)>,
    pub domain: Option<Box<[DomainPat]>>,
}

/// Answers "does pattern `idx` of `field` match `text`".
pub(crate) trait RegexEval {
    fn is_match(&mut self, field: Field, idx: u32, text: &str) -> bool;
}

impl UserConds {
    pub(crate) fn is_empty(&self) -> bool {
        self.prefix.is_none()
            && self.exact.is_none()
            && self.regex.is_none()
            && self.length.is_none()
            && self.domain.is_none()
    }

    /// `None` when a condition fails, else the specificity of the user part.
    fn eval(&self, field: Field, p: &Party<'_>, rx: &mut dyn RegexEval) -> Option<u32> {
        if self.is_empty() {
            return Some(user_spec::NONE);
        }
        if !p.present {
            return None;
        }
        let user: &str = &p.user;
        let mut spec = user_spec::NONE;
        if let Some((lo, hi)) = self.length {
            let n = user.chars().count() as u32;
            if n < lo || n > hi {
                return None;
            }
            spec = spec.max(user_spec::LENGTH);
        }
        if let Some(d) = &self.domain
            && !d.iter().any(|d| d.is_match(&p.domain))
        {
            return None;
        }
        if let Some(ex) = &self.exact {
            if !ex.iter().any(|e| **e == *user) {
                return None;
            }
            spec = user_spec::EXACT;
        }
        if let Some(px) = &self.prefix {
            let best = px
                .iter()
                .filter(|x| user.starts_with(&***x))
                .map(|x| x.len())
                .max()?;
            spec = spec.max(user_spec::prefix(best));
        }
        if let Some(idx) = self.regex {
            if !rx.is_match(field, idx, user) {
                return None;
            }
            spec = spec.max(user_spec::REGEX);
        }
        Some(spec)
    }
}

/// Every condition of a rule (or, in the table, the ones no index checked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Conds {
    pub source: Option<Box<[IpNet]>>,
    /// Inclusive port ranges.
    pub ports: Option<Box<[(u16, u16)]>>,
    /// Transport bit mask; 0 = any.
    pub transports: u8,
    pub auth: Option<bool>,
    /// Indexed by [`Field`]; `None` for a party without conditions, never an
    /// empty box ([`Conds::set_user`]). Boxed because most rules test one
    /// party at most: inline, the three were 216 of a validated rule's 300
    /// bytes, and a million validated rules are held while the table is
    /// built.
    pub users: [Option<Box<UserConds>>; 3],
    pub schedule: Option<u32>,
}

/// The conditions of a party that has none.
static NO_USER: UserConds = UserConds {
    prefix: None,
    exact: None,
    regex: None,
    length: None,
    domain: None,
};

/// The parts of a [`Specificity`] that come from matching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpecParts {
    /// Best of the `to` and `ruri` user conditions.
    pub to: u32,
    pub from: u32,
    /// 0 without a source condition, else the matched prefix length + 1.
    pub source: u8,
}

impl SpecParts {
    pub(crate) fn max(self, o: SpecParts) -> SpecParts {
        SpecParts {
            to: self.to.max(o.to),
            from: self.from.max(o.from),
            source: self.source.max(o.source),
        }
    }
}

/// What the rule-matching context needs besides the candidate.
pub(crate) struct Env<'a> {
    pub now: SystemTime,
    pub schedules: &'a [Schedule],
}

impl Conds {
    /// The conditions on one party (empty when it has none).
    pub(crate) fn user(&self, f: Field) -> &UserConds {
        self.users[f as usize].as_deref().unwrap_or(&NO_USER)
    }

    /// Sets the conditions on one party; empty ones are stored as `None`, so
    /// that equal conditions compare and hash equal.
    pub(crate) fn set_user(&mut self, f: Field, u: UserConds) {
        self.users[f as usize] = (!u.is_empty()).then(|| Box::new(u));
    }

    /// Whether a match can rank above "no user condition, no source" (so a
    /// rule can beat an earlier catch-all of the same priority).
    pub(crate) fn can_outrank_catch_all(&self) -> bool {
        self.source.is_some()
            || self.users.iter().flatten().any(|u| {
                u.prefix.is_some() || u.exact.is_some() || u.regex.is_some() || u.length.is_some()
            })
    }

    /// Whether no query can satisfy both (a conservative test: `false` when unsure).
    pub(crate) fn disjoint(&self, o: &Conds) -> bool {
        (self.transports != 0 && o.transports != 0 && self.transports & o.transports == 0)
            || matches!((self.auth, o.auth), (Some(a), Some(b)) if a != b)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.ports.is_none()
            && self.transports == 0
            && self.auth.is_none()
            && self.users.iter().all(Option::is_none)
            && self.schedule.is_none()
    }

    /// `None` when a condition fails, else what the match contributes to precedence.
    pub(crate) fn eval(
        &self,
        c: &Candidate<'_>,
        env: &Env<'_>,
        rx: &mut dyn RegexEval,
    ) -> Option<SpecParts> {
        let mut parts = SpecParts::default();
        if let Some(auth) = self.auth
            && c.auth != auth
        {
            return None;
        }
        if self.transports != 0 && self.transports & c.transport == 0 {
            return None;
        }
        if let Some(ports) = &self.ports {
            let p = c.source_port?;
            if !ports.iter().any(|&(lo, hi)| lo <= p && p <= hi) {
                return None;
            }
        }
        if let Some(nets) = &self.source {
            let ip: IpAddr = c.source_ip?;
            let len = nets
                .iter()
                .filter(|n| n.contains(&ip))
                .map(|n| n.prefix_len())
                .max()?;
            parts.source = len + 1;
        }
        // A field with no condition is not even parsed (see `Candidate`).
        let mut user = |f: Field| -> Option<u32> {
            match &self.users[f as usize] {
                None => Some(user_spec::NONE),
                Some(u) => u.eval(f, f.party(c), rx),
            }
        };
        let to = user(Field::To)?;
        let ruri = user(Field::Ruri)?;
        parts.to = to.max(ruri);
        parts.from = user(Field::From)?;
        if let Some(s) = self.schedule
            && !env.schedules[s as usize].is_active(env.now)
        {
            return None;
        }
        Some(parts)
    }
}

/// The precedence of a matching rule; the *smallest* wins (SPEC §4.3):
/// priority, then the `to`/`ruri` user condition, then the `from` user
/// condition, then the source prefix, then declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specificity {
    /// The rule's `priority` (lower is considered first).
    priority: i64,
    /// The `to`/`ruri` user condition: higher is more specific (see `user_spec`).
    to: u32,
    /// The `from` user condition: higher is more specific.
    from: u32,
    /// Matched source prefix length + 1, or 0 without a source condition.
    source: u8,
    /// Declaration order (file name order, then position in the file).
    decl: u32,
}

impl Specificity {
    pub(crate) fn new(priority: i64, parts: SpecParts, decl: u32) -> Self {
        Specificity {
            priority,
            to: parts.to,
            from: parts.from,
            source: parts.source,
            decl,
        }
    }

    /// The rule's `priority`.
    pub fn priority(&self) -> i64 {
        self.priority
    }

    /// Which step of the order puts `self` before `other`, in words, for
    /// `c4route eval --explain`: "priority 10 < 100", "to/ruri user: an
    /// exact match beats a 3-character prefix", … or "declared earlier".
    pub fn why_before(&self, other: &Specificity) -> String {
        let level = |v: u32| match v {
            user_spec::NONE => "no user condition".to_string(),
            user_spec::LENGTH => "a length condition".to_string(),
            user_spec::REGEX => "a regex".to_string(),
            user_spec::EXACT => "an exact match".to_string(),
            n => format!("a {}-character prefix", n - user_spec::prefix(0)),
        };
        let (a, b) = (self, other);
        if a.priority != b.priority {
            format!("priority {} < {}", a.priority, b.priority)
        } else if a.to != b.to {
            format!("to/ruri user: {} beats {}", level(a.to), level(b.to))
        } else if a.from != b.from {
            format!("from user: {} beats {}", level(a.from), level(b.from))
        } else if a.source != b.source {
            let s = |v: u8| {
                if v == 0 {
                    "no source condition".to_string()
                } else {
                    format!("a /{} source", v - 1)
                }
            };
            format!("{} beats {}", s(a.source), s(b.source))
        } else {
            "declared earlier (a tie broken only by declaration order)".to_string()
        }
    }
}

impl Ord for Specificity {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.to.cmp(&self.to))
            .then_with(|| o.from.cmp(&self.from))
            .then_with(|| o.source.cmp(&self.source))
            .then_with(|| self.decl.cmp(&o.decl))
    }
}

impl PartialOrd for Specificity {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// `serial` or `parallel` (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Routing {
    /// One destination per attempt, failing over in order.
    Serial,
    /// Every destination at once.
    Parallel,
}

impl Routing {
    /// The rtjson spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Serial => "serial",
            Routing::Parallel => "parallel",
        }
    }
}

/// A rewrite of one value.
#[derive(Debug, Clone)]
pub(crate) enum Rewrite {
    Template(Template),
    Edit {
        strip: u32,
        prefix: Box<str>,
        suffix: Box<str>,
    },
    Regex {
        re: regex::Regex,
        replace: Box<str>,
    },
}

impl Rewrite {
    /// The rewritten value; a regex that does not match leaves `current` as is.
    pub(crate) fn apply(&self, current: &str, c: &Candidate<'_>, rule: &str) -> String {
        self.try_apply(current, c, rule)
            .unwrap_or_else(|| current.to_owned())
    }

    /// The rewritten value, or `None` when the rewrite does not apply (a regex
    /// that does not match, SPEC §4.3): From/To then stay `""` (keep) rather
    /// than being rebuilt from an unchanged value.
    pub(crate) fn try_apply(&self, current: &str, c: &Candidate<'_>, rule: &str) -> Option<String> {
        Some(match self {
            Rewrite::Template(t) => t.render(c, rule, ""),
            Rewrite::Edit {
                strip,
                prefix,
                suffix,
            } => {
                let rest = match current.char_indices().nth(*strip as usize) {
                    Some((i, _)) => &current[i..],
                    None => "",
                };
                let mut s = String::with_capacity(prefix.len() + rest.len() + suffix.len());
                s.push_str(prefix);
                s.push_str(rest);
                s.push_str(suffix);
                s
            }
            Rewrite::Regex { re, replace } => {
                // What `Regex::replace` does, without searching twice to learn
                // whether it matched.
                let caps = re.captures(current)?;
                let m = caps.get(0)?;
                let mut s = String::with_capacity(current.len() + replace.len());
                s.push_str(&current[..m.start()]);
                caps.expand(replace, &mut s);
                s.push_str(&current[m.end()..]);
                s
            }
        })
    }
}

/// The rewrites of one party (From or To).
#[derive(Debug, Clone, Default)]
pub(crate) struct PartyRewrite {
    pub user: Option<Rewrite>,
    pub display: Option<Rewrite>,
    pub uri: Option<Rewrite>,
}

impl PartyRewrite {
    pub(crate) fn is_empty(&self) -> bool {
        self.user.is_none() && self.display.is_none() && self.uri.is_none()
    }
}

/// The rewrites a rule applies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rewrites {
    pub ruri_user: Option<Rewrite>,
    pub to: PartyRewrite,
    pub from: PartyRewrite,
}

/// What a rule does.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Reject { code: u16, reason: Box<str> },
    Route(Box<RouteAction>),
}

#[derive(Debug, Clone)]
pub(crate) struct RouteAction {
    pub trunks: Box<[u32]>,
    pub routing: crate::rule::Routing,
    pub rewrites: Option<Box<Rewrites>>,
    pub headers: Box<[Template]>,
    /// `then.lcr`: `trunks` are ordered by price (SPEC §7).
    pub lcr: Option<Box<LcrSpec>>,
    /// `then.no_capacity` (SPEC §9.2); `None`: 503 All Trunks Busy.
    pub no_capacity: Option<Box<(u16, Box<str>)>>,
}

/// What `then.lcr` adds to a routed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LcrSpec {
    /// `then.max_rate` per minute, in units of 10⁻⁹.
    pub max_rate: Option<u64>,
    /// `then.no_rate`; `None`: the `[defaults] no_match` answer.
    pub no_rate: Option<(u16, Box<str>)>,
}

/// A gateway of a trunk.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    /// As written: the route's `dst_uri` when the trunk has no proxy.
    pub uri: Box<str>,
    pub scheme: Box<str>,
    /// `host[:port][;params]`.
    pub host_rest: Box<str>,
    pub priority: u16,
    pub weight: u32,
    /// The normalised URI ([`crate::health::gateway_key`]): its key in a
    /// [`crate::GatewayState`].
    pub key: Box<str>,
    /// [`crate::health::key_hash`] of `key`.
    pub key_hash: u64,
    /// Most calls at once on this gateway (SPEC §9.2).
    pub calls: Option<u32>,
}

/// A compiled trunk; timers are already resolved against `[defaults]`.
#[derive(Debug, Clone)]
pub(crate) struct Trunk {
    pub name: Box<str>,
    /// Enabled gateways, sorted by priority (stable).
    pub gateways: Box<[Gateway]>,
    pub strip: u32,
    pub prefix: Box<str>,
    pub proxy: Option<Box<str>>,
    /// [`crate::health::gateway_key`] of `proxy`: what call events name
    /// every route of this trunk by.
    pub proxy_key: Option<Box<str>>,
    pub socket: Box<str>,
    pub fr_timer: u32,
    pub fr_inv_timer: u32,
    pub branch_flags: u32,
    pub headers: Box<[Template]>,
    /// `[trunks.NAME.health]` over `[defaults.health]` (SPEC §8).
    pub health: crate::health::HealthSettings,
    /// [`crate::health::key_hash`] of `name`, for load look-ups.
    pub name_hash: u64,
    /// `[trunks.NAME.limits]` (SPEC §9.2).
    pub limits: TrunkLimits,
    /// `[trunks.NAME.quality]` over `[defaults.quality]` (SPEC §9.3).
    pub quality: crate::quality::QualitySettings,
}

/// `[trunks.NAME.limits]`: `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TrunkLimits {
    pub calls: Option<u32>,
    pub cps: Option<u32>,
}

/// A rule as validated, with every condition (the reference evaluator's input,
/// and the table compiler's).
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    pub name: Box<str>,
    pub priority: i64,
    pub conds: Conds,
    pub action: u32,
    pub loc: Loc,
}

/// Where something was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: u32,
    pub line: u32,
    pub col: u32,
}

/// A rule of one table, by its place in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub(crate) u32);

impl RuleId {
    /// Its index in `0..table.rule_count()`, for per-rule arrays (such as
    /// hit counters) kept beside a table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// `[defaults]`, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub routing: Routing,
    pub fr_timer: u32,
    pub fr_inv_timer: u32,
    pub branch_flags: u32,
    pub max_routes: u32,
    pub no_match: (u16, Box<str>),
    pub timezone: jiff::tz::TimeZone,
    /// `[defaults.health]` (SPEC §8).
    pub health: crate::health::HealthSettings,
    /// Seconds of the call whose cost orders `then.lcr`.
    pub lcr_duration: u32,
    /// `[defaults.calls] max_duration` (SPEC §9.1).
    pub max_call_duration: std::time::Duration,
    /// `[defaults.quality]` (SPEC §9.3).
    pub quality: crate::quality::QualitySettings,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            routing: Routing::Serial,
            fr_timer: 0,
            fr_inv_timer: 0,
            branch_flags: 0,
            max_routes: 10,
            no_match: (404, "Not Found".into()),
            timezone: jiff::tz::TimeZone::UTC,
            health: crate::health::HealthSettings::default(),
            lcr_duration: 60,
            max_call_duration: std::time::Duration::from_secs(4 * 3600),
            quality: crate::quality::QualitySettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specificity_orders_as_the_spec_says() {
        let s = |priority, to, from, source, decl| Specificity {
            priority,
            to,
            from,
            source,
            decl,
        };
        let mut v = [
            s(100, 0, 0, 0, 0),
            s(100, user_spec::prefix(3), 0, 0, 5),
            s(100, user_spec::EXACT, 0, 0, 9),
            s(50, 0, 0, 0, 10),
            s(100, user_spec::prefix(3), user_spec::REGEX, 0, 6),
            s(100, user_spec::prefix(3), user_spec::REGEX, 25, 7),
            s(100, user_spec::prefix(2), user_spec::EXACT, 33, 1),
            s(100, user_spec::prefix(3), 0, 0, 4),
        ];
        v.sort();
        let decls: Vec<u32> = v.iter().map(|s| s.decl).collect();
        assert_eq!(decls, vec![10, 9, 7, 6, 4, 5, 1, 0]);
    }

    #[test]
    fn edits() {
        let q = crate::Query::default();
        let c = Candidate::new(&q);
        let e = Rewrite::Edit {
            strip: 1,
            prefix: "+44".into(),
            suffix: "".into(),
        };
        assert_eq!(e.apply("07700", &c, "r"), "+447700");
        assert_eq!(e.apply("", &c, "r"), "+44");
        let r = Rewrite::Regex {
            re: regex::Regex::new(r"^0(\d+)$").unwrap(),
            replace: "+44$1".into(),
        };
        assert_eq!(r.apply("0123", &c, "r"), "+44123");
        assert_eq!(r.apply("x123", &c, "r"), "x123");
        assert_eq!(r.try_apply("x123", &c, "r"), None);
        let re = regex::Regex::new(r"(?<d>\d)").unwrap();
        let replaced = |s: &str| re.replace(s, "<${d}$$>").into_owned();
        let r = Rewrite::Regex {
            re: re.clone(),
            replace: "<${d}$$>".into(),
        };
        for s in ["a1b2", "1", "ab"] {
            assert_eq!(r.apply(s, &c, "r"), replaced(s), "{s}");
        }
        assert_eq!(r.try_apply("", &c, "r"), None);
    }
}
