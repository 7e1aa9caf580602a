//! Whole tariffs or a rate per row: which keeps a deck smaller (see the
//! `rates` module docs).

use std::hash::BuildHasher as _;

use hashbrown::HashTable;

use super::{ODD, Staged, Tariff, code_nanos, rate_width, write_rate};

/// How a deck keeps its rates (see the `rates` module docs).
pub(super) enum Shared {
    /// In whole tariffs shared by rows: these, and each staged row's
    /// `tariff` now names one.
    Yes(Vec<Tariff>),
    /// By row, in slots of this width.
    No(usize),
}

/// Decides whether the rows share whole tariffs (a rate and its terms)
/// enough that keeping those is smaller than a rate slot per row, and if
/// so makes them, pointing each row at its own. Sorted rows of one
/// destination are usually neighbours, so most rows match the previous
/// one and are not hashed. Gives up as soon as the tariffs grow larger
/// than the slots would be.
pub(super) fn share_tariffs(
    staged: &mut [Staged],
    terms: &[Tariff],
    odd: &[(u32, u32)],
    text: &mut String,
) -> Shared {
    let width_of = |code: u64| {
        if code >> 60 == ODD {
            odd.get(code_nanos(code) as usize)
                .map_or(0, |r| r.1 as usize)
        } else {
            rate_width(code)
        }
    };
    let width = staged
        .iter()
        .map(|s| width_of(s.rate))
        .max()
        .unwrap_or(0)
        .max(1);
    // A whole tariff costs its struct, its rate text and a table slot.
    let per_tariff = std::mem::size_of::<Tariff>() + width + 8;
    let budget = staged.len() * width / per_tariff;
    let hasher = hashbrown::DefaultHashBuilder::default();
    let mut table: HashTable<u32> = HashTable::new();
    let mut pairs: Vec<(u64, u32)> = Vec::new();
    let mut prev: Option<(u64, u32, u32)> = None;
    for n in 0..staged.len() {
        let s = staged[n];
        let id = match prev {
            Some((r, t, id)) if r == s.rate && t == s.tariff => id,
            _ => {
                let key = (s.rate, s.tariff);
                let hash = hasher.hash_one(key);
                match table.find(hash, |&j| pairs[j as usize] == key) {
                    Some(&id) => id,
                    None => {
                        if pairs.len() >= budget {
                            // Slots are smaller: put the terms back.
                            for r in &mut staged[..n] {
                                r.tariff = pairs[r.tariff as usize].1;
                            }
                            return Shared::No(width);
                        }
                        let id = pairs.len() as u32;
                        pairs.push(key);
                        table.insert_unique(hash, id, |&j| hasher.hash_one(pairs[j as usize]));
                        id
                    }
                }
            }
        };
        prev = Some((s.rate, s.tariff, id));
        staged[n].tariff = id;
    }
    drop(table);
    let mut buf = [0u8; 32];
    let whole = pairs
        .iter()
        .map(|&(rate, t)| {
            let mut w = terms[t as usize];
            if rate >> 60 == ODD {
                let (o, l) = odd[code_nanos(rate) as usize];
                w.rate_text = (o, l);
                w.rate = super::cells::parse_amount(
                    text.get(o as usize..(o + l) as usize).unwrap_or(""),
                )
                .unwrap_or(0);
            } else {
                let n = write_rate(rate, &mut buf);
                w.rate_text = (text.len() as u32, n as u32);
                text.push_str(std::str::from_utf8(&buf[..n]).unwrap_or(""));
                w.rate = code_nanos(rate);
            }
            w
        })
        .collect();
    Shared::Yes(whole)
}
