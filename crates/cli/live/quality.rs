//! Quality statistics and verdicts (SPEC §9.3): per gateway and destination
//! group, a sliding window of the attempts that ended in it, and whether
//! that gateway is `poor` for that group.
//!
//! This is a plain data structure with no clock, no task and no HTTP: the
//! call records hand it one attempt's outcome at a time with the time it
//! arrived, and read back the verdicts (for the `Live` snapshot), the
//! statistics (for `GET /gateways` and metrics) and the verdict changes
//! (one log line and one metric each).
//!
//! # The window
//!
//! Each (gateway, group) pair keeps [`BUCKETS`] buckets of counters, each
//! covering `window / BUCKETS` (30 s of the shipped 15 minutes), in a ring,
//! and the running totals of the ring. An attempt adds to the newest bucket
//! and the totals; when time moves into a new bucket, the buckets that fell
//! out of the window are subtracted from the totals and cleared. So an
//! update costs two hash look-ups and a few additions whatever the call
//! volume, a verdict reads the totals, and a pair takes the same memory
//! (about 880 bytes, measured) whether it saw one call or a million. The window slides
//! in steps of one bucket: what is judged is the last `window` give or take
//! one bucket.
//!
//! A pair with nothing left in its window is dropped by [`Quality::sweep`],
//! which also re-judges the pairs whose old calls aged out (a poor gateway
//! whose bad calls are older than the window is poor no more). Call it
//! every few seconds.
//!
//! # Counting an attempt once
//!
//! An attempt is counted when it ends: a `failed` event is
//! `record(.., Attempt::failed(pdd), ..)`, an `ended` event
//! `record(.., Attempt::ended(pdd, duration), ..)`. When Kamailio sends the
//! optional `answered` event, that one counts the attempt
//! (`record(.., Attempt::answered(pdd), ..)`) and the later `ended` only
//! adds the call's duration: [`Quality::record_duration`].
//!
//! # Judging
//!
//! With at least `min_calls` attempts in the window, a pair is `poor` when
//! any threshold that is set fails, checked in this order: ASR (answered ÷
//! attempts) below `min_asr`; mean PDD of the attempts that rang or answered
//! above `max_pdd`; mean duration of the answered calls below `min_acd`.
//! With fewer attempts, or no threshold set, it is not poor.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use c4route_core::QualitySettings;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use serde::Serialize;

/// Buckets per window: 30 (30 s buckets over the shipped 15 minutes). More
/// buckets slide more smoothly and cost 24 bytes each per pair.
pub const BUCKETS: usize = 30;

/// How far before its creation slot 0 of the windows starts: the longest
/// history a starting replica replays (`live/store/stream.rs`).
const ORIGIN_BACK: Duration = Duration::from_secs(3600);

/// One attempt's outcome, as its events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Whether the attempt was answered.
    pub answered: bool,
    /// Time from the INVITE to the first 18x or 200, if it rang or answered.
    pub pdd: Option<Duration>,
    /// How long the answered call lasted, when known.
    pub duration: Option<Duration>,
}

impl Attempt {
    /// A `failed` event: not answered; its PDD if it rang.
    pub fn failed(pdd: Option<Duration>) -> Self {
        Attempt {
            answered: false,
            pdd,
            duration: None,
        }
    }

    /// An `answered` event: answered, duration still unknown (its `ended`
    /// goes to [`Quality::record_duration`]).
    pub fn answered(pdd: Option<Duration>) -> Self {
        Attempt {
            answered: true,
            pdd,
            duration: None,
        }
    }

    /// An `ended` event for an attempt no `answered` event counted.
    pub fn ended(pdd: Option<Duration>, duration: Duration) -> Self {
        Attempt {
            answered: true,
            pdd,
            duration: Some(duration),
        }
    }
}

/// Why a pair's verdict changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// ASR below `min_asr`.
    Asr {
        /// Answered ÷ attempts in the window.
        asr: f64,
        /// The threshold.
        min: f64,
    },
    /// Mean PDD above `max_pdd`.
    Pdd {
        /// Mean PDD of the attempts that rang or answered.
        pdd: Duration,
        /// The threshold.
        max: Duration,
    },
    /// Mean call duration below `min_acd`.
    Acd {
        /// Mean duration of the answered calls.
        acd: Duration,
        /// The threshold.
        min: Duration,
    },
    /// Enough attempts, and every threshold that is set holds.
    Passed,
    /// Fewer than `min_calls` attempts in the window: no judgement.
    TooFewCalls {
        /// Attempts in the window.
        attempts: u64,
        /// The threshold.
        min_calls: u32,
    },
    /// The gateway's settings set no threshold (any more).
    NoThresholds,
    /// The gateway left the configuration.
    Forgotten,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_millis();
        match self {
            Reason::Asr { asr, min } => write!(f, "ASR {asr:.3} below min_asr {min}"),
            Reason::Pdd { pdd, max } => {
                write!(f, "mean PDD {} ms above max_pdd {} ms", ms(pdd), ms(max))
            }
            Reason::Acd { acd, min } => {
                write!(
                    f,
                    "mean call duration {:.1} s below min_acd {} s",
                    acd.as_secs_f64(),
                    min.as_secs_f64()
                )
            }
            Reason::Passed => f.write_str("every threshold holds"),
            Reason::TooFewCalls {
                attempts,
                min_calls,
            } => write!(
                f,
                "{attempts} attempts in the window, fewer than min_calls {min_calls}: no judgement"
            ),
            Reason::NoThresholds => f.write_str("no threshold is set: no judgement"),
            Reason::Forgotten => f.write_str("the gateway left the configuration"),
        }
    }
}

/// A verdict change of one (gateway, group) pair: log it once, count it once,
/// and rebuild the `Live` snapshot from [`Quality::poor_pairs`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The gateway key.
    pub key: String,
    /// The destination group.
    pub group: String,
    /// The new verdict (the old one is its opposite).
    pub poor: bool,
    /// Why.
    pub reason: Reason,
    /// Attempts in the window when it changed.
    pub attempts: u64,
}

/// One group's statistics over its window, for `GET /gateways` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The destination group.
    pub group: String,
    /// Attempts that ended in the window.
    pub attempts: u64,
    /// Of those, answered.
    pub answered: u64,
    /// answered ÷ attempts (`None` without attempts).
    pub asr: Option<f64>,
    /// Mean PDD in milliseconds of the attempts that rang or answered.
    pub pdd_ms: Option<u64>,
    /// Mean duration in seconds of the answered calls that ended.
    pub acd_s: Option<f64>,
    /// The verdict.
    pub poor: bool,
}

/// One bucket's counters. `u32` keeps a pair small; additions saturate
/// (a bucket would need four billion attempts to fill).
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    attempts: u32,
    answered: u32,
    pdd_n: u32,
    pdd_ms: u32,
    acd_n: u32,
    acd_s: u32,
}

/// The sum of a window's buckets.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    attempts: u64,
    answered: u64,
    pdd_n: u64,
    pdd_ms: u64,
    acd_n: u64,
    acd_s: u64,
}

/// A group name, inline when short (rule names and `rule@prefix` almost
/// always are): finding a pair then reads no other allocation.
#[derive(Debug)]
enum Name {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

/// Bytes of a group name kept inline.
const INLINE: usize = 30;

impl Name {
    fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut b = [0; INLINE];
                b[..s.len()].copy_from_slice(s.as_bytes());
                Name::Inline(len, b)
            }
            _ => Name::Heap(s.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline(len, b) => &b[..usize::from(*len)],
            Name::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        // Inline bytes are copied whole from a `&str`.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// One pair's window. `cur` is the bucket of slot `head`, kept beside the
/// totals so that an update within the current bucket touches one cache
/// line or two; `ring[s % BUCKETS]` holds the older slots `s` of the window
/// (`ring[head % BUCKETS]` is unused until `cur` moves there).
///
/// A window idle for longer than itself restarts without touching its ring
/// (at 10,000 × 100 pairs most pairs are idle that long): `valid_from` is
/// the slot it restarted at, and a bucket last written before it holds
/// stale counts that are cleared, not subtracted, when the ring comes round
/// to it.
#[derive(Debug)]
struct Window {
    head: u64,
    valid_from: u64,
    totals: Totals,
    cur: Bucket,
    poor: bool,
    name: Name,
    ring: [Bucket; BUCKETS],
}

/// Adds `v` to a bucket counter (saturating) and what was added to a total.
fn add(b: &mut u32, t: &mut u64, v: u64) {
    let before = *b;
    *b = b.saturating_add(u32::try_from(v).unwrap_or(u32::MAX));
    *t += u64::from(*b - before);
}

impl Window {
    fn new(group: &str, slot: u64) -> Self {
        Window {
            head: slot,
            valid_from: 0,
            totals: Totals::default(),
            cur: Bucket::default(),
            poor: false,
            name: Name::new(group),
            ring: [Bucket::default(); BUCKETS],
        }
    }

    /// Moves the current bucket to `slot`, clearing the buckets that fell
    /// out of the window. An older `slot` (events out of order) is left as
    /// it is: they count in the current bucket.
    fn advance(&mut self, slot: u64) {
        if slot <= self.head {
            return;
        }
        let n = BUCKETS as u64;
        if slot - self.head >= n {
            // Everything left the window: restart at `slot`.
            self.totals = Totals::default();
            self.cur = Bucket::default();
            self.valid_from = slot;
            self.head = slot;
            return;
        }
        self.ring[(self.head % n) as usize] = std::mem::take(&mut self.cur);
        for s in self.head + 1..=slot {
            let b = std::mem::take(&mut self.ring[(s % n) as usize]);
            // The bucket last held slot `s - n`: stale if before the restart.
            if s < self.valid_from + n {
                continue;
            }
            let t = &mut self.totals;
            t.attempts -= u64::from(b.attempts);
            t.answered -= u64::from(b.answered);
            t.pdd_n -= u64::from(b.pdd_n);
            t.pdd_ms -= u64::from(b.pdd_ms);
            t.acd_n -= u64::from(b.acd_n);
            t.acd_s -= u64::from(b.acd_s);
        }
        self.head = slot;
    }

    /// Moves `cur` into the ring and zeroes the buckets written before the
    /// last restart, so that every bucket is valid and in the ring whatever
    /// the slot numbering; [`Window::reload`] takes `cur` back.
    fn settle(&mut self) {
        let n = BUCKETS as u64;
        for k in 1..n.min(self.head + 1) {
            let s = self.head - k;
            if s < self.valid_from {
                self.ring[(s % n) as usize] = Bucket::default();
            }
        }
        self.ring[(self.head % n) as usize] = std::mem::take(&mut self.cur);
        self.valid_from = 0;
    }

    /// Takes `cur` back from the ring after [`Window::settle`].
    fn reload(&mut self) {
        self.cur = std::mem::take(&mut self.ring[(self.head % BUCKETS as u64) as usize]);
    }

    /// Between [`Window::settle`] and [`Window::reload`]: the head becomes
    /// slot `to`, and every bucket stays as many slots behind it as it was.
    /// Buckets that would fall before slot 0 join slot 0, so no bucket sits
    /// where [`Window::advance`] takes a stale one.
    fn renumber(&mut self, to: u64) {
        let n = BUCKETS as u64;
        let mut ring = [Bucket::default(); BUCKETS];
        for k in 0..n.min(self.head + 1) {
            let b = &self.ring[((self.head - k) % n) as usize];
            let d = &mut ring[(to.saturating_sub(k) % n) as usize];
            for (x, y) in [
                (&mut d.attempts, b.attempts),
                (&mut d.answered, b.answered),
                (&mut d.pdd_n, b.pdd_n),
                (&mut d.pdd_ms, b.pdd_ms),
                (&mut d.acd_n, b.acd_n),
                (&mut d.acd_s, b.acd_s),
            ] {
                *x = x.saturating_add(y);
            }
        }
        self.ring = ring;
        self.head = to;
    }

    fn is_empty(&self) -> bool {
        self.totals.attempts == 0 && self.totals.acd_n == 0
    }
}

/// Whether totals `t` are poor under `s`, and why either way.
fn judge(t: &Totals, s: &QualitySettings) -> (bool, Reason) {
    if !s.judges() {
        return (false, Reason::NoThresholds);
    }
    if t.attempts < u64::from(s.min_calls) {
        return (
            false,
            Reason::TooFewCalls {
                attempts: t.attempts,
                min_calls: s.min_calls,
            },
        );
    }
    if let Some(min) = s.min_asr {
        let asr = t.answered as f64 / t.attempts as f64;
        if asr < min {
            return (true, Reason::Asr { asr, min });
        }
    }
    if let Some(max) = s.max_pdd
        && t.pdd_n > 0
    {
        let pdd = Duration::from_millis(t.pdd_ms / t.pdd_n);
        if pdd > max {
            return (true, Reason::Pdd { pdd, max });
        }
    }
    if let Some(min) = s.min_acd
        && t.acd_n > 0
    {
        let acd = Duration::from_secs_f64(t.acd_s as f64 / t.acd_n as f64);
        if acd < min {
            return (true, Reason::Acd { acd, min });
        }
    }
    (false, Reason::Passed)
}

/// One gateway: its settings (from the last record or reconfigure) and
/// its groups' windows.
#[derive(Debug)]
struct Gateway {
    settings: QualitySettings,
    /// `settings.window / BUCKETS` in nanoseconds (at least 1).
    bucket_ns: u64,
    /// By group name (hashed with `hasher`). Boxed: a hash table's empty
    /// slots then cost a pointer, not a window.
    groups: HashTable<Box<Window>>,
}

fn bucket_ns(window: Duration) -> u64 {
    u64::try_from(window.as_nanos() / BUCKETS as u128)
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Gateway {
    fn new(settings: &QualitySettings) -> Self {
        Gateway {
            settings: settings.clone(),
            bucket_ns: bucket_ns(settings.window),
            groups: HashTable::new(),
        }
    }

    /// Takes new settings. A new window length keeps the counts and
    /// renumbers the buckets at the new pace: the newest is now's slot, and
    /// each keeps its age in buckets, so a count leaves after as many
    /// buckets as it had left before, each of the new length.
    fn configure(&mut self, settings: &QualitySettings, origin: Instant, now: Instant) {
        if self.settings == *settings {
            return;
        }
        if self.settings.window != settings.window {
            let old = self.bucket_ns;
            self.bucket_ns = bucket_ns(settings.window);
            let new_now = slot(origin, now, self.bucket_ns);
            let old_now = slot(origin, now, old);
            for w in self.groups.iter_mut() {
                w.advance(old_now);
                w.settle();
                // Not only the ring place of the old head: with slot 0 an
                // hour back that put the newest bucket up to a whole window
                // in the past, and a longer window dropped its counts early.
                w.renumber(new_now);
                w.reload();
            }
        }
        self.settings = settings.clone();
    }
}

/// The slot (bucket number since `origin`) of `now`.
fn slot(origin: Instant, now: Instant, bucket_ns: u64) -> u64 {
    let ns = u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX);
    ns / bucket_ns
}

/// Every gateway's quality windows and verdicts.
#[derive(Debug)]
pub struct Quality {
    /// Slot 0 starts here.
    origin: Instant,
    gateways: HashMap<Box<str>, Gateway>,
    /// Hashes group names for every gateway's table.
    hasher: DefaultHashBuilder,
    /// The poor pairs, (gateway key, group), in order.
    poor: BTreeSet<(Box<str>, Box<str>)>,
}

impl Default for Quality {
    fn default() -> Self {
        Self::new()
    }
}

impl Quality {
    /// No statistics, nothing poor.
    pub fn new() -> Self {
        // Slot 0 starts an hour back, so that attempts another replica
        // counted before this one started (replayed from the shared store,
        // in order, with their own instants) fall in their own buckets.
        let now = Instant::now();
        Quality {
            origin: now.checked_sub(ORIGIN_BACK).unwrap_or(now),
            gateways: HashMap::new(),
            hasher: DefaultHashBuilder::default(),
            poor: BTreeSet::new(),
        }
    }

    /// Counts one attempt of gateway `key` for `group` at `now`, under the
    /// gateway's current `settings`; returns the pair's verdict change, if any.
    pub fn record(
        &mut self,
        key: &str,
        group: &str,
        settings: &QualitySettings,
        attempt: Attempt,
        now: Instant,
    ) -> Option<Change> {
        self.update(key, group, settings, now, |b, t| {
            add(&mut b.attempts, &mut t.attempts, 1);
            if attempt.answered {
                add(&mut b.answered, &mut t.answered, 1);
            }
            if let Some(p) = attempt.pdd {
                add(&mut b.pdd_n, &mut t.pdd_n, 1);
                add(&mut b.pdd_ms, &mut t.pdd_ms, millis(p));
            }
            if attempt.answered
                && let Some(d) = attempt.duration
            {
                add(&mut b.acd_n, &mut t.acd_n, 1);
                add(&mut b.acd_s, &mut t.acd_s, d.as_secs());
            }
        })
    }

    /// Adds the duration of an answered call that an `answered` event
    /// already counted ([`Attempt::answered`]): its `ended` event.
    pub fn record_duration(
        &mut self,
        key: &str,
        group: &str,
        settings: &QualitySettings,
        duration: Duration,
        now: Instant,
    ) -> Option<Change> {
        self.update(key, group, settings, now, |b, t| {
            add(&mut b.acd_n, &mut t.acd_n, 1);
            add(&mut b.acd_s, &mut t.acd_s, duration.as_secs());
        })
    }

    fn update(
        &mut self,
        key: &str,
        group: &str,
        settings: &QualitySettings,
        now: Instant,
        count: impl FnOnce(&mut Bucket, &mut Totals),
    ) -> Option<Change> {
        let origin = self.origin;
        let gw = self
            .gateways
            .entry_ref(key)
            .or_insert_with(|| Gateway::new(settings));
        gw.configure(settings, origin, now);
        let at = slot(origin, now, gw.bucket_ns);
        let hasher = &self.hasher;
        let w = gw
            .groups
            .entry(
                hasher.hash_one(group),
                |w| w.name.as_bytes() == group.as_bytes(),
                |w| hasher.hash_one(w.name.as_str()),
            )
            .or_insert_with(|| Box::new(Window::new(group, at)))
            .into_mut();
        w.advance(at);
        count(&mut w.cur, &mut w.totals);
        let (poor, reason) = judge(&w.totals, &gw.settings);
        if poor == w.poor {
            return None;
        }
        w.poor = poor;
        let attempts = w.totals.attempts;
        Some(self.changed(key, group, poor, reason, attempts))
    }

    /// Keeps the poor set in step with a change and describes it.
    fn changed(
        &mut self,
        key: &str,
        group: &str,
        poor: bool,
        reason: Reason,
        attempts: u64,
    ) -> Change {
        let pair: (Box<str>, Box<str>) = (key.into(), group.into());
        if poor {
            self.poor.insert(pair);
        } else {
            self.poor.remove(&pair);
        }
        Change {
            key: key.to_owned(),
            group: group.to_owned(),
            poor,
            reason,
            attempts,
        }
    }

    /// Ages every window to `now`: re-judges each pair (old calls may have
    /// left the window, or the settings changed since its last call), drops
    /// the pairs with nothing left and the gateways with no pair. Returns
    /// the verdict changes. Costs a pass over every pair (about 1M pairs in
    /// tens of milliseconds): run it every few seconds, not per event.
    pub fn sweep(&mut self, now: Instant) -> Vec<Change> {
        let origin = self.origin;
        let mut changes = Vec::new();
        for (key, gw) in &mut self.gateways {
            let at = slot(origin, now, gw.bucket_ns);
            let settings = &gw.settings;
            gw.groups.retain(|w| {
                w.advance(at);
                let (poor, reason) = judge(&w.totals, settings);
                if poor != w.poor {
                    w.poor = poor;
                    changes.push(Change {
                        key: key.to_string(),
                        group: w.name.as_str().to_owned(),
                        poor,
                        reason,
                        attempts: w.totals.attempts,
                    });
                }
                !w.is_empty()
            });
        }
        self.gateways.retain(|_, gw| !gw.groups.is_empty());
        for c in &changes {
            let pair: (Box<str>, Box<str>) = (c.key.as_str().into(), c.group.as_str().into());
            if c.poor {
                self.poor.insert(pair);
            } else {
                self.poor.remove(&pair);
            }
        }
        changes
    }

    /// After a reload: each gateway takes its new settings
    /// (`settings_of(key)`), and a gateway with none (it left the
    /// configuration) is forgotten. Returns the verdict changes (a forgotten
    /// poor pair is one, [`Reason::Forgotten`]); re-judging under the new
    /// thresholds is [`Quality::sweep`]'s, which this runs.
    pub fn reconfigure<'a>(
        &mut self,
        mut settings_of: impl FnMut(&str) -> Option<&'a QualitySettings>,
        now: Instant,
    ) -> Vec<Change> {
        let origin = self.origin;
        let mut changes = Vec::new();
        self.gateways.retain(|key, gw| match settings_of(key) {
            Some(s) => {
                gw.configure(s, origin, now);
                true
            }
            None => {
                for w in &gw.groups {
                    if w.poor {
                        changes.push(Change {
                            key: key.to_string(),
                            group: w.name.as_str().to_owned(),
                            poor: false,
                            reason: Reason::Forgotten,
                            attempts: w.totals.attempts,
                        });
                    }
                }
                false
            }
        });
        for c in &changes {
            self.poor
                .remove(&(c.key.as_str().into(), c.group.as_str().into()));
        }
        changes.extend(self.sweep(now));
        changes
    }

    /// The poor pairs, (gateway key, group), in order: feed each to
    /// `LiveBuilder::poor_key(key, group, true)`.
    pub fn poor_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.poor.iter().map(|(k, g)| (&**k, &**g))
    }

    /// How many pairs are poor.
    pub fn poor_count(&self) -> usize {
        self.poor.len()
    }

    /// How many (gateway, group) pairs hold statistics.
    pub fn pair_count(&self) -> usize {
        self.gateways.values().map(|g| g.groups.len()).sum()
    }

    /// The statistics of gateway `key`'s groups, by group name, as of the
    /// last record or sweep (a window is aged by those, not by reading it).
    pub fn stats(&self, key: &str) -> Vec<GroupStats> {
        let Some(gw) = self.gateways.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<GroupStats> = gw
            .groups
            .iter()
            .map(|w| {
                let t = &w.totals;
                GroupStats {
                    group: w.name.as_str().to_owned(),
                    attempts: t.attempts,
                    answered: t.answered,
                    asr: (t.attempts > 0).then(|| t.answered as f64 / t.attempts as f64),
                    pdd_ms: (t.pdd_n > 0).then(|| t.pdd_ms / t.pdd_n),
                    acd_s: (t.acd_n > 0).then(|| t.acd_s as f64 / t.acd_n as f64),
                    poor: w.poor,
                }
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// The `n` pairs with the most attempts in their window, most first
    /// (what the metrics show; see `quality_metrics.rs`).
    pub fn busiest(&self, n: usize) -> Vec<(String, GroupStats)> {
        let mut all: Vec<(String, GroupStats)> = self
            .gateways
            .keys()
            .flat_map(|k| self.stats(k).into_iter().map(move |g| (k.to_string(), g)))
            .collect();
        all.sort_by(|a, b| b.1.attempts.cmp(&a.1.attempts).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// An explicit path: the file is also compiled by benches/quality.rs.
#[cfg(test)]
#[path = "quality/tests.rs"]
mod tests;
