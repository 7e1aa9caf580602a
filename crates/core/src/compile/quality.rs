//! `[defaults.quality]` and `[trunks.NAME.quality]` (SPEC §9.3): how a
//! carrier's calls are judged.
//!
//! A trunk's `quality` table overrides `[defaults.quality]` key by key, as
//! `health` does. A threshold that can never fail is the same as one not
//! set: `min_asr = 0` and `min_acd = "0s"` are off, and so is
//! `max_pdd = "off"` (a maximum has no such number), so a trunk can turn
//! off a threshold its defaults set.

use std::time::Duration;

use toml::Spanned;

use super::Compiler;
use crate::config::QualityDef;
use crate::quality::QualitySettings;

/// The shortest `window`: the window is kept in 30 buckets, so 30 s gives
/// one-second buckets, and a shorter window judges too few calls anyway.
const MIN_WINDOW: Duration = Duration::from_secs(30);
/// The longest `window`: a day; longer ones hide today's failures.
const MAX_WINDOW: Duration = Duration::from_secs(86_400);
/// The largest `min_calls`.
const MAX_MIN_CALLS: i64 = 1_000_000;
/// The longest `max_pdd`: an hour (no INVITE rings that long).
const MAX_PDD: Duration = Duration::from_secs(3600);
/// The shortest `max_pdd` that is not an error: 100 ms.
const MIN_PDD: Duration = Duration::from_millis(100);
/// The longest `min_acd`: a day.
const MAX_ACD: Duration = Duration::from_secs(86_400);

impl Compiler<'_> {
    /// The settings of one `quality` table over `base`; an invalid value is
    /// reported and keeps `base`'s.
    pub(super) fn quality(
        &mut self,
        i: usize,
        def: Option<&Spanned<QualityDef>>,
        base: &QualitySettings,
    ) -> QualitySettings {
        let mut q = base.clone();
        let Some(def) = def else { return q };
        let d = def.get_ref();
        if let Some(w) = &d.window
            && let Some(v) = self.duration_value(&(i, w.span()), w.get_ref(), "quality.window")
        {
            if (MIN_WINDOW..=MAX_WINDOW).contains(&v) {
                q.window = v;
            } else {
                self.err(
                    &(i, w.span()),
                    format!(
                        "quality.window must be between 30s and 24h, found {}",
                        humantime::format_duration(v)
                    ),
                );
            }
        }
        if let Some(m) = &d.min_calls {
            let v = *m.get_ref();
            if (1..=MAX_MIN_CALLS).contains(&v) {
                q.min_calls = v as u32;
            } else {
                self.err(
                    &(i, m.span()),
                    format!("quality.min_calls must be a count in 1..={MAX_MIN_CALLS}, found {v}"),
                );
            }
        }
        if let Some(a) = &d.min_asr {
            let v = *a.get_ref();
            if (0.0..=1.0).contains(&v) {
                q.min_asr = (v > 0.0).then_some(v);
            } else {
                self.err(
                    &(i, a.span()),
                    format!(
                        "quality.min_asr is answered ÷ attempts, a number in 0..=1 (0.25 for 25 %), found {v}"
                    ),
                );
            }
        }
        if let Some(p) = &d.max_pdd {
            if p.get_ref().trim() == "off" {
                q.max_pdd = None;
            } else if let Some(v) =
                self.duration_value(&(i, p.span()), p.get_ref(), "quality.max_pdd")
            {
                if (MIN_PDD..=MAX_PDD).contains(&v) {
                    q.max_pdd = Some(v);
                } else {
                    self.err(
                        &(i, p.span()),
                        format!(
                            "quality.max_pdd must be between 100ms and 1h (or \"off\"), found {}",
                            humantime::format_duration(v)
                        ),
                    );
                }
            }
        }
        if let Some(a) = &d.min_acd
            && let Some(v) = self.duration_value(&(i, a.span()), a.get_ref(), "quality.min_acd")
        {
            if v <= MAX_ACD {
                q.min_acd = (!v.is_zero()).then_some(v);
            } else {
                self.err(
                    &(i, a.span()),
                    format!(
                        "quality.min_acd must be at most 24h, found {}",
                        humantime::format_duration(v)
                    ),
                );
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Error, Sources};

    fn gateways(text: &str) -> Vec<crate::GatewayInfo> {
        let mut s = Sources::new();
        s.add("routes.d/q.toml", text);
        match s.build() {
            Ok(t) => t.gateways().to_vec(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn no_table_is_statistics_without_judgement() {
        let g = gateways("[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n");
        assert_eq!(g[0].quality, crate::QualitySettings::default());
        assert!(!g[0].quality.judges());
    }

    #[test]
    fn a_trunk_overrides_the_defaults_key_by_key() {
        let g = gateways(
            "[defaults.quality]\nwindow = \"10m\"\nmin_calls = 20\nmin_asr = 0.3\nmax_pdd = \"8s\"\nmin_acd = \"20s\"\n\
             [trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n\
             [trunks.b]\ngateways = [\"sip:192.0.2.2\"]\nquality = { min_asr = 0.5, max_pdd = \"off\" }\n\
             [trunks.c]\ngateways = [\"sip:192.0.2.3\"]\nquality = { min_asr = 0, min_acd = \"0s\", window = \"1h\" }\n",
        );
        let a = &g[0].quality;
        assert_eq!(a.window, Duration::from_secs(600));
        assert_eq!(a.min_calls, 20);
        assert_eq!(a.min_asr, Some(0.3));
        assert_eq!(a.max_pdd, Some(Duration::from_secs(8)));
        assert_eq!(a.min_acd, Some(Duration::from_secs(20)));
        let b = &g[1].quality;
        assert_eq!((b.window, b.min_calls), (Duration::from_secs(600), 20));
        assert_eq!(b.min_asr, Some(0.5));
        assert_eq!(b.max_pdd, None);
        assert_eq!(b.min_acd, Some(Duration::from_secs(20)));
        let c = &g[2].quality;
        assert_eq!(c.window, Duration::from_secs(3600));
        assert_eq!((c.min_asr, c.min_acd), (None, None));
        assert_eq!(c.max_pdd, Some(Duration::from_secs(8)));
        assert!(c.judges());
    }

    #[test]
    fn a_gateway_takes_its_first_trunks_quality_and_a_warning_says_so() {
        let mut s = Sources::new();
        s.add(
            "routes.d/q.toml",
            "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\nquality = { min_asr = 0.2 }\n\
             [trunks.b]\ngateways = [\"sip:192.0.2.1:5060\"]\nquality = { min_asr = 0.4 }\n",
        );
        let t = s.build().unwrap();
        assert_eq!(t.gateways()[0].quality.min_asr, Some(0.2));
        let w = t.warnings().to_string();
        assert!(
            w.contains("q.toml:5:13")
                && w.contains("listed by trunks `a` and `b` with different quality settings"),
            "{w}"
        );
    }

    #[test]
    fn every_bad_quality_value_is_an_error_at_its_place() {
        let text = "[defaults.quality]\nwindow = \"10s\"\nmin_calls = 0\nmin_asr = 1.5\n\
            max_pdd = \"soon\"\nmin_acd = \"2days\"\n\
            [trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n\
            quality = { window = \"forever\", max_pdd = \"50ms\", min_asr = -0.1 }\n";
        let mut s = Sources::new();
        s.add("routes.d/q.toml", text);
        let Err(Error::Config(d)) = s.build() else {
            panic!("must not compile");
        };
        let d = d.to_string();
        for (at, msg) in [
            (
                "q.toml:2:10",
                "quality.window must be between 30s and 24h, found 10s",
            ),
            (
                "q.toml:3:13",
                "quality.min_calls must be a count in 1..=1000000, found 0",
            ),
            (
                "q.toml:4:11",
                "quality.min_asr is answered ÷ attempts, a number in 0..=1",
            ),
            (
                "q.toml:5:11",
                "quality.max_pdd must be a duration such as \"90s\"",
            ),
            (
                "q.toml:6:11",
                "quality.min_acd must be at most 24h, found 2days",
            ),
            ("q.toml:9:22", "quality.window must be a duration"),
            (
                "q.toml:9:43",
                "quality.max_pdd must be between 100ms and 1h (or \"off\"), found 50ms",
            ),
            ("q.toml:9:61", "quality.min_asr is answered ÷ attempts"),
        ] {
            assert!(
                d.lines().any(|l| l.contains(at) && l.contains(msg)),
                "{at} {msg}:\n{d}"
            );
        }
    }

    #[test]
    fn an_unknown_quality_key_is_an_error() {
        let mut s = Sources::new();
        s.add(
            "routes.d/q.toml",
            "[defaults.quality]\nmin_asr = 0.2\nmax_asr = 0.9\n",
        );
        let Err(Error::Config(d)) = s.build() else {
            panic!("must not compile");
        };
        assert!(d.to_string().contains("max_asr"), "{d}");
    }
}
