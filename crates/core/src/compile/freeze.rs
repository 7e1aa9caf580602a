//! The last step: file every rule under its most selective indexable
//! condition and freeze the table.
//!
//! A rule goes into exactly one index (exact user, user prefix, source
//! network, one regex of a field's set, or the short always-list); the
//! conditions that index does not prove stay on the rule for the final
//! check. [`RouteTable::route`] then only looks at rules an index returned.

use regex::RegexSetBuilder;

use super::Validated;
use crate::answer::Plan;
use crate::diag::Diagnostics;
use crate::matcher::ip::SourceIndex;
use crate::matcher::prefix::StrIndexBuilder;
use crate::rule::{Conds, Field, RuleSpec, UserConds};
use crate::table::{Indexes, Regexes, RouteTable, Rule};

/// Why a valid configuration still could not be frozen.
#[derive(Debug, thiserror::Error)]
pub(super) enum FreezeError {
    #[error("the {field} regexes together are too large: {source}")]
    RegexSet {
        field: &'static str,
        #[source]
        source: regex::Error,
    },
}

/// One regex set per field.
fn regex_sets(patterns: &[Vec<String>; 3]) -> Result<Regexes, FreezeError> {
    let mut r = Regexes::default();
    for f in Field::ALL {
        let pats = &patterns[f as usize];
        if pats.is_empty() {
            continue;
        }
        let set = RegexSetBuilder::new(pats)
            .dfa_size_limit(32 << 20)
            .size_limit(256 << 20)
            .build()
            .map_err(|source| FreezeError::RegexSet {
                field: f.name(),
                source,
            })?;
        r.sets[f as usize] = Some(set);
    }
    Ok(r)
}

/// Builds the table from the validated parts and the rules (borrowed:
/// the compiler's shadow check may be reading them meanwhile).
pub(super) fn freeze(
    v: Validated,
    specs: &[RuleSpec],
    version: String,
) -> Result<RouteTable, FreezeError> {
    let regexes = regex_sets(&v.regex_patterns)?;
    let mut names = String::new();
    let mut rules = Vec::with_capacity(specs.len());
    let mut locs = Vec::with_capacity(specs.len());
    let mut exact: [StrIndexBuilder; 3] = Default::default();
    let mut prefix: [StrIndexBuilder; 3] = Default::default();
    let mut source = SourceIndex::default();
    let mut regex: [Vec<Vec<u32>>; 3] = v.regex_patterns.clone().map(|p| vec![Vec::new(); p.len()]);
    let mut always = Vec::new();
    for (id, spec) in specs.iter().enumerate() {
        let id = id as u32;
        let c = &spec.conds;
        let u = Field::ALL.map(|f| c.user(f));
        // File the rule under its most selective indexable condition,
        // and keep the rest of its conditions for the final check.
        let mut rest = Conds {
            source: None,
            ports: c.ports.clone(),
            transports: c.transports,
            auth: c.auth,
            users: Default::default(),
            schedule: c.schedule,
        };
        let mut skip: Option<(Field, u8)> = None;
        if let Some(f) = [Field::To, Field::Ruri, Field::From]
            .into_iter()
            .find(|f| u[*f as usize].exact.is_some())
        {
            for k in u[f as usize].exact.iter().flatten() {
                exact[f as usize].push(k, id);
            }
            skip = Some((f, 0));
        } else if let Some(f) = [Field::To, Field::Ruri, Field::From]
            .into_iter()
            .find(|f| u[*f as usize].prefix.is_some())
        {
            for k in u[f as usize].prefix.iter().flatten() {
                prefix[f as usize].push(k, id);
            }
            skip = Some((f, 1));
        } else if let Some(nets) = &c.source {
            for n in nets.iter() {
                source.insert(*n, id);
            }
        } else if let Some(f) = Field::ALL
            .into_iter()
            .find(|f| u[*f as usize].regex.is_some())
        {
            let p = u[f as usize].regex.unwrap_or_default();
            regex[f as usize][p as usize].push(id);
            skip = Some((f, 2));
        } else {
            always.push(id);
        }
        if skip.is_some() {
            rest.source.clone_from(&c.source);
        }
        for f in Field::ALL {
            let src = u[f as usize];
            let skipped = |kind| skip == Some((f, kind));
            let dst = UserConds {
                exact: if skipped(0) { None } else { src.exact.clone() },
                prefix: if skipped(1) { None } else { src.prefix.clone() },
                regex: if skipped(2) { None } else { src.regex },
                length: src.length,
                domain: src.domain.clone(),
            };
            rest.set_user(f, dst);
        }
        let name_off = names.len() as u32;
        names.push_str(&spec.name);
        rules.push(Rule {
            name_off,
            name_len: spec.name.len() as u32,
            action: spec.action,
            priority: spec.priority,
            conds: (!rest.is_empty()).then(|| Box::new(rest)),
        });
        locs.push(spec.loc);
    }
    let finish = |b: StrIndexBuilder| (!b.is_empty()).then(|| b.build());
    let [e0, e1, e2] = exact;
    let [p0, p1, p2] = prefix;
    let idx = Indexes {
        exact: [finish(e0), finish(e1), finish(e2)],
        prefix: [finish(p0), finish(p1), finish(p2)],
        source: (!source.is_empty()).then_some(source),
        regex: regex.map(|per| per.into_iter().map(Vec::into_boxed_slice).collect()),
        always: always.into(),
    };
    Ok(RouteTable {
        rules: rules.into(),
        names: names.into(),
        locs: locs.into(),
        plan: Plan::new(v.actions, v.trunks, v.defaults)
            .with_decks(v.decks.decks, v.decks.trunk_deck),
        schedules: v.schedules.into(),
        regexes,
        idx,
        files: v.files.into(),
        tests: v.tests.into(),
        gateways_by_key: {
            let mut ix: Vec<u32> = (0..v.gateways.len() as u32).collect();
            ix.sort_by(|&a, &b| v.gateways[a as usize].key.cmp(&v.gateways[b as usize].key));
            ix.into()
        },
        gateways: v.gateways.into(),
        warnings: Diagnostics::default(),
        version: version.into(),
    })
}
