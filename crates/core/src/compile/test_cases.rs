//! `[[tests]]`: sample queries and what they must be answered, validated
//! here and run by [`crate::RouteTable::run_tests`].

use toml::Spanned;

use super::names::{Registry, RuleNames};
use super::values::parse_time;
use super::{Compiler, Parsed};
use crate::Query;
use crate::config::TestDef;
use crate::health::{GatewayInfo, gateway_key};
use crate::table::{Expect, TestCase};

impl Compiler<'_> {
    /// Every valid test, in file order.
    pub(super) fn test_cases(
        &mut self,
        parsed: &Parsed,
        rule_names: &RuleNames,
        gateways: &[GatewayInfo],
        trunks: &Registry<'_>,
    ) -> Vec<TestCase> {
        let mut tests = Vec::new();
        for (i, f) in parsed {
            for t in &f.tests {
                if let Some(tc) = self.test(*i, t, rule_names, gateways, trunks) {
                    tests.push(tc);
                }
            }
        }
        tests
    }

    fn test(
        &mut self,
        i: usize,
        t: &Spanned<TestDef>,
        rule_names: &RuleNames,
        gateways: &[GatewayInfo],
        trunks: &Registry<'_>,
    ) -> Option<TestCase> {
        let def = t.get_ref();
        let errors_before = self.error_count();
        let json = match serde_json::to_vec(def.query.get_ref()) {
            Ok(j) => j,
            Err(e) => {
                self.err(
                    &(i, def.query.span()),
                    format!("test query cannot be encoded as JSON: {e}"),
                );
                return None;
            }
        };
        // On a bad query, keep checking the rest of the test.
        let query = match Query::from_json(&json) {
            Ok(q) => q.into_owned(),
            Err(e) => {
                self.err(
                    &(i, def.query.span()),
                    format!("test query is not a valid query: {e}"),
                );
                Query::default()
            }
        };
        let at = match &def.at {
            Some(a) => match parse_time(a.get_ref()) {
                Ok(ts) => Some(ts),
                Err(e) => {
                    self.err(&(i, a.span()), e);
                    None
                }
            },
            None => None,
        };
        let e = def.expect.get_ref();
        if let Some(r) = &e.rule
            && !rule_names.contains(r.get_ref())
        {
            self.err(
                &(i, r.span()),
                format!(
                    "expect.rule names rule `{}`, which is not defined",
                    r.get_ref()
                ),
            );
        }
        if let Some(code) = &e.reject {
            if !(400..=699).contains(code.get_ref()) {
                self.err(
                    &(i, code.span()),
                    format!(
                        "expect.reject must be a SIP code in 400..=699, found {}",
                        code.get_ref()
                    ),
                );
            }
            if e.routes.is_some() || e.ruri.is_some() {
                self.err(
                    &(i, def.expect.span()),
                    "expect.reject cannot be combined with expect.routes or expect.ruri",
                );
            }
        }
        if e.rule.is_none() && e.routes.is_none() && e.ruri.is_none() && e.reject.is_none() {
            self.err(
                &(i, def.expect.span()),
                "expect is empty; expected at least one of rule, routes, ruri, reject",
            );
        }
        let mut down = Vec::new();
        for u in def.down.iter().flatten() {
            match gateway_key(u.get_ref()) {
                Ok(k) if gateways.iter().any(|g| g.key == k) => down.push(k),
                Ok(_) => self.err(
                    &(i, u.span()),
                    format!(
                        "down names {:?}, which no trunk lists as a gateway",
                        u.get_ref()
                    ),
                ),
                Err(e) => self.err(&(i, u.span()), format!("down: {e}")),
            }
        }
        let mut poor = Vec::new();
        for p in def.poor.iter().flatten() {
            let (uri, group) = match p.get_ref().split_once('@') {
                Some((u, g)) => (u, g),
                None => (p.get_ref().as_str(), crate::live::ANY_GROUP),
            };
            match gateway_key(uri) {
                Ok(k) if gateways.iter().any(|g| g.key == k) => poor.push((k, group.to_owned())),
                Ok(_) => self.err(
                    &(i, p.span()),
                    format!("poor names {uri:?}, which no trunk lists as a gateway"),
                ),
                Err(e) => self.err(&(i, p.span()), format!("poor: {e}")),
            }
        }
        let mut load = Vec::new();
        for (trunk, calls) in def.load.iter().flatten() {
            if trunks.get(trunk.get_ref()).is_none() {
                self.err(
                    &(i, trunk.span()),
                    format!(
                        "load names trunk `{}`, which is not defined",
                        trunk.get_ref()
                    ),
                );
            }
            match u32::try_from(*calls.get_ref()) {
                Ok(n) => load.push((trunk.get_ref().clone(), n)),
                Err(_) => self.err(
                    &(i, calls.span()),
                    format!(
                        "load.{} must be a number of calls >= 0, found {}",
                        trunk.get_ref(),
                        calls.get_ref()
                    ),
                ),
            }
        }
        if self.error_count() != errors_before {
            return None;
        }
        let (file, _, _, line, _) = self.resolve(&(i, t.span()));
        let path = file.path.clone();
        Some(TestCase {
            name: def.name.get_ref().clone(),
            location: format!("{path}:{line}"),
            query,
            at,
            down,
            load,
            poor,
            expect: Expect {
                rule: e.rule.as_ref().map(|r| r.get_ref().clone()),
                routes: e.routes.clone(),
                ruri: e.ruri.clone(),
                reject: e.reject.as_ref().map(|c| *c.get_ref() as u16),
            },
        })
    }
}
