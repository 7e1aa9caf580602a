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
