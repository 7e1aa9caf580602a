//! A decision for a live call: [`c4route_core::decide`] with the published
//! snapshot, then the first route's channel and attempt taken atomically
//! ([`Calls::take`]). When a limit refuses it (another decision took the
//! last channel since the snapshot, or the trunk is simply full), the
//! trunk or gateway is marked full in a copy of the snapshot and the call
//! is decided again, so two decisions at once never put more than `calls`
//! calls on a trunk. A query with a Call-ID then opens the call's record.

use std::time::{Instant, SystemTime};

use c4route_core::{Decision, Limit, Live, Outcome, Query, RouteTable, TrunkLoad};

use super::calls::Calls;

/// How many times a decision is retried after a refusal: each retry
/// leaves out one more trunk or gateway, so this bounds the loop by far
/// more than any rule's trunks.
const MAX_TRIES: usize = 64;

/// Decides `query` and holds what the decision takes.
pub fn decide<'t>(
    table: &'t RouteTable,
    live: &Live,
    calls: &Calls,
    query: &Query<'_>,
    now: SystemTime,
) -> Decision<'t> {
    let at = Instant::now();
    let call_id = query.call_id.as_deref().filter(|c| !c.is_empty());
    let board = calls.board.load();
    let mut overlay: Option<Live> = None;
    for _ in 0..MAX_TRIES {
        let snapshot = overlay.as_ref().unwrap_or(live);
        let d = c4route_core::decide(table, snapshot, query, now);
        let Outcome::Route { routes, .. } = &d.outcome else {
            return d;
        };
        let first = &routes[0];
        let (Some(trunk), Some(gw)) = (board.trunk(first.trunk), board.gateway(first.gateway))
        else {
            // A table the board does not follow yet: decide, track nothing.
            return d;
        };
        match calls.take(trunk, gw, call_id.is_some(), at) {
            Ok(()) => {
                if let Some(id) = call_id {
                    open(calls, id, &d, at);
                }
                return d;
            }
            Err(limit) => {
                board.left_out(first.trunk, Some(first.gateway), limit);
                let b = snapshot.to_builder();
                let b = match limit {
                    Limit::GatewayCalls => b.gateway_calls_key(first.gateway, u32::MAX),
                    _ => b.trunk_load(first.trunk, TrunkLoad::new(u32::MAX, u32::MAX)),
                };
                overlay = Some(b.build());
            }
        }
    }
    // Unreachable in practice: every retry left one more route out.
    c4route_core::decide(table, overlay.as_ref().unwrap_or(live), query, now)
}

/// Opens the record of a decision whose first channel was taken.
fn open(calls: &Calls, call_id: &str, d: &Decision<'_>, at: Instant) {
    let Outcome::Route { routes, .. } = &d.outcome else {
        return;
    };
    let mut board = calls.board.load();
    let mut refs = Vec::with_capacity(routes.len());
    let mut group = (None::<&str>, 0);
    for r in routes {
        // A proxy's key is registered once, the first time a route uses it.
        if r.dst_key != r.gateway && board.key_id(r.dst_key).is_none() {
            calls.register(r.dst_key);
            board = calls.board.load();
        }
        if group.0 != Some(&*r.group) {
            group = (Some(&*r.group), calls.group_id(&r.group));
        }
        if let Some(rr) = board.route(r.trunk, r.gateway, r.dst_key, group.1) {
            refs.push(rr);
        }
    }
    if !refs.is_empty() {
        calls.open(call_id, refs, at);
    }
}
