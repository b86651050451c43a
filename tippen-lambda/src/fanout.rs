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
use tippen_core::api::SocketRole;
use tippen_core::{Clock, SystemClock};

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

    /// Sends `texts` (in order) to every connection of `role` — a site's dashboards, or a
    /// visitor's channels — but `skip`, at most `concurrency` connections at a time; forgets
    /// connections that are gone. Returns whether any took them (posted or queued).
    pub async fn send<T: Deref<Target = str> + Sync>(
        &self,
        role: &SocketRole,
        texts: &[T],
        skip: Option<&str>,
    ) -> bool {
        let mut targets = match self.store.connections(role).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::error!(site = %role.site(), error = %e, "could not list connections");
                return false;
            }
        };
        targets.retain(|t| skip != Some(t.connection.connection_id.as_str()));
        stream::iter(targets)
            .map(|target| self.deliver(target, texts))
            .buffer_unordered(self.concurrency)
            .fold(false, |any, took| async move { any | took })
            .await
    }

    /// Forgets a connection API Gateway no longer has.
    pub async fn forget(&self, conn: Connection) {
        tracing::debug!(connection = %conn.connection_id, "connection gone; forgetting it");
        if let Err(e) = self.store.remove_connection(&conn).await {
            tracing::warn!(connection = %conn.connection_id, error = %e, "could not forget connection");
        }
    }
}
