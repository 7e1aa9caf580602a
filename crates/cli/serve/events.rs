//! `POST /kamailio/event` (SPEC §9.1) and `GET /trunks` (SPEC §9.2): call
//! events from Kamailio move the call records of `live/calls.rs`, and a
//! `failed` event is also a §8 report for its gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use c4route_core::gateway_key;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tracing::debug;

use super::http::{Resp, body, fields, json as json_resp, json_error, no_content};
use crate::live::calls::{Applied, Event};
use crate::live::quality::Attempt;
use crate::live::store::stream::{UNKNOWN_RETRIES, attempt_of, event_name};
use crate::live::store::{Applied as StoreApplied, Entry, Op, Store, StoreError};
use crate::state::AppState;

/// A millisecond or second count: a whole number, at most a day's worth
/// (anything larger is a bug on the sender's side).
fn count(
    f: &std::collections::HashMap<String, String>,
    key: &str,
    max: u64,
) -> Result<Option<u64>, String> {
    match f.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(format!(
                "{key} must be a whole number in 0..={max}, found {v:?}"
            )),
        },
    }
}

/// `POST /kamailio/event`.
pub async fn event(req: hyper::Request<Incoming>, state: &AppState) -> Resp {
    let (b, ct) = match body(req, state).await {
        Ok(x) => x,
        Err(r) => {
            state.metrics.calls.event("-", "bad_request");
            return r;
        }
    };
    match apply(state, &b, ct.as_deref()).await {
        Ok(()) => no_content(),
        Err((status, msg)) => json_error(status, &msg),
    }
}

/// Applies one event body (JSON object or form; fields other than the
/// event's are ignored): moves the call's record and, for `failed`, reports
/// its gateway (§8). The one place an event body is applied, for HTTP
/// ([`event`]) and evapi (`evapi.rs`). `Err` is the status HTTP answers
/// (400 bad body, 404 unknown call or route, 503 gateway task gone) and why;
/// every outcome is counted.
pub(crate) async fn apply(
    state: &AppState,
    b: &[u8],
    ct: Option<&str>,
) -> Result<(), (StatusCode, String)> {
    let m = &state.metrics.calls;
    let parsed = fields(b, ct).map_err(|e| ("-", e)).and_then(|f| parse(&f));
    let (call_id, dst_uri, ev) = match parsed {
        Ok(x) => x,
        Err((name, msg)) => {
            m.event(name, "bad_request");
            return Err((StatusCode::BAD_REQUEST, msg));
        }
    };
    let name = match &ev {
        Event::Failed { .. } => "failed",
        Event::Answered { .. } => "answered",
        Event::Ended { .. } => "ended",
    };
    let Ok(dst) = gateway_key(&dst_uri) else {
        m.event(name, "bad_request");
        return Err((
            StatusCode::BAD_REQUEST,
            format!("dst_uri {dst_uri:?} is not a sip: or sips: URI"),
        ));
    };
    let now = Instant::now();
    let local = state.calls.apply(&call_id, &dst, &ev, now);
    let (applied, end) = match &state.store {
        None => {
            let end = local_end(state, &local, &ev);
            (local, end)
        }
        Some(store) => shared(state, store, &call_id, &dst, &ev, local).await,
    };
    if let Some((gateway, group, attempt, duration_only)) = end {
        // The attempt this event completed counts in the quality
        // statistics of its gateway and group (SPEC §9.3), once.
        if !state
            .gateways
            .attempt(gateway, group, attempt, duration_only)
        {
            state.metrics.quality.dropped.inc();
        }
    }
    // A `failed` event is also a §8 report for its gateway, whether or not
    // the call is still known (a restart forgets calls, not gateways).
    if let Event::Failed { code, .. } = ev {
        let known = state.current.load().table.gateway(&dst).is_some();
        if known && let Err(e) = super::gateways::report(state, dst, code, call_id.clone()).await {
            return Err((StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned()));
        }
    }
    match applied {
        Applied::Done { .. } => {
            m.event(name, "ok");
            Ok(())
        }
        Applied::UnknownCall => {
            m.event(name, "unknown_call");
            debug!(call_id, "event for a call with no record");
            Err((
                StatusCode::NOT_FOUND,
                format!("no call {call_id:?} in progress (closed already, or never routed here)"),
            ))
        }
        Applied::UnknownRoute => {
            m.event(name, "unknown_route");
            Err((
                StatusCode::NOT_FOUND,
                format!("call {call_id:?} has no route to {dst_uri:?}"),
            ))
        }
    }
}

/// The attempt an event completed, for quality: gateway, group, outcome
/// and whether only its duration counts.
type End = (Arc<str>, Arc<str>, Attempt, bool);

/// The attempt the local record says an event completed.
fn local_end(state: &AppState, applied: &Applied, ev: &Event) -> Option<End> {
    let Applied::Done {
        ended: Some(end), ..
    } = applied
    else {
        return None;
    };
    let only = matches!(ev, Event::Ended { .. }) && end.answered_before;
    Some((
        end.gateway.clone(),
        state.calls.group(end.group),
        attempt_of(ev),
        only,
    ))
}

/// Applies an event to the shared record too (SPEC §9.4): the store's
/// answer says which attempt it completed (once across every replica), and
/// the other replicas hear of it through the stream. While the store is
/// down, or when it does not know a call this replica decided (its record
/// is still queued), the event is queued behind that record and the local
/// record decides.
async fn shared(
    state: &AppState,
    store: &Store,
    call_id: &str,
    dst: &str,
    ev: &Event,
    local: Applied,
) -> (Applied, Option<End>) {
    let max_duration = state.current.load().table.max_call_duration();
    let next = match ev {
        Event::Failed { next, .. } => next.as_deref(),
        _ => None,
    };
    // `foreign`: this replica holds no record of the call, so the store
    // may learn of it only from another replica's queue (both queued
    // during an outage): an "unknown call" answer is retried for a while
    // rather than dropped (stream.rs).
    let queue = |foreign: bool, counted: Option<&End>| {
        store.metrics.local_events.inc();
        store.send(Op::Event {
            call_id: call_id.to_owned(),
            dst: dst.to_owned(),
            event: ev.clone(),
            max_duration,
            retries: if foreign { UNKNOWN_RETRIES } else { 0 },
            foreign,
            counted: counted.map(|(g, grp, _, only)| (g.to_string(), grp.to_string(), *only)),
        });
    };
    let r = if store.is_up() {
        store
            .event(call_id, dst, event_name(ev), next, max_duration, None)
            .await
    } else {
        Err(StoreError::Open)
    };
    match r {
        Ok(StoreApplied::Done { ended, closed }) => {
            // An `answered` counted the attempt already: an `ended` adds
            // only its duration (as the local record says it).
            let is_end = matches!(ev, Event::Ended { .. });
            let ended = ended.map(|(g, grp, only)| (g, grp, only && is_end));
            let end = ended.as_ref().map(|(g, grp, only)| {
                let g: Arc<str> = g.as_str().into();
                let grp: Arc<str> = grp.as_str().into();
                (g, grp, attempt_of(ev), *only)
            });
            store.publish(Entry::Event {
                call_id: call_id.to_owned(),
                dst: dst.to_owned(),
                event: ev.clone(),
                ended,
            });
            (
                Applied::Done {
                    ended: None,
                    closed,
                },
                end,
            )
        }
        Ok(StoreApplied::UnknownRoute) if matches!(local, Applied::UnknownCall) => {
            (Applied::UnknownRoute, None)
        }
        Ok(_) | Err(_) if !matches!(local, Applied::UnknownCall) => {
            let end = local_end(state, &local, ev);
            queue(false, end.as_ref());
            (local, end)
        }
        Ok(_) => (Applied::UnknownCall, None),
        // Down, and this replica does not know the call either: it may be
        // another replica's; the event waits for the store (accepted).
        Err(_) => {
            queue(true, None);
            (
                Applied::Done {
                    ended: None,
                    closed: false,
                },
                None,
            )
        }
    }
}

type Bad = (&'static str, String);

/// `(call_id, dst_uri, event)` of a body's fields, or the event's name and
/// what is wrong.
fn parse(f: &std::collections::HashMap<String, String>) -> Result<(String, String, Event), Bad> {
    let name: &'static str = match f.get("event").map(String::as_str) {
        Some("failed") => "failed",
        Some("ended") => "ended",
        Some("answered") => "answered",
        Some(other) => {
            return Err((
                "-",
                format!("event must be \"failed\", \"ended\" or \"answered\", found {other:?}"),
            ));
        }
        None => return Err(("-", "event is missing: failed, ended or answered".into())),
    };
    let bad = |msg: String| (name, msg);
    let call_id = f
        .get("call_id")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| bad("call_id is missing".into()))?;
    let dst_uri = f
        .get("dst_uri")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| bad("dst_uri is missing: the route the event is about".into()))?;
    let ms = |key| count(f, key, 86_400_000).map_err(bad);
    let pdd = ms("pdd_ms")?.map(Duration::from_millis);
    let ev = match name {
        "failed" => {
            let code = match f.get("code").map(|c| c.trim().parse::<u16>()) {
                Some(Ok(c)) if (200..=699).contains(&c) => c,
                Some(_) => {
                    return Err(bad(
                        "code must be a final SIP code in 200..=699 (408 for a local timeout, 487 for a cancelled call)"
                            .into(),
                    ));
                }
                None => return Err(bad("code is missing".into())),
            };
            let next = match f.get("next").map(|n| n.trim()).filter(|n| !n.is_empty()) {
                Some(n) => Some(
                    gateway_key(n)
                        .map_err(|_| bad(format!("next {n:?} is not a sip: or sips: URI")))?,
                ),
                None => None,
            };
            Event::Failed { code, next, pdd }
        }
        "answered" => Event::Answered { pdd },
        _ => Event::Ended {
            pdd,
            duration: count(f, "duration_s", 7 * 86_400)
                .map_err(bad)?
                .map(Duration::from_secs),
        },
    };
    Ok((call_id, dst_uri, ev))
}

/// `GET /trunks`: each trunk's load, limits and how often a limit left it
/// out. With a shared store, `calls` is this replica's and `shared_calls`
/// every replica's (absent while the store is down).
pub async fn trunks(state: &AppState) -> Resp {
    // The board follows the serving table on a replica's first decision;
    // a replica asked before it decided anything (a fresh one, or one
    // that only takes events) still lists every trunk, and with a shared
    // store every replica's calls on it.
    let loaded = state.current.load_full();
    state
        .calls
        .follow_generation(&loaded.table, loaded.generation);
    let board = state.calls.board.load_full();
    let now = Instant::now();
    let shared = match &state.store {
        Some(store) => {
            let names: Vec<String> = board.trunks().map(|t| t.name.to_string()).collect();
            store.trunk_calls(&names).await
        }
        None => None,
    };
    let list: Vec<Value> = board
        .trunks()
        .enumerate()
        .map(|(i, t)| {
            let (calls, cps) = t.limits();
            let (out_calls, out_cps, over) = t.counters();
            json!({
                "name": &*t.name,
                "calls": t.calls(),
                "cps": t.cps(now),
                "limits": { "calls": calls, "cps": cps },
                "left_out": { "calls": out_calls, "cps": out_cps },
                "over_limit": over,
                "shared_calls": shared.as_ref().and_then(|s| s.get(i)),
            })
        })
        .collect();
    let gateways: Vec<Value> = board
        .gateways()
        .filter(|g| g.limit().is_some() || g.calls() > 0)
        .map(|g| {
            json!({
                "key": &*g.key,
                "calls": g.calls(),
                "limit": g.limit(),
                "left_out": g.left_out(),
            })
        })
        .collect();
    let body = json!({
        "trunks": list,
        "gateways": gateways,
        "calls_open": state.calls.open_count(),
    });
    json_resp(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn events_parse_and_bad_ones_say_what_is_wrong() {
        let (id, dst, ev) = parse(&f(&[
            ("event", "failed"),
            ("call_id", "c1"),
            ("dst_uri", "sip:192.0.2.1"),
            ("code", "503"),
            ("next", "sip:192.0.2.2:5060"),
            ("pdd_ms", "1200"),
        ]))
        .unwrap();
        assert_eq!((id.as_str(), dst.as_str()), ("c1", "sip:192.0.2.1"));
        assert_eq!(
            ev,
            Event::Failed {
                code: 503,
                next: Some("sip:192.0.2.2:5060;transport=udp".into()),
                pdd: Some(Duration::from_millis(1200)),
            }
        );
        let (_, _, ev) = parse(&f(&[
            ("event", "ended"),
            ("call_id", "c1"),
            ("dst_uri", "sip:192.0.2.1"),
            ("duration_s", "61"),
        ]))
        .unwrap();
        assert_eq!(
            ev,
            Event::Ended {
                pdd: None,
                duration: Some(Duration::from_secs(61))
            }
        );
        for (pairs, want) in [
            (vec![("call_id", "c")], "event is missing"),
            (vec![("event", "hangup")], "event must be"),
            (
                vec![("event", "ended"), ("dst_uri", "sip:a")],
                "call_id is missing",
            ),
            (
                vec![("event", "ended"), ("call_id", "c")],
                "dst_uri is missing",
            ),
            (
                vec![("event", "failed"), ("call_id", "c"), ("dst_uri", "sip:a")],
                "code is missing",
            ),
            (
                vec![
                    ("event", "failed"),
                    ("call_id", "c"),
                    ("dst_uri", "sip:a"),
                    ("code", "180"),
                ],
                "code must be a final SIP code",
            ),
            (
                vec![
                    ("event", "ended"),
                    ("call_id", "c"),
                    ("dst_uri", "sip:a"),
                    ("pdd_ms", "-1"),
                ],
                "pdd_ms must be a whole number",
            ),
            (
                vec![
                    ("event", "failed"),
                    ("call_id", "c"),
                    ("dst_uri", "sip:a"),
                    ("code", "503"),
                    ("next", "tel:1"),
                ],
                "next \"tel:1\" is not",
            ),
        ] {
            let e = parse(&f(&pairs)).unwrap_err().1;
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }
}
