// The indexed table must decide exactly like the naive reference evaluator
// (a linear scan with every condition checked), on random tables and queries.

use std::time::SystemTime;

use super::ReferenceTable;
use crate::{Query, Sources};
use proptest::prelude::*;

const NUMBERS: &[&str] = &[
    "", "1", "12", "123", "1234", "2", "21", "+1", "+12", "44", "447", "4477",
];
const NETS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "192.0.2.0/24",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::/0",
];
const REGEXES: &[&str] = &["^1", "^\\+", "4$", "^(12|44)", "7"];
const DOMAINS: &[&str] = &["a.example", "*.example", "b.example"];

fn pick(v: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(v)
}

fn list(v: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(pick(v), 1..3).prop_map(|xs| {
        let q: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
        format!("[{}]", q.join(", "))
    })
}

fn user_conds(field: &'static str) -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(0.4, list(NUMBERS)),
        proptest::option::weighted(0.15, list(NUMBERS)),
        proptest::option::weighted(0.15, pick(REGEXES)),
        proptest::option::weighted(0.1, (0u8..5, 0u8..3)),
        proptest::option::weighted(0.1, list(DOMAINS)),
    )
        .prop_map(move |(prefix, exact, regex, length, domain)| {
            let mut s = String::new();
            if let Some(p) = prefix {
                s += &format!("match.{field}.prefix = {p}\n");
            }
            if let Some(p) = exact {
                s += &format!("match.{field}.exact = {p}\n");
            }
            if let Some(r) = regex {
                s += &format!("match.{field}.regex = '{r}'\n");
            }
            if let Some((lo, extra)) = length {
                s += &format!("match.{field}.length = \"{}-{}\"\n", lo, lo + extra);
            }
            if let Some(d) = domain {
                s += &format!("match.{field}.domain = {d}\n");
            }
            s
        })
}

fn rule() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(vec![50i64, 100, 100, 100, 200]),
        user_conds("to"),
        user_conds("from"),
        proptest::option::weighted(0.2, user_conds("ruri")),
        proptest::option::weighted(0.3, list(NETS)),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec!["[5060]", "[\"5060-5070\", 5080]"]),
        ),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec!["[\"udp\"]", "[\"tcp\", \"tls\"]"]),
        ),
        proptest::option::weighted(0.1, any::<bool>()),
    )
        .prop_map(|(prio, to, from, ruri, src, port, tr, auth)| {
            let mut s = format!("priority = {prio}\n{to}{from}{}", ruri.unwrap_or_default());
            if let Some(n) = src {
                s += &format!("match.source = {n}\n");
            }
            if let Some(p) = port {
                s += &format!("match.source_port = {p}\n");
            }
            if let Some(t) = tr {
                s += &format!("match.transport = {t}\n");
            }
            if let Some(a) = auth {
                s += &format!("match.auth = {a}\n");
            }
            s
        })
}

fn table_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(rule(), 0..25).prop_map(|rules| {
        let mut s = String::from("[trunks.t]\ngateways = [\"sip:192.0.2.1\"]\n");
        for (i, r) in rules.iter().enumerate() {
            s += &format!("[[rules]]\nname = \"r{i}\"\n{r}then.trunks = [\"t\"]\n");
        }
        s
    })
}

fn query() -> impl Strategy<Value = String> {
    let user = proptest::sample::select(vec![
        "", "1", "12", "1234", "12345", "+12", "44770", "4477", "2", "99", "447",
    ]);
    let dom = proptest::sample::select(vec!["a.example", "x.example", "b.example"]);
    (
        proptest::option::weighted(0.9, (user.clone(), dom.clone())),
        proptest::option::weighted(0.8, (user.clone(), dom.clone())),
        proptest::option::weighted(0.3, (user, dom)),
        proptest::option::weighted(
            0.8,
            proptest::sample::select(vec![
                "10.1.2.3",
                "10.9.9.9",
                "192.0.2.5",
                "2001:db8::1",
                "8.8.8.8",
            ]),
        ),
        proptest::option::of(proptest::sample::select(vec![5060u16, 5065, 5080, 6000])),
        proptest::option::of(proptest::sample::select(vec!["udp", "TCP", "tls"])),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(to, from, ruri, ip, port, tr, auth)| {
            let mut m = serde_json::Map::new();
            if let Some((u, d)) = to {
                m.insert("to_uri".into(), format!("sip:{u}@{d}").into());
            }
            if let Some((u, d)) = from {
                m.insert("from_uri".into(), format!("sip:{u}@{d}").into());
            }
            if let Some((u, d)) = ruri {
                m.insert("ruri".into(), format!("sip:{u}@{d}").into());
            }
            if let Some(ip) = ip {
                m.insert("source_ip".into(), ip.into());
            }
            if let Some(p) = port {
                m.insert("source_port".into(), p.into());
            }
            if let Some(t) = tr {
                m.insert("transport".into(), t.into());
            }
            if let Some(a) = auth {
                m.insert("auth".into(), u8::from(a).into());
            }
            serde_json::Value::Object(m).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn indexed_table_agrees_with_reference(text in table_text(), queries in proptest::collection::vec(query(), 1..20)) {
        let mut sources = Sources::new();
        sources.add("gen.toml", text.clone());
        let table = sources.build().map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let reference = ReferenceTable::build(&sources).unwrap();
        let now = SystemTime::now();
        // Every rule that `check` says can never win must indeed never win.
        let dead: Vec<String> = table
            .warnings()
            .iter()
            .filter(|w| w.message.contains("can never win"))
            .filter_map(|w| w.message.split('`').nth(1).map(str::to_string))
            .collect();
        for q in &queries {
            let query = Query::from_json(q.as_bytes()).unwrap();
            let got = table.route(&query, now).rule;
            let want = reference.route(&query, now);
            prop_assert_eq!(got, want, "query {} on\n{}", q, text);
            if let Some(winner) = got {
                prop_assert!(
                    !dead.iter().any(|d| d == winner),
                    "`{}` was reported as never winning but won query {} on\n{}",
                    winner,
                    q,
                    text
                );
            }
            // explain's first match is the winner too.
            let first = table.explain(&query, now).first().map(|m| m.name.clone());
            prop_assert_eq!(first.as_deref(), want);
        }
    }
}
