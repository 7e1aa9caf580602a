//! The prober of `c4route serve` (SPEC §8): SIP OPTIONS to every gateway
//! whose settings ask for it, over UDP from one socket (`--probe-bind`) and
//! over TCP (one short connection per probe).
//!
//! One task owns the UDP socket, the schedule and the open transactions,
//! so nothing here is shared or locked:
//!
//! - each gateway (one per normalised URI, however many trunks list it) is
//!   probed every `interval`, starting at an offset drawn from its URI, so
//!   probes of many gateways are spread evenly over the interval instead
//!   of leaving in bursts; a gateway is never probed again while its last
//!   probe is still open;
//! - a UDP OPTIONS is retransmitted as timer A does (500 ms, then doubling,
//!   capped at 4 s) until a final reply or `timeout`; a provisional reply
//!   stops the retransmissions; replies are matched by Via branch and Call-ID
//!   (random, 128 bits each) and must come from the probed host;
//! - at most `--probe-max-in-flight` probes are open at once; beyond that,
//!   due probes wait (a few ms) rather than leave together.
//!
//! Hosts that are names are resolved (A/AAAA, no SRV) when the table is
//! loaded; an unresolvable host fails its probes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hasher as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use c4route_core::{GatewayStatus, HealthSettings, ProbeMode, ProbeTransport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::hub::ProbeResult;
use super::sip::{self, ParseError, Transport};
use super::tracker::is_success;
use crate::state::AppState;

/// RFC 3261 T1 and T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// How `serve` probes.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The local address probes leave from.
    pub bind: SocketAddr,
    /// Most probes open at once.
    pub max_in_flight: usize,
}

struct Target {
    key: String,
    /// The R-URI of the OPTIONS.
    ruri: String,
    /// `host:port` for the To header.
    host_port: String,
    tcp: bool,
    addr: Result<SocketAddr, String>,
    /// `ip:port` for Via, From and Contact (UDP).
    local: String,
    interval: Duration,
    timeout: Duration,
    when_down: bool,
    open: bool,
    /// Its settings, for which replies are failures.
    fail: HealthSettings,
}

struct Pending {
    target: usize,
    generation: u64,
    call_id: String,
    bytes: Vec<u8>,
    addr: SocketAddr,
    sent: Instant,
    retx: Duration,
    next_retx: Instant,
    deadline: Instant,
    provisional: bool,
}

/// Binds the probe socket and starts the prober on a thread of its own.
///
/// The prober runs on its own single-threaded runtime: it wakes about a
/// thousand times a second at 10,000 gateways, and on the shared
/// multi-threaded runtime each wake-up also woke an idle worker (measured:
/// a quarter of its CPU time was thread switches).
///
/// # Errors
/// The socket could not be bound, or the thread not started.
pub fn start(
    state: Arc<AppState>,
    cfg: ProbeConfig,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let sock = std::net::UdpSocket::bind(cfg.bind)
        .with_context(|| format!("binding the probe socket {}", cfg.bind))?;
    sock.set_nonblocking(true)
        .context("making the probe socket non-blocking")?;
    let local = sock
        .local_addr()
        .context("reading the probe socket address")?;
    let thread = std::thread::Builder::new()
        .name("c4route-probe".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!("cannot start the prober's runtime: {e}; no gateway is probed");
                    return;
                }
            };
            rt.block_on(async move {
                let sock = match UdpSocket::from_std(sock) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        error!("probe socket: {e}; no gateway is probed");
                        return;
                    }
                };
                // A panic (a bug) restarts the prober from the serving
                // table: open probes are forgotten, the socket is kept.
                let st = state.clone();
                let max = cfg.max_in_flight.max(1);
                let run = crate::guard::supervise(
                    state.panics(),
                    "prober",
                    Duration::from_secs(1),
                    move || Prober::new(st.clone(), sock.clone(), local, max).run(),
                );
                // Shutdown: open probes are abandoned (their replies
                // would change nothing any more).
                tokio::select! {
                    () = run => {}
                    () = state.stopped() => {}
                }
            });
        })
        .context("starting the prober thread")?;
    Ok((local, thread))
}

struct Prober {
    state: Arc<AppState>,
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    max: usize,
    targets: Vec<Target>,
    generation: u64,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Open UDP transactions by branch.
    pending: HashMap<String, Pending>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    tcp_open: usize,
    tcp_tx: mpsc::Sender<(usize, u64)>,
    tcp_rx: Option<mpsc::Receiver<(usize, u64)>>,
    /// Successes of gateways that were up, handed over together.
    batch: Vec<(String, ProbeResult)>,
    /// When the oldest of them came in.
    batch_since: Instant,
}

/// Probes due within this much are sent together, and timers firing within
/// it are handled together: the prober wakes at most about 100 times a
/// second for them, whatever the number of gateways.
const GRAIN: Duration = Duration::from_millis(10);
/// The longest a batched success waits before the state task sees it.
const BATCH_WAIT: Duration = Duration::from_millis(50);
const BATCH_MAX: usize = 256;

impl Prober {
    fn new(state: Arc<AppState>, sock: Arc<UdpSocket>, local: SocketAddr, max: usize) -> Self {
        let (tcp_tx, tcp_rx) = mpsc::channel(1024);
        Prober {
            state,
            sock,
            local,
            max,
            targets: Vec::new(),
            generation: 0,
            due: BinaryHeap::new(),
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            tcp_open: 0,
            tcp_tx,
            tcp_rx: Some(tcp_rx),
            batch: Vec::new(),
            batch_since: Instant::now(),
        }
    }

    async fn run(mut self) {
        let Some(mut tcp_rx) = self.tcp_rx.take() else {
            return;
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            let generation = self.state.current.load().generation;
            if generation != self.generation {
                self.rebuild(generation).await;
            }
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(1);
            if let Some(Reverse((t, _))) = self.due.peek() {
                wake = wake.min(*t);
            }
            if let Some(Reverse((t, _))) = self.timers.peek() {
                wake = wake.min(*t);
            }
            if !self.batch.is_empty() {
                wake = wake.min(self.batch_since + BATCH_WAIT);
            }
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.response(&buf[..n], from).await,
                    // ICMP port unreachable shows up here on Linux: the
                    // transaction then times out, which is what it means.
                    Err(e) => debug!("probe socket: {e}"),
                },
                Some((idx, generation)) = tcp_rx.recv() => {
                    self.tcp_open = self.tcp_open.saturating_sub(1);
                    if generation == self.generation
                        && let Some(t) = self.targets.get_mut(idx)
                    {
                        t.open = false;
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            self.timers_due().await;
            self.probes_due().await;
            if !self.batch.is_empty()
                && (self.batch.len() >= BATCH_MAX || self.batch_since.elapsed() >= BATCH_WAIT)
            {
                self.flush().await;
            }
        }
    }

    /// Rebuilds the target list from the serving table.
    async fn rebuild(&mut self, generation: u64) {
        let gateways: Vec<_> = self.state.current.load().table.gateways().to_vec();
        self.generation = generation;
        self.targets.clear();
        self.due.clear();
        let mut sources: HashMap<IpAddr, IpAddr> = HashMap::new();
        let now = Instant::now();
        for g in gateways {
            let tcp = match (g.health.probe, g.transport) {
                (ProbeMode::Never, _) | (_, ProbeTransport::Unsupported) => continue,
                (_, ProbeTransport::Udp) => false,
                (_, ProbeTransport::Tcp) => true,
                // A mode or transport this version does not know: no probe.
                _ => continue,
            };
            let addr = resolve(&g.host, g.port).await;
            let local = match &addr {
                Ok(a) => {
                    let ip = if self.local.ip().is_unspecified() {
                        *sources
                            .entry(a.ip())
                            .or_insert_with(|| source_ip(a).unwrap_or(self.local.ip()))
                    } else {
                        self.local.ip()
                    };
                    SocketAddr::new(ip, self.local.port()).to_string()
                }
                Err(_) => self.local.to_string(),
            };
            let host_port = format!("{}:{}", g.host, g.port);
            let ruri = if tcp {
                format!("sip:{host_port};transport=tcp")
            } else {
                format!("sip:{host_port}")
            };
            // Spread: each gateway starts at its own offset in its interval.
            let frac = (offset_hash(&g.key) % 10_000) as f64 / 10_000.0;
            let idx = self.targets.len();
            self.due
                .push(Reverse((now + g.health.interval.mul_f64(frac), idx)));
            self.targets.push(Target {
                key: g.key.clone(),
                ruri,
                host_port,
                tcp,
                addr,
                local,
                interval: g.health.interval,
                timeout: g.health.timeout,
                when_down: g.health.probe == ProbeMode::WhenDown,
                open: false,
                fail: g.health.clone(),
            });
        }
        if !self.targets.is_empty() {
            info!(
                gateways = self.targets.len(),
                from = %self.local,
                "probing gateways with SIP OPTIONS"
            );
        }
    }

    fn open(&self) -> usize {
        self.pending.len() + self.tcp_open
    }

    async fn probes_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, idx))) = self.due.peek().copied() {
            if at > now + GRAIN {
                break;
            }
            if self.open() + due.len() >= self.max {
                // Full: try again shortly rather than all at once later.
                self.due.pop();
                self.due
                    .push(Reverse((now + Duration::from_millis(5), idx)));
                break;
            }
            self.due.pop();
            let Some(t) = self.targets.get(idx) else {
                continue;
            };
            // Fixed rate; after a stall, start again from now.
            let next = if at + t.interval > now {
                at + t.interval
            } else {
                now + t.interval
            };
            self.due.push(Reverse((next, idx)));
            if t.open {
                continue;
            }
            // "when_down": only while down by health, whether or not an
            // operator has also disabled it (a disabled gateway that is
            // healthy is not probed; a disabled one that is down is, so
            // that `enable` finds its real state).
            if t.when_down && !self.state.gateways.is_down_by_health(&t.key) {
                continue;
            }
            due.push(idx);
        }
        for idx in self.leased(due).await {
            self.send(idx, now).await;
        }
    }

    /// The due gateways this replica probes: with a shared store (SPEC
    /// §9.4), those whose lease it holds (one replica probes each gateway
    /// per interval; the others read its results from the store); without
    /// one, or while it is down, all of them.
    async fn leased(&self, due: Vec<usize>) -> Vec<usize> {
        let Some(store) = self.state.store.as_ref().filter(|s| s.is_up()) else {
            return due;
        };
        if due.is_empty() {
            return due;
        }
        let keys: Vec<String> = due.iter().map(|&i| self.targets[i].key.clone()).collect();
        // Held for one and a half intervals: the holder renews it at each
        // probe; when it dies another replica takes over within that.
        let longest = due
            .iter()
            .map(|&i| self.targets[i].interval)
            .max()
            .unwrap_or_default();
        let lease = longest.mul_f64(1.5).max(Duration::from_millis(500));
        let held = store.leases(&keys, lease).await;
        due.into_iter()
            .zip(held)
            .filter_map(|(i, h)| h.then_some(i))
            .collect()
    }

    async fn send(&mut self, idx: usize, now: Instant) {
        let t = &mut self.targets[idx];
        let addr = match &t.addr {
            Ok(a) => *a,
            Err(e) => {
                let (key, e) = (t.key.clone(), e.clone());
                self.finish(key, None, None, Some(e), "error", false).await;
                return;
            }
        };
        t.open = true;
        if t.tcp {
            let (key, ruri, host_port, timeout) = (
                t.key.clone(),
                t.ruri.clone(),
                t.host_port.clone(),
                t.timeout,
            );
            self.tcp_open += 1;
            let (state, done, generation) =
                (self.state.clone(), self.tcp_tx.clone(), self.generation);
            tokio::spawn(async move {
                let started = Instant::now();
                let r = tokio::time::timeout(timeout, tcp_probe(addr, &ruri, &host_port)).await;
                let (code, err, result) = match r {
                    Ok(Ok(c)) => (Some(c), None, "reply"),
                    Ok(Err(e)) => (None, Some(e), "error"),
                    Err(_) => (
                        None,
                        Some(format!("no final reply in {timeout:?}")),
                        "timeout",
                    ),
                };
                let rtt = code.map(|_| started.elapsed());
                record(&state, code, rtt, result);
                state
                    .gateways
                    .probed(
                        key,
                        ProbeResult {
                            code,
                            rtt,
                            error: err,
                        },
                    )
                    .await;
                let _ = done.send((idx, generation)).await;
            });
            return;
        }
        let o = match sip::options(&t.ruri, &t.host_port, &t.local, Transport::Udp) {
            Ok(o) => o,
            Err(e) => {
                let key = t.key.clone();
                t.open = false;
                self.finish(key, None, None, Some(e), "error", false).await;
                return;
            }
        };
        let timeout = t.timeout;
        let dest = self.dest(addr);
        if let Err(e) = self.sock.send_to(&o.bytes, dest).await {
            let t = &mut self.targets[idx];
            let key = t.key.clone();
            t.open = false;
            self.finish(
                key,
                None,
                None,
                Some(format!("sending to {addr}: {e}")),
                "error",
                false,
            )
            .await;
            return;
        }
        let deadline = now + timeout;
        let next_retx = (now + T1).min(deadline);
        self.timers.push(Reverse((next_retx, o.branch.clone())));
        self.pending.insert(
            o.branch,
            Pending {
                target: idx,
                generation: self.generation,
                call_id: o.call_id,
                bytes: o.bytes,
                addr: dest,
                sent: now,
                retx: T1,
                next_retx,
                deadline,
                provisional: false,
            },
        );
    }

    /// A v4 destination from a dual-stack socket is written v4-mapped.
    fn dest(&self, addr: SocketAddr) -> SocketAddr {
        match (self.local, addr) {
            (SocketAddr::V6(_), SocketAddr::V4(a)) => {
                SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port())
            }
            _ => addr,
        }
    }

    async fn timers_due(&mut self) {
        let now = Instant::now();
        let horizon = now + GRAIN;
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > horizon {
                break;
            }
            let Some(Reverse((_, branch))) = self.timers.pop() else {
                break;
            };
            let Some(p) = self.pending.get_mut(&branch) else {
                continue; // answered
            };
            if horizon >= p.deadline {
                let Some(p) = self.pending.remove(&branch) else {
                    continue;
                };
                let timeout = p.deadline - p.sent;
                self.close(p.target, p.generation);
                if let Some(key) = self.key_of(p.target, p.generation) {
                    let e = format!("no final reply in {}", humantime::format_duration(timeout));
                    self.finish(key, None, None, Some(e), "timeout", false)
                        .await;
                }
                continue;
            }
            if !p.provisional && horizon >= p.next_retx {
                let _ = self.sock.send_to(&p.bytes, p.addr).await;
                p.retx = (p.retx * 2).min(T2);
                p.next_retx = now + p.retx;
            }
            let next = if p.provisional {
                p.deadline
            } else {
                p.next_retx.min(p.deadline)
            };
            self.timers.push(Reverse((next, branch)));
        }
    }

    /// A datagram on the probe socket. It answers a probe only if it is a
    /// response with the branch and Call-ID of an open probe *and* comes
    /// from the host that probe went to: the tokens are random (see
    /// `sip::token`), and the source check means that even a gateway that
    /// learnt them could not answer for another host. The port is not
    /// checked: RFC 3261 §18.2.2 lets a server answer from another port
    /// than the one the request reached (docs/GATEWAYS.md).
    async fn response(&mut self, bytes: &[u8], from: SocketAddr) {
        let m = &self.state.metrics.gateways;
        let r = match sip::parse_response(bytes) {
            Ok(r) => r,
            Err(ParseError::Incomplete | ParseError::Invalid(_)) => {
                debug!(%from, "probe socket: not a usable SIP response");
                m.reply_dropped("invalid");
                return;
            }
        };
        let Some(p) = self.pending.get_mut(r.branch) else {
            m.reply_dropped("unmatched"); // a late retransmission's answer
            return;
        };
        if p.call_id != r.call_id || !r.cseq_method.eq_ignore_ascii_case("OPTIONS") {
            m.reply_dropped("unmatched");
            return;
        }
        if from.ip().to_canonical() != p.addr.ip().to_canonical() {
            debug!(%from, probed = %p.addr, "probe reply from another host: dropped");
            m.reply_dropped("wrong_source");
            return;
        }
        if r.code < 200 {
            p.provisional = true;
            return;
        }
        let code = r.code;
        let branch = r.branch.to_owned();
        let Some(p) = self.pending.remove(&branch) else {
            return;
        };
        self.close(p.target, p.generation);
        if let Some(key) = self.key_of(p.target, p.generation) {
            let rtt = p.sent.elapsed();
            let ok = is_success(&self.targets[p.target].fail, Some(code));
            self.finish(key, Some(code), Some(rtt), None, "reply", ok)
                .await;
        }
    }

    fn close(&mut self, idx: usize, generation: u64) {
        if generation == self.generation
            && let Some(t) = self.targets.get_mut(idx)
        {
            t.open = false;
        }
    }

    /// The key of a target, if the transaction belongs to the current list.
    fn key_of(&self, idx: usize, generation: u64) -> Option<String> {
        (generation == self.generation)
            .then(|| self.targets.get(idx).map(|t| t.key.clone()))
            .flatten()
    }

    /// Hands a result to the state task: a success of a gateway that is up
    /// (which cannot change any state) joins the batch; anything else goes
    /// at once, after the batch, so a state change is never delayed.
    async fn finish(
        &mut self,
        key: String,
        code: Option<u16>,
        rtt: Option<Duration>,
        error: Option<String>,
        result: &'static str,
        ok: bool,
    ) {
        record(&self.state, code, rtt, result);
        let r = ProbeResult { code, rtt, error };
        if ok
            && self
                .state
                .gateways
                .snapshot
                .load()
                .gateways()
                .status_of_key(&key)
                == GatewayStatus::Up
        {
            if self.batch.is_empty() {
                self.batch_since = Instant::now();
            }
            self.batch.push((key, r));
            return;
        }
        self.flush().await;
        self.state.gateways.probed(key, r).await;
    }

    async fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.state.gateways.probed_batch(batch).await;
    }
}

fn record(state: &AppState, code: Option<u16>, rtt: Option<Duration>, result: &'static str) {
    let m = &state.metrics.gateways;
    if let Some(rtt) = rtt {
        m.probe_rtt.observe(rtt.as_secs_f64());
    }
    m.probe(match (result, code) {
        ("reply", Some(_)) => "reply",
        (r, _) => r,
    });
}

/// One OPTIONS over a fresh TCP connection: the final reply's code.
async fn tcp_probe(addr: SocketAddr, ruri: &str, host_port: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let o = sip::options(ruri, host_port, &local.to_string(), Transport::Tcp)?;
    s.write_all(&o.bytes)
        .await
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{addr} closed the connection without a final reply"
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match sip::parse_response(&buf) {
                Ok(r) => {
                    let (len, code) = (r.len, r.code);
                    let mine = r.branch == o.branch && r.call_id == o.call_id;
                    if mine && code >= 200 {
                        return Ok(code);
                    }
                    buf.drain(..len);
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid(why)) => return Err(format!("{addr} sent {why}")),
            }
        }
        if buf.len() > sip::MAX_MESSAGE {
            return Err(format!("{addr} sent over 1 MiB without a final reply"));
        }
    }
}

/// `host` (an IP literal, `[v6]`, or a name) and `port` to an address.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let lookup = tokio::net::lookup_host((bare, port));
    match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| format!("{host} has no address")),
        Ok(Err(e)) => {
            warn!(host, "cannot resolve a probed gateway: {e}");
            Err(format!("resolving {host}: {e}"))
        }
        Err(_) => Err(format!("resolving {host}: timed out")),
    }
}

/// The source address the kernel would use towards `dest` (for Via when
/// the probe socket is bound to every interface). No packet is sent.
fn source_ip(dest: &SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(dest).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// A stable offset per gateway URI: FNV-1a of its bytes (`Hasher::write`
/// only: `write_str` would append a terminator and move every offset).
fn offset_hash(key: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(key.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_fnv_1a_of_the_key() {
        // FNV-1a 64 test vectors: "" is the offset basis, "a" and "foobar".
        assert_eq!(offset_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(offset_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(offset_hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
