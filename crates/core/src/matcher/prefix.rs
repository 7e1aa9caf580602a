//! Exact and prefix lookup of user parts (numbers, mostly) in one hash table.
//!
//! A rate deck holds hundreds of thousands of number prefixes. A byte trie
//! costs a node per digit; instead every prefix is stored once in an arena and
//! indexed by a hash table keyed on its bytes. A lookup probes only the prefix
//! lengths that occur in the table (a bit set), so its cost depends on the
//! length of the number, not on the number of rules: at most ~20 probes.
//!
//! Keys of up to 15 dial characters (digits, `+`, `*`, `#`: every number
//! prefix in practice) are packed four bits a character into the entry
//! itself, and a lookup packs the user's prefixes as it walks them. A probe
//! then hashes one `u64` and compares it in the bucket it lands on, instead
//! of hashing the bytes again for every length and following a pointer into
//! the arena for every candidate (a second cache miss per probe on a large
//! table). Other keys keep the arena.

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Longest key stored packed.
const PACK_MAX: usize = 15;

/// The 4-bit code of a dial character (never 0).
fn code(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0') + 1),
        b'+' => Some(11),
        b'*' => Some(12),
        b'#' => Some(13),
        _ => None,
    }
}

/// Packs a key: character codes in the low 60 bits, the length (1..=15) in
/// the top four. `None` when the key is empty, too long or not a dial string.
fn pack(key: &[u8]) -> Option<u64> {
    if key.is_empty() || key.len() > PACK_MAX {
        return None;
    }
    let mut p = (key.len() as u64) << 60;
    for (i, &b) in key.iter().enumerate() {
        p |= code(b)? << (4 * i);
    }
    Some(p)
}

/// Arena keys are at most this long (far beyond any SIP user part).
const ARENA_MAX_LEN: usize = (1 << 24) - 1;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `pack(key)`; or, for a key that has none, `offset << 24 | len` into
    /// the arena (top four bits zero, which no packed key has).
    key: u64,
    /// With `count == 1` the rule id itself; else a start into `postings`.
    start: u32,
    count: u32,
}

impl Entry {
    fn arena_range(&self) -> Option<std::ops::Range<usize>> {
        (self.key >> 60 == 0).then(|| {
            let off = (self.key >> 24) as usize;
            off..off + (self.key & ARENA_MAX_LEN as u64) as usize
        })
    }
}

/// Maps strings to rule ids; finds every key equal to, or a prefix of, a user.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrIndex {
    /// Keys that cannot be packed.
    arena: Box<[u8]>,
    table: HashTable<Entry>,
    postings: Box<[u32]>,
    /// Bit `n` set (n < 127): some key has length `n`; bit 127: some key is longer.
    lens: u128,
    hasher: DefaultHashBuilder,
}

/// Collects keys before freezing them into a [`StrIndex`].
#[derive(Debug, Default)]
pub(crate) struct StrIndexBuilder {
    /// Keys that pack, as `pack(key)`: sorting a million of these is an
    /// integer sort, with no allocation per key.
    packed: Vec<(u64, u32)>,
    /// The others, as bytes.
    other: Vec<(Box<[u8]>, u32)>,
}

impl StrIndexBuilder {
    pub(crate) fn push(&mut self, key: &str, rule: u32) {
        match pack(key.as_bytes()) {
            Some(p) => self.packed.push((p, rule)),
            None => self.other.push((key.as_bytes().into(), rule)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.packed.is_empty() && self.other.is_empty()
    }

    pub(crate) fn build(mut self) -> StrIndex {
        self.packed.sort_unstable();
        self.packed.dedup();
        self.other.sort_unstable();
        self.other.dedup();
        let hasher = DefaultHashBuilder::default();
        let mut arena = Vec::new();
        let mut postings = Vec::new();
        let mut entries: Vec<(u64, Entry)> =
            Vec::with_capacity(self.packed.len() + self.other.len());
        let mut lens = 0u128;
        // The rules of keys[i..j] (sorted by rule): one id, or a run of postings.
        let mut group = |rules: &mut dyn Iterator<Item = u32>, count: usize| -> (u32, u32) {
            if count == 1 {
                (rules.next().unwrap_or_default(), 1)
            } else {
                let s = postings.len() as u32;
                postings.extend(rules);
                (s, count as u32)
            }
        };
        let mut i = 0;
        while i < self.packed.len() {
            let key = self.packed[i].0;
            let j = i + self.packed[i..].partition_point(|k| k.0 == key);
            let (start, count) = group(&mut self.packed[i..j].iter().map(|k| k.1), j - i);
            lens |= 1u128 << (key >> 60);
            entries.push((hasher.hash_one(key), Entry { key, start, count }));
            i = j;
        }
        let mut i = 0;
        while i < self.other.len() {
            let key = &self.other[i].0;
            let j = i + self.other[i..].partition_point(|k| k.0 == *key);
            // Such a key can never equal a user part (a query body is at
            // most 64 KiB); leave it out rather than mis-pack it.
            if key.len() > ARENA_MAX_LEN {
                i = j;
                continue;
            }
            let (start, count) = group(&mut self.other[i..j].iter().map(|k| k.1), j - i);
            let off = arena.len() as u64;
            arena.extend_from_slice(key);
            lens |= 1u128 << key.len().min(127);
            entries.push((
                hasher.hash_one(&key[..]),
                Entry {
                    key: off << 24 | key.len() as u64,
                    start,
                    count,
                },
            ));
            i = j;
        }
        let mut table = HashTable::with_capacity(entries.len());
        for (h, e) in entries {
            table.insert_unique(h, e, |e| match e.arena_range() {
                None => hasher.hash_one(e.key),
                Some(r) => hasher.hash_one(&arena[r]),
            });
        }
        StrIndex {
            arena: arena.into(),
            table,
            postings: postings.into(),
            lens,
            hasher,
        }
    }
}

impl StrIndex {
    fn get_packed(&self, p: u64) -> Option<&Entry> {
        self.table.find(self.hasher.hash_one(p), |e| e.key == p)
    }

    fn get_bytes(&self, key: &[u8]) -> Option<&Entry> {
        let h = self.hasher.hash_one(key);
        self.table.find(h, |e| {
            e.arena_range().is_some_and(|r| &self.arena[r] == key)
        })
    }

    fn get(&self, key: &[u8]) -> Option<&Entry> {
        match pack(key) {
            Some(p) => self.get_packed(p),
            None => self.get_bytes(key),
        }
    }

    fn each(&self, e: &Entry, f: &mut impl FnMut(u32)) {
        if e.count == 1 {
            f(e.start);
        } else {
            for &r in &self.postings[e.start as usize..(e.start + e.count) as usize] {
                f(r);
            }
        }
    }

    /// Calls `f(rule, key_len)` for every key that is a prefix of `user` (the
    /// whole of `user` included).
    pub(crate) fn prefixes_of(&self, user: &str, mut f: impl FnMut(u32, usize)) {
        let b = user.as_bytes();
        // The codes of b[..n] while it packs; `None` once it cannot.
        let mut codes = Some(0u64);
        for n in 0..=b.len() {
            if n > 0 {
                codes = codes.and_then(|p| {
                    let c = code(b[n - 1]).filter(|_| n <= PACK_MAX)?;
                    Some(p | c << (4 * (n - 1)))
                });
            }
            if self.lens & (1u128 << n.min(127)) == 0 {
                continue;
            }
            let e = match codes {
                Some(p) if n > 0 => self.get_packed(p | (n as u64) << 60),
                _ => self.get_bytes(&b[..n]),
            };
            if let Some(e) = e {
                self.each(e, &mut |r| f(r, n));
            }
        }
    }

    /// Calls `f(rule)` for every rule whose key equals `user`.
    pub(crate) fn exact(&self, user: &str, mut f: impl FnMut(u32)) {
        if self.lens & (1u128 << user.len().min(127)) == 0 {
            return;
        }
        if let Some(e) = self.get(user.as_bytes()) {
            self.each(e, &mut f);
        }
    }

    /// Heap bytes used, roughly.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.len()
            + self.postings.len() * 4
            + self.table.capacity() * (std::mem::size_of::<Entry>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_covering_prefix() {
        let mut b = StrIndexBuilder::default();
        for (k, r) in [
            ("44", 1),
            ("447", 2),
            ("447", 3),
            ("4477", 4),
            ("1", 5),
            ("", 6),
        ] {
            b.push(k, r);
        }
        let idx = b.build();
        let mut hits = vec![];
        idx.prefixes_of("44770", |r, n| hits.push((r, n)));
        hits.sort();
        assert_eq!(hits, vec![(1, 2), (2, 3), (3, 3), (4, 4), (6, 0)]);
        let mut ex = vec![];
        idx.exact("447", |r| ex.push(r));
        assert_eq!(ex, vec![2, 3]);
        idx.exact("4", |r| ex.push(r));
        assert_eq!(ex.len(), 2);
        let mut none = 0;
        StrIndex::default().prefixes_of("123", |_, _| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn packed_and_arena_keys_mix() {
        let long = "1234567890123456789"; // too long to pack
        let mut b = StrIndexBuilder::default();
        for (k, r) in [
            ("+44", 1),
            ("44", 2),
            ("4420", 3),
            ("*#1", 4),
            (long, 5),
            (&long[..15], 6), // the longest packed key
            ("alice", 7),
            ("al", 8),
            ("123456789012345678", 9),
        ] {
            b.push(k, r);
        }
        let idx = b.build();
        let hits = |user: &str| {
            let mut v = vec![];
            idx.prefixes_of(user, |r, n| v.push((r, n)));
            v.sort();
            v
        };
        assert_eq!(hits("+4420"), vec![(1, 3)]);
        assert_eq!(hits("442071"), vec![(2, 2), (3, 4)]);
        assert_eq!(hits("*#12"), vec![(4, 3)]);
        assert_eq!(
            hits("12345678901234567890"),
            vec![(5, 19), (6, 15), (9, 18)]
        );
        assert_eq!(hits("alice@x"), vec![(7, 5), (8, 2)]);
        assert_eq!(hits("a"), vec![]);
        // A packable prefix followed by a byte that does not pack.
        assert_eq!(hits("44x"), vec![(2, 2)]);
        let mut ex = vec![];
        for u in ["4420", long, "alice", "+44", "4421", "alic"] {
            idx.exact(u, |r| ex.push(r));
        }
        assert_eq!(ex, vec![3, 5, 7, 1]);
    }
}
