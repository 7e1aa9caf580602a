//! FNV-1a (64 bits), the one hash of the core whose values are a contract:
//! it seeds the SRV order of a call's gateways (`answer/order.rs`) and keys
//! the live gateway state (`health.rs`), so the same call and gateways give
//! the same order in every version.

use std::hash::Hasher as _;

/// FNV-1a-64 of `bytes`, from the `fnv` crate. Bytes go in through
/// [`std::hash::Hasher::write`] only: `write_str` and the integer writers
/// add bytes of their own, which would change every value.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    /// The values are FNV-1a-64's published test vectors: gateway orders
    /// depend on them, so a change of hash (or of how bytes are fed) fails.
    #[test]
    fn fnv1a_gives_the_published_64_bit_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        // The hand-written loop the core used before, byte for byte.
        let by_hand = |b: &[u8]| {
            b.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &x| {
                (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        for s in ["sip:10.0.0.1:5060", "call-id-1234@host", "acme", "\u{e9}"] {
            assert_eq!(fnv1a(s.as_bytes()), by_hand(s.as_bytes()), "{s}");
        }
    }
}
