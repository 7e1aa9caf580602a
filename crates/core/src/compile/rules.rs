//! `[[rules]]`: names, priorities and `match` conditions. `then` is in
//! `actions.rs`.

use hashbrown::HashMap;
use toml::Spanned;

use super::names::{Registry, RuleNames};
use super::values::{parse_net, parse_range, regex_error};
use super::{At, Compiler};
use crate::config::{RuleDef, UserMatchDef};
use crate::diag::Severity;
use crate::rule::Defaults;
use crate::rule::{Action, Conds, DomainPat, Field, RuleSpec, Trunk, UserConds};

/// The rules lowered so far: every enabled, valid rule with the location of
/// its `[[rules]]` table, and the names of all rules.
pub(super) struct Lowered {
    pub(super) rules: Vec<RuleSpec>,
    pub(super) ats: Vec<At>,
    pub(super) names: RuleNames,
}

impl Lowered {
    pub(super) fn with_capacity(n: usize) -> Self {
        Lowered {
            rules: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
            names: RuleNames::with_capacity(n),
        }
    }
}

impl<'s> Compiler<'s> {
    /// Lowers the `[[rules]]` of unit `i` into `out`, in order; each parsed
    /// rule is freed as soon as it is lowered.
    pub(super) fn unit_rules(
        &mut self,
        i: usize,
        defs: Vec<Spanned<RuleDef>>,
        out: &mut Lowered,
        ctx: &mut RuleCtx<'_>,
    ) {
        for r in defs {
            let name = r.get_ref().name.get_ref();
            let at = (i, r.get_ref().name.span());
            if let Err(first) = out.names.insert(name, at.clone()) {
                let note = format!("first defined at {}", self.loc_text(&first));
                self.push(
                    Severity::Error,
                    &at,
                    format!("rule `{name}` is defined twice"),
                    Some(note),
                );
                continue;
            }
            if let Some(spec) = self.rule(i, &r, ctx) {
                out.rules.push(spec);
                out.ats.push((i, r.span()));
            }
        }
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
        for (f, def) in [
            (Field::To, &m.to),
            (Field::From, &m.from),
            (Field::Ruri, &m.ruri),
        ] {
            let u = self.user_conds(i, f, def.as_deref(), ctx);
            conds.set_user(f, u);
        }
        if let Some(s) = &m.schedule
            && let Some(id) = self.lookup(i, ctx.schedule_ids, s, ctx.parse_failed)
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
}

/// What validating a rule needs from earlier steps, and what rules
/// collect as they go: interned actions, regex patterns, used names.
pub(super) struct RuleCtx<'a> {
    pub(super) trunk_ids: &'a Registry<'a>,
    pub(super) schedule_ids: &'a Registry<'a>,
    pub(super) defaults: &'a Defaults,
    pub(super) trunks: &'a [Option<Trunk>],
    pub(super) parse_failed: bool,
    regex_patterns: [Vec<String>; 3],
    regex_ids: [HashMap<String, u32>; 3],
    pub(super) actions: Vec<Action>,
    action_ids: HashMap<String, u32>,
    pub(super) used_trunks: Vec<bool>,
    pub(super) used_schedules: Vec<bool>,
    /// By trunk id: whether the trunk has a rate deck (`then.lcr` needs one).
    pub(super) rated: Vec<bool>,
}

impl<'a> RuleCtx<'a> {
    pub(super) fn new(
        trunk_ids: &'a Registry<'a>,
        schedule_ids: &'a Registry<'a>,
        defaults: &'a Defaults,
        trunks: &'a [Option<Trunk>],
        schedules: usize,
        parse_failed: bool,
    ) -> Self {
        RuleCtx {
            trunk_ids,
            schedule_ids,
            defaults,
            trunks,
            parse_failed,
            regex_patterns: Default::default(),
            regex_ids: Default::default(),
            actions: Vec::new(),
            action_ids: HashMap::new(),
            used_trunks: vec![false; trunks.len()],
            used_schedules: vec![false; schedules],
            rated: Vec::new(),
        }
    }

    /// The index of an action equal to the one `key` names, made on first use.
    pub(super) fn intern(&mut self, key: String, make: impl FnOnce() -> Action) -> u32 {
        let actions = &mut self.actions;
        *self.action_ids.entry(key).or_insert_with(|| {
            actions.push(make());
            (actions.len() - 1) as u32
        })
    }

    /// The actions and the regex patterns of every field.
    pub(super) fn finish(self) -> (Vec<Action>, [Vec<String>; 3]) {
        (self.actions, self.regex_patterns)
    }
}
