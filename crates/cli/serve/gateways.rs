//! `POST /kamailio/feedback`, `GET /gateways`, `POST /gateways/disable`
//! and `/gateways/enable` (SPEC §8): HTTP in front of the gateway state
//! task of `live/gateways.rs`.

use hyper::StatusCode;
use hyper::body::Incoming;

use super::http::{Resp, body, fields, json, json_error, no_content};
use crate::live::gateways::{UnknownGateway, known_gateway};
use crate::live::hub::Unapplied;
use crate::live::tracker::is_success;
use crate::state::AppState;

/// [`known_gateway`] in the serving table; else the status (400 or 404)
/// and message of the error.
fn known(state: &AppState, uri: &str) -> Result<String, (StatusCode, String)> {
    known_gateway(&state.current.load().table, uri).map_err(|e| match e {
        UnknownGateway::BadUri(m) => (StatusCode::BAD_REQUEST, m),
        UnknownGateway::NotListed(m) => (StatusCode::NOT_FOUND, m),
    })
}

/// `POST /kamailio/feedback`: `dst_uri`, `code`, `call_id` → 204.
pub async fn feedback(req: hyper::Request<Incoming>, state: &AppState) -> Resp {
    let m = &state.metrics.gateways;
    let (b, ct) = match body(req, state).await {
        Ok(x) => x,
        Err(r) => {
            m.report("bad_request");
            return r;
        }
    };
    let bad = |msg: String| {
        m.report("bad_request");
        json_error(StatusCode::BAD_REQUEST, &msg)
    };
    let f = match fields(&b, ct.as_deref()) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let Some(uri) = f.get("dst_uri").filter(|u| !u.is_empty()) else {
        return bad("dst_uri is missing: the gateway the failed branch went to".into());
    };
    let code = match f.get("code").map(|c| c.trim().parse::<u16>()) {
        Some(Ok(c)) if (200..=699).contains(&c) => c,
        Some(_) => {
            return bad(
                "code must be a final SIP code in 200..=699 (408 for a local timeout)".into(),
            );
        }
        None => return bad("code is missing".into()),
    };
    let key = match known(state, uri) {
        Ok(k) => k,
        Err((status, msg)) => {
            if status == StatusCode::NOT_FOUND {
                m.report("unknown_gateway");
            } else {
                m.report("bad_request");
            }
            return json_error(status, &msg);
        }
    };
    let call_id = f.get("call_id").cloned().unwrap_or_default();
    match report(state, key, code, call_id).await {
        Ok(()) => no_content(),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.message()),
    }
}

/// A final code of a branch to the gateway `key` (already known to the
/// serving table) as a §8 report: counted as a success or a failure by the
/// gateway's `fail_codes`, then applied by the state task. The one path of
/// `/kamailio/feedback` and of a `failed` call event. A report dropped
/// because the queue is full is counted and not an error (Kamailio is not
/// slowed down for it).
pub(super) async fn report(
    state: &AppState,
    key: String,
    code: u16,
    call_id: String,
) -> Result<(), Unapplied> {
    let m = &state.metrics.gateways;
    let success = state
        .current
        .load()
        .table
        .gateway(&key)
        .is_some_and(|g| is_success(&g.health, Some(code)));
    m.report(if success { "success" } else { "failure" });
    match state.gateways.report(key, code, call_id).await {
        Err(Unapplied::Dropped) => {
            m.report("dropped");
            Ok(())
        }
        r => r,
    }
}

/// The answer to a command, or 503 when the state task did not apply it.
fn answered(r: Result<serde_json::Value, Unapplied>) -> Resp {
    match r {
        Ok(v) => json(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.message()),
    }
}

/// `GET /gateways`.
pub async fn list(state: &AppState) -> Resp {
    answered(state.gateways.list().await)
}

/// `POST /gateways/disable` and `/gateways/enable` with `{"uri": …}`.
pub async fn mark(req: hyper::Request<Incoming>, state: &AppState, disable: bool) -> Resp {
    let (b, ct) = match body(req, state).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let f = match fields(&b, ct.as_deref()) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let Some(uri) = f.get("uri").filter(|u| !u.is_empty()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "uri is missing: the gateway to drain or restore",
        );
    };
    let key = match known(state, uri) {
        Ok(k) => k,
        Err((status, msg)) => return json_error(status, &msg),
    };
    // Answered after the new snapshot is published: the next query sees it.
    answered(state.gateways.mark(key, disable).await)
}
