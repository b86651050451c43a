//! Outbound HTTPS (feature `outbound`): the video provider and Slack, over
//! [`tippen_http::HttpTransport`] (reqwest + rustls, the same transport tippen-axum uses).
//!
//! Lambda freezes the process as soon as the handler returns, so nothing may be left running
//! in the background: Slack notifications are delivered *before* the invocation returns
//! (after the answer is computed and the dashboards are told), all notices of the invocation
//! concurrently, bounded by [`LambdaConfig::slack_budget`](crate::LambdaConfig::slack_budget)
//! in total. Retries follow the core's policy (429 / 5xx, `Retry-After`) and wait with tokio's
//! timer; a delivery not done within the budget is dropped and logged. The webhook URL is never
//! logged (the transport's errors carry no URL).

use std::time::Duration;

use tippen_core::slack::{self, Delivered, SlackConfig};
use tippen_core::support::{SupportConfig, SupportNotice};
use tippen_http::HttpTransport;

use crate::config::LambdaConfig;

/// The outbound transport and the Slack settings of one function instance.
#[derive(Debug)]
pub struct Outbound {
    transport: HttpTransport,
    slack: Option<SlackConfig>,
    budget: Duration,
}

impl Outbound {
    /// The transport for `config`; None (logged) when the TLS client cannot be built.
    pub fn new(config: &LambdaConfig) -> Option<Self> {
        match HttpTransport::new(config.outbound_timeout) {
            Ok(transport) => {
                if let Some(slack) = &config.slack {
                    tracing::info!(webhook = %slack.webhook, "Slack notifications enabled");
                }
                Some(Outbound {
                    transport,
                    slack: config.slack.clone(),
                    budget: config.slack_budget,
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "no outbound HTTPS client: video calls and Slack are off");
                None
            }
        }
    }

    /// The transport.
    pub fn transport(&self) -> &HttpTransport {
        &self.transport
    }

    /// Delivers `notices` to Slack, concurrently, returning when all are done or the budget
    /// has passed (whichever comes first). Returns how many Slack took.
    pub async fn notify(&self, support: &SupportConfig, notices: Vec<SupportNotice>) -> usize {
        let Some(config) = &self.slack else {
            tracing::debug!(
                alerts = notices.len(),
                "no Slack webhook configured; support alerts go to dashboards only"
            );
            return 0;
        };
        let count = notices.len();
        let deliveries = notices.iter().map(|notice| async move {
            let done =
                slack::deliver(&self.transport, config, support, notice, tokio::time::sleep).await;
            done.log(notice);
            matches!(done, Delivered::Yes { .. })
        });
        match tokio::time::timeout(self.budget, futures_util::future::join_all(deliveries)).await {
            Ok(done) => done.into_iter().filter(|d| *d).count(),
            Err(_) => {
                tracing::warn!(
                    alerts = count,
                    budget_ms = self.budget.as_millis() as u64,
                    "Slack notifications not all delivered within the budget; the rest are dropped"
                );
                0
            }
        }
    }
}
