//! Live gateway state (SPEC §8) as the decision sees it: an immutable
//! snapshot of which gateways are down or disabled, passed in like the clock.
//!
//! The core never learns *how* a gateway went down (probes, reports and the
//! state machine live in `c4route serve`); it only orders routes with a
//! [`GatewayState`]. An empty snapshot (the default) costs one branch per
//! decision, so callers without probing pay nothing.
//!
//! Gateways are identified by a normalised URI ([`gateway_key`]): scheme,
//! host (lower case), port (5060 by default, 5061 for `sips:` or
//! `transport=tls`) and transport (`udp` by default, `tls` for `sips:`).
//! Other URI parameters (`;lr`, …) do not make another gateway. So a
//! report about `sip:198.51.100.10` finds the gateway written
//! `sip:198.51.100.10:5060;transport=UDP`.

use std::time::Duration;

use hashbrown::HashTable;

use crate::quality::QualitySettings;
use crate::uri::{Scheme, parse_uri};

/// What the state says about one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GatewayStatus {
    /// Tried in its static order.
    Up,
    /// Tried after every gateway that is not down (never left out).
    Down,
    /// Left out of answers, as `enabled = false` does (drained by an operator).
    Disabled,
}

impl GatewayStatus {
    /// `up`, `down` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayStatus::Up => "up",
            GatewayStatus::Down => "down",
            GatewayStatus::Disabled => "disabled",
        }
    }
}

/// A URI that cannot name a gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?} is not a sip: or sips: gateway URI such as \"sip:198.51.100.10:5060\"")]
pub struct GatewayUriError {
    /// The URI as given.
    pub uri: String,
}

/// The normalised identity of a gateway URI (see the module docs):
/// `sip:198.51.100.10:5060;transport=udp`.
///
/// # Errors
/// [`GatewayUriError`] when `uri` is not a `sip:`/`sips:` URI with a host.
pub fn gateway_key(uri: &str) -> Result<String, GatewayUriError> {
    let bad = || GatewayUriError {
        uri: uri.to_owned(),
    };
    let trimmed = uri.trim();
    // A name-addr's angle brackets are tolerated, as in queries.
    let bare = match trimmed.strip_prefix('<') {
        Some(r) => r.split('>').next().unwrap_or(""),
        None => trimmed,
    };
    let p = parse_uri(bare).ok_or_else(bad)?;
    let scheme = match p.scheme {
        Scheme::Sip => "sip",
        Scheme::Sips => "sips",
        Scheme::Tel => return Err(bad()),
    };
    let end = p.host_rest.find([';', '?']).unwrap_or(p.host_rest.len());
    let hostport = &p.host_rest[..end];
    let port_text = hostport[p.host.len()..].strip_prefix(':').unwrap_or("");
    let mut transport = if p.scheme == Scheme::Sips {
        "tls".to_owned()
    } else {
        "udp".to_owned()
    };
    for param in p.host_rest[end..]
        .split(['?'])
        .next()
        .unwrap_or("")
        .split(';')
    {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("transport")
        {
            transport = v.trim().to_ascii_lowercase();
        }
    }
    let port: u16 = if port_text.is_empty() {
        if p.scheme == Scheme::Sips || transport == "tls" || transport == "wss" {
            5061
        } else {
            5060
        }
    } else {
        port_text.parse().map_err(|_| bad())?
    };
    Ok(format!(
        "{scheme}:{}:{port};transport={transport}",
        p.host.to_ascii_lowercase()
    ))
}

/// An immutable snapshot of the gateways that are not up, keyed by
/// [`gateway_key`]. Every gateway it does not name is up.
///
/// Build one with [`GatewayState::set`] (or collect `(uri, status)` pairs
/// with [`GatewayState::from_statuses`]); a server publishes a new snapshot
/// on each change and the decision reads it without locks.
#[derive(Debug, Clone, Default)]
pub struct GatewayState {
    /// `(hash, key, status)`, found by [`key_hash`]: the table keeps each
    /// gateway's hash, so a decision hashes nothing.
    not_up: HashTable<(u64, Box<str>, GatewayStatus)>,
}

/// FNV-1a of a gateway key: stable, so the table computes it once per
/// gateway at load and a snapshot built later agrees with it.
pub(crate) fn key_hash(key: &str) -> u64 {
    crate::hash::fnv1a(key.as_bytes())
}

impl GatewayState {
    /// Every gateway up: the state of a table with no live knowledge.
    pub fn all_up() -> Self {
        Self::default()
    }

    /// Whether every gateway is up (the decision then skips the reorder).
    pub fn is_empty(&self) -> bool {
        self.not_up.is_empty()
    }

    /// Records the status of the gateway `uri` (any spelling of it).
    ///
    /// # Errors
    /// [`GatewayUriError`] when `uri` cannot name a gateway.
    pub fn set(&mut self, uri: &str, status: GatewayStatus) -> Result<(), GatewayUriError> {
        let key = gateway_key(uri)?;
        self.set_key(key, status);
        Ok(())
    }

    /// Records a status under a key that is already [`gateway_key`]'s output.
    pub fn set_key(&mut self, key: String, status: GatewayStatus) {
        let h = key_hash(&key);
        let found = self.not_up.find_entry(h, |e| *e.1 == *key);
        match (found, status) {
            (Ok(e), GatewayStatus::Up) => {
                e.remove();
            }
            (Ok(mut e), s) => e.get_mut().2 = s,
            (Err(_), GatewayStatus::Up) => {}
            (Err(_), s) => {
                self.not_up.insert_unique(h, (h, key.into(), s), |e| e.0);
            }
        }
    }

    /// A snapshot from `(uri, status)` pairs.
    ///
    /// # Errors
    /// The first URI that cannot name a gateway.
    pub fn from_statuses<'a>(
        items: impl IntoIterator<Item = (&'a str, GatewayStatus)>,
    ) -> Result<Self, GatewayUriError> {
        let mut s = Self::default();
        for (uri, status) in items {
            s.set(uri, status)?;
        }
        Ok(s)
    }

    /// The status of a gateway by its normalised key.
    pub fn status_of_key(&self, key: &str) -> GatewayStatus {
        self.status_of_gateway(key_hash(key), key)
    }

    /// [`GatewayState::status_of_key`] with the key's hash already known.
    pub(crate) fn status_of_gateway(&self, hash: u64, key: &str) -> GatewayStatus {
        self.not_up
            .find(hash, |e| *e.1 == *key)
            .map_or(GatewayStatus::Up, |e| e.2)
    }

    /// The status of a gateway by any spelling of its URI (`Up` for a URI
    /// that cannot name a gateway).
    pub fn status(&self, uri: &str) -> GatewayStatus {
        gateway_key(uri).map_or(GatewayStatus::Up, |k| self.status_of_key(&k))
    }
}

/// When a gateway is probed with SIP OPTIONS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeMode {
    /// Never: reports alone decide, and `retry_after` brings a down gateway back.
    Never,
    /// Every `interval`.
    Always,
    /// Only while the gateway is down, to learn when it is back.
    WhenDown,
}

impl ProbeMode {
    /// The routes.d spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Never => "never",
            ProbeMode::Always => "always",
            ProbeMode::WhenDown => "when_down",
        }
    }
}

/// The effective `[defaults.health]` / `[trunks.NAME.health]` settings of a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSettings {
    /// When to probe.
    pub probe: ProbeMode,
    /// Time between two probes of the gateway.
    pub interval: Duration,
    /// Time without a final reply that makes a probe fail.
    pub timeout: Duration,
    /// Consecutive failures that take an up gateway down.
    pub down_after: u32,
    /// Consecutive successes that bring a down gateway up.
    pub up_after: u32,
    /// Final replies that count as failures: inclusive code ranges.
    pub fail_codes: Box<[(u16, u16)]>,
    /// Time after which a down gateway that nothing probes is up again.
    pub retry_after: Duration,
}

impl Default for HealthSettings {
    /// The SPEC §8 defaults: no probing, 10 s interval, 2 s timeout, down
    /// after 3 failures, up after 2 successes, 408 and 5xx fail, 60 s retry.
    fn default() -> Self {
        HealthSettings {
            probe: ProbeMode::Never,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            down_after: 3,
            up_after: 2,
            fail_codes: Box::new([(408, 408), (500, 599)]),
            retry_after: Duration::from_secs(60),
        }
    }
}

impl HealthSettings {
    /// Whether a final reply `code` counts as a failure.
    pub fn is_failure(&self, code: u16) -> bool {
        self.fail_codes
            .iter()
            .any(|&(lo, hi)| lo <= code && code <= hi)
    }
}

/// The transport a gateway is reached over, as far as probing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeTransport {
    /// SIP over UDP (OPTIONS retransmitted as timer A does).
    Udp,
    /// SIP over TCP.
    Tcp,
    /// TLS, WebSocket, SCTP: c4route does not probe these; reports alone decide.
    Unsupported,
}

/// A gateway the table names, for a server that probes it: one per
/// distinct [`gateway_key`], however many trunks list it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayInfo {
    /// The normalised URI ([`gateway_key`]): the key of [`GatewayState`].
    pub key: String,
    /// The URI as first written in routes.d.
    pub uri: String,
    /// The host (lower case; IPv6 in brackets).
    pub host: String,
    /// The port (5060 or 5061 when not written).
    pub port: u16,
    /// How it is probed.
    pub transport: ProbeTransport,
    /// The trunks that list it (enabled), in name order.
    pub trunks: Vec<String>,
    /// The health settings of the first of those trunks.
    pub health: HealthSettings,
    /// The quality settings (SPEC §9.3) of the first of those trunks.
    pub quality: QualitySettings,
    /// Its `calls` cap (SPEC §9.2): the smallest its trunks give it.
    pub calls: Option<u32>,
}

impl GatewayInfo {
    /// Builds the record of one gateway key.
    pub(crate) fn new(
        key: String,
        uri: &str,
        health: HealthSettings,
        quality: QualitySettings,
    ) -> Self {
        // key = scheme:host:port;transport=t
        let (hostport, transport) = key.split_once(";transport=").unwrap_or((&key, "udp"));
        let rest = hostport.split_once(':').map_or("", |(_, r)| r);
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "5060"));
        let transport = match (key.starts_with("sips:"), transport) {
            (false, "udp") => ProbeTransport::Udp,
            (false, "tcp") => ProbeTransport::Tcp,
            _ => ProbeTransport::Unsupported,
        };
        GatewayInfo {
            uri: uri.to_owned(),
            host: host.to_owned(),
            port: port.parse().unwrap_or(5060),
            transport,
            trunks: Vec::new(),
            health,
            quality,
            calls: None,
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_scheme_host_port_and_transport() {
        let k = |u: &str| gateway_key(u).unwrap();
        let base = "sip:198.51.100.10:5060;transport=udp";
        for same in [
            "sip:198.51.100.10",
            "sip:198.51.100.10:5060",
            "SIP:198.51.100.10:5060;transport=UDP",
            "sip:198.51.100.10;lr",
            "<sip:198.51.100.10:5060>",
            " sip:198.51.100.10 ",
        ] {
            assert_eq!(k(same), base, "{same}");
        }
        for other in [
            "sip:198.51.100.10:5080",
            "sip:198.51.100.10;transport=tcp",
            "sips:198.51.100.10",
            "sip:198.51.100.11",
        ] {
            assert_ne!(k(other), base, "{other}");
        }
        assert_eq!(k("sips:gw.example"), "sips:gw.example:5061;transport=tls");
        assert_eq!(
            k("sip:GW.Example;transport=tls"),
            "sip:gw.example:5061;transport=tls"
        );
        assert_eq!(
            k("sip:[2001:DB8::1]"),
            "sip:[2001:db8::1]:5060;transport=udp"
        );
        assert_eq!(
            k("sip:[2001:db8::1]:5070"),
            "sip:[2001:db8::1]:5070;transport=udp"
        );
        for bad in ["", "tel:+44", "sip:", "sip:host:99999", "sip:host:x"] {
            assert!(gateway_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_snapshot_answers_by_any_spelling() {
        let mut s = GatewayState::all_up();
        assert!(s.is_empty());
        s.set("sip:198.51.100.10", GatewayStatus::Down).unwrap();
        s.set("sip:198.51.100.11:5060", GatewayStatus::Disabled)
            .unwrap();
        assert_eq!(s.status("sip:198.51.100.10:5060"), GatewayStatus::Down);
        assert_eq!(s.status("sip:198.51.100.11"), GatewayStatus::Disabled);
        assert_eq!(s.status("sip:198.51.100.12"), GatewayStatus::Up);
        s.set("sip:198.51.100.10", GatewayStatus::Up).unwrap();
        s.set("sip:198.51.100.11", GatewayStatus::Up).unwrap();
        assert!(s.is_empty());
        assert!(s.set("tel:+1", GatewayStatus::Down).is_err());
    }

    #[test]
    fn info_splits_the_key() {
        let i = GatewayInfo::new(
            gateway_key("sip:[2001:db8::1]:5070;transport=tcp").unwrap(),
            "sip:[2001:db8::1]:5070;transport=tcp",
            HealthSettings::default(),
            QualitySettings::default(),
        );
        assert_eq!((i.host.as_str(), i.port), ("[2001:db8::1]", 5070));
        assert_eq!(i.transport, ProbeTransport::Tcp);
        let i = GatewayInfo::new(
            gateway_key("sips:gw").unwrap(),
            "sips:gw",
            HealthSettings::default(),
            QualitySettings::default(),
        );
        assert_eq!(i.transport, ProbeTransport::Unsupported);
        assert!(HealthSettings::default().is_failure(503));
        assert!(HealthSettings::default().is_failure(408));
        assert!(!HealthSettings::default().is_failure(404));
    }
}
