//! Slack delivery of support alerts: [`tippen_core::slack::deliver`] on the host's
//! [`HttpTransport`] and tokio's timer.
//!
//! The core decides when to notify (the per-user cooldown), builds the message and the
//! request, and says what each answer means (429 and 5xx are retried, honouring
//! `Retry-After`); this runs each notice's delivery in a task of its own, so a slow or failing
//! Slack never delays a request or a sweep, and stops waiting at shutdown. The webhook URL is
//! never logged: it is a [`WebhookUrl`](tippen_core::slack::WebhookUrl), and the transport's
//! errors carry no URL.

use std::sync::Arc;

use tippen_core::slack::{self, SlackConfig};
use tippen_core::support::{SupportConfig, SupportNotice};
use tokio::sync::watch;

use crate::host::stopped;
use tippen_http::HttpTransport;

/// Sends support notices to a Slack incoming webhook.
#[derive(Clone, Debug)]
pub(crate) struct SlackNotifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: HttpTransport,
    config: SlackConfig,
    support: SupportConfig,
}

impl SlackNotifier {
    pub(crate) fn new(
        transport: HttpTransport,
        config: SlackConfig,
        support: SupportConfig,
    ) -> Self {
        tracing::info!(webhook = %config.webhook, "Slack notifications enabled");
        SlackNotifier {
            inner: Arc::new(Inner {
                transport,
                config,
                support,
            }),
        }
    }

    /// Delivers each notice in a task of its own.
    pub(crate) fn submit(&self, notices: Vec<SupportNotice>, shutdown: &watch::Receiver<bool>) {
        for notice in notices {
            let inner = self.inner.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let delivery = slack::deliver(
                    &inner.transport,
                    &inner.config,
                    &inner.support,
                    &notice,
                    tokio::time::sleep,
                );
                tokio::select! {
                    done = delivery => done.log(&notice),
                    () = stopped(&mut shutdown) => tracing::debug!(
                        user = %notice.user.user_id,
                        "shutting down: Slack notification not sent"
                    ),
                }
            });
        }
    }
}
