//! Tests of the deck loader (`load.rs`): errors with their line and column,
//! effective dates, overlaps, gzip.

use super::*;

fn load_str(s: &str) -> Loaded {
    load("rates/t.csv".into(), s.as_bytes())
}

fn problems(s: &str) -> String {
    load_str(s)
        .issues
        .iter()
        .map(|i| format!("{}:{}: {}: {}", i.line, i.col, i.severity, i.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_deck_loads_and_looks_up_longest_prefix_in_effect() {
    let l = load_str(
        "\u{feff}Prefix, Rate ,connect_fee,initial,increment,effective_from,effective_until,name\n\
         44,0.0120,,60,60,,,United Kingdom\n\
         447,0.0450,0.01,60,60,,,United Kingdom Mobile\n\
         4477,0.0400,,1,1,2026-12-01,,UK Mobile (new price)\n\
         +1,0.005,,6,6,,2026-12-01,USA\n",
    );
    assert!(l.issues.is_empty(), "{:?}", l.issues);
    let d = l.deck.unwrap();
    assert_eq!(d.row_count(), 4);
    assert_eq!(d.prefix_count(), 4);
    let before = parse_when("2026-11-30").unwrap();
    let after = parse_when("2026-12-02").unwrap();
    let rate = |n: &str, t| {
        d.lookup(n.as_bytes(), t)
            .map(|h| (d.prefix(h.entry), d.rate_text(h.entry, h.row).to_owned()))
    };
    assert_eq!(
        rate("447712345678", before),
        Some(("447".into(), "0.0450".into()))
    );
    assert_eq!(
        rate("447712345678", after),
        Some(("4477".into(), "0.0400".into()))
    );
    assert_eq!(
        rate("441134960000", after),
        Some(("44".into(), "0.0120".into()))
    );
    assert_eq!(
        rate("12025550123", before),
        Some(("1".into(), "0.005".into()))
    );
    assert_eq!(rate("12025550123", after), None);
    assert_eq!(rate("33142868200", after), None);
    assert_eq!(rate("4", after), None);
    assert_eq!(rate("", after), None);
    assert_eq!(d.line(d.lookup(b"4477", after).unwrap().row), 4);
}

#[test]
fn every_bad_cell_is_reported_at_its_line_and_column() {
    let p = problems(
        "prefix,rate,connect_fee,initial,increment,effective_from,effective_until,name\n\
         44a,0.01,,,,,,\n\
         1234567890123456,0.01,,,,,,\n\
         45,-0.01,,,,,,\n\
         46,abc,x,0,0,2026-13-01,,\n\
         47,,,,,,,\n\
         48,0.1,,,,2026-12-01,2026-11-01,\n",
    );
    let want = [
        "2:1: error: prefix \"44a\" is not a number",
        "3:1: error: prefix \"1234567890123456\" has 16 digits",
        "4:4: error: rate \"-0.01\" must be a decimal number >= 0",
        "5:4: error: rate \"abc\" is not a decimal number",
        "5:8: error: connect_fee \"x\"",
        "5:12: error: increment \"0\" must be a whole number of seconds in 1..=86400",
        "5:14: error: effective_from \"2026-13-01\"",
        "6:4: error: rate is empty",
        "7:22: error: effective_until \"2026-11-01\" is not after",
    ];
    for w in want {
        assert!(p.lines().any(|l| l.starts_with(w)), "missing {w:?} in\n{p}");
    }
    assert_eq!(p.lines().count(), want.len(), "{p}");
}

#[test]
fn overlapping_rows_name_both_lines() {
    let l = load_str(
        "prefix,rate,effective_from,effective_until\n\
         44,0.01,,2026-12-01\n\
         44,0.02,2026-11-15,\n\
         45,0.01,,\n\
         45,0.02,,\n\
         46,0.01,,2026-12-01\n\
         46,0.02,2026-12-01,\n",
    );
    assert!(l.deck.is_none());
    let p: Vec<String> = l
        .issues
        .iter()
        .map(|i| format!("{}:{}: {}", i.line, i.col, i.message))
        .collect();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("3:1: two rows for prefix 44 are in effect at the same time: line 2 (always until 2026-12-01) and line 3 (2026-11-15 until forever)"), "{p:?}");
    assert!(p[1].starts_with("5:1: two rows for prefix 45"), "{p:?}");
    assert_eq!(
        l.issues[0].offset,
        "prefix,rate,effective_from,effective_until\n44,0.01,,2026-12-01\n".len()
    );
}

#[test]
fn header_problems() {
    let p = problems("prefix,rat,conect_fee\n44,0.1,0\n");
    assert!(p.starts_with("1:1: error: missing required column `rate`; the header row has `prefix`, `rat`, `conect_fee`"), "{p}");
    let p = problems("prefix,rate,conect_fee,notes\n44,0.1,0,x\n");
    assert_eq!(
        p,
        "1:13: warning: columns `conect_fee`, `notes` are ignored; the columns c4route reads are prefix, rate, connect_fee, initial, increment, effective_from, effective_until, name"
    );
    assert!(problems("").starts_with("1:1: error: the file is empty"));
    assert!(problems("prefix,rate,rate\n").contains("1:13: error: column `rate` appears twice"));
    let p = problems("prefix,rate\n44,0.1,7\n");
    assert!(p.starts_with("2:8: error: this row has 3 cells"), "{p}");
    // Quoted cells: the column still points at the cell.
    let p = problems("prefix,name,rate\n\"44\",\"Big, Co\",x\n");
    assert!(p.starts_with("2:16: error: rate \"x\""), "{p}");
}

#[test]
fn gzip_decks_load_and_errors_keep_their_lines() {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"prefix,rate\n44,0.01\n45,bad\n45,0.01\n45,0.02\n")
        .unwrap();
    let bytes = gz.finish().unwrap();
    let l = load("rates/t.csv.gz".into(), &bytes);
    let p: Vec<String> = l
        .issues
        .iter()
        .map(|i| format!("{}:{}: {}", i.line, i.col, i.message))
        .collect();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("3:4: rate \"bad\""), "{p:?}");
    let l = load("rates/t.csv.gz".into(), &bytes[..bytes.len() / 2]);
    assert!(l.deck.is_none());
    assert!(
        l.issues[0].message.contains("cannot decompress"),
        "{:?}",
        l.issues
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Any bytes: a deck or problems, never a panic; a deck only without errors.
    #[test]
    fn any_bytes_load_or_report(body in proptest::collection::vec(
        proptest::sample::select(b"0123456789+,.-\"\n\r x2026T:Z\xff".to_vec()), 0..200)) {
        for head in [&b"prefix,rate,connect_fee,initial,increment,effective_from,effective_until,name\n"[..], b""] {
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&body);
            let l = load("p.csv".into(), &bytes);
            let errors = l.issues.iter().any(|i| i.severity == Severity::Error);
            proptest::prop_assert_eq!(l.deck.is_some(), !errors);
        }
    }
}

#[test]
fn rows_share_tariffs() {
    let mut s = String::from("prefix,rate,name\n");
    for i in 0..100 {
        s += &format!("49{i:03},0.01,Germany\n");
    }
    s += "33,0.01,France\n49999,0.01,Germany\n";
    let d = load_str(&s).deck.unwrap();
    assert_eq!(d.row_count(), 102);
    assert_eq!(d.tariffs.len(), 2);
}

/// Lines that end in `\r` alone (or a mix) are counted: problems, overlaps
/// and rows all carry their own line, not line 1.
#[test]
fn lone_cr_line_ends_count_as_lines() {
    use std::io::Write as _;
    let text = "prefix,rate\r44,0.01\r45,bad\r\n46,0.01\n47,x\r";
    let want = ["3:4: rate \"bad\"", "5:4: rate \"x\""];
    let check = |l: &Loaded| {
        let p: Vec<String> = l
            .issues
            .iter()
            .map(|i| format!("{}:{}: {}", i.line, i.col, i.message))
            .collect();
        assert_eq!(p.len(), 2, "{p:?}");
        for (got, want) in p.iter().zip(want) {
            assert!(got.starts_with(want), "{got} (want {want})");
        }
    };
    check(&load_str(text));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    check(&load("rates/t.csv.gz".into(), &gz.finish().unwrap()));
    // A valid CR-only deck: each row at its line; an overlap at its offset.
    let d = load_str("prefix,rate\r44,0.01\r45,0.02\r").deck.unwrap();
    assert_eq!(d.line(d.lookup(b"45", 0).unwrap().row), 3);
    let text = "prefix,rate\r44,0.01\r44,0.02\r";
    let l = load_str(text);
    assert_eq!(
        (l.issues[0].line, l.issues[0].offset),
        (3, 20),
        "{:?}",
        l.issues
    );
}

/// A header with a trailing comma has an empty last cell: that is no
/// column, and no warning about a column named ``.
#[test]
fn empty_header_cells_are_not_columns() {
    assert_eq!(problems("prefix,rate,\n44,0.01,\n"), "");
    assert_eq!(problems("prefix,rate,name,,\n44,0.01,UK,,\n"), "");
    let l = load_str("prefix,rate,\n44,0.01,\n");
    assert_eq!(l.deck.unwrap().row_count(), 1);
    // Between named columns, an empty name is worth a word.
    assert_eq!(
        problems("prefix,,rate\n44,x,0.01\n"),
        "1:8: warning: column 2 of the header has no name: its cells are ignored"
    );
    let p = problems("prefix,\n44,\n");
    assert!(
        p.starts_with("1:1: error: missing required column `rate`; the header row has `prefix`;"),
        "{p}"
    );
}

/// A deck where every row has a rate of its own keeps its rates by row
/// (no tariff per row), and every row reads back exactly as written and
/// priced as `parse_amount` prices it, odd spellings included; the same
/// rows in a deck that shares tariffs read back the same.
#[test]
fn rates_by_row_read_back_as_written() {
    let odd = [
        "0.0120",
        "1",
        "0",
        ".5",
        "00.1",
        "1.",
        "0.100000000000",
        "999999999.999999999",
    ];
    let mut unique = String::from("prefix,rate,initial,name\n");
    let mut shared = String::from("prefix,rate,initial,name\n");
    let mut want = Vec::new();
    for i in 0..400u32 {
        let rate = match odd.get(i as usize) {
            Some(r) => (*r).to_owned(),
            None => format!("0.{:06}", 1000 + i),
        };
        unique += &format!("4{i:04},{rate},60,Dest {}\n", i % 3);
        shared += &format!(
            "4{i:04},{},60,Dest {}\n",
            odd[i as usize % odd.len()],
            i % 3
        );
        want.push((format!("4{i:04}"), rate));
    }
    let d = load_str(&unique).deck.unwrap();
    let s = load_str(&shared).deck.unwrap();
    assert!(d.rates_by_row());
    assert!(!s.rates_by_row());
    for (deck, shared) in [(&d, false), (&s, true)] {
        for (i, (prefix, rate)) in want.iter().enumerate() {
            let rate = if shared {
                odd[i % odd.len()]
            } else {
                rate.as_str()
            };
            let h = deck.lookup(prefix.as_bytes(), 0).unwrap();
            assert_eq!(deck.rate_text(h.entry, h.row), rate, "{prefix}");
            let t = deck.tariff(h.entry, h.row);
            assert_eq!(t.rate, parse_amount(rate).unwrap(), "{prefix}");
            assert_eq!(
                (t.initial, deck.text(t.name)),
                (60, &*format!("Dest {}", i % 3))
            );
            assert_eq!(deck.line(h.row), i as u32 + 2);
        }
    }
    // Rates by row: a few bytes each, not a tariff each.
    assert!(d.heap_bytes() < 400 * 48, "{}", d.heap_bytes());
}
