//! Hot reload: rebuild the whole table, swap it atomically, keep the last
//! good one (STYLE 10 and 11).
//!
//! The watcher watches the routes.d *directory*, not its files: editors save
//! by rename (which kills a per-file inotify watch), and a Kubernetes
//! ConfigMap update is a rename of the `..data` symlink inside the
//! directory. Every event, whatever the file, only does `try_send(())` on a
//! channel of capacity 1, which coalesces bursts for free; one task waits
//! for a quiet debounce window, drains the channel, re-reads and compiles
//! the directory on a dedicated reload thread and swaps the result in. SIGHUP feeds
//! the same channel. An event that arrives during a reload leaves the slot
//! full, so the directory is read again afterwards and no change is lost.
//!
//! The quiet window has a ceiling: a directory that keeps changing (a file
//! rewritten every 0.2 s with a 250 ms window) would otherwise never be
//! read; `--debounce-max` (2 s) after the first change it is read anyway.
//!
//! Rate decks (SPEC §7) may live in folders below routes.d
//! (`routes.d/rates/acme.csv`): after every read of the directory, the
//! folders holding the decks it names are watched too, so an edited deck
//! reloads like an edited TOML file (and a broken one keeps the last good
//! table serving, like a broken TOML file). An inotify watch follows an
//! inode, not a path, so before every read the deck folders are watched
//! afresh by path: a folder replaced under the same name (`mv rates.new
//! rates`, `rm -rf rates; mkdir rates`) is followed from the read that the
//! replacement itself triggers (it is a change in routes.d). Comparing
//! inodes instead would miss `rm -rf; mkdir`, where the new folder often
//! gets the old inode number back.
//!
//! A panic inside one reload attempt (a bug in the compiler, say) is caught
//! and reported like a failed reload: were it to unwind out of the reload
//! thread, reloads would stop for good while `/health` still said `ok`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use c4route_core::{Error, RouteTable, SHOWN_PER_KIND, Severity, Sources};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::guard::panic_message;
use crate::state::{AppState, Loaded};

/// Keeps the directory watcher alive; [`ReloadHandle::stop`] ends the
/// watching and the reload thread.
#[derive(Debug)]
pub struct ReloadHandle {
    watcher: Option<notify::RecommendedWatcher>,
    thread: std::thread::JoinHandle<()>,
}

impl ReloadHandle {
    /// Stops watching. The reload thread ends once shutdown has begun
    /// (`AppState::stop`): the SIGHUP task wakes it then. Returns the
    /// thread, to join (a reload still compiling finishes first).
    pub fn stop(self) -> std::thread::JoinHandle<()> {
        drop(self.watcher);
        self.thread
    }
}

/// When a change is read.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// Quiet time after the last change (`--reload-debounce`).
    pub quiet: Duration,
    /// Longest time from the first change to the read (`--debounce-max`).
    pub max: Duration,
}

/// Starts the reload task (and the watcher when `watch`) and the SIGHUP
/// handler. Must run inside a tokio runtime.
///
/// # Errors
/// The watcher or the SIGHUP handler could not be installed.
pub fn spawn(
    state: Arc<AppState>,
    debounce: Debounce,
    watch: bool,
) -> anyhow::Result<ReloadHandle> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let new_watcher = |what: &'static str| {
        let events = tx.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                // notify 8 also watches IN_OPEN: without this filter our own
                // read_dir would trigger the next reload, forever. A close
                // after writing is a change; any other access is not.
                Ok(ev) if is_read_only(&ev.kind) => return,
                Ok(_) => {}
                Err(e) => warn!("watching {what}: {e}"),
            }
            // Full means a reload is already due; closed means we are stopping.
            let _ = events.try_send(());
        })
    };
    let watcher = if watch {
        let mut w = new_watcher("routes.d").context("creating the routes.d watcher")?;
        w.watch(&state.routes_dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", state.routes_dir.display()))?;
        Some(w)
    } else {
        None
    };
    // A second watcher, owned by the reload thread, for the folders that
    // hold rate decks (it changes them after each read of routes.d).
    let mut decks_watcher = if watch {
        Some(new_watcher("rate decks").context("creating the rate deck watcher")?)
    } else {
        None
    };
    state.deck_files.store(Arc::new(
        state
            .current
            .load()
            .table
            .rate_files()
            .map(PathBuf::from)
            .collect(),
    ));
    let mut watched = Vec::new();
    watch_deck_dirs(&state, decks_watcher.as_mut(), &mut watched, false);

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let hup_tx = tx;
    let stopped = state.stopped();
    tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => {
                    // Wakes the reload thread, which then sees the stop.
                    let _ = hup_tx.try_send(());
                    break;
                }
                s = hup.recv() => {
                    if s.is_none() {
                        break;
                    }
                    info!("SIGHUP: reloading routes.d");
                    let _ = hup_tx.try_send(());
                }
            }
        }
    });

    // One dedicated thread does every reload, off the async workers. Always
    // the same thread, so the allocator reuses one arena for every compile;
    // with tokio's blocking pool each reload could land on another thread
    // and glibc would keep one compile's peak per arena (measured: RSS of a
    // 100k-rule server grew from 0.5 to 1 GiB over three reloads).
    let thread = std::thread::Builder::new()
        .name("c4route-reload".into())
        .spawn(move || {
            while rx.blocking_recv().is_some() {
                if *state.stop.borrow() {
                    break;
                }
                // Debounce: wait until a whole quiet window passes without
                // new events, or `max` after the first one. An event left in
                // the slot by then reads the directory again afterwards.
                let first = Instant::now();
                loop {
                    let left = debounce.max.saturating_sub(first.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(debounce.quiet.min(left));
                    if rx.try_recv().is_err() {
                        break;
                    }
                }
                // Watches first, then the read: a deck edited after the
                // watch is a new event, one edited before it is in the read.
                // Afresh each time, so that a deck folder replaced under the
                // same name (`mv rates.new rates`) is followed.
                watch_deck_dirs(&state, decks_watcher.as_mut(), &mut watched, true);
                reload(&state);
                if watch_deck_dirs(&state, decks_watcher.as_mut(), &mut watched, false) {
                    // A folder first named by that read was watched after
                    // it: read once more (usually "unchanged").
                    reload(&state);
                }
            }
        })
        .context("starting the reload thread")?;
    Ok(ReloadHandle { watcher, thread })
}

/// Watches the folders that hold the rate decks routes.d names (other
/// than routes.d itself, which is always watched), and stops watching
/// those no deck is in any more. With `refresh`, every folder is watched
/// afresh (unwatched, then watched by path): an inotify watch stays on the
/// inode it was set on, so this is what follows a folder replaced under the
/// same name. Returns whether it watched a folder it did not watch before.
fn watch_deck_dirs(
    state: &AppState,
    watcher: Option<&mut notify::RecommendedWatcher>,
    watched: &mut Vec<PathBuf>,
    refresh: bool,
) -> bool {
    let Some(w) = watcher else { return false };
    let root = std::fs::canonicalize(&state.routes_dir).ok();
    let files = state.deck_files.load_full();
    let mut want: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent())
        .filter(|d| d.is_dir() && std::fs::canonicalize(d).ok() != root)
        .map(PathBuf::from)
        .collect();
    want.sort();
    want.dedup();
    if want == *watched && !refresh {
        return false;
    }
    for d in watched.iter().filter(|d| refresh || !want.contains(d)) {
        let _ = w.unwatch(d);
    }
    let mut new = false;
    for d in want.iter() {
        let before = watched.contains(d);
        if before && !refresh {
            continue;
        }
        match w.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) if !before => {
                new = true;
                info!("watching {} for rate deck changes", d.display());
            }
            Ok(()) => {}
            Err(e) => warn!("cannot watch {} for rate deck changes: {e}", d.display()),
        }
    }
    *watched = want;
    new
}

/// Whether an event only reports a read (open, close without writing).
fn is_read_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(kind, EventKind::Access(a) if !matches!(a, AccessKind::Close(AccessMode::Write)))
}

/// What one reload attempt did.
enum Outcome {
    Swapped {
        old: Arc<Loaded>,
        rules: usize,
    },
    Unchanged,
    Failed(Error),
    /// The attempt panicked; the payload's message.
    Panicked(String),
}

/// Reads routes.d; builds (with `build`) and swaps in a new table unless the
/// content is unchanged.
fn attempt(st: &AppState, build: impl FnOnce(&Sources) -> Result<RouteTable, Error>) -> Outcome {
    let sources = match Sources::read_dir(&st.routes_dir) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    st.deck_files.store(Arc::new(
        sources
            .rate_files()
            .map(|(p, _)| PathBuf::from(p))
            .collect(),
    ));
    if sources.digest() == st.current.load().table.version() {
        return Outcome::Unchanged;
    }
    match build(&sources) {
        Ok(table) => {
            let rules = table.rule_count();
            // Only the reload thread swaps, so the generation cannot race.
            let generation = st.current.load().generation + 1;
            let new = Arc::new(Loaded::new(table, generation));
            let m = &st.metrics;
            new.set_gauges(m);
            for w in new.table.warnings() {
                warn!("{w}");
            }
            // Before the swap, so the series are gone by the time /health
            // shows the new generation.
            st.current.load().retire(&new, m);
            // The call board follows before the swap too: the trunks'
            // new limits apply from the new table's first decision on.
            st.calls.follow_generation(&new.table, generation);
            let old = st.current.swap(new);
            Outcome::Swapped { old, rules }
        }
        Err(e) => Outcome::Failed(e),
    }
}

/// Re-reads and compiles routes.d (blocking; runs on the reload thread);
/// swaps on success.
pub fn reload(state: &AppState) {
    reload_with(state, Sources::build);
}

/// [`reload`] with `build` as the compile step, so a test can hand it one
/// that panics. Never panics itself: a panic in the attempt is caught and
/// reported like a failed reload, and the last good table keeps serving.
fn reload_with(state: &AppState, build: impl FnOnce(&Sources) -> Result<RouteTable, Error>) {
    let started = Instant::now();
    // Unwind safety: the attempt changes shared state only through atomic
    // stores (metrics, the old table's retired mark, then the one swap), so
    // a panic part-way breaks no invariant. The panic to expect is in
    // `build`, before any of them; one after them (only an allocation
    // failure could) would leave a table-size gauge ahead and the serving
    // table's first hits of still-unhit rules uncounted until the next swap.
    let outcome = catch_unwind(AssertUnwindSafe(|| attempt(state, build)))
        .unwrap_or_else(|payload| Outcome::Panicked(panic_message(&*payload)));
    let m = &state.metrics;
    m.last_reload_duration.set(started.elapsed().as_secs_f64());
    match outcome {
        Outcome::Swapped { old, rules } => {
            m.reloads_ok.inc();
            m.last_reload_success.set(1);
            state.last_error.store(None);
            let cur = state.current.load();
            info!(
                generation = cur.generation,
                version = cur.table.version(),
                rules,
                trunks = cur.table.trunk_count(),
                ms = started.elapsed().as_millis() as u64,
                "routes.d reloaded"
            );
            // Usually the last reference: a large table is freed here, on
            // the reload thread, not on an async worker.
            drop(old);
        }
        Outcome::Unchanged => {
            m.reloads_ok.inc();
            m.last_reload_success.set(1);
            if state.last_error.swap(None).is_some() {
                info!("routes.d is valid again (unchanged from the serving table)");
            } else {
                info!("routes.d unchanged; nothing to swap");
            }
        }
        Outcome::Failed(e) => {
            m.reloads_failed.inc();
            m.last_reload_success.set(0);
            let text = match &e {
                Error::Config(diags) => {
                    // Bounded, in the log and in /health (a probe): routes.d
                    // may hold 100k errors; `c4route check` lists them all.
                    let text = diags.bounded(SHOWN_PER_KIND, Severity::Error);
                    for line in text.lines() {
                        error!("{line}");
                    }
                    text
                }
                other => {
                    error!("{other}");
                    other.to_string()
                }
            };
            warn!(
                generation = state.current.load().generation,
                "reload failed; the last good table keeps serving"
            );
            state.last_error.store(Some(Arc::new(text)));
        }
        Outcome::Panicked(msg) => {
            m.reloads_failed.inc();
            m.last_reload_success.set(0);
            error!(
                generation = state.current.load().generation,
                "reload panicked: {msg}; the last good table keeps serving"
            );
            let text = format!(
                "the reload panicked (a bug in c4route; please report it): {msg}; \
                 the last good table keeps serving"
            );
            state.last_error.store(Some(Arc::new(text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::empty_state;

    const ROUTES: &str = r#"
[trunks.a]
gateways = ["sip:192.0.2.1:5060"]

[[rules]]
name = "all"
then.trunks = ["a"]
"#;

    #[test]
    fn a_panicking_reload_is_reported_and_the_next_one_works() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-routes.toml"), ROUTES).unwrap();
        let state = empty_state(dir.path().to_owned(), Vec::new());
        let m = &state.metrics;

        reload_with(&state, |_| panic!("boom in compile"));
        let err = state.last_error.load_full().expect("/health is degraded");
        assert!(err.contains("reload panicked"), "{err}");
        assert!(err.contains("boom in compile"), "{err}");
        assert_eq!(m.reloads_failed.get(), 1);
        assert_eq!(m.last_reload_success.get(), 0);
        assert_eq!(state.current.load().generation, 1, "the old table serves");

        // A String payload (panic! with arguments) is reported too.
        reload_with(&state, |s| {
            panic!("boom with {} file(s)", s.files().count())
        });
        let err = state.last_error.load_full().unwrap();
        assert!(err.contains("boom with 1 file(s)"), "{err}");
        assert_eq!(m.reloads_failed.get(), 2);

        // The next change reloads as usual.
        reload(&state);
        assert!(state.last_error.load().is_none());
        assert_eq!(state.current.load().generation, 2);
        assert_eq!(state.current.load().table.rule_count(), 1);
        assert_eq!(m.reloads_ok.get(), 1);
        assert_eq!(m.last_reload_success.get(), 1);
    }

    #[test]
    fn a_failed_reload_with_many_errors_gives_a_bounded_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from(ROUTES);
        for i in 0..2000 {
            text += &format!("[[rules]]\nname = \"r{i}\"\nthen.trunks = [\"nope{i}\"]\n");
        }
        text += "[[rules]]\nname = \"bad-code\"\nthen.reject = { code = 700, reason = \"x\" }\n";
        std::fs::write(dir.path().join("10-routes.toml"), text).unwrap();
        let state = empty_state(dir.path().to_owned(), Vec::new());
        reload(&state);
        let err = state.last_error.load_full().expect("/health is degraded");
        assert!(err.len() < 8_000, "{} bytes:\n{err}", err.len());
        let lines: Vec<&str> = err.lines().collect();
        let shown = lines.iter().filter(|l| l.contains("error: unknown trunk"));
        assert_eq!(shown.count(), 20, "{err}");
        assert!(
            lines.contains(&"... and 1980 more like the line above"),
            "{err}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("10-routes.toml:") && l.contains("700")),
            "{err}"
        );
        assert!(
            lines.last().unwrap().starts_with("2001 error(s), "),
            "{err}"
        );
        assert_eq!(lines.len(), 23, "{err}");
    }
}
