//! Closes call records that have heard nothing for `[defaults.calls]
//! max_duration` (SPEC §9.1): a lost event never holds a channel for ever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::state::AppState;

/// How often records are checked: a record closes at most this much after
/// its `max_duration`.
const EVERY: Duration = Duration::from_secs(5);

/// Starts the task; it ends at shutdown.
pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = state.stopped();
        tokio::pin!(stopped);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = tick.tick() => {
                    let max = state.current.load().table.max_call_duration();
                    let n = state.calls.expire(max, Instant::now());
                    if n > 0 {
                        state.metrics.calls.expired.inc_by(n as u64);
                        info!(records = n, "closed call records that had no event for max_duration");
                    }
                }
            }
        }
    })
}
