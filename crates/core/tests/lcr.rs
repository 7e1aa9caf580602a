//! Least-cost routing from rate decks (SPEC §7), end to end through the
//! library: decks in memory, `then.lcr`, the order, the answer, and every
//! bad-input case reported in one pass.

use std::time::SystemTime;

use c4route_core::{Error, Outcome, Query, RouteTable, Sources, explain, parse_time};

const TRUNKS: &str = r#"
[defaults]
lcr_duration = 60

[trunks.acme]
gateways = ["sip:198.51.100.10"]
rates = "rates/acme.csv"
headers = ["X-Rate: {rate} for {rate_prefix}"]

[trunks.globex]
gateways = ["sip:203.0.113.20", { uri = "sip:203.0.113.21", priority = 1 }]
strip = 0
prefix = "00"
rates = "rates/globex.csv"

[trunks.initech]
gateways = ["sip:192.0.2.30"]
rates = "./rates/../rates/initech.csv.gz"
"#;

const RULES: &str = r#"
[[rules]]
name = "international"
match.ruri.prefix = ["+", "00"]
then.rewrite.ruri.user = { regex = '^(?:\+|00)(\d+)$', replace = '$1' }
then.lcr = ["acme", "globex", "initech"]
then.max_rate = 0.25
then.no_rate = { code = 503, reason = "No Route Available" }
"#;

const ACME: &str = "prefix,rate,connect_fee,initial,increment,effective_from,effective_until,name\n\
44,0.0120,,60,60,,,United Kingdom\n\
447,0.0450,0.01,60,60,,,United Kingdom Mobile\n\
4477,0.0400,,1,1,2026-12-01,,United Kingdom Mobile (new price)\n\
33,0.30,,1,1,,,France\n\
49,0.02,,1,1,,,Germany\n";

const GLOBEX: &str = "Prefix,Rate,Initial,Increment\n\
+44,0.0110,60,60\n\
447,0.0500,1,1\n\
49,0.02,1,1\n\
1,0.004,1,1\n";

fn gz(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn sources(extra_rules: &str) -> Sources {
    let mut s = Sources::new();
    s.add("routes.d/10-trunks.toml", TRUNKS);
    s.add("routes.d/20-rules.toml", format!("{RULES}{extra_rules}"));
    s.add_rate_file("rates/acme.csv", ACME);
    s.add_rate_file("rates/globex.csv", GLOBEX);
    s.add_rate_file(
        "rates/initech.csv.gz",
        gz("prefix,rate,connect_fee\n44,0.0100,0.05\n4477,0.0390,\n49,0.02,\n"),
    );
    s
}

fn table() -> RouteTable {
    sources("").build().unwrap_or_else(|e| panic!("{e}"))
}

fn at(t: &str) -> SystemTime {
    parse_time(t).unwrap()
}

fn q(ruri: &str) -> Query<'static> {
    Query::from_json(format!(r#"{{"ruri":"sip:{ruri}@x","call_id":"c1"}}"#).as_bytes())
        .unwrap()
        .into_owned()
}

/// (trunk of each route, dst_uri) of the answer, or the reject code.
fn order(t: &RouteTable, ruri: &str, when: &str) -> Result<Vec<(String, String)>, u16> {
    let d = t.route(&q(ruri), at(when));
    match d.outcome {
        Outcome::Route { routes, .. } => Ok(routes
            .iter()
            .map(|r| (r.trunk.to_string(), r.uri.clone()))
            .collect()),
        Outcome::Reject { code, .. } => Err(code),
        _ => panic!("an outcome this test does not know"),
    }
}

fn trunks(t: &RouteTable, ruri: &str, when: &str) -> Vec<String> {
    let mut v: Vec<String> = order(t, ruri, when)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    v.dedup();
    v
}

#[test]
fn trunks_are_ordered_by_the_cost_of_the_call() {
    let t = table();
    let now = "2026-11-30T12:00:00Z";
    // UK landline: initech 0.05 + 0.0100 = 0.0600, acme 0.0120, globex 0.0110.
    assert_eq!(
        trunks(&t, "+441134960000", now),
        ["globex", "acme", "initech"]
    );
    // UK mobile before Dec 1: initech's 4477 0.039, globex 0.05, acme
    // 0.01 + 0.045 = 0.055 (447, 60/60).
    assert_eq!(
        trunks(&t, "+447700900123", now),
        ["initech", "globex", "acme"]
    );
    // From Dec 1 acme's 4477 row is in effect (0.04).
    assert_eq!(
        trunks(&t, "+447700900123", "2026-12-01T00:00:00Z"),
        ["initech", "acme", "globex"]
    );
    // Germany: equal costs keep the order of then.lcr.
    assert_eq!(
        trunks(&t, "0049301234567", now),
        ["acme", "globex", "initech"]
    );
    // The number priced is the rewritten R-URI user; each trunk then applies
    // its own strip and prefix, and gateways keep their SRV order.
    let routes = order(&t, "+441134960000", now).unwrap();
    assert_eq!(routes[0].1, "sip:00441134960000@203.0.113.20");
    assert_eq!(routes[1].1, "sip:00441134960000@203.0.113.21");
    assert_eq!(routes[2].1, "sip:441134960000@198.51.100.10");
}

#[test]
fn max_rate_no_rate_and_templates() {
    let t = table();
    let now = "2026-11-30T12:00:00Z";
    // France: acme's 0.30 is above max_rate; nobody else has a price.
    assert_eq!(order(&t, "+33142868200", now), Err(503));
    let d = t.route(&q("+33142868200"), at(now));
    assert_eq!(d.rule, Some("international"));
    let json = String::from_utf8(d.to_json(c4route_core::Wrap::Bare)).unwrap();
    assert!(
        json.contains(r#""code":503,"reason":"No Route Available","rule":"international""#),
        "{json}"
    );
    // US: only globex.
    assert_eq!(trunks(&t, "+12025550123", now), ["globex"]);
    // {rate} and {rate_prefix} in acme's header.
    let d = t.route(&q("+441134960000"), at(now));
    let Outcome::Route { routes, .. } = &d.outcome else {
        panic!()
    };
    let acme = routes.iter().find(|r| r.trunk == "acme").unwrap();
    assert_eq!(&*acme.extra, "X-Rate: 0.0120 for 44\r\n");
    // Without no_rate, the [defaults] no_match answer.
    let mut s = Sources::new();
    s.add("routes.d/10-trunks.toml", TRUNKS);
    s.add(
        "routes.d/20-rules.toml",
        "[[rules]]\nname = \"lcr\"\nthen.lcr = [\"acme\"]\n",
    );
    s.add_rate_file("rates/acme.csv", ACME);
    s.add_rate_file("rates/globex.csv", GLOBEX);
    s.add_rate_file("rates/initech.csv.gz", gz("prefix,rate\n1,0.1\n"));
    let t = s.build().unwrap();
    let d = t.route(&q("+8613800000000"), at(now));
    assert!(matches!(
        d.outcome,
        Outcome::Reject {
            code: 404,
            no_match: false,
            ..
        }
    ));
    assert_eq!(d.rule, Some("lcr"));
}

#[test]
fn increments_change_the_order() {
    // 60/60 billing of a 61 s call bills 120 s; per-second billing does not.
    let mut s = Sources::new();
    s.add(
        "routes.d/a.toml",
        r#"
[defaults]
lcr_duration = 61
[trunks.a]
gateways = ["sip:192.0.2.1"]
rates = "a.csv"
[trunks.b]
gateways = ["sip:192.0.2.2"]
rates = "b.csv"
[[rules]]
name = "lcr"
then.lcr = ["a", "b"]
"#,
    );
    s.add_rate_file("a.csv", "prefix,rate,initial,increment\n4,0.010,60,60\n");
    s.add_rate_file("b.csv", "prefix,rate,initial,increment\n4,0.015,1,1\n");
    let t = s.build().unwrap();
    assert_eq!(trunks(&t, "4", "2026-01-01T00:00:00Z"), ["b", "a"]);
}

#[test]
fn explain_names_the_row_or_why_a_trunk_was_left_out() {
    let t = table();
    let r = explain::lcr(&t, &q("+33142868200"), at("2026-11-30T12:00:00Z")).unwrap();
    assert_eq!(r.number, "33142868200");
    assert_eq!(r.max_rate.as_deref(), Some("0.25"));
    let acme = &r.trunks[0];
    assert_eq!(acme.rank, None);
    let row = acme.row.as_ref().unwrap();
    assert_eq!(
        (row.file.as_str(), row.line, row.prefix.as_str()),
        ("rates/acme.csv", 5, "33")
    );
    assert_eq!(
        acme.left_out.as_deref(),
        Some("rate 0.30 is above then.max_rate 0.25")
    );
    assert_eq!(
        r.trunks[1].left_out.as_deref(),
        Some("no prefix of 33142868200 in the deck")
    );
    let r = explain::lcr(&t, &q("+447700900123"), at("2026-11-30T12:00:00Z")).unwrap();
    let acme = &r.trunks[0];
    assert_eq!(acme.rank, Some(3));
    assert_eq!(acme.cost.as_deref(), Some("0.0550"));
    let row = acme.row.as_ref().unwrap();
    assert_eq!(
        (row.line, row.prefix.as_str(), row.rate.as_str()),
        (3, "447", "0.0450")
    );
    assert_eq!(
        r.trunks[2].row.as_ref().unwrap().file,
        "rates/initech.csv.gz"
    );
    // Not an LCR rule: nothing to explain.
    let s = sources(
        "[[rules]]\nname = \"pbx\"\nmatch.ruri.prefix = [\"2\"]\nthen.trunks = [\"acme\"]\n",
    );
    assert!(explain::lcr(&s.build().unwrap(), &q("2000"), at("2026-11-30T12:00:00Z")).is_none());
    // `rates` per trunk, with the future row of the same prefix.
    let v = explain::rates(&t, "+447700900123", at("2026-11-30T12:00:00Z"));
    assert_eq!(v.len(), 3);
    assert_eq!(v[0].row.as_ref().unwrap().prefix, "447");
    assert_eq!(
        v[0].other_rows[0].effective_from.as_deref(),
        Some("2026-12-01")
    );
}

#[test]
fn tests_pin_lcr_orders_at_a_time() {
    let s = sources(
        r#"
[[tests]]
name = "UK mobile goes to initech first from Dec 1"
query = { ruri = "sip:+447700900123@x", call_id = "c1" }
at = "2026-12-02T00:00:00Z"
expect.routes = ["sip:192.0.2.30", "sip:198.51.100.10", "sip:203.0.113.20", "sip:203.0.113.21"]

[[tests]]
name = "before"
query = { ruri = "sip:+447700900123@x", call_id = "c1" }
at = "2026-11-02T00:00:00Z"
expect.routes = ["sip:192.0.2.30", "sip:198.51.100.10", "sip:203.0.113.20", "sip:203.0.113.21"]
"#,
    );
    let r = s.build().unwrap().run_tests();
    assert!(r[0].failures.is_empty(), "{:?}", r[0].failures);
    assert_eq!(r[1].failures.len(), 1, "the order before Dec 1 differs");
}

#[test]
fn an_edited_deck_is_a_new_table() {
    let a = sources("");
    let mut b = sources("");
    b.add_rate_file("rates/acme.csv", ACME.replace("0.0120", "0.0100"));
    assert_ne!(a.digest(), b.digest());
    assert_ne!(a.build().unwrap().version(), b.build().unwrap().version());
}

#[test]
fn every_bad_input_is_reported_in_one_pass() {
    let mut s = Sources::new();
    s.add(
        "routes.d/10-trunks.toml",
        r#"[trunks.a]
gateways = ["sip:192.0.2.1"]
rates = "../outside.csv"

[trunks.b]
gateways = ["sip:192.0.2.2"]
rates = "rates/missing.csv"

[trunks.c]
gateways = ["sip:192.0.2.3"]

[trunks.d]
gateways = ["sip:192.0.2.4"]
rates = "rates/d.csv"

[trunks.e]
gateways = ["sip:192.0.2.5"]
rates = "/etc/e.csv"
"#,
    );
    s.add(
        "routes.d/20-rules.toml",
        r#"[[rules]]
name = "both"
then.trunks = ["d"]
then.lcr = ["d"]

[[rules]]
name = "no-deck"
then.lcr = ["c", "d"]

[[rules]]
name = "stray"
then.trunks = ["d"]
then.max_rate = 1.0

[[rules]]
name = "neg"
then.lcr = ["d", "d"]
then.max_rate = -1
then.rewrite.ruri.user = "{rate}"
"#,
    );
    s.add_rate_file(
        "rates/d.csv",
        "prefix,rate,effective_from,effective_until\n\
         44x,0.01,,\n\
         4412345678901234,0.01,,\n\
         45,-1,,\n\
         46,zero,,\n\
         47,0.01,,2026-12-01\n\
         47,0.02,2026-11-01,\n",
    );
    let Err(Error::Config(d)) = s.build() else {
        panic!("must not compile");
    };
    let text = d.to_string();
    let want = [
        "routes.d/10-trunks.toml:3:9: error: rates \"../outside.csv\" leaves the routes.d directory",
        "routes.d/10-trunks.toml:7:9: error: rates \"rates/missing.csv\": routes.d/rates/missing.csv does not exist",
        "routes.d/10-trunks.toml:18:9: error: rates \"/etc/e.csv\" is absolute",
        "routes.d/20-rules.toml:3:15: error: rule `both` has both then.trunks and then.lcr",
        "routes.d/20-rules.toml:8:13: error: trunk `c` in then.lcr has no rate deck",
        "routes.d/20-rules.toml:13:17: error: rule `stray`: then.max_rate only applies with then.lcr",
        "routes.d/20-rules.toml:17:18: error: then.lcr names trunk `d` twice",
        "routes.d/20-rules.toml:18:17: error: then.max_rate must be a rate per minute >= 0",
        "routes.d/20-rules.toml:19:27: error: `{rate}` is only known in headers",
        "rates/d.csv:2:1: error: prefix \"44x\" is not a number",
        "rates/d.csv:3:1: error: prefix \"4412345678901234\" has 16 digits",
        "rates/d.csv:4:4: error: rate \"-1\" must be a decimal number >= 0",
        "rates/d.csv:5:4: error: rate \"zero\" is not a decimal number",
    ];
    for w in want {
        assert!(
            text.lines().any(|l| l.starts_with(w)),
            "missing {w:?} in\n{text}"
        );
    }
    assert_eq!(d.errors().count(), want.len(), "{text}");
    // The overlap shows once the rest of the deck is clean.
    let mut s = Sources::new();
    s.add("routes.d/a.toml", "[trunks.d]\ngateways = [\"sip:192.0.2.4\"]\nrates = \"d.csv\"\n[[rules]]\nname = \"x\"\nthen.lcr = [\"d\"]\n");
    s.add_rate_file("d.csv", "prefix,rate,effective_from,effective_until,conect_fee\n47,0.01,,2026-12-01,\n48,0.01,,,\n47,0.02,2026-11-01,,\n");
    let Err(Error::Config(d)) = s.build() else {
        panic!()
    };
    let text = d.to_string();
    assert!(text.contains("d.csv:4:1: error: two rows for prefix 47 are in effect at the same time: line 2 (always until 2026-12-01) and line 4 (2026-11-01 until forever)"), "{text}");
    assert!(
        text.contains("d.csv:1:44: warning: column `conect_fee` is ignored"),
        "{text}"
    );
}

#[test]
fn warnings_ignored_columns_and_expired_rows() {
    let mut s = Sources::new();
    s.add("routes.d/a.toml", "[trunks.d]\ngateways = [\"sip:192.0.2.4\"]\nrates = \"d.csv\"\n[[rules]]\nname = \"x\"\nthen.lcr = [\"d\"]\n");
    s.add_rate_file(
        "d.csv",
        "prefix,rate,effective_until,notes\n47,0.01,2026-01-01,x\n48,0.01,2026-02-01,\n49,0.01,,\n",
    );
    let t = s.build().unwrap();
    let w = t.warnings().to_string();
    assert!(
        w.contains("d.csv:1:29: warning: column `notes` is ignored"),
        "{w}"
    );
    let e = t.expired_rate_rows(at("2026-06-01T00:00:00Z")).to_string();
    assert!(
        e.starts_with("d.csv:2:1: warning: 2 rows expired before 2026-06-01T00:00:00Z"),
        "{e}"
    );
    assert!(t.expired_rate_rows(at("2025-06-01T00:00:00Z")).is_empty());
}
