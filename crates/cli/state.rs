//! What `c4route serve` shares between its connections, the reloader and
//! `/health`: the serving table, the last reload error, the metrics and the
//! limits.
//!
//! It sits below both [`crate::serve`] (which reads it per request) and
//! [`crate::reload`] (which swaps tables into it), so neither of those needs
//! the other's internals and the dependencies flow one way: `serve` →
//! `reload` → `state` → `metrics`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use c4route_core::{RouteTable, RuleId};
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;

/// Connection and request limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most open connections.
    pub max_connections: usize,
    /// Header read timeout, which hyper also applies to idle keep-alive connections.
    pub idle_timeout: Duration,
    /// Body read timeout.
    pub body_timeout: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
}

/// One loaded routing table and what the service knows about it.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled table.
    pub table: RouteTable,
    /// 1 for the startup table, +1 per swap.
    pub generation: u64,
    /// When it was loaded.
    pub loaded_at: jiff::Timestamp,
    /// Per-rule hit counters, indexed by `RuleId`, filled on a rule's first
    /// hit so the request path never hashes a rule name.
    hits: Box<[OnceLock<Counter>]>,
    /// Set when a reload replaces this table; see [`Loaded::retire`].
    retired: AtomicBool,
}

impl Loaded {
    /// Wraps a freshly built table.
    pub fn new(table: RouteTable, generation: u64) -> Self {
        let hits = (0..table.rule_count()).map(|_| OnceLock::new()).collect();
        Loaded {
            table,
            generation,
            loaded_at: jiff::Timestamp::now(),
            hits,
            retired: AtomicBool::new(false),
        }
    }

    /// Sets the serving-table gauges to this table's.
    pub fn set_gauges(&self, metrics: &Metrics) {
        metrics.set_table(
            self.table.rule_count(),
            self.table.trunk_count(),
            self.generation,
            self.loaded_at,
        );
    }

    /// The names of the table's rules.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.table.rule_names()
    }

    /// Called by the reload just before `next` replaces this table: drops
    /// the hit series of the rules that `next` no longer has. Rules in both
    /// keep their series, and so their counts.
    pub fn retire(&self, next: &Loaded, metrics: &Metrics) {
        let keep: std::collections::HashSet<&str> = next.rule_names().collect();
        let gone = self.rule_names().filter(|n| !keep.contains(n));
        metrics.rule_hits.retire(&self.retired, gone);
    }

    /// Counts one query decided by rule `id`.
    pub fn hit(&self, id: RuleId, metrics: &Metrics) {
        if let Some(slot) = self.hits.get(id.index()) {
            slot.get_or_init(|| {
                let name = self.table.rule_name(id);
                metrics.rule_hits.counter(name, &self.retired)
            })
            .inc();
        }
    }
}

/// Everything the connections, the reloader and `/health` share.
#[derive(Debug)]
pub struct AppState {
    /// The serving table; a reload swaps it whole, so a request sees one table.
    pub current: ArcSwap<Loaded>,
    /// The diagnostics of the last reload if it failed (`/health` degraded).
    pub last_error: ArcSwapOption<String>,
    /// The last panic caught in a background task (`/health` degraded
    /// until the process restarts; see `guard.rs`).
    pub task_error: ArcSwapOption<String>,
    /// Metrics rendered at `/metrics`.
    pub metrics: Metrics,
    /// Networks allowed to query; empty means everyone.
    pub allow: Vec<IpNet>,
    /// HTTP limits.
    pub limits: Limits,
    /// The routes.d directory.
    pub routes_dir: PathBuf,
    /// Live gateway state (SPEC §8): the snapshot answers are ordered with.
    pub gateways: crate::live::hub::Gateways,
    /// Calls in progress and the trunks' and gateways' counts (SPEC §9).
    pub calls: crate::live::calls::Calls,
    /// The store shared with other replicas (`--state`, SPEC §9.4); `None`:
    /// this replica keeps its own state.
    pub store: Option<std::sync::Arc<crate::live::store::Store>>,
    /// Set to `true` once at shutdown: every background task watches it.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// The rate decks the last read of routes.d named (whether or not they
    /// loaded): the reloader watches the folders that hold them.
    pub deck_files: ArcSwap<Vec<PathBuf>>,
}

impl AppState {
    /// State serving `table` (generation 1).
    pub fn new(table: RouteTable, routes_dir: PathBuf, allow: Vec<IpNet>, limits: Limits) -> Self {
        let metrics = Metrics::new();
        let loaded = Loaded::new(table, 1);
        loaded.set_gauges(&metrics);
        metrics.last_reload_success.set(1);
        AppState {
            current: ArcSwap::from_pointee(loaded),
            last_error: ArcSwapOption::empty(),
            task_error: ArcSwapOption::empty(),
            metrics,
            allow,
            limits,
            routes_dir,
            gateways: crate::live::hub::Gateways::default(),
            calls: crate::live::calls::Calls::default(),
            store: None,
            stop: tokio::sync::watch::Sender::new(false),
            deck_files: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Where background tasks record a caught panic (`guard.rs`).
    pub fn panics(&self) -> crate::guard::PanicSink<'_> {
        crate::guard::PanicSink {
            metrics: &self.metrics,
            task_error: &self.task_error,
        }
    }

    /// Resolves once shutdown has begun (at once if it has).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Whether a client at `ip` may send routing queries (`--allow`).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// State serving an empty table, for unit tests.
    pub(crate) fn empty_state(routes_dir: PathBuf, allow: Vec<IpNet>) -> AppState {
        let table = c4route_core::Sources::new().build().unwrap();
        let limits = Limits {
            max_connections: 1,
            idle_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
        };
        AppState::new(table, routes_dir, allow, limits)
    }

    #[test]
    fn allow_list() {
        let mk = |allow: &[&str]| {
            let nets = allow.iter().map(|s| s.parse().unwrap()).collect();
            empty_state(PathBuf::new(), nets)
        };
        let open = mk(&[]);
        assert!(open.allows("192.0.2.1".parse().unwrap()));
        let some = mk(&["10.0.0.0/8", "::1/128"]);
        assert!(some.allows("10.1.2.3".parse().unwrap()));
        assert!(some.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(some.allows("::1".parse().unwrap()));
        assert!(!some.allows("127.0.0.1".parse().unwrap()));
    }
}
