//! `then.lcr`, `then.max_rate` and `then.no_rate` (SPEC §7): a rule that
//! orders its trunks by the price of the call.

use toml::Spanned;

use super::Compiler;
use super::rules::RuleCtx;
use crate::config::ThenDef;
use crate::rule::LcrSpec;

impl Compiler<'_> {
    /// The action of a rule with `then.lcr`: `None` when the rule has no
    /// LCR keys (the caller goes on with trunks or reject), else the result.
    pub(super) fn lcr_action(
        &mut self,
        i: usize,
        name: &str,
        then: &Spanned<ThenDef>,
        ctx: &mut RuleCtx<'_>,
    ) -> Option<Option<u32>> {
        let t = then.get_ref();
        let Some(lcr) = &t.lcr else {
            for (key, span) in [
                ("then.max_rate", t.max_rate.as_ref().map(|m| m.span())),
                ("then.no_rate", t.no_rate.as_ref().map(|m| m.span())),
            ] {
                if let Some(span) = span {
                    self.err(
                        &(i, span),
                        format!("rule `{name}`: {key} only applies with then.lcr = [...] (least-cost routing)"),
                    );
                }
            }
            return None;
        };
        let lcr: &Spanned<Vec<Spanned<String>>> = lcr;
        let mut ok = true;
        if let Some(trunks) = &t.trunks {
            self.err(
                &(i, trunks.span()),
                format!("rule `{name}` has both then.trunks and then.lcr; use then.lcr alone: it lists the trunks and orders them by price"),
            );
            ok = false;
        }
        if let Some(r) = &t.reject {
            self.err(
                &(i, r.span()),
                format!("rule `{name}` has both then.lcr and then.reject; they are mutually exclusive (then.no_rate is the answer when no trunk has a price)"),
            );
            ok = false;
        }
        let max_rate = match &t.max_rate {
            Some(m) => {
                let v = *m.get_ref();
                if !v.is_finite() || !(0.0..1e9).contains(&v) {
                    self.err(
                        &(i, m.span()),
                        format!("then.max_rate must be a rate per minute >= 0, found {v}"),
                    );
                    ok = false;
                    None
                } else {
                    Some((v * 1e9).round() as u64)
                }
            }
            None => None,
        };
        let no_rate = match &t.no_rate {
            Some(r) => {
                let r = self.reject(i, r);
                ok &= r.is_some();
                r
            }
            None => None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for tn in lcr.get_ref() {
            let n = tn.get_ref().as_str();
            if seen.contains(&n) {
                self.err(&(i, tn.span()), format!("then.lcr names trunk `{n}` twice"));
                ok = false;
            }
            seen.push(n);
            if let Some((id, _)) = ctx.trunk_ids.get(n)
                && !ctx.rated.get(*id as usize).copied().unwrap_or(true)
            {
                self.err(
                    &(i, tn.span()),
                    format!("trunk `{n}` in then.lcr has no rate deck; give [trunks.{n}] a rates = \"rates/{n}.csv\" (or list it in then.trunks)"),
                );
                ok = false;
            }
        }
        let spec = Box::new(LcrSpec { max_rate, no_rate });
        let action = self.route_action(i, name, then, lcr, ctx, Some(spec));
        Some(if ok { action } else { None })
    }
}
