//! Rate decks and least-cost routing (SPEC §7) through the built binary:
//! `check`, `eval --explain`, `rates`, `diff` and a served table reloading
//! an edited deck from a folder below routes.d.

use std::path::Path;
use std::time::Duration;

use crate::util::{Server, atomic_write, run, text};

const ROUTES: &str = r#"
[trunks.acme]
gateways = ["sip:198.51.100.10:5060"]
rates = "rates/acme.csv"

[trunks.globex]
gateways = ["sip:203.0.113.20:5060"]
rates = "rates/globex.csv"

[[rules]]
name = "international"
match.ruri.prefix = ["+"]
then.lcr = ["acme", "globex"]
then.max_rate = 0.25

[[tests]]
name = "UK mobile: globex, then acme"
query = { ruri = "sip:+447700900123@x", call_id = "t1" }
at = "2026-11-30T10:00:00Z"
expect.routes = ["sip:203.0.113.20:5060", "sip:198.51.100.10:5060"]
"#;

const ACME: &str = "prefix,rate,connect_fee,initial,increment,effective_from,effective_until,name,notes\n\
44,0.0120,,60,60,,,United Kingdom,\n\
447,0.0450,,60,60,,,United Kingdom Mobile,\n\
4477,0.0300,,1,1,2026-12-01,,United Kingdom Mobile (new price),from Dec 1\n\
33,0.0100,,1,1,,2020-01-01,France (old),\n";

const GLOBEX: &str = "prefix,rate\n44,0.0110\n447,0.0400\n";

/// A routes.d with the decks in `rates/`.
fn dir(acme: &str, globex: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("10-lcr.toml"), ROUTES).unwrap();
    std::fs::create_dir(d.path().join("rates")).unwrap();
    std::fs::write(d.path().join("rates/acme.csv"), acme).unwrap();
    std::fs::write(d.path().join("rates/globex.csv"), globex).unwrap();
    d
}

fn p(d: &tempfile::TempDir) -> &str {
    d.path().to_str().unwrap()
}

#[test]
fn check_warns_once_per_deck_and_test_passes() {
    let d = dir(ACME, GLOBEX);
    let o = run(&["check", p(&d)], None);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(o.stdout.is_empty());
    let ignored: Vec<&str> = err.lines().filter(|l| l.contains("is ignored")).collect();
    assert_eq!(ignored.len(), 1, "{err}");
    assert!(
        ignored[0].contains("rates/acme.csv:1:79: warning: column `notes` is ignored"),
        "{err}"
    );
    let expired: Vec<&str> = err.lines().filter(|l| l.contains("expired")).collect();
    assert_eq!(expired.len(), 1, "{err}");
    assert!(
        expired[0].contains("rates/acme.csv:5:1: warning: 1 row expired before"),
        "{err}"
    );
    assert!(err.contains("6 rate row(s)"), "{err}");
    let o = run(&["test", p(&d)], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn check_points_at_the_deck_line_and_the_toml_line() {
    let d = dir(&format!("{ACME}44,oops,,,,,,,\n"), GLOBEX);
    std::fs::write(
        d.path().join("20-more.toml"),
        "[trunks.x]\ngateways = [\"sip:192.0.2.1\"]\nrates = \"../x.csv\"\n",
    )
    .unwrap();
    let o = run(&["check", p(&d)], None);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("rates/acme.csv:6:4: error: rate \"oops\" is not a decimal number"),
        "{err}"
    );
    assert!(
        err.contains("20-more.toml:3:9: error: rates \"../x.csv\" leaves the routes.d directory"),
        "{err}"
    );
}

#[test]
fn eval_explain_shows_each_trunk_row_and_cost() {
    let d = dir(ACME, GLOBEX);
    let q = r#"{"ruri":"sip:+447700900123@x","call_id":"e1"}
{"ruri":"sip:+33142868200@x","call_id":"e2"}"#;
    let o = run(
        &[
            "eval",
            p(&d),
            "-",
            "--explain",
            "--at",
            "2026-11-30T10:00:00Z",
        ],
        Some(q),
    );
    assert_eq!(o.status.code(), Some(0));
    let err = text(&o.stderr);
    assert!(
        err.contains("lcr: `international` prices 447700900123 for a 60 s call, max_rate 0.25:"),
        "{err}"
    );
    assert!(
        err.contains("#1 globex: cost 0.0400 = prefix 447 at "),
        "{err}"
    );
    assert!(
        err.contains("rates/globex.csv:3 (0.0400/min, billed 1/1)"),
        "{err}"
    );
    assert!(
        err.contains("#2 acme: cost 0.0450 = prefix 447 at "),
        "{err}"
    );
    assert!(err.contains("-- acme: left out: no row in effect at the decision time for any prefix of 33142868200 (the longest, 33, is in effect until 2020-01-01)"), "{err}");
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 2);
    assert!(
        out.lines().nth(1).unwrap().contains(r#""code":404"#),
        "{out}"
    );
}

#[test]
fn rates_prints_the_row_per_trunk() {
    let d = dir(ACME, GLOBEX);
    let o = run(
        &[
            "rates",
            "+447700900123",
            p(&d),
            "--at",
            "2026-11-30T10:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("acme: prefix 447 at "), "{out}");
    assert!(
        lines[0].ends_with("rates/acme.csv:3: 0.0450/min, billed 60/60 \"United Kingdom Mobile\""),
        "{out}"
    );
    assert!(
        lines[1].contains("also prefix 4477 at ") && lines[1].contains("from 2026-12-01"),
        "{out}"
    );
    assert!(lines[2].starts_with("globex: prefix 447 at "), "{out}");
    let o = run(
        &[
            "rates",
            "447700900123",
            p(&d),
            "--at",
            "2026-12-01T00:00:00Z",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value =
        serde_json::from_str(text(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["trunk"], "acme");
    assert_eq!(v["row"]["prefix"], "4477");
    assert_eq!(v["row"]["line"], 4);
    let o = run(&["rates", "999", p(&d)], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("acme: no row in effect for 999"));
}

#[test]
fn diff_shows_the_calls_a_new_deck_moves() {
    let old = dir(ACME, GLOBEX);
    let new = dir(ACME, &GLOBEX.replace("447,0.0400", "447,0.0500"));
    let o = run(&["diff", p(&old), p(&new)], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(text(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["old"]["routes"][0]["dst_uri"], "sip:203.0.113.20:5060");
    assert_eq!(v["new"]["routes"][0]["dst_uri"], "sip:198.51.100.10:5060");
    assert!(text(&o.stderr).contains("1 of 1 queries change"));
}

fn wait_rule_order(s: &Server, want: &str) {
    let q = br#"{"ruri":"sip:+447700900123@x","call_id":"r1"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.conn().post("/rtjson", "text/plain", q);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let first = v["routes"][0]["dst_uri"].as_str().unwrap_or("").to_owned();
        if first == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {first}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_edited_deck_reloads_and_a_broken_one_keeps_the_last_good_table() {
    // No dated rows: the order must not depend on the test's clock.
    let acme = "prefix,rate\n44,0.0120\n447,0.0450\n";
    let d = dir(acme, GLOBEX);
    let tmp = d.path().to_path_buf();
    let mut s = Server::start(&[], &[]);
    // Move the prepared routes.d into the server's.
    for f in ["10-lcr.toml", "rates/acme.csv", "rates/globex.csv"] {
        let to = s.dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(tmp.join(f), &to).unwrap();
    }
    s.signal("HUP");
    s.wait_generation(2);
    wait_rule_order(&s, "sip:203.0.113.20:5060");
    s.wait_log("for rate deck changes", Duration::from_secs(5));

    // acme becomes cheaper: an edit inside rates/ reloads.
    let acme_csv = s.dir.join("rates/acme.csv");
    atomic_write(&acme_csv, "prefix,rate\n44,0.0120\n447,0.0100\n");
    s.wait_generation(3);
    wait_rule_order(&s, "sip:198.51.100.10:5060");

    // A broken deck: degraded, the last good table serves.
    // Written atomically: a plain write truncates first, and a reload that
    // reads the empty file in between loads it (generation 4, seen once).
    atomic_write(&acme_csv, "prefix,rate\n447,cheap\n");
    let h = s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    assert_eq!(h["generation"], 3);
    let err = h["last_error"].as_str().unwrap();
    assert!(
        err.contains("rates/acme.csv:2:5: error: rate \"cheap\""),
        "{err}"
    );
    wait_rule_order(&s, "sip:198.51.100.10:5060");

    // Fixed: serves the new prices.
    atomic_write(&acme_csv, "prefix,rate\n447,0.0900\n");
    s.wait_health("ok", Duration::from_secs(5), |h| {
        h["status"] == "ok" && h["generation"] == 4
    });
    wait_rule_order(&s, "sip:203.0.113.20:5060");
    let _ = Path::new("");
}

#[test]
fn decks_behind_symbolic_links_must_stay_inside_routes_d() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.csv"), GLOBEX).unwrap();
    let d = dir(ACME, GLOBEX);
    // A link out of routes.d, a directory, and a missing file.
    std::os::unix::fs::symlink(
        outside.path().join("evil.csv"),
        d.path().join("rates/evil.csv"),
    )
    .unwrap();
    std::fs::create_dir(d.path().join("rates/dir.csv")).unwrap();
    std::fs::write(
        d.path().join("20-more.toml"),
        "[trunks.evil]\ngateways = [\"sip:192.0.2.1\"]\nrates = \"rates/evil.csv\"\n\
         [trunks.dir]\ngateways = [\"sip:192.0.2.2\"]\nrates = \"rates/dir.csv\"\n\
         [trunks.gone]\ngateways = [\"sip:192.0.2.3\"]\nrates = \"rates/gone.csv\"\n",
    )
    .unwrap();
    let o = run(&["check", p(&d)], None);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("20-more.toml:3:9: error: rates \"rates/evil.csv\": ")
            && err.contains("leaves the routes.d directory through a symbolic link"),
        "{err}"
    );
    assert!(
        err.contains("20-more.toml:6:9: error: rates \"rates/dir.csv\": ")
            && err.contains("dir.csv is not a file"),
        "{err}"
    );
    assert!(
        err.contains("20-more.toml:9:9: error: rates \"rates/gone.csv\": ")
            && err.contains("gone.csv does not exist"),
        "{err}"
    );
}

#[test]
fn decks_in_a_configmap_layout_are_inside_routes_d() {
    // kubelet's layout: ..2026_a/{10-lcr.toml,acme.csv,globex.csv}, ..data -> ..2026_a,
    // and a link per key.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("routes.d");
    let data = d.join("..2026_a");
    std::fs::create_dir_all(&data).unwrap();
    let routes = ROUTES
        .replace("rates/acme.csv", "acme.csv")
        .replace("rates/globex.csv", "globex.csv");
    std::fs::write(data.join("10-lcr.toml"), routes).unwrap();
    std::fs::write(data.join("acme.csv"), ACME).unwrap();
    std::fs::write(data.join("globex.csv"), GLOBEX).unwrap();
    std::os::unix::fs::symlink("..2026_a", d.join("..data")).unwrap();
    for f in ["10-lcr.toml", "acme.csv", "globex.csv"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), d.join(f)).unwrap();
    }
    let o = run(&["test", d.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}
