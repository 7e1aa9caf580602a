//! `GET /health` and `GET /metrics` (SPEC §5): open to every client, for
//! probes and scrapers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::http::{Resp, json};
use crate::state::AppState;

pub(super) fn health(state: &AppState) -> Resp {
    let cur = state.current.load_full();
    let err = state.last_error.load_full();
    let task_err = state.task_error.load_full();
    // The shared store (SPEC §9.4): down means this replica decides from
    // its own state, still answering every query.
    let store = state.store.as_ref().map(|s| {
        serde_json::json!({
            "up": s.is_up(),
            "reason": s.breaker.reason(),
            "replica": s.replica,
            "pending": s.metrics.pending.get(),
            "outages": s.breaker.opened(),
        })
    });
    let store_down = state.store.as_ref().is_some_and(|s| !s.is_up());
    let body = serde_json::json!({
        "status": if err.is_some() || task_err.is_some() || store_down { "degraded" } else { "ok" },
        "rules": cur.table.rule_count(),
        "trunks": cur.table.trunk_count(),
        "version": cur.table.version(),
        "generation": cur.generation,
        "loaded_at": cur.loaded_at.to_string(),
        "last_error": err.as_deref(),
        "task_error": task_err.as_deref(),
        "state": store,
    });
    json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

pub(super) fn metrics(state: &AppState) -> Resp {
    state.metrics.calls.sync(&state.calls);
    let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
