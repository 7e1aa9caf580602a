//! The quality metrics of SPEC §9.3, registered into the service's
//! registry by `Metrics::new`, refreshed by the gateway state task each
//! time it ages the windows (every second).
//!
//! Per (gateway, group) series are capped at [`MAX_PAIRS`], the pairs with
//! the most attempts in their window: an LCR rule over a large deck can
//! make thousands of groups, and a scrape must stay small. `GET /gateways`
//! shows every pair.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::live::quality::Quality;

/// The most (gateway, group) pairs with series of their own.
pub const MAX_PAIRS: usize = 200;

/// `{gateway, group}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabel {
    /// The gateway key.
    pub gateway: String,
    /// The destination group.
    pub group: String,
}

/// `{gateway, verdict}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// The gateway key.
    pub gateway: String,
    /// `poor` or `good`.
    pub verdict: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Quality statistics and verdicts.
#[derive(Debug)]
pub struct QualityMetrics {
    /// `c4route_quality_verdicts_total{gateway,verdict}`: verdict changes.
    pub verdicts: Family<VerdictLabel, Counter>,
    /// `c4route_quality_pairs`: pairs holding statistics.
    pub pairs: Gauge,
    /// `c4route_quality_poor_pairs`: pairs judged poor.
    pub poor_pairs: Gauge,
    /// `c4route_quality_attempts_dropped_total`: attempts not counted (queue full).
    pub dropped: Counter,
    attempts: Family<PairLabel, Gauge>,
    asr: Family<PairLabel, FloatGauge>,
    pdd: Family<PairLabel, FloatGauge>,
    acd: Family<PairLabel, FloatGauge>,
    poor: Family<PairLabel, Gauge>,
}

impl QualityMetrics {
    /// Creates and registers the quality metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = QualityMetrics {
            verdicts: Family::default(),
            pairs: Gauge::default(),
            poor_pairs: Gauge::default(),
            dropped: Counter::default(),
            attempts: Family::default(),
            asr: Family::default(),
            pdd: Family::default(),
            acd: Family::default(),
            poor: Family::default(),
        };
        registry.register(
            "quality_verdicts",
            "Quality verdict changes by gateway and new verdict (poor, good)",
            m.verdicts.clone(),
        );
        registry.register(
            "quality_pairs",
            "Gateway and group pairs holding statistics",
            m.pairs.clone(),
        );
        registry.register(
            "quality_poor_pairs",
            "Gateway and group pairs judged poor",
            m.poor_pairs.clone(),
        );
        registry.register(
            "quality_attempts_dropped",
            "Attempts not counted in the quality statistics because the state task's queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "quality_attempts",
            "Attempts in the window, per gateway and group (the 200 busiest pairs)",
            m.attempts.clone(),
        );
        registry.register(
            "quality_asr",
            "Answered / attempts in the window (the 200 busiest pairs)",
            m.asr.clone(),
        );
        registry.register(
            "quality_pdd_seconds",
            "Mean post-dial delay in the window (the 200 busiest pairs)",
            m.pdd.clone(),
        );
        registry.register(
            "quality_acd_seconds",
            "Mean duration of the answered calls in the window (the 200 busiest pairs)",
            m.acd.clone(),
        );
        registry.register(
            "quality_poor",
            "1 when the pair is judged poor (the 200 busiest pairs)",
            m.poor.clone(),
        );
        m
    }

    /// Counts a verdict change.
    pub fn changed(&self, gateway: &str, verdict: &'static str) {
        self.verdicts
            .get_or_create(&VerdictLabel {
                gateway: gateway.to_owned(),
                verdict,
            })
            .inc();
    }

    /// Replaces the per-pair series with the busiest pairs' figures.
    pub fn sync(&self, q: &Quality) {
        self.pairs.set(q.pair_count() as i64);
        self.poor_pairs.set(q.poor_count() as i64);
        for f in [&self.attempts, &self.poor] {
            f.clear();
        }
        for f in [&self.asr, &self.pdd, &self.acd] {
            f.clear();
        }
        for (gateway, s) in q.busiest(MAX_PAIRS) {
            let l = PairLabel {
                gateway,
                group: s.group.clone(),
            };
            self.attempts.get_or_create(&l).set(s.attempts as i64);
            self.poor.get_or_create(&l).set(i64::from(s.poor));
            if let Some(a) = s.asr {
                self.asr.get_or_create(&l).set(a);
            }
            if let Some(p) = s.pdd_ms {
                self.pdd.get_or_create(&l).set(p as f64 / 1000.0);
            }
            if let Some(d) = s.acd_s {
                self.acd.get_or_create(&l).set(d);
            }
        }
    }
}
