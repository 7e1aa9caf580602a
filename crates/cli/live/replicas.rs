//! A replica among several (SPEC §9.4): starts the shared store's tasks
//! and applies what the other replicas share to this one's state. Kept out
//! of `store/`, which knows the store and not the service's state, so the
//! modules depend one way: this → `state` → `store`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hub::{ProbeResult, Shared};
use super::store::stream::{self, Entry, attempt_of};
use super::store::{Op, OpenCall, health, route_field};
use crate::state::AppState;
use tracing::info;

/// Starts the store's tasks (writer, reader, health check), if `--state`
/// was given; each ends at shutdown.
pub fn spawn(state: &Arc<AppState>) -> Vec<(&'static str, tokio::task::JoinHandle<()>)> {
    let Some(store) = state.store.clone() else {
        return Vec::new();
    };
    let applier = state.clone();
    let restorer = state.clone();
    vec![
        (
            "shared store writer",
            tokio::spawn(stream::writer(store.clone(), state.stopped())),
        ),
        (
            "shared store reader",
            tokio::spawn(stream::reader(
                store.clone(),
                move |entry, at| apply(&applier, entry, at),
                stream::HISTORY,
                state.stopped(),
            )),
        ),
        (
            "shared store health check",
            tokio::spawn(health::run(
                store,
                move || write_back(&restorer),
                state.stopped(),
            )),
        ),
    ]
}

/// Queues every call this replica holds open for a store that came back
/// empty (`restore.lua` leaves a record the store still has alone).
fn write_back(state: &AppState) {
    let Some(store) = &state.store else { return };
    let max_duration = state.current.load().table.max_call_duration();
    let open = state.calls.open_records();
    info!(
        calls = open.len(),
        "writing back open calls to the shared store"
    );
    for r in open {
        let routes = r
            .routes
            .iter()
            .map(|(t, g, d, grp)| route_field(t, g, d, grp))
            .collect();
        store.send(Op::Restore(OpenCall {
            call_id: r.call_id,
            routes,
            holding: r.bits.0,
            ended: r.bits.1,
            answered: r.bits.2,
            max_duration,
        }));
    }
}

/// Applies another replica's entry as if it had happened here at `at`.
pub fn apply(state: &AppState, entry: Entry, at: Instant) {
    let shared = match entry {
        Entry::Probe {
            key,
            code,
            rtt_ms,
            error,
        } => Shared::Probe {
            key,
            result: ProbeResult {
                code,
                rtt: rtt_ms.map(Duration::from_millis),
                error,
            },
        },
        Entry::Report { key, code, call_id } => Shared::Report { key, code, call_id },
        Entry::Mark { key, disable } => Shared::Mark { key, disable },
        Entry::Event {
            call_id,
            dst,
            event,
            ended,
        } => {
            // This replica's own record of the call (if it decided it)
            // releases what it holds; its quality result is not used:
            // the replica that applied the event counted it once.
            state.calls.apply(&call_id, &dst, &event, Instant::now());
            let Some((gw, group, only)) = ended else {
                return;
            };
            Shared::Attempt {
                key: gw.into(),
                group: group.into(),
                attempt: attempt_of(&event),
                duration_only: only,
            }
        }
    };
    if !state.gateways.shared(shared, at) {
        // The gateway task's queue is full: lost for this replica.
        if let Some(store) = &state.store {
            store.metrics.dropped.inc();
        }
    }
}
