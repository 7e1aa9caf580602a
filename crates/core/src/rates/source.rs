//! A rate deck as the sources hold it, before it is loaded: what
//! `sources.rs` reads and `compile/` loads. It lives here, below both, so
//! that neither imports the other's types.

use std::sync::Arc;

/// One rate deck named by a trunk's `rates`: its bytes, or why they could
/// not be read (the compile reports that at the TOML line that names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateSource {
    /// The path relative to routes.d, normalised (see [`normalize_rate_path`]).
    pub key: Arc<str>,
    /// The path diagnostics show.
    pub shown: Arc<str>,
    pub bytes: Result<Vec<u8>, String>,
}

/// A `rates` path relative to routes.d, with `.` and `..` resolved; `Err`
/// says why it is not one (absolute, or it leaves routes.d).
pub(crate) fn normalize_rate_path(path: &str) -> Result<String, &'static str> {
    if path.trim().is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        return Err("is absolute; give a path relative to the routes.d directory");
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("leaves the routes.d directory; decks must live inside it");
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("names the routes.d directory itself, not a file");
    }
    Ok(parts.join("/"))
}
