//! A decision for a live call: [`c4route_core::decide`] with the published
//! snapshot, then the first route's channel and attempt taken atomically
//! ([`Calls::take`]). When a limit refuses it (another decision took the
//! last channel since the snapshot, or the trunk is simply full), the
//! trunk or gateway is marked full in a copy of the snapshot and the call
//! is decided again, so two decisions at once never put more than `calls`
//! calls on a trunk. A query with a Call-ID then opens the call's record.
//!
//! With a shared store (`--state`, SPEC §9.4), [`decide_shared`] reserves
//! the channel in the store instead when the first route is limited (one
//! round trip, bounded by `--state-timeout`), so the limit holds across
//! replicas; a decision whose first route has no limit spends no round
//! trip: its record is written in the background. When the store is down
//! or slow, the decision falls back to the local limits above.

use std::time::{Instant, SystemTime};

use c4route_core::{Decision, Limit, Live, Outcome, Query, RouteAnswer, RouteTable, TrunkLoad};

use super::calls::{Board, Calls, GatewaySlot, TrunkSlot};
use super::store::{Op, Reservation, Reserved, Store, route_field};
use std::sync::Arc;

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
        let Some((first, trunk, gw)) = first_slots(&d, &board) else {
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
                overlay = Some(full(snapshot, first.trunk, first.gateway, limit));
            }
        }
    }
    // Unreachable in practice: every retry left one more route out.
    c4route_core::decide(table, overlay.as_ref().unwrap_or(live), query, now)
}

/// A routed decision's first route and the board's slots of its trunk and
/// gateway; `None` for a decision that routes nowhere, or a table the
/// board does not follow yet (then nothing is tracked).
fn first_slots<'d, 'b>(
    d: &'d Decision<'_>,
    board: &'b Board,
) -> Option<(
    &'d RouteAnswer<'d>,
    &'b Arc<TrunkSlot>,
    &'b Arc<GatewaySlot>,
)> {
    let Outcome::Route { routes, .. } = &d.outcome else {
        return None;
    };
    let first = routes.first()?;
    Some((
        first,
        board.trunk(first.trunk)?,
        board.gateway(first.gateway)?,
    ))
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

/// The routes of a decision as the shared record keeps them.
fn route_fields(d: &Decision<'_>) -> Vec<String> {
    let Outcome::Route { routes, .. } = &d.outcome else {
        return Vec::new();
    };
    routes
        .iter()
        .take(16)
        .map(|r| route_field(r.trunk, r.gateway, r.dst_key, &r.group))
        .collect()
}

/// [`decide`] for a replica that shares its state (SPEC §9.4): the
/// channel of a limited first route is reserved in the store; otherwise,
/// or when the store does not answer in time, the decision is taken
/// locally as [`decide`] takes it and recorded in the store afterwards.
pub async fn decide_shared<'t>(
    table: &'t RouteTable,
    live: &Live,
    calls: &Calls,
    store: &Store,
    query: &Query<'_>,
    now: SystemTime,
) -> Decision<'t> {
    let at = Instant::now();
    let call_id = query.call_id.as_deref().filter(|c| !c.is_empty());
    let board = calls.board.load_full();
    let mut overlay: Option<Live> = None;
    for _ in 0..MAX_TRIES {
        let snapshot = overlay.as_ref().unwrap_or(live);
        let d = c4route_core::decide(table, snapshot, query, now);
        let Some((first, trunk, gw)) = first_slots(&d, &board) else {
            return d;
        };
        let (tc, tcps) = trunk.limits();
        let gc = gw.limit();
        let limited = tc.is_some() || tcps.is_some() || gc.is_some();
        let reservation = || Reservation {
            trunk: trunk.name.clone(),
            gateway: gw.key.clone(),
            limits: (tc.unwrap_or(0), gc.unwrap_or(0), tcps.unwrap_or(0)),
            call_id: call_id.map(str::to_owned),
            routes: route_fields(&d),
            max_duration: table.max_call_duration(),
            force: false,
        };
        if limited && store.is_up() {
            match store.reserve(&reservation(), None).await {
                Ok(Reserved::Taken) => {
                    calls.take_forced(trunk, gw, call_id.is_some(), at);
                    if let Some(id) = call_id {
                        open(calls, id, &d, at);
                    }
                    return d;
                }
                Ok(Reserved::Refused(limit)) => {
                    board.left_out(first.trunk, Some(first.gateway), limit);
                    overlay = Some(full(snapshot, first.trunk, first.gateway, limit));
                    continue;
                }
                // Slow or gone: the breaker is open now; decide locally.
                Err(_) => {
                    store.metrics.local_decisions.inc();
                }
            }
        } else if limited {
            store.metrics.local_decisions.inc();
        }
        match calls.take(trunk, gw, call_id.is_some(), at) {
            Ok(()) => {
                if let Some(id) = call_id {
                    open(calls, id, &d, at);
                    // Recorded in the store after the answer: events may
                    // reach another replica, and the shared counts see it.
                    let mut r = reservation();
                    r.force = true;
                    store.send(Op::Reserve(r));
                }
                return d;
            }
            Err(limit) => {
                board.left_out(first.trunk, Some(first.gateway), limit);
                overlay = Some(full(snapshot, first.trunk, first.gateway, limit));
            }
        }
    }
    c4route_core::decide(table, overlay.as_ref().unwrap_or(live), query, now)
}

/// `snapshot` with a trunk (or gateway) marked full.
fn full(snapshot: &Live, trunk: &str, gateway: &str, limit: Limit) -> Live {
    let b = snapshot.to_builder();
    let b = match limit {
        Limit::GatewayCalls => b.gateway_calls_key(gateway, u32::MAX),
        _ => b.trunk_load(trunk, TrunkLoad::new(u32::MAX, u32::MAX)),
    };
    b.build()
}
