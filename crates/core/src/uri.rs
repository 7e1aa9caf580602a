//! SIP, SIPS and tel URIs, read the tolerant way a router must read them.
//!
//! Kamailio hands us whatever the caller wrote: display names with or without
//! quotes, angle brackets, percent-encoding, user parameters and visual
//! separators in numbers. Matching only ever looks at two normalised parts, the
//! *user* and the *domain* (SPEC §2); everything else is kept verbatim for
//! templates and for rewriting a URI's user part.

use std::borrow::Cow;

/// A display name and URI split out of a `name-addr` or a bare URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    /// The display name, unquoted, or `None`.
    pub display: Option<Cow<'a, str>>,
    /// The URI without display part and angle brackets.
    pub uri: &'a str,
}

/// Splits `"Alice" <sip:alice@example.com>;tag=1` into display and bare URI.
pub(crate) fn split_name_addr(s: &str) -> NameAddr<'_> {
    let s = s.trim();
    if let Some(lt) = find_unquoted_lt(s) {
        let rest = &s[lt + 1..];
        let uri = rest.find('>').map_or(rest, |gt| &rest[..gt]).trim();
        let display = s[..lt].trim();
        let display = if display.is_empty() {
            None
        } else {
            Some(unquote(display))
        };
        NameAddr { display, uri }
    } else {
        NameAddr {
            display: None,
            uri: s,
        }
    }
}

/// The first `<` that is not inside a quoted display name (RFC 3261
/// `quoted-string`, where `\` escapes the next character): in
/// `"A <b>" <sip:a@h>` the URI starts at the second `<`. When a quote is
/// never closed, the first `<` after it (as tolerant as before quotes were
/// looked at); `None` when there is no `<`.
fn find_unquoted_lt(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    let mut lt_in_quote = None;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                b'<' if lt_in_quote.is_none() => lt_in_quote = Some(i),
                _ => {}
            }
        } else {
            match b {
                b'"' => {
                    quoted = true;
                    lt_in_quote = None;
                }
                b'<' => return Some(i),
                _ => {}
            }
        }
    }
    if quoted { lt_in_quote } else { None }
}

/// Removes the SIP quotes around a display name and undoes `\"` and `\\`.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        let inner = &t[1..t.len() - 1];
        if !inner.contains('\\') {
            return Cow::Borrowed(inner);
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(t)
    }
}

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Sip,
    Sips,
    Tel,
}

/// The raw pieces of a bare URI, as slices of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriParts<'a> {
    pub scheme: Scheme,
    /// The scheme as written (`sip`, `SIP`, ...); empty when the URI had none.
    pub scheme_text: &'a str,
    /// The user part as written, with user parameters, before decoding; may be empty.
    pub user_raw: &'a str,
    /// Everything after `@` (or after the scheme when there is no user): host, port, parameters, headers.
    pub host_rest: &'a str,
    /// The host without port, as written.
    pub host: &'a str,
}

/// Splits a bare URI into parts; `None` when it is not a sip/sips/tel URI.
pub(crate) fn parse_uri(uri: &str) -> Option<UriParts<'_>> {
    let uri = uri.trim();
    if uri.is_empty() {
        return None;
    }
    let (scheme, scheme_text, rest) = match uri.find(':') {
        Some(i) if is_scheme(&uri[..i]) => {
            let s = &uri[..i];
            let scheme = if s.eq_ignore_ascii_case("sip") {
                Scheme::Sip
            } else if s.eq_ignore_ascii_case("sips") {
                Scheme::Sips
            } else if s.eq_ignore_ascii_case("tel") {
                Scheme::Tel
            } else {
                return None;
            };
            (scheme, s, &uri[i + 1..])
        }
        // "user@host" or "host:port" without a scheme is read as sip.
        _ => (Scheme::Sip, "", uri),
    };
    if rest.is_empty() {
        return None;
    }
    if scheme == Scheme::Tel {
        let number = rest.split(';').next().unwrap_or("");
        if number.is_empty() {
            return None;
        }
        return Some(UriParts {
            scheme,
            scheme_text,
            user_raw: rest,
            host_rest: "",
            host: "",
        });
    }
    let (user_raw, host_rest) = match rest.rfind('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let host = host_of(host_rest);
    if host.is_empty() {
        return None;
    }
    Some(UriParts {
        scheme,
        scheme_text,
        user_raw,
        host_rest,
        host,
    })
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// The host of `host[:port][;params][?headers]`, without the port.
fn host_of(host_rest: &str) -> &str {
    let end = host_rest.find([';', '?']).unwrap_or(host_rest.len());
    let hostport = &host_rest[..end];
    if let Some(v6) = hostport.strip_prefix('[') {
        return match v6.find(']') {
            Some(i) => &hostport[..i + 2],
            None => "",
        };
    }
    match hostport.find(':') {
        Some(i) => &hostport[..i],
        None => hostport,
    }
}

/// The matching user of a raw user part: percent-decoded, user parameters
/// (and any password) removed, visual separators removed from telephone numbers.
pub(crate) fn normalize_user(user_raw: &str) -> Cow<'_, str> {
    let user = user_raw.split(';').next().unwrap_or("");
    // A password (`user:pw@`) is not part of the user.
    let user = user.split(':').next().unwrap_or("");
    let decoded = percent_decode(user);
    if is_phone_number(&decoded) && decoded.contains(is_visual_separator) {
        Cow::Owned(
            decoded
                .chars()
                .filter(|c| !is_visual_separator(*c))
                .collect(),
        )
    } else {
        decoded
    }
}

fn is_visual_separator(c: char) -> bool {
    matches!(c, '-' | '.' | '(' | ')' | ' ')
}

fn is_phone_number(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#') || is_visual_separator(c))
}

/// Decodes `%XX` escapes; invalid escapes are kept as written, invalid UTF-8
/// replaced. Borrows when there is nothing to decode.
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

/// Appends `user` to `out`, percent-encoding every byte that may not appear
/// unescaped in a SIP user part (RFC 3261 `user`), so no query value can break
/// the URI or inject a CR/LF.
pub(crate) fn push_escaped_user(out: &mut String, user: &str) {
    for &b in user.as_bytes() {
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
            );
        if ok {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// The URI with its user part replaced by `user` (escaped); scheme, host, port,
/// URI parameters and a password (`user:password@`, which belongs to the
/// account, not to the number) are kept. User parameters of a sip/sips URI
/// (`;npdi`, `;phone-context=…`) are dropped: they describe the old user.
/// An empty `user` drops the whole user part, password included. The rest is
/// copied from `uri` as is: a caller's URI must pass [`is_sendable_uri`]
/// before it is sent. `None` when `uri` is not a sip/sips/tel URI.
pub(crate) fn replace_user(uri: &str, user: &str) -> Option<String> {
    let parts = parse_uri(uri)?;
    let mut out = String::with_capacity(uri.len() + user.len());
    match parts.scheme {
        Scheme::Tel => {
            out.push_str(if parts.scheme_text.is_empty() {
                "tel"
            } else {
                parts.scheme_text
            });
            out.push(':');
            push_escaped_user(&mut out, user);
            if let Some(i) = parts.user_raw.find(';') {
                out.push_str(&parts.user_raw[i..]);
            }
        }
        Scheme::Sip | Scheme::Sips => {
            out.push_str(if parts.scheme_text.is_empty() {
                "sip"
            } else {
                parts.scheme_text
            });
            out.push(':');
            if !user.is_empty() {
                push_escaped_user(&mut out, user);
                if let Some(i) = parts.user_raw.find(':') {
                    out.push_str(&parts.user_raw[i..]);
                }
                out.push('@');
            }
            out.push_str(parts.host_rest);
        }
    }
    Some(out)
}

/// Whether a rewritten From/To URI may be sent: a `sip:`, `sips:` or `tel:`
/// URI with its scheme written out, as [`parse_uri`] reads it, and without a
/// control character, white space, `<`, `>` or `"`. None of those may appear
/// unescaped in a URI (RFC 3261 §25.1), and each would break the header the
/// URI is written into (SPEC §3: no CR, LF or NUL inside a header value).
pub(crate) fn is_sendable_uri(uri: &str) -> bool {
    !uri.contains(|c: char| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        && parse_uri(uri).is_some_and(|p| !p.scheme_text.is_empty())
}

/// Whether `s` is a SIP `token` (RFC 3261 §25.1).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// A display name as it must appear in a header: as is when a plain token,
/// else quoted with `"` and `\` escaped. CR, LF and NUL are dropped.
pub(crate) fn quote_display(display: &str) -> String {
    let clean: Cow<'_, str> = strip_ctl(display);
    if clean.is_empty() || is_token(&clean) {
        return clean.into_owned();
    }
    let mut out = String::with_capacity(clean.len() + 2);
    out.push('"');
    for c in clean.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Removes CR, LF and NUL, the three characters that must never reach a header value.
pub(crate) fn strip_ctl(s: &str) -> Cow<'_, str> {
    if s.contains(['\r', '\n', '\0']) {
        Cow::Owned(
            s.chars()
                .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_domain(s: &str) -> (String, String) {
        let na = split_name_addr(s);
        match parse_uri(na.uri) {
            Some(p) => (
                normalize_user(p.user_raw).into_owned(),
                p.host.to_ascii_lowercase(),
            ),
            None => (String::new(), String::new()),
        }
    }

    #[test]
    fn users_and_domains() {
        let cases = [
            ("sip:alice@Example.COM", "alice", "example.com"),
            (
                "sips:bob@example.com:5061;transport=tls",
                "bob",
                "example.com",
            ),
            (
                "\"Alice\" <sip:+44%20770@pbx.example>;tag=1",
                "+44770",
                "pbx.example",
            ),
            (
                "<sip:07700900123;npdi@example.com>",
                "07700900123",
                "example.com",
            ),
            (
                "tel:+1-212-555-0100;phone-context=example.com",
                "+12125550100",
                "",
            ),
            ("alice@example.com", "alice", "example.com"),
            ("sip:example.com", "", "example.com"),
            ("sip:[2001:db8::1]:5060", "", "[2001:db8::1]"),
            ("sip:user:secret@host", "user", "host"),
            ("sip:(020) 7946.0000@h", "02079460000", "h"),
            ("sip:alice.smith@h", "alice.smith", "h"),
            ("sip:*21#@h", "*21#", "h"),
            ("http://example.com", "", ""),
            ("", "", ""),
            ("sip:", "", ""),
            ("tel:", "", ""),
            ("sip:%zz@h", "%zz", "h"),
            ("sip:%41@h", "A", "h"),
            ("sip:%ff@h", "\u{fffd}", "h"),
            ("sip:%4@h", "%4", "h"),
            ("sip:a%%41%@h", "a%A%", "h"),
            ("sip:%e2%82%AC%c3@h", "\u{20ac}\u{fffd}", "h"),
        ];
        for (input, user, domain) in cases {
            assert_eq!(user_domain(input), (user.into(), domain.into()), "{input}");
        }
    }

    #[test]
    fn display_names_are_unquoted() {
        assert_eq!(
            split_name_addr("\"A \\\"B\\\"\" <sip:a@b>")
                .display
                .unwrap(),
            "A \"B\""
        );
        assert_eq!(split_name_addr("Bob <sip:a@b>").display.unwrap(), "Bob");
        assert_eq!(split_name_addr("<sip:a@b>").display, None);
        let na = split_name_addr("\"A <b>\" <sip:alice@pbx.example>;tag=1");
        assert_eq!(na.uri, "sip:alice@pbx.example");
        assert_eq!(na.display.unwrap(), "A <b>");
        let na = split_name_addr("\"A \\\" <b> \\\\\" <sip:a@h>");
        assert_eq!(na.uri, "sip:a@h");
        assert_eq!(na.display.unwrap(), "A \" <b> \\");
        // An unclosed quote: read as before quotes were looked at.
        assert_eq!(split_name_addr("\"Al <sip:a@h>").uri, "sip:a@h");
        assert_eq!(split_name_addr("sip:a@h").uri, "sip:a@h");
        assert_eq!(unquote("\"Alice\""), "Alice");
        assert_eq!(unquote("Alice"), "Alice");
        assert_eq!(unquote("\""), "\"");
    }

    #[test]
    fn quoting_display_names() {
        assert_eq!(quote_display("Alice"), "Alice");
        assert_eq!(quote_display("Alice Smith"), "\"Alice Smith\"");
        assert_eq!(quote_display("A \"q\" \\"), "\"A \\\"q\\\" \\\\\"");
        assert_eq!(quote_display("evil\r\nVia: x"), "\"evilVia: x\"");
        assert_eq!(quote_display(""), "");
    }

    #[test]
    fn replacing_users_keeps_the_rest() {
        assert_eq!(
            replace_user("sip:0770@example.com:5060;user=phone", "+44770").unwrap(),
            "sip:+44770@example.com:5060;user=phone"
        );
        assert_eq!(
            replace_user("sip:example.com", "bob").unwrap(),
            "sip:bob@example.com"
        );
        assert_eq!(
            replace_user("sip:a@h", "x y\r\n").unwrap(),
            "sip:x%20y%0D%0A@h"
        );
        assert_eq!(replace_user("tel:123;npdi", "456").unwrap(), "tel:456;npdi");
        assert!(replace_user("mailto:x", "y").is_none());
        assert_eq!(
            replace_user("sip:alice:secret@h;x", "bob").unwrap(),
            "sip:bob:secret@h;x"
        );
        assert_eq!(
            replace_user("sip:0770;npdi:pw@h", "+44770").unwrap(),
            "sip:+44770:pw@h"
        );
        assert_eq!(replace_user("sip:alice:secret@h", "").unwrap(), "sip:h");
    }

    #[test]
    fn sendable_uris() {
        for ok in [
            "sip:alice@example.com",
            "SIPS:bob@example.com:5061;transport=tls",
            "tel:+442079460000;phone-context=example.com",
            "sip:[2001:db8::1]:5060",
            "sip:x%0D%0A@h",
        ] {
            assert!(is_sendable_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "sip:alice@x;tag=1\r\nX-Evil: 1",
            "sip:alice@x\0",
            "sip:a@h\t",
            "sip:a b@h",
            "sip:a@h>;tag=x",
            "<sip:a@h>",
            "sip:\"a\"@h",
            "alice@example.com",
            "mailto:a@h",
            "sip:",
            "sip:\u{85}@h",
        ] {
            assert!(!is_sendable_uri(bad), "{bad:?}");
        }
    }
}
