//! `[trunks.NAME] rates = "rates/acme.csv"`: where each trunk's rate deck
//! is, and loading every deck (SPEC §7).
//!
//! A path is checked here against the decks [`crate::Sources`] read: one
//! that is absolute, leaves routes.d, or does not exist is an error at the
//! TOML line of its `rates`. Each named deck is then loaded once (decks on
//! all cores), and its problems are reported at `file:line:col` of the CSV.

use std::sync::Arc;

use super::names::Registry;
use super::{Compiler, Parsed};
use crate::diag::Diagnostic;
use crate::rates::RateDeck;
use crate::rates::load::{Loaded, load};
use crate::rates::source::normalize_rate_path;

/// The decks of a configuration and which trunk has which.
#[derive(Debug, Default)]
pub(crate) struct Decks {
    pub decks: Vec<RateDeck>,
    /// By trunk id (failed trunks included, as the trunk registry counts).
    pub trunk_deck: Vec<Option<u32>>,
    /// By trunk id: whether the trunk names a deck (loaded or not).
    pub rated: Vec<bool>,
}

impl Compiler<'_> {
    /// Checks every trunk's `rates` path and loads the decks.
    pub(super) fn decks(
        &mut self,
        parsed: &Parsed,
        trunk_ids: &Registry<'_>,
        n_trunks: usize,
    ) -> Decks {
        let mut out = Decks {
            decks: Vec::new(),
            trunk_deck: vec![None; n_trunks],
            rated: vec![false; n_trunks],
        };
        // (trunk id, index into self.rates) of each trunk with a readable deck.
        let mut wanted: Vec<(usize, usize)> = Vec::new();
        for (i, f) in parsed {
            for (name, def) in &f.trunks {
                let Some(r) = &def.get_ref().rates else {
                    continue;
                };
                // A trunk defined twice is an error already; only the first counts.
                let Some((id, at)) = trunk_ids.get(name.get_ref()) else {
                    continue;
                };
                if *at != (*i, name.span()) {
                    continue;
                }
                let id = *id as usize;
                out.rated[id] = true;
                let at = (*i, r.span());
                let written = r.get_ref();
                let key = match normalize_rate_path(written) {
                    Ok(k) => k,
                    Err(why) => {
                        self.err(&at, format!("rates {written:?} {why}"));
                        continue;
                    }
                };
                match self.rates.iter().position(|s| *s.key == *key) {
                    None => self.err(
                        &at,
                        format!(
                            "rates {written:?}: {}/{key} does not exist; a deck lives inside the routes.d directory, its path relative to it",
                            self.root
                        ),
                    ),
                    Some(k) => match &self.rates[k].bytes {
                        Err(why) => self.err(&at, format!("rates {written:?}: {why}")),
                        Ok(_) => wanted.push((id, k)),
                    },
                }
            }
        }
        let mut keys: Vec<usize> = wanted.iter().map(|w| w.1).collect();
        keys.sort_unstable();
        keys.dedup();
        let loaded = self.load_decks(&keys);
        let mut deck_of = vec![None; self.rates.len()];
        for (k, l) in keys.iter().zip(loaded) {
            let path = self.rates[*k].shown.clone();
            for issue in l.issues {
                self.push_diag(Diagnostic {
                    path: path.clone(),
                    span: issue.offset..issue.offset,
                    line: issue.line as usize,
                    col: issue.col as usize,
                    severity: issue.severity,
                    message: issue.message,
                    note: issue.note,
                    kind: issue.kind,
                });
            }
            if let Some(d) = l.deck {
                deck_of[*k] = Some(out.decks.len() as u32);
                out.decks.push(d);
            }
        }
        for (id, k) in wanted {
            out.trunk_deck[id] = deck_of[k];
        }
        out
    }

    /// Loads the decks `keys` (indexes into the sources' decks), in order,
    /// on up to `threads` threads.
    fn load_decks(&self, keys: &[usize]) -> Vec<Loaded> {
        let one = |k: usize| {
            let r = &self.rates[k];
            let bytes = r.bytes.as_deref().unwrap_or_default();
            load(Arc::clone(&r.shown), bytes)
        };
        if self.threads <= 1 || keys.len() <= 1 {
            return keys.iter().map(|&k| one(k)).collect();
        }
        let per = keys.len().div_ceil(self.threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .chunks(per)
                .map(|chunk| s.spawn(move || chunk.iter().map(|&k| one(k)).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .zip(keys.chunks(per))
                // A loader thread cannot panic on any input; if it ran out
                // of memory, load that chunk here.
                .flat_map(|(h, chunk)| {
                    h.join()
                        .unwrap_or_else(|_| chunk.iter().map(|&k| one(k)).collect())
                })
                .collect()
        })
    }
}
