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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use c4route_core::{
    GatewayInfo, GatewayState, GatewayStatus, Live, ProbeMode, ProbeTransport, RouteTable,
    gateway_key, is_form_body,
};
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::gateway_metrics::{GatewayLabel, TransitionLabel};
use crate::guard;
use crate::serve::{Resp, json, json_error, read_request_body};
use crate::state::AppState;
use crate::tracker::{Change, Source, Tracker, is_success};

/// How often down gateways are checked for `retry_after` and the table
/// for a reload.
const TICK: Duration = Duration::from_millis(250);
/// Commands queued for the state task; a report beyond this is dropped
/// (and counted) rather than slowing Kamailio down.
const QUEUE: usize = 16_384;
/// The longest an HTTP handler waits for the state task to apply a report
/// or a command (it takes microseconds; a wait this long means the task is
/// stuck far behind).
const APPLY_WAIT: Duration = Duration::from_secs(2);

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
        /// Answered once the report is applied and the snapshot published.
        done: oneshot::Sender<()>,
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
    /// The gateways down by health, disabled or not (the snapshot says
    /// `disabled` over `down`): what `probe = "when_down"` asks about.
    health_down: ArcSwap<HashSet<String>>,
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
            health_down: ArcSwap::from_pointee(HashSet::new()),
            tx,
            rx_slot: tokio::sync::Mutex::new(Some(rx)),
        }
    }
}

impl Gateways {
    /// Whether the gateway `key` is down by its probes and reports
    /// (whether or not an operator has also disabled it).
    pub fn is_down_by_health(&self, key: &str) -> bool {
        self.health_down.load().contains(key)
    }

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
    let state = t.state.clone();
    // Each step runs under a panic guard (guard.rs): a panic is recorded
    // and the task goes on with the next command. Unwind safety: a step
    // changes one gateway's tracker and then publishes; cut short, it
    // leaves at worst that gateway's counts or its published state one
    // step behind, which the next outcome or change corrects.
    const TASK: &str = "gateway state task";
    guard::catch(state.panics(), TASK, || t.sync());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(c) => {
                    guard::catch(state.panics(), TASK, || {
                        t.sync();
                        t.handle(c);
                    });
                }
                None => break,
            },
            _ = tick.tick() => {
                guard::catch(state.panics(), TASK, || {
                    t.sync();
                    t.tick();
                });
            }
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
                let ok = is_success(&e.info.health, result.code);
                let was_down = e.tracker.is_down();
                let what = match (result.code, &result.error) {
                    (Some(c), _) => format!(
                        "probe: {c} in {} ms",
                        result.rtt.map_or(0, |d| d.as_millis())
                    ),
                    (None, Some(err)) => format!("probe: {err}"),
                    (None, None) => "probe: no final reply".into(),
                };
                let change = e
                    .tracker
                    .observe(ok, Source::Probe, &e.info.health, now, &what);
                let moved = e.tracker.is_down() != was_down;
                self.changed_or_moved(&key, change, moved);
            }
            Cmd::Report {
                key,
                code,
                call_id,
                done,
            } => {
                if let Some(e) = self.entries.get_mut(&key) {
                    let ok = is_success(&e.info.health, Some(code));
                    let what = format!("report: {code} (call {call_id})");
                    let was_down = e.tracker.is_down();
                    let change = e
                        .tracker
                        .observe(ok, Source::Report, &e.info.health, now, &what);
                    let moved = e.tracker.is_down() != was_down;
                    self.changed_or_moved(&key, change, moved);
                }
                // After the publish: the 204 means the next query sees it.
                let _ = done.send(());
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
        let mut moved = false;
        for (key, e) in &mut self.entries {
            if !e.tracker.is_down() {
                continue;
            }
            let probed = e.info.health.probe != ProbeMode::Never
                && e.info.transport != ProbeTransport::Unsupported;
            let c = e.tracker.tick(&e.info.health, probed, now);
            moved |= !e.tracker.is_down();
            if let Some(c) = c {
                changes.push((key.clone(), c));
            }
        }
        let published = !changes.is_empty();
        for (key, c) in changes {
            self.changed(&key, Some(c));
        }
        if moved && !published {
            self.publish(); // up by health, still disabled
        }
    }

    /// [`Task::changed`], and a publish when only the health under an
    /// operator's `disabled` `moved` (no change of the status queries see,
    /// but `probe = "when_down"` asks about it).
    fn changed_or_moved(&mut self, key: &str, change: Option<Change>, moved: bool) {
        if change.is_some() {
            self.changed(key, change);
        } else if moved {
            self.publish();
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
        let mut down = HashSet::new();
        for (key, e) in &self.entries {
            let st = e.tracker.status();
            if st != GatewayStatus::Up {
                s.set_key(key.clone(), st);
            }
            if e.tracker.is_down() {
                down.insert(key.clone());
            }
        }
        let g = &self.state.gateways;
        g.health_down.store(Arc::new(down));
        g.snapshot
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

/// Reads a small body (reports and commands are tiny): the server's one
/// body reader, so an oversized one gets the same 413 as a query.
pub(crate) async fn body(
    req: hyper::Request<Incoming>,
    state: &AppState,
) -> Result<(Bytes, Option<String>), Resp> {
    let (b, ct) = read_request_body(req, state).await?;
    let ct = ct.and_then(|v| v.to_str().ok().map(str::to_owned));
    Ok((b, ct))
}

/// The fields of a JSON object or a form body, as strings.
pub(crate) fn fields(body: &[u8], ct: Option<&str>) -> Result<HashMap<String, String>, String> {
    // As for queries (the same rule): libcurl labels every POST without a
    // header as a form, so a body that is plainly a JSON object is JSON.
    if is_form_body(body, ct) {
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

/// Why a URI names no gateway of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownGateway {
    /// Not a `sip:`/`sips:` gateway URI.
    BadUri(String),
    /// A URI no trunk lists.
    NotListed(String),
}

impl std::fmt::Display for UnknownGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnknownGateway::BadUri(m) | UnknownGateway::NotListed(m) => f.write_str(m),
        }
    }
}

/// The key of `uri` if `table` lists that gateway (any spelling of its
/// URI): the one check behind `/kamailio/feedback`, `/gateways/disable`,
/// `/gateways/enable` and `eval --down`.
///
/// # Errors
/// [`UnknownGateway`]: not a gateway URI, or one no trunk lists.
pub fn known_gateway(table: &RouteTable, uri: &str) -> Result<String, UnknownGateway> {
    let key = gateway_key(uri).map_err(|e| UnknownGateway::BadUri(e.to_string()))?;
    if table.gateway(&key).is_some() {
        Ok(key)
    } else {
        Err(UnknownGateway::NotListed(format!(
            "no trunk lists the gateway {uri:?} ({key})"
        )))
    }
}

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
    let success = state
        .current
        .load()
        .table
        .gateway(&key)
        .is_some_and(|g| is_success(&g.health, Some(code)));
    m.report(if success { "success" } else { "failure" });
    let call_id = f.get("call_id").cloned().unwrap_or_default();
    let (done, applied) = oneshot::channel();
    let cmd = Cmd::Report {
        key,
        code,
        call_id,
        done,
    };
    if state.gateways.tx.try_send(cmd).is_err() {
        // Queue full: dropped rather than slowing Kamailio down.
        m.report("dropped");
    } else {
        // Answer once the state task has applied it and published the
        // snapshot: a query sent after the 204 sees the report.
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return task_down(),
            Err(_) => {
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the report is queued but the gateway state task did not apply it within 2s",
                );
            }
        }
    }
    let mut r = json(StatusCode::NO_CONTENT, Vec::new());
    r.headers_mut().remove(hyper::header::CONTENT_TYPE);
    r
}

fn task_down() -> Resp {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway state task is not running",
    )
}

/// `GET /gateways`.
pub async fn list(state: &AppState) -> Resp {
    let (tx, rx) = oneshot::channel();
    ask(state, Cmd::List(tx), rx).await
}

/// Sends `cmd` to the state task and answers with the JSON of its reply.
async fn ask<T: serde::Serialize>(state: &AppState, cmd: Cmd, rx: oneshot::Receiver<T>) -> Resp {
    let asked = async {
        state.gateways.tx.send(cmd).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(APPLY_WAIT, asked).await {
        Ok(Some(v)) => json(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Ok(None) => task_down(),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway state task did not answer within 2s",
        ),
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
