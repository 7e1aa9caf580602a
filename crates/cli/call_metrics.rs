//! The call and capacity metrics of SPEC §9.1 and §9.2, registered into the
//! service's registry by `Metrics::new`. Trunk figures live in the
//! [`Board`]'s atomics; [`CallMetrics::sync`] copies them into the
//! families when `/metrics` is scraped, so the request path touches no
//! metric family.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::live::calls::{Board, Calls};

/// `{trunk}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrunkLabel {
    /// The trunk's name.
    pub trunk: String,
}

/// `{trunk, limit}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// The trunk's name.
    pub trunk: String,
    /// `calls` or `cps`.
    pub limit: &'static str,
}

/// `{event, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// failed, ended, answered (or `-` for a body without a known event).
    pub event: &'static str,
    /// ok, unknown_call, bad_request, forbidden.
    pub result: &'static str,
}

/// Calls in progress and capacity limits.
#[derive(Debug)]
pub struct CallMetrics {
    /// `c4route_trunk_calls{trunk}`: channels held now.
    pub trunk_calls: Family<TrunkLabel, Gauge>,
    /// `c4route_trunk_cps{trunk}`: attempts in the last second.
    pub trunk_cps: Family<TrunkLabel, Gauge>,
    /// `c4route_trunk_left_out_total{trunk,limit}`.
    pub left_out: Family<LimitLabel, Counter>,
    /// `c4route_trunk_over_limit_total{trunk}`: failovers past `calls`.
    pub over_limit: Family<TrunkLabel, Counter>,
    /// `c4route_call_events_total{event,result}`.
    pub events: Family<EventLabel, Counter>,
    /// `c4route_calls_open`: call records open now.
    pub open: Gauge,
    /// `c4route_calls_expired_total`: records closed by `max_duration`.
    pub expired: Counter,
}

impl CallMetrics {
    /// Creates and registers the call metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = CallMetrics {
            trunk_calls: Family::default(),
            trunk_cps: Family::default(),
            left_out: Family::default(),
            over_limit: Family::default(),
            events: Family::default(),
            open: Gauge::default(),
            expired: Counter::default(),
        };
        registry.register(
            "trunk_calls",
            "Calls in progress on a trunk (SPEC §9.2)",
            m.trunk_calls.clone(),
        );
        registry.register(
            "trunk_cps",
            "Attempts on a trunk in the last second",
            m.trunk_cps.clone(),
        );
        registry.register(
            "trunk_left_out",
            "Decisions that left a trunk out because it was at a limit, by limit (calls, cps, gateway_calls)",
            m.left_out.clone(),
        );
        registry.register(
            "trunk_over_limit",
            "Failovers that took a trunk past its calls limit (Kamailio already tried that route)",
            m.over_limit.clone(),
        );
        registry.register(
            "call_events",
            "Call events (POST /kamailio/event, or over evapi) by event and result",
            m.events.clone(),
        );
        registry.register("calls_open", "Call records open now", m.open.clone());
        registry.register(
            "calls_expired",
            "Call records closed after [defaults.calls] max_duration without an event",
            m.expired.clone(),
        );
        m
    }

    /// Counts one event.
    pub fn event(&self, event: &'static str, result: &'static str) {
        self.events
            .get_or_create(&EventLabel { event, result })
            .inc();
    }

    /// Copies the board's figures into the families (at scrape time).
    pub fn sync(&self, calls: &Calls) {
        let board: &Board = &calls.board.load();
        let now = std::time::Instant::now();
        self.open.set(calls.open_count() as i64);
        for t in board.trunks() {
            let trunk = TrunkLabel {
                trunk: t.name.to_string(),
            };
            self.trunk_calls
                .get_or_create(&trunk)
                .set(i64::from(t.calls()));
            self.trunk_cps
                .get_or_create(&trunk)
                .set(i64::from(t.cps(now)));
            let (calls_out, cps_out, over) = t.counters();
            for (limit, n) in [("calls", calls_out), ("cps", cps_out)] {
                let c = self.left_out.get_or_create(&LimitLabel {
                    trunk: trunk.trunk.clone(),
                    limit,
                });
                c.inc_by(n.saturating_sub(c.get()));
            }
            let c = self.over_limit.get_or_create(&trunk);
            c.inc_by(over.saturating_sub(c.get()));
        }
    }
}
