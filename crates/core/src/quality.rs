//! The effective `[defaults.quality]` / `[trunks.NAME.quality]` settings
//! of a gateway (SPEC §9.3).
//!
//! The core only carries the settings: the statistics windows and the
//! verdicts they lead to are kept by `c4route serve`, which hands the
//! verdicts back as the quality part of a [`crate::Live`] snapshot. So a
//! decision never reads a window; it reads "this gateway is poor for this
//! group", the same fact `eval --poor` and a test's `poor` give it.
//!
//! Thresholds are off unless written: a gateway whose settings set none
//! (the shipped default) is never judged, however its calls go. Statistics
//! are still kept for it, so `GET /gateways` shows them before anyone
//! decides what "poor" means for that carrier.

use std::time::Duration;

/// The shipped `window`: 15 minutes, SPEC §9.3's example and about what
/// a NOC looks at before it moves traffic by hand.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The shipped `min_calls`: 30 attempts, below which an ASR is mostly noise
/// (one answered call more or less moves it by more than 3 points).
pub const DEFAULT_MIN_CALLS: u32 = 30;

/// How a gateway's calls are judged.
///
/// `min_asr`, `max_pdd` and `min_acd` are thresholds; `None` is a
/// threshold that is not set. With none set ([`QualitySettings::judges`]
/// is false) the gateway is never poor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QualitySettings {
    /// The sliding window of ended attempts that is judged.
    pub window: Duration,
    /// Fewer attempts than this in the window: no judgement.
    pub min_calls: u32,
    /// Poor when answered ÷ attempts is below this (in `0.0..=1.0`).
    pub min_asr: Option<f64>,
    /// Poor when the mean post-dial delay of the attempts that rang or
    /// answered is above this.
    pub max_pdd: Option<Duration>,
    /// Poor when the mean duration of the answered calls is below this.
    pub min_acd: Option<Duration>,
}

// `min_asr` is validated into 0..=1 when compiled, so it is never NaN and
// equality is reflexive; `GatewayInfo` compares settings with `Eq`.
impl Eq for QualitySettings {}

impl Default for QualitySettings {
    /// Window 15 minutes, 30 calls, no threshold: statistics without judgement.
    fn default() -> Self {
        QualitySettings {
            window: DEFAULT_WINDOW,
            min_calls: DEFAULT_MIN_CALLS,
            min_asr: None,
            max_pdd: None,
            min_acd: None,
        }
    }
}

impl QualitySettings {
    /// Whether any threshold is set, i.e. whether a gateway with these
    /// settings can be judged poor at all.
    pub fn judges(&self) -> bool {
        self.min_asr.is_some() || self.max_pdd.is_some() || self.min_acd.is_some()
    }

    /// These settings with `window` replaced.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// These settings with `min_calls` replaced.
    pub fn with_min_calls(mut self, min_calls: u32) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// These settings with `min_asr` replaced (`None`: not judged).
    pub fn with_min_asr(mut self, min_asr: Option<f64>) -> Self {
        self.min_asr = min_asr;
        self
    }

    /// These settings with `max_pdd` replaced (`None`: not judged).
    pub fn with_max_pdd(mut self, max_pdd: Option<Duration>) -> Self {
        self.max_pdd = max_pdd;
        self
    }

    /// These settings with `min_acd` replaced (`None`: not judged).
    pub fn with_min_acd(mut self, min_acd: Option<Duration>) -> Self {
        self.min_acd = min_acd;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_statistics_but_judges_nothing() {
        let s = QualitySettings::default();
        assert_eq!(s.window, Duration::from_secs(900));
        assert_eq!(s.min_calls, 30);
        assert!(!s.judges());
        assert!(s.clone().with_min_asr(Some(0.25)).judges());
        assert!(
            s.clone()
                .with_max_pdd(Some(Duration::from_secs(8)))
                .judges()
        );
        assert!(s.with_min_acd(Some(Duration::from_secs(20))).judges());
    }
}
