//! The shared store's metrics (SPEC §9.4), registered by `Metrics::new`
//! whether or not `--state` is given (all zero without it), and shared with
//! the [`Store`](crate::live::store::Store) it counts: the counters are
//! `Arc`s inside, so the store's clone and the registry's are one.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The store's health and what it could not do.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// `c4route_state_up`: 1 while the store answers (the breaker is
    /// closed), 0 while the replica decides from local state.
    pub up: Gauge,
    /// `c4route_state_errors_total`: store calls that failed with an error.
    pub errors: Counter,
    /// `c4route_state_timeouts_total`: store calls with no answer within
    /// `--state-timeout`.
    pub timeouts: Counter,
    /// `c4route_state_local_decisions_total`: decisions that needed a
    /// reservation and were decided from local state (store down or slow).
    pub local_decisions: Counter,
    /// `c4route_state_local_events_total`: events queued for the store
    /// (it was down, or did not have the call's record yet).
    pub local_events: Counter,
    /// `c4route_state_pending`: writes waiting for the store: queued by
    /// `Store::send` and not yet written or dropped.
    pub pending: Gauge,
    /// `c4route_state_written_total`: queued writes the store took.
    pub written: Counter,
    /// `c4route_state_dropped_total`: writes lost (the queue was full, or
    /// the process stopped before the store came back).
    pub dropped: Counter,
    /// `c4route_state_applied_total`: other replicas' entries applied here.
    pub applied: Counter,
}

impl StoreMetrics {
    /// Creates and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = StoreMetrics::default();
        registry.register(
            "state_up",
            "1 while the shared store (--state) answers; 0 while this replica decides from local state",
            m.up.clone(),
        );
        registry.register(
            "state_errors",
            "Shared store calls that failed with an error",
            m.errors.clone(),
        );
        registry.register(
            "state_timeouts",
            "Shared store calls with no answer within --state-timeout",
            m.timeouts.clone(),
        );
        registry.register(
            "state_local_decisions",
            "Decisions that needed a reservation and were decided from local state (store down or slow)",
            m.local_decisions.clone(),
        );
        registry.register(
            "state_local_events",
            "Call events queued for the shared store (it was down, or did not have the call's record yet)",
            m.local_events.clone(),
        );
        registry.register(
            "state_pending",
            "Writes waiting for the shared store",
            m.pending.clone(),
        );
        registry.register(
            "state_written",
            "Queued writes the shared store took",
            m.written.clone(),
        );
        registry.register(
            "state_dropped",
            "Writes to the shared store that were lost (queue full, or stopped while it was down)",
            m.dropped.clone(),
        );
        registry.register(
            "state_applied",
            "Entries of other replicas (reports, probes, drains, call events) applied here",
            m.applied.clone(),
        );
        m
    }
}
