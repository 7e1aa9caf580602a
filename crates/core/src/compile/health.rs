//! `[defaults.health]`, `[trunks.NAME.health]` (SPEC §8), and the list of
//! distinct gateways a server probes and judges (SPEC §9.3).
//!
//! A trunk's `health` table overrides `[defaults.health]` key by key. A
//! gateway listed by several trunks is one gateway (one probe stream, one
//! state, one set of quality windows): it takes the `health` and `quality`
//! settings of the first trunk that lists it, and a warning says so when
//! another trunk disagrees.

use std::time::Duration;

use hashbrown::HashMap;
use toml::Spanned;

use super::{Compiler, Parsed};
use crate::config::HealthDef;
use crate::health::{GatewayInfo, HealthSettings, ProbeMode, ProbeTransport, gateway_key};
use crate::rule::Trunk;

impl Compiler<'_> {
    /// The settings of one `health` table over `base`; an invalid value is
    /// reported and keeps `base`'s.
    pub(super) fn health(
        &mut self,
        i: usize,
        def: Option<&Spanned<HealthDef>>,
        base: &HealthSettings,
    ) -> HealthSettings {
        let mut h = base.clone();
        let Some(def) = def else { return h };
        let d = def.get_ref();
        if let Some(p) = &d.probe {
            h.probe = match p.get_ref().as_str() {
                "never" => ProbeMode::Never,
                "always" => ProbeMode::Always,
                "when_down" => ProbeMode::WhenDown,
                other => {
                    self.err(
                        &(i, p.span()),
                        format!(
                            "health.probe must be \"never\", \"always\" or \"when_down\", found {other:?}"
                        ),
                    );
                    h.probe
                }
            };
        }
        let mut seconds = |v: &Option<Spanned<f64>>, key: &str, min: f64, cur: Duration| {
            let Some(v) = v else { return cur };
            let s = *v.get_ref();
            if s.is_finite() && (min..=86_400.0).contains(&s) {
                Duration::from_secs_f64(s)
            } else {
                self.err(
                    &(i, v.span()),
                    format!("health.{key} must be a number of seconds in {min}..=86400, found {s}"),
                );
                cur
            }
        };
        h.interval = seconds(&d.interval, "interval", 0.1, h.interval);
        h.timeout = seconds(&d.timeout, "timeout", 0.1, h.timeout);
        h.retry_after = seconds(&d.retry_after, "retry_after", 1.0, h.retry_after);
        let mut count = |v: &Option<Spanned<i64>>, key: &str, cur: u32| {
            let Some(v) = v else { return cur };
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    self.err(
                        &(i, v.span()),
                        format!(
                            "health.{key} must be a count in 1..=100, found {}",
                            v.get_ref()
                        ),
                    );
                    cur
                }
            }
        };
        h.down_after = count(&d.down_after, "down_after", h.down_after);
        h.up_after = count(&d.up_after, "up_after", h.up_after);
        if let Some(list) = &d.fail_codes {
            let errors = self.error_count();
            let mut codes = Vec::new();
            for c in list.get_ref() {
                match parse_code_pattern(c.get_ref()) {
                    Some(r) => codes.push(r),
                    None => self.err(
                        &(i, c.span()),
                        format!(
                            "health.fail_codes items are \"NNN\" (a final code in 200..=699) or \"Nxx\" (2xx..6xx), found {:?}",
                            c.get_ref()
                        ),
                    ),
                }
            }
            if self.error_count() == errors {
                h.fail_codes = codes.into();
            }
        }
        h
    }

    /// Every distinct gateway of the valid trunks, in the order first
    /// listed; warns once per gateway that cannot be probed although its
    /// settings ask for probes, and once per gateway whose trunks disagree
    /// on its settings.
    pub(super) fn gateways(
        &mut self,
        parsed: &Parsed,
        trunks: &[Option<Trunk>],
    ) -> Vec<GatewayInfo> {
        let by_name: HashMap<&str, &Trunk> =
            trunks.iter().flatten().map(|t| (&*t.name, t)).collect();
        let mut out: Vec<GatewayInfo> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        // Per gateway: 1 once warned about health, 2 about quality.
        let mut warned_conflict: Vec<u8> = Vec::new();
        let mut seen = hashbrown::HashSet::new();
        for (i, f) in parsed {
            for (name, def) in &f.trunks {
                // A trunk defined twice (an error already): its first
                // definition is the one compiled.
                if !seen.insert(name.get_ref().as_str()) {
                    continue;
                }
                let Some(t) = by_name.get(name.get_ref().as_str()) else {
                    continue;
                };
                for g in def.get_ref().gateways.get_ref() {
                    let gd = g.get_ref();
                    if !gd.enabled {
                        continue;
                    }
                    let Ok(key) = gateway_key(&gd.uri) else {
                        continue;
                    };
                    let at = (*i, g.span());
                    let n = match index.get(&key) {
                        Some(&n) => n,
                        None => {
                            let info = GatewayInfo::new(
                                key.clone(),
                                &gd.uri,
                                t.health.clone(),
                                t.quality.clone(),
                            );
                            if info.transport == ProbeTransport::Unsupported
                                && info.health.probe != ProbeMode::Never
                            {
                                self.warn(
                                    &at,
                                    format!(
                                        "gateway {:?} cannot be probed (c4route probes UDP and TCP, not TLS or WebSocket): reports from Kamailio alone decide its state",
                                        gd.uri
                                    ),
                                    None,
                                );
                            }
                            index.insert(key, out.len());
                            out.push(info);
                            warned_conflict.push(0);
                            out.len() - 1
                        }
                    };
                    let info = &mut out[n];
                    // Computed once here: the server reads it per gateway
                    // on every reload. An invalid value is an error already.
                    if let Some(c) = gd.calls.and_then(|c| u32::try_from(c).ok()) {
                        info.calls = Some(info.calls.map_or(c, |m| m.min(c)));
                    }
                    if !info.trunks.iter().any(|x| **x == *t.name) {
                        info.trunks.push(t.name.to_string());
                        for (what, differs, bit) in [
                            ("health", info.health != t.health, 1),
                            ("quality", info.quality != t.quality, 2),
                        ] {
                            if differs && warned_conflict[n] & bit == 0 {
                                warned_conflict[n] |= bit;
                                let first = info.trunks[0].clone();
                                self.warn(
                                    &at,
                                    format!(
                                        "gateway {:?} is listed by trunks `{first}` and `{}` with different {what} settings; it is one gateway, and `{first}`'s apply",
                                        gd.uri, t.name
                                    ),
                                    None,
                                );
                            }
                        }
                    }
                }
            }
        }
        for g in &mut out {
            g.trunks.sort();
        }
        out
    }
}

/// `"503"` → (503, 503); `"5xx"` → (500, 599).
fn parse_code_pattern(s: &str) -> Option<(u16, u16)> {
    let b = s.as_bytes();
    if b.len() != 3 || !(b'2'..=b'6').contains(&b[0]) {
        return None;
    }
    let class = u16::from(b[0] - b'0') * 100;
    if b[1..].eq_ignore_ascii_case(b"xx") {
        return Some((class, class + 99));
    }
    let n: u16 = s.parse().ok()?;
    Some((n, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_patterns() {
        assert_eq!(parse_code_pattern("503"), Some((503, 503)));
        assert_eq!(parse_code_pattern("5xx"), Some((500, 599)));
        assert_eq!(parse_code_pattern("4XX"), Some((400, 499)));
        for bad in ["", "5", "50x", "1xx", "700", "7xx", "abc", "5x5", "0503"] {
            assert_eq!(parse_code_pattern(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod errors {
    use crate::{Error, Sources};

    #[test]
    fn every_bad_health_value_is_an_error_at_its_place() {
        let text = "[defaults.health]\nprobe = \"sometimes\"\ninterval = 0\ntimeout = -1\n\
            down_after = 0\nup_after = 1000\nfail_codes = [\"5xx\", \"50\", \"7xx\"]\nretry_after = 0.5\n\
            [trunks.a]\ngateways = [\"sip:192.0.2.1\"]\nhealth = { probez = \"always\" }\n";
        let mut s = Sources::new();
        s.add("routes.d/h.toml", text);
        let Err(Error::Config(d)) = s.build() else {
            panic!("must not compile");
        };
        let d = d.to_string();
        // A toml error (an unknown key) stops the file, so check the
        // values in a file of their own.
        assert!(d.contains("probez"), "{d}");
        let text = text.replace("health = { probez = \"always\" }\n", "");
        let mut s = Sources::new();
        s.add("routes.d/h.toml", &text);
        let Err(Error::Config(d)) = s.build() else {
            panic!("must not compile");
        };
        let d = d.to_string();
        for (at, msg) in [
            (
                "h.toml:2:9",
                "health.probe must be \"never\", \"always\" or \"when_down\", found \"sometimes\"",
            ),
            (
                "h.toml:3:12",
                "health.interval must be a number of seconds in 0.1..=86400, found 0",
            ),
            ("h.toml:4:11", "health.timeout must be"),
            (
                "h.toml:5:14",
                "health.down_after must be a count in 1..=100, found 0",
            ),
            (
                "h.toml:6:12",
                "health.up_after must be a count in 1..=100, found 1000",
            ),
            ("h.toml:7:22", "health.fail_codes items are \"NNN\""),
            ("h.toml:7:28", "found \"7xx\""),
            (
                "h.toml:8:15",
                "health.retry_after must be a number of seconds in 1..=86400",
            ),
        ] {
            assert!(
                d.lines().any(|l| l.contains(at) && l.contains(msg)),
                "{at} {msg}:\n{d}"
            );
        }
    }
}
