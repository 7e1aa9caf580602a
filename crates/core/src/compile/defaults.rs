//! `[defaults]`: the values every rule and trunk starts from.

use toml::Spanned;

use super::{Compiler, Parsed};
use crate::config::DefaultsDef;
use crate::diag::Severity;
use crate::rule::Defaults;
use crate::rule::Routing;
use crate::schedule;

impl Compiler<'_> {
    /// `[defaults]`, which may appear once across all files.
    pub(super) fn defaults(&mut self, parsed: &Parsed) -> Defaults {
        let mut def: Option<(usize, &Spanned<DefaultsDef>)> = None;
        for (i, f) in parsed {
            if let Some(d) = &f.defaults {
                if let Some((j, first)) = def {
                    let note = format!("first defined at {}", self.loc_text(&(j, first.span())));
                    self.push(
                        Severity::Error,
                        &(*i, d.span()),
                        "[defaults] is defined twice; it may appear once across all files".into(),
                        Some(note),
                    );
                } else {
                    def = Some((*i, d));
                }
            }
        }
        self.defaults_from(def)
    }

    fn defaults_from(&mut self, def: Option<(usize, &Spanned<DefaultsDef>)>) -> Defaults {
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
        d.health = self.health(i, def.health.as_ref(), &d.health);
        d.quality = self.quality(i, def.quality.as_ref(), &d.quality);
        if let Some(l) = &def.lcr_duration {
            match u32::try_from(*l.get_ref()) {
                Ok(v) if v <= 86_400 => d.lcr_duration = v,
                _ => self.err(
                    &(i, l.span()),
                    format!(
                        "lcr_duration must be the seconds of a call in 0..=86400, found {}",
                        l.get_ref()
                    ),
                ),
            }
        }
        d.max_call_duration = self.max_call_duration(i, def.calls.as_ref(), d.max_call_duration);
        if let Some(tz) = &def.timezone {
            match schedule::time_zone(tz.get_ref()) {
                Ok(z) => d.timezone = z,
                Err(e) => self.err(&(i, tz.span()), e),
            }
        }
        d
    }
}
