//! A naive reference evaluator, for differential tests: it checks every rule
//! in turn with its full conditions and individual regexes, and returns the
//! rule with the smallest specificity. It shares validation with the real
//! table but none of its indexes. Test-only: `differential.rs` beside
//! it checks that the indexed table decides exactly like this scan.

use std::time::SystemTime;

use regex::Regex;

use crate::candidate::Candidate;
use crate::compile::Compiler;
use crate::rule::{Env, Field, RegexEval, RuleSpec, Specificity};
use crate::schedule::Schedule;
use crate::{Error, Query, Sources};

/// Rules kept as a flat list.
#[derive(Debug)]
pub struct ReferenceTable {
    rules: Vec<RuleSpec>,
    regexes: [Vec<Regex>; 3],
    schedules: Vec<Schedule>,
}

struct Singles<'a>(&'a [Vec<Regex>; 3]);

impl RegexEval for Singles<'_> {
    fn is_match(&mut self, field: Field, idx: u32, text: &str) -> bool {
        self.0[field as usize][idx as usize].is_match(text)
    }
}

impl ReferenceTable {
    /// Validates `sources` exactly as [`Sources::build`] does.
    ///
    /// # Errors
    /// [`Error::Config`] when the sources are invalid.
    pub fn build(sources: &Sources) -> Result<Self, Error> {
        let (v, rules) = Compiler::new(sources.root(), sources.raw(), 1).validated()?;
        let regexes = v.regex_patterns.map(|pats| {
            pats.iter()
                .map(|p| Regex::new(p).expect("validated regex"))
                .collect()
        });
        Ok(ReferenceTable {
            rules,
            regexes,
            schedules: v.schedules,
        })
    }

    /// The name of the winning rule, by linear scan.
    pub fn route(&self, query: &Query<'_>, now: SystemTime) -> Option<&str> {
        let c = Candidate::new(query);
        let env = Env {
            now,
            schedules: &self.schedules,
        };
        let mut rx = Singles(&self.regexes);
        let mut best: Option<(Specificity, &str)> = None;
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(parts) = r.conds.eval(&c, &env, &mut rx) {
                let s = Specificity::new(r.priority, parts, i as u32);
                if best.is_none_or(|(b, _)| s < b) {
                    best = Some((s, &r.name));
                }
            }
        }
        best.map(|(_, n)| n)
    }
}

#[cfg(test)]
mod differential;
