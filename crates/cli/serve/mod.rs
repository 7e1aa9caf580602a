//! `c4route serve`: the HTTP service Kamailio queries for every new call
//! (SPEC §5).
//!
//! The shape is mini-redis's: [`serve`] takes a bound listener, the shared
//! [`AppState`] and a shutdown future; [`run`] adds the runtime, logging,
//! signals and the reloader around it. Dispatch is one `match` on method and
//! path, as in linkerd. The request path does one `ArcSwap::load()`, a
//! borrowed JSON parse, a synchronous `route()` and one compact
//! serialisation, and never awaits while it holds the table guard.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use c4route_core::{Sources, Wrap};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

mod evapi;
mod events;
mod gateways;
pub(crate) mod http;
mod query;
mod status;

use crate::reload;
use crate::report;
use crate::state::{AppState, Limits};
use http::{Resp, json_error, method_not_allowed};

/// `c4route serve`: answer Kamailio's routing queries over HTTP.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The routes.d directory (watched for changes; SIGHUP also reloads it).
    #[arg(long, value_name = "DIR", default_value = "./routes.d")]
    pub routes: PathBuf,
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Client networks allowed to send queries and reports and to read or
    /// change gateway state (repeatable); others get 403.
    /// Default: every client. /health and /metrics stay open to all.
    #[arg(long = "allow", value_name = "CIDR", value_parser = parse_net)]
    pub allow: Vec<IpNet>,
    /// Most open connections; further clients wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a connection may wait for (the rest of) a request head; this
    /// is also the keep-alive idle timeout (e.g. 300s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long reading a request body may take before a 408.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Quiet time after a change in DIR before it is re-read.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    pub reload_debounce: Duration,
    /// Longest wait from the first change in DIR to its reload, however
    /// often files keep changing (the quiet time alone could wait for ever).
    #[arg(long, alias = "reload-debounce-max", value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub debounce_max: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Do not watch DIR; reload only on SIGHUP (for file systems without inotify).
    #[arg(long)]
    pub no_watch: bool,
    /// Tokio worker threads (default: the CPUs this process may run on).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Local address SIP OPTIONS probes leave from (SPEC §8); give it
    /// Kamailio's address when carriers accept SIP only from there.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub probe_bind: SocketAddr,
    /// Most probes open at once.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub probe_max_in_flight: usize,
    /// Also take queries and call events over Kamailio's evapi module: connect
    /// to its `bind_addr` (an IP address and port; repeatable, one connection
    /// per Kamailio node) and reconnect whenever it is lost. The peer is
    /// trusted like an `--allow`ed client.
    #[arg(long = "evapi", value_name = "IP:PORT")]
    pub evapi: Vec<SocketAddr>,
    /// Share gateway state, calls, limits and quality with the other
    /// replicas through Redis 6+ or Valkey (SPEC §9.4):
    /// `redis://[:PASSWORD@]HOST:PORT/DB` or `rediss://…` for TLS.
    /// A standalone server (or a Sentinel set's primary), not a Cluster.
    #[arg(long = "state", value_name = "URL")]
    pub state: Option<String>,
    /// The store's password, from the first line of this file (instead of
    /// one in the URL, which `ps` shows).
    #[arg(long, value_name = "PATH", requires = "state")]
    pub state_password_file: Option<PathBuf>,
    /// The longest a decision waits for the store; slower or gone, it
    /// decides from local state (and `/health` says degraded).
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = parse_duration)]
    pub state_timeout: Duration,
    /// The prefix of every key c4route writes in the store (so several
    /// c4route clusters, or other applications, can share one).
    #[arg(long, value_name = "PREFIX", default_value = "c4route:")]
    pub state_prefix: String,
}

/// Runs `c4route serve` to completion: exit 0 after a graceful shutdown, 1
/// when routes.d is invalid at startup.
///
/// # Errors
/// The runtime, the listener or the watcher could not be set up, or routes.d
/// could not be read.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let table = match Sources::read_dir(&args.routes).and_then(|s| s.build()) {
        Ok(t) => t,
        Err(c4route_core::Error::Config(diags)) => {
            // The same lines as `c4route check`.
            report::print_diagnostics(&diags);
            eprintln!(
                "c4route: {} is invalid ({} errors); not starting",
                args.routes.display(),
                diags.errors().count()
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("loading {}", args.routes.display()));
        }
    };
    for w in table.warnings() {
        warn!("{w}");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        idle_timeout: args.idle_timeout,
        body_timeout: args.body_timeout,
        shutdown_timeout: args.shutdown_timeout,
    };
    let mut state = AppState::new(table, args.routes.clone(), args.allow.clone(), limits);
    if let Some(url) = &args.state {
        let cfg = crate::live::store::StoreConfig {
            url: url.clone(),
            password_file: args.state_password_file.clone(),
            timeout: args.state_timeout,
            prefix: args.state_prefix.clone(),
        };
        // The connection manager spawns its tasks on this runtime.
        let _in_rt = rt.enter();
        let store = crate::live::store::Store::connect(&cfg, state.metrics.store.clone())
            .context("--state")?;
        info!(
            store = %crate::live::store::redact(url),
            replica = %store.replica,
            "sharing state with other replicas"
        );
        state.store = Some(Arc::new(store));
    }
    let state = Arc::new(state);
    let result = rt.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let debounce = reload::Debounce {
            quiet: args.reload_debounce,
            max: args.debounce_max,
        };
        let reloader = reload::spawn(state.clone(), debounce, !args.no_watch)?;
        let gateway_task = crate::live::gateways::spawn(state.clone());
        let expiry_task = crate::live::expiry::spawn(state.clone());
        let probe = crate::live::probe::ProbeConfig {
            bind: args.probe_bind,
            max_in_flight: args.probe_max_in_flight,
        };
        let (probe_from, prober) = crate::live::probe::start(state.clone(), probe)?;
        info!("SIP OPTIONS probes leave from {probe_from}");
        let evapi_tasks = evapi::spawn(state.clone(), &args.evapi);
        let store_tasks = crate::live::replicas::spawn(&state);
        let shutdown = shutdown_signal()?;
        {
            let cur = state.current.load();
            info!(
                rules = cur.table.rule_count(),
                trunks = cur.table.trunk_count(),
                version = cur.table.version(),
                routes = %args.routes.display(),
                "listening on http://{local}"
            );
        }
        serve(listener, state.clone(), shutdown).await;
        // Every background task ends at the stop signal; each is awaited,
        // within a bound (a reload still compiling is not waited for).
        state.stop.send_replace(true);
        let reload_thread = reloader.stop();
        let wait = Duration::from_secs(2);
        let evapi_tasks = evapi_tasks
            .into_iter()
            .map(|t| ("evapi connection", Some(t)))
            .chain(store_tasks.into_iter().map(|(n, t)| (n, Some(t))));
        for (name, t) in [
            ("gateway state task", gateway_task),
            ("call expiry task", Some(expiry_task)),
        ]
        .into_iter()
        .chain(evapi_tasks)
        {
            if let Some(t) = t
                && tokio::time::timeout(wait, t).await.is_err()
            {
                warn!("the {name} did not stop within {wait:?}");
            }
        }
        for (name, t) in [("prober", prober), ("reload thread", reload_thread)] {
            let joined = tokio::task::spawn_blocking(move || t.join());
            if tokio::time::timeout(Duration::from_millis(500), joined)
                .await
                .is_err()
            {
                warn!("the {name} is still busy; not waiting for it");
            }
        }
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    });
    // Do not wait for a reload still compiling on the blocking pool.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

fn init_tracing() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(
            signal = name,
            "shutting down: no new connections, finishing in-flight requests"
        );
    })
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting,
/// lets in-flight requests finish (at most `limits.shutdown_timeout`) and
/// returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.limits.idle_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // Bound the connections: wait for a slot before accepting.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "TCP_NODELAY: {e}");
        }
        let allowed = state.allows(peer.ip());
        let conn_state = state.clone();
        let svc = service_fn(move |req| {
            let state = conn_state.clone();
            async move { Ok::<_, Infallible>(handle(req, &state, peer, allowed).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        let state = state.clone();
        tokio::spawn(async move {
            state.metrics.connections.inc();
            debug!(%peer, "connection opened");
            if let Err(e) = conn.await {
                debug!(%peer, "connection ended: {e}");
            }
            state.metrics.connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(state.limits.shutdown_timeout) => {
            warn!("shutdown timeout: closing connections with requests still in flight");
        }
    }
}

const QUERY_PATHS: &str = "POST /kamailio/rtjson, POST /1.0/kamailio/routing, POST /rtjson";

async fn handle(req: Request<Incoming>, state: &AppState, peer: SocketAddr, allowed: bool) -> Resp {
    let wrap = match (req.method(), req.uri().path()) {
        (&Method::POST, "/kamailio/rtjson" | "/1.0/kamailio/routing") => Wrap::Rtjson,
        (&Method::POST, "/rtjson") => Wrap::Bare,
        (&Method::GET | &Method::HEAD, "/health") => return status::health(state),
        (&Method::GET | &Method::HEAD, "/metrics") => return status::metrics(state),
        // SPEC §8: live gateway state (gateways.rs).
        // Gateway state names carriers' addresses: only for `--allow`ed
        // clients, like the queries and the reports.
        (&Method::GET, "/gateways" | "/trunks")
        | (
            &Method::POST,
            "/kamailio/feedback" | "/kamailio/event" | "/gateways/disable" | "/gateways/enable",
        ) if !allowed => {
            state.metrics.forbidden.inc();
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("client {} is not allowed here", peer.ip()),
            );
        }
        (&Method::GET, "/gateways") => return gateways::list(state).await,
        (&Method::GET, "/trunks") => return events::trunks(state).await,
        (&Method::POST, "/kamailio/event") => return events::event(req, state).await,
        (&Method::POST, "/kamailio/feedback") => {
            return gateways::feedback(req, state).await;
        }
        (&Method::POST, "/gateways/disable") => {
            return gateways::mark(req, state, true).await;
        }
        (&Method::POST, "/gateways/enable") => {
            return gateways::mark(req, state, false).await;
        }
        (_, "/gateways" | "/trunks") => return method_not_allowed("GET", req.method()),
        (
            _,
            "/kamailio/feedback" | "/kamailio/event" | "/gateways/disable" | "/gateways/enable",
        ) => {
            return method_not_allowed("POST", req.method());
        }
        (_, "/kamailio/rtjson" | "/1.0/kamailio/routing" | "/rtjson") => {
            return method_not_allowed("POST", req.method());
        }
        (_, "/health" | "/metrics") => return method_not_allowed("GET, HEAD", req.method()),
        (_, path) => {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("no such path {path}; routing queries go to {QUERY_PATHS}"),
            );
        }
    };
    if !allowed {
        state.metrics.forbidden.inc();
        debug!(%peer, "query refused by --allow");
        return json_error(
            StatusCode::FORBIDDEN,
            &format!("client {} is not allowed to query", peer.ip()),
        );
    }
    query::route(req, state, peer, wrap).await
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("expected a CIDR such as 10.0.0.0/8 or an address, got {s:?}"))
}

/// A duration flag: anything `humantime` reads (`300s`, `5m`, `250ms`,
/// `1h`, `1m 30s`, `1.5s`), or a bare number of seconds, as docs/SERVE.md
/// promises (humantime alone wants a unit).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bare = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = if bare {
        humantime::parse_duration(&format!("{s}s"))
    } else {
        humantime::parse_duration(s)
    };
    parsed.map_err(|e| format!("expected a duration such as 300s, 5m or 250ms ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        // The forms docs/SERVE.md and the tests use, and the defaults.
        assert_eq!(ok("300s"), Duration::from_secs(300));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2ms"), Duration::from_millis(2));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("5min"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        // A bare number is seconds.
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
        assert_eq!(ok("30"), Duration::from_secs(30));
        for bad in ["", "5 parsecs", "s", "-1s", "1.2.3", "."] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(
                e.starts_with("expected a duration such as 300s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn allow_takes_a_network_or_an_address() {
        assert_eq!(parse_net("10.0.0.0/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(parse_net("::1"), Ok("::1/128".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }
}
