//! The handle of the gateway state task (SPEC §8): the snapshot decisions
//! read, and the typed ways in — probe results, Kamailio's reports,
//! operator commands — each bounded in time, so a caller never waits on a
//! stuck task for long. The task itself is `gateways.rs`.

use std::collections::HashSet;
use std::time::Duration;

use arc_swap::ArcSwap;
use c4route_core::Live;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Commands queued for the state task; a report beyond this is dropped
/// (and counted) rather than slowing Kamailio down.
const QUEUE: usize = 16_384;
/// The longest an HTTP handler waits for the state task to apply a report
/// or a command (it takes microseconds; a wait this long means the task is
/// stuck far behind).
pub(crate) const APPLY_WAIT: Duration = Duration::from_secs(2);

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

pub(crate) enum Cmd {
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
    /// Another replica's fact, from the shared store (SPEC §9.4), as if it
    /// had happened here at the instant given: applied, never published
    /// again.
    Shared(Shared, std::time::Instant),
    /// One attempt ended on a gateway for a destination group (SPEC §9.3).
    Attempt {
        key: std::sync::Arc<str>,
        group: std::sync::Arc<str>,
        attempt: super::quality::Attempt,
        /// Only the duration of an attempt an `answered` counted already.
        duration_only: bool,
    },
}

/// What another replica shares through the store (`live/store/stream.rs`).
#[derive(Debug, Clone)]
pub enum Shared {
    /// A probe's result.
    Probe {
        /// The gateway.
        key: String,
        /// What it found.
        result: ProbeResult,
    },
    /// A §8 report.
    Report {
        /// The gateway.
        key: String,
        /// The final code.
        code: u16,
        /// The call it was about.
        call_id: String,
    },
    /// A drain or restore.
    Mark {
        /// The gateway.
        key: String,
        /// Drained or restored.
        disable: bool,
    },
    /// An ended attempt, for quality.
    Attempt {
        /// The gateway.
        key: std::sync::Arc<str>,
        /// The destination group.
        group: std::sync::Arc<str>,
        /// Its outcome.
        attempt: super::quality::Attempt,
        /// Only its duration counts.
        duration_only: bool,
    },
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

/// Why a report or command was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unapplied {
    /// The queue was full: dropped rather than slowing Kamailio down.
    Dropped,
    /// The state task is not running.
    TaskDown,
    /// The task did not apply it within [`APPLY_WAIT`].
    Timeout,
}

impl Unapplied {
    /// What to tell a client.
    pub fn message(self) -> &'static str {
        match self {
            Unapplied::Dropped => "the gateway state task is overloaded; the report was dropped",
            Unapplied::TaskDown => "the gateway state task is not running",
            Unapplied::Timeout => "the gateway state task did not apply it within 2s",
        }
    }
}

impl Gateways {
    /// Takes the receiving end (once) for the state task.
    pub(crate) fn take_rx(&self) -> Option<mpsc::Receiver<Cmd>> {
        self.rx_slot.try_lock().ok().and_then(|mut s| s.take())
    }

    /// Publishes a new snapshot and the set of gateways down by health.
    pub(crate) fn publish(&self, live: Live, down: HashSet<String>) {
        self.health_down.store(std::sync::Arc::new(down));
        self.snapshot.store(std::sync::Arc::new(live));
    }

    /// Hands a report (a final code of a branch to the gateway `key`) to
    /// the state task and waits until it is applied and published, so a
    /// query sent after the answer sees it.
    pub async fn report(&self, key: String, code: u16, call_id: String) -> Result<(), Unapplied> {
        let (done, applied) = oneshot::channel();
        let cmd = Cmd::Report {
            key,
            code,
            call_id,
            done,
        };
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Unapplied::Dropped,
            mpsc::error::TrySendError::Closed(_) => Unapplied::TaskDown,
        })?;
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Unapplied::TaskDown),
            Err(_) => Err(Unapplied::Timeout),
        }
    }

    async fn ask(&self, cmd: Cmd, rx: oneshot::Receiver<Value>) -> Result<Value, Unapplied> {
        let asked = async {
            self.tx.send(cmd).await.ok()?;
            rx.await.ok()
        };
        match tokio::time::timeout(APPLY_WAIT, asked).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Unapplied::TaskDown),
            Err(_) => Err(Unapplied::Timeout),
        }
    }

    /// Hands one ended attempt to the quality statistics (fire-and-forget:
    /// a full queue drops it, which `c4route_quality_attempts_dropped_total`
    /// counts).
    pub fn attempt(
        &self,
        key: std::sync::Arc<str>,
        group: std::sync::Arc<str>,
        attempt: super::quality::Attempt,
        duration_only: bool,
    ) -> bool {
        self.tx
            .try_send(Cmd::Attempt {
                key,
                group,
                attempt,
                duration_only,
            })
            .is_ok()
    }

    /// Hands another replica's fact to the state task (fire-and-forget: a
    /// full queue drops it, counted in `c4route_state_dropped_total`).
    pub fn shared(&self, fact: Shared, at: std::time::Instant) -> bool {
        self.tx.try_send(Cmd::Shared(fact, at)).is_ok()
    }

    /// Every gateway's state, as `GET /gateways` shows it.
    pub async fn list(&self) -> Result<Value, Unapplied> {
        let (tx, rx) = oneshot::channel();
        self.ask(Cmd::List(tx), rx).await
    }

    /// Drains (`disable`) or restores a gateway; answers its new state
    /// once the snapshot is published.
    pub async fn mark(&self, key: String, disable: bool) -> Result<Value, Unapplied> {
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Mark {
            key,
            disable,
            done: tx,
        };
        self.ask(cmd, rx).await
    }
}
