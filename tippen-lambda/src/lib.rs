#![doc = include_str!("../README.md")]
//!
//! ## Design
//!
//! Every `Effects` the core answers with is applied through `tippen_core::host::apply`, with
//! [`LambdaHost`] as its one `HostIo`, before the invocation returns. The functions:
//! [`http_fn`] (the client address is `requestContext`'s `sourceIp`, never a header),
//! [`ws_fn`] (`$connect` checks the key; `role=visitor&visitorId=…` opens the visitor channel,
//! no role or `role=dashboard` a dashboard; connections are stored per site and messages go out
//! through [`fanout`], which forgets a `410 Gone` connection), [`sweep_fn`] (runs
//! [`LambdaHost::sweep_all`]; expiry never depends on it, as reads filter visitors whose grace
//! has passed) and [`enrich_fn`] (design and deployment notes: [`enrich`]).
//!
//! Outbound HTTPS (feature `outbound`, on with `http`, `scheduled` and `enrich`; [`outbound`]): the
//! video provider (`TIPPEN_VIDEO_PROVIDER_URL`) and Slack (`TIPPEN_SLACK_WEBHOOK_URL`) over
//! reqwest with rustls ([`tippen_http`]). Slack is delivered before the invocation returns,
//! within a time budget. The WebSocket function makes no outbound call and does not link it.
//!
//! State lives in one DynamoDB table (the crate `tippen-dynamodb`, re-exported as [`store`] and
//! [`history`]) written with conditional writes on a version
//! attribute, so concurrent invocations never lose an update. `template.yaml` in the
//! repository's `examples/lambda` deploys it all; the repository's `docs/lambda.md` explains it
//! and the local runs.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
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
pub mod retention;
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
pub use host::{HostError, LambdaHost};
pub use tippen_dynamodb::{
    Connection, DynamoHistory, DynamoStore, FanoutTarget, SweepClaim, SweepEnd, Wake, history,
    sdk_config, store,
};
