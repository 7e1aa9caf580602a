//! Every source of runtime facts of `c4route serve` (SPEC §8, §9), each
//! behind a handle, none of them knowing HTTP:
//!
//! - `hub.rs`: the handle of the gateway state task, and the snapshot
//!   decisions read;
//! - `gateways.rs`: that task (trackers, reports, probe results, drains);
//! - `tracker.rs`: one gateway's state machine;
//! - `probe.rs` and `sip.rs`: SIP OPTIONS probes;
//! - `calls.rs`: call records and the channel and attempt counts of every
//!   trunk and gateway;
//! - `decide.rs`: a decision that holds what it takes;
//! - `expiry.rs`: closes records that heard nothing for `max_duration`;
//! - `store/`: the store shared with other replicas (`--state`);
//! - `replicas.rs`: starts the store's tasks and applies what other
//!   replicas share.

pub mod calls;
pub mod decide;
pub mod expiry;
pub mod gateways;
pub mod hub;
pub mod probe;
pub mod quality;
pub mod replicas;
pub mod sip;
pub mod store;
pub mod tracker;
