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
//! Nothing here knows HTTP: `hub.rs` is the typed way in, and
//! `serve/gateways.rs` the endpoints in front of it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use c4route_core::{
    GatewayInfo, GatewayState, GatewayStatus, Live, ProbeMode, ProbeTransport, RouteTable,
    gateway_key,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::hub::{Cmd, ProbeResult, Shared};
use super::quality::{Change as QualityChange, Quality};
use super::store::Entry as Fact;
use super::tracker::{Change, Source, Tracker, is_success};
use crate::gateway_metrics::{GatewayLabel, TransitionLabel};
use crate::guard;
use crate::state::AppState;

/// How often down gateways are checked for `retry_after` and the table
/// for a reload.
const TICK: Duration = Duration::from_millis(250);
/// How often quality windows are aged (a window's bucket is at least 1 s),
/// their verdicts re-judged and their metrics refreshed.
const SWEEP: Duration = Duration::from_secs(1);
/// Starts the state task. Must run inside a tokio runtime; a second call
/// does nothing.
pub fn spawn(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let rx = state.gateways.take_rx()?;
    Some(tokio::spawn(run(state, rx)))
}

struct Entry {
    info: GatewayInfo,
    tracker: Tracker,
    last_probe: Option<(Option<u16>, Option<Duration>, SystemTime)>,
}

struct Task {
    state: Arc<AppState>,
    /// Quality statistics and verdicts (SPEC §9.3).
    quality: Quality,
    /// When the quality windows were last aged.
    swept: Instant,
    entries: HashMap<String, Entry>,
    /// Keys in the table's order, for /gateways.
    order: Vec<String>,
    generation: u64,
}

async fn run(state: Arc<AppState>, mut rx: mpsc::Receiver<Cmd>) {
    let mut t = Task {
        state,
        quality: Quality::new(),
        swept: Instant::now(),
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
    let stopped = state.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
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
        // New quality settings apply; gateways that left are forgotten.
        let entries = &self.entries;
        let qc = self
            .quality
            .reconfigure(|k| entries.get(k).map(|e| &e.info.quality), now);
        changed |= !qc.is_empty();
        self.verdicts(qc);
        if changed {
            self.publish();
        }
    }

    /// Logs and counts quality verdict changes (the caller publishes).
    fn verdicts(&self, changes: Vec<QualityChange>) {
        if !changes.is_empty() {
            let m = &self.state.metrics.quality;
            m.poor_pairs.set(self.quality.poor_count() as i64);
            m.pairs.set(self.quality.pair_count() as i64);
        }
        for c in changes {
            let verdict = if c.poor { "poor" } else { "good" };
            self.state.metrics.quality.changed(&c.key, verdict);
            let msg = format!("gateway {verdict} for {}", c.group);
            if c.poor {
                warn!(gateway = %c.key, group = %c.group, attempts = c.attempts, reason = %c.reason, "{msg}");
            } else {
                info!(gateway = %c.key, group = %c.group, attempts = c.attempts, reason = %c.reason, "{msg}");
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        let now = Instant::now();
        let store = self.state.store.clone();
        let publish = |e: Fact| {
            if let Some(s) = &store {
                s.publish(e);
            }
        };
        match cmd {
            Cmd::Probes(batch) => {
                for (key, result) in batch {
                    self.handle(Cmd::Probe { key, result });
                }
            }
            Cmd::Probe { key, result } => {
                publish(Fact::Probe {
                    key: key.clone(),
                    code: result.code,
                    rtt_ms: result.rtt.map(|d| d.as_millis() as u64),
                    error: result.error.clone(),
                });
                self.probe(&key, &result, now);
            }
            Cmd::Report {
                key,
                code,
                call_id,
                done,
            } => {
                if self.entries.contains_key(&key) {
                    publish(Fact::Report {
                        key: key.clone(),
                        code,
                        call_id: call_id.clone(),
                    });
                }
                self.report(&key, code, &call_id, now);
                // After the publish: the 204 means the next query sees it.
                let _ = done.send(());
            }
            Cmd::Mark { key, disable, done } => {
                if self.entries.contains_key(&key) {
                    publish(Fact::Mark {
                        key: key.clone(),
                        disable,
                    });
                }
                self.mark(&key, disable, now);
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
                    .map(|e| {
                        let mut v = entry_json(e, now);
                        v["quality"] = json!(self.quality.stats(&e.info.key));
                        v
                    })
                    .collect();
                let _ = done.send(json!({ "gateways": list }));
            }
            Cmd::Attempt {
                key,
                group,
                attempt,
                duration_only,
            } => self.attempt(&key, &group, attempt, duration_only, now),
            // Another replica's fact (SPEC §9.4): applied at the instant it
            // happened there, and not published again.
            Cmd::Shared(fact, at) => match fact {
                Shared::Probe { key, result } => self.probe(&key, &result, at),
                Shared::Report { key, code, call_id } => self.report(&key, code, &call_id, at),
                Shared::Mark { key, disable } => self.mark(&key, disable, at),
                Shared::Attempt {
                    key,
                    group,
                    attempt,
                    duration_only,
                } => self.attempt(&key, &group, attempt, duration_only, at),
            },
        }
    }

    fn probe(&mut self, key: &str, result: &ProbeResult, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
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
        self.changed_or_moved(key, change, moved);
    }

    fn report(&mut self, key: &str, code: u16, call_id: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            let ok = is_success(&e.info.health, Some(code));
            let what = format!("report: {code} (call {call_id})");
            let was_down = e.tracker.is_down();
            let change = e
                .tracker
                .observe(ok, Source::Report, &e.info.health, now, &what);
            let moved = e.tracker.is_down() != was_down;
            self.changed_or_moved(key, change, moved);
        }
    }

    fn mark(&mut self, key: &str, disable: bool, now: Instant) {
        let change = self.entries.get_mut(key).and_then(|e| {
            if disable {
                e.tracker.disable(now)
            } else {
                e.tracker.enable(now)
            }
        });
        self.changed(key, change);
    }

    fn attempt(
        &mut self,
        key: &str,
        group: &str,
        attempt: super::quality::Attempt,
        duration_only: bool,
        now: Instant,
    ) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        let s = &e.info.quality;
        let change = match (duration_only, attempt.duration) {
            (true, Some(d)) => self.quality.record_duration(key, group, s, d, now),
            (true, None) => None,
            (false, _) => self.quality.record(key, group, s, attempt, now),
        };
        if let Some(c) = change {
            self.verdicts(vec![c]);
            self.publish();
        }
    }

    /// The half-open step of gateways nothing probes, and the ageing of
    /// the quality windows.
    fn tick(&mut self) {
        let now = Instant::now();
        if now.saturating_duration_since(self.swept) >= SWEEP {
            self.swept = now;
            let qc = self.quality.sweep(now);
            let any = !qc.is_empty();
            self.verdicts(qc);
            self.state.metrics.quality.sync(&self.quality);
            if any {
                self.publish();
            }
        }
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
        let mut live = Live::builder().gateway_state(s);
        for (key, group) in self.quality.poor_pairs() {
            live = live.poor_key(key, group, true);
        }
        self.state.gateways.publish(live.build(), down);
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
