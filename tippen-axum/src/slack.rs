//! Slack delivery of support alerts: the transport for [`tippen_core::slack`].
//!
//! The core decides when to notify (the per-user cooldown), builds the message and the
//! request, and says what a response means; this sends it with reqwest and sleeps between
//! attempts (429 and 5xx are retried, honouring `Retry-After`). Each notice is delivered by
//! its own task, so a slow or failing Slack never delays a request or a sweep. The webhook
//! URL is never logged: it is a [`WebhookUrl`](tippen_core::slack::WebhookUrl), and reqwest's
//! errors are logged without their URL.

use std::sync::Arc;
use std::time::Duration;

use tippen_core::slack::{self, Delivery, SlackConfig};
use tippen_core::support::{SupportConfig, SupportNotice};
use tokio::sync::watch;

use crate::host::stopped;

/// Sends support notices to a Slack incoming webhook.
#[derive(Clone, Debug)]
pub(crate) struct SlackNotifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: SlackConfig,
    support: SupportConfig,
}

/// How one notice's delivery ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Slack took it after this many attempts.
    Yes(u32),
    /// Given up (the reason names no URL).
    No(String),
    /// Shutdown began before it was delivered.
    Stopped,
}

impl SlackNotifier {
    pub(crate) fn new(config: SlackConfig, support: SupportConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        tracing::info!(webhook = %config.webhook, "Slack notifications enabled");
        SlackNotifier {
            inner: Arc::new(Inner {
                client,
                config,
                support,
            }),
        }
    }

    /// Delivers each notice in a task of its own.
    pub(crate) fn submit(&self, notices: Vec<SupportNotice>, shutdown: &watch::Receiver<bool>) {
        for notice in notices {
            let me = self.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                match me.deliver(&notice, &mut shutdown).await {
                    Delivered::Yes(attempts) => tracing::info!(
                        site = %notice.site,
                        user = %notice.user.user_id,
                        attempts,
                        "Slack notified"
                    ),
                    Delivered::No(reason) => tracing::warn!(
                        site = %notice.site,
                        user = %notice.user.user_id,
                        %reason,
                        "Slack notification dropped"
                    ),
                    Delivered::Stopped => tracing::debug!(
                        user = %notice.user.user_id,
                        "shutting down: Slack notification not sent"
                    ),
                }
            });
        }
    }

    /// Sends one notice, retrying as the core's policy says.
    pub(crate) async fn deliver(
        &self,
        notice: &SupportNotice,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Delivered {
        let cfg = &self.inner.config;
        let message = slack::message(
            notice,
            &self.inner.support,
            cfg.dashboard_base_url.as_deref(),
        );
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = match reqwest::Request::try_from(slack::request(&cfg.webhook, &message)) {
                Ok(r) => r,
                Err(e) => return Delivered::No(format!("bad request: {}", e.without_url())),
            };
            let next = match self.inner.client.execute(request).await {
                Ok(response) => slack::after_response(
                    response.status(),
                    response.headers(),
                    attempt,
                    &cfg.retry,
                ),
                Err(e) => {
                    tracing::debug!(attempt, error = %e.without_url(), "Slack unreachable");
                    slack::after_transport_error(attempt, &cfg.retry)
                }
            };
            match next {
                Delivery::Delivered => return Delivered::Yes(attempt),
                Delivery::GiveUp(reason) => return Delivered::No(reason),
                Delivery::RetryAfter(wait) => {
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "Slack retry");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(shutdown) => return Delivered::Stopped,
                    }
                }
            }
        }
    }
}
