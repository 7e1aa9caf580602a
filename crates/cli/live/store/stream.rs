//! What moves shared state over time, between replicas (SPEC §9.4): one
//! Redis stream, `PREFIX events`, of entries each replica writes (its
//! reports, probe results, drains and the call events it applied) and
//! every other replica applies to its own gateway task and call records.
//!
//! - The **writer** ([`writer`]) sends what [`Store::send`] queued, in
//!   pipelines, off the request path. While the store is down the queue
//!   waits (at most [`PENDING_MAX`] entries, then the oldest are dropped
//!   and counted), and is written when it answers again: the catch-up.
//! - The **reader** ([`reader`]) follows the stream with a blocking XREAD
//!   on its own connection. It starts [`HISTORY`] back (or the longest
//!   quality window, if longer), so a replica that starts begins from the
//!   state the others built; after an outage it reads on from the last
//!   entry it saw. A replica skips its own entries.
//!
//! The stream is capped at [`STREAM_MAX`] entries (XADD MAXLEN ~) and its
//! key expires a day after the last write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::streams::StreamReadReply;
use tracing::{debug, info, warn};

use super::{PENDING_MAX, Reservation, Store};
use crate::live::calls::Event;
use crate::live::quality::Attempt;

/// Entries kept in the stream (approximately: `MAXLEN ~`).
pub const STREAM_MAX: usize = 1_000_000;
/// How far back a starting replica reads at least.
pub const HISTORY: Duration = Duration::from_secs(15 * 60);
/// How far back at most.
const HISTORY_MAX: Duration = Duration::from_secs(60 * 60);
/// The stream key's TTL, renewed by every write.
const STREAM_TTL_MS: u64 = 86_400_000;
/// Most queued writes sent in one pipeline.
const BATCH: usize = 512;
/// The bound of a background write (not a decision: it may take longer
/// than `--state-timeout`, but not for ever).
const WRITE_BOUND: Duration = Duration::from_secs(1);
/// The writer of an entry every replica applies, its writer included.
const EVERYONE: &str = "*";
/// How long the reader's XREAD blocks.
const BLOCK_MS: u64 = 1000;

/// One fact a replica shares with the others.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A probe's result.
    Probe {
        /// The gateway.
        key: String,
        /// Its final code, if any.
        code: Option<u16>,
        /// Sent → final reply.
        rtt_ms: Option<u64>,
        /// Why there is no code.
        error: Option<String>,
    },
    /// A §8 report (`/kamailio/feedback` or a `failed` event).
    Report {
        /// The gateway.
        key: String,
        /// The branch's final code.
        code: u16,
        /// The call it was about.
        call_id: String,
    },
    /// An operator drained or restored a gateway.
    Mark {
        /// The gateway.
        key: String,
        /// Drained (true) or restored.
        disable: bool,
    },
    /// A call event, applied to the shared record by the replica it
    /// reached; the others release their own record's channels with it and
    /// count the attempt it ended in their quality windows.
    Event {
        /// The call.
        call_id: String,
        /// The key of the route it ends.
        dst: String,
        /// The event.
        event: Event,
        /// The gateway and group of the attempt it completed, and whether
        /// only its duration counts (an `answered` counted it already).
        ended: Option<(String, String, bool)>,
    },
}

/// A write queued for the store.
#[derive(Debug, Clone)]
pub enum Op {
    /// A stream entry.
    Publish(Entry),
    /// A decision's record written after the fact (it needed no
    /// reservation, or was taken while the store was down).
    Reserve(Reservation),
    /// A call this replica holds open, written back to a store that came
    /// back empty.
    Restore(super::OpenCall),
    /// A call event applied locally while the store was down: applied to
    /// the shared record when it returns, then published.
    Event {
        /// The call.
        call_id: String,
        /// The key of the route it ends.
        dst: String,
        /// The event.
        event: Event,
        /// `max_duration`.
        max_duration: Duration,
        /// How many more times an "unknown call" answer is retried: 0 for
        /// a call this replica decided (its record was queued ahead of the
        /// event, so unknown means gone); [`UNKNOWN_RETRIES`] for another
        /// replica's call, whose record that replica may still be writing.
        retries: u8,
        /// This replica did not know the call, so its own quality window
        /// has not counted the attempt: the entry is written for every
        /// replica, this one included.
        foreign: bool,
        /// The attempt this replica's own record said the event ended
        /// (and counted in its quality windows): published for the others
        /// when the store no longer knows the call (it restarted empty).
        counted: Option<(String, String, bool)>,
    },
}

/// How often an event for a call the store does not know yet is retried
/// (after 250 ms, then twice as long each time: about 8 s in all) before
/// it is dropped. Two replicas that queued during one outage, one the
/// call's record and the other its event, catch up independently; without
/// the retry an event written first was lost and the call's channel held
/// in the store until `max_duration`.
pub const UNKNOWN_RETRIES: u8 = 5;
/// The first retry's delay.
const UNKNOWN_RETRY_FIRST: Duration = Duration::from_millis(250);

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

/// The name of an event, as Kamailio sends it.
pub fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Failed { .. } => "failed",
        Event::Answered { .. } => "answered",
        Event::Ended { .. } => "ended",
    }
}

impl Entry {
    /// The entry's fields (after `r`, the replica).
    fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Entry::Probe {
                key,
                code,
                rtt_ms,
                error,
            } => vec![
                ("k", "probe".into()),
                ("gw", key.clone()),
                ("code", opt(code)),
                ("rtt", opt(rtt_ms)),
                ("err", error.clone().unwrap_or_default()),
            ],
            Entry::Report { key, code, call_id } => vec![
                ("k", "report".into()),
                ("gw", key.clone()),
                ("code", code.to_string()),
                ("call", call_id.clone()),
            ],
            Entry::Mark { key, disable } => vec![
                ("k", "mark".into()),
                ("gw", key.clone()),
                ("disable", if *disable { "1" } else { "0" }.into()),
            ],
            Entry::Event {
                call_id,
                dst,
                event,
                ended,
            } => {
                let mut f = vec![
                    ("k", "event".into()),
                    ("ev", event_name(event).into()),
                    ("call", call_id.clone()),
                    ("dst", dst.clone()),
                ];
                match event {
                    Event::Failed { code, next, pdd } => {
                        f.push(("code", code.to_string()));
                        f.push(("next", opt(next)));
                        f.push(("pdd", opt(&ms(*pdd))));
                    }
                    Event::Answered { pdd } => f.push(("pdd", opt(&ms(*pdd)))),
                    Event::Ended { pdd, duration } => {
                        f.push(("pdd", opt(&ms(*pdd))));
                        f.push(("dur", opt(&duration.map(|d| d.as_secs()))));
                    }
                }
                if let Some((gw, group, only)) = ended {
                    f.push(("gw", gw.clone()));
                    f.push(("grp", group.clone()));
                    f.push(("only", if *only { "1" } else { "0" }.into()));
                }
                f
            }
        }
    }

    /// Reads an entry back; `None` for one this version does not know
    /// (written by a newer replica) or a malformed one.
    fn parse(map: &HashMap<String, Value>) -> Option<Entry> {
        let get = |k: &str| -> Option<String> {
            match map.get(k)? {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
        let text = |k: &str| get(k).filter(|v| !v.is_empty());
        let gw = || text("gw");
        Some(match get("k")?.as_str() {
            "probe" => Entry::Probe {
                key: gw()?,
                code: num("code").and_then(|c| u16::try_from(c).ok()),
                rtt_ms: num("rtt"),
                error: text("err"),
            },
            "report" => Entry::Report {
                key: gw()?,
                code: u16::try_from(num("code")?).ok()?,
                call_id: get("call").unwrap_or_default(),
            },
            "mark" => Entry::Mark {
                key: gw()?,
                disable: get("disable")? == "1",
            },
            "event" => {
                let pdd = num("pdd").map(Duration::from_millis);
                let event = match get("ev")?.as_str() {
                    "failed" => Event::Failed {
                        code: u16::try_from(num("code")?).ok()?,
                        next: text("next"),
                        pdd,
                    },
                    "answered" => Event::Answered { pdd },
                    "ended" => Event::Ended {
                        pdd,
                        duration: num("dur").map(Duration::from_secs),
                    },
                    _ => return None,
                };
                let ended = match (text("gw"), get("grp")) {
                    (Some(g), Some(grp)) => Some((g, grp, get("only").as_deref() == Some("1"))),
                    _ => None,
                };
                Entry::Event {
                    call_id: text("call")?,
                    dst: text("dst")?,
                    event,
                    ended,
                }
            }
            _ => return None,
        })
    }
}

/// The attempt a call event completes, for quality.
pub fn attempt_of(event: &Event) -> Attempt {
    match event {
        Event::Failed { pdd, .. } => Attempt::failed(*pdd),
        Event::Answered { pdd } => Attempt::answered(*pdd),
        Event::Ended { pdd, duration } => Attempt::ended(*pdd, duration.unwrap_or_default()),
    }
}

impl Store {
    fn stream_key(&self) -> String {
        format!("{}events", self.prefix)
    }
}

/// The writer: sends queued writes while the store is up, keeps them
/// while it is down. Ends at shutdown, after one last bounded flush.
pub async fn writer(store: Arc<Store>, stop: impl std::future::Future<Output = ()>) {
    let Some(mut rx) = store.outbox_rx.lock().await.take() else {
        return;
    };
    let mut pending: VecDeque<Op> = VecDeque::new();
    // Events waiting for another replica's record: (when to retry, op).
    let mut parked: Vec<(Instant, Op)> = Vec::new();
    tokio::pin!(stop);
    loop {
        let retry = !pending.is_empty() || !parked.is_empty();
        tokio::select! {
            biased;
            () = &mut stop => break,
            op = rx.recv() => match op {
                Some(op) => push(&store, &mut pending, op),
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(200)), if retry => {}
        }
        while pending.len() < BATCH * 4 {
            match rx.try_recv() {
                Ok(op) => push(&store, &mut pending, op),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        for (_, op) in parked.extract_if(.., |(at, _)| *at <= now) {
            pending.push_back(op);
        }
        if store.is_up() {
            flush(&store, &mut pending, &mut parked).await;
        }
    }
    while let Ok(op) = rx.try_recv() {
        push(&store, &mut pending, op);
    }
    if store.is_up() {
        let _ = tokio::time::timeout(WRITE_BOUND, flush(&store, &mut pending, &mut parked)).await;
    }
    let left = pending.len() + parked.len();
    if left > 0 {
        store.metrics.dropped.inc_by(left as u64);
        store.metrics.pending.dec_by(left as i64);
        warn!(
            writes = left,
            "stopping with writes the shared store did not take"
        );
    }
}

fn push(store: &Store, pending: &mut VecDeque<Op>, op: Op) {
    if pending.len() >= PENDING_MAX {
        pending.pop_front();
        store.metrics.dropped.inc();
        store.metrics.pending.dec();
    }
    pending.push_back(op);
}

/// Writes what is pending, a batch at a time, until it is empty or the
/// store fails (then the rest waits). An event for a call the store does
/// not know yet, with retries left, goes to `parked`.
async fn flush(store: &Store, pending: &mut VecDeque<Op>, parked: &mut Vec<(Instant, Op)>) {
    while !pending.is_empty() && store.is_up() {
        let mut entries = Vec::new();
        let mut done = 0;
        let mut waiting = 0;
        let mut failed = false;
        // Records are sent in pipelines; an event waits for the records
        // queued before it (its call's record may be one of them).
        let mut records: Vec<super::Record<'_>> = Vec::new();
        let mut recorded = 0;
        for op in pending.iter().take(BATCH) {
            match op {
                Op::Publish(e) => entries.push((done, e.clone(), false)),
                Op::Reserve(r) => records.push(super::Record::Decision(r)),
                Op::Restore(c) => records.push(super::Record::Open(c)),
                Op::Event {
                    call_id,
                    dst,
                    event,
                    max_duration,
                    retries,
                    foreign,
                    counted,
                } => {
                    if store.record_many(&records, WRITE_BOUND).await.is_err() {
                        failed = true;
                        break;
                    }
                    recorded = done;
                    records.clear();
                    let next = match event {
                        Event::Failed { next, .. } => next.as_deref(),
                        _ => None,
                    };
                    let r = store
                        .event(
                            call_id,
                            dst,
                            event_name(event),
                            next,
                            *max_duration,
                            Some(WRITE_BOUND),
                        )
                        .await;
                    match r {
                        Ok(super::Applied::Done { ended, .. }) => entries.push((
                            done,
                            Entry::Event {
                                call_id: call_id.clone(),
                                dst: dst.clone(),
                                event: event.clone(),
                                ended,
                            },
                            *foreign,
                        )),
                        // Another replica's call, whose record may still
                        // be on its way from that replica's queue: later.
                        Ok(super::Applied::UnknownCall)
                            if *retries > 0 && parked.len() < PENDING_MAX =>
                        {
                            let tried = UNKNOWN_RETRIES.saturating_sub(*retries);
                            let wait = UNKNOWN_RETRY_FIRST * (1u32 << tried.min(8));
                            let mut op = op.clone();
                            if let Op::Event { retries, .. } = &mut op {
                                *retries -= 1;
                            }
                            parked.push((Instant::now() + wait, op));
                            waiting += 1;
                        }
                        // Not in the store (it restarted empty, or the call
                        // was decided while it was down and its record
                        // lost): nothing to move there, but the others
                        // still count the attempt this replica counted.
                        Ok(_) => {
                            if counted.is_some() {
                                entries.push((
                                    done,
                                    Entry::Event {
                                        call_id: call_id.clone(),
                                        dst: dst.clone(),
                                        event: event.clone(),
                                        ended: counted.clone(),
                                    },
                                    false,
                                ));
                            }
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                    recorded = done + 1;
                }
            }
            done += 1;
        }
        if !failed && !records.is_empty() {
            if store.record_many(&records, WRITE_BOUND).await.is_err() {
                failed = true;
            } else {
                recorded = done;
            }
        }
        if failed {
            // What ran stays done; the rest (from the first op not sent)
            // waits for the store, its entries with it.
            done = recorded;
        }
        let entries: Vec<(Entry, bool)> = entries
            .into_iter()
            .filter(|(i, _, _)| *i < done)
            .map(|(_, e, all)| (e, all))
            .collect();
        if !entries.is_empty() && xadd(store, &entries).await.is_err() {
            // The scripts of this batch ran; only its entries are retried
            // (an entry applied twice by a reader moves nothing twice:
            // events and reports are idempotent per call, probes are
            // observations).
            let kept: Vec<Op> = entries.into_iter().map(|(e, _)| Op::Publish(e)).collect();
            // Out of the queue: the ops done, but those parked (still
            // counted); back in: the entries.
            store
                .metrics
                .pending
                .dec_by((done - waiting) as i64 - kept.len() as i64);
            pending.drain(..done);
            for op in kept.into_iter().rev() {
                pending.push_front(op);
            }
            return;
        }
        pending.drain(..done);
        store.metrics.written.inc_by((done - waiting) as u64);
        store.metrics.pending.dec_by((done - waiting) as i64);
        if failed {
            return;
        }
    }
}

/// Appends `entries` to the stream; an entry marked `true` is for every
/// replica, the writer included (its `r` is [`EVERYONE`]).
async fn xadd(store: &Store, entries: &[(Entry, bool)]) -> Result<(), ()> {
    let key = store.stream_key();
    let mut pipe = redis::pipe();
    for (e, all) in entries {
        let c = pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg("~");
        let from = if *all {
            EVERYONE
        } else {
            store.replica.as_str()
        };
        c.arg(STREAM_MAX).arg("*").arg("r").arg(from);
        for (k, v) in e.fields() {
            c.arg(k).arg(v);
        }
        c.ignore();
    }
    pipe.cmd("PEXPIRE").arg(&key).arg(STREAM_TTL_MS).ignore();
    let mut conn = store.write_conn.clone();
    match tokio::time::timeout(WRITE_BOUND, pipe.query_async::<()>(&mut conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            store.failed(&super::StoreError::Failed(e.to_string()));
            Err(())
        }
        Err(_) => {
            store.failed(&super::StoreError::Timeout);
            Err(())
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The reader: hands every other replica's entries to `apply` (with the
/// instant each happened, as seen here), from `history` back at the start.
/// Ends at shutdown.
pub async fn reader(
    store: Arc<Store>,
    apply: impl Fn(Entry, Instant) + Send,
    history: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let history = history.clamp(HISTORY, HISTORY_MAX);
    let mut last = format!("{}-0", now_ms().saturating_sub(history.as_millis() as u64));
    let key = store.stream_key();
    let mut conn = store.read_conn.clone();
    let mut caught_up = false;
    // Set while the store is down. The reader's connection sits idle then,
    // and `ConnectionManager` hands the error of its last reconnect attempt
    // (made while the store was away) to the next caller before it tries
    // again: the first read after the health check closed the breaker gets
    // that stale error, which says nothing about the store now. It is
    // retried once instead of opening the breaker again for everyone.
    let mut resumed = false;
    tokio::pin!(stop);
    loop {
        if !store.is_up() {
            resumed = true;
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        let mut c = redis::cmd("XREAD");
        c.arg("COUNT").arg(BATCH).arg("BLOCK").arg(BLOCK_MS);
        c.arg("STREAMS").arg(&key).arg(&last);
        let read = tokio::time::timeout(
            Duration::from_millis(BLOCK_MS) + store.timeout.max(Duration::from_millis(500)),
            c.query_async::<Option<StreamReadReply>>(&mut conn),
        );
        let reply = tokio::select! {
            () = &mut stop => break,
            r = read => r,
        };
        let reply = match reply {
            Ok(Ok(r)) => {
                resumed = false;
                r
            }
            Ok(Err(e)) if resumed => {
                resumed = false;
                debug!("shared state reader: retrying once after the store came back ({e})");
                continue;
            }
            Ok(Err(e)) => {
                store.failed(&super::StoreError::Failed(e.to_string()));
                continue;
            }
            Err(_) => {
                store.failed(&super::StoreError::Timeout);
                continue;
            }
        };
        let ids = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
            .unwrap_or_default();
        if ids.is_empty() && !caught_up {
            caught_up = true;
            info!("caught up with the shared state");
        }
        let now = (Instant::now(), now_ms());
        for id in ids {
            last = id.id.clone();
            let from_me = matches!(id.map.get("r"), Some(Value::BulkString(b)) if b == store.replica.as_bytes());
            if from_me {
                continue;
            }
            let Some(entry) = Entry::parse(&id.map) else {
                debug!(id = %id.id, "shared state: an entry this version does not know");
                continue;
            };
            let written = id
                .id
                .split('-')
                .next()
                .and_then(|m| m.parse::<u64>().ok())
                .unwrap_or(now.1);
            let age = Duration::from_millis(now.1.saturating_sub(written)).min(history);
            let at = now.0.checked_sub(age).unwrap_or(now.0);
            apply(entry, at);
            store.metrics.applied.inc();
        }
    }
}

#[cfg(test)]
mod tests;
