//! From a winning rule to the answer: the R-URI user after rewrites, the
//! slots in static order, the live pipeline (`pipeline.rs`) and the
//! `max_routes` cut, then each surviving route rendered: strip and prefix,
//! headers (once per trunk), From/To rewrites and timers.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::Plan;
use super::decision::{Decision, Outcome, PartyHeader, RouteAnswer};
use super::lcr::Priced;
use super::order::{fnv1a, srv_order};
use super::pipeline::{LeftOut, Slot, Steps, down_last, leave_out, poor_behind};
use crate::candidate::{Candidate, Party};
use crate::live::Live;
use crate::rule::{Action, PartyRewrite, RouteAction, Routing, RuleId, Trunk};
use crate::sip::MAX_URI;
use crate::uri::{is_sendable_uri, push_escaped_user, quote_display, replace_user, strip_ctl};

/// The From or To of a routed answer; `skipped` counts a URI rewrite whose
/// result may not be sent (see [`Decision::skipped_rewrites`]).
fn party_header(
    p: &Party<'_>,
    rw: &PartyRewrite,
    c: &Candidate<'_>,
    rule: &str,
    skipped: &mut u32,
) -> PartyHeader {
    // A rewrite that does not apply (a regex without a match) leaves its
    // part `""` (keep), so the caller's value reaches the callee untouched.
    let display = rw
        .display
        .as_ref()
        .and_then(|r| r.try_apply(&p.display, c, rule))
        .map(|d| quote_display(&d))
        .unwrap_or_default();
    let base = rw
        .uri
        .as_ref()
        .and_then(|r| r.try_apply(p.uri, c, rule))
        .map(|u| strip_ctl(&u).trim().to_owned());
    let user = rw.user.as_ref().and_then(|r| r.try_apply(&p.user, c, rule));
    let applied = user.is_some() || base.is_some();
    let mut uri = match user {
        Some(u) => replace_user(base.as_deref().unwrap_or(p.uri), &u).unwrap_or_default(),
        None => base.unwrap_or_default(),
    };
    // Only a rewrite that applied pays for the check.
    if applied && !is_sendable_uri(&uri) {
        if p.present || !uri.is_empty() {
            *skipped += 1;
        }
        uri.clear();
    }
    PartyHeader { display, uri }
}

/// The trunks of one decision, in static order (the rule's, or cheapest
/// first), with each one's destination group.
/// Borrowed from the rule for `then.trunks` (no allocation), or the priced
/// list for `then.lcr`, whose groups are `rule@prefix`.
struct Trunks<'t, 'p> {
    plan: &'t Plan,
    rule: &'t str,
    plain: &'t [u32],
    priced: &'p [Priced],
    groups: Vec<String>,
}

impl<'t> Trunks<'t, '_> {
    fn len(&self) -> usize {
        if self.priced.is_empty() {
            self.plain.len()
        } else {
            self.priced.len()
        }
    }

    /// The trunk id and, for LCR, its price.
    fn id(&self, step: u32) -> (u32, Option<&Priced>) {
        match self.priced.get(step as usize) {
            Some(p) => (p.trunk, Some(p)),
            None => (self.plain[step as usize], None),
        }
    }

    fn group_cow(&self, step: u32) -> Cow<'t, str> {
        match self.groups.get(step as usize) {
            Some(g) => Cow::Owned(g.clone()),
            None => Cow::Borrowed(self.rule),
        }
    }
}

impl<'t> Steps<'t> for Trunks<'t, '_> {
    fn trunk(&self, step: u32) -> &'t Trunk {
        &self.plan.trunks[self.id(step).0 as usize]
    }
    fn group(&self, step: u32) -> &str {
        self.groups
            .get(step as usize)
            .map_or(self.rule, String::as_str)
    }
}

impl Plan {
    /// The decision for `winner` (the rule, its name and its action), or
    /// the no-match answer.
    pub(crate) fn decide<'t>(
        &'t self,
        winner: Option<(RuleId, &'t str, u32)>,
        c: &Candidate<'_>,
        live: &Live,
        now: SystemTime,
    ) -> Decision<'t> {
        let Some((id, name, action)) = winner else {
            let (code, reason) = &self.defaults.no_match;
            return Decision {
                rule_id: None,
                rule: None,
                outcome: Outcome::Reject {
                    code: *code,
                    reason: Cow::Borrowed(reason),
                    no_match: true,
                },
                skipped_rewrites: 0,
                left_out: Vec::new(),
            };
        };
        let mut skipped = 0;
        let mut left_out = Vec::new();
        let outcome = match &self.actions[action as usize] {
            Action::Reject { code, reason } => Outcome::Reject {
                code: *code,
                reason: Cow::Borrowed(reason),
                no_match: false,
            },
            Action::Route(ra) => self.routes(ra, name, c, live, now, &mut skipped, &mut left_out),
        };
        Decision {
            rule_id: Some(id),
            rule: Some(name),
            // A reject (414, 503) sends no headers, so nothing was skipped.
            skipped_rewrites: if matches!(outcome, Outcome::Route { .. }) {
                skipped
            } else {
                0
            },
            outcome,
            left_out,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn routes<'t>(
        &'t self,
        ra: &'t RouteAction,
        rule: &'t str,
        c: &Candidate<'_>,
        live: &Live,
        now: SystemTime,
        skipped: &mut u32,
        left_out: &mut Vec<LeftOut<'t>>,
    ) -> Outcome<'t> {
        let rw = ra.rewrites.as_deref();
        let ruri_user = super::lcr::ruri_user(ra, c, rule);
        // 1. The static order: the trunks (cheapest first for then.lcr),
        // each one's gateways in SRV order.
        let mut priced = Vec::new();
        if let Some(spec) = &ra.lcr {
            self.lcr_order(ra, spec, &ruri_user, now, &mut priced);
            if priced.is_empty() {
                let (code, reason) = spec.no_rate.as_ref().unwrap_or(&self.defaults.no_match);
                return reject(*code, reason);
            }
        }
        let trunks = Trunks {
            plan: self,
            rule,
            plain: &ra.trunks,
            groups: priced
                .iter()
                .map(|p| format!("{rule}@{}", self.rate_vars(p).1))
                .collect(),
            priced: &priced,
        };
        let seed = fnv1a(c.call_id.as_bytes());
        let mut slots = Vec::with_capacity(4);
        let mut order = Vec::with_capacity(4);
        for step in 0..trunks.len() {
            let t = trunks.trunk(step as u32);
            order.clear();
            // Seeded by Call-ID and trunk name: a trunk's order for a call does not
            // depend on which trunks come before it in the rule.
            srv_order(&t.gateways, seed ^ fnv1a(t.name.as_bytes()), &mut order);
            slots.extend(order.iter().map(|&g| Slot {
                step: step as u32,
                gw: g as u32,
            }));
        }
        // 2–4. What live facts change (pipeline.rs), then 5. the cut.
        leave_out(&mut slots, &trunks, live, left_out);
        poor_behind(&mut slots, &trunks, live);
        down_last(&mut slots, &trunks, live);
        slots.truncate(self.defaults.max_routes as usize);
        if slots.is_empty() {
            if !left_out.is_empty() {
                return match ra.no_capacity.as_deref() {
                    Some((code, reason)) => reject(*code, reason),
                    None => reject(503, "All Trunks Busy"),
                };
            }
            return reject(503, "Service Unavailable");
        }
        let (from, to) = match rw {
            Some(r) => (
                Arc::new(party_header(c.from(), &r.from, c, rule, skipped)),
                Arc::new(party_header(c.to(), &r.to, c, rule, skipped)),
            ),
            None => (self.no_rewrite.clone(), self.no_rewrite.clone()),
        };
        let serial = ra.routing == Routing::Serial;
        // The R-URI user and headers of the trunk of the previous slot: a
        // trunk's slots are usually together, so they are rendered once
        // (again only when the pipeline moved a route between them).
        let mut last: Option<(u32, String, Arc<str>)> = None;
        let mut routes = Vec::with_capacity(slots.len());
        for s in &slots {
            let (tid, price) = trunks.id(s.step);
            let t = &self.trunks[tid as usize];
            if last.as_ref().is_none_or(|l| l.0 != s.step) {
                let user = trunk_user(&ruri_user, t);
                let extra = self.extra_headers(ra, t, price, serial, c, rule);
                last = Some((s.step, user, extra));
            }
            let Some((_, user, extra)) = &last else {
                continue;
            };
            let gw = &t.gateways[s.gw as usize];
            let mut uri =
                String::with_capacity(gw.scheme.len() + user.len() + gw.host_rest.len() + 2);
            uri.push_str(&gw.scheme);
            uri.push(':');
            if !user.is_empty() {
                push_escaped_user(&mut uri, user);
                uri.push('@');
            }
            uri.push_str(&gw.host_rest);
            if uri.len() > MAX_URI {
                return reject(414, "Request-URI Too Long");
            }
            routes.push(RouteAnswer {
                uri,
                dst_uri: t.proxy.as_deref().unwrap_or(&gw.uri),
                socket: &t.socket,
                trunk: &t.name,
                gateway: &gw.key,
                dst_key: t.proxy_key.as_deref().unwrap_or(&gw.key),
                group: trunks.group_cow(s.step),
                from: from.clone(),
                to: to.clone(),
                extra: extra.clone(),
                branch_flags: t.branch_flags,
                fr_timer: if serial { t.fr_timer } else { 0 },
                fr_inv_timer: if serial { t.fr_inv_timer } else { 0 },
            });
        }
        Outcome::Route {
            routing: ra.routing,
            routes,
        }
    }

    /// The rule's and the trunk's header lines, rendered (serial only).
    fn extra_headers(
        &self,
        ra: &RouteAction,
        t: &Trunk,
        price: Option<&Priced>,
        serial: bool,
        c: &Candidate<'_>,
        rule: &str,
    ) -> Arc<str> {
        if !serial || (ra.headers.is_empty() && t.headers.is_empty()) {
            return self.no_extra.clone();
        }
        let rate = price.map(|p| self.rate_vars(p));
        let rate = rate.as_ref().map_or(("", ""), |(r, p)| (*r, p.as_str()));
        let mut lines = String::new();
        for h in ra.headers.iter().chain(t.headers.iter()) {
            let start = lines.len();
            h.render_priced(&mut lines, c, rule, &t.name, rate);
            // SPEC §4.3: a header whose value renders empty is left
            // out, not sent empty. The name is a literal SIP token
            // (checked at load), so the first `:` ends it.
            let value = lines[start..].split_once(':').map_or("", |(_, v)| v);
            if value.trim_matches([' ', '\t']).is_empty() {
                lines.truncate(start);
            } else {
                lines.push_str("\r\n");
            }
        }
        if lines.is_empty() {
            self.no_extra.clone()
        } else {
            lines.into()
        }
    }
}

/// The R-URI user for a trunk: its `strip`, then its `prefix`.
fn trunk_user(ruri_user: &str, t: &Trunk) -> String {
    let rest = match ruri_user.char_indices().nth(t.strip as usize) {
        Some((i, _)) => &ruri_user[i..],
        None => "",
    };
    let mut user = String::with_capacity(t.prefix.len() + rest.len());
    user.push_str(&t.prefix);
    user.push_str(rest);
    user
}

fn reject(code: u16, reason: &str) -> Outcome<'_> {
    Outcome::Reject {
        code,
        reason: Cow::Borrowed(reason),
        no_match: false,
    }
}
