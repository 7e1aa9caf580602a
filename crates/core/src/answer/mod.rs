//! The answer (SPEC §3): [`Decision`] (what was decided), built by
//! `routes.rs` from the winning rule's action, ordered by `order.rs` (SRV)
//! and `pipeline.rs` (live facts: drained, full, poor and down gateways),
//! and written as rtjson by `rtjson.rs`.
//!
//! Nothing here knows how the winner was found: the table hands over the
//! rule and its action, and the [`Plan`] holds what turns them into routes.

mod decision;
#[cfg(test)]
mod health;
mod lcr;
mod order;
mod pipeline;
mod routes;
mod rtjson;

use std::sync::Arc;

pub use decision::{Decision, Outcome, PartyHeader, RouteAnswer, Wrap};
pub use lcr::{LcrReport, LcrTrunk, RateLookup, RateRow};
pub use pipeline::{LeftOut, Limit};

use crate::rule::{Action, Defaults, Trunk};

/// What turns a winning rule into an answer: the actions rules point at,
/// the trunks, the defaults. Frozen with the table.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) actions: Box<[Action]>,
    pub(crate) trunks: Box<[Trunk]>,
    pub(crate) defaults: Defaults,
    /// Shared "keep as is" From/To and empty `extra`, so answers without
    /// rewrites or headers allocate nothing for them.
    no_rewrite: Arc<PartyHeader>,
    no_extra: Arc<str>,
    /// The rate decks, and by trunk id the trunk's deck (SPEC §7).
    pub(crate) decks: Box<[crate::rates::RateDeck]>,
    pub(crate) trunk_deck: Box<[Option<u32>]>,
}

impl Plan {
    pub(crate) fn new(actions: Vec<Action>, trunks: Vec<Trunk>, defaults: Defaults) -> Self {
        Plan {
            actions: actions.into(),
            trunks: trunks.into(),
            defaults,
            no_rewrite: Arc::default(),
            no_extra: Arc::from(""),
            decks: Box::default(),
            trunk_deck: Box::default(),
        }
    }

    /// Adds the rate decks and which trunk has which.
    pub(crate) fn with_decks(
        mut self,
        decks: Vec<crate::rates::RateDeck>,
        trunk_deck: Vec<Option<u32>>,
    ) -> Self {
        self.decks = decks.into();
        self.trunk_deck = trunk_deck.into();
        self
    }
}
