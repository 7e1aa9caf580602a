//! The gateway metrics of SPEC §8, registered into the service's registry
//! by `Metrics::new` and kept in their own file so the rest of the metrics
//! stay as they were.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `{gateway}`: the normalised gateway URI.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabel {
    /// `sip:host:port;transport=t`.
    pub gateway: String,
}

/// `{gateway, state}` of a transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabel {
    /// The gateway.
    pub gateway: String,
    /// The new state: up, down or disabled.
    pub state: &'static str,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// What came of it.
    pub result: &'static str,
}

/// Gateway state, probes and reports.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// `c4route_gateway_up{gateway}`: 1 up, 0 down or disabled.
    pub up: Family<GatewayLabel, Gauge>,
    /// `c4route_gateway_transitions_total{gateway,state}`.
    pub transitions: Family<TransitionLabel, Counter>,
    /// `c4route_probe_rtt_seconds`: OPTIONS sent → final reply.
    pub probe_rtt: Histogram,
    /// `c4route_probes_total{result}`: success, failure, timeout, error.
    pub probes: Family<ResultLabel, Counter>,
    /// `c4route_gateway_reports_total{result}`: success, failure, unknown_gateway, bad_request.
    pub reports: Family<ResultLabel, Counter>,
    /// `c4route_probe_replies_dropped_total{reason}`: wrong_source, unmatched, invalid.
    pub replies_dropped: Family<ReasonLabel, Counter>,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

impl GatewayMetrics {
    /// Creates and registers the gateway metrics.
    pub fn register(registry: &mut Registry) -> Self {
        // 0.5 ms .. about 8 s.
        let m = GatewayMetrics {
            up: Family::default(),
            transitions: Family::default(),
            probe_rtt: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            probes: Family::default(),
            reports: Family::default(),
            replies_dropped: Family::default(),
        };
        registry.register(
            "gateway_up",
            "1 when a gateway is up, 0 when it is down or disabled (SPEC §8)",
            m.up.clone(),
        );
        registry.register(
            "gateway_transitions",
            "Gateway state changes, by gateway and new state",
            m.transitions.clone(),
        );
        registry.register_with_unit(
            "probe_rtt",
            "Round-trip time of SIP OPTIONS probes that got a final reply",
            Unit::Seconds,
            m.probe_rtt.clone(),
        );
        registry.register(
            "probes",
            "SIP OPTIONS probes by result (success, failure, timeout, error)",
            m.probes.clone(),
        );
        registry.register(
            "gateway_reports",
            "POST /kamailio/feedback reports by result (success, failure, unknown_gateway, bad_request)",
            m.reports.clone(),
        );
        registry.register(
            "probe_replies_dropped",
            "Replies on the UDP probe socket that matched no probe, by reason: wrong_source (the \
             tokens of an open probe, from another host than the probed one), unmatched (no open \
             probe has that branch and Call-ID: a late or stray reply), invalid (not a SIP response)",
            m.replies_dropped.clone(),
        );
        m
    }

    /// Counts a dropped probe reply.
    pub fn reply_dropped(&self, reason: &'static str) {
        self.replies_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a report.
    pub fn report(&self, result: &'static str) {
        self.reports.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a probe.
    pub fn probe(&self, result: &'static str) {
        self.probes.get_or_create(&ResultLabel { result }).inc();
    }
}
