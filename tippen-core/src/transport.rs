//! Outbound HTTP, sans-IO: the core builds an `http::Request` and parses the `http::Response`;
//! a [`Transport`], implemented once per host (reqwest natively, `worker::Fetch` on Workers),
//! moves the bytes.

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use thiserror::Error;

use crate::store::MaybeSendSync;

/// Why an outbound request got no answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// No answer within the host's time limit.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection failed (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// This host was built or configured without outbound HTTP.
    #[error("this host has no outbound HTTP transport")]
    Unavailable,
}

/// Sends one request and returns the whole answer. Redirects are not followed; the
/// implementation applies its own time limit and never logs the URL (it may carry a secret).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Transport: MaybeSendSync {
    /// Sends `request`; any HTTP status is an `Ok` answer.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError>;
}
