//! [`FetchTransport`]: the core's outbound HTTP ([`Transport`]) over the runtime's `fetch`
//! (`worker::Fetch`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::{Either, select};
use tippen_core::{Transport, TransportError};
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, send::SendFuture,
};

/// Sends the core's outbound requests (the video provider) with `fetch`: redirects are not
/// followed, one time limit covers the whole exchange (the request is aborted after it), and
/// errors never carry the URL (it may hold a secret).
#[derive(Clone, Copy, Debug)]
pub struct FetchTransport {
    timeout: Duration,
}

impl FetchTransport {
    /// A transport giving each exchange at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        FetchTransport { timeout }
    }
}

impl Default for FetchTransport {
    /// A 10 s limit.
    fn default() -> Self {
        FetchTransport::new(Duration::from_secs(10))
    }
}

async fn exchange(
    request: http::Request<Bytes>,
    signal: worker::AbortSignal,
) -> worker::Result<http::Response<Bytes>> {
    let (parts, body) = request.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(parts.method.as_str().to_owned()))
        .with_headers(headers)
        .with_redirect(worker::RequestRedirect::Manual);
    if !body.is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_ref()).into()));
    }
    let request = Request::new_with_init(&parts.uri.to_string(), &init)?;
    let mut response = Fetch::Request(request).send_with_signal(&signal).await?;
    let status = response.status_code();
    let bytes = response.bytes().await?;
    let mut answer = http::Response::new(Bytes::from(bytes));
    *answer.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    for (name, value) in response.headers().entries() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            answer.headers_mut().append(name, value);
        }
    }
    Ok(answer)
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Transport for FetchTransport {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let timeout = self.timeout;
        // The runtime is single-threaded; the JS futures never cross threads.
        SendFuture::new(async move {
            let controller = AbortController::default();
            let sent = Box::pin(exchange(request, controller.signal()));
            let limit = Delay::from(timeout);
            match select(sent, limit).await {
                Either::Left((Ok(answer), _)) => Ok(answer),
                Either::Left((Err(_), _)) => {
                    // The runtime's error text may carry the URL: keep it out of logs.
                    tracing::warn!("outbound request failed");
                    Err(TransportError::Connect("fetch failed".to_owned()))
                }
                Either::Right(((), _)) => {
                    controller.abort();
                    Err(TransportError::Timeout(timeout.as_millis() as u64))
                }
            }
        })
        .await
    }
}
