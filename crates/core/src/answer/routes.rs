//! From a winning rule to the answer: the R-URI user after rewrites, each
//! trunk's gateways in SRV order with strip and prefix, rendered headers,
//! From/To rewrites, timers and `max_routes`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::Plan;
use super::decision::{Decision, Outcome, PartyHeader, RouteAnswer};
use super::health::last;
use super::order::{fnv1a, srv_order};
use crate::candidate::{Candidate, Party};
use crate::health::{GatewayState, GatewayStatus};
use crate::rule::{Action, PartyRewrite, RouteAction, Routing, RuleId};
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

impl Plan {
    /// The decision for `winner` (the rule, its name and its action), or
    /// the no-match answer.
    pub(crate) fn decide<'t>(
        &'t self,
        winner: Option<(RuleId, &'t str, u32)>,
        c: &Candidate<'_>,
        state: &GatewayState,
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
            };
        };
        let mut skipped = 0;
        let outcome = match &self.actions[action as usize] {
            Action::Reject { code, reason } => Outcome::Reject {
                code: *code,
                reason: Cow::Borrowed(reason),
                no_match: false,
            },
            Action::Route(ra) => self.routes(ra, name, c, state, now, &mut skipped),
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
        }
    }

    fn routes<'t>(
        &'t self,
        ra: &'t RouteAction,
        rule: &str,
        c: &Candidate<'_>,
        state: &GatewayState,
        now: SystemTime,
        skipped: &mut u32,
    ) -> Outcome<'t> {
        let rw = ra.rewrites.as_deref();
        let ruri_user = super::lcr::ruri_user(ra, c, rule);
        let (from, to) = match rw {
            Some(r) => (
                Arc::new(party_header(c.from(), &r.from, c, rule, skipped)),
                Arc::new(party_header(c.to(), &r.to, c, rule, skipped)),
            ),
            None => (self.no_rewrite.clone(), self.no_rewrite.clone()),
        };
        let serial = ra.routing == Routing::Serial;
        let max = self.defaults.max_routes as usize;
        // Routes of down gateways wait here and go last (see `health.rs`).
        let live = !state.is_empty();
        let mut late = Vec::new();
        let seed = fnv1a(c.call_id.as_bytes());
        let mut routes = Vec::with_capacity(4);
        let mut order = Vec::with_capacity(4);
        let mut user = String::new();
        // then.lcr: the priced trunks, cheapest first (SPEC §7).
        let mut priced = Vec::new();
        if let Some(spec) = &ra.lcr {
            self.lcr_order(ra, spec, &ruri_user, now, &mut priced);
            if priced.is_empty() {
                let (code, reason) = spec.no_rate.as_ref().unwrap_or(&self.defaults.no_match);
                return Outcome::Reject {
                    code: *code,
                    reason: Cow::Borrowed(reason),
                    no_match: false,
                };
            }
        }
        let mut plain = ra.trunks.iter().map(|&t| (t, None));
        let mut cheapest = priced.iter().map(|p| (p.trunk, Some(p)));
        let steps: &mut dyn Iterator<Item = (u32, Option<&super::lcr::Priced>)> =
            if ra.lcr.is_some() {
                &mut cheapest
            } else {
                &mut plain
            };
        'trunks: for (tid, price) in steps {
            let t = &self.trunks[tid as usize];
            user.clear();
            let rest = match ruri_user.char_indices().nth(t.strip as usize) {
                Some((i, _)) => &ruri_user[i..],
                None => "",
            };
            user.push_str(&t.prefix);
            user.push_str(rest);
            let mut lines = String::new();
            let rate = match price {
                Some(p) if serial && !(ra.headers.is_empty() && t.headers.is_empty()) => {
                    Some(self.rate_vars(p))
                }
                _ => None,
            };
            let rate = rate.as_ref().map_or(("", ""), |(r, p)| (*r, p.as_str()));
            if serial {
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
            }
            let extra: Arc<str> = if lines.is_empty() {
                self.no_extra.clone()
            } else {
                lines.into()
            };
            order.clear();
            // Seeded by Call-ID and trunk name: a trunk's order for a call does not
            // depend on which trunks come before it in the rule.
            srv_order(&t.gateways, seed ^ fnv1a(t.name.as_bytes()), &mut order);
            for &g in &order {
                if routes.len() == max {
                    break 'trunks;
                }
                let gw = &t.gateways[g];
                let down = live
                    && match state.status_of_gateway(gw.key_hash, &gw.key) {
                        GatewayStatus::Disabled => continue,
                        s => s == GatewayStatus::Down,
                    };
                let mut uri =
                    String::with_capacity(gw.scheme.len() + user.len() + gw.host_rest.len() + 2);
                uri.push_str(&gw.scheme);
                uri.push(':');
                if !user.is_empty() {
                    push_escaped_user(&mut uri, &user);
                    uri.push('@');
                }
                uri.push_str(&gw.host_rest);
                if uri.len() > MAX_URI {
                    return Outcome::Reject {
                        code: 414,
                        reason: Cow::Borrowed("Request-URI Too Long"),
                        no_match: false,
                    };
                }
                let r = RouteAnswer {
                    uri,
                    dst_uri: t.proxy.as_deref().unwrap_or(&gw.uri),
                    socket: &t.socket,
                    trunk: &t.name,
                    from: from.clone(),
                    to: to.clone(),
                    extra: extra.clone(),
                    branch_flags: t.branch_flags,
                    fr_timer: if serial { t.fr_timer } else { 0 },
                    fr_inv_timer: if serial { t.fr_inv_timer } else { 0 },
                };
                if down {
                    late.push(r);
                } else {
                    routes.push(r);
                }
            }
        }
        last(&mut routes, late, max);
        if routes.is_empty() {
            return Outcome::Reject {
                code: 503,
                reason: Cow::Borrowed("Service Unavailable"),
                no_match: false,
            };
        }
        Outcome::Route {
            routing: ra.routing,
            routes,
        }
    }
}
