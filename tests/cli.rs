//! The `c4route` CLI through the built binary: exit codes, stdout vs stderr.

use std::path::{Path, PathBuf};

use crate::util::{run, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A temporary routes.d with the given files.
fn routes(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

const SIMPLE: &str = r#"
[trunks.a]
gateways = ["sip:192.0.2.1:5060"]

[[rules]]
name = "uk"
match.to.prefix = ["44"]
then.trunks = ["a"]

[[tests]]
name = "uk goes to a"
query = { to_uri = "sip:4420@x" }
expect.rule = "uk"
expect.routes = ["sip:192.0.2.1:5060"]
"#;

#[test]
fn check_the_shipped_routes() {
    let o = run(&["check", repo().join("routes.d").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains(": ok: "));
}

#[test]
fn check_reports_file_line_col_and_exits_1() {
    let d = routes(&[
        ("10-a.toml", SIMPLE),
        (
            "20-b.toml",
            "[[rules]]\nname = \"x\"\nmatch.to.prefx = [\"1\"]\n",
        ),
    ]);
    let o = run(&["check", d.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("20-b.toml:3:10: error: unknown field `prefx`"),
        "{err}"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(
        run(&["check", "/nonexistent/routes.d"], None).status.code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"], None).status.code(), Some(2));
    assert_eq!(
        run(&["eval", "--at", "not-a-time"], None).status.code(),
        Some(2)
    );
}

#[test]
fn eval_object_array_and_json_lines_in_order() {
    let d = routes(&[("a.toml", SIMPLE)]);
    let dir = d.path().to_str().unwrap();
    let one = run(
        &["eval", dir, "-"],
        Some("{\n  \"to_uri\": \"sip:4420@x\"\n}\n"),
    );
    assert_eq!(one.status.code(), Some(0));
    let out = text(&one.stdout);
    assert_eq!(out.lines().count(), 1);
    assert!(out.starts_with(r#"{"rtjson":{"success":true"#), "{out}");

    let arr = run(
        &["eval", dir, "-", "--bare"],
        Some(r#"[{"to_uri":"sip:4420@x"},{"to_uri":"sip:1@x"}]"#),
    );
    let lines: Vec<String> = text(&arr.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(r#"{"success":true"#));
    assert_eq!(
        lines[1],
        r#"{"success":false,"code":404,"reason":"Not Found","rule":null}"#
    );

    let jl = run(
        &["eval", dir, "-"],
        Some("{\"to_uri\":\"sip:1@x\"}\n\nnot json\n{\"to_uri\":\"sip:4420@x\"}\n"),
    );
    assert_eq!(jl.status.code(), Some(1));
    let lines: Vec<String> = text(&jl.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("404"));
    assert!(
        lines[1].starts_with(r#"{"error":"line 3: "#),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(r#""rule":"uk""#));
}

#[test]
fn eval_explain_goes_to_stderr_only() {
    let q = repo().join("examples/requests/uk-mobile-from-pbx.json");
    let o = run(
        &[
            "eval",
            repo().join("routes.d").to_str().unwrap(),
            q.to_str().unwrap(),
            "--explain",
            "--at",
            "2026-12-01T10:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout).lines().count(), 1);
    let err = text(&o.stderr);
    assert!(err.contains("winner: `"), "{err}");
}

#[test]
fn test_command_passes_and_fails_with_expected_vs_actual() {
    let d = routes(&[("a.toml", SIMPLE)]);
    let o = run(&["test", d.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stderr).contains("1 passed, 0 failed"));

    let failing = SIMPLE.replace(
        "expect.routes = [\"sip:192.0.2.1:5060\"]",
        "expect.routes = [\"sip:192.0.2.9\"]",
    );
    let d = routes(&[("a.toml", &failing)]);
    let o = run(&["test", d.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("FAIL uk goes to a"), "{err}");
    assert!(
        err.contains(r#"routes: expected ["sip:192.0.2.9"], got ["sip:192.0.2.1:5060"]"#),
        "{err}"
    );
    assert!(err.contains("0 passed, 1 failed"));
}

#[test]
fn the_shipped_tests_pass() {
    let o = run(&["test", repo().join("routes.d").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn diff_lists_changed_decisions() {
    let old = routes(&[("a.toml", SIMPLE)]);
    let same = routes(&[("a.toml", SIMPLE)]);
    let o = run(
        &[
            "diff",
            old.path().to_str().unwrap(),
            same.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());

    let changed = SIMPLE.replace(
        "sip:192.0.2.1:5060\"]\n\n[[rules]]",
        "sip:192.0.2.2:5060\"]\n\n[[rules]]",
    );
    let new = routes(&[("a.toml", &changed)]);
    let queries = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        queries.path(),
        "{\"to_uri\":\"sip:4420@x\"}\n{\"to_uri\":\"sip:1@x\"}\n",
    )
    .unwrap();
    let o = run(
        &[
            "diff",
            old.path().to_str().unwrap(),
            new.path().to_str().unwrap(),
            queries.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["old"]["routes"][0]["dst_uri"], "sip:192.0.2.1:5060");
    assert_eq!(v["new"]["routes"][0]["dst_uri"], "sip:192.0.2.2:5060");
    assert!(text(&o.stderr).contains("1 of 2 queries change"));
}

#[test]
fn every_example_request_evaluates() {
    let dir = repo().join("examples/requests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let o = run(
            &[
                "eval",
                repo().join("routes.d").to_str().unwrap(),
                f.to_str().unwrap(),
                "--at",
                "2026-12-01T10:00:00Z",
            ],
            None,
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            f.display(),
            text(&o.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["rtjson"]["success"].is_boolean());
    }
}

#[test]
fn serve_refuses_a_bad_duration_with_a_usage_error() {
    for (flag, value) in [
        ("--idle-timeout", "5 parsecs"),
        ("--body-timeout", ""),
        ("--reload-debounce", "ten seconds"),
    ] {
        // Rejected while parsing the arguments: nothing is bound or read.
        let o = run(&["serve", "--listen", "127.0.0.1:0", flag, value], None);
        assert_eq!(o.status.code(), Some(2), "{flag} {value:?}");
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag} <DURATION>'")),
            "{err}"
        );
        assert!(
            err.contains("expected a duration such as 300s, 5m or 250ms"),
            "{err}"
        );
    }
}
