// benches/quality.rs includes quality.rs, and `cargo build --all-targets`
// builds it with `--cfg test` but without the test harness: these imports
// are then unused.
#![allow(unused_imports)]

use std::time::{Duration, Instant};

use c4route_core::QualitySettings;

use super::*;

const GW: &str = "sip:192.0.2.1:5060;transport=udp";
const GW2: &str = "sip:192.0.2.2:5060;transport=udp";

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A one-minute window (2 s buckets), 10 calls, the given thresholds.
fn settings() -> QualitySettings {
    QualitySettings::default()
        .with_window(s(60))
        .with_min_calls(10)
}

#[test]
fn low_asr_makes_a_pair_poor_and_good_calls_bring_it_back() {
    let st = settings().with_min_asr(Some(0.5));
    let mut q = Quality::new();
    let t0 = Instant::now();
    for n in 1..=9 {
        let c = q.record(GW, "uk", &st, Attempt::failed(None), t0);
        assert_eq!(c, None, "no judgement before min_calls, attempt {n}");
    }
    let c = q
        .record(GW, "uk", &st, Attempt::failed(None), t0)
        .expect("the 10th attempt is judged");
    assert!(c.poor);
    assert_eq!(
        (c.key.as_str(), c.group.as_str(), c.attempts),
        (GW, "uk", 10)
    );
    assert_eq!(c.reason, Reason::Asr { asr: 0.0, min: 0.5 });
    assert_eq!(c.reason.to_string(), "ASR 0.000 below min_asr 0.5");
    assert_eq!(q.poor_pairs().collect::<Vec<_>>(), [(GW, "uk")]);
    // Another group of the same gateway is judged apart.
    assert_eq!(q.record(GW, "de", &st, Attempt::failed(None), t0), None);
    // 9 answered calls: 9/19 < 0.5, still poor; the 10th makes 10/20.
    for _ in 0..9 {
        assert_eq!(q.record(GW, "uk", &st, Attempt::answered(None), t0), None);
    }
    let c = q
        .record(GW, "uk", &st, Attempt::ended(None, s(60)), t0)
        .expect("recovers at 10/20");
    assert!(!c.poor);
    assert_eq!(c.reason, Reason::Passed);
    assert_eq!(q.poor_pairs().count(), 0);
    assert_eq!(q.poor_count(), 0);
}

#[test]
fn mean_pdd_counts_only_attempts_that_rang() {
    let st = settings().with_max_pdd(Some(s(8)));
    let mut q = Quality::new();
    let t0 = Instant::now();
    // 9 attempts that never rang (no PDD), one that rang after 9 s.
    for _ in 0..9 {
        assert_eq!(q.record(GW, "g", &st, Attempt::failed(None), t0), None);
    }
    let c = q
        .record(GW, "g", &st, Attempt::failed(Some(s(9))), t0)
        .unwrap();
    assert!(c.poor);
    assert_eq!(
        c.reason,
        Reason::Pdd {
            pdd: s(9),
            max: s(8)
        }
    );
    assert_eq!(
        c.reason.to_string(),
        "mean PDD 9000 ms above max_pdd 8000 ms"
    );
    // One fast ring brings the mean to 5 s.
    let c = q
        .record(GW, "g", &st, Attempt::ended(Some(s(1)), s(30)), t0)
        .unwrap();
    assert!(!c.poor);
    let st = &q.stats(GW)[0];
    assert_eq!((st.attempts, st.answered, st.pdd_ms), (11, 1, Some(5000)));
}

#[test]
fn short_calls_make_a_pair_poor_by_acd() {
    let st = settings().with_min_acd(Some(s(20)));
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..9 {
        assert_eq!(
            q.record(GW, "g", &st, Attempt::ended(None, s(10)), t0),
            None
        );
    }
    let c = q
        .record(GW, "g", &st, Attempt::ended(None, s(10)), t0)
        .unwrap();
    assert!(c.poor);
    assert_eq!(
        c.reason,
        Reason::Acd {
            acd: s(10),
            min: s(20)
        }
    );
    assert_eq!(
        c.reason.to_string(),
        "mean call duration 10.0 s below min_acd 20 s"
    );
}

#[test]
fn without_thresholds_statistics_are_kept_and_nothing_is_judged() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..100 {
        assert_eq!(q.record(GW, "g", &st, Attempt::failed(None), t0), None);
    }
    let stats = q.stats(GW);
    assert_eq!(stats.len(), 1);
    assert_eq!(
        stats[0],
        GroupStats {
            group: "g".into(),
            attempts: 100,
            answered: 0,
            asr: Some(0.0),
            pdd_ms: None,
            acd_s: None,
            poor: false,
        }
    );
    assert!(q.stats(GW2).is_empty());
}

#[test]
fn an_answered_event_and_its_ended_count_one_attempt() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    q.record(GW, "g", &st, Attempt::answered(Some(s(2))), t0);
    let before = q.stats(GW)[0].clone();
    assert_eq!(
        (before.attempts, before.answered, before.acd_s),
        (1, 1, None)
    );
    q.record_duration(GW, "g", &st, s(45), t0 + s(45));
    let after = &q.stats(GW)[0];
    assert_eq!((after.attempts, after.answered), (1, 1));
    assert_eq!((after.pdd_ms, after.acd_s), (Some(2000), Some(45.0)));
}

#[test]
fn the_window_slides_and_empty_pairs_are_dropped() {
    let st = settings().with_min_asr(Some(0.5));
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..10 {
        q.record(GW, "g", &st, Attempt::failed(None), t0);
    }
    // Half a window later, 10 answered calls: 10/20, good again.
    let t1 = t0 + s(30);
    for _ in 0..10 {
        q.record(GW, "g", &st, Attempt::ended(None, s(60)), t1);
    }
    assert_eq!(q.stats(GW)[0].attempts, 20);
    assert_eq!(q.poor_count(), 0);
    // Ten failures more at t1 make it poor (10/30).
    let mut changes = Vec::new();
    for _ in 0..10 {
        changes.extend(q.record(GW, "g", &st, Attempt::failed(None), t1));
    }
    assert_eq!(changes.len(), 1);
    assert!(changes[0].poor);
    // A sweep just before the first calls leave changes nothing...
    assert!(q.sweep(t0 + s(59)).is_empty());
    assert_eq!(q.stats(GW)[0].attempts, 30);
    // ...one after: the first 10 failures are gone, 10/20 is good again.
    let c = q.sweep(t0 + s(61));
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(!c[0].poor);
    assert_eq!(c[0].reason, Reason::Passed);
    assert_eq!(q.stats(GW)[0].attempts, 20);
    // A window after t1 nothing is left: the pair and the gateway go.
    assert!(q.sweep(t1 + s(61)).is_empty());
    assert!(q.stats(GW).is_empty());
    assert_eq!(q.pair_count(), 0);
}

#[test]
fn a_poor_pair_whose_calls_age_out_is_no_longer_poor() {
    let st = settings().with_min_asr(Some(0.5));
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..10 {
        q.record(GW, "g", &st, Attempt::failed(None), t0);
    }
    assert_eq!(q.poor_count(), 1);
    let c = q.sweep(t0 + s(120));
    assert_eq!(c.len(), 1);
    assert!(!c[0].poor);
    assert_eq!(
        c[0].reason,
        Reason::TooFewCalls {
            attempts: 0,
            min_calls: 10
        }
    );
    assert_eq!(q.poor_count(), 0);
    assert_eq!(q.pair_count(), 0);
}

#[test]
fn an_event_older_than_the_newest_bucket_counts_in_it() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    q.record(GW, "g", &st, Attempt::failed(None), t0 + s(30));
    q.record(GW, "g", &st, Attempt::failed(None), t0);
    assert_eq!(q.stats(GW)[0].attempts, 2);
    // Both leave with the newest bucket's time.
    q.sweep(t0 + s(89));
    assert_eq!(q.stats(GW)[0].attempts, 2);
    q.sweep(t0 + s(93));
    assert!(q.stats(GW).is_empty());
}

#[test]
fn a_window_idle_longer_than_itself_restarts_and_ages_correctly() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    // Counts in slots 0, 5 and 10 (2 s buckets)...
    for at in [0, 10, 20] {
        for _ in 0..5 {
            q.record(GW, "g", &st, Attempt::failed(None), t0 + s(at));
        }
    }
    // ...then nothing for more than a window: the next call restarts it.
    q.record(GW, "g", &st, Attempt::failed(None), t0 + s(200));
    assert_eq!(q.stats(GW)[0].attempts, 1);
    // Coming round the ring past the stale buckets of slots 5 and 10
    // clears them without subtracting them (that would underflow).
    q.record(GW, "g", &st, Attempt::failed(None), t0 + s(230));
    assert_eq!(q.stats(GW)[0].attempts, 2);
    q.sweep(t0 + s(259));
    assert_eq!(q.stats(GW)[0].attempts, 2);
    q.sweep(t0 + s(261));
    assert_eq!(q.stats(GW)[0].attempts, 1);
    // A new window length after a restart keeps only what is valid.
    let longer = settings().with_window(s(600));
    q.reconfigure(|_| Some(&longer), t0 + s(262));
    assert_eq!(q.stats(GW)[0].attempts, 1);
    q.sweep(t0 + s(262 + 600 + 20));
    assert!(q.stats(GW).is_empty());
}

#[test]
fn reconfigure_forgets_gateways_and_rejudges_under_new_thresholds() {
    let st = settings().with_min_asr(Some(0.5));
    let mut q = Quality::new();
    let t0 = Instant::now();
    for gw in [GW, GW2] {
        for _ in 0..10 {
            q.record(gw, "g", &st, Attempt::failed(None), t0);
        }
    }
    assert_eq!(q.poor_count(), 2);
    let off = settings();
    let mut c = q.reconfigure(|k| (k == GW2).then_some(&off), t0 + s(1));
    c.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!((c[0].key.as_str(), c[0].poor), (GW, false));
    assert_eq!(c[0].reason, Reason::Forgotten);
    assert_eq!((c[1].key.as_str(), c[1].poor), (GW2, false));
    assert_eq!(c[1].reason, Reason::NoThresholds);
    assert_eq!(q.poor_count(), 0);
    assert!(q.stats(GW).is_empty());
    assert_eq!(q.stats(GW2)[0].attempts, 10);
}

#[test]
fn a_longer_window_keeps_the_counts_and_ages_them_at_its_pace() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..5 {
        q.record(GW, "g", &st, Attempt::failed(None), t0);
    }
    let longer = settings().with_window(s(600));
    let c = q.reconfigure(|_| Some(&longer), t0 + s(10));
    assert!(c.is_empty());
    // Still there after the old one-minute window...
    q.sweep(t0 + s(120));
    assert_eq!(q.stats(GW)[0].attempts, 5);
    // ...gone once the new ten-minute window has passed.
    q.sweep(t0 + s(10 + 600 + 20));
    assert!(q.stats(GW).is_empty());
}

/// A window longer than the hour slot 0 starts back: counts older, in
/// buckets, than now's new slot join slot 0, and still leave in time and
/// from the totals too.
#[test]
fn a_window_longer_than_the_slot_history_keeps_and_then_drops_its_counts() {
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..5 {
        q.record(GW, "g", &st, Attempt::failed(None), t0);
    }
    // 40 s = 20 old buckets back; the new buckets are 48 min long.
    let day = settings().with_window(s(86_400));
    assert!(q.reconfigure(|_| Some(&day), t0 + s(40)).is_empty());
    assert_eq!(q.stats(GW)[0].attempts, 5);
    q.sweep(t0 + s(3600));
    assert_eq!(q.stats(GW)[0].attempts, 5, "kept well past the old window");
    q.sweep(t0 + s(86_400 + 60));
    assert!(q.stats(GW).is_empty(), "gone once a day has passed");
    q.record(GW, "g", &day, Attempt::failed(None), t0 + s(86_400 + 61));
    assert_eq!(
        q.stats(GW)[0].attempts,
        1,
        "nothing left behind in the totals"
    );
}

#[test]
fn a_longer_window_keeps_the_counts_wherever_the_origin_fell() {
    // The slot numbering starts an hour back (a starting replica replays
    // that much); where its buckets' edges fall must not age the counts
    // by a whole window when the window changes. Checked at many origins.
    let t0 = Instant::now();
    let mut tried = 0;
    for back in (0..3700).step_by(37) {
        let Some(origin) = t0.checked_sub(s(back)) else {
            continue;
        };
        tried += 1;
        let st = settings();
        let mut q = Quality::new();
        q.origin = origin;
        for _ in 0..5 {
            q.record(GW, "g", &st, Attempt::failed(None), t0);
        }
        let longer = settings().with_window(s(600));
        assert!(q.reconfigure(|_| Some(&longer), t0 + s(10)).is_empty());
        // Two minutes on, well within the new ten-minute window.
        q.sweep(t0 + s(120));
        let stats = q.stats(GW);
        assert_eq!(
            stats.first().map(|g| g.attempts),
            Some(5),
            "origin {back} s back: {stats:?}"
        );
        q.sweep(t0 + s(10 + 600 + 20));
        assert!(q.stats(GW).is_empty(), "origin {back} s back");
    }
    assert!(tried > 0);
}

#[test]
fn a_settings_change_in_a_record_applies_to_its_gateway() {
    let mut q = Quality::new();
    let t0 = Instant::now();
    for _ in 0..10 {
        q.record(GW, "g", &settings(), Attempt::failed(None), t0);
    }
    assert_eq!(q.poor_count(), 0);
    let c = q
        .record(
            GW,
            "g",
            &settings().with_min_asr(Some(0.1)),
            Attempt::failed(None),
            t0,
        )
        .unwrap();
    assert!(c.poor);
}

#[test]
fn absurd_values_saturate_and_never_panic() {
    let st = settings().with_max_pdd(Some(s(8)));
    let mut q = Quality::new();
    let t0 = Instant::now();
    let huge = Duration::from_secs(u64::MAX / 2);
    for _ in 0..3 {
        q.record(GW, "g", &st, Attempt::ended(Some(huge), huge), t0);
    }
    q.record_duration(GW, "g", &st, huge, t0);
    let st = &q.stats(GW)[0];
    assert_eq!(st.attempts, 3);
    assert!(st.pdd_ms.unwrap() > 0);
    // Times before the origin fall in slot 0.
    let mut q = Quality::new();
    if let Some(before) = Instant::now().checked_sub(s(10)) {
        q.record(GW, "g", &settings(), Attempt::failed(None), before);
        assert_eq!(q.stats(GW)[0].attempts, 1);
    }
    assert!(q.sweep(Instant::now()).is_empty());
}

#[test]
fn a_pair_stays_the_same_size_whatever_its_volume() {
    // The counters live in a fixed ring: this is what keeps memory
    // independent of call volume.
    assert!(
        std::mem::size_of::<Window>() <= 900,
        "{}",
        std::mem::size_of::<Window>()
    );
    let st = settings();
    let mut q = Quality::new();
    let t0 = Instant::now();
    for i in 0..100_000u64 {
        q.record(
            GW,
            "g",
            &st,
            Attempt::failed(None),
            t0 + Duration::from_millis(i),
        );
    }
    assert_eq!(q.pair_count(), 1);
    // 100 s of one call per ms, one-minute window in 2 s buckets: the
    // newest 29 buckets and the current one's share, 58,001..60,000 calls.
    let a = q.stats(GW)[0].attempts;
    assert!((58_000..=60_000).contains(&a), "{a}");
}
