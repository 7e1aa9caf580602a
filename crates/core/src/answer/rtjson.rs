//! The rtjson document (SPEC §3), written by hand.
//!
//! Kamailio's parsers are unforgiving, so the JSON is written in a fixed key
//! order: one object, lower-case keys, never a duplicate, integers as JSON
//! integers, and `headers.from`/`headers.to` always complete. Keys are
//! constants, and a value is copied in one piece unless it has a byte that
//! JSON must escape: this halves the cost of an answer against serde (see
//! `benches/lookup.rs`).

use super::decision::{Decision, Outcome, RouteAnswer, Wrap};

impl Decision<'_> {
    /// Appends the single-line JSON answer to `out`.
    ///
    /// Written by hand rather than through serde: keys are constants, and a
    /// value is copied in one piece unless it has a byte that JSON must escape.
    /// This halves the cost of an answer (see `benches/lookup.rs`).
    pub fn write_json(&self, out: &mut Vec<u8>, wrap: Wrap) {
        if wrap == Wrap::Rtjson {
            out.extend_from_slice(br#"{"rtjson":"#);
        }
        match &self.outcome {
            Outcome::Route { routing, routes } => {
                out.extend_from_slice(br#"{"success":true,"version":"1.0","routing":""#);
                out.extend_from_slice(routing.as_str().as_bytes());
                out.extend_from_slice(br#"","rule":"#);
                write_opt_str(out, self.rule);
                out.extend_from_slice(br#","routes":["#);
                for (i, r) in routes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    r.write_json(out);
                }
                out.extend_from_slice(b"]}");
            }
            Outcome::Reject { code, reason, .. } => {
                out.extend_from_slice(br#"{"success":false,"code":"#);
                write_u32(out, u32::from(*code));
                out.extend_from_slice(br#","reason":"#);
                write_str(out, reason);
                out.extend_from_slice(br#","rule":"#);
                write_opt_str(out, self.rule);
                out.push(b'}');
            }
        }
        if wrap == Wrap::Rtjson {
            out.push(b'}');
        }
    }

    /// The single-line JSON answer.
    pub fn to_json(&self, wrap: Wrap) -> Vec<u8> {
        let mut v = Vec::with_capacity(512);
        self.write_json(&mut v, wrap);
        v
    }
}

impl RouteAnswer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"uri":"#);
        write_str(out, &self.uri);
        out.extend_from_slice(br#","dst_uri":"#);
        write_str(out, self.dst_uri);
        out.extend_from_slice(br#","path":"","socket":"#);
        write_str(out, self.socket);
        out.extend_from_slice(br#","headers":{"from":{"display":"#);
        write_str(out, &self.from.display);
        out.extend_from_slice(br#","uri":"#);
        write_str(out, &self.from.uri);
        out.extend_from_slice(br#"},"to":{"display":"#);
        write_str(out, &self.to.display);
        out.extend_from_slice(br#","uri":"#);
        write_str(out, &self.to.uri);
        out.extend_from_slice(br#"},"extra":"#);
        write_str(out, &self.extra);
        out.extend_from_slice(br#"},"branch_flags":"#);
        write_u32(out, self.branch_flags);
        out.extend_from_slice(br#","fr_timer":"#);
        write_u32(out, self.fr_timer);
        out.extend_from_slice(br#","fr_inv_timer":"#);
        write_u32(out, self.fr_inv_timer);
        out.push(b'}');
    }
}

fn write_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Whether any of the 8 bytes in `x` may need escaping in JSON (a control
/// character, `"` or `\`). False positives are allowed: the caller checks.
fn maybe_special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    (x.wrapping_sub(ONES * 0x20) & !x & HIGH) != 0
        || zero_byte(x ^ (ONES * u64::from(b'"'))) != 0
        || zero_byte(x ^ (ONES * u64::from(b'\\'))) != 0
}

/// The index of the next byte at or after `from` that JSON must escape:
/// 8 bytes at a time, then byte by byte.
fn next_special(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if maybe_special(x) {
            break;
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|p| p + i)
}

/// A JSON string: `"` and `\` escaped, control characters as `\uXXXX` (or
/// their short forms); everything else, UTF-8 included, copied as is.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = next_special(b, start) {
        out.extend_from_slice(&b[start..i]);
        match b[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[usize::from(c >> 4)]);
                out.push(b"0123456789abcdef"[usize::from(c & 15)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀 \"quoted\" back\\slash");
        for s in [
            "",
            "plain",
            "X-Route: a\r\nX-B: c\r\n",
            "exactly8",
            "sixteen-bytes-ok",
            "\u{1f}",
            "sixteen-bytes-o\"",
            all.as_str(),
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
