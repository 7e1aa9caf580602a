//! The order of an answer's routes, as a pipeline of small steps over
//! *slots* (a trunk of the rule and one of its gateways), before any URI or
//! header is rendered:
//!
//! 1. static order: the rule's trunks in turn (or cheapest first for
//!    `then.lcr`), each trunk's gateways in SRV order (`order.rs`) — built
//!    by `routes.rs`;
//! 2. [`leave_out`]: drained (disabled) gateways, and trunks or gateways at
//!    their capacity limit (SPEC §9.2), leave the answer;
//! 3. [`poor_behind`]: routes of gateways judged poor for the call's
//!    destination group (SPEC §9.3) move behind the others;
//! 4. [`down_last`]: routes of down gateways (SPEC §8) move behind all
//!    others;
//! 5. the `max_routes` cut (`routes.rs`), so the routes that fall off the
//!    end are the down ones, then the poor ones, never a good one while a
//!    worse one stays.
//!
//! Each move is stable: routes keep their relative order within a class,
//! so a poor gateway still comes before a down one, and when every gateway
//! is down the static order is still tried. Each step costs one branch when
//! its part of the [`Live`] snapshot is empty, so a table without live
//! facts pays nothing for them. Only the survivors are then rendered.

use crate::health::GatewayStatus;
use crate::live::Live;
use crate::rule::Trunk;

/// One candidate route: the `step`-th trunk of the rule and its `gw`-th
/// gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub step: u32,
    pub gw: u32,
}

/// Which capacity limit left a route out.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The trunk's `limits.calls`.
    TrunkCalls,
    /// The trunk's `limits.cps`.
    TrunkCps,
    /// The gateway's `calls`.
    GatewayCalls,
}

impl Limit {
    /// `calls`, `cps` or `gateway_calls` (metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::TrunkCalls => "calls",
            Limit::TrunkCps => "cps",
            Limit::GatewayCalls => "gateway_calls",
        }
    }
}

/// A trunk (or one of its gateways) that a limit left out of an answer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut<'t> {
    /// The trunk's name.
    pub trunk: &'t str,
    /// The gateway's key, for [`Limit::GatewayCalls`].
    pub gateway: Option<&'t str>,
    /// Which limit.
    pub limit: Limit,
}

/// The trunk of each step, for the steps below.
pub(crate) trait Steps<'t> {
    fn trunk(&self, step: u32) -> &'t Trunk;
    /// The destination group of a step (SPEC §9.3).
    fn group(&self, step: u32) -> &str;
}

/// Step 2: removes disabled gateways and what a limit leaves out; each
/// trunk or gateway left out by a limit is recorded once in `left_out`.
pub(crate) fn leave_out<'t, S: Steps<'t> + ?Sized>(
    slots: &mut Vec<Slot>,
    steps: &S,
    live: &Live,
    left_out: &mut Vec<LeftOut<'t>>,
) {
    let state = &*live.gateways;
    let load = &*live.load;
    if state.is_empty() && load.is_empty() {
        return;
    }
    slots.retain(|s| {
        let t = steps.trunk(s.step);
        let g = &t.gateways[s.gw as usize];
        if !state.is_empty()
            && state.status_of_gateway(g.key_hash, &g.key) == GatewayStatus::Disabled
        {
            return false;
        }
        if load.is_empty() {
            return true;
        }
        let mut full = |gateway, limit| {
            let lo = LeftOut {
                trunk: &t.name,
                gateway,
                limit,
            };
            if !left_out.contains(&lo) {
                left_out.push(lo);
            }
            false
        };
        if t.limits.calls.is_some() || t.limits.cps.is_some() {
            let l = load.trunk(t.name_hash, &t.name);
            if t.limits.calls.is_some_and(|max| l.calls >= max) {
                return full(None, Limit::TrunkCalls);
            }
            if t.limits.cps.is_some_and(|max| l.cps >= max) {
                return full(None, Limit::TrunkCps);
            }
        }
        if let Some(max) = g.calls
            && load.gateway(g.key_hash, &g.key) >= max
        {
            return full(Some(&*g.key), Limit::GatewayCalls);
        }
        true
    });
}

/// Moves the slots for which `worse` holds behind the others, keeping
/// the relative order of both (a stable partition).
fn stable_behind(slots: &mut [Slot], worse: impl Fn(&Slot) -> bool) {
    let Some(first) = slots.iter().position(&worse) else {
        return;
    };
    let mut tail = Vec::new();
    let mut w = first;
    for r in first..slots.len() {
        let s = slots[r];
        if worse(&s) {
            tail.push(s);
        } else {
            slots[w] = s;
            w += 1;
        }
    }
    slots[w..].copy_from_slice(&tail);
}

/// Step 3: routes of gateways poor for their destination group go behind
/// the others.
pub(crate) fn poor_behind<'t, S: Steps<'t> + ?Sized>(slots: &mut [Slot], steps: &S, live: &Live) {
    let q = &*live.quality;
    if q.is_empty() {
        return;
    }
    stable_behind(slots, |s| {
        let g = &steps.trunk(s.step).gateways[s.gw as usize];
        q.is_poor(g.key_hash, &g.key, steps.group(s.step))
    });
}

/// Step 4: routes of down gateways go behind all others.
pub(crate) fn down_last<'t, S: Steps<'t> + ?Sized>(slots: &mut [Slot], steps: &S, live: &Live) {
    let state = &*live.gateways;
    if state.is_empty() {
        return;
    }
    stable_behind(slots, |s| {
        let g = &steps.trunk(s.step).gateways[s.gw as usize];
        state.status_of_gateway(g.key_hash, &g.key) == GatewayStatus::Down
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::key_hash;
    use crate::live::TrunkLoad;
    use crate::rule::{Gateway, TrunkLimits};

    struct Fixture {
        trunks: Vec<Trunk>,
    }

    impl<'t> Steps<'t> for &'t Fixture {
        fn trunk(&self, step: u32) -> &'t Trunk {
            &self.trunks[step as usize]
        }
        fn group(&self, _: u32) -> &str {
            "g"
        }
    }

    fn gw(n: u32, calls: Option<u32>) -> Gateway {
        let uri = format!("sip:192.0.2.{n}");
        let key = crate::gateway_key(&uri).unwrap();
        Gateway {
            key_hash: key_hash(&key),
            key: key.into(),
            uri: uri.clone().into(),
            scheme: "sip".into(),
            host_rest: format!("192.0.2.{n}").into(),
            priority: 0,
            weight: 1,
            calls,
        }
    }

    fn trunk(name: &str, gws: Vec<Gateway>, limits: TrunkLimits) -> Trunk {
        Trunk {
            name: name.into(),
            name_hash: key_hash(name),
            gateways: gws.into(),
            strip: 0,
            prefix: "".into(),
            proxy: None,
            proxy_key: None,
            socket: "".into(),
            fr_timer: 0,
            fr_inv_timer: 0,
            branch_flags: 0,
            headers: Box::default(),
            health: Default::default(),
            quality: Default::default(),
            limits,
        }
    }

    /// Trunk a (gateways .1, .2; calls ≤ 2), trunk b (.3 with calls ≤ 1, .4).
    fn fixture() -> (Fixture, Vec<Slot>) {
        let f = Fixture {
            trunks: vec![
                trunk(
                    "a",
                    vec![gw(1, None), gw(2, None)],
                    TrunkLimits {
                        calls: Some(2),
                        cps: Some(10),
                    },
                ),
                trunk(
                    "b",
                    vec![gw(3, Some(1)), gw(4, None)],
                    TrunkLimits::default(),
                ),
            ],
        };
        let slots = vec![
            Slot { step: 0, gw: 0 },
            Slot { step: 0, gw: 1 },
            Slot { step: 1, gw: 0 },
            Slot { step: 1, gw: 1 },
        ];
        (f, slots)
    }

    fn names(f: &Fixture, slots: &[Slot]) -> Vec<String> {
        slots
            .iter()
            .map(|s| {
                f.trunks[s.step as usize].gateways[s.gw as usize]
                    .uri
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn nothing_known_changes_nothing() {
        let (f, mut slots) = fixture();
        let before = slots.clone();
        let live = Live::default();
        let mut out = Vec::new();
        leave_out(&mut slots, &&f, &live, &mut out);
        poor_behind(&mut slots, &&f, &live);
        down_last(&mut slots, &&f, &live);
        assert_eq!(slots, before);
        assert!(out.is_empty());
    }

    #[test]
    fn limits_leave_out_full_trunks_and_gateways_once_each() {
        let (f, mut slots) = fixture();
        let live = Live::builder()
            .trunk_load("a", TrunkLoad::new(2, 0))
            .gateway_calls("sip:192.0.2.3", 1)
            .unwrap()
            .build();
        let mut out = Vec::new();
        leave_out(&mut slots, &&f, &live, &mut out);
        assert_eq!(names(&f, &slots), ["sip:192.0.2.4"]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].trunk, out[0].limit), ("a", Limit::TrunkCalls));
        assert_eq!(out[1].limit, Limit::GatewayCalls);
        assert_eq!(out[1].gateway, Some("sip:192.0.2.3:5060;transport=udp"));

        // One below the limit: nothing left out; cps counts as well.
        let (f, mut slots) = fixture();
        let live = Live::builder()
            .trunk_load("a", TrunkLoad::new(1, 9))
            .build();
        leave_out(&mut slots, &&f, &live, &mut out);
        assert_eq!(slots.len(), 4);
        let live = Live::builder()
            .trunk_load("a", TrunkLoad::new(1, 10))
            .build();
        let mut out = Vec::new();
        leave_out(&mut slots, &&f, &live, &mut out);
        assert_eq!(names(&f, &slots), ["sip:192.0.2.3", "sip:192.0.2.4"]);
        assert_eq!(out[0].limit, Limit::TrunkCps);
    }

    #[test]
    fn poor_then_down_keep_their_order() {
        let (f, mut slots) = fixture();
        let live = Live::builder()
            .gateway_status("sip:192.0.2.1", GatewayStatus::Down)
            .unwrap()
            .gateway_status("sip:192.0.2.4", GatewayStatus::Disabled)
            .unwrap()
            .poor("sip:192.0.2.2", "g")
            .unwrap()
            .poor("sip:192.0.2.1", "g")
            .unwrap()
            .build();
        let mut out = Vec::new();
        leave_out(&mut slots, &&f, &live, &mut out);
        poor_behind(&mut slots, &&f, &live);
        down_last(&mut slots, &&f, &live);
        // .3 good, .2 poor, .1 poor and down (down wins), .4 drained.
        assert_eq!(
            names(&f, &slots),
            ["sip:192.0.2.3", "sip:192.0.2.2", "sip:192.0.2.1"]
        );
    }
}
