//! The shared store of several replicas (SPEC §9.4): Redis 6+ or Valkey,
//! reached with the `redis` crate's [`ConnectionManager`] (one multiplexed
//! connection that reconnects by itself).
//!
//! What lives there, and how it moves (every key starts with
//! `--state-prefix`; docs/REPLICAS.md lists them all with their TTLs):
//!
//! - **channels and attempts**: `tc:TRUNK` and `gc:GATEWAY` hold one
//!   member per channel a call holds (scored by when it expires, so a lost
//!   event frees it at `max_duration`), `cps:TRUNK` the attempts of the last
//!   second. A decision whose first route is limited reserves its channel
//!   with one script (`reserve.lua`), atomically, so replicas deciding at
//!   once never put more than `calls` calls on a trunk; other decisions
//!   record theirs in the background, off the decision path.
//! - **call records**: `call:CALL-ID`, written by the same script, so a
//!   call event applies at whichever replica it reaches (`event.lua`).
//! - **what changes state over time**, one stream `events`: reports,
//!   probe results, drains and ended attempts, each applied by every other
//!   replica (`stream.rs`). A stream, not pub/sub: a replica that was
//!   disconnected for a moment reads on from the last entry it saw, and a
//!   replica that starts reads the last window back and begins from the
//!   shared state; pub/sub keeps no history for either.
//! - **probe leases**: `lease:GATEWAY` (`lease.lua`): each gateway is probed
//!   by one replica per interval.
//!
//! The store is never on the failure path: every call is bounded by
//! `--state-timeout`; the first failure opens the [`Breaker`] and from then
//! on the replica decides from its own state, queues what it must write
//! (bounded; overflow is counted), and `health.rs` closes the breaker and
//! catches up as soon as the store answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tokio::sync::mpsc;

pub mod breaker;
pub mod health;
pub mod stream;

pub use breaker::Breaker;
pub use stream::{Entry, Op};

use crate::store_metrics::StoreMetrics;

/// How many writes wait for the store at most while it is down; beyond
/// that the oldest are dropped, and counted.
pub const PENDING_MAX: usize = 100_000;

/// `serve --state …`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `redis://[:PASSWORD@]HOST:PORT/DB` or `rediss://…`.
    pub url: String,
    /// A file holding the password (its first line), instead of the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// The longest a decision waits for the store.
    pub timeout: Duration,
    /// Prefix of every key.
    pub prefix: String,
}

/// What a store call failed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The breaker is open: not asked.
    Open,
    /// No answer within `--state-timeout`.
    Timeout,
    /// The store answered with an error, or the connection failed.
    Failed(String),
}

/// The three scripts, loaded once per connection (EVALSHA; a store that
/// restarted and forgot them gets them again on NOSCRIPT).
struct Scripts {
    reserve: Script,
    event: Script,
    lease: Script,
    restore: Script,
}

const RESERVE: &str = include_str!("reserve.lua");
const EVENT: &str = include_str!("event.lua");
const LEASE: &str = include_str!("lease.lua");
const RESTORE: &str = include_str!("restore.lua");

/// A connection to the shared store.
pub struct Store {
    conn: ConnectionManager,
    /// A second connection for the stream reader's blocking XREAD, so it
    /// never delays a decision's script behind it.
    read_conn: ConnectionManager,
    /// A third for the background writer's pipelines (hundreds of scripts
    /// each). On the decisions' connection a reservation waited behind a
    /// whole pipeline, past `--state-timeout`; the breaker opened, the
    /// decisions taken locally queued more records, and it kept flapping.
    /// Redis serves its connections in turn, a read of each at a time, so
    /// a reservation on its own connection waits for a slice of a
    /// pipeline at most.
    write_conn: ConnectionManager,
    /// Prefix of every key.
    pub prefix: String,
    /// `--state-timeout`.
    pub timeout: Duration,
    /// This process's id: random, so a restarted replica is a new one.
    pub replica: String,
    /// Open while the store is known to be down.
    pub breaker: Breaker,
    scripts: Scripts,
    /// Set after a failure: the store may have restarted and lost the
    /// scripts, so they are loaded before the next call.
    needs_load: AtomicBool,
    seq: AtomicU64,
    outbox: mpsc::Sender<Op>,
    outbox_rx: tokio::sync::Mutex<Option<mpsc::Receiver<Op>>>,
    /// Counters, registered in `/metrics`.
    pub metrics: StoreMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("up", &self.breaker.is_closed())
            .finish()
    }
}

/// A random 64-bit id in hex.
fn random_id() -> String {
    let mut b = [0u8; 8];
    // getrandom fails only without an OS source; the pid is still unique
    // among the replicas of one host.
    if getrandom::fill(&mut b).is_err() {
        b = u64::from(std::process::id()).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Store {
    /// Sets up the connections without waiting for the store: a replica
    /// starts whether or not the store is up (it is then `degraded` until
    /// the store answers).
    ///
    /// # Errors
    /// The URL is not a Redis URL, or the password file cannot be read.
    pub fn connect(cfg: &StoreConfig, metrics: StoreMetrics) -> anyhow::Result<Store> {
        if cfg.url.starts_with("rediss://") {
            // One process-wide TLS provider; a second install is harmless.
            // ring, not aws-lc-rs: it builds with a C compiler alone and in a
            // fraction of the time. rustls 0.23.48 deprecates it for lacking
            // post-quantum key exchange, which a store on the operator's own
            // network does not need yet.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
            .with_context(|| {
                format!(
                    "--state {}: not a redis:// or rediss:// URL",
                    redact(&cfg.url)
                )
            })?;
        if let Some(path) = &cfg.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --state-password-file {}", path.display()))?;
            let pw = text.lines().next().unwrap_or("").trim().to_owned();
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).context("--state")?;
        let connect_timeout = cfg.timeout.max(Duration::from_millis(200));
        let base = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                // Every call is bounded by its caller (a decision by
                // --state-timeout, the reader's XREAD by its block time);
                // the crate's own 500 ms default would cut the XREAD short.
                .set_response_timeout(None)
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500))
        };
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), base())
            .context("--state: the connection")?;
        let read_conn = ConnectionManager::new_lazy_with_config(client.clone(), base())
            .context("--state: the reader's connection")?;
        let write_conn = ConnectionManager::new_lazy_with_config(client, base())
            .context("--state: the writer's connection")?;
        let (tx, rx) = mpsc::channel(PENDING_MAX);
        let breaker = Breaker::default();
        // Open until the health check's first answer: no decision waits
        // for the first connection.
        breaker.starting("not connected yet".into());
        Ok(Store {
            conn,
            read_conn,
            write_conn,
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            replica: random_id(),
            breaker,
            scripts: Scripts {
                reserve: Script::new(RESERVE),
                event: Script::new(EVENT),
                lease: Script::new(LEASE),
                restore: Script::new(RESTORE),
            },
            needs_load: AtomicBool::new(true),
            seq: AtomicU64::new(0),
            outbox: tx,
            outbox_rx: tokio::sync::Mutex::new(Some(rx)),
            metrics,
        })
    }

    /// A key with the prefix.
    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// A member no other attempt of any replica has.
    pub fn unique(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.replica)
    }

    /// Whether a decision may ask the store now.
    pub fn is_up(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Records a failure: opens the breaker and counts it.
    fn failed(&self, e: &StoreError) {
        let why = match e {
            StoreError::Open => return,
            StoreError::Timeout => {
                self.metrics.timeouts.inc();
                format!("no answer within {:?}", self.timeout)
            }
            StoreError::Failed(m) => {
                self.metrics.errors.inc();
                m.clone()
            }
        };
        self.needs_load.store(true, Ordering::Release);
        if self.breaker.trip(why.clone()) {
            self.metrics.up.set(0);
            tracing::warn!(
                "the shared store failed ({why}); deciding from local state until it answers again"
            );
        }
    }

    /// Loads the scripts (after a start or a failure).
    async fn load_scripts(&self, conn: &mut ConnectionManager) -> Result<(), StoreError> {
        for source in [RESERVE, EVENT, LEASE, RESTORE] {
            let mut c = redis::cmd("SCRIPT");
            c.arg("LOAD").arg(source);
            let _: String = c
                .query_async(conn)
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?;
        }
        Ok(())
    }

    /// Runs one script with the store's timeout (`None`: the caller's
    /// bound instead, for background writes).
    async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
        bound: Option<Duration>,
    ) -> Result<Value, StoreError> {
        if !self.breaker.is_closed() {
            return Err(StoreError::Open);
        }
        let bound = bound.unwrap_or_else(|| decision_bound(self.timeout));
        let mut conn = self.conn.clone();
        let run = async {
            if self.needs_load.swap(false, Ordering::AcqRel)
                && let Err(e) = self.load_scripts(&mut conn).await
            {
                self.needs_load.store(true, Ordering::Release);
                return Err(e);
            }
            let mut c = redis::cmd("EVALSHA");
            c.arg(script.get_hash()).arg(keys.len()).arg(keys).arg(args);
            match c.query_async::<Value>(&mut conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    self.load_scripts(&mut conn).await?;
                    c.query_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| StoreError::Failed(e.to_string()))
                }
                r => r.map_err(|e| StoreError::Failed(e.to_string())),
            }
        };
        let r = match tokio::time::timeout(bound, run).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        if let Err(e) = &r {
            self.failed(e);
        }
        r
    }

    /// Queues a background write (a stream entry, a record of a decision
    /// that needed no reservation, an event applied while the store was
    /// down). Never waits; a full queue drops it, and counts it.
    pub fn send(&self, op: Op) {
        // Counted before it is sent, so the writer's decrement never comes
        // first: the gauge is every write queued and not yet written or
        // dropped, in the channel or in the writer's hands.
        self.metrics.pending.inc();
        if self.outbox.try_send(op).is_err() {
            self.metrics.pending.dec();
            self.metrics.dropped.inc();
        }
    }

    /// Publishes a stream entry for the other replicas.
    pub fn publish(&self, entry: Entry) {
        self.send(Op::Publish(entry));
    }
}

/// Tokio's timer fires on whole milliseconds, rounding a deadline up, and
/// the worker's poll rounds its wait up again: a timeout of T fires after
/// T to T + 2 ms. A decision's store call is bounded by this much less, so
/// that it never waits longer than `--state-timeout` (measured: a frozen
/// store held decisions 20.8–21.7 ms with a 20 ms bound).
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// The bound of a decision's store call for `--state-timeout`.
fn decision_bound(timeout: Duration) -> Duration {
    timeout
        .saturating_sub(TIMER_SLACK)
        .max(Duration::from_millis(1))
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A decision's reservation: its first route's channel and attempt, and
/// the call's record (SPEC §9.2, §9.4).
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The first route's trunk.
    pub trunk: Arc<str>,
    /// Its gateway.
    pub gateway: Arc<str>,
    /// `(trunk calls, gateway calls, trunk cps)` limits, 0 = none.
    pub limits: (u32, u32, u32),
    /// The Call-ID; `None`: an attempt only (no channel, no record).
    pub call_id: Option<String>,
    /// The call's routes, `trunk\x1fgateway\x1fdst\x1fgroup` each.
    pub routes: Vec<String>,
    /// `[defaults.calls] max_duration`.
    pub max_duration: Duration,
    /// Added whatever the limits (a decision already taken locally).
    pub force: bool,
}

/// The marker of a store's contents lives a day, renewed each second.
const EPOCH_TTL_MS: u64 = 86_400_000;

/// A record the background writer sends.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A decision taken without a reservation.
    Decision(&'a Reservation),
    /// A call this replica holds open, written back to a store that came
    /// back empty.
    Open(&'a OpenCall),
}

/// A call this replica holds open, as the store keeps it.
#[derive(Debug, Clone)]
pub struct OpenCall {
    /// The Call-ID.
    pub call_id: String,
    /// Its routes, `trunk\x1fgateway\x1fdst\x1fgroup` each.
    pub routes: Vec<String>,
    /// Bits of the routes holding a channel, ended, answered.
    pub holding: u16,
    /// Ended routes.
    pub ended: u16,
    /// Answered routes.
    pub answered: u16,
    /// `max_duration`.
    pub max_duration: Duration,
}

/// One route as the shared record keeps it.
pub fn route_field(trunk: &str, gateway: &str, dst: &str, group: &str) -> String {
    format!("{trunk}\x1f{gateway}\x1f{dst}\x1f{group}")
}

/// What the store said of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Taken.
    Taken,
    /// A limit refused it.
    Refused(c4route_core::Limit),
}

/// What the store said of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// No shared record of that call.
    UnknownCall,
    /// The record has no route to that `dst_uri`.
    UnknownRoute,
    /// Applied; the route it completed for quality, if any (once).
    Done {
        /// `(gateway, group, answered before)` of the route it ended now.
        ended: Option<(String, String, bool)>,
        /// The record is closed.
        closed: bool,
    },
}

impl Store {
    /// Reserves (or, with `force`, records) a decision's first channel
    /// and attempt; bounded by `--state-timeout` (`bound` for background
    /// writes).
    pub async fn reserve(
        &self,
        r: &Reservation,
        bound: Option<Duration>,
    ) -> Result<Reserved, StoreError> {
        let (keys, args) = self.reserve_args(r);
        let v = self
            .eval(&self.scripts.reserve, &keys, &args, bound)
            .await?;
        match v {
            Value::Int(0) => Ok(Reserved::Taken),
            Value::Int(1) => Ok(Reserved::Refused(c4route_core::Limit::TrunkCalls)),
            Value::Int(2) => Ok(Reserved::Refused(c4route_core::Limit::GatewayCalls)),
            Value::Int(3) => Ok(Reserved::Refused(c4route_core::Limit::TrunkCps)),
            other => Err(self.unexpected("reserve", &other)),
        }
    }

    /// The keys and arguments of `reserve.lua` for `r`.
    fn reserve_args(&self, r: &Reservation) -> (Vec<String>, Vec<String>) {
        let cps_key = self.key("cps", &r.trunk);
        let record = match &r.call_id {
            Some(id) => self.key("call", id),
            None => cps_key.clone(),
        };
        let keys = vec![
            self.key("tc", &r.trunk),
            self.key("gc", &r.gateway),
            cps_key,
            record,
        ];
        let mut args = vec![
            r.limits.0.to_string(),
            r.limits.1.to_string(),
            r.limits.2.to_string(),
            if r.call_id.is_some() { "1" } else { "0" }.to_owned(),
            r.max_duration.as_millis().max(1000).to_string(),
            self.unique(),
            self.prefix.clone(),
            self.replica.clone(),
            if r.force { "1" } else { "0" }.to_owned(),
            r.call_id.clone().unwrap_or_default(),
        ];
        args.extend(r.routes.iter().take(16).cloned());
        (keys, args)
    }

    /// Records decisions taken without a reservation (`force`), in one
    /// pipeline: the background writer's bulk path (one round trip for a
    /// whole batch, where one script call each would cap the writer at one
    /// round trip per call).
    pub async fn record_many(&self, rs: &[Record<'_>], bound: Duration) -> Result<(), StoreError> {
        if !self.breaker.is_closed() {
            return Err(StoreError::Open);
        }
        if rs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for r in rs {
            let (script, keys, args) = match r {
                Record::Decision(r) => {
                    let (k, a) = self.reserve_args(r);
                    (&self.scripts.reserve, k, a)
                }
                Record::Open(c) => {
                    let (k, a) = self.restore_args(c);
                    (&self.scripts.restore, k, a)
                }
            };
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args)
                .ignore();
        }
        let mut conn = self.write_conn.clone();
        let run = async {
            for attempt in 0..2 {
                if self.needs_load.swap(false, Ordering::AcqRel)
                    && let Err(e) = self.load_scripts(&mut conn).await
                {
                    self.needs_load.store(true, Ordering::Release);
                    return Err(e);
                }
                match pipe.query_async::<()>(&mut conn).await {
                    Ok(()) => return Ok(()),
                    // The store restarted and forgot the scripts: none of
                    // the pipeline ran; load them and send it again.
                    Err(e)
                        if attempt == 0
                            && e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        self.needs_load.store(true, Ordering::Release);
                    }
                    Err(e) => return Err(StoreError::Failed(e.to_string())),
                }
            }
            Err(StoreError::Failed(
                "NOSCRIPT after loading the scripts".into(),
            ))
        };
        let r = match tokio::time::timeout(bound, run).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        if let Err(e) = &r {
            self.failed(e);
        }
        r
    }

    /// The keys and arguments of `restore.lua` for `c`.
    fn restore_args(&self, c: &OpenCall) -> (Vec<String>, Vec<String>) {
        let keys = vec![self.key("call", &c.call_id)];
        let mut args = vec![
            self.prefix.clone(),
            c.call_id.clone(),
            c.max_duration.as_millis().max(1000).to_string(),
            c.holding.to_string(),
            c.ended.to_string(),
            c.answered.to_string(),
            self.replica.clone(),
        ];
        args.extend(c.routes.iter().take(16).cloned());
        (keys, args)
    }

    /// PINGs the reader's and the writer's connections (after an outage);
    /// true when both answer within `bound`.
    pub async fn other_connections_answer(&self, bound: Duration) -> bool {
        for c in [&self.read_conn, &self.write_conn] {
            let mut conn = c.clone();
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            if !matches!(tokio::time::timeout(bound, ping).await, Ok(Ok(_))) {
                return false;
            }
        }
        true
    }

    /// Whether the store lost what it held since the last call (it
    /// restarted empty): a marker key with a random value is created when
    /// missing, and a value other than the last one seen means a new store.
    /// `None` when the store did not answer.
    pub async fn lost_data(&self, last: &mut Option<String>) -> Option<bool> {
        let key = format!("{}epoch", self.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(random_id())
            .arg("NX")
            .arg("PX")
            .arg(EPOCH_TTL_MS)
            .ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(EPOCH_TTL_MS).ignore();
        pipe.cmd("GET").arg(&key);
        let mut conn = self.conn.clone();
        let bound = self.timeout.max(Duration::from_millis(200));
        let (now,): (String,) = tokio::time::timeout(bound, pipe.query_async(&mut conn))
            .await
            .ok()?
            .ok()?;
        let lost = last.as_ref().is_some_and(|l| *l != now);
        *last = Some(now);
        Some(lost)
    }

    /// Applies a call event to the shared record.
    pub async fn event(
        &self,
        call_id: &str,
        dst: &str,
        kind: &str,
        next: Option<&str>,
        max_duration: Duration,
        bound: Option<Duration>,
    ) -> Result<Applied, StoreError> {
        let keys = [self.key("call", call_id)];
        let args = [
            self.prefix.clone(),
            kind.to_owned(),
            dst.to_owned(),
            next.unwrap_or("").to_owned(),
            max_duration.as_millis().max(1000).to_string(),
            self.unique(),
            call_id.to_owned(),
        ];
        let v = self.eval(&self.scripts.event, &keys, &args, bound).await?;
        let Value::Array(items) = &v else {
            return Err(self.unexpected("event", &v));
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        match int(0) {
            Some(0) => Ok(Applied::UnknownCall),
            Some(1) => Ok(Applied::UnknownRoute),
            Some(2) => {
                let ended =
                    (int(1).unwrap_or(-1) >= 0).then(|| (text(2), text(3), int(4) == Some(1)));
                Ok(Applied::Done {
                    ended,
                    closed: int(5) == Some(1),
                })
            }
            _ => Err(self.unexpected("event", &v)),
        }
    }

    /// Which of `gateways` this replica probes now (holds the lease of):
    /// every one of them when the store is down, as without a store.
    pub async fn leases(&self, gateways: &[String], lease: Duration) -> Vec<bool> {
        if gateways.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = gateways.iter().map(|g| self.key("lease", g)).collect();
        let args = [self.replica.clone(), lease.as_millis().max(1).to_string()];
        match self.eval(&self.scripts.lease, &keys, &args, None).await {
            Ok(Value::Array(v)) if v.len() == gateways.len() => {
                v.iter().map(|x| matches!(x, Value::Int(1))).collect()
            }
            _ => vec![true; gateways.len()],
        }
    }

    /// Channels held on each of `trunks` across every replica (for
    /// `GET /trunks`), `None` when the store cannot say now.
    pub async fn trunk_calls(&self, trunks: &[String]) -> Option<Vec<u64>> {
        if !self.breaker.is_closed() || trunks.is_empty() {
            return None;
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        for t in trunks {
            pipe.cmd("ZCOUNT")
                .arg(self.key("tc", t))
                .arg(now_ms.to_string())
                .arg("+inf");
        }
        tokio::time::timeout(self.timeout * 4, pipe.query_async(&mut conn))
            .await
            .ok()?
            .ok()
    }

    fn unexpected(&self, what: &str, v: &Value) -> StoreError {
        let e = StoreError::Failed(format!("the {what} script answered {v:?}"));
        self.failed(&e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_log_line() {
        assert_eq!(
            redact("redis://:s3cret@redis.internal:6379/0"),
            "redis://***@redis.internal:6379/0"
        );
        assert_eq!(redact("rediss://user:pw@h:6380/1"), "rediss://***@h:6380/1");
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
    }

    #[test]
    fn routes_are_kept_with_a_separator_no_name_contains() {
        let f = route_field(
            "acme",
            "sip:192.0.2.1:5060;transport=udp",
            "sip:192.0.2.1",
            "uk@44",
        );
        assert_eq!(
            f.split('\x1f').collect::<Vec<_>>(),
            [
                "acme",
                "sip:192.0.2.1:5060;transport=udp",
                "sip:192.0.2.1",
                "uk@44"
            ]
        );
    }

    #[test]
    fn a_bad_url_is_an_error_that_names_it_without_its_password() {
        let cfg = StoreConfig {
            url: "http://:pw@host/0".into(),
            password_file: None,
            timeout: Duration::from_millis(20),
            prefix: "c4route:".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let e = format!(
            "{:#}",
            Store::connect(&cfg, StoreMetrics::default()).unwrap_err()
        );
        assert!(e.contains("not a redis:// or rediss:// URL"), "{e}");
        assert!(!e.contains("pw"), "{e}");
    }
}
