//! Quality-aware order through `c4route serve` (SPEC §9.3): call events
//! feed each gateway's window per destination group; a gateway whose ASR
//! falls under `min_asr` after `min_calls` attempts goes behind the
//! others, `GET /gateways` and the metrics show why, and it comes back as
//! its window fills with good calls.

use std::time::Duration;

use serde_json::Value;

use crate::util::{Server, metric};

const ROUTES: &str = r#"
[defaults.quality]
window = "30s"
min_calls = 4
min_asr = 0.5

[trunks.a]
gateways = ["sip:192.0.2.1"]
[trunks.b]
gateways = ["sip:192.0.2.2"]

[[rules]]
name = "uk"
match.to.prefix = ["44"]
then.trunks = ["a", "b"]

[[rules]]
name = "us"
match.to.prefix = ["1"]
then.trunks = ["a", "b"]
"#;

fn route(s: &Server, to: &str, call_id: &str) -> Vec<String> {
    let body = format!(r#"{{"to_uri":"sip:{to}@x","call_id":"{call_id}"}}"#);
    let r = s
        .conn()
        .post("/kamailio/rtjson", "application/json", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rtjson"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst_uri"].as_str().unwrap().to_owned())
        .collect()
}

fn event(s: &Server, body: String) {
    let r = s
        .conn()
        .post("/kamailio/event", "application/json", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.body);
}

/// One call to `to`: gateway 1 answers 480 (`fail`) or the call is answered
/// there and ends after 30 s.
fn call(s: &Server, to: &str, id: &str, fail: bool) {
    let routes = route(s, to, id);
    let first = routes[0].clone();
    if fail {
        event(
            s,
            format!(r#"{{"event":"failed","call_id":"{id}","dst_uri":"{first}","code":480}}"#),
        );
    } else {
        event(
            s,
            format!(
                r#"{{"event":"ended","call_id":"{id}","dst_uri":"{first}","pdd_ms":800,"duration_s":30}}"#
            ),
        );
    }
}

fn quality_of(s: &Server, key: &str) -> Vec<Value> {
    let r = s.conn().get("/gateways");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .map(|g| g["quality"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn wait_first(s: &Server, to: &str, want: &str) -> bool {
    for i in 0..40 {
        if route(s, to, &format!("probe-{to}-{i}"))[0] == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_poor_gateway_goes_behind_for_its_group_only_and_comes_back() {
    let mut s = Server::start(&[("10.toml", ROUTES)], &[]);
    let g1 = "sip:192.0.2.1:5060;transport=udp";
    // Three failures: fewer than min_calls, no judgement yet.
    for i in 0..3 {
        call(&s, "4420", &format!("f{i}"), true);
    }
    assert_eq!(route(&s, "4420", "q0")[0], "sip:192.0.2.1");
    // The fourth: ASR 0 < 0.5 over 4 attempts → poor for "uk".
    call(&s, "4420", "f3", true);
    assert!(
        wait_first(&s, "4420", "sip:192.0.2.2"),
        "gateway 1 should go behind for uk"
    );
    // Behind, never removed; and only for its group.
    assert_eq!(route(&s, "4420", "q1"), ["sip:192.0.2.2", "sip:192.0.2.1"]);
    assert_eq!(route(&s, "1202", "q2")[0], "sip:192.0.2.1");
    let line = s.wait_log("gateway poor for uk", Duration::from_secs(2));
    assert!(line.contains("192.0.2.1"), "{line}");
    let q = quality_of(&s, g1);
    let uk = q.iter().find(|g| g["group"] == "uk").expect("uk stats");
    assert_eq!(uk["attempts"], 4, "{uk}");
    assert_eq!(uk["asr"], 0.0, "{uk}");
    assert_eq!(uk["poor"], true, "{uk}");
    // The failures were 480s: no §8 report counted them as failures.
    let m = s.metrics();
    assert_eq!(metric(&m, "c4route_quality_poor_pairs"), 1.0, "{m}");
    assert!(m.contains("c4route_quality_verdicts_total{gateway=\"sip:192.0.2.1:5060;transport=udp\",verdict=\"poor\"} 1"), "{m}");

    // Good calls at gateway 1 (reached on a failover from gateway 2) fill
    // its window: at 4 answered of 8 the ASR is no longer under 0.5, and
    // gateway 1 is first again.
    let mut good = 0;
    while route(&s, "4420", &format!("w{good}"))[0] == "sip:192.0.2.2" {
        assert!(good < 6, "gateway 1 should come back as its window fills");
        let id = format!("g{good}");
        assert_eq!(route(&s, "4420", &id)[0], "sip:192.0.2.2");
        event(
            &s,
            format!(
                r#"{{"event":"failed","call_id":"{id}","dst_uri":"sip:192.0.2.2","code":486,"next":"sip:192.0.2.1"}}"#
            ),
        );
        event(
            &s,
            format!(
                r#"{{"event":"ended","call_id":"{id}","dst_uri":"sip:192.0.2.1","pdd_ms":700,"duration_s":40}}"#
            ),
        );
        good += 1;
        // The state task applies the attempt right after the 204.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(good, 4, "4 answered of 8 attempts is an ASR of 0.5");
    let q = quality_of(&s, g1);
    let uk = q.iter().find(|g| g["group"] == "uk").expect("uk stats");
    assert_eq!(uk["poor"], false, "{uk}");
    assert_eq!(uk["attempts"], 8, "{uk}");
    assert_eq!(uk["answered"], 4, "{uk}");
    assert_eq!(uk["acd_s"], 40.0, "{uk}");
    assert_eq!(uk["pdd_ms"], 700, "{uk}");
}
