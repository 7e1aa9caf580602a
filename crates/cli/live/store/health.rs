//! The store's health check: the only thing that closes the [`Breaker`].
//!
//! While the breaker is open it PINGs the store every [`EVERY`]; the first
//! answer closes it, and the writer then sends what waited and the reader
//! reads on from its last entry (the catch-up, without a restart). While it
//! is closed it PINGs now and then too, so a store that went away between
//! two decisions is noticed by the check rather than by a decision.
//!
//! [`Breaker`]: super::Breaker

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::{Store, StoreError};

/// How often the check runs while the store is down.
pub const EVERY: Duration = Duration::from_millis(250);
/// How often while it is up.
const UP_EVERY: Duration = Duration::from_secs(1);

/// Runs the check until `stop`. `on_lost` runs when the store is found to
/// have lost what it held (it restarted empty): the replica writes back
/// the calls it holds open, so the shared counts know them again.
pub async fn run(
    store: Arc<Store>,
    on_lost: impl Fn() + Send,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut first = true;
    let mut epoch = None;
    loop {
        let wait = if first {
            Duration::ZERO
        } else if store.is_up() {
            UP_EVERY
        } else {
            EVERY
        };
        first = false;
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(wait) => {}
        }
        let mut conn = store.conn.clone();
        let bound = store.timeout.max(Duration::from_millis(200));
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(bound, ping).await {
            Ok(Ok(_)) => {
                // The reader's and the writer's connections sat idle while
                // the store was down, and a ConnectionManager hands its last
                // failed reconnect to its next caller: each is asked once
                // here first, so that stale error is spent on the check and
                // not on a read or a write that would open the breaker again.
                if !store.is_up() && !store.other_connections_answer(bound).await {
                    continue;
                }
                if store.lost_data(&mut epoch).await == Some(true) {
                    info!(
                        "the shared store came back empty; writing back the calls this replica holds open"
                    );
                    on_lost();
                }
                if store.breaker.reset() {
                    info!("the shared store answers again; catching up");
                }
                store.metrics.up.set(1);
            }
            Ok(Err(e)) => store.failed(&StoreError::Failed(e.to_string())),
            Err(_) => store.failed(&StoreError::Timeout),
        }
    }
}
