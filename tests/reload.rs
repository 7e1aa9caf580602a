//! End-to-end tests of hot reload (SPEC §5): the built binary serving a
//! temporary routes.d that the tests rewrite the ways editors, config tools
//! and Kubernetes do, checked through /health, /metrics and the answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Conn, QUERY, Server, atomic_write, metric, table};

#[test]
fn reloads_on_edit_rename_create_and_delete() {
    let s = Server::start(&[("10-routes.toml", &table("alpha", 1))], &[]);
    let main = s.dir.join("10-routes.toml");
    assert_eq!(s.rule(), "alpha");

    // In-place write (truncate + write).
    std::fs::write(&main, table("beta", 2)).unwrap();
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");

    // Atomic rename over the file.
    atomic_write(&main, &table("gamma", 3));
    s.wait_generation(3);
    assert_eq!(s.rule(), "gamma");

    // A new file with a rule that wins (lower priority value).
    let extra = s.dir.join("20-extra.toml");
    std::fs::write(
        &extra,
        "[[rules]]\nname = \"delta\"\npriority = 10\nthen.reject = { code = 480, reason = \"Delta\" }\n",
    )
    .unwrap();
    s.wait_generation(4);
    assert_eq!(s.rule(), "delta");
    assert_eq!(s.health()["rules"], 3);

    // Deleting it restores gamma.
    std::fs::remove_file(&extra).unwrap();
    let h = s.wait_generation(5);
    assert_eq!(h["rules"], 2);
    assert_eq!(s.rule(), "gamma");

    // Editor leftovers and vim's probe file change nothing.
    std::fs::write(s.dir.join("4913"), "x").unwrap();
    std::fs::write(s.dir.join(".10-routes.toml.swp"), "garbage [[").unwrap();
    std::fs::remove_file(s.dir.join("4913")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let h = s.health();
    assert_eq!(h["generation"], 5, "unchanged content does not swap");
    assert_eq!(h["status"], "ok");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_table_generation"), 5.0);
    let reloads = metric(&m, "c4route_reloads_total{result=\"ok\"}");
    assert!(reloads >= 4.0);
    // Reading routes.d must not itself trigger another reload (notify
    // reports IN_OPEN events too).
    std::thread::sleep(Duration::from_millis(300));
    let again = metric(&s.metrics(), "c4route_reloads_total{result=\"ok\"}");
    assert_eq!(again, reloads, "reloads keep happening with no change");
}

#[test]
fn reloads_on_configmap_symlink_swap() {
    // The layout kubelet gives a ConfigMap volume:
    //   ..2026_a/10-routes.toml, ..data -> ..2026_a, 10-routes.toml -> ..data/10-routes.toml
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("routes.d");
    std::fs::create_dir_all(dir.join("..2026_a")).unwrap();
    std::fs::write(dir.join("..2026_a/10-routes.toml"), table("alpha", 1)).unwrap();
    std::os::unix::fs::symlink("..2026_a", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/10-routes.toml", dir.join("10-routes.toml")).unwrap();
    let s = Server::start_in(tmp, dir.clone(), &[]);
    assert_eq!(s.rule(), "alpha");

    // kubelet's atomic update: new timestamped dir, new link, rename over ..data.
    std::fs::create_dir_all(dir.join("..2026_b")).unwrap();
    std::fs::write(dir.join("..2026_b/10-routes.toml"), table("beta", 2)).unwrap();
    std::os::unix::fs::symlink("..2026_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_a")).unwrap();
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");
}

#[test]
fn sighup_reloads_without_a_watcher() {
    let mut s = Server::start(&[("10-routes.toml", &table("alpha", 1))], &["--no-watch"]);
    std::fs::write(s.dir.join("10-routes.toml"), table("beta", 2)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.health()["generation"], 1, "--no-watch ignores the change");
    assert_eq!(s.rule(), "alpha");
    s.signal("HUP");
    s.wait_generation(2);
    assert_eq!(s.rule(), "beta");
    s.wait_log("routes.d reloaded", Duration::from_secs(5));
    // SIGHUP with nothing changed: no swap.
    s.signal("HUP");
    s.wait_log("unchanged", Duration::from_secs(5));
    assert_eq!(s.health()["generation"], 2);
}

#[test]
fn broken_file_keeps_last_good_table_until_fixed() {
    let alpha = table("alpha", 1);
    let mut s = Server::start(&[("10-routes.toml", &alpha)], &[]);
    let main = s.dir.join("10-routes.toml");

    atomic_write(
        &main,
        &format!("{alpha}\n[[rules]]\nname = \"broken\"\nthen.trunks = [\"nope\"]\n"),
    );
    let h = s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    assert_eq!(h["generation"], 1);
    assert_eq!(h["rules"], 2);
    let err = h["last_error"].as_str().expect("last_error is a string");
    assert!(err.contains("10-routes.toml:"), "{err}");
    assert!(err.contains("error:"), "{err}");
    assert_eq!(s.rule(), "alpha", "the last good table keeps serving");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_reloads_total{result=\"failed\"}"), 1.0);
    assert_eq!(metric(&m, "c4route_config_last_reload_success"), 0.0);
    s.wait_log("10-routes.toml:", Duration::from_secs(5));
    s.wait_log("last good table", Duration::from_secs(5));

    // Restoring the served content: healthy again, nothing to swap.
    atomic_write(&main, &alpha);
    let h = s.wait_health("ok again", Duration::from_secs(5), |h| h["status"] == "ok");
    assert_eq!(h["generation"], 1);
    assert!(h["last_error"].is_null());

    // Broken again, then fixed with new content: swaps.
    std::fs::write(&main, "[[rules]\n").unwrap();
    s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    std::fs::write(&main, table("beta", 2)).unwrap();
    let h = s.wait_health("recovered", Duration::from_secs(5), |h| h["status"] == "ok");
    assert_eq!(h["generation"], 2);
    assert_eq!(s.rule(), "beta");
    assert_eq!(
        metric(&s.metrics(), "c4route_config_last_reload_success"),
        1.0
    );
}

#[test]
fn rule_hit_series_of_removed_rules_leave_metrics_on_reload() {
    let alpha = table("alpha", 1);
    let s = Server::start(&[("10-routes.toml", &alpha)], &[]);
    let mut c = s.conn();
    let barred = br#"{"to_uri":"sip:0666123@example.com","call_id":"serve-test-2"}"#;
    for _ in 0..2 {
        assert_eq!(s.rule(), "alpha");
    }
    let r = c.post("/kamailio/rtjson", "application/json", barred);
    assert_eq!(r.json()["rtjson"]["rule"], "alpha-barred");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_rule_hits_total{rule=\"alpha\"}"), 2.0);
    assert_eq!(
        metric(&m, "c4route_rule_hits_total{rule=\"alpha-barred\"}"),
        1.0
    );

    // `alpha-barred` leaves the table, `alpha` stays.
    let without_barred = alpha
        .split("[[rules]]\nname = \"alpha-barred\"")
        .next()
        .unwrap()
        .to_owned();
    assert!(!without_barred.contains("alpha-barred"));
    atomic_write(&s.dir.join("10-routes.toml"), &without_barred);
    let h = s.wait_generation(2);
    assert_eq!(h["rules"], 1);
    let m = s.metrics();
    assert!(
        !m.contains("rule=\"alpha-barred\""),
        "a removed rule keeps its series:\n{m}"
    );
    assert_eq!(
        metric(&m, "c4route_rule_hits_total{rule=\"alpha\"}"),
        2.0,
        "a rule that stays keeps its count"
    );
    assert_eq!(s.rule(), "alpha");
    assert_eq!(
        metric(&s.metrics(), "c4route_rule_hits_total{rule=\"alpha\"}"),
        3.0
    );

    // Back again: it starts from zero (no series until its first hit).
    atomic_write(&s.dir.join("10-routes.toml"), &alpha);
    s.wait_generation(3);
    assert!(!s.metrics().contains("rule=\"alpha-barred\""));
    let r = c.post("/kamailio/rtjson", "application/json", barred);
    assert_eq!(r.json()["rtjson"]["rule"], "alpha-barred");
    assert_eq!(
        metric(
            &s.metrics(),
            "c4route_rule_hits_total{rule=\"alpha-barred\"}"
        ),
        1.0
    );
}

#[test]
fn many_reloads_under_load_never_fail_or_mix() {
    const RELOADS: u64 = 200;
    let (a, b) = (table("alpha", 1), table("beta", 2));
    let s = Server::start(&[("10-routes.toml", &a)], &["--reload-debounce", "2ms"]);
    let main = s.dir.join("10-routes.toml");
    let answer = || {
        s.conn()
            .post("/kamailio/rtjson", "text/plain", QUERY.as_bytes())
            .body
    };
    let body_a = answer();
    atomic_write(&main, &b);
    s.wait_generation(2);
    let body_b = answer();
    assert_ne!(body_a, body_b);
    assert!(body_a.contains("alpha") && !body_a.contains("beta"));
    let expected = Arc::new([body_a, body_b]);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, answered, expected, addr) =
                (stop.clone(), answered.clone(), expected.clone(), s.addr);
            std::thread::spawn(move || -> Result<(), String> {
                let keep_alive = i % 2 == 0;
                let mut c = Conn::open(addr);
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut seen = [0usize; 2];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if !keep_alive {
                        c = Conn::open(addr);
                    }
                    let path = if i < 2 {
                        "/kamailio/rtjson"
                    } else {
                        "/1.0/kamailio/routing"
                    };
                    let r = c
                        .try_request("POST", path, Some("text/plain"), QUERY.as_bytes())
                        .map_err(|e| format!("client {i}: request failed: {e}"))?;
                    if r.status != 200 {
                        return Err(format!("client {i}: status {}: {}", r.status, r.body));
                    }
                    match expected.iter().position(|e| *e == r.body) {
                        Some(k) => seen[k] += 1,
                        None => {
                            return Err(format!("client {i}: mixed or unknown answer {}", r.body));
                        }
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();

    let started = Instant::now();
    for n in 0..RELOADS {
        let generation = 3 + n;
        atomic_write(&main, if n % 2 == 0 { &a } else { &b });
        s.wait_generation(generation);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "reloads too slow"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .expect("client thread")
            .expect("no failed or mixed answers");
    }
    let n = answered.load(Ordering::Relaxed);
    assert!(n >= 200, "only {n} answers during {RELOADS} reloads");
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_table_generation"), (RELOADS + 2) as f64);
    assert_eq!(metric(&m, "c4route_reloads_total{result=\"failed\"}"), 0.0);
    assert_eq!(
        metric(&m, "c4route_requests_total{outcome=\"bad_request\"}"),
        0.0
    );
}

const LCR: &str = r#"
[trunks.a]
gateways = ["sip:198.51.100.10:5060"]
rates = "rates/a.csv"

[trunks.b]
gateways = ["sip:203.0.113.20:5060"]
rates = "rates/b.csv"

[[rules]]
name = "lcr"
match.ruri.prefix = ["+"]
then.lcr = ["a", "b"]
"#;
const A: &str = "sip:198.51.100.10:5060";
const B: &str = "sip:203.0.113.20:5060";

/// Writes decks pricing +44 at `a` and `b` into `dir`.
fn decks(dir: &std::path::Path, a: &str, b: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("a.csv"), format!("prefix,rate\n44,{a}\n")).unwrap();
    std::fs::write(dir.join("b.csv"), format!("prefix,rate\n44,{b}\n")).unwrap();
}

/// Waits (at most 5 s) until the cheapest carrier for +44 is `want`.
fn wait_cheapest(s: &Server, want: &str, what: &str) {
    let q = br#"{"ruri":"sip:+447700900123@x","call_id":"r1"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.conn().post("/rtjson", "text/plain", q);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let first = v["routes"][0]["dst_uri"].as_str().unwrap_or("").to_owned();
        if first == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {first}, want {want}; /health: {}",
            s.health()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn deck_edits_reload_after_the_rates_folder_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("routes.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("10-lcr.toml"), LCR).unwrap();
    let rates = dir.join("rates");
    decks(&rates, "0.0100", "0.0200");
    let mut s = Server::start_in(tmp, dir.clone(), &[]);
    s.wait_log("for rate deck changes", Duration::from_secs(5));
    wait_cheapest(&s, A, "at start");

    // A deploy that swaps the whole folder: reloads (a change in routes.d)…
    decks(&dir.join("rates.new"), "0.0500", "0.0200");
    std::fs::rename(&rates, dir.join("rates.old")).unwrap();
    std::fs::rename(dir.join("rates.new"), &rates).unwrap();
    wait_cheapest(&s, B, "after the folder swap");
    // …and an edit inside the new folder reloads too.
    atomic_write(&rates.join("a.csv"), "prefix,rate\n44,0.0010\n");
    wait_cheapest(&s, A, "after an edit in the swapped folder");

    // Deleted and made again within one debounce window.
    std::fs::remove_dir_all(&rates).unwrap();
    decks(&rates, "0.0500", "0.0200");
    wait_cheapest(&s, B, "after rm -rf and mkdir");
    std::fs::write(rates.join("b.csv"), "prefix,rate\n44,0.5000\n").unwrap();
    wait_cheapest(&s, A, "after an edit in the re-made folder");
    // A broken deck in it is reported, and the last good table serves.
    std::fs::write(rates.join("a.csv"), "prefix,rate\n44,cheap\n").unwrap();
    let h = s.wait_health("degraded", Duration::from_secs(5), |h| {
        h["status"] == "degraded"
    });
    assert!(
        h["last_error"]
            .as_str()
            .unwrap()
            .contains("rates/a.csv:2:4"),
        "{h}"
    );
    wait_cheapest(&s, A, "the last good table");
}

#[test]
fn a_directory_that_keeps_changing_reloads_within_debounce_max() {
    let main_file = "10-routes.toml";
    let s = Server::start(
        &[(main_file, &table("alpha", 1))],
        &["--reload-debounce", "250ms", "--debounce-max", "1s"],
    );
    let path = s.dir.join(main_file);
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Every 100 ms for 3 s: never a quiet 250 ms.
            for i in 0..30u8 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::fs::write(&path, table(&format!("t{i}"), 2 + i % 2)).unwrap();
                if i == 0 {
                    let _ = started_tx.send(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let first_change = started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the writer started");
    let h = s.wait_health(
        "a reload while the file keeps changing",
        Duration::from_secs(5),
        |h| h["generation"].as_u64() >= Some(2),
    );
    let took = first_change.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        took < Duration::from_millis(2000),
        "first reload {took:?} after the first change (debounce-max 1s); {h}"
    );
}
