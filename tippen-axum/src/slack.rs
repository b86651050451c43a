//! Delivery of alerts (support alerts and alert rules' alerts): [`tippen_core::notify`] on the
//! host's [`HttpTransport`] and tokio's timer.
//!
//! The core decides what to send (cooldowns applied), builds each request (Slack messages,
//! signed webhooks) and says what each answer means (429 and 5xx are retried, honouring
//! `Retry-After`); this runs each delivery in a task of its own, so a slow or failing receiver
//! never delays a request or a sweep, and stops waiting at shutdown. URLs and secrets are
//! never logged.

use std::sync::Arc;

use tippen_core::Tippen;
use tippen_core::notify::{self, Notice, Notifier};
use tokio::sync::watch;

use crate::host::stopped;
use tippen_http::HttpTransport;

/// Sends notices through the core's delivery path.
#[derive(Clone, Debug)]
pub(crate) struct Deliveries {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: HttpTransport,
    notifier: Notifier,
    /// The core, to record each delivery in the site's alert log.
    tippen: Arc<Tippen>,
}

impl Deliveries {
    pub(crate) fn new(transport: HttpTransport, notifier: Notifier, tippen: Arc<Tippen>) -> Self {
        if let Some(slack) = &notifier.slack {
            tracing::info!(webhook = %slack.webhook, "Slack notifications of support alerts enabled");
        }
        Deliveries {
            inner: Arc::new(Inner {
                transport,
                notifier,
                tippen,
            }),
        }
    }

    /// Delivers each of the notices' requests in a task of its own.
    pub(crate) fn submit(&self, notices: Vec<Notice>, shutdown: &watch::Receiver<bool>) {
        for outgoing in self.inner.notifier.outgoing(&notices) {
            let inner = self.inner.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let delivery = notify::send(
                    &inner.transport,
                    &outgoing,
                    notify::unix_now,
                    tokio::time::sleep,
                );
                tokio::select! {
                    done = delivery => {
                        done.log(&outgoing.label);
                        inner.tippen.record_delivery(&outgoing.label, &done).await;
                    }
                    () = stopped(&mut shutdown) => tracing::debug!(
                        id = %outgoing.label.id,
                        "shutting down: notification not sent"
                    ),
                }
            });
        }
    }
}
