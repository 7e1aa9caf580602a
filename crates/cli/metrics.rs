//! `/metrics`: Prometheus text exposition with prometheus-client and no
//! global registry (STYLE: the binary owns metrics, the core has none).
//!
//! The request path never looks a metric up by name: the outcome counters
//! are resolved once here, and each loaded table keeps its own lazily filled
//! per-rule counter slots (see `state::Loaded`), so a request costs a few
//! atomic increments and one histogram observation.
//!
//! Per-rule series follow the serving table: a reload removes the series of
//! the rules that left it (see [`RuleHits`]), so renamed and deleted rules
//! do not pile up in `/metrics` over weeks of reloads, while the rules that
//! stay keep counting where they were.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label of `c4route_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Label of `c4route_rule_hits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// The rule name.
    pub rule: String,
}

/// Label of `c4route_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Label of `c4route_task_panics_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: &'static str,
}

/// Label of the evapi connection metrics: the Kamailio node's `IP:PORT`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The `--evapi` address.
    pub peer: String,
}

/// Every metric of the service, plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Routing queries answered with routes.
    pub routed: Counter,
    /// Routing queries answered with a rule's reject.
    pub rejected: Counter,
    /// Routing queries no rule matched.
    pub no_match: Counter,
    /// Routing queries refused with 400 or 413.
    pub bad_request: Counter,
    /// Routing queries refused with 403 (`--allow`).
    pub forbidden: Counter,
    /// From/To URI rewrites left out of answers (`Decision::skipped_rewrites`).
    pub rewrites_skipped: Counter,
    /// Hits per deciding rule, by rule name.
    pub rule_hits: RuleHits,
    /// Parse + decide + serialise time of one query, in seconds.
    pub decision_seconds: Histogram,
    /// Successful reloads (a swap happened or the content was unchanged).
    pub reloads_ok: Counter,
    /// Failed reloads (the last good table kept serving).
    pub reloads_failed: Counter,
    /// Rules in the serving table.
    pub table_rules: Gauge,
    /// Trunks in the serving table.
    pub table_trunks: Gauge,
    /// How many tables have been swapped in (1 = the startup table).
    pub table_generation: Gauge,
    /// 1 when the last reload attempt succeeded, 0 when it failed.
    pub last_reload_success: Gauge,
    /// Unix time of the last successful load.
    pub last_reload_success_timestamp: Gauge<f64, AtomicU64>,
    /// Wall time of the last reload attempt (read, compile, swap).
    pub last_reload_duration: Gauge<f64, AtomicU64>,
    /// Open HTTP connections.
    pub connections: Gauge,
    /// Gateway state, probes and reports (SPEC §8).
    pub gateways: crate::gateway_metrics::GatewayMetrics,
    /// Calls in progress and capacity limits (SPEC §9).
    pub calls: crate::call_metrics::CallMetrics,
    /// Quality statistics and verdicts (SPEC §9.3).
    pub quality: crate::quality_metrics::QualityMetrics,
    /// The shared store's (SPEC §9.4).
    pub store: crate::store_metrics::StoreMetrics,
    /// Panics caught in background tasks, by task (see `guard.rs`).
    task_panics: Family<TaskLabel, Counter>,
    /// `c4route_evapi_connected{peer}`: 1 while connected to that
    /// Kamailio's evapi, 0 while reconnecting.
    pub evapi_connected: Family<PeerLabel, Gauge>,
    /// `c4route_evapi_connects_total{peer}`: connections made.
    pub evapi_connects: Family<PeerLabel, Counter>,
}

/// The `c4route_rule_hits_total` series, one per rule that decided a query.
///
/// A series is created on a rule's first hit and removed by [`retire`] when a
/// reload drops the rule. The one race to close: a request still holding the
/// old table may hit a rule for the first time just after its series was
/// removed and so create it again, where no later reload would remove it.
/// So [`retire`] marks the old table retired under `gate`, and [`counter`]
/// checks that mark under the same gate before it creates a series. The gate
/// is taken on a rule's first hit per table and once per reload, never on
/// the steady-state request path.
///
/// [`retire`]: RuleHits::retire
/// [`counter`]: RuleHits::counter
#[derive(Debug, Default)]
pub struct RuleHits {
    family: Family<RuleLabel, Counter>,
    // A lock, not arc-swap: it orders "retire the table and remove its
    // series" against "check the table is current and create a series",
    // which no single atomic can. It guards no data (the table stays
    // immutable), is held for a hash-map operation at most and never across
    // an await.
    #[allow(clippy::disallowed_types)]
    gate: std::sync::RwLock<()>,
}

impl RuleHits {
    /// The counter of `rule`, for a table that `retired` says is (or is not)
    /// still current. Counters of a current table are registered (created on
    /// first use); a retired table only gets a rule's existing series, or a
    /// detached counter that `/metrics` never shows, so it cannot bring back
    /// a series [`RuleHits::retire`] removed.
    pub fn counter(&self, rule: &str, retired: &AtomicBool) -> Counter {
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let label = RuleLabel {
            rule: rule.to_owned(),
        };
        if !retired.load(Ordering::Relaxed) {
            return self.family.get_or_create(&label).clone();
        }
        match self.family.get(&label) {
            Some(c) => c.clone(),
            None => Counter::default(),
        }
    }

    /// Marks a table retired (a reload is replacing it) and removes the
    /// series of the rules in `gone`: those that are not in the new table.
    pub fn retire<'a>(&self, retired: &AtomicBool, gone: impl IntoIterator<Item = &'a str>) {
        {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            retired.store(true, Ordering::Relaxed);
        }
        // Outside the gate: from here on no first hit creates a series for
        // the retired table, and the new table has none of these rules.
        for rule in gone {
            self.family.remove(&RuleLabel {
                rule: rule.to_owned(),
            });
        }
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("c4route");
        let requests = Family::<OutcomeLabel, Counter>::default();
        let outcome = |o| requests.get_or_create(&OutcomeLabel { outcome: o }).clone();
        let (routed, rejected, no_match, bad_request, forbidden) = (
            outcome("routed"),
            outcome("rejected"),
            outcome("no_match"),
            outcome("bad_request"),
            outcome("forbidden"),
        );
        registry.register(
            "requests",
            "Routing queries by outcome (routed, rejected, no_match, bad_request, forbidden)",
            requests,
        );
        let rewrites_skipped = Counter::default();
        registry.register(
            "rewrites_skipped",
            "From/To URI rewrites left out of an answer (From/To kept) because the result was not a valid SIP URI",
            rewrites_skipped.clone(),
        );
        let rule_hits = RuleHits::default();
        registry.register(
            "rule_hits",
            "Queries decided by each rule",
            rule_hits.family.clone(),
        );
        // 1 µs .. about 65 ms.
        let decision_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 17));
        registry.register_with_unit(
            "decision",
            "Time to parse a query, decide and serialise the answer",
            Unit::Seconds,
            decision_seconds.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        let reloads_ok = reloads.get_or_create(&ResultLabel { result: "ok" }).clone();
        let reloads_failed = reloads
            .get_or_create(&ResultLabel { result: "failed" })
            .clone();
        registry.register(
            "reloads",
            "Reload attempts by result (ok, failed); a failed reload keeps the last good table",
            reloads,
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let table_rules = gauge(&mut registry, "table_rules", "Rules in the serving table");
        let table_trunks = gauge(&mut registry, "table_trunks", "Trunks in the serving table");
        let table_generation = gauge(
            &mut registry,
            "table_generation",
            "Tables swapped in since start (1 = the startup table)",
        );
        let last_reload_success = gauge(
            &mut registry,
            "config_last_reload_success",
            "1 if the last reload attempt succeeded, 0 if the last good table is serving despite an invalid routes.d",
        );
        let connections = gauge(&mut registry, "http_connections", "Open HTTP connections");
        let last_reload_success_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "Unix time of the last successful load of routes.d",
            Unit::Seconds,
            last_reload_success_timestamp.clone(),
        );
        let last_reload_duration = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "config_last_reload_duration",
            "Wall time of the last reload attempt (read, compile, swap)",
            Unit::Seconds,
            last_reload_duration.clone(),
        );
        let gateways = crate::gateway_metrics::GatewayMetrics::register(&mut registry);
        let calls = crate::call_metrics::CallMetrics::register(&mut registry);
        let quality = crate::quality_metrics::QualityMetrics::register(&mut registry);
        let store = crate::store_metrics::StoreMetrics::register(&mut registry);
        let task_panics = Family::<TaskLabel, Counter>::default();
        registry.register(
            "task_panics",
            "Panics caught in a background task (a bug in c4route), by task; the task went on or was restarted",
            task_panics.clone(),
        );
        let evapi_connected = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "evapi_connected",
            "1 while connected to that Kamailio node's evapi (serve --evapi), 0 while reconnecting",
            evapi_connected.clone(),
        );
        let evapi_connects = Family::<PeerLabel, Counter>::default();
        registry.register(
            "evapi_connects",
            "Connections made to that Kamailio node's evapi (more than one: it was lost and made again)",
            evapi_connects.clone(),
        );
        Metrics {
            evapi_connected,
            evapi_connects,
            gateways,
            calls,
            quality,
            store,
            task_panics,
            registry,
            routed,
            rejected,
            no_match,
            bad_request,
            forbidden,
            rewrites_skipped,
            rule_hits,
            decision_seconds,
            reloads_ok,
            reloads_failed,
            table_rules,
            table_trunks,
            table_generation,
            last_reload_success,
            last_reload_success_timestamp,
            last_reload_duration,
            connections,
        }
    }

    /// The counter for a `Decision::outcome_label()`.
    pub fn outcome(&self, label: &str) -> &Counter {
        match label {
            "routed" => &self.routed,
            "rejected" => &self.rejected,
            _ => &self.no_match,
        }
    }

    /// Counts a panic caught in `task`.
    pub fn task_panic(&self, task: &'static str) {
        self.task_panics.get_or_create(&TaskLabel { task }).inc();
    }

    /// Sets the gauges that describe the serving table: rules, trunks,
    /// generation and when it was loaded. The one place they are set, at
    /// start and on every swap.
    pub fn set_table(
        &self,
        rules: usize,
        trunks: usize,
        generation: u64,
        loaded_at: jiff::Timestamp,
    ) {
        self.table_rules
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.table_trunks
            .set(i64::try_from(trunks).unwrap_or(i64::MAX));
        self.table_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.last_reload_success_timestamp
            .set(loaded_at.as_millisecond() as f64 / 1000.0);
    }

    /// Renders the Prometheus text format (with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_prefix_and_total_suffix() {
        let m = Metrics::new();
        m.routed.inc();
        m.rule_hits
            .counter("uk-mobile", &AtomicBool::new(false))
            .inc();
        m.decision_seconds.observe(2e-6);
        let text = m.encode();
        for needle in [
            "c4route_requests_total{outcome=\"routed\"} 1",
            "c4route_requests_total{outcome=\"bad_request\"} 0",
            "c4route_rule_hits_total{rule=\"uk-mobile\"} 1",
            "c4route_rewrites_skipped_total 0",
            "c4route_decision_seconds_bucket",
            "c4route_reloads_total{result=\"failed\"} 0",
            "c4route_table_rules 0",
            "c4route_table_generation 0",
            "c4route_config_last_reload_success 0",
            "c4route_config_last_reload_success_timestamp_seconds 0",
            "c4route_http_connections 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn retire_removes_the_series_of_rules_that_left() {
        let m = Metrics::new();
        let (old, new) = (AtomicBool::new(false), AtomicBool::new(false));
        m.rule_hits.counter("stays", &old).inc();
        m.rule_hits.counter("leaves", &old).inc();
        m.rule_hits.retire(&old, ["leaves"]);
        let text = m.encode();
        assert!(!text.contains("leaves"), "{text}");
        assert!(text.contains("c4route_rule_hits_total{rule=\"stays\"} 1"));
        // The new table counts on the same series.
        m.rule_hits.counter("stays", &new).inc();
        assert!(
            m.encode()
                .contains("c4route_rule_hits_total{rule=\"stays\"} 2")
        );
        // A late first hit on the retired table brings nothing back, but
        // still counts on a series that exists.
        m.rule_hits.counter("leaves", &old).inc();
        m.rule_hits.counter("stays", &old).inc();
        let text = m.encode();
        assert!(!text.contains("leaves"), "{text}");
        assert!(text.contains("c4route_rule_hits_total{rule=\"stays\"} 3"));
        let series = text
            .lines()
            .filter(|l| l.starts_with("c4route_rule_hits_total{"));
        assert_eq!(series.count(), 1, "{text}");
    }
}
