//! A rule's `then`: the trunks it routes to (with rewrites and headers), or
//! the reject it answers. Equal simple actions are interned, so a rate deck
//! of a million rules over a few trunks keeps a few actions.

use toml::Spanned;

use super::Compiler;
use super::rules::RuleCtx;
use super::values::regex_error;
use crate::config::{EditDef, PartyRewriteDef, ThenDef};
use crate::rule::{Action, PartyRewrite, Rewrite, Rewrites, RouteAction, Routing};

impl Compiler<'_> {
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

    pub(super) fn action(
        &mut self,
        i: usize,
        name: &str,
        then: &Spanned<ThenDef>,
        ctx: &mut RuleCtx<'_>,
    ) -> Option<u32> {
        if let Some(lcr) = self.lcr_action(i, name, then, ctx) {
            return lcr;
        }
        let t = then.get_ref();
        let at = (i, then.span());
        match (&t.trunks, &t.reject) {
            (Some(trunks), Some(r)) => {
                self.err(&(i, r.span()), format!("rule `{name}` has both then.trunks and then.reject; they are mutually exclusive"));
                // Keep validating both, so every problem shows in one pass.
                self.reject(i, r);
                self.route_action(i, name, then, trunks, ctx, None);
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
                if t.routing.is_some()
                    || t.rewrite.is_some()
                    || t.headers.is_some()
                    || t.no_capacity.is_some()
                {
                    self.err(&at, format!("rule `{name}` rejects; then.routing, then.rewrite, then.headers and then.no_capacity only apply to routed calls"));
                }
                let (code, reason) = self.reject(i, r)?;
                let key = format!("R{code}|{reason}");
                Some(ctx.intern(key, || Action::Reject { code, reason }))
            }
            (Some(trunks), None) => self.route_action(i, name, then, trunks, ctx, None),
        }
    }

    /// The action routing to `trunks` (`then.trunks`, or `then.lcr` with
    /// its `lcr` spec).
    pub(super) fn route_action(
        &mut self,
        i: usize,
        name: &str,
        then: &Spanned<ThenDef>,
        trunks: &Spanned<Vec<Spanned<String>>>,
        ctx: &mut RuleCtx<'_>,
        lcr: Option<Box<crate::rule::LcrSpec>>,
    ) -> Option<u32> {
        let t = then.get_ref();
        let at = (i, then.span());
        let mut ids = Vec::new();
        let key = if lcr.is_some() {
            "then.lcr"
        } else {
            "then.trunks"
        };
        self.non_empty(i, trunks, key, "list at least one trunk");
        for tn in trunks.get_ref() {
            if let Some(id) = self.lookup(i, ctx.trunk_ids, tn, ctx.parse_failed) {
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
        let no_capacity = t
            .no_capacity
            .as_ref()
            .and_then(|r| self.reject(i, r))
            .map(Box::new);
        let simple = rw.ruri_user.is_none()
            && rw.to.is_empty()
            && rw.from.is_empty()
            && headers.is_empty()
            && lcr.is_none()
            && no_capacity.is_none();
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
                lcr: lcr.clone(),
                no_capacity: no_capacity.clone(),
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
}
