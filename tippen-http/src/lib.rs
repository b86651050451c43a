#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tippen_core::{Transport, TransportError};

/// Sends the core's outbound requests (video provider, enrichment provider) with reqwest:
/// rustls, no redirects followed, one time limit for the whole exchange, and errors stripped of
/// the URL (it may carry an API key).
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport giving each exchange at most `timeout` (connect, send, whole answer).
    ///
    /// # Errors
    ///
    /// The TLS backend could not be initialised.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tippen/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpTransport { client, timeout })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        let request = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body: Bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(TransportError::Timeout(self.timeout.as_millis() as u64)),
            Ok(Err(e)) if e.is_timeout() => {
                Err(TransportError::Timeout(self.timeout.as_millis() as u64))
            }
            Ok(Err(e)) => Err(TransportError::Connect(e.without_url().to_string())),
            Ok(Ok((status, headers, body))) => {
                let mut response = http::Response::new(body);
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                Ok(response)
            }
        }
    }
}
