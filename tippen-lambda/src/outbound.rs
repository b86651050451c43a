//! Outbound HTTPS (feature `outbound`): the video provider, Slack and alert webhooks, over
//! [`tippen_http::HttpTransport`] (reqwest + rustls, the same transport tippen-axum uses).
//!
//! Lambda freezes the process as soon as the handler returns, so nothing may be left running
//! in the background: notifications (Slack, webhooks) are delivered *before* the invocation returns
//! (after the answer is computed and the dashboards are told), all notices of the invocation
//! concurrently, bounded by [`LambdaConfig::slack_budget`](crate::LambdaConfig::slack_budget)
//! in total. Retries follow the core's policy (429 / 5xx, `Retry-After`) and wait with tokio's
//! timer; a delivery not done within the budget is dropped and logged. The webhook URL is never
//! logged (the transport's errors carry no URL).

use std::time::Duration;

use tippen_core::notify::{self, Notice, Notifier, Sent};
use tippen_http::HttpTransport;

use crate::config::LambdaConfig;

/// The outbound transport and the alert delivery settings of one function instance.
#[derive(Debug)]
pub struct Outbound {
    transport: HttpTransport,
    notifier: Notifier,
    budget: Duration,
}

impl Outbound {
    /// The transport for `config`; None (logged) when the TLS client cannot be built.
    pub fn new(config: &LambdaConfig) -> Option<Self> {
        match HttpTransport::new(config.outbound_timeout) {
            Ok(transport) => {
                if let Some(slack) = &config.slack {
                    tracing::info!(webhook = %slack.webhook, "Slack notifications of support alerts enabled");
                }
                Some(Outbound {
                    transport,
                    notifier: Notifier::new(config.slack.clone(), &config.core),
                    budget: config.slack_budget,
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "no outbound HTTPS client: video calls, Slack and webhooks are off");
                None
            }
        }
    }

    /// The transport.
    pub fn transport(&self) -> &HttpTransport {
        &self.transport
    }

    /// Delivers `notices` (Slack messages, signed webhooks), concurrently, returning when all
    /// are done or the budget has passed (whichever comes first). Returns how many requests
    /// were taken.
    /// Each delivery's end is recorded in its site's alert log through `tippen`.
    pub async fn notify(&self, tippen: &tippen_core::Tippen, notices: Vec<Notice>) -> usize {
        let outgoing = self.notifier.outgoing(&notices);
        let count = outgoing.len();
        let deliveries = outgoing.iter().map(|out| async move {
            let done =
                notify::send(&self.transport, out, notify::unix_now, tokio::time::sleep).await;
            done.log(&out.label);
            tippen.record_delivery(&out.label, &done).await;
            matches!(done, Sent::Yes { .. })
        });
        match tokio::time::timeout(self.budget, futures_util::future::join_all(deliveries)).await {
            Ok(done) => done.into_iter().filter(|d| *d).count(),
            Err(_) => {
                tracing::warn!(
                    requests = count,
                    budget_ms = self.budget.as_millis() as u64,
                    "notifications not all delivered within the budget; the rest are dropped"
                );
                0
            }
        }
    }
}
