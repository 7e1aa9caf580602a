//! A row's rate in eight bytes: the amount and how it was written, so a
//! deck where every row has a rate of its own needs no tariff per row.

use super::POW10;

/// A rate as a `u64`: the amount in units of 10⁻⁹ (below 2⁶⁰) with, in
/// the top four bits, its number of decimals when the text is exactly what
/// [`write_rate`] writes for them (`0.0120` is 12_000_000 with 4); any
/// other text (`.5`, `00.1`, `1.`) is `ODD` in the top bits and an index
/// into the deck's list of such texts below.
pub(crate) fn rate_code(text: &str, nanos: u64, odd: impl FnOnce() -> u64) -> u64 {
    let whole = |int: &str| !int.is_empty() && (int == "0" || !int.starts_with('0'));
    let (canonical, decimals) = match text.split_once('.') {
        None => (whole(text), 0),
        Some((int, frac)) => (whole(int) && (1..=9).contains(&frac.len()), frac.len()),
    };
    if canonical {
        nanos | ((decimals as u64) << 60)
    } else {
        (ODD << 60) | odd()
    }
}

/// The top four bits of a [`rate_code`] of a text kept as written.
pub(crate) const ODD: u64 = 15;

/// The amount of a [`rate_code`] (not an `ODD` one).
pub(crate) fn code_nanos(code: u64) -> u64 {
    code & ((1 << 60) - 1)
}

/// Writes the text of a canonical [`rate_code`] into `out`; its length.
pub(crate) fn write_rate(code: u64, out: &mut [u8]) -> usize {
    let decimals = (code >> 60) as usize;
    let nanos = code_nanos(code);
    let mut buf = [0u8; 32];
    let mut n = 0;
    let int = nanos / 1_000_000_000;
    let s = int.to_string();
    buf[..s.len()].copy_from_slice(s.as_bytes());
    n += s.len();
    if decimals > 0 {
        buf[n] = b'.';
        n += 1;
        let frac = nanos % 1_000_000_000 / POW10[9 - decimals];
        for k in (0..decimals).rev() {
            buf[n] = b'0' + (frac / POW10[k] % 10) as u8;
            n += 1;
        }
    }
    let n = n.min(out.len());
    out[..n].copy_from_slice(&buf[..n]);
    n
}

/// The width of the text of a canonical [`rate_code`].
pub(crate) fn rate_width(code: u64) -> usize {
    let decimals = (code >> 60) as usize;
    let int = code_nanos(code) / 1_000_000_000;
    let digits = int.checked_ilog10().map_or(1, |l| l as usize + 1);
    digits + if decimals > 0 { decimals + 1 } else { 0 }
}

/// The amount of a rate text already validated by `parse_amount`: digits
/// with at most one `.`, at most 9 decimals that are not zero.
pub(super) fn slot_nanos(text: &[u8]) -> u64 {
    let mut v = 0u64;
    let mut decimals: Option<usize> = None;
    for &b in text {
        match (b, decimals) {
            (b'.', _) => decimals = Some(0),
            (_, Some(9)) => {}
            (_, d) => {
                v = v * 10 + u64::from(b.wrapping_sub(b'0') % 10);
                decimals = d.map(|d| d + 1);
            }
        }
    }
    v * POW10[9 - decimals.unwrap_or(0)]
}
