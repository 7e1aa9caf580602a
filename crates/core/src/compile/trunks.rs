//! `[trunks.NAME]`: where calls go, and the gateways of each.

use toml::Spanned;

use super::names::Registry;
use super::values::check_socket;
use super::{At, Compiler, Parsed};
use crate::config::{GatewayDef, TrunkDef};
use crate::rule::Defaults;
use crate::rule::{Gateway, Trunk};
use crate::sip::MAX_URI;
use crate::uri::{Scheme, parse_uri};

impl<'s> Compiler<'s> {
    /// Every trunk, by index (a failed one is `None`), and their names.
    pub(super) fn trunks<'p>(
        &mut self,
        parsed: &'p Parsed,
        defaults: &Defaults,
    ) -> (Vec<Option<Trunk>>, Registry<'p>) {
        self.define(
            parsed,
            "trunk",
            |f| &f.trunks,
            |c, i, name, def| c.trunk(i, name, def, defaults),
        )
    }

    fn sip_uri(&mut self, at: &At, uri: &str, what: &str) -> Option<(Box<str>, Box<str>)> {
        let Some(p) = parse_uri(uri) else {
            self.err(at, format!("{what} {uri:?} is not a SIP URI; expected something like \"sip:198.51.100.10:5060\""));
            return None;
        };
        if p.scheme == Scheme::Tel || p.scheme_text.is_empty() {
            self.err(at, format!("{what} {uri:?} must start with sip: or sips:"));
            return None;
        }
        if !p.user_raw.is_empty() {
            self.err(at, format!("{what} {uri:?} must not have a user part: the call's number is inserted as the user"));
            return None;
        }
        if uri.len() > MAX_URI || uri.contains(|c: char| c.is_whitespace() || c.is_control()) {
            self.err(
                at,
                format!(
                    "{what} must be at most {MAX_URI} bytes without spaces or control characters"
                ),
            );
            return None;
        }
        Some((p.scheme_text.into(), p.host_rest.into()))
    }

    fn trunk(
        &mut self,
        i: usize,
        name: &str,
        def: &Spanned<TrunkDef>,
        defaults: &Defaults,
    ) -> Option<Trunk> {
        let d = def.get_ref();
        let errors_before = self.error_count();
        let mut gateways = Vec::new();
        if d.gateways.get_ref().is_empty() {
            self.err(
                &(i, d.gateways.span()),
                format!("trunk `{name}` has no gateways; list at least one"),
            );
        }
        for g in d.gateways.get_ref() {
            let at = (i, g.span());
            let GatewayDef {
                uri,
                priority,
                weight,
                enabled,
                calls,
            } = g.get_ref();
            let calls = calls.and_then(|n| self.limit_value(&at, n, "gateway calls"));
            let parts = self.sip_uri(&at, uri, "gateway");
            let priority = u16::try_from(*priority).map_err(|_| {
                self.err(
                    &at,
                    format!("gateway priority must be in 0..=65535, found {priority}"),
                );
            });
            let weight = u32::try_from(*weight).map_err(|_| {
                self.err(
                    &at,
                    format!("gateway weight must be in 0..=4294967295, found {weight}"),
                );
            });
            if let (Some((scheme, host_rest)), Ok(priority), Ok(weight)) = (parts, priority, weight)
                && *enabled
            {
                // A URI sip_uri accepted always has a key; an unparsable
                // port falls back to the URI itself (it then matches nothing).
                let key = crate::health::gateway_key(uri).unwrap_or_else(|_| uri.clone());
                gateways.push(Gateway {
                    key_hash: crate::health::key_hash(&key),
                    key: key.into(),
                    uri: uri.as_str().into(),
                    scheme,
                    host_rest,
                    priority,
                    weight,
                    calls,
                });
            }
        }
        if gateways.is_empty()
            && !d.gateways.get_ref().is_empty()
            && self.error_count() == errors_before
        {
            self.warn(
                &(i, d.gateways.span()),
                format!("every gateway of trunk `{name}` is disabled: rules using only this trunk answer 503"),
                None,
            );
        }
        gateways.sort_by_key(|g| g.priority);
        let strip = match &d.strip {
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(v) => v,
                Err(_) => {
                    self.err(
                        &(i, s.span()),
                        format!(
                            "strip must be a number of characters >= 0, found {}",
                            s.get_ref()
                        ),
                    );
                    0
                }
            },
            None => 0,
        };
        let prefix = match &d.prefix {
            Some(p)
                if p.get_ref()
                    .contains(|c: char| c.is_whitespace() || c.is_control() || c == '@') =>
            {
                self.err(
                    &(i, p.span()),
                    "trunk prefix may not contain spaces, control characters or `@`",
                );
                Box::from("")
            }
            Some(p) => p.get_ref().as_str().into(),
            None => "".into(),
        };
        let proxy = match &d.proxy {
            Some(p) if !p.get_ref().is_empty() => {
                self.sip_uri(&(i, p.span()), p.get_ref(), "proxy");
                Some(p.get_ref().as_str().into())
            }
            _ => None,
        };
        let socket = match &d.socket {
            Some(s) if !s.get_ref().is_empty() => {
                if let Err(e) = check_socket(s.get_ref()) {
                    self.err(&(i, s.span()), e);
                }
                s.get_ref().as_str().into()
            }
            _ => "".into(),
        };
        let fr_timer = self
            .u32_field(i, &d.fr_timer, "fr_timer")
            .unwrap_or(defaults.fr_timer);
        let fr_inv_timer = self
            .u32_field(i, &d.fr_inv_timer, "fr_inv_timer")
            .unwrap_or(defaults.fr_inv_timer);
        let branch_flags = self
            .u32_field(i, &d.branch_flags, "branch_flags")
            .unwrap_or(defaults.branch_flags);
        let mut headers = Vec::new();
        for h in d.headers.iter().flatten() {
            if let Some(t) = self.header(i, h) {
                headers.push(t);
            }
        }
        let health = self.health(i, d.health.as_ref(), &defaults.health);
        let limits = self.limits(i, d.limits.as_ref());
        let quality = self.quality(i, d.quality.as_ref(), &defaults.quality);
        (self.error_count() == errors_before).then(|| Trunk {
            health,
            limits,
            quality,
            name_hash: crate::health::key_hash(name),
            name: name.into(),
            gateways: gateways.into(),
            strip,
            prefix,
            proxy_key: proxy
                .as_deref()
                .and_then(|p| crate::health::gateway_key(p).ok())
                .map(Box::from),
            proxy,
            socket,
            fr_timer,
            fr_inv_timer,
            branch_flags,
            headers: headers.into(),
        })
    }
}
