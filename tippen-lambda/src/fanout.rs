//! [`Fanout`]: dashboard and visitor messages out through API Gateway's Management API
//! (`PostToConnection`), concurrently with a bound; a connection API Gateway reports gone
//! (`410 GoneException`) is forgotten.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::StreamExt;
use futures_util::stream;
use tippen_core::{Broadcast, Clock, SiteId, SystemClock, VisitorPush};

use crate::store::{Connection, DynamoStore, FanoutTarget};

/// How long a connection may wait for its greeting before fan-outs give up on it.
pub const GREETING_LIMIT: Duration = Duration::from_secs(30);

/// What became of one `PostToConnection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// API Gateway took the message.
    Sent,
    /// The connection is gone (`410`).
    Gone,
    /// Another failure (throttling, network); logged, the connection is kept.
    Failed,
}

/// Sends messages to API Gateway WebSocket connections.
#[derive(Clone, Debug)]
pub struct Fanout {
    client: Client,
    store: Arc<DynamoStore>,
    concurrency: usize,
}

impl Fanout {
    /// A fan-out through `client` (its endpoint is the WebSocket API's stage URL), with at
    /// most `concurrency` posts in flight per message batch.
    pub fn new(client: Client, store: Arc<DynamoStore>, concurrency: usize) -> Self {
        Fanout {
            client,
            store,
            concurrency: concurrency.max(1),
        }
    }

    /// Posts one text to one connection.
    pub async fn post(&self, connection_id: &str, text: &str) -> Posted {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(text.as_bytes().to_vec()))
            .send()
            .await;
        match sent {
            Ok(_) => Posted::Sent,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => Posted::Gone,
            Err(e) => {
                tracing::warn!(connection = connection_id, error = ?e, "PostToConnection failed");
                Posted::Failed
            }
        }
    }

    /// Whether API Gateway reports the connection open (`GetConnection`).
    pub async fn is_open(&self, connection_id: &str) -> bool {
        self.client
            .get_connection()
            .connection_id(connection_id)
            .send()
            .await
            .is_ok()
    }

    /// Posts `texts`, in order, to one connection; stops at the first failure.
    pub async fn post_all<T: Deref<Target = str> + Sync>(
        &self,
        connection_id: &str,
        texts: &[T],
    ) -> Posted {
        for text in texts {
            match self.post(connection_id, text).await {
                Posted::Sent => {}
                other => return other,
            }
        }
        Posted::Sent
    }

    /// Sends `texts` (in order) to one target: posted when it has been greeted, else queued
    /// in its outbox (its greeting sends them after the first message). A gone connection is
    /// forgotten. Returns whether the texts reached the connection or its outbox.
    async fn deliver<T: Deref<Target = str> + Sync>(
        &self,
        target: FanoutTarget,
        texts: &[T],
    ) -> bool {
        if !target.greeted && target.connected_at.plus(GREETING_LIMIT) < SystemClock.now() {
            // Its greeting never happened (the asynchronous invocation was lost): the client
            // got nothing, it reconnects; queueing for it forever would only cost.
            self.forget(target.connection).await;
            return false;
        }
        if !target.greeted {
            match self.store.append_outbox(&target.connection, texts).await {
                Ok(true) => return true,
                // Greeted meanwhile (or gone): post directly.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(connection = %target.connection.connection_id, error = %e, "outbox append failed");
                    return false;
                }
            }
        }
        match self.post_all(&target.connection.connection_id, texts).await {
            Posted::Sent => true,
            Posted::Gone => {
                self.forget(target.connection).await;
                false
            }
            Posted::Failed => false,
        }
    }

    /// Sends `messages` (in order) to every dashboard of `site`, at most `concurrency`
    /// connections at a time; forgets connections that are gone.
    pub async fn to_dashboards(&self, site: &SiteId, messages: &[Broadcast]) {
        if messages.is_empty() {
            return;
        }
        let targets = match self.store.dashboard_connections(site).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::error!(site = %site, error = %e, "could not list dashboards");
                return;
            }
        };
        stream::iter(targets)
            .for_each_concurrent(self.concurrency, |target| async move {
                self.deliver(target, messages).await;
            })
            .await;
    }

    /// Sends `push` to its visitor's open channels on `site`, except the connection `skip`
    /// (the one whose frame caused it). Returns whether any took it (posted or queued).
    pub async fn to_visitor(&self, site: &SiteId, push: &VisitorPush, skip: Option<&str>) -> bool {
        let targets = match self.store.visitor_connections(site, &push.visitor_id).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::error!(site = %site, error = %e, "could not list visitor sockets");
                return false;
            }
        };
        let mut delivered = false;
        for target in targets {
            if skip != Some(target.connection.connection_id.as_str()) {
                delivered |= self.deliver(target, std::slice::from_ref(push)).await;
            }
        }
        delivered
    }

    /// Forgets a connection API Gateway no longer has.
    pub async fn forget(&self, conn: Connection) {
        tracing::debug!(connection = %conn.connection_id, "connection gone; forgetting it");
        if let Err(e) = self.store.remove_connection(&conn).await {
            tracing::warn!(connection = %conn.connection_id, error = %e, "could not forget connection");
        }
    }
}
