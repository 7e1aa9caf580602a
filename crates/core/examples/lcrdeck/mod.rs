//! Synthetic carrier rate decks for least-cost routing (SPEC §7): N carriers
//! × M rows of CSV, one LCR rule over all carriers, and numbers to price.
//!
//! Shared by the `gen_decks` example (which writes them to disk), the
//! `load_decks` example and the `lcr` bench (which build them in memory), so
//! every LCR figure in docs/PERFORMANCE.md comes from the same decks.
//!
//! The decks look like wholesale A-Z decks: destinations (a country code
//! plus 0–3 digits, weighted towards the big countries) each with a name, a
//! rate and a billing scheme, and 1–40 prefixes under each destination
//! (2–12 digits, so prefixes nest). All carriers draw from one numbering
//! plan, each listing about 85 % of it, with its own prices; about 2 % of a
//! deck's prefixes carry a price change (an old row ending and a new row
//! starting on `CHANGE_DATE`), as a weekly deck update does. Everything
//! comes from a seeded SplitMix64: one seed, one set of decks.
#![allow(dead_code)] // each user of this module needs a different part of it

use std::collections::HashSet;
use std::fmt::Write as _;

/// The date of the price changes in generated decks.
pub const CHANGE_DATE: &str = "2027-01-04";

#[path = "../ratedeck/rng.rs"]
mod rng;
pub use rng::Rng;

const COUNTRIES: &[(&str, &str, u32)] = &[
    ("1", "United States", 30),
    ("44", "United Kingdom", 12),
    ("49", "Germany", 10),
    ("33", "France", 8),
    ("39", "Italy", 6),
    ("34", "Spain", 6),
    ("31", "Netherlands", 4),
    ("32", "Belgium", 3),
    ("41", "Switzerland", 3),
    ("43", "Austria", 3),
    ("46", "Sweden", 3),
    ("48", "Poland", 3),
    ("351", "Portugal", 2),
    ("353", "Ireland", 2),
    ("420", "Czech Republic", 2),
    ("7", "Russia", 5),
    ("81", "Japan", 3),
    ("86", "China", 5),
    ("91", "India", 6),
    ("61", "Australia", 3),
    ("55", "Brazil", 4),
    ("52", "Mexico", 4),
    ("27", "South Africa", 2),
    ("234", "Nigeria", 3),
    ("20", "Egypt", 2),
    ("971", "United Arab Emirates", 2),
    ("62", "Indonesia", 3),
    ("63", "Philippines", 3),
    ("880", "Bangladesh", 2),
    ("92", "Pakistan", 3),
];

const KINDS: &[&str] = &[
    "Fixed", "Mobile", "Mobile", "Premium", "Other", "Mobile", "Fixed",
];

/// One destination of the numbering plan.
struct Destination {
    name: String,
    /// Base rate in 10⁻⁴ per minute.
    base: u32,
    prefixes: Vec<String>,
}

/// The generated decks.
pub struct Decks {
    /// `routes.d/00-lcr.toml`: defaults, trunks `c0`… with `rates`, one
    /// LCR rule over all of them.
    pub toml: String,
    /// `(file name under routes.d/rates/, CSV text)`, one per carrier.
    pub csv: Vec<(String, String)>,
    /// Numbers (digits, 11–13 long) under prefixes of the plan, and some
    /// that no deck covers.
    pub numbers: Vec<String>,
    /// Rows in all decks.
    pub rows: usize,
}

fn plan(rows: usize, rng: &mut Rng) -> Vec<Destination> {
    // The plan holds a bit more than one deck: every carrier lists ~85 % of it.
    let want = rows + rows / 5 + 16;
    let total: u32 = COUNTRIES.iter().map(|c| c.2).sum();
    let mut seen = HashSet::with_capacity(want);
    let mut dests = Vec::new();
    let mut count = 0;
    let mut serial = 0;
    while count < want {
        let mut x = rng.below(u64::from(total)) as u32;
        let (cc, country, _) = COUNTRIES
            .iter()
            .find(|c| {
                if x < c.2 {
                    true
                } else {
                    x -= c.2;
                    false
                }
            })
            .copied()
            .unwrap_or(COUNTRIES[0]);
        let mut head = cc.to_string();
        let k = rng.below(4) as usize;
        rng.digits(&mut head, k);
        serial += 1;
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let base = match kind {
            "Premium" => 2000 + rng.below(8000) as u32,
            "Mobile" => 100 + rng.below(1500) as u32,
            _ => 20 + rng.below(400) as u32,
        };
        let mut prefixes = Vec::new();
        let n = 1 + rng.below(40) as usize;
        for _ in 0..n {
            let mut p = head.clone();
            let extra = rng.below(7) as usize;
            let k = extra.min(12 - p.len().min(12));
            rng.digits(&mut p, k);
            if seen.insert(p.clone()) {
                prefixes.push(p);
            }
        }
        if prefixes.is_empty() {
            continue;
        }
        count += prefixes.len();
        dests.push(Destination {
            name: format!("{country} {kind} {serial}"),
            base,
            prefixes,
        });
    }
    dests
}

/// Generates `carriers` decks of about `rows` rows each.
pub fn generate(carriers: usize, rows: usize, seed: u64) -> Decks {
    generate_with(carriers, rows, seed, false)
}

/// [`generate`]; with `unique_rates`, every row gets a rate of its own (the
/// worst case for the deck's tariff sharing: no two rows alike).
pub fn generate_with(carriers: usize, rows: usize, seed: u64, unique_rates: bool) -> Decks {
    let mut rng = Rng::new(seed);
    let dests = plan(rows, &mut rng);
    let mut toml = String::from(
        "# Generated by gen_decks: one LCR rule over every carrier.\n\
         [defaults]\nlcr_duration = 60\nmax_routes = 10\n\n",
    );
    let names: Vec<String> = (0..carriers).map(|c| format!("c{c}")).collect();
    for (c, name) in names.iter().enumerate() {
        let _ = writeln!(
            toml,
            "[trunks.{name}]\ngateways = [\"sip:10.{}.{}.1:5060\"]\nrates = \"rates/{name}.csv\"\n",
            c / 256,
            c % 256
        );
    }
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let _ = writeln!(
        toml,
        "[[rules]]\nname = \"lcr\"\nmatch.ruri.prefix = [\"+\"]\nthen.lcr = [{}]\nthen.no_rate = {{ code = 503, reason = \"No Route Available\" }}",
        list.join(", ")
    );
    let mut csv = Vec::with_capacity(carriers);
    let mut total = 0;
    for name in &names {
        let mut text = String::with_capacity(rows * 48);
        text.push_str(
            "prefix,rate,connect_fee,initial,increment,effective_from,effective_until,name\n",
        );
        let mut n = 0;
        // This carrier's billing scheme and price level.
        let schemes = [("1", "1"), ("60", "60"), ("30", "6"), ("60", "1")];
        'dests: for d in &dests {
            // ~85 % of the plan, by destination.
            if rng.below(100) >= 85 {
                continue;
            }
            let rate = d.base * (70 + rng.below(60) as u32) / 100;
            let (initial, increment) = schemes[rng.below(4) as usize];
            let fee = if rng.below(20) == 0 { "0.01" } else { "" };
            let change = rng.below(50) == 0;
            for p in &d.prefixes {
                if n >= rows {
                    break 'dests;
                }
                let r = if unique_rates {
                    // Six decimals, the row number in the last ones.
                    let r = u64::from(rate) * 100 + (n as u64 % 100);
                    format!("{}.{:06}", r / 1_000_000, r % 1_000_000)
                } else {
                    format!("{}.{:04}", rate / 10_000, rate % 10_000)
                };
                if change && n + 1 < rows {
                    let r2 = rate * 11 / 10;
                    let r2 = format!("{}.{:04}", r2 / 10_000, r2 % 10_000);
                    let _ = writeln!(
                        text,
                        "{p},{r},{fee},{initial},{increment},,{CHANGE_DATE},{}",
                        d.name
                    );
                    let _ = writeln!(
                        text,
                        "{p},{r2},{fee},{initial},{increment},{CHANGE_DATE},,{}",
                        d.name
                    );
                    n += 2;
                } else {
                    let _ = writeln!(text, "{p},{r},{fee},{initial},{increment},,,{}", d.name);
                    n += 1;
                }
            }
        }
        total += n;
        csv.push((format!("{name}.csv"), text));
    }
    // Numbers: under random prefixes of the plan, 11–13 digits; 1 in 16 misses.
    let mut numbers = Vec::with_capacity(4096);
    for i in 0..4096 {
        let mut s = if i % 16 == 15 {
            String::from("0")
        } else {
            let d = &dests[rng.below(dests.len() as u64) as usize];
            d.prefixes[rng.below(d.prefixes.len() as u64) as usize].clone()
        };
        let len = 11 + rng.below(3) as usize;
        if s.len() < len {
            let k = len - s.len();
            rng.digits(&mut s, k);
        }
        numbers.push(s);
    }
    Decks {
        toml,
        csv,
        numbers,
        rows: total,
    }
}

impl Decks {
    /// The decks as in-memory sources.
    pub fn sources(&self) -> c4route_core::Sources {
        let mut s = c4route_core::Sources::new();
        s.add("routes.d/00-lcr.toml", self.toml.clone());
        for (name, text) in &self.csv {
            s.add_rate_file(format!("rates/{name}"), text.clone().into_bytes());
        }
        s
    }

    /// A query JSON for number `i` of the corpus.
    pub fn query(&self, i: usize) -> String {
        let n = &self.numbers[i % self.numbers.len()];
        format!(r#"{{"ruri":"sip:+{n}@sbc.example","call_id":"lcr-{i}"}}"#)
    }
}
