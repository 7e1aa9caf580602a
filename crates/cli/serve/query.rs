//! The routing query (SPEC §2, §3): read the body, parse it, decide with
//! the serving table and the live snapshot, hold what the decision takes
//! (`live/decide.rs`), write rtjson. [`answer`] is the one place a query
//! body becomes an answer, for HTTP ([`route`]) and evapi (`evapi.rs`).

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use c4route_core::{Decision, Query, Wrap};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::debug;

use super::http::{Resp, json, json_error, read_request_body};
use crate::state::{AppState, Loaded};

pub(super) async fn route(
    req: Request<Incoming>,
    state: &AppState,
    peer: SocketAddr,
    wrap: Wrap,
) -> Resp {
    let (body, content_type) = match read_request_body(req, state).await {
        Ok(b) => b,
        Err(r) => {
            state.metrics.bad_request.inc();
            debug!(%peer, status = r.status().as_u16(), "query body refused");
            return r;
        }
    };
    let ct = content_type.as_ref().and_then(|v| v.to_str().ok());
    let mut out = Vec::with_capacity(1024);
    match answer(state, &body, ct, wrap, &peer, &mut out).await {
        Ok(()) => json(StatusCode::OK, out),
        Err((status, msg)) => json_error(status, &msg),
    }
}

/// Answers one query body (JSON or form, as `ct` says): decides it, holds
/// what the decision takes, counts it, and appends the rtjson answer to
/// `out`. `Err` is a query that could not be read: its status (400, or 413
/// for a field too large) and what is wrong; it is counted as a bad request.
pub(crate) async fn answer(
    state: &AppState,
    body: &[u8],
    ct: Option<&str>,
    wrap: Wrap,
    peer: &(dyn Display + Sync),
    out: &mut Vec<u8>,
) -> Result<(), (StatusCode, String)> {
    let started = Instant::now();
    let query = match Query::parse(body, ct) {
        Ok(q) => q,
        Err(e) => {
            state.metrics.bad_request.inc();
            debug!(%peer, "bad query: {e}");
            let status = match e {
                c4route_core::QueryError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err((status, e.to_string()));
        }
    };
    let now = SystemTime::now();
    let outcome = if let Some(store) = &state.store {
        // Shared state (SPEC §9.4): the decision may await the store, so
        // it holds the table and the snapshot by Arc, not by guard.
        let loaded = state.current.load_full();
        let live = state.gateways.snapshot.load_full();
        state
            .calls
            .follow_generation(&loaded.table, loaded.generation);
        let decision = crate::live::decide::decide_shared(
            &loaded.table,
            &live,
            &state.calls,
            store,
            &query,
            now,
        )
        .await;
        written(state, &loaded, &decision, wrap, peer, out)
    } else {
        // The guard lives only in this synchronous block (no .await).
        let loaded = state.current.load();
        let live = state.gateways.snapshot.load();
        state
            .calls
            .follow_generation(&loaded.table, loaded.generation);
        let decision = crate::live::decide::decide(&loaded.table, &live, &state.calls, &query, now);
        written(state, &loaded, &decision, wrap, peer, out)
    };
    state
        .metrics
        .decision_seconds
        .observe(started.elapsed().as_secs_f64());
    state.metrics.outcome(outcome).inc();
    Ok(())
}

/// Writes a decision's answer to `out` and counts it; its outcome label.
fn written(
    state: &AppState,
    loaded: &Loaded,
    decision: &Decision<'_>,
    wrap: Wrap,
    peer: &(dyn Display + Sync),
    out: &mut Vec<u8>,
) -> &'static str {
    decision.write_json(out, wrap);
    if let Some(id) = decision.rule_id {
        loaded.hit(id, &state.metrics);
    }
    if decision.skipped_rewrites > 0 {
        let n = u64::from(decision.skipped_rewrites);
        state.metrics.rewrites_skipped.inc_by(n);
    }
    debug!(%peer, rule = decision.rule, outcome = decision.outcome_label(), "query");
    decision.outcome_label()
}
