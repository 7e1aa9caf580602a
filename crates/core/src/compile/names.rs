//! The names a configuration defines: rules (unique, and named by tests'
//! `expect.rule`), trunks and schedules (unique, and named by rules).
//!
//! Both are looked up once per rule, so both are hash tables, and the list
//! of defined names an "unknown trunk" error shows is sorted once per
//! compile, not once per error.

// foldhash instead of SipHash: the maps here hold one entry per rule, and
// SipHash was 4% of compiling a 100k-rule table.
use std::cell::OnceCell;
use std::hash::BuildHasher as _;

use hashbrown::{HashMap, HashTable};
use toml::Spanned;

use std::collections::BTreeMap;

use super::{At, Compiler, Parsed};
use crate::config::RouteFile;
use crate::diag::Severity;

/// The rule names seen so far, for duplicates and for tests' `expect.rule`.
/// The hash table holds 4-byte indexes into `names`: with a million rules,
/// a table of (name, location) pairs was 46 MB of random writes, and this
/// one stays mostly in cache.
///
/// The names are copied into one arena: the parsed rules they come from are
/// freed as soon as they are lowered (see [`Compiler::validate`]), and a
/// million small strings would cost more than the text.
pub(super) struct RuleNames {
    /// Every name, concatenated.
    arena: String,
    /// Each name's end in `arena` (its start is the previous end) and where
    /// it is defined.
    names: Vec<(usize, At)>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl RuleNames {
    pub(super) fn with_capacity(n: usize) -> Self {
        RuleNames {
            arena: String::new(),
            names: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    /// Adds `name`, or returns where it was first defined.
    pub(super) fn insert(&mut self, name: &str, at: At) -> Result<(), At> {
        let (arena, names) = (&self.arena, &self.names);
        let get = |j: u32| name_at(arena, names, j);
        let hasher = &self.hasher;
        match self.table.entry(
            hasher.hash_one(name),
            |&j| get(j) == name,
            |&j| hasher.hash_one(get(j)),
        ) {
            hashbrown::hash_table::Entry::Occupied(o) => Err(names[*o.get() as usize].1.clone()),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(names.len() as u32);
                self.arena.push_str(name);
                self.names.push((self.arena.len(), at));
                Ok(())
            }
        }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.table
            .find(self.hasher.hash_one(name), |&j| {
                name_at(&self.arena, &self.names, j) == name
            })
            .is_some()
    }
}

/// Name `j` of a [`RuleNames`] arena.
fn name_at<'a>(arena: &'a str, names: &[(usize, At)], j: u32) -> &'a str {
    let j = j as usize;
    let start = if j == 0 { 0 } else { names[j - 1].0 };
    &arena[start..names[j].0]
}

/// Trunk or schedule names: each one's index in its list and where it is
/// defined.
pub(super) struct Registry<'a> {
    /// "trunk" or "schedule", for messages.
    kind: &'static str,
    ids: HashMap<&'a str, (u32, At)>,
    /// The defined names, sorted and joined, built on the first unknown one.
    listing: OnceCell<String>,
}

impl<'a> Registry<'a> {
    pub(super) fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            ids: HashMap::new(),
            listing: OnceCell::new(),
        }
    }

    /// Where `name` was first defined, if it was.
    pub(super) fn get(&self, name: &str) -> Option<&(u32, At)> {
        self.ids.get(name)
    }

    /// Defines `name` with index `id`.
    pub(super) fn insert(&mut self, name: &'a str, id: u32, at: At) {
        self.ids.insert(name, (id, at));
        self.listing = OnceCell::new();
    }

    /// Every name with its index and location, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&'a str, u32, &At)> {
        self.ids.iter().map(|(n, (id, at))| (*n, *id, at))
    }

    fn listing(&self) -> &str {
        self.listing.get_or_init(|| {
            let mut known: Vec<&str> = self.ids.keys().copied().collect();
            known.sort_unstable();
            if known.is_empty() {
                "(none)".into()
            } else {
                known.join(", ")
            }
        })
    }
}

impl Compiler<'_> {
    /// Defines every `[KIND.NAME]` table across the files, in file order: a
    /// name defined twice is an error that names the first place, and
    /// `make` validates each definition (`None` when it failed, keeping its
    /// index so later names resolve to the right one).
    pub(super) fn define<'p, D: 'p, T>(
        &mut self,
        parsed: &'p Parsed,
        kind: &'static str,
        tables: impl Fn(&'p RouteFile) -> &'p BTreeMap<Spanned<String>, Spanned<D>>,
        mut make: impl FnMut(&mut Self, usize, &'p str, &'p Spanned<D>) -> Option<T>,
    ) -> (Vec<Option<T>>, Registry<'p>) {
        let mut names = Registry::new(kind);
        let mut items = Vec::new();
        for (i, f) in parsed {
            for (name, def) in tables(f) {
                let at = (*i, name.span());
                if let Some((_, first)) = names.get(name.get_ref()) {
                    let note = format!("first defined at {}", self.loc_text(first));
                    self.push(
                        Severity::Error,
                        &at,
                        format!("{kind} `{}` is defined twice", name.get_ref()),
                        Some(note),
                    );
                    continue;
                }
                let item = make(self, *i, name.get_ref(), def);
                names.insert(name.get_ref(), items.len() as u32, at);
                items.push(item);
            }
        }
        (items, names)
    }

    /// Resolves a trunk or schedule name; an unknown one is an error listing
    /// the defined names (unless a file failed to parse, which may define it).
    pub(super) fn lookup(
        &mut self,
        i: usize,
        names: &Registry<'_>,
        name: &Spanned<String>,
        parse_failed: bool,
    ) -> Option<u32> {
        if let Some((id, _)) = names.get(name.get_ref()) {
            return Some(*id);
        }
        if !parse_failed {
            let kind = names.kind;
            self.err(
                &(i, name.span()),
                format!(
                    "unknown {kind} `{}`; defined {kind}s: {}",
                    name.get_ref(),
                    names.listing()
                ),
            );
            if self.names_unsure {
                self.rep.mark_provisional();
            }
        }
        None
    }
}
