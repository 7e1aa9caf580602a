//! Live gateway state in `c4route serve` (SPEC §8): one task owns every
//! gateway's [`Tracker`], takes outcomes (probes, Kamailio's reports) and
//! operator commands over a channel, and publishes a new
//! [`GatewayState`] snapshot with arc-swap on each change. The request
//! path only loads that snapshot: it never waits for this task, and no lock
//! is shared with it.
//!
//! The gateways are the serving table's ([`c4route_core::RouteTable::gateways`]),
//! keyed by normalised URI: a reload keeps the state of every gateway still
//! listed and forgets the others (and their metric series).
//!
//! HTTP: `POST /kamailio/feedback`, `GET /gateways`,
//! `POST /gateways/disable|enable` are handled here; `serve.rs` dispatches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use c4route_core::{
    GatewayInfo, GatewayState, GatewayStatus, Live, ProbeMode, ProbeTransport, gateway_key,
};
use http_body_util::{BodyExt as _, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::gateway_metrics::{GatewayLabel, TransitionLabel};
use crate::serve::{Resp, json, json_error};
use crate::state::AppState;
use crate::tracker::{Change, Tracker};

/// How often down gateways are checked for `retry_after` and the table
/// for a reload.
const TICK: Duration = Duration::from_millis(250);
/// Commands queued for the state task; a report beyond this is dropped
/// (and counted) rather than slowing Kamailio down.
const QUEUE: usize = 16_384;

/// What a probe found.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The final reply's code; `None`: no final reply in time.
    pub code: Option<u16>,
    /// Sent → final reply.
    pub rtt: Option<Duration>,
    /// Why there is no code (timeout, send error, DNS).
    pub error: Option<String>,
}

enum Cmd {
    Probe {
        key: String,
        result: ProbeResult,
    },
    /// Successes of gateways that were up: they cannot change a state, so
    /// the prober hands them over in batches (fewer wake-ups).
    Probes(Vec<(String, ProbeResult)>),
    Report {
        key: String,
        code: u16,
        call_id: String,
    },
    Mark {
        key: String,
        disable: bool,
        done: oneshot::Sender<Value>,
    },
    List(oneshot::Sender<Value>),
}

/// The snapshot the decision reads, and the way into the state task.
#[derive(Debug)]
pub struct Gateways {
    /// The current state; replaced whole on each change.
    pub snapshot: ArcSwap<Live>,
    tx: mpsc::Sender<Cmd>,
    /// Taken once by [`spawn`].
    rx_slot: tokio::sync::Mutex<Option<mpsc::Receiver<Cmd>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl Default for Gateways {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Gateways {
            snapshot: ArcSwap::from_pointee(Live::default()),
            tx,
            rx_slot: tokio::sync::Mutex::new(Some(rx)),
        }
    }
}

impl Gateways {
    /// Hands a probe's result to the state task (waits for room: the
    /// prober is bounded by its in-flight limit anyway).
    pub async fn probed(&self, key: String, result: ProbeResult) {
        let _ = self.tx.send(Cmd::Probe { key, result }).await;
    }

    /// Hands over a batch of successes of gateways that were up.
    pub async fn probed_batch(&self, batch: Vec<(String, ProbeResult)>) {
        if !batch.is_empty() {
            let _ = self.tx.send(Cmd::Probes(batch)).await;
        }
    }
}

/// Starts the state task. Must run inside a tokio runtime; a second call
/// does nothing.
pub fn spawn(state: Arc<AppState>) {
    let Some(rx) = state
        .gateways
        .rx_slot
        .try_lock()
        .ok()
        .and_then(|mut s| s.take())
    else {
        return;
    };
    tokio::spawn(run(state, rx));
}

struct Entry {
    info: GatewayInfo,
    tracker: Tracker,
    last_probe: Option<(Option<u16>, Option<Duration>, SystemTime)>,
}

struct Task {
    state: Arc<AppState>,
    entries: HashMap<String, Entry>,
    /// Keys in the table's order, for /gateways.
    order: Vec<String>,
    generation: u64,
}

async fn run(state: Arc<AppState>, mut rx: mpsc::Receiver<Cmd>) {
    let mut t = Task {
        state,
        entries: HashMap::new(),
        order: Vec::new(),
        generation: 0,
    };
    t.sync();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(c) => { t.sync(); t.handle(c); }
                None => break,
            },
            _ = tick.tick() => { t.sync(); t.tick(); }
        }
    }
}

impl Task {
    /// Follows the serving table: new gateways start up, gone ones are forgotten.
    fn sync(&mut self) {
        let cur = self.state.current.load();
        if cur.generation == self.generation {
            return;
        }
        self.generation = cur.generation;
        let now = Instant::now();
        let m = &self.state.metrics.gateways;
        let mut old = std::mem::take(&mut self.entries);
        self.order.clear();
        for info in cur.table.gateways() {
            let entry = match old.remove(&info.key) {
                Some(mut e) => {
                    e.info = info.clone();
                    e
                }
                None => {
                    m.up.get_or_create(&label(&info.key)).set(1);
                    Entry {
                        info: info.clone(),
                        tracker: Tracker::new(now),
                        last_probe: None,
                    }
                }
            };
            self.order.push(info.key.clone());
            self.entries.insert(info.key.clone(), entry);
        }
        let mut changed = false;
        for (key, e) in old {
            m.up.remove(&label(&key));
            for s in ["up", "down", "disabled"] {
                m.transitions.remove(&TransitionLabel {
                    gateway: key.clone(),
                    state: s,
                });
            }
            changed |= e.tracker.status() != GatewayStatus::Up;
            info!(gateway = %key, "gateway left the configuration; its state is forgotten");
        }
        if changed {
            self.publish();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Probes(batch) => {
                for (key, result) in batch {
                    self.handle(Cmd::Probe { key, result });
                }
            }
            Cmd::Probe { key, result } => {
                let Some(e) = self.entries.get_mut(&key) else {
                    return;
                };
                e.last_probe = Some((result.code, result.rtt, SystemTime::now()));
                let ok = result.code.is_some_and(|c| !e.info.health.is_failure(c));
                let what = match (result.code, &result.error) {
                    (Some(c), _) => format!(
                        "probe: {c} in {} ms",
                        result.rtt.map_or(0, |d| d.as_millis())
                    ),
                    (None, Some(err)) => format!("probe: {err}"),
                    (None, None) => "probe: no final reply".into(),
                };
                let change = e.tracker.observe(ok, &e.info.health, now, &what);
                self.changed(&key, change);
            }
            Cmd::Report { key, code, call_id } => {
                let Some(e) = self.entries.get_mut(&key) else {
                    return;
                };
                let ok = !e.info.health.is_failure(code);
                let what = format!("report: {code} (call {call_id})");
                let change = e.tracker.observe(ok, &e.info.health, now, &what);
                self.changed(&key, change);
            }
            Cmd::Mark { key, disable, done } => {
                let change = self.entries.get_mut(&key).and_then(|e| {
                    if disable {
                        e.tracker.disable(now)
                    } else {
                        e.tracker.enable(now)
                    }
                });
                self.changed(&key, change);
                let body = self
                    .entries
                    .get(&key)
                    .map_or(Value::Null, |e| entry_json(e, now));
                let _ = done.send(body);
            }
            Cmd::List(done) => {
                let list: Vec<Value> = self
                    .order
                    .iter()
                    .filter_map(|k| self.entries.get(k))
                    .map(|e| entry_json(e, now))
                    .collect();
                let _ = done.send(json!({ "gateways": list }));
            }
        }
    }

    /// The half-open step of gateways nothing probes.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut changes = Vec::new();
        for (key, e) in &mut self.entries {
            if !e.tracker.is_down() {
                continue;
            }
            let probed = e.info.health.probe != ProbeMode::Never
                && e.info.transport != ProbeTransport::Unsupported;
            if let Some(c) = e.tracker.tick(&e.info.health, probed, now) {
                changes.push((key.clone(), c));
            }
        }
        for (key, c) in changes {
            self.changed(&key, Some(c));
        }
    }

    /// Logs, counts and publishes a change.
    fn changed(&mut self, key: &str, change: Option<Change>) {
        let Some(c) = change else { return };
        let m = &self.state.metrics.gateways;
        m.up.get_or_create(&label(key))
            .set(i64::from(c.to == GatewayStatus::Up));
        m.transitions
            .get_or_create(&TransitionLabel {
                gateway: key.to_owned(),
                state: c.to.as_str(),
            })
            .inc();
        let msg = format!("gateway {} -> {}", c.from.as_str(), c.to.as_str());
        if c.to == GatewayStatus::Down {
            warn!(gateway = %key, reason = %c.reason, "{msg}");
        } else {
            info!(gateway = %key, reason = %c.reason, "{msg}");
        }
        self.publish();
    }

    /// A new snapshot from every gateway that is not up.
    fn publish(&self) {
        let mut s = GatewayState::all_up();
        for (key, e) in &self.entries {
            let st = e.tracker.status();
            if st != GatewayStatus::Up {
                s.set_key(key.clone(), st);
            }
        }
        self.state
            .gateways
            .snapshot
            .store(Arc::new(Live::builder().gateway_state(s).build()));
    }
}

fn label(key: &str) -> GatewayLabel {
    GatewayLabel {
        gateway: key.to_owned(),
    }
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| String::new(), |t| t.to_string())
}

fn entry_json(e: &Entry, now: Instant) -> Value {
    let since = SystemTime::now()
        .checked_sub(now.saturating_duration_since(e.tracker.since))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    json!({
        "uri": e.info.uri,
        "key": e.info.key,
        "trunks": e.info.trunks,
        "state": e.tracker.status().as_str(),
        "since": rfc3339(since),
        "failures": e.tracker.failures,
        "successes": e.tracker.successes,
        "probe": e.info.health.probe.as_str(),
        "last_probe": e.last_probe.map(|(code, rtt, at)| json!({
            "code": code,
            "rtt_ms": rtt.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
            "at": rfc3339(at),
        })),
    })
}

// ------------------------------------------------------------------ HTTP

/// Reads a small body (reports and commands are tiny), at most 64 KiB.
pub(crate) async fn body(
    req: hyper::Request<Incoming>,
    state: &AppState,
) -> Result<(Bytes, Option<String>), Resp> {
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let read = Limited::new(req.into_body(), c4route_core::MAX_BODY).collect();
    match tokio::time::timeout(state.limits.body_timeout, read).await {
        Ok(Ok(b)) => Ok((b.to_bytes(), ct)),
        Ok(Err(e)) => Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!("reading the body: {e}"),
        )),
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
    }
}

/// The fields of a JSON object or a form body, as strings.
pub(crate) fn fields(body: &[u8], ct: Option<&str>) -> Result<HashMap<String, String>, String> {
    let is_form = ct.is_some_and(|c| {
        c.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    // As for queries: libcurl labels every POST without a header as a
    // form, so a body that is plainly a JSON object is read as JSON.
    if is_form && !body.trim_ascii_start().starts_with(b"{") {
        return Ok(form_urlencoded::parse(body).into_owned().collect());
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(map) = v else {
        return Err("the body must be a JSON object".into());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect())
}

/// The key of a URI if the serving table lists that gateway; else the
/// status (400 or 404) and message of the error.
fn known(state: &AppState, uri: &str) -> Result<String, (StatusCode, String)> {
    let key = gateway_key(uri).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let cur = state.current.load();
    if cur.table.gateway(&key).is_some() {
        Ok(key)
    } else {
        Err((
            StatusCode::NOT_FOUND,
            format!("no trunk lists the gateway {uri:?} ({key})"),
        ))
    }
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
    let cur = state.current.load();
    let failure = cur
        .table
        .gateway(&key)
        .is_some_and(|g| g.health.is_failure(code));
    drop(cur);
    m.report(if failure { "failure" } else { "success" });
    let call_id = f.get("call_id").cloned().unwrap_or_default();
    if state
        .gateways
        .tx
        .try_send(Cmd::Report { key, code, call_id })
        .is_err()
    {
        m.report("dropped");
    }
    let mut r = json(StatusCode::NO_CONTENT, Vec::new());
    r.headers_mut().remove(hyper::header::CONTENT_TYPE);
    r
}

/// `GET /gateways`.
pub async fn list(state: &AppState) -> Resp {
    let (tx, rx) = oneshot::channel();
    ask(state, Cmd::List(tx), rx).await
}

/// Sends `cmd` to the state task and answers with the JSON of its reply.
async fn ask<T: serde::Serialize>(state: &AppState, cmd: Cmd, rx: oneshot::Receiver<T>) -> Resp {
    let down = || {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway state task is not running",
        )
    };
    if state.gateways.tx.send(cmd).await.is_err() {
        return down();
    }
    match rx.await {
        Ok(v) => json(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Err(_) => down(),
    }
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
    let (tx, rx) = oneshot::channel();
    let cmd = Cmd::Mark {
        key,
        disable,
        done: tx,
    };
    // Answered after the new snapshot is published: the next query sees it.
    ask(state, cmd, rx).await
}
