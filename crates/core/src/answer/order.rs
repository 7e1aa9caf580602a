//! The order of a trunk's gateways (SPEC §4.2): DNS SRV (RFC 2782) by
//! priority, then a weighted random order seeded by the Call-ID, so a call
//! always gets the same order and `c4route eval` reproduces production.

use crate::rule::Gateway;

/// FNV-1a: stable across platforms and releases, so a Call-ID always gets
/// the same gateway order (`c4route eval` reproduces production).
pub(crate) use crate::hash::fnv1a;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// RFC 2782 order: by priority; within a priority, weighted random without
/// replacement; weight-0 gateways last in their priority, in declared order.
/// `gws` is sorted by priority.
pub(crate) fn srv_order(gws: &[Gateway], seed: u64, out: &mut Vec<usize>) {
    let mut rng = SplitMix(seed);
    let mut pool: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < gws.len() {
        let mut j = i;
        while j < gws.len() && gws[j].priority == gws[i].priority {
            j += 1;
        }
        pool.clear();
        pool.extend((i..j).filter(|&g| gws[g].weight > 0));
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|&g| u64::from(gws[g].weight)).sum();
            let mut r = rng.next() % total;
            let mut pick = pool.len() - 1;
            for (k, &g) in pool.iter().enumerate() {
                let w = u64::from(gws[g].weight);
                if r < w {
                    pick = k;
                    break;
                }
                r -= w;
            }
            out.push(pool.remove(pick));
        }
        out.extend((i..j).filter(|&g| gws[g].weight == 0));
        i = j;
    }
}
