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
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use c4route_core::{MAX_BODY, Query, Sources, Wrap};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::reload;
use crate::report;
use crate::state::{AppState, Limits};

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
    let state = Arc::new(AppState::new(
        table,
        args.routes.clone(),
        args.allow.clone(),
        limits,
    ));
    let result = rt.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let debounce = reload::Debounce {
            quiet: args.reload_debounce,
            max: args.debounce_max,
        };
        let _watcher = reload::spawn(state.clone(), debounce, !args.no_watch)?;
        crate::gateways::spawn(state.clone());
        let probe = crate::probe::ProbeConfig {
            bind: args.probe_bind,
            max_in_flight: args.probe_max_in_flight,
        };
        let probe_from = crate::probe::start(state.clone(), probe)?;
        info!("SIP OPTIONS probes leave from {probe_from}");
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
        serve(listener, state, shutdown).await;
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

pub(crate) type Resp = Response<Full<Bytes>>;

const QUERY_PATHS: &str = "POST /kamailio/rtjson, POST /1.0/kamailio/routing, POST /rtjson";

async fn handle(req: Request<Incoming>, state: &AppState, peer: SocketAddr, allowed: bool) -> Resp {
    let wrap = match (req.method(), req.uri().path()) {
        (&Method::POST, "/kamailio/rtjson" | "/1.0/kamailio/routing") => Wrap::Rtjson,
        (&Method::POST, "/rtjson") => Wrap::Bare,
        (&Method::GET | &Method::HEAD, "/health") => return health(state),
        (&Method::GET | &Method::HEAD, "/metrics") => return metrics(state),
        // SPEC §8: live gateway state (gateways.rs).
        // Gateway state names carriers' addresses: only for `--allow`ed
        // clients, like the queries and the reports.
        (&Method::GET, "/gateways")
        | (&Method::POST, "/kamailio/feedback" | "/gateways/disable" | "/gateways/enable")
            if !allowed =>
        {
            state.metrics.forbidden.inc();
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("client {} is not allowed here", peer.ip()),
            );
        }
        (&Method::GET, "/gateways") => return crate::gateways::list(state).await,
        (&Method::POST, "/kamailio/feedback") => {
            return crate::gateways::feedback(req, state).await;
        }
        (&Method::POST, "/gateways/disable") => {
            return crate::gateways::mark(req, state, true).await;
        }
        (&Method::POST, "/gateways/enable") => {
            return crate::gateways::mark(req, state, false).await;
        }
        (_, "/gateways") => return method_not_allowed("GET", req.method()),
        (_, "/kamailio/feedback" | "/gateways/disable" | "/gateways/enable") => {
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
    route(req, state, peer, wrap).await
}

async fn route(req: Request<Incoming>, state: &AppState, peer: SocketAddr, wrap: Wrap) -> Resp {
    let (body, content_type) = match read_request_body(req, state).await {
        Ok(b) => b,
        Err(r) => {
            state.metrics.bad_request.inc();
            debug!(%peer, status = r.status().as_u16(), "query body refused");
            return r;
        }
    };
    let started = Instant::now();
    let ct = content_type.as_ref().and_then(|v| v.to_str().ok());
    let query = match Query::parse(&body, ct) {
        Ok(q) => q,
        Err(e) => {
            state.metrics.bad_request.inc();
            debug!(%peer, "bad query: {e}");
            let status = match e {
                c4route_core::QueryError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return json_error(status, &e.to_string());
        }
    };
    let mut out = Vec::with_capacity(1024);
    let outcome = {
        // The guard lives only in this synchronous block (no .await).
        let loaded = state.current.load();
        let live = state.gateways.snapshot.load();
        let decision = c4route_core::decide(&loaded.table, &live, &query, SystemTime::now());
        decision.write_json(&mut out, wrap);
        if let Some(id) = decision.rule_id {
            loaded.hit(id, &state.metrics);
        }
        if decision.skipped_rewrites > 0 {
            let n = u64::from(decision.skipped_rewrites);
            state.metrics.rewrites_skipped.inc_by(n);
        }
        debug!(%peer, rule = decision.rule, outcome = decision.outcome_label(), "query");
        decision.outcome_label()
    };
    state
        .metrics
        .decision_seconds
        .observe(started.elapsed().as_secs_f64());
    state.metrics.outcome(outcome).inc();
    json(StatusCode::OK, out)
}

fn health(state: &AppState) -> Resp {
    let cur = state.current.load_full();
    let err = state.last_error.load_full();
    let task_err = state.task_error.load_full();
    let body = serde_json::json!({
        "status": if err.is_some() || task_err.is_some() { "degraded" } else { "ok" },
        "rules": cur.table.rule_count(),
        "trunks": cur.table.trunk_count(),
        "version": cur.table.version(),
        "generation": cur.generation,
        "loaded_at": cur.loaded_at.to_string(),
        "last_error": err.as_deref(),
        "task_error": task_err.as_deref(),
    });
    json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn metrics(state: &AppState) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn method_not_allowed(allow: &'static str, method: &Method) -> Resp {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} not allowed here; use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// How many bytes of an oversized body are read and dropped before the 413
/// goes out. A client that writes its whole request before it reads (libcurl
/// does) would otherwise find the connection reset under its writes and never
/// see the 413; past this bound the connection is closed unread.
const DRAIN_LIMIT: u64 = 1024 * 1024;

enum BodyRead {
    Complete(Bytes),
    /// Over [`MAX_BODY`]; the rest was drained up to [`DRAIN_LIMIT`].
    TooLarge,
    Failed(hyper::Error),
}

/// Reads the body of a POST, with its `Content-Type`: the one body reader
/// of every POST endpoint (queries, reports, drain and restore), so they
/// refuse a body the same way. `Err` is the answer to send: 413 for a body
/// over [`MAX_BODY`] (with `Connection: close`, after draining up to
/// [`DRAIN_LIMIT`]), 408 when it does not arrive within `--body-timeout`,
/// 400 when the connection fails under it. The caller counts it.
pub(crate) async fn read_request_body(
    req: Request<Incoming>,
    state: &AppState,
) -> Result<(Bytes, Option<HeaderValue>), Resp> {
    let too_large = || {
        let mut r = json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {MAX_BODY} bytes"),
        );
        // The rest of the body may still be on its way: do not read a next
        // request from this connection.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let read = tokio::time::timeout(state.limits.body_timeout, read_body(req.into_body()));
    match read.await {
        Ok(BodyRead::Complete(b)) => Ok((b, content_type)),
        Ok(BodyRead::TooLarge) => Err(too_large()),
        Ok(BodyRead::Failed(e)) => Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!("reading the body: {e}"),
        )),
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes. A body in one frame
/// (the usual case) is not copied.
async fn read_body(mut body: Incoming) -> BodyRead {
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(_) if seen > MAX_BODY as u64 => return BodyRead::TooLarge,
            Err(e) => return BodyRead::Failed(e),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len() as u64;
        if seen > DRAIN_LIMIT {
            return BodyRead::TooLarge;
        }
        if seen > MAX_BODY as u64 {
            first = None;
            more = Vec::new();
            continue;
        }
        match &first {
            None if more.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    more.extend_from_slice(&f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    if seen > MAX_BODY as u64 {
        BodyRead::TooLarge
    } else if more.is_empty() {
        BodyRead::Complete(first.unwrap_or_default())
    } else {
        BodyRead::Complete(Bytes::from(more))
    }
}

pub(crate) fn json_error(status: StatusCode, msg: &str) -> Resp {
    let body = serde_json::to_vec(&serde_json::json!({ "error": msg })).unwrap_or_default();
    json(status, body)
}

pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
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
