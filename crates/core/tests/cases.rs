//! Data-driven decision cases: `tests/data/cases/<case>/routes.d/*.toml`
//! plus `cases.toml` with `[[case]] name, request, at, expect = "rule" | "none"`.

use std::path::Path;
use std::time::SystemTime;

use c4route_core::{Query, Sources, parse_time};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: toml::Table,
    at: Option<String>,
    expect: String,
}

#[test]
fn decision_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    for dir in dirs {
        let table = Sources::read_dir(dir.join("routes.d"))
            .unwrap()
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let cases: Cases =
            toml::from_str(&std::fs::read_to_string(dir.join("cases.toml")).unwrap()).unwrap();
        for c in cases.case {
            total += 1;
            let json = serde_json::to_vec(&c.request).unwrap();
            let q = Query::from_json(&json).unwrap();
            let now =
                c.at.as_deref()
                    .map_or_else(SystemTime::now, |a| parse_time(a).unwrap());
            let got = table.route(&q, now).rule.unwrap_or("none").to_string();
            if got != c.expect {
                failures.push(format!(
                    "{}: {}: expected {}, got {got}",
                    dir.file_name().unwrap().to_string_lossy(),
                    c.name,
                    c.expect
                ));
            }
        }
    }
    assert!(total >= 30, "only {total} cases ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
