//! Conversions between the Workers runtime's requests and responses and the core's `http`
//! types, and the client's address.

use std::net::IpAddr;

use bytes::Bytes;
use tippen_core::api::ApiError;
use worker::{Headers, Request, Response};

/// The header Cloudflare sets to the address of the client that connected to it.
pub const CONNECTING_IP_HEADER: &str = "cf-connecting-ip";

/// How much of a refused body is still read (and discarded, never held) before its 413 is
/// answered, as the axum host's lingering close does: a Worker that answers while the request
/// body is still arriving has its isolate restarted by the local runtime (`wrangler dev`:
/// "Network connection lost", then `503 Your worker restarted mid-request` for the requests in
/// flight). A body declared larger than the limit plus this is refused at once.
const DRAIN_MAX_BYTES: u64 = 1 << 20;

/// Reads `req`'s body, holding at most `max` bytes: `Ok(Err(413))` — the core's answer — when
/// `Content-Length` declares more or the stream delivers more. The body is never held whole
/// before it is measured: what comes past the limit is discarded (at most
/// 1 MiB more; a declared length beyond that is refused without reading). A
/// request without a body reads as empty.
pub async fn read_body(
    req: &mut Request,
    max: usize,
) -> worker::Result<Result<Bytes, http::Response<Bytes>>> {
    use futures_util::StreamExt;
    let too_large = || Ok(Err(ApiError::body_too_large(max).into_response()));
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<u64>().ok());
    if req.inner().body().is_none() {
        return Ok(Ok(Bytes::new()));
    }
    let limit = max as u64;
    if let Some(n) = declared.filter(|n| *n > limit) {
        if n <= limit.saturating_add(DRAIN_MAX_BYTES) {
            drain(std::pin::pin!(req.stream()?), DRAIN_MAX_BYTES).await;
        }
        return too_large();
    }
    let mut stream = std::pin::pin!(req.stream()?);
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > max {
            drop(body);
            drain(stream, DRAIN_MAX_BYTES).await;
            return too_large();
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(Bytes::from(body)))
}

/// Reads and discards up to `max` more bytes of a body stream (to its end when shorter).
async fn drain(
    mut stream: std::pin::Pin<&mut impl futures_util::Stream<Item = worker::Result<Vec<u8>>>>,
    max: u64,
) {
    use futures_util::StreamExt;
    let mut read = 0u64;
    while read <= max {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Copies a request's method, path, query and headers into an `http::Request` with `body`.
pub fn http_request(req: &Request, body: Bytes) -> worker::Result<http::Request<Bytes>> {
    let url = req.url()?;
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut builder = http::Request::builder()
        .method(req.method().as_ref())
        .uri(path_and_query);
    if let Some(headers) = builder.headers_mut() {
        *headers = http_headers(req.headers());
    }
    builder
        .body(body)
        .map_err(|e| worker::Error::RustError(format!("request: {e}")))
}

/// The runtime's headers as an `http::HeaderMap` (values that are not valid header values
/// are left out).
pub fn http_headers(headers: &Headers) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers.entries() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The core's response as the runtime's.
pub fn worker_response(response: http::Response<Bytes>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    Ok(Response::builder()
        .with_status(parts.status.as_u16())
        .with_headers(headers)
        .fixed(body.to_vec()))
}

/// The response of a request's effects (a `500` if the core gave none).
pub fn effects_response(response: Option<http::Response<Bytes>>) -> worker::Result<Response> {
    worker_response(response.unwrap_or_else(|| {
        let status = http::StatusCode::INTERNAL_SERVER_ERROR;
        tippen_core::api::ApiError::new(status, "no response").into_response()
    }))
}

/// The client's address: `CF-Connecting-IP`, which Cloudflare's edge sets (and overwrites)
/// on every request that reaches a Worker.
pub fn client_ip(headers: &http::HeaderMap) -> Option<IpAddr> {
    headers
        .get(CONNECTING_IP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a request asks for a WebSocket upgrade.
pub fn wants_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_comes_from_cf_connecting_ip() {
        let mut h = http::HeaderMap::new();
        assert_eq!(client_ip(&h), None);
        h.insert(CONNECTING_IP_HEADER, "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        assert_eq!(client_ip(&h), Some("203.0.113.9".parse().unwrap()));
        h.insert(CONNECTING_IP_HEADER, "not an address".parse().unwrap());
        assert_eq!(client_ip(&h), None);
    }

    #[test]
    fn upgrade_is_case_insensitive() {
        let mut h = http::HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(http::header::UPGRADE, "WebSocket".parse().unwrap());
        assert!(wants_upgrade(&h));
    }
}
