//! Checks of single values shared by several steps: integers, routing
//! modes, rejects, ranges, networks, sockets, regexes and times.

use ipnet::IpNet;
use toml::Spanned;

use super::Compiler;
use crate::config::{RangeDef, RejectDef};
use crate::rule::Routing;
use crate::sip::default_reason;

impl Compiler<'_> {
    pub(super) fn u32_field(
        &mut self,
        file: usize,
        v: &Option<Spanned<i64>>,
        what: &str,
    ) -> Option<u32> {
        let v = v.as_ref()?;
        match u32::try_from(*v.get_ref()) {
            Ok(x) => Some(x),
            Err(_) => {
                self.err(
                    &(file, v.span()),
                    format!(
                        "{what} must be an integer in 0..=4294967295, found {}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn routing(&mut self, file: usize, v: &Spanned<String>) -> Option<Routing> {
        match v.get_ref().as_str() {
            "serial" => Some(Routing::Serial),
            "parallel" => Some(Routing::Parallel),
            other => {
                self.err(
                    &(file, v.span()),
                    format!("routing must be \"serial\" or \"parallel\", found {other:?}"),
                );
                None
            }
        }
    }

    pub(super) fn reject(
        &mut self,
        file: usize,
        r: &Spanned<RejectDef>,
    ) -> Option<(u16, Box<str>)> {
        let def = r.get_ref();
        let code = *def.code.get_ref();
        if !(400..=699).contains(&code) {
            self.err(
                &(file, def.code.span()),
                format!("reject code must be a SIP final failure code in 400..=699, found {code}"),
            );
            return None;
        }
        let reason = match &def.reason {
            Some(s) => {
                let t = s.get_ref().trim();
                if t.is_empty() || t.contains(['\r', '\n', '\0']) {
                    self.err(
                        &(file, s.span()),
                        "reject reason must be a non-empty single line of text",
                    );
                    return None;
                }
                t.into()
            }
            None => default_reason(code as u16).into(),
        };
        Some((code as u16, reason))
    }
}

/// A bad value in a routes.d file; the message says what was expected.
#[derive(Debug, thiserror::Error)]
pub(super) enum ValueError {
    #[error(
        "invalid source {0:?}; expected an IP address or a CIDR network like \"10.0.0.0/8\" or \"2001:db8::/32\""
    )]
    Source(String),
    #[error(
        "source {0:?} is an IPv4-mapped IPv6 network that covers both mapped and unmapped addresses; write the IPv4 part and the IPv6 part as two networks"
    )]
    MappedSource(String),
    #[error(
        "invalid {what} {value}; expected a number in {bounds} or a range \"low-high\" with low <= high"
    )]
    Range {
        what: &'static str,
        value: String,
        bounds: &'static str,
    },
    #[error(
        "invalid socket {0:?}; expected \"proto:ip:port\" matching a Kamailio listen socket, such as \"udp:192.0.2.20:5060\""
    )]
    Socket(String),
}

/// An `invalid regex: …` message with the regex crate's own explanation.
pub(super) fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let detail = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_string();
    format!("invalid regex: {detail}")
}

/// A source network, truncated to its prefix. A single address is a host
/// network. Queries carry IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as
/// plain IPv4 ones, so a mapped network (`::ffff:10.0.0.0/104`) is
/// rewritten as the IPv4 network it maps (`10.0.0.0/8`): written as is, it
/// could never match.
pub(super) fn parse_net(s: &str) -> Result<IpNet, ValueError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        return match n {
            IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() => {
                let (Some(v4), Some(len)) =
                    (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
                else {
                    // It covers ::ffff:0:0/96 and more: which half was meant?
                    return Err(ValueError::MappedSource(s.to_owned()));
                };
                ipnet::Ipv4Net::new(v4, len)
                    .map(|n| IpNet::V4(n.trunc()))
                    .map_err(|_| ValueError::Source(s.to_owned()))
            }
            n => Ok(n.trunc()),
        };
    }
    if let Ok(ip) = t.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    Err(ValueError::Source(s.to_owned()))
}

/// An inclusive range from `5060`, `"5060"` or `"5080-5089"`.
pub(super) fn parse_range<T>(
    d: &RangeDef,
    what: &'static str,
    bounds: &'static str,
) -> Result<(T, T), ValueError>
where
    T: std::str::FromStr + TryFrom<i64> + Ord + Copy + std::fmt::Display,
{
    let num = |s: &str| s.trim().parse::<T>().ok();
    let r = match d {
        RangeDef::Int(n) => T::try_from(*n).ok().map(|n| (n, n)),
        RangeDef::Text(s) => match s.split_once('-') {
            Some((a, b)) => num(a).zip(num(b)),
            None => num(s).map(|n| (n, n)),
        },
    };
    match r {
        Some((a, b)) if a <= b => Ok((a, b)),
        _ => Err(ValueError::Range {
            what,
            value: d.to_string(),
            bounds,
        }),
    }
}

/// A Kamailio listen socket, `proto:ip:port`.
pub(super) fn check_socket(s: &str) -> Result<(), ValueError> {
    let err = || ValueError::Socket(s.to_owned());
    let (proto, rest) = s.split_once(':').ok_or_else(err)?;
    if crate::candidate::transport::bit(proto).is_none() {
        return Err(err());
    }
    let (ip, port) = rest.rsplit_once(':').ok_or_else(err)?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    ip.parse::<std::net::IpAddr>().map_err(|_| err())?;
    port.parse::<u16>().map_err(|_| err())?;
    Ok(())
}

/// A time that [`crate::parse_time`] could not read.
#[derive(Debug, thiserror::Error)]
#[error("invalid time {text:?}: {reason}; expected RFC 3339 like \"2026-12-24T09:00:00Z\"")]
pub struct TimeError {
    text: String,
    reason: jiff::Error,
}

/// Parses an RFC 3339 instant such as `2026-12-24T09:00:00Z`.
pub(crate) fn parse_time(s: &str) -> Result<std::time::SystemTime, TimeError> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .map(std::time::SystemTime::from)
        .map_err(|reason| TimeError {
            text: s.to_owned(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_networks_become_ipv4_or_are_refused() {
        let net = |s: &str| parse_net(s).map(|n| n.to_string());
        assert_eq!(net("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(net("::ffff:192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(net("::ffff:192.0.2.7/128").unwrap(), "192.0.2.7/32");
        assert_eq!(net("::ffff:0:0/96").unwrap(), "0.0.0.0/0");
        assert!(matches!(
            net("::ffff:0:0/95"),
            Err(ValueError::MappedSource(_))
        ));
        assert_eq!(net("2001:db8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(net("::/0").unwrap(), "::/0");
    }
}
