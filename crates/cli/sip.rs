//! The little SIP that probing needs: build an OPTIONS request (RFC 3261
//! §8.1.1) and read the status, top Via branch, Call-ID and CSeq of a
//! response.
//!
//! Hand-written on purpose: the maintained Rust SIP stacks (rsip, rvoip)
//! bring a full message model and a dozen dependencies for what is here
//! two functions; the parser is tested against SIPp's and Kamailio's
//! answers (compact header forms, folded case, a body after the headers).

use std::fmt::Write as _;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A unique-enough token: a per-process random seed (std's `RandomState`)
/// mixed with a counter. Branches and Call-IDs must not repeat; they need
/// not be unpredictable.
pub fn token() -> String {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        h.finish()
    });
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    // SplitMix64 of seed + n: distinct for distinct n.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
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
pub fn options(target: &str, host_port: &str, local: &str, transport: Transport) -> Options {
    let branch = format!("z9hG4bK{}", token());
    let tag = token();
    let call_id = format!("{}@c4route", token());
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
    Options {
        branch,
        call_id,
        bytes: m.into_bytes(),
    }
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
                .parse()
                .map_err(|_| ParseError::Invalid("bad Content-Length"))?;
        }
    }
    let len = start + head_end + 4 + content_length;
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
        );
        let text = String::from_utf8(o.bytes.clone()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "OPTIONS sip:198.51.100.10:5060 SIP/2.0");
        assert_eq!(
            lines[1],
            format!("Via: SIP/2.0/UDP 192.0.2.1:40000;branch={};rport", o.branch)
        );
        assert!(o.branch.starts_with("z9hG4bK") && o.branch.len() > 7 + 8);
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
        let o2 = options("sip:x", "x", "l:1", Transport::Tcp);
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
}
