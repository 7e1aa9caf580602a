//! What a decision is: route (with the destinations) or reject. The
//! types borrow from the table, so a decision allocates only what differs
//! per call (the R-URIs, rewritten From/To, rendered headers).

use std::borrow::Cow;
use std::sync::Arc;

use super::pipeline::LeftOut;
use crate::rule::{Routing, RuleId};

/// The decision for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The trunks and gateways a capacity limit left out of this answer
    /// (SPEC §9.2), once each; empty when nothing was at its limit.
    pub left_out: Vec<LeftOut<'t>>,
}

/// What happens to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<'t> {
    /// Try these destinations.
    #[non_exhaustive]
    Route {
        /// Serial or parallel.
        routing: Routing,
        /// At least one, at most `max_routes`.
        routes: Vec<RouteAnswer<'t>>,
    },
    /// Reply with this SIP code.
    #[non_exhaustive]
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
#[non_exhaustive]
pub struct RouteAnswer<'t> {
    /// The R-URI for this attempt.
    pub uri: String,
    /// The next hop.
    pub dst_uri: &'t str,
    /// Kamailio listen socket (`proto:ip:port`) or `""`.
    pub socket: &'t str,
    /// The trunk this route belongs to.
    pub trunk: &'t str,
    /// The gateway's normalised URI ([`crate::gateway_key`]), which call
    /// events and live state name it by (with a `proxy`, `dst_uri` is the
    /// proxy; this is still the gateway).
    pub gateway: &'t str,
    /// The normalised key of `dst_uri`: the gateway's, or the trunk
    /// proxy's (what Kamailio's call events name the route by).
    pub dst_key: &'t str,
    /// The destination group quality is judged per (SPEC §9.3): the rule's
    /// name, or `rule@prefix` (the rate row's prefix) for an LCR route.
    pub group: Cow<'t, str>,
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
#[non_exhaustive]
pub struct PartyHeader {
    /// The display name, quoted when it is not a plain token.
    pub display: String,
    /// The full URI.
    pub uri: String,
}

/// How to wrap the answer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
}
