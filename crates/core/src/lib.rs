//! c4route core (work in progress)
#![forbid(unsafe_code)]
mod config;
mod diag;
mod query;
mod uri;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use query::{MAX_BODY, Query, QueryError};
