//! The little SIP that probing needs: build an OPTIONS request (RFC 3261
//! §8.1.1) and read the status, top Via branch, Call-ID and CSeq of a
//! response.
//!
//! Hand-written on purpose: the maintained Rust SIP stacks (rsip, rvoip)
//! bring a full message model and a dozen dependencies for what is here
//! two functions; the parser is tested against SIPp's and Kamailio's
//! answers (compact header forms, folded case, a body after the headers).

use std::fmt::Write as _;

/// SIP over UDP or TCP (what the Via says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Transport {
    fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Random bytes in a token: 128 bits, 32 hex digits.
pub const TOKEN_BYTES: usize = 16;

/// The longest response a probe reads (head and body): a `Content-Length`
/// beyond it makes the response invalid, not merely incomplete.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A token for a Via branch, a From tag or a Call-ID: 128 bits from the
/// operating system's CSPRNG (`getrandom(2)` on Linux), as hex.
///
/// Unpredictable, not only unique: a probe's reply is recognised by the
/// branch and Call-ID of its OPTIONS, so a gateway that could work out
/// the tokens of later probes from one it received could answer the
/// probes of every other gateway (issue 13; the former SplitMix64 of a
/// counter was invertible).
///
/// # Errors
/// The operating system's random source failed.
pub fn token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let mut s = String::with_capacity(2 * TOKEN_BYTES);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    Ok(s)
}

/// One OPTIONS transaction's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The Via branch (`z9hG4bK…`).
    pub branch: String,
    /// The Call-ID.
    pub call_id: String,
    /// The request bytes.
    pub bytes: Vec<u8>,
}

/// Builds an OPTIONS to `target` (`sip:host:port[;transport=tcp]`) sent from
/// `local` (`host:port` of the probing socket, for Via, From and Contact).
///
/// # Errors
/// No random tokens (the operating system's random source failed).
pub fn options(
    target: &str,
    host_port: &str,
    local: &str,
    transport: Transport,
) -> Result<Options, String> {
    let random = |what: &str| token().map_err(|e| format!("no random {what} for the OPTIONS: {e}"));
    let branch = format!("z9hG4bK{}", random("branch")?);
    let tag = random("tag")?;
    let call_id = format!("{}@c4route", random("Call-ID")?);
    let mut m = String::with_capacity(512);
    let _ = write!(
        m,
        "OPTIONS {target} SIP/2.0\r\n\
         Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:c4route@{local}>;tag={tag}\r\n\
         To: <sip:{host_port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:c4route@{local}>\r\n\
         Accept: application/sdp\r\n\
         User-Agent: c4route/{}\r\n\
         Content-Length: 0\r\n\r\n",
        transport.via(),
        env!("CARGO_PKG_VERSION"),
    );
    Ok(Options {
        branch,
        call_id,
        bytes: m.into_bytes(),
    })
}

/// What a probe needs of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status code.
    pub code: u16,
    /// The branch of the top Via.
    pub branch: &'a str,
    /// The Call-ID.
    pub call_id: &'a str,
    /// The CSeq method.
    pub cseq_method: &'a str,
    /// Bytes of the message (head and `Content-Length` body), for TCP framing.
    pub len: usize,
}

/// Why bytes are not a usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed (TCP: the head or body is not complete).
    Incomplete,
    /// Not a SIP response, or one without Via branch / Call-ID / CSeq.
    Invalid(&'static str),
}

/// Reads one response from the start of `buf`.
///
/// # Errors
/// [`ParseError::Incomplete`] when the head (or the body its
/// Content-Length announces) is not all there, else [`ParseError::Invalid`].
pub fn parse_response(buf: &[u8]) -> Result<Response<'_>, ParseError> {
    // Keep-alive CRLFs (RFC 5626) may precede a message on TCP.
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Incomplete)?;
    let rest = &buf[start..];
    let head_end = find(rest, b"\r\n\r\n").ok_or(if rest.len() > 65_535 {
        ParseError::Invalid("no end of headers")
    } else {
        ParseError::Incomplete
    })?;
    let head =
        std::str::from_utf8(&rest[..head_end]).map_err(|_| ParseError::Invalid("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    if !parts
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("SIP/2.0"))
    {
        return Err(ParseError::Invalid("not a SIP/2.0 response"));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..=699).contains(c))
        .ok_or(ParseError::Invalid("bad status code"))?;
    let mut branch = None;
    let mut call_id = None;
    let mut cseq_method = None;
    let mut content_length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        };
        if is("via", "v") {
            // Only the top Via: the first header, and its first value.
            if branch.is_none() {
                let top = value.split(',').next().unwrap_or("");
                branch = Some(
                    top.split(';')
                        .skip(1)
                        .filter_map(|p| p.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
                        .map(|(_, v)| v.trim())
                        .unwrap_or(""),
                );
            }
        } else if is("call-id", "i") {
            call_id = Some(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq_method = value.split_whitespace().nth(1);
        } else if is("content-length", "l") {
            content_length = value
                .parse::<usize>()
                .map_err(|_| ParseError::Invalid("bad Content-Length"))?;
            if content_length > MAX_MESSAGE {
                return Err(ParseError::Invalid("Content-Length too large"));
            }
        }
    }
    // Checked: a Content-Length near usize::MAX must not wrap into a short
    // length (RFC 3261 §18.3: such a message is discarded).
    let len = start
        .checked_add(head_end)
        .and_then(|n| n.checked_add(4))
        .and_then(|n| n.checked_add(content_length))
        .ok_or(ParseError::Invalid("Content-Length too large"))?;
    if buf.len() < len {
        return Err(ParseError::Incomplete);
    }
    Ok(Response {
        code,
        branch: branch
            .filter(|b| !b.is_empty())
            .ok_or(ParseError::Invalid("no Via branch"))?,
        call_id: call_id.ok_or(ParseError::Invalid("no Call-ID"))?,
        cseq_method: cseq_method.ok_or(ParseError::Invalid("no CSeq"))?,
        len,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carries_the_rfc_3261_headers() {
        let o = options(
            "sip:198.51.100.10:5060",
            "198.51.100.10:5060",
            "192.0.2.1:40000",
            Transport::Udp,
        )
        .unwrap();
        let text = String::from_utf8(o.bytes.clone()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "OPTIONS sip:198.51.100.10:5060 SIP/2.0");
        assert_eq!(
            lines[1],
            format!("Via: SIP/2.0/UDP 192.0.2.1:40000;branch={};rport", o.branch)
        );
        assert!(o.branch.starts_with("z9hG4bK") && o.branch.len() == 7 + 2 * TOKEN_BYTES);
        for h in [
            "Max-Forwards: 70",
            "To: <sip:198.51.100.10:5060>",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ] {
            assert!(lines.contains(&h), "{h}\n{text}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("From: <sip:c4route@192.0.2.1:40000>;tag="))
        );
        assert!(lines.contains(&format!("Call-ID: {}", o.call_id).as_str()));
        assert!(
            lines.contains(&format!("User-Agent: c4route/{}", env!("CARGO_PKG_VERSION")).as_str())
        );
        assert!(text.ends_with("\r\n\r\n"));
        // A fresh branch, tag and Call-ID for every transaction.
        let o2 = options("sip:x", "x", "l:1", Transport::Tcp).unwrap();
        assert_ne!(o.branch, o2.branch);
        assert_ne!(o.call_id, o2.call_id);
        assert!(
            String::from_utf8(o2.bytes)
                .unwrap()
                .contains("Via: SIP/2.0/TCP l:1;")
        );
    }

    /// A 200 as SIPp's uas scenarios send it (the headers of the request echoed).
    const SIPP_200: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000;received=127.0.0.1\r\n\
        From: <sip:c4route@127.0.0.1:40000>;tag=t1\r\n\
        To: <sip:127.0.0.1:5070>;tag=1234SIPpTag01\r\n\
        Call-ID: 42@c4route\r\n\
        CSeq: 1 OPTIONS\r\n\
        Contact: <sip:127.0.0.1:5070;transport=UDP>\r\n\
        Content-Length: 0\r\n\r\n";

    /// Kamailio's sl_send_reply, compact forms and a second Via line
    /// folded into one header, with a body.
    const KAMAILIO_503: &str = "SIP/2.0 503 Service Unavailable\r\n\
        v: SIP/2.0/UDP 127.0.0.1:40000;rport=40000;branch=z9hG4bKdef, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother\r\n\
        f: <sip:c4route@127.0.0.1:40000>;tag=t2\r\n\
        t: <sip:127.0.0.1:5060>;tag=abc\r\n\
        i: 43@c4route\r\n\
        CSeq: 1 OPTIONS\r\n\
        Server: kamailio (5.6.3 (x86_64/linux))\r\n\
        l: 5\r\n\r\nhello";

    #[test]
    fn responses_from_sipp_and_kamailio() {
        let r = parse_response(SIPP_200.as_bytes()).unwrap();
        assert_eq!(
            (r.code, r.branch, r.call_id, r.cseq_method),
            (200, "z9hG4bKabc", "42@c4route", "OPTIONS")
        );
        assert_eq!(r.len, SIPP_200.len());
        let r = parse_response(KAMAILIO_503.as_bytes()).unwrap();
        assert_eq!(
            (r.code, r.branch, r.call_id),
            (503, "z9hG4bKdef", "43@c4route")
        );
        assert_eq!(r.len, KAMAILIO_503.len());
    }

    #[test]
    fn framing_and_errors() {
        // TCP: two messages back to back, a partial one, keep-alive CRLFs.
        let two = format!("\r\n\r\n{SIPP_200}{KAMAILIO_503}");
        let first = parse_response(two.as_bytes()).unwrap();
        let second = parse_response(&two.as_bytes()[first.len..]).unwrap();
        assert_eq!(second.code, 503);
        let cut = &KAMAILIO_503.as_bytes()[..KAMAILIO_503.len() - 2];
        assert_eq!(parse_response(cut), Err(ParseError::Incomplete));
        assert_eq!(
            parse_response(&SIPP_200.as_bytes()[..40]),
            Err(ParseError::Incomplete)
        );
        for (bad, why) in [
            ("OPTIONS sip:x SIP/2.0\r\n\r\n", "not a SIP/2.0 response"),
            ("SIP/2.0 abc OK\r\n\r\n", "bad status code"),
            (
                "SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
                "no Via branch",
            ),
            (
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n\r\n",
                "no Call-ID",
            ),
        ] {
            assert_eq!(
                parse_response(bad.as_bytes()),
                Err(ParseError::Invalid(why)),
                "{bad}"
            );
        }
    }

    /// A 200 with the given Content-Length value and no body.
    fn with_length(value: &str) -> String {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: {value}\r\n\r\n"
        )
    }

    #[test]
    fn a_content_length_that_would_wrap_is_invalid_not_a_200() {
        // usize::MAX: the sum of the offsets wrapped to a short length (a
        // valid 200 in release, a panic in debug).
        for (value, why) in [
            ("18446744073709551615", "Content-Length too large"),
            ("18446744073709551614", "Content-Length too large"),
            ("1048577", "Content-Length too large"),
            ("18446744073709551616", "bad Content-Length"),
            ("-1", "bad Content-Length"),
        ] {
            assert_eq!(
                parse_response(with_length(value).as_bytes()),
                Err(ParseError::Invalid(why)),
                "{value}"
            );
        }
        // Within bounds and not all there: incomplete, as before.
        assert_eq!(
            parse_response(with_length("10").as_bytes()),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            parse_response(with_length("0").as_bytes()).unwrap().code,
            200
        );
    }

    #[test]
    fn tokens_are_random_128_bit_hex() {
        let n = 2000;
        let tokens: Vec<String> = (0..n).map(|_| token().unwrap()).collect();
        let unique: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(unique.len(), n);
        for t in &tokens {
            assert_eq!(t.len(), 2 * TOKEN_BYTES, "{t}");
            assert!(
                t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{t}"
            );
        }
        // No counter inside: the former tokens were SplitMix64(seed + n·γ),
        // so undoing the mix on the first 64 bits of consecutive tokens
        // gave a constant step γ. Random tokens give no repeated step.
        let unmixed: Vec<u64> = tokens
            .iter()
            .map(|t| unsplitmix(u64::from_str_radix(&t[..16], 16).unwrap()))
            .collect();
        let steps: Vec<u64> = unmixed
            .windows(2)
            .map(|w| w[1].wrapping_sub(w[0]))
            .collect();
        let repeated = steps.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(repeated, 0, "tokens follow a counter");
        // Every bit position takes both values (a fixed field would not).
        let (mut ones, mut zeros) = (0u64, 0u64);
        for u in &unmixed {
            ones |= *u;
            zeros |= !*u;
        }
        assert_eq!((ones, zeros), (u64::MAX, u64::MAX));
    }

    /// The inverse of SplitMix64's output mix.
    fn unsplitmix(mut z: u64) -> u64 {
        fn unxorshift(y: u64, s: u32) -> u64 {
            let mut x = y;
            for _ in 0..64 / s + 1 {
                x = y ^ (x >> s);
            }
            x
        }
        fn inverse(c: u64) -> u64 {
            // Newton's iteration for the inverse of an odd c modulo 2^64.
            let mut x = c;
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
            }
            x
        }
        z = unxorshift(z, 31);
        z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
        z = unxorshift(z, 27);
        z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
        unxorshift(z, 30)
    }

    #[test]
    fn unsplitmix_undoes_the_old_token_mix() {
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for x in [0, 1, 42, u64::MAX, 0x9E37_79B9_7F4A_7C15] {
            assert_eq!(unsplitmix(mix(x)), x);
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_response_never_panics_on_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_response(&bytes);
        }

        #[test]
        fn parse_response_never_panics_on_sip_like_input(
            code in "[0-9]{1,4}",
            headers in proptest::collection::vec(
                ("(Via|v|Call-ID|i|CSeq|Content-Length|l|X)", "[ -~]{0,40}"), 0..8),
            length in proptest::num::u64::ANY,
            crlfs in 0usize..4,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut m = "\r\n".repeat(crlfs);
            m.push_str(&format!("SIP/2.0 {code} OK\r\n"));
            for (name, value) in &headers {
                m.push_str(&format!("{name}: {value}\r\n"));
            }
            m.push_str(&format!("Content-Length: {length}\r\n\r\n"));
            let mut bytes = m.into_bytes();
            bytes.extend_from_slice(&body);
            if let Ok(r) = parse_response(&bytes) {
                proptest::prop_assert!(r.len <= bytes.len());
            }
        }
    }
}
