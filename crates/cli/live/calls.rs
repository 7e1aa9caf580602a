//! Calls in progress (SPEC §9.1, §9.2): one record per Call-ID, opened by
//! the decision, moved by Kamailio's call events, and the channel and
//! attempt counts of every trunk and gateway they hold.
//!
//! Everything here is synchronous and shared by the request handlers:
//!
//! - counts are atomics in a [`Board`] slot per trunk and gateway (an
//!   `Arc` that a record holds, so a reload that keeps a trunk keeps its
//!   count, and a record opened before the reload releases the same slot);
//! - a trunk's attempts in the last second are a log of instants under a
//!   small lock of its own (exact, and bounded by the `cps` limit);
//! - records sit in shards, each under its own lock, found by the
//!   Call-ID's hash, so events for different calls rarely meet.
//!
//! Taking a channel is a compare-and-swap against the limit, so two
//! decisions at once never both take the last channel: the loser is told
//! which limit it hit and decides again without that trunk. Events are
//! applied order-free: each names the route it ends and, with `next`, the
//! route it starts; a route that has ended is never held again, and a
//! repeated event changes nothing.

// The locks here guard a few words each and are never held across an
// `.await` or a call out of this module: a std Mutex is the right tool
// (clippy.toml bans it by default to keep locks out of the table).
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use c4route_core::{Limit, RouteTable};

/// One second: the `cps` window.
const SECOND: Duration = Duration::from_secs(1);

/// How many attempts a trunk without a `cps` limit logs at most (its `cps`
/// figure then saturates there; memory stays bounded whatever the rate).
const CPS_LOG_CAP: usize = 100_000;

/// Record shards: enough that two request threads rarely contend.
const SHARDS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters
    // behind, never a half-written invariant worth refusing service for.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counts of one trunk.
#[derive(Debug, Default)]
pub struct TrunkSlot {
    /// The trunk's name.
    pub name: Arc<str>,
    /// Channels held now.
    calls: AtomicU32,
    /// `limits.calls`, 0 = none (set on every reload).
    max_calls: AtomicU32,
    /// `limits.cps`, 0 = none.
    max_cps: AtomicU32,
    /// Attempts in the last second, oldest first.
    attempts: Mutex<VecDeque<Instant>>,
    /// Times a limit left the trunk out of an answer, by limit.
    left_out_calls: AtomicU64,
    left_out_cps: AtomicU64,
    /// Failovers that took a channel past `limits.calls`.
    over_limit: AtomicU64,
}

/// The counts of one gateway.
#[derive(Debug, Default)]
pub struct GatewaySlot {
    /// The gateway's key.
    pub key: Arc<str>,
    calls: AtomicU32,
    /// `calls` on the gateway, 0 = none.
    max_calls: AtomicU32,
    left_out: AtomicU64,
}

/// Takes one from a channel count if it is below `max` (the one
/// compare-and-swap both trunks and gateways are limited by).
fn try_hold(calls: &AtomicU32, max: &AtomicU32) -> bool {
    let max = limit_of(max);
    calls
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (max.is_none_or(|m| n < m)).then_some(n + 1)
        })
        .is_ok()
}

/// Gives one back; never below zero, even if a bug released twice.
fn release(calls: &AtomicU32) {
    let _ = calls.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

fn limit_of(v: &AtomicU32) -> Option<u32> {
    match v.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

impl TrunkSlot {
    /// Calls in progress.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Attempts in the second before `now`.
    pub fn cps(&self, now: Instant) -> u32 {
        let mut log = lock(&self.attempts);
        expire(&mut log, now);
        log.len() as u32
    }

    /// `(limits.calls, limits.cps)`.
    pub fn limits(&self) -> (Option<u32>, Option<u32>) {
        (limit_of(&self.max_calls), limit_of(&self.max_cps))
    }

    /// `(left out by calls, left out by cps, failovers over the limit)`.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.left_out_calls.load(Ordering::Relaxed),
            self.left_out_cps.load(Ordering::Relaxed),
            self.over_limit.load(Ordering::Relaxed),
        )
    }

    fn release(&self) {
        release(&self.calls);
    }

    /// Takes a channel if below `limits.calls`.
    fn try_hold(&self) -> bool {
        try_hold(&self.calls, &self.max_calls)
    }

    /// Takes a channel whatever the limit (a failover Kamailio already
    /// tries); counts it when it goes past the limit.
    fn force_hold(&self) {
        let before = self.calls.fetch_add(1, Ordering::AcqRel);
        if limit_of(&self.max_calls).is_some_and(|m| before >= m) {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Logs an attempt if below `limits.cps` (or always, with `force`).
    fn try_attempt(&self, now: Instant, force: bool) -> bool {
        let max = limit_of(&self.max_cps);
        let mut log = lock(&self.attempts);
        expire(&mut log, now);
        if !force && max.is_some_and(|m| log.len() >= m as usize) {
            return false;
        }
        let cap = max.map_or(CPS_LOG_CAP, |m| (m as usize).max(1));
        if log.len() >= cap {
            log.pop_front();
        }
        log.push_back(now);
        true
    }
}

fn expire(log: &mut VecDeque<Instant>, now: Instant) {
    while log
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= SECOND)
    {
        log.pop_front();
    }
}

impl GatewaySlot {
    /// Calls in progress.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Its `calls` limit.
    pub fn limit(&self) -> Option<u32> {
        limit_of(&self.max_calls)
    }

    /// Times its limit left it out of an answer.
    pub fn left_out(&self) -> u64 {
        self.left_out.load(Ordering::Relaxed)
    }

    fn try_hold(&self) -> bool {
        try_hold(&self.calls, &self.max_calls)
    }

    fn force_hold(&self) {
        self.calls.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) {
        release(&self.calls);
    }
}

/// The slots of every trunk and gateway the serving tables have named, by
/// a stable id: a reload keeps a name's id and slot (and so its count),
/// and a record refers to routes by ids (16 bytes a route).
#[derive(Debug, Default, Clone)]
pub struct Board {
    trunks: Vec<Arc<TrunkSlot>>,
    trunk_ids: HashMap<Arc<str>, u32>,
    gateways: Vec<Arc<GatewaySlot>>,
    gateway_ids: HashMap<Arc<str>, u32>,
    /// The serving table's trunks in table order, for `GET /trunks`.
    order: Vec<u32>,
}

impl Board {
    /// The board of `table`, keeping the ids and slots (and so the counts)
    /// of every name `old` already had.
    pub fn follow(old: &Board, table: &RouteTable) -> Board {
        let mut b = old.clone();
        b.order.clear();
        for t in b.trunks.iter() {
            t.max_calls.store(0, Ordering::Relaxed);
            t.max_cps.store(0, Ordering::Relaxed);
        }
        for g in b.gateways.iter() {
            g.max_calls.store(0, Ordering::Relaxed);
        }
        for (name, calls, cps) in table.trunks() {
            let id = b.trunk_id(name);
            let slot = &b.trunks[id as usize];
            slot.max_calls.store(calls.unwrap_or(0), Ordering::Relaxed);
            slot.max_cps.store(cps.unwrap_or(0), Ordering::Relaxed);
            b.order.push(id);
        }
        for g in table.gateways() {
            let id = b.gateway_id(&g.key);
            let max = g.calls.unwrap_or(0);
            b.gateways[id as usize]
                .max_calls
                .store(max, Ordering::Relaxed);
        }
        b
    }

    fn trunk_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.trunk_ids.get(name) {
            return id;
        }
        let name: Arc<str> = name.into();
        let id = self.trunks.len() as u32;
        self.trunks.push(Arc::new(TrunkSlot {
            name: name.clone(),
            ..TrunkSlot::default()
        }));
        self.trunk_ids.insert(name, id);
        id
    }

    /// The id of a gateway key (a route's `dst_uri` with a proxy is
    /// registered here too: events name it).
    fn gateway_id(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.gateway_ids.get(key) {
            return id;
        }
        let key: Arc<str> = key.into();
        let id = self.gateways.len() as u32;
        self.gateways.push(Arc::new(GatewaySlot {
            key: key.clone(),
            ..GatewaySlot::default()
        }));
        self.gateway_ids.insert(key, id);
        id
    }

    /// A trunk's slot by name.
    pub fn trunk(&self, name: &str) -> Option<&Arc<TrunkSlot>> {
        self.trunk_ids.get(name).map(|&i| &self.trunks[i as usize])
    }

    /// A gateway's slot by key.
    pub fn gateway(&self, key: &str) -> Option<&Arc<GatewaySlot>> {
        self.gateway_ids
            .get(key)
            .map(|&i| &self.gateways[i as usize])
    }

    /// Every gateway (and proxy) the board has seen.
    pub fn gateways(&self) -> impl Iterator<Item = &Arc<GatewaySlot>> {
        self.gateways.iter()
    }

    /// The serving table's trunks, in table order.
    pub fn trunks(&self) -> impl Iterator<Item = &Arc<TrunkSlot>> {
        self.order.iter().map(|&i| &self.trunks[i as usize])
    }

    /// Counts a decision that a limit changed.
    pub fn left_out(&self, trunk: &str, gateway: Option<&str>, limit: Limit) {
        match limit {
            Limit::GatewayCalls => {
                if let Some(g) = gateway.and_then(|k| self.gateway(k)) {
                    g.left_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            Limit::TrunkCps => {
                if let Some(t) = self.trunk(trunk) {
                    t.left_out_cps.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                if let Some(t) = self.trunk(trunk) {
                    t.left_out_calls.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A route of a decision as a record keeps it; `None` when the board
    /// does not know its trunk or gateway (a table newer than the board:
    /// the caller follows it first).
    pub fn route(&self, trunk: &str, gateway: &str, dst: &str, group: u32) -> Option<RouteRef> {
        let dst = if dst == gateway {
            *self.gateway_ids.get(gateway)?
        } else {
            // A proxy: events name it, not the gateway.
            *self.gateway_ids.get(dst)?
        };
        Some(RouteRef {
            trunk: *self.trunk_ids.get(trunk)?,
            gateway: *self.gateway_ids.get(gateway)?,
            dst,
            group,
        })
    }

    /// Registers a proxy key so routes through it can be recorded.
    pub fn with_proxy(mut self, key: &str) -> Board {
        self.gateway_id(key);
        self
    }

    /// The id of a key, if known.
    pub fn key_id(&self, key: &str) -> Option<u32> {
        self.gateway_ids.get(key).copied()
    }

    fn t(&self, r: &RouteRef) -> &TrunkSlot {
        &self.trunks[r.trunk as usize]
    }

    fn g(&self, r: &RouteRef) -> &GatewaySlot {
        &self.gateways[r.gateway as usize]
    }
}

/// One route of a call, as a record keeps it: ids into the [`Board`] and
/// the group interner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRef {
    /// The trunk.
    pub trunk: u32,
    /// The gateway.
    pub gateway: u32,
    /// The key of the route's `dst_uri` (what events name): the gateway,
    /// or the trunk's proxy.
    pub dst: u32,
    /// The destination group (SPEC §9.3), an id of [`Calls::group_id`].
    pub group: u32,
}

#[derive(Debug)]
struct Record {
    routes: Box<[RouteRef]>,
    /// Bit i: route i holds a channel.
    holding: u16,
    /// Bit i: route i has ended.
    ended: u16,
    /// Bit i: an `answered` event counted route i already.
    answered: u16,
    /// An event said the call is over (a `failed` without `next`, or
    /// `ended`): the record closes once no route holds a channel.
    over: bool,
    /// Seconds since [`Calls`] started when the last event (or the
    /// decision) touched it.
    touched: u32,
}

impl Record {
    fn release_all(&mut self, b: &Board) {
        for (i, r) in self.routes.iter().enumerate() {
            if self.holding & (1 << i) != 0 {
                b.t(r).release();
                b.g(r).release();
            }
        }
        self.holding = 0;
        self.ended = u16::MAX;
    }
}

/// What a call event says (SPEC §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A branch ended without an answer; `next` is the route tried now.
    Failed {
        /// Its final code.
        code: u16,
        /// The key of the route Kamailio tries now.
        next: Option<String>,
        /// Post-dial delay, when the branch rang.
        pdd: Option<Duration>,
    },
    /// The call was answered (optional, before `Ended`).
    Answered {
        /// Post-dial delay.
        pdd: Option<Duration>,
    },
    /// An answered call ended.
    Ended {
        /// Post-dial delay.
        pdd: Option<Duration>,
        /// Time from the answer.
        duration: Option<Duration>,
    },
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// No record for that Call-ID.
    UnknownCall,
    /// The record has no route to that `dst_uri`.
    UnknownRoute,
    /// Applied.
    Done {
        /// The route whose attempt this event completes for quality, once:
        /// the route a `failed` or `ended` ended now, or the route an
        /// `answered` named first; `None` for a repeat.
        ended: Option<RouteEnd>,
        /// Whether the record is closed now.
        closed: bool,
    },
}

/// A route whose attempt an event completed (for quality statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEnd {
    /// The gateway's key.
    pub gateway: Arc<str>,
    /// The destination group's id ([`Calls::group`]).
    pub group: u32,
    /// An earlier `answered` event counted this attempt already (an
    /// `ended` then adds only its duration).
    pub answered_before: bool,
}

/// Why a channel could not be taken.
pub type Refused = Limit;

/// One shard of the records: Call-ID → record.
type Shard = Mutex<HashMap<Box<str>, Record>>;

/// Interned destination groups: name → id, and id → name.
type Groups = Mutex<(HashMap<Arc<str>, u32>, Vec<Arc<str>>)>;

/// Every call record, sharded by Call-ID.
pub struct Calls {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    /// The slots of every trunk and gateway.
    pub board: ArcSwap<Board>,
    /// Destination groups by id (append-only; a few per rule at most).
    groups: Groups,
    started: Instant,
    /// The table generation the board follows (0: none yet).
    followed: AtomicU64,
    /// Held while following a new table, so two threads that see a new
    /// generation at once build one board, not two.
    following: Mutex<()>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("open", &self.open_count())
            .finish()
    }
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            board: ArcSwap::from_pointee(Board::default()),
            groups: Mutex::default(),
            started: Instant::now(),
            followed: AtomicU64::new(0),
            following: Mutex::new(()),
        }
    }
}

impl Calls {
    fn shard(&self, call_id: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(call_id) as usize) % SHARDS]
    }

    fn secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.started).as_secs() as u32
    }

    /// Follows a new serving table (keeps counts by name). Proxies of the
    /// table's trunks are registered, so routes through them are recorded.
    pub fn follow(&self, table: &RouteTable) {
        let next = Board::follow(&self.board.load(), table);
        self.board.store(Arc::new(next));
    }

    /// Follows the serving table of `generation` unless the board already
    /// does: one atomic load per decision once it does.
    pub fn follow_generation(&self, table: &RouteTable, generation: u64) {
        if self.followed.load(Ordering::Acquire) == generation {
            return;
        }
        let _one = lock(&self.following);
        if self.followed.load(Ordering::Acquire) != generation {
            self.follow(table);
            self.followed.store(generation, Ordering::Release);
        }
    }

    /// Registers a key the board did not know (a proxy `dst_uri`).
    pub fn register(&self, key: &str) {
        let _one = lock(&self.following);
        let b = self.board.load();
        if b.key_id(key).is_none() {
            let next = (**b).clone().with_proxy(key);
            self.board.store(Arc::new(next));
        }
    }

    /// The id of a destination group, interned.
    pub fn group_id(&self, group: &str) -> u32 {
        let mut g = lock(&self.groups);
        if let Some(&id) = g.0.get(group) {
            return id;
        }
        let name: Arc<str> = group.into();
        let id = g.1.len() as u32;
        g.1.push(name.clone());
        g.0.insert(name, id);
        id
    }

    /// The name of a group id.
    pub fn group(&self, id: u32) -> Arc<str> {
        lock(&self.groups)
            .1
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| "".into())
    }

    /// Takes the first route's channel and attempt for a decision: `Ok`
    /// when taken, else the limit that refused it (nothing is taken then).
    /// `hold` is false for a query without a Call-ID (an attempt, no
    /// channel: no event will ever release it).
    pub fn take(
        &self,
        trunk: &TrunkSlot,
        gateway: &GatewaySlot,
        hold: bool,
        now: Instant,
    ) -> Result<(), Refused> {
        if hold {
            if !trunk.try_hold() {
                return Err(Limit::TrunkCalls);
            }
            if !gateway.try_hold() {
                trunk.release();
                return Err(Limit::GatewayCalls);
            }
        }
        if !trunk.try_attempt(now, false) {
            if hold {
                trunk.release();
                gateway.release();
            }
            return Err(Limit::TrunkCps);
        }
        Ok(())
    }

    /// Takes the first route's channel and attempt whatever the limits (the
    /// shared store reserved them already, SPEC §9.4): this replica's own
    /// counts then say what it holds.
    pub fn take_forced(&self, trunk: &TrunkSlot, gateway: &GatewaySlot, hold: bool, now: Instant) {
        if hold {
            trunk.force_hold();
            gateway.force_hold();
        }
        trunk.try_attempt(now, true);
    }

    /// Opens the record of a call whose first route's channel [`Calls::take`]
    /// took (at most 16 routes are tracked; Kamailio tries at most 31). A
    /// record already open under that Call-ID (Kamailio asked again) is
    /// closed first, releasing what it held.
    pub fn open(&self, call_id: &str, mut routes: Vec<RouteRef>, now: Instant) {
        routes.truncate(16);
        let rec = Record {
            routes: routes.into(),
            holding: 1,
            ended: 0,
            answered: 0,
            over: false,
            touched: self.secs(now),
        };
        let mut shard = lock(self.shard(call_id));
        if let Some(mut old) = shard.insert(call_id.into(), rec) {
            old.release_all(&self.board.load());
        }
    }

    /// Applies one event to the call `call_id`; `dst` is the key of the
    /// route it ends.
    pub fn apply(&self, call_id: &str, dst: &str, event: &Event, now: Instant) -> Applied {
        let b = self.board.load();
        let mut shard = lock(self.shard(call_id));
        let Some(rec) = shard.get_mut(call_id) else {
            return Applied::UnknownCall;
        };
        let Some(dst_id) = b.key_id(dst) else {
            return Applied::UnknownRoute;
        };
        let bit = |i: usize| 1u16 << i;
        let holding = |rec: &Record, i: usize| rec.holding & bit(i) != 0;
        let ended = |rec: &Record, i: usize| rec.ended & bit(i) != 0;
        let to = |rec: &Record| {
            rec.routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.dst == dst_id)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let mine = to(rec);
        // The route it ends: the one holding a channel first, then one
        // not started yet (its own `next` has not arrived: out of order),
        // then one already ended (a repeat).
        let Some(i) = mine
            .iter()
            .copied()
            .find(|&i| holding(rec, i))
            .or_else(|| mine.iter().copied().find(|&i| !ended(rec, i)))
            .or_else(|| mine.first().copied())
        else {
            return Applied::UnknownRoute;
        };
        rec.touched = self.secs(now);
        let mut done = None;
        let answered_before = rec.answered & bit(i) != 0;
        if matches!(event, Event::Answered { .. }) {
            if !answered_before && !ended(rec, i) {
                rec.answered |= bit(i);
                done = Some(rec.routes[i]);
            }
        } else if !ended(rec, i) {
            let r = rec.routes[i];
            if holding(rec, i) {
                b.t(&r).release();
                b.g(&r).release();
                rec.holding &= !bit(i);
            }
            rec.ended |= bit(i);
            done = Some(r);
        }
        match event {
            Event::Failed { next: Some(n), .. } => {
                // The route it starts: one not started yet, after this one
                // if possible (Kamailio goes down the list).
                let next_id = b.key_id(n);
                let j = (0..rec.routes.len())
                    .filter(|&j| {
                        Some(rec.routes[j].dst) == next_id && !holding(rec, j) && !ended(rec, j)
                    })
                    .min_by_key(|&j| (j < i, j));
                if let Some(j) = j {
                    let r = rec.routes[j];
                    b.t(&r).force_hold();
                    b.g(&r).force_hold();
                    b.t(&r).try_attempt(now, true);
                    rec.holding |= bit(j);
                }
            }
            Event::Failed { next: None, .. } | Event::Ended { .. } => rec.over = true,
            Event::Answered { .. } => {}
        }
        let closed = rec.over && rec.holding == 0;
        if closed {
            shard.remove(call_id);
        }
        Applied::Done {
            ended: done.map(|r| RouteEnd {
                gateway: b.g(&r).key.clone(),
                group: r.group,
                answered_before,
            }),
            closed,
        }
    }

    /// Closes every record untouched for `max` (a lost event must not hold
    /// a channel for ever); returns how many.
    pub fn expire(&self, max: Duration, now: Instant) -> usize {
        let b = self.board.load();
        let now = self.secs(now);
        let max = max.as_secs().min(u64::from(u32::MAX)) as u32;
        let mut n = 0;
        for shard in self.shards.iter() {
            lock(shard).retain(|_, rec| {
                if now.saturating_sub(rec.touched) < max {
                    return true;
                }
                rec.release_all(&b);
                n += 1;
                false
            });
        }
        n
    }

    /// Records open now.
    pub fn open_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Closes every record.
    #[cfg(test)]
    pub fn clear(&self) {
        let b = self.board.load();
        for shard in self.shards.iter() {
            for (_, mut rec) in lock(shard).drain() {
                rec.release_all(&b);
            }
        }
    }
}

#[path = "calls/open.rs"]
mod open;

#[cfg(test)]
#[path = "calls/tests.rs"]
mod tests;
