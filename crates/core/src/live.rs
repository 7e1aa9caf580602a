//! What a decision knows besides the table, the query and the clock (SPEC
//! §8, §9): which gateways are down or drained, how loaded each trunk and
//! gateway is, and which gateways serve a destination poorly.
//!
//! A [`Live`] is an immutable snapshot, passed to [`crate::decide`] like the
//! clock. A server rebuilds one whenever a fact changes and swaps it in; an
//! offline tool (`c4route eval --down/--load/--poor`, a `[[tests]]` entry)
//! builds one from its arguments. The core never learns *how* a fact came
//! about (probes, reports, call events, a shared store): that is the
//! server's business.
//!
//! Every part is behind an `Arc`, so cloning a snapshot to change one fact
//! ([`Live::to_builder`]) copies only the part that changes. An empty part
//! costs a decision one branch: a table without limits or quality pays
//! nothing for them.

use std::sync::Arc;

use hashbrown::HashTable;

use crate::health::{GatewayState, GatewayStatus, GatewayUriError, gateway_key, key_hash};

/// The load of one trunk, as the decision compares it with the trunk's
/// `[trunks.NAME.limits]` (SPEC §9.2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrunkLoad {
    /// Calls in progress (attempting or answered) on the trunk.
    pub calls: u32,
    /// Attempts in the last second.
    pub cps: u32,
}

impl TrunkLoad {
    /// A load of `calls` calls in progress and `cps` attempts in the last second.
    pub fn new(calls: u32, cps: u32) -> Self {
        TrunkLoad { calls, cps }
    }
}

/// A set of `(hash, key, value)` found by a precomputed hash: the table
/// keeps the hash of every trunk name and gateway key, so a decision
/// hashes nothing.
#[derive(Debug, Clone, Default)]
struct Keyed<V> {
    items: HashTable<(u64, Box<str>, V)>,
}

impl<V> Keyed<V> {
    fn get(&self, hash: u64, key: &str) -> Option<&V> {
        self.items.find(hash, |e| *e.1 == *key).map(|e| &e.2)
    }

    fn set(&mut self, key: &str, value: Option<V>) {
        let h = key_hash(key);
        match (self.items.find_entry(h, |e| *e.1 == *key), value) {
            (Ok(e), None) => {
                e.remove();
            }
            (Ok(mut e), Some(v)) => e.get_mut().2 = v,
            (Err(_), None) => {}
            (Err(_), Some(v)) => {
                self.items.insert_unique(h, (h, key.into(), v), |e| e.0);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The load part of a snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    trunks: Keyed<TrunkLoad>,
    gateways: Keyed<u32>,
}

impl Load {
    /// The load of a trunk by its name and [`key_hash`] of it.
    pub(crate) fn trunk(&self, hash: u64, name: &str) -> TrunkLoad {
        self.trunks.get(hash, name).copied().unwrap_or_default()
    }

    /// The calls in progress on a gateway by its key and hash.
    pub(crate) fn gateway(&self, hash: u64, key: &str) -> u32 {
        self.gateways.get(hash, key).copied().unwrap_or(0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.trunks.is_empty() && self.gateways.is_empty()
    }
}

/// The group that stands for every destination group: a gateway judged
/// poor for it is poor whatever the call (`c4route eval --poor URI`).
pub const ANY_GROUP: &str = "*";

/// The quality part of a snapshot (SPEC §9.3): the gateways judged poor
/// for a destination group, keyed `gateway key` + `\n` + `group`, and those
/// poor for every group.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quality {
    poor: Keyed<()>,
    everywhere: Keyed<()>,
    /// How many pairs of `poor` each gateway has: a gateway with none (the
    /// usual case) is answered by one look-up in this small table, not by
    /// hashing the group and probing the large one.
    gateways: Keyed<u32>,
}

impl Quality {
    /// Whether the gateway `key` (hash `gw_hash`) is poor for `group`.
    pub(crate) fn is_poor(&self, gw_hash: u64, key: &str, group: &str) -> bool {
        if !self.everywhere.is_empty() && self.everywhere.get(gw_hash, key).is_some() {
            return true;
        }
        if self.poor.is_empty() || self.gateways.get(gw_hash, key).is_none() {
            return false;
        }
        let h = pair_hash(gw_hash, group);
        self.poor
            .items
            .find(h, |e| {
                e.1.len() == key.len() + 1 + group.len()
                    && e.1.starts_with(key)
                    && e.1.as_bytes()[key.len()] == b'\n'
                    && e.1.ends_with(group)
            })
            .is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.poor.is_empty() && self.everywhere.is_empty()
    }
}

/// The hash of a (gateway, group) pair from the gateway's hash.
fn pair_hash(gw_hash: u64, group: &str) -> u64 {
    gw_hash.rotate_left(17) ^ key_hash(group)
}

/// Everything a decision knows besides the table, the query and the clock.
/// Immutable and cheap to clone; build one with [`Live::builder`].
///
/// [`Live::default`] knows nothing: every gateway up, no load, no quality
/// verdict — the snapshot [`crate::RouteTable::route`] decides with.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub(crate) gateways: Arc<GatewayState>,
    pub(crate) load: Arc<Load>,
    pub(crate) quality: Arc<Quality>,
}

/// The snapshot that knows nothing, shared: [`crate::RouteTable::route`]
/// decides with it without allocating three empty parts per call.
static NOTHING: std::sync::LazyLock<Live> = std::sync::LazyLock::new(Live::default);

impl Live {
    /// The shared snapshot that knows nothing (every gateway up, no load,
    /// no verdict): the same as [`Live::default`], without allocating.
    pub fn nothing() -> &'static Live {
        &NOTHING
    }

    /// A builder starting from nothing known.
    pub fn builder() -> LiveBuilder {
        LiveBuilder::default()
    }

    /// A builder starting from this snapshot, to change a few facts.
    pub fn to_builder(&self) -> LiveBuilder {
        LiveBuilder {
            gateways: self.gateways.clone(),
            load: self.load.clone(),
            quality: self.quality.clone(),
        }
    }

    /// The gateway part: which gateways are down or disabled.
    pub fn gateways(&self) -> &GatewayState {
        &self.gateways
    }

    /// The load of a trunk by name (zero when unknown).
    pub fn trunk_load(&self, trunk: &str) -> TrunkLoad {
        self.load.trunk(key_hash(trunk), trunk)
    }

    /// The calls in progress on a gateway by any spelling of its URI.
    pub fn gateway_calls(&self, uri: &str) -> u32 {
        gateway_key(uri).map_or(0, |k| self.load.gateway(key_hash(&k), &k))
    }

    /// Whether the gateway is judged poor for a destination group (a
    /// rule's name, or `rule@prefix` for an LCR route; see
    /// [`crate::RouteAnswer::group`]).
    pub fn is_poor(&self, uri: &str, group: &str) -> bool {
        gateway_key(uri).is_ok_and(|k| self.quality.is_poor(key_hash(&k), &k, group))
    }
}

/// Builds a [`Live`] snapshot.
#[derive(Debug, Clone, Default)]
pub struct LiveBuilder {
    gateways: Arc<GatewayState>,
    load: Arc<Load>,
    quality: Arc<Quality>,
}

impl LiveBuilder {
    /// Replaces the gateway part with `state`.
    pub fn gateway_state(mut self, state: GatewayState) -> Self {
        self.gateways = Arc::new(state);
        self
    }

    /// Sets the status of one gateway, by a key that is already
    /// [`gateway_key`]'s output.
    pub fn gateway_status_key(mut self, key: String, status: GatewayStatus) -> Self {
        Arc::make_mut(&mut self.gateways).set_key(key, status);
        self
    }

    /// Sets the status of one gateway by any spelling of its URI.
    ///
    /// # Errors
    /// [`GatewayUriError`] when `uri` cannot name a gateway.
    pub fn gateway_status(self, uri: &str, status: GatewayStatus) -> Result<Self, GatewayUriError> {
        let key = gateway_key(uri)?;
        Ok(self.gateway_status_key(key, status))
    }

    /// Sets the load of a trunk (a zero load forgets it).
    pub fn trunk_load(mut self, trunk: &str, load: TrunkLoad) -> Self {
        let v = (load != TrunkLoad::default()).then_some(load);
        Arc::make_mut(&mut self.load).trunks.set(trunk, v);
        self
    }

    /// Sets the calls in progress on a gateway, by a key that is already
    /// [`gateway_key`]'s output (zero forgets it).
    pub fn gateway_calls_key(mut self, key: &str, calls: u32) -> Self {
        Arc::make_mut(&mut self.load)
            .gateways
            .set(key, (calls > 0).then_some(calls));
        self
    }

    /// Sets the calls in progress on a gateway by any spelling of its URI.
    ///
    /// # Errors
    /// [`GatewayUriError`] when `uri` cannot name a gateway.
    pub fn gateway_calls(self, uri: &str, calls: u32) -> Result<Self, GatewayUriError> {
        let key = gateway_key(uri)?;
        Ok(self.gateway_calls_key(&key, calls))
    }

    /// Judges a gateway (by a [`gateway_key`]) poor, or not, for a
    /// destination group ([`ANY_GROUP`]: for every group).
    pub fn poor_key(mut self, key: &str, group: &str, poor: bool) -> Self {
        if group == ANY_GROUP {
            Arc::make_mut(&mut self.quality)
                .everywhere
                .set(key, poor.then_some(()));
            return self;
        }
        let pair = format!("{key}\n{group}");
        let h = pair_hash(key_hash(key), group);
        let q = Arc::make_mut(&mut self.quality);
        let n = q.gateways.get(key_hash(key), key).copied().unwrap_or(0);
        match (q.poor.items.find_entry(h, |e| *e.1 == *pair), poor) {
            (Ok(e), false) => {
                e.remove();
                q.gateways.set(key, (n > 1).then(|| n - 1));
            }
            (Err(_), true) => {
                q.poor.items.insert_unique(h, (h, pair.into(), ()), |e| e.0);
                q.gateways.set(key, Some(n + 1));
            }
            _ => {}
        }
        self
    }

    /// Judges a gateway poor for a group, by any spelling of its URI.
    ///
    /// # Errors
    /// [`GatewayUriError`] when `uri` cannot name a gateway.
    pub fn poor(self, uri: &str, group: &str) -> Result<Self, GatewayUriError> {
        let key = gateway_key(uri)?;
        Ok(self.poor_key(&key, group, true))
    }

    /// The snapshot.
    pub fn build(self) -> Live {
        Live {
            gateways: self.gateways,
            load: self.load,
            quality: self.quality,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_sets_and_forgets_facts() {
        let live = Live::builder()
            .gateway_status("sip:192.0.2.1", GatewayStatus::Down)
            .unwrap()
            .trunk_load("acme", TrunkLoad::new(5, 2))
            .gateway_calls("sip:192.0.2.1:5060", 3)
            .unwrap()
            .poor("sip:192.0.2.1", "uk-mobile")
            .unwrap()
            .build();
        assert_eq!(live.gateways().status("sip:192.0.2.1"), GatewayStatus::Down);
        assert_eq!(live.trunk_load("acme"), TrunkLoad::new(5, 2));
        assert_eq!(live.trunk_load("other"), TrunkLoad::default());
        assert_eq!(live.gateway_calls("sip:192.0.2.1"), 3);
        assert!(live.is_poor("sip:192.0.2.1:5060", "uk-mobile"));
        assert!(!live.is_poor("sip:192.0.2.1", "uk-mobil"));
        assert!(!live.is_poor("sip:192.0.2.1", "uk-mobile2"));
        assert!(!live.is_poor("sip:192.0.2.2", "uk-mobile"));
        let anywhere = Live::builder()
            .poor_key("sip:192.0.2.2:5060;transport=udp", ANY_GROUP, true)
            .build();
        assert!(anywhere.is_poor("sip:192.0.2.2", "uk-mobile"));
        assert!(anywhere.is_poor("sip:192.0.2.2", "intl@44"));
        assert!(!anywhere.is_poor("sip:192.0.2.1", "intl@44"));

        // Changing a copy leaves the original as it was.
        let next = live
            .to_builder()
            .trunk_load("acme", TrunkLoad::default())
            .gateway_calls("sip:192.0.2.1", 0)
            .unwrap()
            .poor_key("sip:192.0.2.1:5060;transport=udp", "uk-mobile", false)
            .build();
        assert_eq!(next.trunk_load("acme"), TrunkLoad::default());
        assert_eq!(next.gateway_calls("sip:192.0.2.1"), 0);
        assert!(!next.is_poor("sip:192.0.2.1", "uk-mobile"));
        assert!(next.load.is_empty() && next.quality.is_empty());
        assert_eq!(live.trunk_load("acme"), TrunkLoad::new(5, 2));
        assert!(live.is_poor("sip:192.0.2.1", "uk-mobile"));
        assert_eq!(next.gateways().status("sip:192.0.2.1"), GatewayStatus::Down);
    }
}
