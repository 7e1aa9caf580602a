//! Warnings that need the whole configuration: rules that can never win,
//! ties that only declaration order breaks, and names nothing uses.

use std::hash::BuildHasher as _;

use hashbrown::{HashMap, HashTable};
use ipnet::IpNet;

use super::names::Registry;
use super::rules::RuleCtx;
use super::{At, Compiler};
use crate::rule::{Conds, Field, RuleSpec, Trunk};

/// Warnings found by a check step: where, and what.
type Found = Vec<(At, String)>;

/// `` `name` (file:line:col) `` of a rule, by index.
type LocFn<'a> = dyn Fn(usize) -> String + Sync + 'a;

impl Compiler<'_> {
    /// Trunks and schedules that no rule names.
    pub(super) fn unused(
        &mut self,
        ctx: &RuleCtx<'_>,
        trunks: &[Option<Trunk>],
        trunk_ids: &Registry<'_>,
        schedule_ids: &Registry<'_>,
    ) {
        let mut unused: Vec<(&str, &At, &str)> = Vec::new();
        for (name, id, at) in trunk_ids.iter() {
            if !ctx.used_trunks[id as usize] && trunks[id as usize].is_some() {
                unused.push((name, at, "trunk"));
            }
        }
        for (name, id, at) in schedule_ids.iter() {
            if !ctx.used_schedules[id as usize] {
                unused.push((name, at, "schedule"));
            }
        }
        unused.sort_by_key(|u| (u.1.0, u.1.1.start));
        for (name, at, kind) in unused {
            self.warn(at, format!("{kind} `{name}` is not used by any rule"), None);
        }
    }

    pub(super) fn shadow_warnings(&self, rules: &[RuleSpec], ats: &[At]) -> Found {
        let loc = |k: usize| format!("`{}` ({})", rules[k].name, self.loc_text(&ats[k]));
        let (mut out, ties) = if self.parallel(rules.len()) {
            std::thread::scope(|s| {
                let ties = s.spawn(|| Self::ties(rules, &loc));
                let out = Self::identical(rules, ats, &loc);
                // A panic in the tie check is a bug; report no ties rather
                // than fail the build.
                (out, ties.join().unwrap_or_default())
            })
        } else {
            (Self::identical(rules, ats, &loc), Self::ties(rules, &loc))
        };
        out.extend(ties.into_iter().map(|(k, m)| (ats[k].clone(), m)));
        out.extend(Self::covered(rules, ats, &loc));
        out.extend(Self::behind_catch_all(rules, ats, &loc));
        out
    }

    /// Step 1, identical conditions: only the best (priority, then declaration) can win.
    fn identical(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        // Both groupings below keep rule indexes only (8 bytes a slot) and
        // rebuild keys from the rules: a map holding the keys themselves
        // wrote 200 bytes per rule of fresh memory, a quarter of compiling
        // a 1M-rule deck.
        let hasher = hashbrown::DefaultHashBuilder::default();
        let mut first: HashTable<usize> = HashTable::with_capacity(rules.len());
        for (k, r) in rules.iter().enumerate() {
            let hash = hasher.hash_one(&r.conds);
            match first.entry(
                hash,
                |&j| rules[j].conds == r.conds,
                |&j| hasher.hash_one(&rules[j].conds),
            ) {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(k);
                }
                hashbrown::hash_table::Entry::Occupied(mut slot) => {
                    let j = *slot.get();
                    let (winner, loser) = if rules[k].priority < rules[j].priority {
                        (k, j)
                    } else {
                        (j, k)
                    };
                    let msg = if rules[winner].priority == rules[loser].priority {
                        format!(
                            "rule `{}` can never win: it has the same conditions and priority as {}, declared earlier (a tie broken only by declaration order)",
                            rules[loser].name,
                            loc(winner)
                        )
                    } else {
                        format!(
                            "rule `{}` is shadowed by {}: same conditions, lower priority number",
                            rules[loser].name,
                            loc(winner)
                        )
                    };
                    if winner == k {
                        *slot.get_mut() = k;
                    }
                    let at = ats[loser].clone();
                    out.push((at, msg));
                }
            }
        }
        out
    }

    /// Step 2, same priority and equally specific conditions, but not
    /// identical: when both match, only declaration order decides. Returns rule indexes.
    fn ties(rules: &[RuleSpec], loc: &LocFn<'_>) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let hasher = hashbrown::DefaultHashBuilder::default();
        /// prefix, exact, regex and length: what ranks a user condition.
        type UserRank<'a> = (
            Option<&'a [Box<str>]>,
            Option<&'a [Box<str>]>,
            Option<u32>,
            Option<(u32, u32)>,
        );
        #[derive(PartialEq, Eq, Hash)]
        struct RankKey<'a> {
            priority: i64,
            users: [UserRank<'a>; 3],
            source: Option<&'a [IpNet]>,
        }
        fn rank_key(r: &RuleSpec) -> RankKey<'_> {
            RankKey {
                priority: r.priority,
                users: Field::ALL.map(|f| {
                    let u = r.conds.user(f);
                    (u.prefix.as_deref(), u.exact.as_deref(), u.regex, u.length)
                }),
                source: r.conds.source.as_deref(),
            }
        }
        let mut groups: HashTable<usize> = HashTable::with_capacity(rules.len());
        for (k, r) in rules.iter().enumerate() {
            let key = rank_key(r);
            let hash = hasher.hash_one(&key);
            match groups.entry(
                hash,
                |&j| rank_key(&rules[j]) == key,
                |&j| hasher.hash_one(rank_key(&rules[j])),
            ) {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(k);
                }
                hashbrown::hash_table::Entry::Occupied(o) => {
                    let j = *o.get();
                    if rules[j].conds != r.conds && !rules[j].conds.disjoint(&r.conds) {
                        let msg = format!(
                            "rule `{}` ties with {}: same priority and equally specific conditions, so when both match only declaration order decides; give one a lower priority number",
                            r.name,
                            loc(j)
                        );
                        let at = k;
                        out.push((at, msg));
                    }
                }
            }
        }
        out
    }

    /// Step 3: a rule whose only condition is `to.prefix` matches every call to those
    /// prefixes: a rule at a higher priority number whose every `to` prefix or
    /// exact value it covers can never win.
    fn covered(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        let only_to_prefix = |c: &Conds| {
            let to = c.user(Field::To);
            to.prefix.is_some()
                && to.exact.is_none()
                && to.regex.is_none()
                && to.length.is_none()
                && to.domain.is_none()
                && c.users[Field::From as usize].is_none()
                && c.users[Field::Ruri as usize].is_none()
                && c.source.is_none()
                && c.ports.is_none()
                && c.transports == 0
                && c.auth.is_none()
                && c.schedule.is_none()
        };
        // Only possible when some prefix-only rule ranks before some other rule (a rate
        // deck at one priority skips building the map).
        let lowest_prefix_only = rules
            .iter()
            .filter(|r| only_to_prefix(&r.conds))
            .map(|r| r.priority)
            .min();
        let highest = rules.iter().map(|r| r.priority).max();
        let mut cover: HashMap<&str, (i64, usize)> = HashMap::new();
        for (k, r) in rules.iter().enumerate() {
            if lowest_prefix_only >= highest {
                break;
            }
            if only_to_prefix(&r.conds) {
                for p in r.conds.user(Field::To).prefix.iter().flatten() {
                    let e = cover.entry(&**p).or_insert((r.priority, k));
                    *e = (*e).min((r.priority, k));
                }
            }
        }
        let lowest = cover.values().map(|v| v.0).min();
        for (k, r) in rules.iter().enumerate() {
            let Some(lowest) = lowest else { break };
            if r.priority <= lowest {
                continue;
            }
            let to = r.conds.user(Field::To);
            let values: Vec<&str> = to
                .prefix
                .iter()
                .chain(to.exact.iter())
                .flatten()
                .map(|v| &**v)
                .collect();
            if values.is_empty() {
                continue;
            }
            let mut by = None;
            let all_covered = values.iter().all(|v| {
                let hit = (0..=v.len())
                    .filter(|&n| v.is_char_boundary(n))
                    .filter_map(|n| cover.get(&v[..n]))
                    .filter(|(prio, _)| *prio < r.priority)
                    .min();
                by = by.or(hit.map(|h| h.1));
                hit.is_some()
            });
            if let (true, Some(j)) = (all_covered, by) {
                let msg = format!(
                    "rule `{}` can never win: every number it matches also matches {}, which has only a to.prefix condition and a lower priority number",
                    r.name,
                    loc(j)
                );
                let at = ats[k].clone();
                out.push((at, msg));
            }
        }

        out
    }

    /// Step 4: a rule without conditions matches everything: rules it outranks never win.
    fn behind_catch_all(rules: &[RuleSpec], ats: &[At], loc: &LocFn<'_>) -> Found {
        let mut out = Vec::new();
        let Some(catch_all) = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.conds.is_empty())
            .min_by_key(|(k, r)| (r.priority, *k))
            .map(|(k, _)| k)
        else {
            return out;
        };
        let ca = &rules[catch_all];
        for (k, r) in rules.iter().enumerate() {
            if k == catch_all || r.conds.is_empty() {
                continue;
            }
            let shadowed = r.priority > ca.priority
                || (r.priority == ca.priority && k > catch_all && !r.conds.can_outrank_catch_all());
            if shadowed {
                let msg = format!(
                    "rule `{}` can never win: {} matches every call and ranks before it",
                    r.name,
                    loc(catch_all)
                );
                let at = ats[k].clone();
                out.push((at, msg));
            }
        }
        out
    }
}
