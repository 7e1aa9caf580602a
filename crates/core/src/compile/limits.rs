//! `[trunks.NAME.limits]`, a gateway's `calls` and `[defaults.calls]`
//! (SPEC §9.1, §9.2): how many calls a carrier takes, and how long a call
//! record may go without news.

use std::time::Duration;

use toml::Spanned;

use super::{At, Compiler};
use crate::config::{CallsDef, LimitsDef};
use crate::rule::TrunkLimits;

/// The largest `calls` or `cps` accepted: far above any carrier's
/// capacity, and a typo's extra zeros stay below `u32`.
const MAX_LIMIT: i64 = 10_000_000;

impl Compiler<'_> {
    /// A trunk's `limits` table; an invalid value is reported and left unset.
    pub(super) fn limits(&mut self, i: usize, def: Option<&Spanned<LimitsDef>>) -> TrunkLimits {
        let Some(def) = def else {
            return TrunkLimits::default();
        };
        let d = def.get_ref();
        let mut one = |v: &Option<Spanned<i64>>, what: &str| {
            let v = v.as_ref()?;
            self.limit_value(&(i, v.span()), *v.get_ref(), what)
        };
        let limits = TrunkLimits {
            calls: one(&d.calls, "limits.calls"),
            cps: one(&d.cps, "limits.cps"),
        };
        if d.calls.is_none() && d.cps.is_none() {
            self.warn(
                &(i, def.span()),
                "limits is empty: set calls = N (calls at once) and/or cps = N (new calls per second)"
                    .to_string(),
                None,
            );
        }
        limits
    }

    /// One `calls`/`cps` value: a whole number in 1..=10000000.
    pub(super) fn limit_value(&mut self, at: &At, v: i64, what: &str) -> Option<u32> {
        if (1..=MAX_LIMIT).contains(&v) {
            Some(v as u32)
        } else if v == 0 {
            self.err(at, format!("{what} = 0 would leave it out of every answer; a limit is a count in 1..={MAX_LIMIT} (to drain a gateway, set enabled = false)"));
            None
        } else {
            self.err(
                at,
                format!("{what} must be a count in 1..={MAX_LIMIT}, found {v}"),
            );
            None
        }
    }

    /// `[defaults.calls] max_duration`, or the default of 4 hours.
    pub(super) fn max_call_duration(
        &mut self,
        i: usize,
        def: Option<&Spanned<CallsDef>>,
        cur: Duration,
    ) -> Duration {
        let Some(m) = def.and_then(|d| d.get_ref().max_duration.as_ref()) else {
            return cur;
        };
        match self.duration_value(&(i, m.span()), m.get_ref(), "calls.max_duration") {
            Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(7 * 86_400) => d,
            Some(d) => {
                self.err(
                    &(i, m.span()),
                    format!(
                        "calls.max_duration must be between 1s and 7 days, found {}",
                        humantime::format_duration(d)
                    ),
                );
                cur
            }
            None => cur,
        }
    }

    /// A duration written like `"4h"`, `"15m"` or `"8s"`.
    pub(super) fn duration_value(&mut self, at: &At, text: &str, what: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    at,
                    format!("{what} must be a duration such as \"90s\", \"15m\" or \"4h\", found {text:?} ({e})"),
                );
                None
            }
        }
    }
}
