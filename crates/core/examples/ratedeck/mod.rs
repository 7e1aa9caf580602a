//! Synthetic rate-deck tables: the routes.d text a carrier would write for N
//! number prefixes, M source networks and K regexes, plus queries against it.
//!
//! Shared by the `gen_routes` example (which writes it to disk), the
//! `load_table` example and the `lookup` bench (which build it in memory), so
//! that every figure in docs/PERFORMANCE.md comes from the same tables.
//!
//! The prefixes look like a wholesale rate deck: E.164 country codes
//! weighted towards the big destinations, extended to 2–10 digits (most are
//! 5–8), about a third of them nested under an existing, shorter prefix so
//! that a number is covered by several rules at once, as in a real deck.
//! Everything comes from a seeded SplitMix64, so one seed is one table.
#![allow(dead_code)] // each user of this module needs a different part of it

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Size of a generated table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `[[rules]]` with `match.to.prefix`.
    pub rules: usize,
    /// `[[rules]]` with only `match.source` (a CIDR).
    pub cidr_rules: usize,
    /// `[[rules]]` with `match.to.regex`.
    pub regex_rules: usize,
    /// PRNG seed.
    pub seed: u64,
    /// Write the prefixes as one rule per trunk list (`match.to.prefix` with
    /// thousands of entries) instead of one rule per prefix.
    pub grouped: bool,
}

impl Spec {
    /// `rules` prefix rules and nothing else, seed 1.
    pub fn prefixes(rules: usize) -> Self {
        Spec {
            rules,
            cidr_rules: 0,
            regex_rules: 0,
            seed: 1,
            grouped: false,
        }
    }
}

/// Number of trunks every table defines (`t0` … `t7`).
pub const TRUNKS: usize = 8;
/// Prefix rules per generated file.
pub const RULES_PER_FILE: usize = 100_000;

/// A generated table: file texts plus what queries need to hit it.
#[derive(Debug, Clone)]
pub struct Deck {
    /// `(file name, TOML text)`, in file-name order.
    pub files: Vec<(String, String)>,
    /// Every prefix, in generation order.
    pub prefixes: Vec<String>,
    /// Every source network as `(address, prefix length)`.
    pub nets: Vec<(u32, u8)>,
    /// Per regex rule: its literal leading digits (class included) and how
    /// many more digits it wants at least (up to two more are accepted).
    pub regex_heads: Vec<(String, usize)>,
    /// The 10-digit prefix with the most covering (shorter) prefixes.
    pub deepest: String,
}

mod rng;
pub use rng::Rng;

/// Country codes and how much of a deck they take (big destinations have
/// many entries). None starts with 0, so a number starting with 0 misses.
const COUNTRIES: &[(&str, u32)] = &[
    ("1", 30),
    ("44", 12),
    ("49", 10),
    ("33", 8),
    ("39", 6),
    ("34", 6),
    ("31", 4),
    ("32", 3),
    ("41", 3),
    ("43", 3),
    ("46", 3),
    ("47", 2),
    ("45", 2),
    ("48", 3),
    ("351", 2),
    ("353", 2),
    ("358", 2),
    ("420", 2),
    ("7", 5),
    ("81", 3),
    ("86", 5),
    ("91", 6),
    ("61", 3),
    ("55", 4),
    ("52", 4),
    ("27", 2),
    ("234", 3),
    ("20", 2),
    ("971", 2),
    ("966", 2),
    ("62", 3),
    ("63", 3),
    ("880", 2),
    ("92", 3),
    ("212", 1),
    ("213", 1),
    ("254", 1),
    ("380", 2),
    ("90", 2),
    ("994", 1),
];

/// Weight of each total prefix length 2..=10 (index 0 is length 2).
const LENGTHS: [u32; 9] = [1, 2, 5, 10, 14, 16, 14, 10, 6];

/// Packs a digit string (≤ 19 digits) and its length into one key, so that
/// "44" and "044" stay distinct.
fn key(p: &str) -> u64 {
    p.bytes()
        .fold(0u64, |k, b| k * 10 + u64::from(b - b'0'))
        .wrapping_mul(32)
        + p.len() as u64
}

/// Generates the deck for `spec`.
pub fn generate(spec: Spec) -> Deck {
    let mut rng = Rng::new(spec.seed);
    let weights: Vec<u32> = COUNTRIES.iter().map(|c| c.1).collect();
    let mut seen = HashSet::with_capacity(spec.rules);
    let mut prefixes: Vec<String> = Vec::with_capacity(spec.rules);
    // Enough room: 40 countries × up to 10^8 numbers; never loops forever for
    // the sizes this is meant for (≤ tens of millions).
    while prefixes.len() < spec.rules {
        let p = if !prefixes.is_empty() && rng.below(3) == 0 {
            // Nest under an existing prefix, 1–3 digits deeper.
            let base = &prefixes[rng.below(prefixes.len() as u64) as usize];
            if base.len() >= 10 {
                continue;
            }
            let mut p = base.clone();
            let extra = (1 + rng.below(3) as usize).min(10 - base.len());
            rng.digits(&mut p, extra);
            p
        } else {
            let cc = COUNTRIES[rng.weighted(&weights)].0;
            let len = (2 + rng.weighted(&LENGTHS)).max(cc.len());
            let mut p = String::with_capacity(len);
            p.push_str(cc);
            rng.digits(&mut p, len - cc.len());
            p
        };
        if seen.insert(key(&p)) {
            prefixes.push(p);
        }
    }

    let deepest = prefixes
        .iter()
        .filter(|p| p.len() == 10)
        .take(5_000)
        .max_by_key(|p| (1..10).filter(|&n| seen.contains(&key(&p[..n]))).count())
        .cloned()
        .unwrap_or_else(|| {
            prefixes
                .iter()
                .max_by_key(|p| p.len())
                .cloned()
                .unwrap_or_default()
        });

    let mut files = Vec::new();
    let mut trunks = String::from("[defaults]\nmax_routes = 4\n");
    for t in 0..TRUNKS {
        let _ = write!(
            trunks,
            "\n[trunks.t{t}]\ngateways = [\"sip:198.51.100.{a}:5060\", \
             {{ uri = \"sip:198.51.100.{b}:5060\", priority = 1 }}]\n",
            a = 10 + 2 * t,
            b = 11 + 2 * t,
        );
    }
    files.push(("00-trunks.toml".to_owned(), trunks));

    // The trunk list follows the prefix, so a deck is stable across sizes.
    let trunks_of = |p: &str| {
        let h = key(p).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let t = h as usize % TRUNKS;
        if h.is_multiple_of(4) {
            let u = (t + 1 + (h >> 8) as usize % (TRUNKS - 1)) % TRUNKS;
            format!("[\"t{t}\", \"t{u}\"]")
        } else {
            format!("[\"t{t}\"]")
        }
    };
    if spec.grouped {
        // One rule per trunk list holding all its prefixes: the same routing
        // (a longer prefix still wins), far less TOML per prefix.
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for p in &prefixes {
            groups.entry(trunks_of(p)).or_default().push(p);
        }
        for (n, (trunks, ps)) in groups.iter().enumerate() {
            let mut text = String::with_capacity(ps.len() * 14 + 100);
            let _ = write!(
                text,
                "[[rules]]\nname = \"g{n}\"\nthen.trunks = {trunks}\nmatch.to.prefix = ["
            );
            for (i, p) in ps.iter().enumerate() {
                text.push_str(if i.is_multiple_of(8) { "\n  \"" } else { " \"" });
                text.push_str(p);
                text.push_str("\",");
            }
            text.push_str("\n]\n");
            files.push((format!("10-group-{n:03}.toml"), text));
        }
    } else {
        for (n, chunk) in prefixes.chunks(RULES_PER_FILE).enumerate() {
            let mut text = String::with_capacity(chunk.len() * 80);
            for p in chunk {
                let _ = write!(
                    text,
                    "[[rules]]\nname = \"p{p}\"\nmatch.to.prefix = [\"{p}\"]\nthen.trunks = {}\n",
                    trunks_of(p)
                );
            }
            files.push((format!("10-rules-{n:03}.toml"), text));
        }
    }

    let mut nets = Vec::with_capacity(spec.cidr_rules);
    if spec.cidr_rules > 0 {
        let mut seen = HashSet::with_capacity(spec.cidr_rules);
        let mut text = String::with_capacity(spec.cidr_rules * 80);
        while nets.len() < spec.cidr_rules {
            let len = [16u8, 20, 24, 24, 24, 28, 32, 32][rng.below(8) as usize];
            let addr = (10u32 << 24) | (rng.next_u64() as u32 & 0x00ff_ffff);
            let addr = addr & (u32::MAX << (32 - len));
            if !seen.insert((addr, len)) {
                continue;
            }
            let i = nets.len();
            nets.push((addr, len));
            let [a, b, c, d] = addr.to_be_bytes();
            let _ = write!(
                text,
                "[[rules]]\nname = \"c{i}\"\nmatch.source = [\"{a}.{b}.{c}.{d}/{len}\"]\n\
                 then.trunks = [\"t{t}\"]\n",
                t = i % TRUNKS,
            );
        }
        files.push(("20-sources.toml".to_owned(), text));
    }

    let mut regex_heads = Vec::with_capacity(spec.regex_rules);
    if spec.regex_rules > 0 {
        let mut text = String::new();
        for i in 0..spec.regex_rules {
            // `^<head>[lo-hi]\d{m,n}$`: a national numbering plan block.
            let cc = COUNTRIES[rng.weighted(&weights)].0;
            let mut head = cc.to_owned();
            let more = 1 + rng.below(3) as usize;
            rng.digits(&mut head, more);
            let lo = rng.below(5);
            let hi = lo + 2 + rng.below(3);
            let m = 5 + rng.below(3);
            let _ = write!(
                text,
                "[[rules]]\nname = \"r{i}\"\nmatch.to.regex = '^{head}[{lo}-{hi}]\\d{{{m},{n}}}$'\n\
                 then.trunks = [\"t{t}\"]\n",
                n = m + 2,
                t = i % TRUNKS,
            );
            regex_heads.push((format!("{head}{lo}"), m as usize));
        }
        files.push(("30-regex.toml".to_owned(), text));
    }

    Deck {
        files,
        prefixes,
        nets,
        regex_heads,
        deepest,
    }
}

/// What a query is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number under a random prefix of the deck.
    Match,
    /// A number under the deepest 10-digit prefix: the most covering rules.
    Deep,
    /// A number no prefix covers (starts with 0), from an address no network covers.
    Miss,
    /// A number no prefix covers, from an address inside a source network.
    Source,
    /// A number only a regex rule matches (its prefix may match too).
    Regex,
}

impl Kind {
    /// Every kind, for query files.
    pub const ALL: [Kind; 5] = [
        Kind::Match,
        Kind::Deep,
        Kind::Miss,
        Kind::Source,
        Kind::Regex,
    ];
}

impl Deck {
    /// One query as a single JSON line (the body Kamailio would send).
    pub fn query(&self, kind: Kind, rng: &mut Rng) -> String {
        let mut number = String::with_capacity(16);
        let mut want = None;
        match kind {
            Kind::Match if !self.prefixes.is_empty() => {
                number.push_str(&self.prefixes[rng.below(self.prefixes.len() as u64) as usize]);
            }
            Kind::Deep if !self.deepest.is_empty() => number.push_str(&self.deepest),
            Kind::Regex if !self.regex_heads.is_empty() => {
                let (head, m) =
                    &self.regex_heads[rng.below(self.regex_heads.len() as u64) as usize];
                number.push_str(head);
                want = Some(head.len() + m + rng.below(3) as usize);
            }
            _ => number.push('0'),
        }
        let total = match (kind, want) {
            (_, Some(w)) => w,
            (Kind::Deep, _) => 13,
            _ => 11 + rng.below(3) as usize,
        };
        let extra = total.saturating_sub(number.len()).max(1);
        rng.digits(&mut number, extra);
        let ip = match kind {
            Kind::Source if !self.nets.is_empty() => {
                let (addr, len) = self.nets[rng.below(self.nets.len() as u64) as usize];
                let host = if len == 32 {
                    0
                } else {
                    rng.next_u64() as u32 & (u32::MAX >> len)
                };
                let [a, b, c, d] = (addr | host).to_be_bytes();
                format!("{a}.{b}.{c}.{d}")
            }
            _ => format!("192.0.2.{}", 1 + rng.below(254)),
        };
        let call = rng.next_u64();
        format!(
            "{{\"event\":\"sip-routing\",\"source_ip\":\"{ip}\",\"source_port\":5060,\
             \"transport\":\"udp\",\"call_id\":\"{call:016x}@bench\",\
             \"from_uri\":\"sip:+15551230000@pbx.example.com\",\"from_tag\":\"a1b2\",\
             \"to_uri\":\"sip:{number}@carrier.example.net\",\
             \"ruri\":\"sip:{number}@carrier.example.net\",\"method\":\"INVITE\"}}"
        )
    }

    /// `n` queries, kinds in rotation (only the kinds this deck can serve).
    pub fn queries(&self, n: usize, seed: u64) -> Vec<String> {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| match k {
                Kind::Source => !self.nets.is_empty(),
                Kind::Regex => !self.regex_heads.is_empty(),
                _ => true,
            })
            .collect();
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| self.query(kinds[i % kinds.len()], &mut rng))
            .collect()
    }
}
