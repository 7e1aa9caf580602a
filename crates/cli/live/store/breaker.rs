//! The circuit breaker in front of the shared store (SPEC §9.4).
//!
//! Closed, every decision that needs the store asks it, bounded by
//! `--state-timeout`. The first failure (an error or a timeout) opens it,
//! and it stays open until the store's own health check (`health.rs`)
//! gets an answer again: a decision never spends a round trip on a store
//! that is known to be down, so after the first failure no decision is
//! slower than without a store. There is no half-open trial by a
//! decision; the health check is that trial.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

/// Whether the store may be asked, and why not.
#[derive(Debug, Default)]
pub struct Breaker {
    open: AtomicBool,
    /// Why it opened (for `/health`).
    reason: ArcSwapOption<String>,
    /// Times it opened.
    opened: AtomicU64,
}

impl Breaker {
    /// Whether the store may be asked now.
    pub fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// Opens it (the store failed); returns true if it was closed.
    pub fn trip(&self, why: String) -> bool {
        let was_closed = !self.open.swap(true, Ordering::AcqRel);
        if was_closed {
            self.reason.store(Some(why.into()));
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        was_closed
    }

    /// Opens it before the store was ever reached (not counted as an
    /// outage: `/health` says `outages: 0` until a real one).
    pub fn starting(&self, why: String) {
        self.open.store(true, Ordering::Release);
        self.reason.store(Some(why.into()));
    }

    /// Closes it (the store answers again); returns true if it was open.
    pub fn reset(&self) -> bool {
        let was_open = self.open.swap(false, Ordering::AcqRel);
        if was_open {
            self.reason.store(None);
        }
        was_open
    }

    /// Why it is open, if it is.
    pub fn reason(&self) -> Option<String> {
        if self.is_closed() {
            return None;
        }
        self.reason.load_full().map(|s| (*s).clone())
    }

    /// Times it has opened since the start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_and_closes_only_when_reset() {
        let b = Breaker::default();
        assert!(b.is_closed());
        assert!(b.trip("timeout".into()));
        assert!(
            !b.trip("refused".into()),
            "a second failure changes nothing"
        );
        assert!(!b.is_closed());
        assert_eq!(b.reason().as_deref(), Some("timeout"));
        assert_eq!(b.opened(), 1);
        assert!(b.reset());
        assert!(b.is_closed());
        assert_eq!(b.reason(), None);
        assert!(!b.reset());
        let c = Breaker::default();
        c.starting("not connected yet".into());
        assert!(!c.is_closed());
        assert_eq!(c.opened(), 0, "starting is no outage");
    }
}
