//! The open records by names, for writing them back to a shared store
//! that restarted empty (SPEC §9.4, `live/replicas.rs`).

use std::sync::Arc;

use super::{Calls, lock};

/// A route by names: `(trunk, gateway, dst key, group)`.
pub type RouteNames = (Arc<str>, Arc<str>, Arc<str>, Arc<str>);

/// An open record by names ([`Calls::open_records`]).
#[derive(Debug, Clone)]
pub struct OpenRecord {
    /// The Call-ID.
    pub call_id: String,
    /// `(trunk, gateway, dst key, group)` of each route.
    pub routes: Vec<RouteNames>,
    /// `(holding, ended, answered)` bits.
    pub bits: (u16, u16, u16),
}

impl Calls {
    /// Every open record by names: Call-ID, routes (trunk, gateway, dst
    /// key, group) and its holding, ended and answered bits (for writing
    /// them back to a shared store that restarted empty).
    pub fn open_records(&self) -> Vec<OpenRecord> {
        let b = self.board.load();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (id, rec) in lock(shard).iter() {
                let routes = rec
                    .routes
                    .iter()
                    .map(|r| {
                        (
                            b.t(r).name.clone(),
                            b.g(r).key.clone(),
                            b.gateways[r.dst as usize].key.clone(),
                            self.group(r.group),
                        )
                    })
                    .collect();
                out.push(OpenRecord {
                    call_id: id.to_string(),
                    routes,
                    bits: (rec.holding, rec.ended, rec.answered),
                });
            }
        }
        out
    }
}
