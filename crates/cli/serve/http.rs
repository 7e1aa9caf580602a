//! What every endpoint shares: the one body reader (413, 408, 400 the same
//! way everywhere), the fields of a JSON or form body, and JSON answers.

use std::collections::HashMap;

use bytes::Bytes;
use c4route_core::{MAX_BODY, is_form_body};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::state::AppState;

/// An answer.
pub(crate) type Resp = Response<Full<Bytes>>;

pub(super) fn method_not_allowed(allow: &'static str, method: &Method) -> Resp {
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

/// Reads a small body (reports and commands are tiny): the server's one
/// body reader, so an oversized one gets the same 413 as a query.
pub(crate) async fn body(
    req: hyper::Request<Incoming>,
    state: &AppState,
) -> Result<(Bytes, Option<String>), Resp> {
    let (b, ct) = read_request_body(req, state).await?;
    let ct = ct.and_then(|v| v.to_str().ok().map(str::to_owned));
    Ok((b, ct))
}

/// The fields of a JSON object or a form body, as strings.
pub(crate) fn fields(body: &[u8], ct: Option<&str>) -> Result<HashMap<String, String>, String> {
    // As for queries (the same rule): libcurl labels every POST without a
    // header as a form, so a body that is plainly a JSON object is JSON.
    if is_form_body(body, ct) {
        return Ok(form_urlencoded::parse(body).into_owned().collect());
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(map) = v else {
        return Err("the body must be a JSON object".into());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect())
}

/// A 204 without a body or a content type.
pub(crate) fn no_content() -> Resp {
    let mut r = json(StatusCode::NO_CONTENT, Vec::new());
    r.headers_mut().remove(CONTENT_TYPE);
    r
}
