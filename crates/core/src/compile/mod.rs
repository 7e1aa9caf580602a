//! Phases two and three: validate the parsed files and compile them into a
//! frozen [`RouteTable`].
//!
//! Every file is parsed, then every definition is checked, and all problems
//! are collected before anything is built: a broken directory yields one
//! complete list of diagnostics and never a half-built table.
//!
//! The pipeline, one file per step:
//!
//! | step | file |
//! |---|---|
//! | split large files, parse the pieces on all cores | `units.rs` |
//! | collect diagnostics, with a running error count | `report.rs` |
//! | trunk, schedule and rule names | `names.rs` |
//! | `[defaults]` | `defaults.rs` |
//! | `[schedules.NAME]` | `schedules.rs` |
//! | `[trunks.NAME]` | `trunks.rs` |
//! | `health` settings, the distinct gateways | `health.rs` |
//! | `quality` settings | `quality.rs` |
//! | trunks' rate decks (`rates`), loaded | `rates.rs` |
//! | `[[rules]]` conditions | `rules.rs` |
//! | `then`: trunks, rejects, rewrites | `actions.rs` |
//! | `then.lcr`, `max_rate`, `no_rate` | `lcr.rs` |
//! | header and rewrite templates | `templates.rs` |
//! | `[[tests]]` | `test_cases.rs` |
//! | shared value checks (numbers, ranges, networks, sockets) | `values.rs` |
//! | shadowed rules, ties, unused names | `lints.rs` |
//! | build the indexes and freeze the table | `freeze.rs` |
//!
//! Every step takes the parsed files and what earlier steps resolved, and
//! reports into the one [`Compiler`]; nothing here reads a file or a clock.

mod actions;
mod defaults;
mod freeze;
mod health;
mod lcr;
mod limits;
mod lints;
mod names;
mod quality;
mod rates;
mod report;
mod rules;
mod schedules;
mod templates;
mod test_cases;
mod trunks;
mod units;
mod values;

use std::ops::Range;
use std::sync::Arc;

use crate::Error;
use crate::config::RouteFile;
use crate::rule::Defaults;
use crate::rule::{Action, RuleSpec, Trunk};
use crate::schedule::Schedule;
use crate::table::{RouteTable, TestCase};

pub use values::TimeError;
pub(crate) use values::parse_time;

use report::Reporter;
use rules::Lowered;
use units::{File, SPLIT_MIN, Unit};

/// A value's location: unit index and byte span within the unit.
type At = (usize, Range<usize>);

/// The parsed units that succeeded, each with its unit index.
type Parsed = Vec<(usize, RouteFile)>;

/// From this many rules on, independent compile steps run on two threads.
const PARALLEL_MIN: usize = 10_000;

/// Frees what compiling a large deck leaves behind (the parsed files, the
/// validated rules) on another thread: a million rules take a few hundred
/// milliseconds to free, which need not delay the new table. The thread
/// (`c4route-free`) is detached and ends once it has freed them; with one
/// compile thread ([`crate::Sources::threads`]) everything is freed here.
fn drop_later<T: Send + 'static>(garbage: T, rules: usize, threads: usize) {
    if threads > 1 && rules >= PARALLEL_MIN {
        // If no thread can be started, the closure (and the garbage) drop here.
        let _ = std::thread::Builder::new()
            .name("c4route-free".into())
            .spawn(move || drop(garbage));
    }
}

/// Everything validated, ready to be frozen.
pub(crate) struct Validated {
    pub defaults: Defaults,
    pub trunks: Vec<Trunk>,
    pub schedules: Vec<Schedule>,
    pub actions: Vec<Action>,
    pub regex_patterns: [Vec<String>; 3],
    pub tests: Vec<TestCase>,
    pub files: Vec<Arc<str>>,
    /// The distinct gateways, for a server that probes them (SPEC §8).
    pub gateways: Vec<crate::health::GatewayInfo>,
    pub decks: rates::Decks,
}

/// What [`Compiler::validate`] leaves: the validated rest (`None` when a
/// trunk failed), the rules with their `[[rules]]` locations, and whether the
/// shadow check applies (it does not while a file fails to parse).
struct Checked {
    rest: Option<Validated>,
    rules: Vec<RuleSpec>,
    rule_ats: Vec<At>,
    check_shadow: bool,
}

/// One compile of one set of sources: the units to parse and the
/// diagnostics found so far.
pub(crate) struct Compiler<'s> {
    /// The routes.d directory, for diagnostics about the whole configuration.
    root: Arc<str>,
    files: Vec<File<'s>>,
    units: Vec<Unit<'s>>,
    threads: usize,
    rep: Reporter,
    /// Set while rules are lowered and some files are still being parsed:
    /// an unknown name is then a provisional error ([`Reporter::mark_provisional`]).
    names_unsure: bool,
    /// The rate decks the sources hold.
    rates: &'s [crate::rates::source::RateSource],
}

impl<'s> Compiler<'s> {
    /// A compile of `sources` on at most `threads` threads (at least one).
    pub(crate) fn new(root: Arc<str>, sources: &'s [(Arc<str>, String)], threads: usize) -> Self {
        Self::with_split(root, sources, SPLIT_MIN, threads.max(1))
    }

    /// The default number of compile threads: the CPUs, at most 8.
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }

    fn with_split(
        root: Arc<str>,
        sources: &'s [(Arc<str>, String)],
        split_min: usize,
        threads: usize,
    ) -> Self {
        let (files, units) = units::units(sources, split_min, threads);
        Compiler {
            root,
            files,
            units,
            threads,
            rep: Reporter::default(),
            names_unsure: false,
            rates: &[],
        }
    }

    /// The rate decks trunks may name.
    pub(crate) fn with_rates(mut self, rates: &'s [crate::rates::source::RateSource]) -> Self {
        self.rates = rates;
        self
    }

    /// Whether steps over `rules` rules run on two threads.
    fn parallel(&self, rules: usize) -> bool {
        self.threads > 1 && rules >= PARALLEL_MIN
    }

    /// About the number of rules: the `[[rules]]` headers in the text (a
    /// few too many if some are commented out; too few for rules written
    /// as an inline array, which then grow the vectors as usual).
    fn rule_estimate(&self) -> usize {
        self.units
            .iter()
            .map(|u| u.text.matches("[[rules]]").count())
            .sum()
    }

    /// Parses, validates and compiles; `Err` carries every diagnostic.
    /// `version` is called once the table is about to be frozen (the
    /// caller may compute it on another thread meanwhile).
    pub(crate) fn run(mut self, version: impl FnOnce() -> String) -> Result<RouteTable, Error> {
        let (
            v,
            Checked {
                rules,
                rule_ats,
                check_shadow,
                ..
            },
        ) = self.checked()?;
        // The shadow check only reads the rules, and freezing only reads
        // them too: on a large table they run side by side.
        let (table, shadow) = if check_shadow && self.parallel(rules.len()) {
            std::thread::scope(|s| {
                let shadow = s.spawn(|| self.shadow_warnings(&rules, &rule_ats));
                let table = freeze::freeze(v, &rules, version());
                // The check cannot panic on valid rules; if it did, the
                // table is still right, only without those warnings.
                (table, shadow.join().unwrap_or_default())
            })
        } else {
            let shadow = if check_shadow {
                self.shadow_warnings(&rules, &rule_ats)
            } else {
                Vec::new()
            };
            (freeze::freeze(v, &rules, version()), shadow)
        };
        let n = rules.len();
        drop_later(rules, n, self.threads);
        for (at, msg) in shadow {
            self.warn(&at, msg, None);
        }
        match table {
            Ok(mut t) => {
                t.set_warnings(self.rep.into_sorted());
                Ok(t)
            }
            Err(e) => {
                let root = self.root.clone();
                self.rep.global(root, crate::Severity::Error, e.to_string());
                Err(Error::Config(self.rep.into_sorted()))
            }
        }
    }

    /// Validation only, for the reference evaluator.
    #[cfg(test)]
    pub(crate) fn validated(mut self) -> Result<(Validated, Vec<RuleSpec>), Error> {
        let (v, o) = self.checked()?;
        Ok((v, o.rules))
    }

    /// Validates; on any error, adds the shadow check's warnings and returns
    /// every diagnostic. The returned outcome's `rest` is taken.
    fn checked(&mut self) -> Result<(Validated, Checked), Error> {
        let mut o = self.validate();
        match o.rest.take() {
            Some(v) if self.rep.errors() == 0 => Ok((v, o)),
            _ => {
                if o.check_shadow {
                    for (at, msg) in self.shadow_warnings(&o.rules, &o.rule_ats) {
                        self.warn(&at, msg, None);
                    }
                }
                Err(Error::Config(std::mem::take(&mut self.rep).into_sorted()))
            }
        }
    }

    /// Everything but the shadow check, which [`Compiler::run`] overlaps
    /// with freezing the table.
    fn validate(&mut self) -> Checked {
        // First the units that may define defaults, trunks, schedules or
        // tests: the rules need them. Then the units of nothing but rules,
        // lowered in order as they are parsed and freed at once (units.rs).
        let (early, late): (Vec<usize>, Vec<usize>) =
            (0..self.units.len()).partition(|&i| !units::rules_only(self.units[i].text));
        let mut parsed: Parsed = Vec::with_capacity(early.len());
        let mut early_rules = Vec::with_capacity(early.len());
        let mut parse_failed = false;
        self.parse_stream(&early, |c, i, r| match r {
            Ok(mut f) => {
                early_rules.push((i, std::mem::take(&mut f.rules)));
                parsed.push((i, f));
            }
            Err(e) => {
                parse_failed = true;
                c.parse_error(i, &e);
            }
        });
        let defaults = self.defaults(&parsed);
        let (schedules, schedule_ids) = self.schedules(&parsed, &defaults);
        let (trunks, trunk_ids) = self.trunks(&parsed, &defaults);
        // Trunk ids index `trunks` with failed trunks still in place (`None`).
        let trunks_ok = trunks.iter().all(Option::is_some);
        let gateways = self.gateways(&parsed, &trunks);
        let decks = self.decks(&parsed, &trunk_ids, trunks.len());

        let mut ctx = rules::RuleCtx::new(
            &trunk_ids,
            &schedule_ids,
            &defaults,
            &trunks,
            schedules.len(),
            parse_failed,
        );
        ctx.rated.clone_from(&decks.rated);
        let mut out: Option<Lowered> = None;
        let mut late_failed = false;
        let mut early_rules = early_rules.into_iter().peekable();
        self.names_unsure = !parse_failed && !late.is_empty();
        self.parse_stream(&late, |c, i, r| {
            // Sized once, on the first unit (while the parsers run on):
            // growing a vector of a million rules by doubling copies it
            // into fresh memory again and again.
            let out = out.get_or_insert_with(|| Lowered::with_capacity(c.rule_estimate()));
            while let Some((j, defs)) = early_rules.next_if(|(j, _)| *j < i) {
                c.unit_rules(j, defs, out, &mut ctx);
            }
            match r {
                Ok(f) => c.unit_rules(i, f.rules, out, &mut ctx),
                Err(e) => {
                    late_failed = true;
                    c.parse_error(i, &e);
                }
            }
        });
        let mut out = out.unwrap_or_else(|| Lowered::with_capacity(self.rule_estimate()));
        for (j, defs) in early_rules {
            self.unit_rules(j, defs, &mut out, &mut ctx);
        }
        self.names_unsure = false;
        self.rep.settle(late_failed);
        let parse_failed = parse_failed || late_failed;
        let Lowered {
            rules,
            ats: rule_ats,
            names: rule_names,
        } = out;
        let tests = self.test_cases(&parsed, &rule_names, &gateways, &trunk_ids);
        if !parse_failed {
            self.unused(&ctx, &trunks, &trunk_ids, &schedule_ids);
            if rules.is_empty() && self.rep.errors() == 0 {
                let root = self.root.clone();
                self.rep.global(
                    root,
                    crate::Severity::Warning,
                    format!(
                        "routes.d has no enabled rules: every query gets the no-match answer ({} {})",
                        defaults.no_match.0, defaults.no_match.1
                    ),
                );
            }
        }
        let (actions, regex_patterns) = ctx.finish();
        // What borrows the parsed files goes first (see drop_later below).
        drop((trunk_ids, schedule_ids));
        let check_shadow = !parse_failed;
        if !trunks_ok {
            return Checked {
                rest: None,
                rules,
                rule_ats,
                check_shadow,
            };
        }
        let trunks: Vec<Trunk> = trunks.into_iter().flatten().collect();
        // Schedule ids, like trunk ids, index the list with failures in place;
        // a failed schedule is an error, so ids only survive when all are kept.
        let schedules: Vec<Schedule> = schedules.into_iter().flatten().collect();
        let files = self.files.iter().map(|f| f.path.clone()).collect();
        let n_rules = rules.len();
        drop_later(parsed, n_rules, self.threads);
        Checked {
            rest: Some(Validated {
                defaults,
                trunks,
                schedules,
                actions,
                regex_patterns,
                tests,
                files,
                gateways,
                decks,
            }),
            rules,
            rule_ats,
            check_shadow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Query;
    use units::split_points;

    fn deck(n: usize, broken: bool) -> String {
        let mut s = String::from("[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n");
        for i in 0..n {
            s += &format!(
                "[[rules]]\nname = \"r{i}\"\nmatch.to.prefix = [\"{}\"]\nthen.trunks = [\"a\"]\n",
                i % 37
            );
            if broken && i == n / 2 {
                s += "match.from.regex = '('\n";
            }
        }
        s
    }

    fn build(text: &str, split_min: usize, threads: usize) -> Result<RouteTable, Error> {
        let sources = vec![(Arc::from("big.toml"), text.to_string())];
        Compiler::with_split("routes.d".into(), &sources, split_min, threads).run(String::new)
    }

    #[test]
    fn split_points_land_on_rules_headers() {
        let text = deck(100, false);
        let points = split_points(&text, 4);
        assert_eq!(points.len(), 4);
        for p in &points[1..] {
            assert!(text[*p..].starts_with("[[rules]]\n"));
        }
        assert_eq!(split_points("x = '''\n[[rules]]\n'''\n", 4), vec![0]);
    }

    #[test]
    fn a_split_parse_compiles_exactly_like_a_whole_one() {
        let text = deck(300, false);
        let whole = build(&text, usize::MAX, 1).unwrap();
        let split = build(&text, 1, 4).unwrap();
        assert_eq!(whole.warnings().to_string(), split.warnings().to_string());
        assert!(!whole.warnings().is_empty(), "the deck has ties to report");
        for id in 0..whole.rule_count() as u32 {
            let id = crate::RuleId(id);
            assert_eq!(whole.rule_name(id), split.rule_name(id));
            assert_eq!(whole.rule_location(id), split.rule_location(id));
        }
        let broken = deck(300, true);
        let (Err(Error::Config(a)), Err(Error::Config(b))) =
            (build(&broken, usize::MAX, 1), build(&broken, 1, 4))
        else {
            panic!("the broken deck must not compile");
        };
        assert_eq!(a.to_string(), b.to_string());
        assert!(a.to_string().contains("big.toml:"), "{a}");
    }

    #[test]
    fn only_units_of_nothing_but_rules_are_streamed() {
        use units::rules_only;
        assert!(rules_only(
            "# c\n\n[[rules]]\nname = \"a\"\n  [[rules]] # x\nname = \"b\"\n"
        ));
        assert!(rules_only(
            "[[rules]]\nmatch = { to = { prefix = [\"1\"] } }\n"
        ));
        for text in [
            "",
            "# only a comment\n",
            "name = \"top\"\n[[rules]]\n",
            "[trunks.a]\n[[rules]]\n",
            "[[rules]]\n[rules.match]\n",
            "[[ rules ]]\nname = \"a\"\n",
            "[[rules]]\nx = [\n[\"nested\"]]\n",
            "[[rules]]\nname = \"\"\"\n[trunks.a]\n\"\"\"\n",
            "[[rules]]\nname = '''\n[defaults]\n'''\n",
            "[[rules]]x\n",
        ] {
            assert!(!rules_only(text), "{text:?}");
        }
    }

    /// A unit that fails to parse may define any name, so unknown trunks are
    /// not reported then, even when the failing unit is parsed (streamed)
    /// after the rules that name them were lowered.
    #[test]
    fn a_late_syntax_error_withdraws_unknown_name_errors() {
        let mut text = deck(300, false);
        text = text.replacen("then.trunks = [\"a\"]", "then.trunks = [\"nope\"]", 1);
        let Err(Error::Config(d)) = build(&text, 1, 4) else {
            panic!("an unknown trunk must not compile");
        };
        assert!(d.to_string().contains("unknown trunk `nope`"), "{d}");
        text += "[[rules]]\nname = \"x\"\nthen.trunks = [\"a\"\n";
        let (Err(Error::Config(a)), Err(Error::Config(b))) =
            (build(&text, usize::MAX, 1), build(&text, 1, 4))
        else {
            panic!("the broken deck must not compile");
        };
        assert_eq!(a.to_string(), b.to_string());
        assert!(!b.to_string().contains("unknown trunk"), "{b}");
        assert_eq!(b.errors().count(), 1, "{b}");
    }

    #[test]
    fn every_empty_list_is_an_error_at_its_line() {
        let text = "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"e\"\n\
            match.source = []\nmatch.source_port = []\nmatch.transport = []\n\
            match.to.prefix = []\nmatch.from.exact = []\nthen.trunks = []\n";
        let Err(Error::Config(d)) = build(text, usize::MAX, 1) else {
            panic!("empty lists must not compile");
        };
        let d = d.to_string();
        for (line, key, what) in [
            (5, "match.source", "network"),
            (6, "match.source_port", "port"),
            (7, "match.transport", "transport"),
            (8, "match.to.prefix", "prefix"),
            (9, "match.from.exact", "value"),
            (10, "then.trunks", "trunk"),
        ] {
            let want = format!(":{line}:");
            assert!(
                d.lines().any(|l| l.contains(&want)
                    && l.contains(&format!("{key} is empty; list at least one {what}"))),
                "{key} at line {line}:\n{d}"
            );
        }
    }

    /// Above PARALLEL_MIN rules the shadow check runs beside the freeze and
    /// its tie step on a thread of its own, and most pieces take the fast
    /// parser: the result must not change.
    #[test]
    fn a_large_deck_compiles_the_same_on_one_thread_and_on_two() {
        let mut text = deck(PARALLEL_MIN + 2_000, false);
        text += "[[rules]]\nname = \"all\"\npriority = 150\nthen.trunks = [\"a\"]\n";
        text += "[[rules]]\nname = \"late\"\npriority = 200\nmatch.to.prefix = [\"9\"]\nthen.trunks = [\"a\"]\n";
        text += "[[rules]]\nname = \"tie\"\nmatch.to.prefix = [\"3\"]\nmatch.to.domain = [\"x\"]\nthen.trunks = [\"a\"]\n";
        let one = build(&text, usize::MAX, 1).unwrap();
        let two = build(&text, 1, 2).unwrap();
        assert_eq!(one.rule_count(), PARALLEL_MIN + 2_003);
        assert_eq!(one.warnings().to_string(), two.warnings().to_string());
        let w = one.warnings().to_string();
        for kind in ["same conditions", "ties with", "matches every call"] {
            assert!(w.contains(kind), "no {kind:?} warning");
        }
        for id in (0..one.rule_count() as u32).step_by(97) {
            let id = crate::RuleId(id);
            assert_eq!(one.rule_name(id), two.rule_name(id));
            assert_eq!(one.rule_location(id), two.rule_location(id));
        }
        let at = std::time::UNIX_EPOCH;
        let names = |t: &RouteTable, q: &Query<'_>| -> Vec<String> {
            t.explain(q, at).into_iter().map(|m| m.name).collect()
        };
        for uri in ["sip:3@x", "sip:3@y", "sip:36@x", "sip:12345@x", "sip:+1@x"] {
            let q = format!(r#"{{"to_uri":"{uri}","call_id":"c"}}"#);
            let q = Query::parse(q.as_bytes(), None).unwrap();
            let (a, b) = (names(&one, &q), names(&two, &q));
            assert_eq!(a, b, "{uri}");
            // The domain condition of `tie` survives the freeze.
            let tie = uri.starts_with("sip:3") && uri.ends_with("@x");
            assert_eq!(a.contains(&"tie".to_string()), tie, "{uri}");
            assert!(a.contains(&"all".to_string()), "{uri}");
        }
    }
}
