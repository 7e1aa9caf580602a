//! `c4route serve --evapi HOST:PORT`: queries and call events over
//! Kamailio's `evapi` module (issue 17), beside HTTP.
//!
//! Kamailio listens (`evapi` `bind_addr`); c4route connects to every address
//! the operator gave, one connection each, and reconnects with a back-off
//! (100 ms doubling to 5 s) for as long as it runs. Both ways, every message
//! is a netstring (`netstring_format=1`) holding one JSON object:
//!
//! * Kamailio → c4route `{"type":"query","tindex":N,"tlabel":N,"query":{…}}`
//!   (the query of SPEC §2, as over HTTP; `evapi_async_relay` suspended the
//!   transaction N:N) — c4route answers
//!   `{"type":"answer","tindex":N,"tlabel":N,"call_id":…,"answer":{…}}` with
//!   the rtjson document `POST /rtjson` would give, or, for a query it cannot
//!   read, `{"type":"error","tindex":N,"tlabel":N,"code":400,"error":"…"}`.
//! * Kamailio → c4route `{"type":"event", …}` with the fields of
//!   `POST /kamailio/event`: applied, never answered.
//!
//! A query body becomes an answer in [`super::query::answer`] and an event
//! is applied in [`super::events::apply`], the same functions HTTP uses. An
//! evapi peer is trusted like an `--allow`ed client: c4route connects only to
//! the addresses given on its command line.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use c4route_core::{MAX_BODY, Wrap};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::state::AppState;

/// The largest frame c4route reads: the HTTP body limit.
pub(crate) const MAX_FRAME: usize = MAX_BODY;

/// Kamailio 5.6's evapi reads a client's data into a 32 KiB buffer
/// (`CLIENT_BUFFER_SIZE`) and drops a frame that does not fit whole, so a
/// larger answer is replaced by an error the resumed routing turns into 503.
const KAMAILIO_MAX_FRAME: usize = 32 * 1024 - 16;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A malformed netstring: the connection is dropped (its framing is lost).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Something other than a digit before the `:`.
    BadLength(u8),
    /// A length above [`MAX_FRAME`] (or more digits than one can have).
    TooLarge(usize),
    /// The payload is not followed by `,`.
    NoComma(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadLength(b) => write!(
                f,
                "malformed netstring: byte {:?} where a length digit or ':' belongs",
                char::from(*b)
            ),
            FrameError::TooLarge(n) => write!(
                f,
                "netstring of {n} bytes or more, above the {MAX_FRAME}-byte limit"
            ),
            FrameError::NoComma(b) => write!(
                f,
                "malformed netstring: {:?} after the payload instead of ','",
                char::from(*b)
            ),
        }
    }
}

/// Takes the next complete netstring (`LEN:PAYLOAD,`) off the front of
/// `buf`: `Ok(None)` until one has arrived whole. Whitespace between frames
/// is skipped, as Kamailio's own reader does.
pub(crate) fn next_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let skip = buf
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    buf.advance(skip);
    let max_digits = MAX_FRAME.to_string().len();
    let mut len: usize = 0;
    let mut colon = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' if i < max_digits => len = len * 10 + usize::from(b - b'0'),
            b'0'..=b'9' => return Err(FrameError::TooLarge(len * 10)),
            b':' if i > 0 => {
                colon = Some(i);
                break;
            }
            other => return Err(FrameError::BadLength(other)),
        }
    }
    let Some(colon) = colon else {
        return Ok(None);
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < colon + 1 + len + 1 {
        buf.reserve(colon + 1 + len + 1 - buf.len());
        return Ok(None);
    }
    let end = buf[colon + 1 + len];
    if end != b',' {
        return Err(FrameError::NoComma(end));
    }
    buf.advance(colon + 1);
    let payload = buf.split_to(len).freeze();
    buf.advance(1);
    Ok(Some(payload))
}

/// Appends `payload` as one netstring.
pub(crate) fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    tindex: Option<u32>,
    tlabel: Option<u32>,
    #[serde(borrow)]
    query: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallId<'a> {
    #[serde(borrow)]
    call_id: Option<Cow<'a, str>>,
}

/// Handles one message; appends the frame to send back, if any, to `out`.
pub(crate) async fn handle(state: &AppState, peer: &SocketAddr, msg: &[u8], out: &mut Vec<u8>) {
    let env: Envelope<'_> = match serde_json::from_slice(msg) {
        Ok(e) => e,
        Err(e) => {
            warn!(%peer, "evapi: message ignored, not a JSON object with a \"type\": {e}");
            return;
        }
    };
    match &*env.kind {
        "query" => query(state, peer, &env, out).await,
        "event" => {
            if let Err((status, why)) =
                super::events::apply(state, msg, Some("application/json")).await
            {
                debug!(%peer, status = status.as_u16(), "evapi: event not applied: {why}");
            }
        }
        other => warn!(%peer, "evapi: message of unknown type {other:?} ignored"),
    }
}

async fn query(state: &AppState, peer: &SocketAddr, env: &Envelope<'_>, out: &mut Vec<u8>) {
    let (Some(tindex), Some(tlabel)) = (env.tindex, env.tlabel) else {
        warn!(%peer, "evapi: query without tindex and tlabel ignored (Kamailio cannot resume it)");
        return;
    };
    let ids = format!(r#""tindex":{tindex},"tlabel":{tlabel}"#);
    let error = |code: u16, why: &str| {
        let mut m = format!(r#"{{"type":"error",{ids},"code":{code},"error":"#).into_bytes();
        m.extend_from_slice(&serde_json::to_vec(why).unwrap_or_else(|_| b"\"\"".to_vec()));
        m.push(b'}');
        m
    };
    let Some(q) = env.query else {
        let m = error(400, "the message has no \"query\" object");
        state.metrics.bad_request.inc();
        return put_frame(out, &m);
    };
    let raw = q.get().as_bytes();
    let mut m = format!(r#"{{"type":"answer",{ids},"call_id":"#).into_bytes();
    let call_id = serde_json::from_slice::<CallId<'_>>(raw)
        .ok()
        .and_then(|c| c.call_id)
        .unwrap_or_default();
    m.extend_from_slice(&serde_json::to_vec(&call_id).unwrap_or_else(|_| b"\"\"".to_vec()));
    m.extend_from_slice(br#","answer":"#);
    let m = match super::query::answer(
        state,
        raw,
        Some("application/json"),
        Wrap::Bare,
        peer,
        &mut m,
    )
    .await
    {
        Ok(()) => {
            m.push(b'}');
            if m.len() > KAMAILIO_MAX_FRAME {
                warn!(%peer, bytes = m.len(), "evapi: answer larger than Kamailio's evapi buffer; sending an error");
                error(500, "the answer is larger than Kamailio's evapi buffer")
            } else {
                m
            }
        }
        Err((status, why)) => error(status.as_u16(), &why),
    };
    put_frame(out, &m);
}

/// Starts one connection task per address; each ends at shutdown.
pub fn spawn(state: Arc<AppState>, peers: &[SocketAddr]) -> Vec<JoinHandle<()>> {
    peers
        .iter()
        .map(|&peer| tokio::spawn(connection(state.clone(), peer)))
        .collect()
}

/// The lifetime of one `--evapi` address: connect, serve, reconnect.
async fn connection(state: Arc<AppState>, peer: SocketAddr) {
    let stopped = state.stopped();
    tokio::pin!(stopped);
    let mut backoff = BACKOFF_MIN;
    let label = crate::metrics::PeerLabel {
        peer: peer.to_string(),
    };
    let connected = state.metrics.evapi_connected.get_or_create(&label).clone();
    connected.set(0);
    // Logs once per change: `true` after a failure was logged.
    let mut failing = false;
    loop {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer));
        let stream = tokio::select! {
            () = &mut stopped => return,
            r = attempt => match r {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    if !failing {
                        warn!(%peer, "evapi: cannot connect: {e}; retrying every {BACKOFF_MIN:?} to {BACKOFF_MAX:?}");
                    }
                    None
                }
                Err(_) => {
                    if !failing {
                        warn!(%peer, "evapi: no connection within {CONNECT_TIMEOUT:?}; retrying every {BACKOFF_MIN:?} to {BACKOFF_MAX:?}");
                    }
                    None
                }
            },
        };
        if let Some(stream) = stream {
            if let Err(e) = stream.set_nodelay(true) {
                debug!(%peer, "evapi: TCP_NODELAY: {e}");
            }
            connected.set(1);
            state.metrics.evapi_connects.get_or_create(&label).inc();
            info!(%peer, "evapi: connected");
            let why = tokio::select! {
                () = &mut stopped => None,
                why = serve(&state, peer, stream) => Some(why),
            };
            connected.set(0);
            let Some(why) = why else { return };
            warn!(%peer, "evapi: connection lost: {why}; reconnecting");
            backoff = BACKOFF_MIN;
        }
        failing = true;
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Reads frames and answers queries until the connection ends; returns why.
async fn serve(state: &AppState, peer: SocketAddr, mut stream: TcpStream) -> String {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(4 * 1024);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) => return "closed by Kamailio".into(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
        // Events get no answer, so their ACK would wait for the delayed-ACK
        // timer (up to 40 ms), and Kamailio's evapi socket (no TCP_NODELAY)
        // holds its next small write, a query, until that ACK: acknowledge
        // at once. The kernel clears the flag again, so it is set per read.
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_quickack(true) {
            debug!(%peer, "evapi: TCP_QUICKACK: {e}");
        }
        loop {
            match next_frame(&mut buf) {
                Ok(Some(msg)) => handle(state, &peer, &msg, &mut out).await,
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, "evapi: {e}; dropping the connection");
                    return e.to_string();
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                return format!("write failed: {e}");
            }
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
        let mut buf = BytesMut::from(input);
        let mut got = Vec::new();
        loop {
            match next_frame(&mut buf) {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => return (got, None, buf.len()),
                Err(e) => return (got, Some(e), buf.len()),
            }
        }
    }

    #[test]
    fn netstrings_in_one_read_and_across_reads() {
        let (got, err, rest) = frames(b"5:hello,\n3:abc,0:,");
        assert_eq!(got, vec![b"hello".to_vec(), b"abc".to_vec(), Vec::new()]);
        assert_eq!((err, rest), (None, 0));
        // A frame cut anywhere waits for the rest, then comes out whole.
        let whole = b"11:{\"a\":\"b:,\"},";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(next_frame(&mut buf), Ok(None), "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(
                next_frame(&mut buf).unwrap().as_deref(),
                Some(&b"{\"a\":\"b:,\"}"[..])
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn malformed_netstrings_are_errors_not_panics() {
        assert_eq!(frames(b"x:ab,").1, Some(FrameError::BadLength(b'x')));
        assert_eq!(frames(b":ab,").1, Some(FrameError::BadLength(b':')));
        assert_eq!(frames(b"2:abc").1, Some(FrameError::NoComma(b'c')));
        assert_eq!(frames(b"-1:a,").1, Some(FrameError::BadLength(b'-')));
        assert_eq!(
            frames(format!("{}:", MAX_FRAME + 1).as_bytes()).1,
            Some(FrameError::TooLarge(MAX_FRAME + 1))
        );
        // Too many digits is refused before any overflow.
        assert!(matches!(
            frames(b"99999999999999999999999999:").1,
            Some(FrameError::TooLarge(_))
        ));
        // The largest allowed frame is read.
        let mut big = format!("{MAX_FRAME}:").into_bytes();
        big.extend(std::iter::repeat_n(b'a', MAX_FRAME));
        big.push(b',');
        let (got, err, _) = frames(&big);
        assert_eq!((got.len(), err), (1, None));
        // Any bytes at all: an error or frames, never a panic.
        for seed in 0u32..2000 {
            let junk: Vec<u8> = (0..(seed % 40))
                .map(|i| (seed.wrapping_mul(2_654_435_761).rotate_left(i) & 0xff) as u8)
                .collect();
            let _ = frames(&junk);
        }
    }

    #[test]
    fn put_frame_writes_what_next_frame_reads() {
        let mut out = Vec::new();
        put_frame(&mut out, b"{\"x\":1}");
        put_frame(&mut out, b"");
        assert_eq!(out, b"7:{\"x\":1},0:,");
        let (got, err, _) = frames(&out);
        assert_eq!(got, vec![b"{\"x\":1}".to_vec(), Vec::new()]);
        assert_eq!(err, None);
    }
}
