//! A query prepared once for matching (globset's `Candidate` pattern): the
//! source address parsed, the transport decoded, and the user and domain of
//! From, To and the R-URI normalised, so that every index reads pre-chewed input.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use crate::Query;
use crate::uri::{normalize_user, parse_uri, split_name_addr, unquote};

/// One party (From, To or R-URI) of a query, normalised.
#[derive(Debug, Clone, Default)]
pub(crate) struct Party<'q> {
    /// User part: percent-decoded, no user parameters, no visual separators in numbers.
    pub user: Cow<'q, str>,
    /// Host, lower-case, without port.
    pub domain: Cow<'q, str>,
    /// Display name, unquoted.
    pub display: Cow<'q, str>,
    /// The bare URI as received (no display, no angle brackets).
    pub uri: &'q str,
    /// Whether the field was present at all.
    pub present: bool,
}

impl<'q> Party<'q> {
    fn new(uri: Option<&'q str>, name: Option<&'q str>) -> Self {
        let Some(raw) = uri else {
            return Party {
                display: name.map(unquote).unwrap_or_default(),
                ..Party::default()
            };
        };
        let na = split_name_addr(raw);
        let display = match name {
            Some(n) => unquote(n),
            None => na.display.unwrap_or_default(),
        };
        let (user, domain) = match parse_uri(na.uri) {
            Some(p) => (normalize_user(p.user_raw), lower(p.host)),
            None => (Cow::Borrowed(""), Cow::Borrowed("")),
        };
        Party {
            user,
            domain,
            display,
            uri: na.uri,
            present: true,
        }
    }
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// SIP transports as bits, so a rule's transport list is one mask.
pub(crate) mod transport {
    pub const NAMES: [&str; 6] = ["udp", "tcp", "tls", "ws", "wss", "sctp"];

    /// The bit of a transport name (any case), or `None`.
    pub fn bit(name: &str) -> Option<u8> {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name.trim()))
            .map(|i| 1 << i)
    }
}

/// The prepared query. From, To and the R-URI are parsed on first use: a
/// table whose rules never look at From does not pay for parsing it.
#[derive(Debug)]
pub(crate) struct Candidate<'q> {
    q: &'q Query<'q>,
    pub source_ip: Option<IpAddr>,
    pub source_ip_text: &'q str,
    pub source_port: Option<u16>,
    /// Transport bit, 0 when absent or unknown.
    pub transport: u8,
    pub auth: bool,
    pub call_id: &'q str,
    from: OnceCell<Party<'q>>,
    to: OnceCell<Party<'q>>,
    ruri: OnceCell<Party<'q>>,
}

impl<'q> Candidate<'q> {
    pub(crate) fn new(q: &'q Query<'q>) -> Self {
        let source_ip = q.source_ip.as_deref().and_then(|s| {
            let s = s.trim();
            let s = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
        });
        Candidate {
            q,
            source_ip,
            source_ip_text: q.source_ip.as_deref().unwrap_or(""),
            source_port: q.source_port,
            transport: q.transport.as_deref().and_then(transport::bit).unwrap_or(0),
            auth: q.auth.unwrap_or(false),
            call_id: q.call_id.as_deref().unwrap_or(""),
            from: OnceCell::new(),
            to: OnceCell::new(),
            ruri: OnceCell::new(),
        }
    }

    /// The From party.
    pub(crate) fn from(&self) -> &Party<'q> {
        self.from
            .get_or_init(|| Party::new(self.q.from_uri.as_deref(), self.q.from_name.as_deref()))
    }

    /// The To party.
    pub(crate) fn to(&self) -> &Party<'q> {
        self.to
            .get_or_init(|| Party::new(self.q.to_uri.as_deref(), self.q.to_name.as_deref()))
    }

    /// The R-URI, or the To party when the query has no `ruri`.
    pub(crate) fn ruri(&self) -> &Party<'q> {
        match self.q.ruri.as_deref() {
            Some(r) => self.ruri.get_or_init(|| Party::new(Some(r), None)),
            None => self.to(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruri_falls_back_to_to() {
        let q = Query::from_json(br#"{"to_uri":"sip:+44 20@x","to_name":"\"Bob\"","source_ip":"::ffff:10.0.0.1","transport":"TCP"}"#).unwrap();
        let c = Candidate::new(&q);
        assert_eq!(c.ruri().user, "+4420");
        assert_eq!(c.to().display, "Bob");
        assert_eq!(c.source_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(c.transport, transport::bit("tcp").unwrap());
        let q = Query::from_json(br#"{"to_uri":"sip:1@x","ruri":"sip:2@y"}"#).unwrap();
        assert_eq!(Candidate::new(&q).ruri().user, "2");
        assert!(!Candidate::new(&Query::default()).from().present);
    }
}
