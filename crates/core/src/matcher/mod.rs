//! Indexes that turn a candidate into the few rules that might match it.
//!
//! Each index returns *every* rule whose indexed condition covers the
//! candidate (not only the longest prefix): a longer-prefix rule can still lose
//! on another condition, and the shorter one must remain in the running.

pub(crate) mod ip;
pub(crate) mod prefix;
