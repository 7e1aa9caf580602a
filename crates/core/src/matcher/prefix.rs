//! Exact and prefix lookup of user parts (numbers, mostly) in one hash table.
//!
//! A rate deck holds hundreds of thousands of number prefixes. A byte trie
//! costs a node per digit; instead every prefix is stored once in an arena and
//! indexed by a hash table keyed on its bytes. A lookup probes only the prefix
//! lengths that occur in the table (a bit set), so its cost depends on the
//! length of the number, not on the number of rules: at most ~20 probes.

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::hash::BuildHasher;

#[derive(Debug, Clone, Copy)]
struct Entry {
    off: u32,
    len: u32,
    /// With `count == 1` the rule id itself; else a start into `postings`.
    start: u32,
    count: u32,
}

/// Maps strings to rule ids; finds every key equal to, or a prefix of, a user.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrIndex {
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
    keys: Vec<(Box<[u8]>, u32)>,
}

impl StrIndexBuilder {
    pub(crate) fn push(&mut self, key: &str, rule: u32) {
        self.keys.push((key.as_bytes().into(), rule));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn build(mut self) -> StrIndex {
        self.keys.sort_unstable();
        self.keys.dedup();
        let hasher = DefaultHashBuilder::default();
        let mut arena = Vec::new();
        let mut postings = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut lens = 0u128;
        let mut i = 0;
        while i < self.keys.len() {
            let key = &self.keys[i].0;
            let mut j = i + 1;
            while j < self.keys.len() && self.keys[j].0 == *key {
                j += 1;
            }
            let off = arena.len() as u32;
            arena.extend_from_slice(key);
            let count = (j - i) as u32;
            let start = if count == 1 {
                self.keys[i].1
            } else {
                let s = postings.len() as u32;
                postings.extend(self.keys[i..j].iter().map(|k| k.1));
                s
            };
            lens |= 1u128 << key.len().min(127);
            entries.push(Entry {
                off,
                len: key.len() as u32,
                start,
                count,
            });
            i = j;
        }
        let mut table = HashTable::with_capacity(entries.len());
        for e in entries {
            let k = &arena[e.off as usize..(e.off + e.len) as usize];
            let h = hasher.hash_one(k);
            table.insert_unique(h, e, |e| {
                hasher.hash_one(&arena[e.off as usize..(e.off + e.len) as usize])
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
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        let h = self.hasher.hash_one(key);
        self.table.find(h, |e| {
            &self.arena[e.off as usize..(e.off + e.len) as usize] == key
        })
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
        for n in 0..=b.len() {
            if self.lens & (1u128 << n.min(127)) == 0 {
                continue;
            }
            if let Some(e) = self.get(&b[..n]) {
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
}
