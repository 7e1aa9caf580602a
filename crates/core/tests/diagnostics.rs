//! Snapshots of the diagnostics for every file in `tests/data/invalid/`
//! (errors, or warnings for a valid file), and of the answers to every
//! shipped `examples/requests/*.json` against the shipped `routes.d/`.

use std::path::Path;

use c4route_core::{Error, Query, Sources, Wrap, parse_time};

fn render(path: &Path) -> String {
    let name = format!("invalid/{}", path.file_name().unwrap().to_string_lossy());
    let mut s = Sources::new();
    s.add(name, std::fs::read_to_string(path).unwrap());
    match s.build() {
        Ok(t) => format!("OK with warnings:\n{}", t.warnings()),
        Err(Error::Config(d)) => format!("ERRORS:\n{d}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn invalid_files() {
    insta::glob!("data/invalid/*.toml", |path| {
        insta::assert_snapshot!(render(path));
    });
}

#[test]
fn example_requests_against_shipped_routes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let table = Sources::read_dir(root.join("routes.d"))
        .unwrap()
        .build()
        .unwrap();
    // A Tuesday inside office hours, so the schedule example is stable.
    let at = parse_time("2026-12-01T10:00:00Z").unwrap();
    insta::glob!("../../../examples/requests", "*.json", |path| {
        let body = std::fs::read(path).unwrap();
        let q = Query::from_json(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let answer = table.route(&q, at).to_json(Wrap::Rtjson);
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        insta::assert_json_snapshot!(v);
    });
}

/// 50k rules naming an unknown trunk: every one is an error (the totals are
/// exact), but a report shows 20 of that kind and one line counting the
/// rest. Compiling it used to take quadratic time (a rescan of every
/// diagnostic per rule, a sort of every name per error); the benchmark
/// `compile::broken_100k` in benches/lookup.rs shows the time.
#[test]
fn many_errors_of_one_kind_are_counted_exactly_and_shown_bounded() {
    const N: usize = 50_000;
    let mut text = String::from("[trunks.known]\ngateways = [\"sip:192.0.2.1\"]\n");
    for i in 0..N {
        text += &format!(
            "[[rules]]\nname = \"r{i}\"\nmatch.to.prefix = [\"{i}\"]\nthen.trunks = [\"nope\"]\n"
        );
    }
    // One error of another kind, which is always shown.
    text +=
        "[[rules]]\nname = \"bad\"\nmatch.source = [\"10.0.0.300\"]\nthen.trunks = [\"known\"]\n";
    let mut s = Sources::new();
    s.add("big.toml", text);
    let Err(Error::Config(d)) = s.build() else {
        panic!("an unknown trunk must not compile");
    };
    assert_eq!(d.errors().count(), N + 1);
    let shown: Vec<_> = d.shown(c4route_core::SHOWN_PER_KIND).collect();
    assert_eq!(
        shown.len(),
        21,
        "20 of the unknown trunks and the bad source"
    );
    let hidden: usize = shown.iter().map(|(_, h)| h).sum();
    assert_eq!(hidden, N - 20);
    let report = d.bounded(
        c4route_core::SHOWN_PER_KIND,
        c4route_core::Severity::Warning,
    );
    assert_eq!(report.lines().count(), 23, "{report}");
    assert!(report.contains(&format!("... and {} more like the line above", N - 20)));
    assert!(report.contains("invalid source \"10.0.0.300\""), "{report}");
    assert!(report.ends_with(&format!("{} error(s), 0 warning(s)", N + 1)));
    assert!(
        report.contains("unknown trunk `nope`; defined trunks: known"),
        "{report}"
    );
}
