//! Shared HTTP pieces: Mesos-style plain-text errors, request checks for the v1 APIs
//! (method, Content-Type, Accept, body size), and RecordIO event streams that tell their
//! actor when the client goes away.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Largest request body accepted by the v1 endpoints.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Events buffered per stream before a slow reader is disconnected.
pub const STREAM_BUFFER: usize = 4096;

/// A plain-text error response, as Mesos sends them.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, message.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Middleware: refuses a request whose declared `Content-Length` is over `limit` before
/// reading any of its body, so the client is answered instead of being cut off mid-write.
/// Bodies without a length are still capped while read, by `DefaultBodyLimit`.
pub async fn refuse_oversized(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => {
            let mut r = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is {n} bytes; at most {limit} are accepted"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        _ => next.run(request).await,
    }
}

/// 202 with an empty body.
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Checks method and Content-Type and decodes a JSON call, with Mesos's messages.
pub fn decode_call<T: DeserializeOwned>(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, Response> {
    if method != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received '{method}'."
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(r);
    }
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/x-protobuf" {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Mantle speaks JSON only: send 'Content-Type: application/json' (protobuf is not supported)",
        ));
    }
    if media != "application/json" {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        ));
    }
    // One pass for a good body; a bad one is parsed again to tell bad JSON from a JSON value
    // that is not a `what` (Mesos's two messages).
    if let Ok(call) = serde_json::from_slice(body) {
        return Ok(call);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into JSON: {e}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to convert JSON into {what} protobuf: {e}"),
        )
    })
}

/// Whether the request's Accept header allows a JSON stream (a missing header allows all).
pub fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = it.any(|p| p.trim().replace(' ', "") == "q=0");
        !q_zero && matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// The 406 for an Accept header that excludes JSON.
pub fn not_acceptable() -> Response {
    error(
        StatusCode::NOT_ACCEPTABLE,
        "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'",
    )
}

/// A stream of pre-framed RecordIO records that runs `on_drop` when the client goes away or
/// the sender closes it.
pub struct EventStream {
    rx: mpsc::Receiver<Bytes>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl EventStream {
    /// Wraps a receiver.
    pub fn new(rx: mpsc::Receiver<Bytes>, on_drop: impl FnOnce() + Send + Sync + 'static) -> Self {
        EventStream {
            rx,
            on_drop: Some(Box::new(on_drop)),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// A 200 streaming response with the given extra headers.
pub fn stream_response(stream: EventStream, headers: &[(&'static str, String)]) -> Response {
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// JSON body with status 200.
pub fn json(value: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(value.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Frames a serializable record for a RecordIO stream.
pub fn frame<T: serde::Serialize>(value: &T) -> Bytes {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Bytes::from(mantle_api::recordio::encode(&body))
}

/// 404 for unknown routes, naming the path.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("No such endpoint: {}", uri.path()),
    )
}

/// Mesos's duration text (`5secs`, `250ms`) as executors parse it.
pub fn mesos_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}secs", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A listener whose connections have `TCP_NODELAY`. Responses and event streams go out in
/// small writes (a RecordIO frame each), and with Nagle's algorithm a small write waits while
/// an earlier one is unacknowledged, which a peer in delayed-ACK mode (a connection that has
/// seen a request and a response) acknowledges only after 40 ms: a launch's SUBSCRIBED and
/// LAUNCH events stalled that long on a kept-alive connection.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}
