//! A fixed-answer rtjson server: the HTTP ceiling of a machine.
//!
//! It speaks the same HTTP as `c4route serve` (hyper 1, HTTP/1.1
//! keep-alive, TCP_NODELAY, the body read in full, a JSON answer with a
//! Content-Length) but answers every POST with one constant route to
//! `--uri`, without parsing the query or deciding anything. Benchmarks run
//! it side by side with c4route (`scripts/load.sh`); the Kamailio side uses
//! it to measure its own overhead.
//!
//! ```text
//! cargo build --release --example fixed_answer
//! target/release/examples/fixed_answer --listen 127.0.0.1:8001 --uri sip:127.0.0.1:5080
//! ```
//!
//! `/kamailio/rtjson` and `/1.0/kamailio/routing` answer `{"rtjson":{…}}`,
//! `/rtjson` the bare document, `/health` `{"status":"ok"}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

fn usage() -> ! {
    eprintln!("usage: fixed_answer [--listen ADDR] [--uri SIPURI]");
    std::process::exit(2)
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:8001".parse().unwrap_or_else(|_| usage());
    let mut uri = String::from("sip:127.0.0.1:5080");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--uri" => uri = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let bare = answer(&uri);
    let wrapped = Bytes::from(format!("{{\"rtjson\":{bare}}}"));
    let bare = Bytes::from(bare);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        eprintln!(
            "fixed_answer listening on http://{}",
            listener.local_addr().expect("local address")
        );
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(300))
            .keep_alive(true);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (bare, wrapped) = (bare.clone(), wrapped.clone());
            let svc = service_fn(move |req: Request<Incoming>| {
                let (bare, wrapped) = (bare.clone(), wrapped.clone());
                async move {
                    let body = match req.uri().path() {
                        "/kamailio/rtjson" | "/1.0/kamailio/routing" => wrapped,
                        "/rtjson" => bare,
                        "/health" => Bytes::from_static(b"{\"status\":\"ok\"}"),
                        _ => {
                            let mut r = Response::new(Full::new(Bytes::from_static(
                                b"{\"error\":\"not found\"}",
                            )));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            return Ok::<_, Infallible>(r);
                        }
                    };
                    // Read the query like a real service would.
                    let _ = req.into_body().collect().await;
                    let mut r = Response::new(Full::new(body));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(r)
                }
            });
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
}

/// The bare rtjson document: one serial route to `uri`.
fn answer(uri: &str) -> String {
    let uri = serde_json::to_string(uri).unwrap_or_else(|_| "\"\"".into());
    format!(
        concat!(
            r#"{{"success":true,"version":"1.0","routing":"serial","rule":"fixed","routes":["#,
            r#"{{"uri":{uri},"dst_uri":{uri},"path":"","socket":"","#,
            r#""headers":{{"from":{{"display":"","uri":""}},"to":{{"display":"","uri":""}},"extra":""}},"#,
            r#""branch_flags":0,"fr_timer":0,"fr_inv_timer":0}}]}}"#
        ),
        uri = uri
    )
}
