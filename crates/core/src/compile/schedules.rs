//! `[schedules.NAME]`: when a rule applies.

use toml::Spanned;

use super::names::Registry;
use super::{Compiler, Parsed};
use crate::config::ScheduleDef;
use crate::rule::Defaults;
use crate::schedule::{self, Schedule};

impl<'s> Compiler<'s> {
    /// Every schedule, by index (a failed one is `None`), and their names.
    pub(super) fn schedules<'p>(
        &mut self,
        parsed: &'p Parsed,
        defaults: &Defaults,
    ) -> (Vec<Option<Schedule>>, Registry<'p>) {
        self.define(
            parsed,
            "schedule",
            |f| &f.schedules,
            |c, i, _, def| c.schedule(i, def, defaults),
        )
    }

    fn schedule(
        &mut self,
        i: usize,
        def: &Spanned<ScheduleDef>,
        defaults: &Defaults,
    ) -> Option<Schedule> {
        let def = def.get_ref();
        let mut ok = true;
        let tz = match &def.timezone {
            Some(t) => match schedule::time_zone(t.get_ref()) {
                Ok(z) => z,
                Err(e) => {
                    self.err(&(i, t.span()), e);
                    ok = false;
                    defaults.timezone.clone()
                }
            },
            None => defaults.timezone.clone(),
        };
        let days = self.parse_each(i, &def.days, schedule::parse_days);
        let hours = self.parse_each(i, &def.hours, schedule::parse_hours);
        let except = self.parse_each(i, &def.except, schedule::parse_date);
        let (Some(days), Some(hours), Some(except)) = (days, hours, except) else {
            return None;
        };
        let days = days.into_iter().fold(0u8, |m, d| m | d);
        ok.then(|| Schedule::new(tz, days, hours, except))
    }

    /// Parses every string of an optional list; each bad one is an error at its
    /// own position. `None` if any failed.
    pub(super) fn parse_each<T, E: std::fmt::Display>(
        &mut self,
        i: usize,
        list: &Option<Vec<Spanned<String>>>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in list.iter().flatten() {
            match parse(item.get_ref()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.err(&(i, item.span()), e);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
