//! The state machine of one gateway (SPEC §8), pure: it is fed outcomes
//! (probes and reports) and the time, and says when the gateway's state
//! changes and why. `gateways.rs` owns one per gateway and publishes the
//! snapshot; nothing here does I/O or reads a clock.
//!
//! - `up` → `down` after `down_after` consecutive failures; `down` → `up`
//!   after `up_after` consecutive successes. Each success resets the
//!   failure count and each failure the success count, so a gateway that
//!   fails every other call never goes down, and one that answers every
//!   other probe never comes back: the thresholds are the hysteresis.
//! - Half-open: a down gateway that nothing probes (`probe = "never"`, or a
//!   transport c4route cannot probe) is `up` again `retry_after` after it
//!   went down, with its failure count one short of `down_after`: the next
//!   failed call takes it straight back down, the next good one clears it.
//!   This is a circuit breaker's half-open step, and why a gateway cannot
//!   stay down for ever on reports alone (OpenSIPS#1731).
//! - Stale failures: a *reported* failure more than `retry_after` after the
//!   previous failure starts a new run. Kamailio reports failed branches
//!   only (a call that succeeds costs nothing, so it says nothing), and
//!   without this a gateway that carries thousands of good calls would still
//!   go down on its third sporadic 503 of the day. A failed *probe* is never
//!   stale: probes come at a fixed interval and every answered one is
//!   counted, so a run of failed probes is unbroken evidence however long the
//!   interval (with `interval = 90` and `retry_after = 60`, a stale reset
//!   kept a dead gateway up for ever, issue 13).
//! - `disabled` is an operator's mark over the health state: outcomes keep
//!   being counted while it is disabled, and `enable` returns to whatever
//!   health state they led to.

use std::time::{Duration, Instant};

use c4route_core::{GatewayStatus, HealthSettings};

/// The health of one gateway and the counts that move it.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Down by health (independent of `disabled`).
    down: bool,
    /// Drained by an operator.
    disabled: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// Consecutive successes.
    pub successes: u32,
    /// When the effective status last changed (or the tracker was created).
    pub since: Instant,
    /// When the gateway last went down by health.
    down_at: Instant,
    /// When the last failure came in.
    last_failure: Option<Instant>,
}

/// Where an outcome comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A SIP OPTIONS probe of c4route's own.
    Probe,
    /// A call's failed (or answered) branch reported by Kamailio.
    Report,
}

/// Whether a final reply `code` is a success for a gateway with settings
/// `h`: any final reply not in `fail_codes`. No final reply (`None`: a
/// timeout, a send error) is a failure. The one place that decides it, for
/// probes and reports alike.
pub fn is_success(h: &HealthSettings, code: Option<u16>) -> bool {
    code.is_some_and(|c| !h.is_failure(c))
}

/// A change of the effective status, with what tipped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The status before.
    pub from: GatewayStatus,
    /// The status now.
    pub to: GatewayStatus,
    /// What tipped it, for the log line.
    pub reason: String,
}

impl Tracker {
    /// A gateway seen for the first time: up.
    pub fn new(now: Instant) -> Self {
        Tracker {
            down: false,
            disabled: false,
            failures: 0,
            successes: 0,
            since: now,
            down_at: now,
            last_failure: None,
        }
    }

    /// The status the decision sees.
    pub fn status(&self) -> GatewayStatus {
        if self.disabled {
            GatewayStatus::Disabled
        } else if self.down {
            GatewayStatus::Down
        } else {
            GatewayStatus::Up
        }
    }

    /// Whether the gateway is down by health (disabled or not).
    pub fn is_down(&self) -> bool {
        self.down
    }

    fn changed(&mut self, before: GatewayStatus, now: Instant, reason: String) -> Option<Change> {
        let to = self.status();
        (to != before).then(|| {
            self.since = now;
            Change {
                from: before,
                to,
                reason,
            }
        })
    }

    /// One outcome from `source`: `ok` is a success ([`is_success`]), else
    /// a failure. `what` describes it (`"probe: 503 in 12 ms"`).
    pub fn observe(
        &mut self,
        ok: bool,
        source: Source,
        h: &HealthSettings,
        now: Instant,
        what: &str,
    ) -> Option<Change> {
        let before = self.status();
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.down && self.successes >= h.up_after {
                self.down = false;
                return self.changed(
                    before,
                    now,
                    format!("{what}: {} consecutive successes", self.successes),
                );
            }
        } else {
            // Only a reported failure can be stale (see the module docs).
            if source == Source::Report
                && self
                    .last_failure
                    .is_some_and(|t| now.saturating_duration_since(t) > h.retry_after)
            {
                self.failures = 0;
            }
            self.last_failure = Some(now);
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if !self.down && self.failures >= h.down_after {
                self.down = true;
                self.down_at = now;
                return self.changed(
                    before,
                    now,
                    format!("{what}: {} consecutive failures", self.failures),
                );
            }
        }
        None
    }

    /// The half-open step: a down gateway that nothing probes (`probed` is
    /// false) is up again `retry_after` after it went down.
    pub fn tick(&mut self, h: &HealthSettings, probed: bool, now: Instant) -> Option<Change> {
        if !self.down || probed || now.duration_since(self.down_at) < h.retry_after {
            return None;
        }
        let before = self.status();
        self.down = false;
        self.successes = 0;
        self.failures = h.down_after.saturating_sub(1);
        // The half-open window: a failure within retry_after from now
        // takes it down again; after that, the count is stale.
        self.last_failure = Some(now);
        self.changed(
            before,
            now,
            format!(
                "retry_after {} elapsed and nothing probes it: trying it again (one more failure takes it down)",
                humantime::format_duration(Duration::from_secs(h.retry_after.as_secs()))
            ),
        )
    }

    /// Drains the gateway (operator).
    pub fn disable(&mut self, now: Instant) -> Option<Change> {
        let before = self.status();
        self.disabled = true;
        self.changed(before, now, "disabled by POST /gateways/disable".into())
    }

    /// Brings a drained gateway back to its health state (operator).
    pub fn enable(&mut self, now: Instant) -> Option<Change> {
        let before = self.status();
        self.disabled = false;
        self.changed(before, now, "enabled by POST /gateways/enable".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayStatus::{Disabled, Down, Up};

    fn settings() -> HealthSettings {
        // Non-exhaustive: built from the default, field by field.
        let mut s = HealthSettings::default();
        s.down_after = 3;
        s.up_after = 2;
        s.retry_after = Duration::from_secs(60);
        s
    }

    /// Feeds `steps` (`F` failure, `S` success) and returns the status after each.
    fn run(t: &mut Tracker, steps: &str) -> Vec<GatewayStatus> {
        let h = settings();
        let now = Instant::now();
        steps
            .chars()
            .map(|c| {
                t.observe(c == 'S', Source::Report, &h, now, "test");
                t.status()
            })
            .collect()
    }

    #[test]
    fn thresholds_and_resets() {
        let now = Instant::now();
        // (steps, status after each step)
        let cases: &[(&str, &[GatewayStatus])] = &[
            ("FFF", &[Up, Up, Down]),
            ("FFSFFF", &[Up, Up, Up, Up, Up, Down]),
            ("FFFS", &[Up, Up, Down, Down]),
            ("FFFSS", &[Up, Up, Down, Down, Up]),
            ("FFFSFSS", &[Up, Up, Down, Down, Down, Down, Up]),
            // After coming back up, a new run of failures is needed.
            ("FFFSSFF", &[Up, Up, Down, Down, Up, Up, Up]),
        ];
        for (steps, want) in cases {
            let mut t = Tracker::new(now);
            assert_eq!(run(&mut t, steps), *want, "{steps}");
        }
    }

    #[test]
    fn flapping_never_crosses_a_threshold() {
        let now = Instant::now();
        let mut t = Tracker::new(now);
        let got = run(&mut t, &"FS".repeat(50));
        assert!(got.iter().all(|s| *s == Up));
        let mut t = Tracker::new(now);
        run(&mut t, "FFF");
        let got = run(&mut t, &"SF".repeat(50));
        assert!(got.iter().all(|s| *s == Down));
    }

    #[test]
    fn a_change_says_what_tipped_it() {
        let h = settings();
        let now = Instant::now();
        let mut t = Tracker::new(now);
        assert_eq!(
            t.observe(false, Source::Report, &h, now, "report 503"),
            None
        );
        assert_eq!(
            t.observe(false, Source::Report, &h, now, "report 503"),
            None
        );
        let c = t
            .observe(false, Source::Report, &h, now, "probe: no reply in 2s")
            .unwrap();
        assert_eq!((c.from, c.to), (Up, Down));
        assert_eq!(c.reason, "probe: no reply in 2s: 3 consecutive failures");
    }

    #[test]
    fn retry_after_is_a_half_open_step_for_unprobed_gateways() {
        let h = settings();
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        run(&mut t, "FFF");
        assert_eq!(t.tick(&h, false, t0 + Duration::from_secs(59)), None);
        // A probed gateway waits for its probes instead.
        assert_eq!(t.tick(&h, true, t0 + Duration::from_secs(61)), None);
        let c = t.tick(&h, false, t0 + Duration::from_secs(61)).unwrap();
        assert_eq!((c.from, c.to), (Down, Up));
        // One failure takes it back down…
        let c = t.observe(
            false,
            Source::Report,
            &h,
            t0 + Duration::from_secs(62),
            "report 503",
        );
        assert_eq!(c.map(|c| c.to), Some(Down));
        // …and retry_after counts from then.
        assert_eq!(t.tick(&h, false, t0 + Duration::from_secs(100)), None);
        assert!(t.tick(&h, false, t0 + Duration::from_secs(123)).is_some());
        // One success clears the half-open state: failures start again at 0.
        t.observe(true, Source::Report, &h, t0, "report 200");
        assert_eq!(run(&mut t, "FF"), [Up, Up]);
    }

    #[test]
    fn failures_further_apart_than_retry_after_do_not_add_up() {
        let h = settings();
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Three failures, each 61 s after the last: never three in a run.
        for s in [0, 61, 122, 183] {
            assert_eq!(
                t.observe(false, Source::Report, &h, at(s), "report 503"),
                None,
                "{s}"
            );
            assert_eq!(t.failures, 1);
        }
        // Within 60 s of each other they do.
        t.observe(false, Source::Report, &h, at(200), "report 503");
        let c = t
            .observe(false, Source::Report, &h, at(230), "report 503")
            .unwrap();
        assert_eq!((c.from, c.to), (Up, Down));
    }

    #[test]
    fn probe_failures_further_apart_than_retry_after_still_add_up() {
        // interval = 90 > retry_after = 60: every failed probe is more than
        // retry_after after the previous one, and the run still counts.
        let h = settings();
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(t.observe(false, Source::Probe, &h, at(0), "probe"), None);
        assert_eq!(t.observe(false, Source::Probe, &h, at(90), "probe"), None);
        assert_eq!(t.failures, 2);
        let c = t
            .observe(false, Source::Probe, &h, at(180), "probe")
            .unwrap();
        assert_eq!((c.from, c.to), (Up, Down));
        // A success still breaks the run.
        let mut t = Tracker::new(t0);
        t.observe(false, Source::Probe, &h, at(0), "probe");
        t.observe(false, Source::Probe, &h, at(90), "probe");
        t.observe(true, Source::Probe, &h, at(180), "probe");
        assert_eq!(t.observe(false, Source::Probe, &h, at(270), "probe"), None);
        assert_eq!(t.failures, 1);
        // A stale *report* after a run of probes starts a new run.
        let mut t = Tracker::new(t0);
        t.observe(false, Source::Probe, &h, at(0), "probe");
        t.observe(false, Source::Probe, &h, at(90), "probe");
        assert_eq!(
            t.observe(false, Source::Report, &h, at(200), "report"),
            None
        );
        assert_eq!(t.failures, 1);
    }

    #[test]
    fn success_is_a_final_reply_not_in_fail_codes() {
        let h = settings();
        assert!(is_success(&h, Some(200)));
        assert!(is_success(&h, Some(404)));
        assert!(!is_success(&h, Some(503)));
        assert!(!is_success(&h, Some(408)));
        assert!(!is_success(&h, None));
    }

    #[test]
    fn disabled_overrides_health_and_enable_restores_it() {
        let h = settings();
        let now = Instant::now();
        let mut t = Tracker::new(now);
        let c = t.disable(now).unwrap();
        assert_eq!((c.from, c.to), (Up, Disabled));
        assert_eq!(t.disable(now), None);
        // Outcomes still count while disabled, silently.
        assert_eq!(run(&mut t, "FFF"), [Disabled, Disabled, Disabled]);
        let c = t.enable(now).unwrap();
        assert_eq!((c.from, c.to), (Disabled, Down));
        assert_eq!(t.enable(now), None);
        t.observe(true, Source::Report, &h, now, "x");
        assert_eq!(
            t.observe(true, Source::Report, &h, now, "x").map(|c| c.to),
            Some(Up)
        );
    }
}
