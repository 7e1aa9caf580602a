//! SPEC §3's hard rules for the answer, each pinned by its own test, because
//! Kamailio's parsers (srjson, jansson) are unforgiving.

use std::fmt;
use std::time::SystemTime;

use c4route_core::{Query, RouteTable, Sources, Wrap};
use proptest::prelude::*;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fn table(toml: &str) -> RouteTable {
    let mut s = Sources::new();
    s.add("t.toml", toml);
    s.build().unwrap_or_else(|e| panic!("{e}"))
}

/// One trunk `a` and one rule `r` routing to it, plus `extra` lines for the rule.
fn one_rule(extra: &str) -> RouteTable {
    table(&format!(
        "[trunks.a]\ngateways = [\"sip:192.0.2.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\n{extra}\n"
    ))
}

/// The `key` (`uri`, `dst_uri`) of every route of the answer to `query`.
fn route_values(t: &RouteTable, query: &str, key: &str) -> Vec<String> {
    let v = strict(&answer_bytes(t, query, Wrap::Bare));
    v["routes"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| r[key].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn answer_bytes(t: &RouteTable, query: &str, wrap: Wrap) -> Vec<u8> {
    let q = Query::from_json(query.as_bytes()).unwrap();
    t.route(&q, SystemTime::now()).to_json(wrap)
}

/// Parses strictly: fails on duplicate keys, non-lower-case keys and trailing data.
fn strict(bytes: &[u8]) -> Value {
    struct Strict;
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
            Err(E::custom("floats are never sent"))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.into()))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Value, A::Error> {
            let mut v = Vec::new();
            while let Some(x) = s.next_element_seed(StrictSeed)? {
                v.push(x);
            }
            Ok(Value::Array(v))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = m.next_key::<String>()? {
                if k != k.to_lowercase() {
                    return Err(de::Error::custom(format!("key {k} is not lower-case")));
                }
                let v = m.next_value_seed(StrictSeed)?;
                if out.insert(k.clone(), v).is_some() {
                    return Err(de::Error::custom(format!("duplicate key {k}")));
                }
            }
            Ok(Value::Object(out))
        }
    }
    struct StrictSeed;
    impl<'de> de::DeserializeSeed<'de> for StrictSeed {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Strict)
        }
    }
    assert!(!bytes.starts_with(b"\xEF\xBB\xBF"), "BOM");
    assert!(std::str::from_utf8(bytes).is_ok(), "not UTF-8");
    assert!(!bytes.contains(&b'\n'), "answer is not a single line");
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let v = d.deserialize_any(Strict).unwrap();
    d.end().unwrap();
    v
}

const FULL: &str = r#"
[defaults]
fr_timer = 5000
fr_inv_timer = 30000
max_routes = 3

[trunks.acme]
gateways = ["sip:198.51.100.10:5060", { uri = "sip:198.51.100.11:5061;transport=tls", priority = 1 }]
headers = ["X-Carrier: acme", "X-Caller: {from.user} {from.display}"]
branch_flags = 8
fr_timer = 3000

[trunks.globex]
gateways = ["sip:203.0.113.20", "sip:203.0.113.21", "sip:203.0.113.22"]
proxy = "sip:192.0.2.99:5060;lr"
socket = "udp:192.0.2.20:5060"
strip = 2
prefix = "9"

[[rules]]
name = "uk"
match.to.prefix = ["07", "+44"]
then.trunks = ["acme", "globex"]
then.rewrite.ruri.user = { strip = 1, prefix = "+44" }
then.rewrite.to.user = { regex = '^0(\d+)$', replace = '+44$1' }
then.rewrite.from.display = "Acme {from.display}"
then.rewrite.from.uri = "sip:{from.user}@acme.example"
then.headers = ["X-Route: {rule} via {trunk}"]

[[rules]]
name = "plain"
match.to.prefix = ["1"]
then.trunks = ["acme"]

[[rules]]
name = "par"
match.to.prefix = ["33"]
then.trunks = ["globex"]
then.routing = "parallel"

[[rules]]
name = "blocked"
match.source = ["192.0.2.66"]
then.reject = { code = 403, reason = "Forbidden Here" }
"#;

const UK: &str = r#"{"to_uri":"sip:07700900123@example.com","from_uri":"\"Alice Smith\" <sip:alice@pbx.example>","call_id":"abc"}"#;

#[test]
fn routed_answer_shape() {
    let t = table(FULL);
    let v = strict(&answer_bytes(&t, UK, Wrap::Rtjson));
    let doc = &v["rtjson"];
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_eq!(doc["success"], true);
    assert_eq!(doc["version"], "1.0");
    assert_eq!(doc["routing"], "serial");
    assert_eq!(doc["rule"], "uk");
    let routes = doc["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3, "max_routes = 3 caps the answer");
    let r0 = &routes[0];
    assert_eq!(r0["uri"], "sip:+447700900123@198.51.100.10:5060");
    assert_eq!(r0["dst_uri"], "sip:198.51.100.10:5060");
    assert_eq!(r0["path"], "");
    assert_eq!(r0["socket"], "");
    assert_eq!(r0["branch_flags"], 8);
    assert_eq!(r0["fr_timer"], 3000);
    assert_eq!(r0["fr_inv_timer"], 30000);
    assert_eq!(r0["headers"]["from"]["display"], "\"Acme Alice Smith\"");
    assert_eq!(r0["headers"]["from"]["uri"], "sip:alice@acme.example");
    assert_eq!(r0["headers"]["to"]["display"], "");
    assert_eq!(r0["headers"]["to"]["uri"], "sip:+447700900123@example.com");
    assert_eq!(
        r0["headers"]["extra"],
        "X-Route: uk via acme\r\nX-Carrier: acme\r\nX-Caller: alice Alice Smith\r\n"
    );
    // Secondary priority of acme comes second.
    assert_eq!(routes[1]["dst_uri"], "sip:198.51.100.11:5061;transport=tls");
    assert_eq!(
        routes[1]["uri"],
        "sip:+447700900123@198.51.100.11:5061;transport=tls"
    );
    // globex: strip 2, prefix 9, proxy as dst_uri, socket, default timers.
    let r2 = &routes[2];
    assert_eq!(r2["dst_uri"], "sip:192.0.2.99:5060;lr");
    assert_eq!(r2["socket"], "udp:192.0.2.20:5060");
    assert_eq!(r2["fr_timer"], 5000);
    assert!(
        r2["uri"]
            .as_str()
            .unwrap()
            .starts_with("sip:947700900123@203.0.113.2")
    );
    assert_eq!(r2["headers"]["extra"], "X-Route: uk via globex\r\n");
    // Bare form is the inner object.
    let bare = strict(&answer_bytes(&t, UK, Wrap::Bare));
    assert_eq!(&bare, doc);
}

#[test]
fn key_order_is_stable_and_every_route_is_complete() {
    let t = table(FULL);
    let s = String::from_utf8(answer_bytes(&t, UK, Wrap::Bare)).unwrap();
    assert!(s.starts_with(
        r#"{"success":true,"version":"1.0","routing":"serial","rule":"uk","routes":[{"uri":"#
    ));
    let v = strict(s.as_bytes());
    for r in v["routes"].as_array().unwrap() {
        for k in [
            "uri",
            "dst_uri",
            "path",
            "socket",
            "headers",
            "branch_flags",
            "fr_timer",
            "fr_inv_timer",
        ] {
            assert!(r.get(k).is_some(), "missing {k}");
        }
        for p in ["from", "to"] {
            assert!(r["headers"][p]["display"].is_string());
            assert!(r["headers"][p]["uri"].is_string());
        }
        for k in ["branch_flags", "fr_timer", "fr_inv_timer"] {
            assert!(r[k].is_u64() && r[k].as_u64().unwrap() <= u64::from(u32::MAX));
        }
    }
}

#[test]
fn reject_and_no_match() {
    let t = table(FULL);
    let v = strict(&answer_bytes(
        &t,
        r#"{"source_ip":"192.0.2.66"}"#,
        Wrap::Rtjson,
    ));
    assert_eq!(
        v,
        serde_json::json!({"rtjson":{"success":false,"code":403,"reason":"Forbidden Here","rule":"blocked"}})
    );
    let s = answer_bytes(&t, r#"{"to_uri":"sip:999@x"}"#, Wrap::Rtjson);
    assert_eq!(
        String::from_utf8(s).unwrap(),
        r#"{"rtjson":{"success":false,"code":404,"reason":"Not Found","rule":null}}"#
    );
}

#[test]
fn parallel_routes_carry_no_timers_or_headers() {
    let t = table(FULL);
    let v = strict(&answer_bytes(
        &t,
        r#"{"to_uri":"sip:331@x","call_id":"k"}"#,
        Wrap::Bare,
    ));
    assert_eq!(v["routing"], "parallel");
    for r in v["routes"].as_array().unwrap() {
        assert_eq!(r["fr_timer"], 0);
        assert_eq!(r["headers"]["extra"], "");
        assert_eq!(
            r["headers"]["from"],
            serde_json::json!({"display":"","uri":""})
        );
    }
}

#[test]
fn gateway_order_is_seeded_by_call_id() {
    let t = table(FULL);
    let order = |cid: &str| {
        route_values(
            &t,
            &format!(r#"{{"to_uri":"sip:331@x","call_id":"{cid}"}}"#),
            "uri",
        )
    };
    assert_eq!(order("same"), order("same"));
    let distinct: std::collections::HashSet<Vec<String>> =
        (0..50).map(|i| order(&format!("call-{i}"))).collect();
    assert!(
        distinct.len() >= 4,
        "equal weights should shuffle: {} orders",
        distinct.len()
    );
}

#[test]
fn weights_shape_the_order() {
    let t = table(
        r#"
        [trunks.w]
        gateways = [{ uri = "sip:192.0.2.1", weight = 9 }, { uri = "sip:192.0.2.2", weight = 1 }, { uri = "sip:192.0.2.3", weight = 0 }, { uri = "sip:192.0.2.4", enabled = false }]
        [[rules]]
        name = "r"
        then.trunks = ["w"]
    "#,
    );
    let mut first_is_heavy = 0;
    for i in 0..1000 {
        let v = strict(&answer_bytes(
            &t,
            &format!(r#"{{"call_id":"c{i}"}}"#),
            Wrap::Bare,
        ));
        let r = v["routes"].as_array().unwrap();
        assert_eq!(r.len(), 3, "disabled gateway left out");
        assert_eq!(r[2]["dst_uri"], "sip:192.0.2.3", "weight 0 comes last");
        if r[0]["dst_uri"] == "sip:192.0.2.1" {
            first_is_heavy += 1;
        }
    }
    assert!(
        (850..=950).contains(&first_is_heavy),
        "{first_is_heavy} of 1000"
    );
}

#[test]
fn display_names_are_quoted_only_when_needed() {
    let t = one_rule(
        "then.rewrite.from.display = \"{from.display}\"\nthen.rewrite.to.display = \"Bob\"",
    );
    let v = strict(&answer_bytes(
        &t,
        r#"{"from_name":"\"Al \\\"the\\\" Pal\"","to_uri":"sip:b@x"}"#,
        Wrap::Bare,
    ));
    assert_eq!(
        v["routes"][0]["headers"]["from"]["display"],
        r#""Al \"the\" Pal""#
    );
    assert_eq!(v["routes"][0]["headers"]["to"]["display"], "Bob");
}

#[test]
fn long_users_are_refused_not_truncated() {
    let t = table(FULL);
    let user = "1".repeat(1100);
    let v = strict(&answer_bytes(
        &t,
        &format!(r#"{{"to_uri":"sip:{user}@x"}}"#),
        Wrap::Bare,
    ));
    assert_eq!(v["success"], false);
    assert_eq!(v["code"], 414);
    let user = "1".repeat(900);
    let v = strict(&answer_bytes(
        &t,
        &format!(r#"{{"to_uri":"sip:{user}@x"}}"#),
        Wrap::Bare,
    ));
    assert_eq!(v["success"], true);
    for r in v["routes"].as_array().unwrap() {
        assert!(r["uri"].as_str().unwrap().len() <= 1023);
        assert!(r["dst_uri"].as_str().unwrap().len() <= 1023);
        // c4route never sets a Path (SPEC §3 allows up to 255 bytes).
        assert_eq!(r["path"], "");
    }
}

#[test]
fn max_routes_defaults_to_ten() {
    let gws: Vec<String> = (1..=14).map(|i| format!("\"sip:192.0.2.{i}\"")).collect();
    let t = table(&format!(
        "[trunks.many]\ngateways = [{}]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"many\"]\n",
        gws.join(",")
    ));
    let v = strict(&answer_bytes(&t, "{}", Wrap::Bare));
    assert_eq!(v["routes"].as_array().unwrap().len(), 10);
}

#[test]
fn all_gateways_disabled_is_a_503_not_an_empty_route_list() {
    let t = table(
        r#"
        [trunks.off]
        gateways = [{ uri = "sip:192.0.2.1", enabled = false }]
        [[rules]]
        name = "r"
        then.trunks = ["off"]
    "#,
    );
    let v = strict(&answer_bytes(&t, "{}", Wrap::Bare));
    assert_eq!(
        v,
        serde_json::json!({"success":false,"code":503,"reason":"Service Unavailable","rule":"r"})
    );
}

fn header_values_ok(v: &Value) {
    for r in v["routes"].as_array().into_iter().flatten() {
        let extra = r["headers"]["extra"].as_str().unwrap();
        if !extra.is_empty() {
            assert!(extra.len() > 4 && extra.ends_with("\r\n"));
            for line in extra.strip_suffix("\r\n").unwrap().split("\r\n") {
                assert!(!line.contains(['\r', '\n', '\0']), "{line:?}");
                assert!(line.contains(": "));
            }
        }
        for p in ["from", "to"] {
            for k in ["display", "uri"] {
                let s = r["headers"][p][k].as_str().unwrap();
                assert!(!s.contains(['\r', '\n', '\0']), "{p}.{k} = {s:?}");
            }
        }
        for k in ["uri", "dst_uri"] {
            assert!(!r[k].as_str().unwrap().contains(['\r', '\n', '\0', ' ']));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever the query carries, no CR, LF or NUL reaches a header value or URI.
    #[test]
    fn no_injection_whatever_the_query(
        user in "[0-9a-z\r\n\0 :<>\"@;%]{0,20}",
        display in "[a-zA-Z\r\n\0 \"\\\\]{0,20}",
        call_id in "[a-z\r\n\0]{0,10}",
    ) {
        let t = table(FULL);
        let q = serde_json::json!({
            "to_uri": format!("sip:07{user}@example.com"),
            "from_uri": format!("sip:{user}@pbx.example"),
            "from_name": display,
            "call_id": call_id,
        });
        let bytes = answer_bytes(&t, &q.to_string(), Wrap::Bare);
        let v = strict(&bytes);
        header_values_ok(&v);
    }
}

#[test]
fn a_trunks_gateway_order_does_not_depend_on_the_trunks_before_it() {
    let t = table(
        r#"
        [trunks.a]
        gateways = ["sip:192.0.2.1", "sip:192.0.2.2", "sip:192.0.2.3", "sip:192.0.2.4"]
        [trunks.g]
        gateways = ["sip:198.51.100.1", "sip:198.51.100.2"]
        [[rules]]
        name = "alone"
        match.to.prefix = ["1"]
        then.trunks = ["a"]
        [[rules]]
        name = "after-g"
        match.to.prefix = ["2"]
        then.trunks = ["g", "a"]
    "#,
    );
    for i in 0..100 {
        let order = |to: &str| -> Vec<String> {
            route_values(
                &t,
                &format!(r#"{{"to_uri":"sip:{to}@x","call_id":"c{i}"}}"#),
                "dst_uri",
            )
            .into_iter()
            .filter(|d| d.starts_with("sip:192.0.2."))
            .collect()
        };
        assert_eq!(order("1"), order("2"), "call c{i}");
    }
}

#[test]
fn an_empty_rewritten_display_keeps_the_callers() {
    let t = one_rule("then.rewrite.from.display = \"{to.display}\"");
    let v = strict(&answer_bytes(&t, r#"{"from_name":"Alice"}"#, Wrap::Bare));
    assert_eq!(v["routes"][0]["headers"]["from"]["display"], "");
}

/// The route's `headers` object of the first route.
fn first_headers(t: &RouteTable, query: &str) -> Value {
    let v = strict(&answer_bytes(t, query, Wrap::Bare));
    header_values_ok(&v);
    v["routes"][0]["headers"].clone()
}

#[test]
fn a_quoted_display_name_may_hold_angle_brackets() {
    let t = one_rule(
        r#"then.rewrite.from.user = "bob"
then.headers = ["X-Caller: {from.display} {from.uri}"]"#,
    );
    let h = first_headers(
        &t,
        r#"{"from_uri":"\"A <b>\" <sip:alice@pbx.example>;tag=1"}"#,
    );
    assert_eq!(h["from"]["uri"], "sip:bob@pbx.example");
    assert_eq!(h["extra"], "X-Caller: A <b> sip:alice@pbx.example\r\n");
}

#[test]
fn a_regex_rewrite_that_does_not_match_keeps_the_header() {
    let t = one_rule(
        r#"then.rewrite.from.user = { regex = '^0(\d+)$', replace = '+44$1' }
then.rewrite.to.display = { regex = '^x$', replace = 'y' }
then.rewrite.to.uri = { regex = '^tel:', replace = 'sip:' }"#,
    );
    let h = first_headers(
        &t,
        r#"{"from_uri":"sip:alice:secret@pbx.example","to_name":"Bob","to_uri":"sip:b@x"}"#,
    );
    assert_eq!(h["from"]["uri"], "", "no match: keep the caller's From");
    assert_eq!(h["to"]["display"], "");
    assert_eq!(h["to"]["uri"], "");
    // When it matches, the password survives the new user.
    let h = first_headers(
        &t,
        r#"{"from_uri":"<sip:0123:secret@pbx.example;user=phone>","to_name":"x"}"#,
    );
    assert_eq!(h["from"]["uri"], "sip:+44123:secret@pbx.example;user=phone");
    assert_eq!(h["to"]["display"], "y");
}

#[test]
fn a_crlf_in_the_from_never_reaches_a_rewritten_from() {
    let q = r#"{"from_uri":"sip:alice@x;tag=1\r\nX-Evil: 1","to_uri":"sip:bob@example.com"}"#;
    for rewrite in [
        r#"then.rewrite.from.user = "{to.user}""#,
        r#"then.rewrite.from.user = { strip = 1, prefix = "b" }"#,
        r#"then.rewrite.from.uri = "{from.uri}""#,
    ] {
        let t = one_rule(rewrite);
        let query = Query::from_json(q.as_bytes()).unwrap();
        let d = t.route(&query, SystemTime::now());
        assert_eq!(d.skipped_rewrites, 1, "{rewrite}");
        let json = d.to_json(Wrap::Bare);
        let v = strict(&json);
        header_values_ok(&v);
        assert_eq!(v["routes"][0]["headers"]["from"]["uri"], "", "{rewrite}");
    }
    // A clean From is rewritten and nothing is counted.
    let t = one_rule(r#"then.rewrite.from.user = "{to.user}""#);
    let query =
        Query::from_json(br#"{"from_uri":"sip:alice@x;user=phone","to_uri":"sip:bob@y"}"#).unwrap();
    let d = t.route(&query, SystemTime::now());
    assert_eq!(d.skipped_rewrites, 0);
    let v = strict(&d.to_json(Wrap::Bare));
    assert_eq!(
        v["routes"][0]["headers"]["from"]["uri"],
        "sip:bob@x;user=phone"
    );
}

#[test]
fn a_header_that_renders_empty_is_left_out() {
    let t = table(
        r#"
        [trunks.a]
        gateways = ["sip:192.0.2.1"]
        headers = ["X-Trunk-Caller: {from.display}", "X-Carrier: a", "X-Blank: {to.user}	 "]
        [[rules]]
        name = "r"
        then.trunks = ["a"]
        then.headers = ["X-Orig-Caller: {from.user}", "X-Route: {rule}"]
    "#,
    );
    let h = first_headers(&t, r#"{"to_uri":"sip:07700@x"}"#);
    assert_eq!(
        h["extra"],
        "X-Route: r\r\nX-Carrier: a\r\nX-Blank: 07700\t \r\n"
    );
    let h = first_headers(&t, r#"{"from_uri":"sip:alice@x","from_name":"Al"}"#);
    assert_eq!(
        h["extra"],
        "X-Orig-Caller: alice\r\nX-Route: r\r\nX-Trunk-Caller: Al\r\nX-Carrier: a\r\n"
    );
    let only_empty = one_rule(r#"then.headers = ["X-Orig-Caller: {from.user}"]"#);
    assert_eq!(first_headers(&only_empty, "{}")["extra"], "");
}
