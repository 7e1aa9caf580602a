//! A closed-loop HTTP load client for `c4route serve`: each connection
//! sends one routing query, waits for the whole answer, and sends the next,
//! so a request's time is the server's answer time plus loopback, without
//! a queue in front of it. `scripts/bench-store.sh` uses it for the shared
//! store's figures (issue 16): per-request latency with one connection,
//! throughput with four, and a per-request timeline while the store fails.
//!
//! ```text
//! cargo build --release --example closed_loop
//! target/release/examples/closed_loop --addr 127.0.0.1:8000 --connections 1 --duration 5s \
//!     --query '{"call_id":"@ID@","to_uri":"sip:15550001@example.com"}'
//! ```
//!
//! Every `@ID@` in the query is replaced by an id no other request of any
//! run has (`<run>-<connection>-<n>`), so each query is a new call. Several
//! `--addr` are loaded at the same time, `--connections` each. Prints one
//! line per address and one for all of them:
//!
//! ```text
//! RESULT addr=127.0.0.1:8000 requests=N rps=R p50_us=A p90_us=B p99_us=C max_us=D errors=E non200=F
//! TOTAL requests=N rps=R errors=E non200=F
//! ```
//!
//! `--timeline FILE` writes one line per request, connection after
//! connection: `START_UNIX_US LATENCY_US STATUS` (`STATUS` 0 when the
//! request failed without an answer), for telling which request met a
//! failure.
//!
//! Only loopback addresses are accepted. Bounded: every connection stops
//! at `--duration` or after `--max-requests`, whichever comes first, and a
//! request waits at most `--timeout`.
//!
//! Why blocking sockets and a hand-read HTTP/1.1 answer rather than an
//! HTTP client crate: one thread per connection, doing nothing but write,
//! read and two clock reads per request, adds the least to a measured
//! time; the answer head is read line by line for its status and
//! Content-Length (c4route always sends one), which is all this needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Closed-loop HTTP load client for c4route serve (loopback only)")]
struct Args {
    /// Server to load (repeatable; all are loaded at the same time).
    #[arg(long = "addr", required = true)]
    addrs: Vec<SocketAddr>,
    /// Connections per address.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Most requests per connection.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Longest wait for one answer (then the connection is reopened and
    /// the request counted as an error).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Request path.
    #[arg(long, default_value = "/kamailio/rtjson")]
    path: String,
    /// The query body; every `@ID@` becomes a unique id.
    #[arg(long)]
    query: String,
    /// Write `START_UNIX_US LATENCY_US STATUS` per request to this file.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

/// Limits that keep a mistyped command from running away.
const MAX_CONNECTIONS: usize = 256;
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Largest answer head or body accepted.
const MAX_ANSWER: usize = 1 << 20;

/// What one connection measured.
#[derive(Default)]
struct Run {
    /// Latency of each answered request (200 or not), ns.
    lat_ns: Vec<u64>,
    /// `(start since the run began, latency, status or 0)` per request.
    timeline: Vec<(u64, u64, u16)>,
    errors: u64,
    non200: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("closed_loop: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if let Some(a) = args.addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{a} is not a loopback address; this client loads loopback only"
        ));
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1..={MAX_CONNECTIONS}"));
    }
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        return Err(format!(
            "--duration must be more than 0 and at most {MAX_DURATION:?}"
        ));
    }
    if !args.path.starts_with('/') || args.path.contains(char::is_whitespace) {
        return Err(format!("--path {:?}: not an absolute path", args.path));
    }
    let run_id = format!(
        "{:x}{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let epoch_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock: {e}"))?
        .as_micros() as u64;
    let began = Instant::now();
    let deadline = began + args.duration;
    let runs: Vec<(SocketAddr, Run)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (ai, addr) in args.addrs.iter().enumerate() {
            for c in 0..args.connections {
                let tag = format!("{run_id}-{ai}-{c}");
                handles.push((
                    *addr,
                    s.spawn(move || connection(args, *addr, &tag, began, deadline)),
                ));
            }
        }
        handles
            .into_iter()
            .map(|(a, h)| (a, h.join().unwrap_or_default()))
            .collect()
    });
    let secs = began.elapsed().as_secs_f64().max(1e-9);
    let mut total = (0u64, 0u64, 0u64);
    for addr in &args.addrs {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(a, _)| a == addr)
            .map(|(_, r)| r)
            .collect();
        let mut lat: Vec<u64> = mine.iter().flat_map(|r| r.lat_ns.iter().copied()).collect();
        lat.sort_unstable();
        let errors: u64 = mine.iter().map(|r| r.errors).sum();
        let non200: u64 = mine.iter().map(|r| r.non200).sum();
        let n = lat.len() as u64;
        println!(
            "RESULT addr={addr} requests={n} rps={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} errors={errors} non200={non200}",
            n as f64 / secs,
            pct(&lat, 50.0),
            pct(&lat, 90.0),
            pct(&lat, 99.0),
            lat.last().map_or(0.0, |&x| x as f64 / 1e3),
        );
        total.0 += n;
        total.1 += errors;
        total.2 += non200;
    }
    println!(
        "TOTAL requests={} rps={:.0} errors={} non200={}",
        total.0,
        total.0 as f64 / secs,
        total.1,
        total.2
    );
    if let Some(path) = &args.timeline {
        let mut out = String::new();
        for (_, r) in &runs {
            for &(start, lat, status) in &r.timeline {
                out.push_str(&format!(
                    "{} {:.1} {status}\n",
                    epoch_us + start / 1000,
                    lat as f64 / 1e3,
                ));
            }
        }
        std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The `p`th percentile of sorted nanoseconds, in µs (nearest rank).
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e3
}

/// One connection's closed loop until `deadline`.
fn connection(args: &Args, addr: SocketAddr, tag: &str, began: Instant, deadline: Instant) -> Run {
    let mut run = Run::default();
    let keep_timeline = args.timeline.is_some();
    let (head_before, body_parts): (String, Vec<&str>) = (
        format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n",
            args.path
        ),
        args.query.split("@ID@").collect(),
    );
    let mut req = Vec::with_capacity(512);
    let mut body = String::with_capacity(args.query.len() + 32);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = 0u64;
    while n < args.max_requests {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if conn.is_none() {
            match open(addr, args.timeout) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    run.errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        body.clear();
        for (i, part) in body_parts.iter().enumerate() {
            if i > 0 {
                body.push_str(tag);
                body.push('-');
                body.push_str(&n.to_string());
            }
            body.push_str(part);
        }
        req.clear();
        req.extend_from_slice(head_before.as_bytes());
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body.as_bytes());
        n += 1;
        let start = Instant::now();
        let result = exchange(c, &req);
        let lat = start.elapsed().as_nanos() as u64;
        if keep_timeline {
            let at = start.duration_since(began).as_nanos() as u64;
            run.timeline.push((at, lat, *result.as_ref().unwrap_or(&0)));
        }
        match result {
            Ok(status) => {
                run.lat_ns.push(lat);
                if status != 200 {
                    run.non200 += 1;
                }
            }
            Err(_) => {
                run.errors += 1;
                conn = None;
            }
        }
    }
    run
}

fn open(addr: SocketAddr, timeout: Duration) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(BufReader::with_capacity(16 * 1024, s))
}

/// Sends one request and reads its whole answer; returns the status.
fn exchange(c: &mut BufReader<TcpStream>, req: &[u8]) -> std::io::Result<u16> {
    c.get_mut().write_all(req)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = Vec::with_capacity(128);
    let mut status = None;
    let mut length = None;
    let mut head = 0usize;
    loop {
        line.clear();
        let n = c.by_ref().take(8192).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head += n;
        if head > MAX_ANSWER {
            return Err(bad("answer head too large"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| bad("answer head not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if status.is_none() {
            // "HTTP/1.1 200 OK"
            let code = text
                .strip_prefix("HTTP/1.1 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| bad("not an HTTP/1.1 status line"))?;
            status = Some(code);
            continue;
        }
        if text.is_empty() {
            break;
        }
        if let Some((k, v)) = text.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            let v: usize = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            if v > MAX_ANSWER {
                return Err(bad("answer too large"));
            }
            length = Some(v);
        }
    }
    let length = length.ok_or_else(|| bad("answer without Content-Length"))?;
    let mut left = length;
    while left > 0 {
        let buf = c.fill_buf()?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let k = buf.len().min(left);
        c.consume(k);
        left -= k;
    }
    status.ok_or_else(|| bad("no status line"))
}
