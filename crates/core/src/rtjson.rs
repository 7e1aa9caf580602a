//! The answer (SPEC §3): a [`Decision`] and its rtjson serialisation.
//!
//! Kamailio's parsers are unforgiving, so the JSON is written by hand in a
//! fixed key order: one object, lower-case keys, never a duplicate, integers
//! as JSON integers, and `headers.from`/`headers.to` always complete.

use std::borrow::Cow;
use std::sync::Arc;

use crate::candidate::{Candidate, Party};
use crate::rule::{Action, Gateway, PartyRewrite, RouteAction, Routing};
use crate::sip::MAX_URI;
use crate::table::{RouteTable, RuleId};
use crate::uri::{is_sendable_uri, push_escaped_user, quote_display, replace_user, strip_ctl};

/// The decision for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'t> {
    /// The rule that decided, if any.
    pub rule_id: Option<RuleId>,
    /// Its name.
    pub rule: Option<&'t str>,
    /// Route or reject.
    pub outcome: Outcome<'t>,
    /// How many From/To URI rewrites of a routed answer were left out (the
    /// URI stays `""`, keep) because what came out was not a valid SIP URI:
    /// a control character (a CR/LF from the query), white space, `<`, `>`
    /// or `"`, no `sip:`/`sips:`/`tel:` scheme, or a query URI that could not
    /// be rebuilt. A party the query does not have is not counted. At most 2;
    /// `c4route serve` adds it to `c4route_rewrites_skipped_total`.
    pub skipped_rewrites: u32,
}

/// What happens to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'t> {
    /// Try these destinations.
    Route {
        /// Serial or parallel.
        routing: Routing,
        /// At least one, at most `max_routes`.
        routes: Vec<RouteAnswer<'t>>,
    },
    /// Reply with this SIP code.
    Reject {
        /// 400..=699.
        code: u16,
        /// The reason phrase.
        reason: Cow<'t, str>,
        /// Whether no rule matched (as opposed to a rule rejecting).
        no_match: bool,
    },
}

/// One destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAnswer<'t> {
    /// The R-URI for this attempt.
    pub uri: String,
    /// The next hop.
    pub dst_uri: &'t str,
    /// Kamailio listen socket (`proto:ip:port`) or `""`.
    pub socket: &'t str,
    /// The trunk this route belongs to.
    pub trunk: &'t str,
    /// From rewrite (`""` parts are kept as they are); shared by the routes of a decision.
    pub from: Arc<PartyHeader>,
    /// To rewrite.
    pub to: Arc<PartyHeader>,
    /// Extra header lines, each ending in CRLF, or `""`; shared by the routes of a trunk.
    pub extra: Arc<str>,
    /// OR-ed into the branch flags (rtjson applies it to the first route only).
    pub branch_flags: u32,
    /// Final-response timer in ms; 0 keeps Kamailio's.
    pub fr_timer: u32,
    /// INVITE final-response timer in ms (after a provisional reply); 0 keeps Kamailio's.
    pub fr_inv_timer: u32,
}

/// A From or To rewrite: `""` keeps that part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartyHeader {
    /// The display name, quoted when it is not a plain token.
    pub display: String,
    /// The full URI.
    pub uri: String,
}

/// How to wrap the answer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// `{"rtjson":{…}}`, for `jansson_get("rtjson", $http_rb, …)`.
    Rtjson,
    /// The rtjson document itself, for `rtjson_init_routes("$http_rb")`.
    Bare,
}

impl Decision<'_> {
    /// `routed`, `rejected` or `no_match` (metrics labels).
    pub fn outcome_label(&self) -> &'static str {
        match &self.outcome {
            Outcome::Route { .. } => "routed",
            Outcome::Reject { no_match: true, .. } => "no_match",
            Outcome::Reject { .. } => "rejected",
        }
    }

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

/// FNV-1a: stable across platforms and releases, so a Call-ID always gets
/// the same gateway order (`c4route eval` reproduces production).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// RFC 2782 order: by priority; within a priority, weighted random without
/// replacement; weight-0 gateways last in their priority, in declared order.
/// `gws` is sorted by priority.
pub(crate) fn srv_order(gws: &[Gateway], seed: u64, out: &mut Vec<usize>) {
    let mut rng = SplitMix(seed);
    let mut pool: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < gws.len() {
        let mut j = i;
        while j < gws.len() && gws[j].priority == gws[i].priority {
            j += 1;
        }
        pool.clear();
        pool.extend((i..j).filter(|&g| gws[g].weight > 0));
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|&g| u64::from(gws[g].weight)).sum();
            let mut r = rng.next() % total;
            let mut pick = pool.len() - 1;
            for (k, &g) in pool.iter().enumerate() {
                let w = u64::from(gws[g].weight);
                if r < w {
                    pick = k;
                    break;
                }
                r -= w;
            }
            out.push(pool.remove(pick));
        }
        out.extend((i..j).filter(|&g| gws[g].weight == 0));
        i = j;
    }
}

/// The From or To of a routed answer; `skipped` counts a URI rewrite whose
/// result may not be sent (see [`Decision::skipped_rewrites`]).
fn party_header(
    p: &Party<'_>,
    rw: &PartyRewrite,
    c: &Candidate<'_>,
    rule: &str,
    skipped: &mut u32,
) -> PartyHeader {
    // A rewrite that does not apply (a regex without a match) leaves its
    // part `""` (keep), so the caller's value reaches the callee untouched.
    let display = rw
        .display
        .as_ref()
        .and_then(|r| r.try_apply(&p.display, c, rule))
        .map(|d| quote_display(&d))
        .unwrap_or_default();
    let base = rw
        .uri
        .as_ref()
        .and_then(|r| r.try_apply(p.uri, c, rule))
        .map(|u| strip_ctl(&u).trim().to_owned());
    let user = rw.user.as_ref().and_then(|r| r.try_apply(&p.user, c, rule));
    let applied = user.is_some() || base.is_some();
    let mut uri = match user {
        Some(u) => replace_user(base.as_deref().unwrap_or(p.uri), &u).unwrap_or_default(),
        None => base.unwrap_or_default(),
    };
    // Only a rewrite that applied pays for the check.
    if applied && !is_sendable_uri(&uri) {
        if p.present || !uri.is_empty() {
            *skipped += 1;
        }
        uri.clear();
    }
    PartyHeader { display, uri }
}

impl RouteTable {
    pub(crate) fn answer<'t>(&'t self, winner: Option<RuleId>, c: &Candidate<'_>) -> Decision<'t> {
        let Some(id) = winner else {
            let (code, reason) = &self.defaults.no_match;
            return Decision {
                rule_id: None,
                rule: None,
                outcome: Outcome::Reject {
                    code: *code,
                    reason: Cow::Borrowed(reason),
                    no_match: true,
                },
                skipped_rewrites: 0,
            };
        };
        let name = self.rule_name(id);
        let mut skipped = 0;
        let outcome = match &self.actions[self.action_of(id) as usize] {
            Action::Reject { code, reason } => Outcome::Reject {
                code: *code,
                reason: Cow::Borrowed(reason),
                no_match: false,
            },
            Action::Route(ra) => self.routes(ra, name, c, &mut skipped),
        };
        Decision {
            rule_id: Some(id),
            rule: Some(name),
            // A reject (414, 503) sends no headers, so nothing was skipped.
            skipped_rewrites: if matches!(outcome, Outcome::Route { .. }) {
                skipped
            } else {
                0
            },
            outcome,
        }
    }

    fn routes<'t>(
        &'t self,
        ra: &'t RouteAction,
        rule: &str,
        c: &Candidate<'_>,
        skipped: &mut u32,
    ) -> Outcome<'t> {
        let rw = ra.rewrites.as_deref();
        let ruri_user: Cow<'_, str> = match rw.and_then(|r| r.ruri_user.as_ref()) {
            Some(r) => Cow::Owned(r.apply(&c.ruri().user, c, rule)),
            None => Cow::Borrowed(&c.ruri().user),
        };
        let (from, to) = match rw {
            Some(r) => (
                Arc::new(party_header(c.from(), &r.from, c, rule, skipped)),
                Arc::new(party_header(c.to(), &r.to, c, rule, skipped)),
            ),
            None => (self.no_rewrite.clone(), self.no_rewrite.clone()),
        };
        let serial = ra.routing == Routing::Serial;
        let max = self.defaults.max_routes as usize;
        let seed = fnv1a(c.call_id.as_bytes());
        let mut routes = Vec::with_capacity(4);
        let mut order = Vec::with_capacity(4);
        let mut user = String::new();
        'trunks: for &tid in ra.trunks.iter() {
            let t = &self.trunks[tid as usize];
            user.clear();
            let rest = match ruri_user.char_indices().nth(t.strip as usize) {
                Some((i, _)) => &ruri_user[i..],
                None => "",
            };
            user.push_str(&t.prefix);
            user.push_str(rest);
            let mut lines = String::new();
            if serial {
                for h in ra.headers.iter().chain(t.headers.iter()) {
                    let start = lines.len();
                    h.render_into(&mut lines, c, rule, &t.name);
                    // SPEC §4.3: a header whose value renders empty is left
                    // out, not sent empty. The name is a literal SIP token
                    // (checked at load), so the first `:` ends it.
                    let value = lines[start..].split_once(':').map_or("", |(_, v)| v);
                    if value.trim_matches([' ', '\t']).is_empty() {
                        lines.truncate(start);
                    } else {
                        lines.push_str("\r\n");
                    }
                }
            }
            let extra: Arc<str> = if lines.is_empty() {
                self.no_extra.clone()
            } else {
                lines.into()
            };
            order.clear();
            // Seeded by Call-ID and trunk name: a trunk's order for a call does not
            // depend on which trunks come before it in the rule.
            srv_order(&t.gateways, seed ^ fnv1a(t.name.as_bytes()), &mut order);
            for &g in &order {
                if routes.len() == max {
                    break 'trunks;
                }
                let gw = &t.gateways[g];
                let mut uri =
                    String::with_capacity(gw.scheme.len() + user.len() + gw.host_rest.len() + 2);
                uri.push_str(&gw.scheme);
                uri.push(':');
                if !user.is_empty() {
                    push_escaped_user(&mut uri, &user);
                    uri.push('@');
                }
                uri.push_str(&gw.host_rest);
                if uri.len() > MAX_URI {
                    return Outcome::Reject {
                        code: 414,
                        reason: Cow::Borrowed("Request-URI Too Long"),
                        no_match: false,
                    };
                }
                routes.push(RouteAnswer {
                    uri,
                    dst_uri: t.proxy.as_deref().unwrap_or(&gw.uri),
                    socket: &t.socket,
                    trunk: &t.name,
                    from: from.clone(),
                    to: to.clone(),
                    extra: extra.clone(),
                    branch_flags: t.branch_flags,
                    fr_timer: if serial { t.fr_timer } else { 0 },
                    fr_inv_timer: if serial { t.fr_inv_timer } else { 0 },
                });
            }
        }
        if routes.is_empty() {
            return Outcome::Reject {
                code: 503,
                reason: Cow::Borrowed("Service Unavailable"),
                no_match: false,
            };
        }
        Outcome::Route {
            routing: ra.routing,
            routes,
        }
    }
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
