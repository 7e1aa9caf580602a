//! Call records opened the way `crates/cli/live/decide.rs` opens them, for
//! the `calls` bench (`benches/calls.rs`) and the `calls_memory` example
//! (issue 14 targets).
//!
//! The table has [`TRUNKS`] trunks of two gateways each (`limits.calls` on
//! every trunk and a `calls` on every first gateway, high enough never to
//! refuse; no `cps`, which would refuse at bench rates). Call `k` has three
//! routes: over two trunks for an even `k` (`a/g0`, `a/g1`, `b/g0`), over
//! three for an odd one (`a/g0`, `b/g0`, `c/g0`). Call-IDs are 36
//! characters, `<27 hex digits>@10.0.0.1`, like a phone's or Kamailio's.

#![allow(dead_code)] // each user takes what it needs

#[path = "../../crates/cli/live/calls.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod calls;

use std::fmt::Write as _;
use std::time::Instant;

use c4route_core::{RouteTable, Sources};
use calls::{Calls, Event, RouteRef};

/// Trunks in the table.
pub const TRUNKS: usize = 100;

/// The table: `TRUNKS` trunks `t0`… with gateways `sip:198.18.A.B` (with
/// `calls`) and `sip:198.19.A.B`, one rule per trunk.
pub fn table() -> RouteTable {
    let mut text = String::new();
    for t in 0..TRUNKS {
        let (a, b) = (t / 250, t % 250);
        writeln!(
            text,
            "[trunks.t{t}]\ngateways = [{{ uri = \"sip:198.18.{a}.{b}\", calls = 1000000 }}, \"sip:198.19.{a}.{b}\"]\nlimits = {{ calls = 1000000 }}"
        )
        .unwrap();
    }
    for t in 0..TRUNKS {
        writeln!(
            text,
            "[[rules]]\nname = \"r{t}\"\nmatch.to.prefix = [\"{}\"]\nthen.trunks = [\"t{t}\", \"t{}\", \"t{}\"]",
            1000 + t,
            (t + 1) % TRUNKS,
            (t + 2) % TRUNKS
        )
        .unwrap();
    }
    let mut s = Sources::new();
    s.add("routes.d/10.toml", text);
    s.build().expect("the calls table compiles")
}

/// One route of a decision as `decide.rs` reads it from the answer.
#[derive(Debug, Clone)]
pub struct Route {
    pub trunk: String,
    /// The gateway key (`gateway_key` of the gateway URI).
    pub gateway: String,
    /// The route's `dst_uri` (the gateway's URI: no proxy).
    pub dst_uri: String,
}

/// A decision's routes and the events of its call.
#[derive(Debug, Clone)]
pub struct Plan {
    pub group: String,
    pub routes: [Route; 3],
    /// `failed` on route 0 with `next` = route 1.
    pub failed_next: Event,
    /// `ended` (of route 1 after `failed_next`, or of route 0).
    pub ended: Event,
}

fn route(t: usize, g: usize) -> Route {
    let (a, b) = (t / 250, t % 250);
    let uri = format!("sip:198.{}.{a}.{b}", 18 + g);
    Route {
        trunk: format!("t{t}"),
        gateway: c4route_core::gateway_key(&uri).expect("a gateway URI"),
        dst_uri: uri,
    }
}

/// The plan of call `k` (two route shapes × `TRUNKS` first trunks).
pub fn plans() -> Vec<Plan> {
    let mut out = Vec::with_capacity(2 * TRUNKS);
    for shape in 0..2 {
        for a in 0..TRUNKS {
            let (b, c) = ((a + 1) % TRUNKS, (a + 2) % TRUNKS);
            let routes = if shape == 0 {
                [route(a, 0), route(a, 1), route(b, 0)]
            } else {
                [route(a, 0), route(b, 0), route(c, 0)]
            };
            out.push(Plan {
                group: format!("r{a}"),
                failed_next: Event::Failed {
                    code: 503,
                    next: Some(routes[1].gateway.clone()),
                    pdd: None,
                },
                ended: Event::Ended {
                    pdd: None,
                    duration: None,
                },
                routes,
            });
        }
    }
    out
}

/// The plan of call `k`.
pub fn plan(plans: &[Plan], k: usize) -> &Plan {
    let shape = k % 2;
    &plans[shape * TRUNKS + (k / 2) % TRUNKS]
}

/// Writes the Call-ID of call `k` (of the id space `space`) into `out`:
/// 36 characters, `<27 hex digits>@10.0.0.1`.
pub fn call_id(space: u64, k: u64, out: &mut String) {
    let mix = |mut z: u64| {
        // SplitMix64's finaliser: ids look random, as real ones do.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let seed = (space << 40) ^ k;
    let (hi, lo) = (mix(seed), mix(!seed));
    out.clear();
    write!(out, "{hi:016x}{:011x}@10.0.0.1", lo & 0xfff_ffff_ffff).unwrap();
    debug_assert_eq!(out.len(), 36);
}

/// Calls that follow [`table`].
pub fn calls() -> Calls {
    let c = Calls::default();
    c.follow(&table());
    c
}

/// What `decide.rs` does once `c4route_core::decide` has answered `plan`:
/// the first route's channel and attempt ([`Calls::take`]), then the
/// record ([`Calls::open`]) with the routes as board ids, each `dst_uri`
/// turned into its key as `decide.rs` does.
pub fn decide_side(calls: &Calls, call_id: &str, plan: &Plan, now: Instant) {
    let board = calls.board.load();
    let first = &plan.routes[0];
    let (Some(trunk), Some(gw)) = (board.trunk(&first.trunk), board.gateway(&first.gateway)) else {
        panic!("the board follows the table");
    };
    calls
        .take(trunk, gw, true, now)
        .expect("the fixture's limits never refuse");
    let group = calls.group_id(&plan.group);
    let mut refs: Vec<RouteRef> = Vec::with_capacity(plan.routes.len());
    for r in &plan.routes {
        let dst = c4route_core::gateway_key(&r.dst_uri).expect("a gateway URI");
        let dst = if dst == r.gateway { None } else { Some(dst) };
        let dst = dst.as_deref().unwrap_or(&r.gateway);
        refs.push(
            board
                .route(&r.trunk, &r.gateway, dst, group)
                .expect("the board knows every route"),
        );
    }
    calls.open(call_id, refs, now);
}
