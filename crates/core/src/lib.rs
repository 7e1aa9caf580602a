//! # c4route-core: the routing engine behind c4route
//!
//! Kamailio asks c4route, for every new call, where it should go. This crate
//! answers: it compiles a directory of TOML route files (`routes.d/`) into an
//! immutable [`RouteTable`], and [`RouteTable::route`] turns one [`Query`]
//! into a [`Decision`] that serialises to the rtjson document Kamailio's
//! `rtjson` module consumes. It is pure: no I/O besides
//! [`Sources::read_dir`], no locks, no globals, and the clock is an argument.
//!
//! ```
//! use std::time::SystemTime;
//! use c4route_core::{Query, Sources, Wrap};
//!
//! // Sources::read_dir("routes.d") reads a directory; here, one file in memory.
//! let mut sources = Sources::new();
//! sources.add("routes.d/10-uk.toml", r#"
//!     [trunks.acme]
//!     gateways = ["sip:198.51.100.10:5060"]
//!     headers = ["X-Carrier: acme"]
//!
//!     [[rules]]
//!     name = "uk-mobile"
//!     match.to.prefix = ["07"]
//!     then.trunks = ["acme"]
//!     then.rewrite.ruri.user = { strip = 1, prefix = "+44" }
//! "#);
//! let table = sources.build()?;
//!
//! let query = Query::from_json(br#"{"to_uri":"sip:07700900123@example.com","call_id":"abc"}"#)
//!     .expect("a valid query");
//! let decision = table.route(&query, SystemTime::now());
//! assert_eq!(decision.rule, Some("uk-mobile"));
//! let json = String::from_utf8(decision.to_json(Wrap::Rtjson)).unwrap();
//! assert!(json.starts_with(r#"{"rtjson":{"success":true,"version":"1.0","routing":"serial","rule":"uk-mobile""#));
//! assert!(json.contains(r#""uri":"sip:+447700900123@198.51.100.10:5060""#));
//! # Ok::<(), c4route_core::Error>(())
//! ```
//!
//! ## Which rule wins
//!
//! Among all enabled rules whose conditions all hold, the winner is the one
//! with (see [`Specificity`]):
//!
//! 1. the lowest `priority` (default 100);
//! 2. then the most specific `to` (or `ruri`) user condition: `exact` beats any
//!    `prefix`, a longer prefix beats a shorter one, any prefix beats a `regex`,
//!    a regex beats a `length` condition alone, which beats no user condition;
//! 3. then the most specific `from` user condition, in the same order;
//! 4. then the longest matching `source` prefix (any source condition beats none);
//! 5. then declaration order: file name order, then position in the file.
//!
//! ## Live facts
//!
//! [`decide`] also takes a [`Live`] snapshot, as it takes the clock: which
//! gateways are down or drained (SPEC §8), how many calls each trunk and
//! gateway carries (SPEC §9.2) and which gateways serve a destination
//! poorly (SPEC §9.3). Drained gateways and trunks at their limit are left
//! out, poor gateways go behind good ones, down gateways last, and
//! `max_routes` cuts after all of that. [`RouteTable::route`] decides with
//! `Live::default()`, which knows nothing. [`RouteTable::gateways`] lists
//! the distinct gateways with their trunks and `health` settings, for a
//! server that probes them; how the facts come about is the server's
//! business.
//!
//! ## What is stable
//!
//! Stable, changed only with a new major version (and said in the
//! CHANGELOG): the public API of this crate outside [`explain`] and
//! `bench` (types, functions and what they mean); the rtjson document a
//! [`Decision`] writes ([`Decision::to_json`]); and the order of a call's
//! gateways (the SRV order, seeded by FNV-1a of the Call-ID and the trunk
//! name), so the same call gets the same order in every version.
//!
//! The public data types are `#[non_exhaustive]`: a new field or variant
//! is not a breaking change. Read their fields, match them with `..` and a
//! wildcard arm; build queries with [`Query::from_json`] or
//! [`Query::parse`] and health settings from
//! [`HealthSettings::default`].
//!
//! Not stable: the strings of [`explain`] (rates as written, dates, costs
//! rounded for people, the wording of why a trunk was left out), the text
//! of diagnostics, and the hidden `bench` module (heap sizes for this
//! crate's examples and benches), which may change in any release.
//!
//! ## Threads
//!
//! [`Sources::build`] compiles on up to [`Sources::threads`] threads
//! (default: the CPUs, at most 8), scoped: they have ended when `build`
//! returns. One exception: after a large table (10 000 rules or more) is
//! built with more than one thread, what the compile leaves behind is
//! freed on a detached thread named `c4route-free`, so the new table is
//! not delayed by a few hundred milliseconds of freeing; it ends on its
//! own once that memory is freed. With `threads(1)`, `build` starts no
//! thread at all. Routing ([`RouteTable::route`]) never starts a thread.
//!
//! ## Phases
//!
//! Parse (serde mirror of the TOML, spans kept) → validate (every problem
//! in every file collected into [`Diagnostics`]) → compile (indexes by
//! number prefix, exact user, source network and regex set) → frozen
//! [`RouteTable`]. A table is only ever built whole: an invalid directory
//! yields diagnostics, never a partial table.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod answer;
#[doc(hidden)]
pub mod bench;
mod candidate;
mod compile;
mod config;
mod diag;
pub mod explain;
mod fastparse;
mod hash;
mod health;
mod live;
mod matcher;
mod quality;
mod query;
mod rates;
#[cfg(test)]
mod reference;
mod rule;
mod schedule;
mod sip;
mod sources;
mod table;
mod template;
mod uri;

pub use answer::{Decision, LeftOut, Limit, Outcome, PartyHeader, RouteAnswer, Wrap};
pub use diag::{Diagnostic, Diagnostics, SHOWN_PER_KIND, Severity};
pub use health::{
    GatewayInfo, GatewayState, GatewayStatus, GatewayUriError, HealthSettings, ProbeMode,
    ProbeTransport, gateway_key,
};
pub use live::{ANY_GROUP, Live, LiveBuilder, TrunkLoad};
pub use quality::{DEFAULT_MIN_CALLS, DEFAULT_WINDOW, QualitySettings};
pub use query::{MAX_BODY, Query, QueryError, is_form_body};
pub use rule::RuleId;
pub use rule::{Routing, Specificity};
pub use sources::Sources;
pub use table::{Expect, RouteTable, RuleMatch, TestCase, TestResult, decide};

pub use compile::TimeError;

/// Parses an RFC 3339 time such as `2026-12-24T09:00:00Z` (for `--at` and
/// a test's `at`).
///
/// # Errors
/// [`TimeError`], which says what was expected.
pub fn parse_time(s: &str) -> Result<std::time::SystemTime, TimeError> {
    compile::parse_time(s)
}

/// Why a table could not be built.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("failed to read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid; every problem is listed.
    #[error("{0}")]
    Config(Diagnostics),
}
