//! One cell of a rate deck: amounts (rates and fees, exact to 10⁻⁹),
//! billing intervals and effective times. Each error completes a message
//! that names the column and the cell (`rate "abc" is not a decimal …`).

use super::Secs;

/// The largest whole part of an amount.
pub(crate) const MAX_AMOUNT: u64 = 999_999_999;
/// The longest billing interval, in seconds (one day).
pub(crate) const MAX_INTERVAL: u32 = 86_400;

/// Why a cell is not what its column holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CellError {
    #[error("must be a decimal number >= 0")]
    Negative,
    #[error(
        "is not a decimal number; expected digits with an optional `.` (like 0.0125), no sign, exponent or currency"
    )]
    NotDecimal,
    #[error("is too large; at most {MAX_AMOUNT}")]
    TooLarge,
    #[error("has more than 9 decimal places")]
    TooPrecise,
    #[error(
        "is not a date (YYYY-MM-DD, meaning 00:00 UTC) or an RFC 3339 time (2026-12-01T00:00:00Z)"
    )]
    NotTime,
    #[error("must be a whole number of seconds in {min}..={MAX_INTERVAL}")]
    Interval { min: u32 },
}

/// Parses a decimal amount ≥ 0 (`12`, `0.0120`, `.5`) into units of 10⁻⁹.
pub(crate) fn parse_amount(s: &str) -> Result<u64, CellError> {
    if s.starts_with('-') {
        return Err(CellError::Negative);
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(CellError::NotDecimal);
    }
    let int_value = int.bytes().try_fold(0u64, |v, b| {
        let v = v * 10 + u64::from(b - b'0');
        (v <= MAX_AMOUNT).then_some(v)
    });
    let Some(int_value) = int_value else {
        return Err(CellError::TooLarge);
    };
    let (kept, rest) = frac.split_at(frac.len().min(9));
    if rest.bytes().any(|b| b != b'0') {
        return Err(CellError::TooPrecise);
    }
    let mut f = kept.bytes().fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
    for _ in kept.len()..9 {
        f *= 10;
    }
    Ok(int_value * 1_000_000_000 + f)
}

/// Parses `YYYY-MM-DD` (00:00 UTC) or an RFC 3339 time into seconds.
pub(crate) fn parse_when(s: &str) -> Result<Secs, CellError> {
    if s.len() == 10
        && let Ok(d) = s.parse::<jiff::civil::Date>()
    {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|_| CellError::NotTime);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| CellError::NotTime)
}

pub(crate) fn parse_interval(s: &str, min: u32) -> Result<u32, CellError> {
    match s.parse::<u32>() {
        Ok(v) if (min..=MAX_INTERVAL).contains(&v) => Ok(v),
        _ => Err(CellError::Interval { min }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("0.0120"), Ok(12_000_000));
        assert_eq!(parse_amount(".5"), Ok(500_000_000));
        assert_eq!(parse_amount("3"), Ok(3_000_000_000));
        assert_eq!(parse_amount("0.1234567890000"), Ok(123_456_789));
        for bad in [
            "-0.1",
            "1e-3",
            "0,5",
            "",
            ".",
            "$1",
            "0.1234567891",
            "1000000000",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_when("2026-12-01"), Ok(1_796_083_200));
        assert_eq!(parse_when("2026-12-01T01:00:00+01:00"), Ok(1_796_083_200));
        assert!(parse_when("2026-13-01").is_err());
        assert!(parse_when("01/12/2026").is_err());
    }
}
