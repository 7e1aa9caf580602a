//! Explanations for people: how `then.lcr` priced a call and what the rate
//! decks say about a number, as `c4route eval --explain` and `c4route
//! rates` print them.
//!
//! Not a stable interface: the types hold display-ready strings (rates as
//! the deck writes them, dates, costs rounded for reading) and their
//! fields and wording may change in any release. Route with
//! [`crate::RouteTable::route`]; explain with these.

use std::time::SystemTime;

pub use crate::answer::{LcrReport, LcrTrunk, RateLookup, RateRow};
use crate::{Query, RouteTable};

/// How `then.lcr` priced `query` at `now`: the number priced and, per
/// trunk of the deciding rule, the row found (file:line, prefix, rate,
/// cost) or why it was left out. `None` when the deciding rule (if any)
/// is not an LCR rule.
pub fn lcr(table: &RouteTable, query: &Query<'_>, now: SystemTime) -> Option<LcrReport> {
    table.explain_lcr(query, now)
}

/// Per trunk with a rate deck, the row that prices `number` at `now` (the
/// longest prefix in effect; a leading `+` is ignored), and the other rows
/// of the longest prefix the deck holds.
pub fn rates(table: &RouteTable, number: &str, now: SystemTime) -> Vec<RateLookup> {
    table.rates(number, now)
}
