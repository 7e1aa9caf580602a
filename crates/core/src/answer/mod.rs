//! The answer (SPEC §3): [`Decision`] (what was decided), built by
//! `routes.rs` from the winning rule's action, ordered by `order.rs`, and
//! written as rtjson by `rtjson.rs`.
//!
//! Nothing here knows how the winner was found: the table hands over the
//! rule and its action, and the [`Plan`] holds what turns them into routes.

mod decision;
mod health;
mod order;
mod routes;
mod rtjson;

use std::sync::Arc;

pub use decision::{Decision, Outcome, PartyHeader, RouteAnswer, Wrap};

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
}

impl Plan {
    pub(crate) fn new(actions: Vec<Action>, trunks: Vec<Trunk>, defaults: Defaults) -> Self {
        Plan {
            actions: actions.into(),
            trunks: trunks.into(),
            defaults,
            no_rewrite: Arc::default(),
            no_extra: Arc::from(""),
        }
    }
}
