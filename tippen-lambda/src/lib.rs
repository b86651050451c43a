//! # tippen-lambda
//!
//! tippen on AWS Lambda, API Gateway and DynamoDB — the stateless host. Four functions share
//! one [`LambdaHost`], which applies every `Effects` the core answers with through
//! `tippen_core::host::apply` as its one `HostIo`, before the invocation returns:
//!
//! - **HTTP** (feature `http`, [`http_fn`]): API Gateway HTTP API / function URL events are
//!   converted to `http::Request<Bytes>` and answered by the core's HTTP contract; the
//!   client address is `requestContext`'s `sourceIp`, never a header.
//! - **WebSocket** (feature `websocket`, [`ws_fn`]): the WebSocket API's `$connect` (key check;
//!   `role=visitor&visitorId=…` opens the visitor channel, no role or `role=dashboard` a
//!   dashboard), `$disconnect` and `$default` routes. Connections are stored per site in
//!   DynamoDB and messages go out with `PostToConnection` ([`fanout`]); a `410 Gone`
//!   connection is forgotten.
//! - **Scheduled** (feature `scheduled`, [`sweep_fn`]): an EventBridge rule runs the deadline
//!   work of every site ([`LambdaHost::sweep_all`]). Expiry never depends on it: reads filter
//!   visitors whose grace has passed.
//! - **Enrichment** (feature `enrich`, [`enrich_fn`]): the HTTP function hands the company
//!   lookups the core asks for to this function in an asynchronous invocation and answers at
//!   once; the function runs them (shared DynamoDB cache, provider over HTTPS, per-site stats)
//!   and fans the `VISITOR_UPDATE`s out before it returns. Design and deployment notes:
//!   [`enrich`].
//!
//! Outbound HTTPS (feature `outbound`, on with `http`, `scheduled` and `enrich`; [`outbound`]): the
//! video provider (`TIPPEN_VIDEO_PROVIDER_URL`) and Slack (`TIPPEN_SLACK_WEBHOOK_URL`) over
//! reqwest with rustls ([`tippen_http`]). Slack is delivered before the invocation returns,
//! within a time budget. The WebSocket function makes no outbound call and does not link it.
//!
//! State lives in one DynamoDB table ([`store`]) written with conditional writes on a version
//! attribute, so concurrent invocations never lose an update. `template.yaml` in
//! `examples/lambda` deploys it all; `docs/lambda.md` explains it and the local runs.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod enrich;
#[cfg(feature = "enrich")]
pub mod enrich_fn;
pub mod fanout;
pub mod host;
#[cfg(feature = "http")]
pub mod http_fn;
#[cfg(feature = "outbound")]
pub mod outbound;
pub mod store;
#[cfg(feature = "scheduled")]
pub mod sweep_fn;
#[cfg(feature = "websocket")]
pub mod ws_fn;

/// Logging for a function, set up first thing in `main`: lambda_runtime's default subscriber.
/// `tracing` events go to stdout (CloudWatch Logs) as text lines, or as JSON objects when
/// Lambda's advanced logging controls set `AWS_LAMBDA_LOG_FORMAT=JSON`, at the level of
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` (a filter), else `INFO`.
#[cfg(any(
    feature = "http",
    feature = "websocket",
    feature = "scheduled",
    feature = "enrich"
))]
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

pub use config::{ConfigError, LambdaConfig};
pub use fanout::{Fanout, Posted};
pub use host::{HostError, LambdaHost, sdk_config};
pub use store::{Connection, DynamoStore, FanoutTarget};
