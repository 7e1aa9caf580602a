//! Panic guards for the background work of `c4route serve` (the prober and
//! the gateway state task; the reloader has its own, see `reload.rs`).
//!
//! A panic that unwound out of one of them used to end it silently: probing
//! stopped for good, or reports stopped being applied, while `/health` still
//! said `ok`. Now a panic is logged, counted
//! (`c4route_task_panics_total{task}`) and kept in `/health`
//! (`"status":"degraded"`, `task_error`) until the process restarts, since
//! it is a bug to report; and the work goes on: [`catch`] around one step of
//! a loop, [`supervise`] restarting a whole task.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tracing::error;

use crate::metrics::Metrics;

/// Where a caught panic is recorded: the metrics and the `task_error`
/// that `/health` shows (`AppState::panics` hands both over; this module
/// does not depend on the state).
#[derive(Debug, Clone, Copy)]
pub struct PanicSink<'a> {
    /// `c4route_task_panics_total{task}`.
    pub metrics: &'a Metrics,
    /// The last panic, for `/health`.
    pub task_error: &'a ArcSwapOption<String>,
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Logs and counts a panic of `task`, and makes `/health` degraded with it.
pub fn record_panic(sink: PanicSink<'_>, task: &'static str, msg: &str, then: &str) {
    error!(task, "panicked: {msg}; {then}");
    sink.metrics.task_panic(task);
    let text = format!("the {task} panicked (a bug in c4route; please report it): {msg}; {then}");
    sink.task_error.store(Some(Arc::new(text)));
}

/// Runs one step of `task`; a panic in it is recorded and `None` returned,
/// so the loop around it keeps going.
///
/// The caller asserts unwind safety: what `f` leaves half-done must not
/// break the next step (see each caller).
pub fn catch<T>(sink: PanicSink<'_>, task: &'static str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            record_panic(
                sink,
                task,
                &panic_message(&*payload),
                "it skipped that step and goes on",
            );
            None
        }
    }
}

/// Runs the task `make()` builds until it ends; each time it panics, it
/// is recorded and a fresh task is started after `pause` (so a task that
/// panics at once does not spin). Returns when a task ends without a panic,
/// or is cancelled (the runtime is shutting down).
pub async fn supervise<F, Fut>(
    sink: PanicSink<'_>,
    task: &'static str,
    pause: Duration,
    mut make: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let msg = panic_message(&*e.into_panic());
                record_panic(sink, task, &msg, "restarted");
                tokio::time::sleep(pause).await;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_caught_panic_degrades_health_and_counts() {
        let (metrics, task_error) = (Metrics::new(), ArcSwapOption::empty());
        let sink = PanicSink {
            metrics: &metrics,
            task_error: &task_error,
        };
        assert_eq!(catch(sink, "gateway state task", || 7), Some(7));
        assert!(task_error.load().is_none());
        let got: Option<()> = catch(sink, "gateway state task", || panic!("boom {}", 1));
        assert_eq!(got, None);
        let err = task_error.load_full().expect("degraded");
        assert!(err.contains("gateway state task panicked"), "{err}");
        assert!(err.contains("boom 1"), "{err}");
        let text = metrics.encode();
        assert!(
            text.contains("c4route_task_panics_total{task=\"gateway state task\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_supervised_task_is_restarted_after_a_panic() {
        let (metrics, task_error) = (Metrics::new(), ArcSwapOption::empty());
        let sink = PanicSink {
            metrics: &metrics,
            task_error: &task_error,
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = runs.clone();
        rt.block_on(async {
            let run = tokio::time::timeout(
                Duration::from_secs(5),
                supervise(sink, "prober", Duration::from_millis(1), move || {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        assert!(n >= 2, "panic number {n}");
                    }
                }),
            );
            run.await.expect("the third run ends normally");
        });
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let err = task_error.load_full().expect("degraded");
        assert!(
            err.contains("prober panicked") && err.contains("restarted"),
            "{err}"
        );
        assert!(
            metrics
                .encode()
                .contains("c4route_task_panics_total{task=\"prober\"} 2")
        );
    }
}
