//! The HTTP function: API Gateway HTTP API / REST API / function URL events through
//! `lambda_http`, answered by the core's HTTP contract.

use std::net::IpAddr;

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::host::{HostError, LambdaHost};

/// The client address API Gateway saw (`requestContext.http.sourceIp` for HTTP APIs and
/// function URLs, `requestContext.identity.sourceIp` for REST APIs). Headers such as
/// `X-Forwarded-For` are never read: a client can set them.
pub fn source_ip(req: &Request) -> Option<IpAddr> {
    let ip = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref(),
        _ => None,
    };
    ip.and_then(|ip| ip.parse().ok())
}

/// Converts a `lambda_http` request into the core's `http::Request<Bytes>`.
pub fn into_core(req: Request) -> http::Request<Bytes> {
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    http::Request::from_parts(parts, body)
}

/// Converts the core's response for `lambda_http` (text when it is UTF-8, else binary).
pub fn from_core(res: http::Response<Bytes>) -> Response<Body> {
    let (parts, body) = res.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    Response::from_parts(parts, body)
}

/// Runs the HTTP function until the Lambda runtime stops it.
pub async fn run(host: LambdaHost) -> Result<(), HostError> {
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let host = host.clone();
        // Boxed: keeps the runtime's future type shallow (and the binary's layout queries).
        Box::pin(async move {
            let ip = source_ip(&req);
            let res = host.handle_http(into_core(req), ip).await;
            Ok::<_, std::convert::Infallible>(from_core(res))
        })
    }))
    .await
    .map_err(|e| HostError::Aws(format!("Lambda runtime: {e}")))
}
