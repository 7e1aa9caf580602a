//! The serde mirror of one routes.d file (SPEC §4): phase one of
//! parse → validate → compile.
//!
//! Nothing here judges values; it only keeps their spans. Shapes stay plain
//! (no untagged enums, no `flatten`) because toml loses spans there; the few
//! shorthands ("a gateway is a string or a table") are hand-written visitors.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// One routes.d file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    pub defaults: Option<Spanned<DefaultsDef>>,
    #[serde(default)]
    pub trunks: BTreeMap<Spanned<String>, Spanned<TrunkDef>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleDef>>,
    #[serde(default)]
    pub schedules: BTreeMap<Spanned<String>, Spanned<ScheduleDef>>,
    #[serde(default)]
    pub tests: Vec<Spanned<TestDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultsDef {
    pub routing: Option<Spanned<String>>,
    pub fr_timer: Option<Spanned<i64>>,
    pub fr_inv_timer: Option<Spanned<i64>>,
    pub branch_flags: Option<Spanned<i64>>,
    pub max_routes: Option<Spanned<i64>>,
    pub no_match: Option<Spanned<RejectDef>>,
    pub timezone: Option<Spanned<String>>,
    /// SPEC §8; checked in compile/health.rs.
    pub health: Option<Spanned<HealthDef>>,
    /// Seconds of the call whose cost orders `then.lcr` (SPEC §7).
    pub lcr_duration: Option<Spanned<i64>>,
    /// `[defaults.calls]` (SPEC §9.1); checked in compile/limits.rs.
    pub calls: Option<Spanned<CallsDef>>,
    /// SPEC §9.3; checked in compile/quality.rs.
    pub quality: Option<Spanned<QualityDef>>,
}

/// `[defaults.quality]` or `[trunks.NAME.quality]` (SPEC §9.3): every key
/// optional, a trunk's keys override the defaults' one by one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QualityDef {
    /// A duration (`"15m"`).
    pub window: Option<Spanned<String>>,
    pub min_calls: Option<Spanned<i64>>,
    pub min_asr: Option<Spanned<f64>>,
    /// A duration (`"8s"`).
    pub max_pdd: Option<Spanned<String>>,
    /// A duration (`"20s"`).
    pub min_acd: Option<Spanned<String>>,
}

/// `[defaults.calls]`: how call records are kept (SPEC §9.1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallsDef {
    /// A record with no event for this long is closed (`"4h"`).
    pub max_duration: Option<Spanned<String>>,
}

/// `[trunks.NAME.limits]` (SPEC §9.2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsDef {
    /// Calls at once on the trunk.
    pub calls: Option<Spanned<i64>>,
    /// New attempts per second on the trunk.
    pub cps: Option<Spanned<i64>>,
}

/// `[defaults.health]` or `[trunks.NAME.health]` (SPEC §8): every key optional,
/// a trunk's keys override the defaults' one by one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthDef {
    pub probe: Option<Spanned<String>>,
    pub interval: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<f64>>,
    pub down_after: Option<Spanned<i64>>,
    pub up_after: Option<Spanned<i64>>,
    pub fail_codes: Option<Spanned<Vec<Spanned<String>>>>,
    pub retry_after: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectDef {
    pub code: Spanned<i64>,
    pub reason: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrunkDef {
    pub gateways: Spanned<Vec<Spanned<GatewayDef>>>,
    pub strip: Option<Spanned<i64>>,
    pub prefix: Option<Spanned<String>>,
    pub proxy: Option<Spanned<String>>,
    pub socket: Option<Spanned<String>>,
    pub fr_timer: Option<Spanned<i64>>,
    pub fr_inv_timer: Option<Spanned<i64>>,
    pub branch_flags: Option<Spanned<i64>>,
    pub headers: Option<Vec<Spanned<String>>>,
    /// SPEC §8; checked in compile/health.rs.
    pub health: Option<Spanned<HealthDef>>,
    /// The trunk's rate deck, relative to routes.d (SPEC §7).
    pub rates: Option<Spanned<String>>,
    /// Capacity limits (SPEC §9.2); checked in compile/limits.rs.
    pub limits: Option<Spanned<LimitsDef>>,
    /// SPEC §9.3; checked in compile/quality.rs.
    pub quality: Option<Spanned<QualityDef>>,
}

/// A gateway: `"sip:host"` or `{ uri = "…", priority = 1, weight = 3, enabled = true, calls = 60 }`.
#[derive(Debug)]
pub(crate) struct GatewayDef {
    pub uri: String,
    pub priority: i64,
    pub weight: i64,
    pub enabled: bool,
    /// Calls at once on this gateway (SPEC §9.2).
    pub calls: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayTable {
    uri: String,
    #[serde(default)]
    priority: i64,
    #[serde(default = "one")]
    weight: i64,
    #[serde(default = "yes")]
    enabled: bool,
    calls: Option<i64>,
}

fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for GatewayDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GatewayDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a gateway URI string or a table { uri, priority, weight, enabled, calls }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GatewayDef, E> {
                Ok(GatewayDef {
                    uri: v.to_owned(),
                    priority: 0,
                    weight: 1,
                    enabled: true,
                    calls: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<GatewayDef, A::Error> {
                let t = GatewayTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(GatewayDef {
                    uri: t.uri,
                    priority: t.priority,
                    weight: t.weight,
                    enabled: t.enabled,
                    calls: t.calls,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDef {
    pub name: Spanned<String>,
    pub priority: Option<Spanned<i64>>,
    pub enabled: Option<bool>,
    #[serde(rename = "match", default)]
    pub matches: MatchDef,
    pub then: Option<Spanned<ThenDef>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchDef {
    // Boxed where a rate deck leaves them out: a parsed rule is held by the
    // million while a deck compiles, and its size was half the peak memory.
    pub source: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    pub source_port: Option<Box<Spanned<Vec<Spanned<RangeDef>>>>>,
    pub transport: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    pub auth: Option<Spanned<bool>>,
    // Boxed: most rules use one of the three, and a parsed 1M-rule file
    // must not carry 3 × 5 empty slots per rule.
    pub to: Option<Box<UserMatchDef>>,
    pub from: Option<Box<UserMatchDef>>,
    pub ruri: Option<Box<UserMatchDef>>,
    pub schedule: Option<Box<Spanned<String>>>,
}

/// A number or a `"N"`/`"N-M"` string: ports and lengths.
#[derive(Debug)]
pub(crate) enum RangeDef {
    Int(i64),
    Text(String),
}

impl fmt::Display for RangeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeDef::Int(n) => write!(f, "{n}"),
            RangeDef::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for RangeDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RangeDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a \"low-high\" range string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RangeDef, E> {
                Ok(RangeDef::Int(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RangeDef, E> {
                Ok(RangeDef::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserMatchDef {
    pub prefix: Option<Spanned<Vec<Spanned<String>>>>,
    pub exact: Option<Spanned<Vec<Spanned<String>>>>,
    pub regex: Option<Box<Spanned<String>>>,
    pub length: Option<Box<Spanned<RangeDef>>>,
    pub domain: Option<Box<Spanned<Vec<Spanned<String>>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThenDef {
    pub trunks: Option<Spanned<Vec<Spanned<String>>>>,
    pub reject: Option<Box<Spanned<RejectDef>>>,
    pub routing: Option<Box<Spanned<String>>>,
    pub rewrite: Option<Box<Spanned<RewriteDef>>>,
    pub headers: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    /// Least-cost routing (SPEC §7): these trunks, ordered by price.
    pub lcr: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    pub max_rate: Option<Box<Spanned<f64>>>,
    pub no_rate: Option<Box<Spanned<RejectDef>>>,
    /// The answer when limits leave no route (SPEC §9.2).
    pub no_capacity: Option<Box<Spanned<RejectDef>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteDef {
    pub ruri: Option<RuriRewriteDef>,
    pub to: Option<PartyRewriteDef>,
    pub from: Option<PartyRewriteDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuriRewriteDef {
    pub user: Option<Spanned<EditDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartyRewriteDef {
    pub user: Option<Spanned<EditDef>>,
    pub display: Option<Spanned<EditDef>>,
    pub uri: Option<Spanned<EditDef>>,
}

/// A rewrite: a template string, or a table of `strip`/`prefix`/`suffix`
/// or `regex`/`replace`.
#[derive(Debug)]
pub(crate) enum EditDef {
    Template(String),
    Table(EditTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditTable {
    pub strip: Option<i64>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub regex: Option<String>,
    pub replace: Option<String>,
}

impl<'de> Deserialize<'de> for EditDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EditDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a template string, { strip, prefix, suffix } or { regex, replace }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EditDef, E> {
                Ok(EditDef::Template(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EditDef, A::Error> {
                EditTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(EditDef::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleDef {
    pub timezone: Option<Spanned<String>>,
    pub days: Option<Vec<Spanned<String>>>,
    pub hours: Option<Vec<Spanned<String>>>,
    pub except: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestDef {
    pub name: Spanned<String>,
    pub query: Spanned<toml::Table>,
    pub at: Option<Spanned<String>>,
    pub expect: Spanned<ExpectDef>,
    /// Gateways decided as down (SPEC §8).
    pub down: Option<Vec<Spanned<String>>>,
    /// Trunks decided as carrying this many calls (SPEC §9.2).
    pub load: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
    /// Gateways decided as poor, `URI` or `URI@GROUP` (SPEC §9.3).
    pub poor: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectDef {
    pub rule: Option<Spanned<String>>,
    pub routes: Option<Vec<String>>,
    pub ruri: Option<String>,
    pub reject: Option<Spanned<i64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_survive_on_keys_and_values() {
        let text = "[trunks.acme]\ngateways = [\"sip:a\", { uri = \"sip:b\", weight = 3 }]\n";
        let f: RouteFile = toml::from_str(text).unwrap();
        let (k, v) = f.trunks.iter().next().unwrap();
        assert_eq!(&text[k.span()], "acme");
        assert_eq!(v.get_ref().gateways.get_ref().len(), 2);
        assert_eq!(v.get_ref().gateways.get_ref()[1].get_ref().weight, 3);
        let g = &v.get_ref().gateways.get_ref()[0];
        assert_eq!(&text[g.span()], "\"sip:a\"");
    }

    #[test]
    fn unknown_keys_are_errors_with_spans() {
        let text = "[[rules]]\nname = \"x\"\nmatch.to.prefx = [\"1\"]\n";
        let e = toml::from_str::<RouteFile>(text).unwrap_err();
        assert!(e.message().contains("prefx"), "{}", e.message());
        assert!(e.span().is_some());
        let text = "[trunks.a]\ngateways = [{ uri = \"sip:x\", wieght = 1 }]\n";
        let e = toml::from_str::<RouteFile>(text).unwrap_err();
        assert!(e.message().contains("wieght"), "{}", e.message());
    }
}
