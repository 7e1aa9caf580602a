//! The repository's own routes.d and examples must load, pass their tests,
//! and reject any spurious key (hickory's mutation check); no input panics.

use std::path::{Path, PathBuf};

use c4route_core::{Error, Query, Sources};
use proptest::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every routes.d directory the repository ships.
fn shipped_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![root().join("routes.d")];
    let mut stack = vec![root().join("examples"), root().join("kamailio")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "routes.d") {
                    dirs.push(p.clone());
                }
                if p.file_name().is_none_or(|n| n != ".build") {
                    stack.push(p);
                }
            }
        }
    }
    dirs
}

#[test]
fn shipped_routes_load_without_warnings_and_pass_their_tests() {
    for dir in shipped_dirs() {
        let table = Sources::read_dir(&dir)
            .unwrap()
            .build()
            .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
        if dir == root().join("routes.d") {
            assert!(table.warnings().is_empty(), "{}", table.warnings());
            assert!(
                table.tests().len() >= 10,
                "routes.d ships at least 10 tests"
            );
        }
        for t in table.run_tests() {
            assert!(
                t.failures.is_empty(),
                "{} ({}): {:?}",
                t.name,
                t.location,
                t.failures
            );
        }
    }
}

#[test]
fn every_example_request_is_a_valid_query() {
    let dir = root().join("examples/requests");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let body = std::fs::read(e.path()).unwrap();
        Query::from_json(&body).unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn a_spurious_key_in_any_table_of_a_shipped_file_is_an_error_at_its_line() {
    let dir = root().join("routes.d");
    let sources = Sources::read_dir(&dir).unwrap();
    let files: Vec<(String, String)> = sources
        .files()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let mut mutations = 0;
    for (k, (path, text)) in files.iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with('[') {
                continue;
            }
            let mut mutated: Vec<&str> = lines.clone();
            mutated.insert(n + 1, "spurious_key = 1");
            let mut s = Sources::new();
            for (j, (p, t)) in files.iter().enumerate() {
                if j == k {
                    s.add(p.clone(), mutated.join("\n"));
                } else {
                    s.add(p.clone(), t.clone());
                }
            }
            mutations += 1;
            match s.build() {
                Err(Error::Config(d)) => {
                    let hit = d.errors().any(|e| {
                        *e.path == **path && e.line == n + 2 && e.message.contains("spurious_key")
                    });
                    assert!(hit, "{path}:{}: mutation not reported there:\n{d}", n + 2);
                }
                other => panic!(
                    "{path}:{}: spurious key accepted: {:?}",
                    n + 2,
                    other.map(|_| ())
                ),
            }
        }
    }
    assert!(mutations >= 10, "{mutations}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn arbitrary_toml_never_panics(text in "(\\[\\[rules\\]\\]\n|\\[trunks.a\\]\n|name = \"x\"\n|gateways = \\[\"sip:a\"\\]\n|then.trunks = \\[\"a\"\\]\n|match.to.prefix = \\[\"1\"\\]\n|match.to.regex = '\\('\n|[a-z=\\[\\]\"'{}., 0-9\n]{0,8})*") {
        let mut s = Sources::new();
        s.add("fuzz.toml", text);
        let _ = s.build();
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Query::from_json(&body);
        let _ = Query::from_form(&body);
    }

    #[test]
    fn arbitrary_uris_never_panic(uri in "[a-z:@;<>\"%0-9\\[\\]. +-]{0,40}") {
        let table = {
            let mut s = Sources::new();
            s.add("t.toml", "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\nthen.rewrite.to.user = { regex = '(.)', replace = '$1$1' }\nthen.rewrite.from.uri = \"{to.uri}\"\n");
            s.build().unwrap()
        };
        let q = serde_json::json!({"to_uri": uri, "from_uri": uri, "ruri": uri, "from_name": uri});
        let q = q.to_string();
        let query = Query::from_json(q.as_bytes()).unwrap();
        let _ = table.route(&query, std::time::SystemTime::now()).to_json(c4route_core::Wrap::Rtjson);
    }
}

#[test]
fn a_syntax_error_in_one_file_hides_cross_file_reference_errors() {
    let mut s = Sources::new();
    s.add(
        "10-trunks.toml",
        "[trunks.a\ngateways = [\"sip:192.0.2.1\"]\n",
    );
    s.add(
        "20-rules.toml",
        "[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\nmatch.to.prefix = []\n",
    );
    let Err(Error::Config(d)) = s.build() else {
        panic!("must fail")
    };
    let text = d.to_string();
    assert!(text.contains("10-trunks.toml:1:"), "{text}");
    assert!(!text.contains("unknown trunk"), "{text}");
    // Problems that do not depend on the broken file are still reported.
    assert!(text.contains("20-rules.toml:4:"), "{text}");
}
