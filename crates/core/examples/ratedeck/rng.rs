//! The generators' random numbers (ratedeck for rule decks, lcrdeck for
//! rate decks): seeded, so a generated deck is the same on every machine.

/// SplitMix64: tiny, fast, and good enough to shape a test table.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// One index drawn by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// One random decimal digit.
    pub fn digit(&mut self) -> char {
        char::from(b'0' + self.below(10) as u8)
    }

    /// `n` random decimal digits appended to `s`.
    pub fn digits(&mut self, s: &mut String, n: usize) {
        for _ in 0..n {
            s.push(self.digit());
        }
    }
}
