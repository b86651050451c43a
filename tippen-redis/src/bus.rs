//! [`RedisBus`]: the axum host's [`Bus`] on Redis pub/sub and the sites' message logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::Builder;
use tippen_axum::Bus;
use tippen_core::{Broadcast, SiteId, StoreError};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::{RedisError, RedisStore, backend, describe_server};

/// Messages the subscriber connection buffers before a slow dispatcher drops some (a dropped
/// message is a gap the host replays from the log).
const BUFFERED_MESSAGES: usize = 4096;

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<Broadcast>>>>;

/// The axum host's [`Bus`] on Redis: one subscriber connection per replica (`SUBSCRIBE` to the
/// channel of each site it holds dashboards of, subscriptions restored after a reconnection),
/// and the sites' logs (streams) for replays. The messages are the ones a [`RedisStore`]
/// numbers and publishes (`{<namespace>:<site>}:bus`, `<seq> <text>`), so give it the store the
/// host's core writes with:
///
/// ```no_run
/// # async fn run(tippen: tippen_core::Tippen, store: tippen_redis::RedisStore) -> Result<(), tippen_redis::RedisError> {
/// use std::sync::Arc;
/// let bus = tippen_redis::RedisBus::connect(&store).await?;
/// let host = tippen_axum::TippenHost::with_bus(tippen, Default::default(), Arc::new(bus));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisBus {
    store: RedisStore,
    subscriber: SubscriberClient,
    routes: Routes,
    tasks: Vec<JoinHandle<()>>,
}

impl RedisBus {
    /// Opens the subscriber connection to `store`'s server (same URL and options).
    pub async fn connect(store: &RedisStore) -> Result<Self, RedisError> {
        let config = store.client.client_config();
        let server = describe_server(&config);
        let connection = store.client.connection_config().clone();
        let mut perf = store.client.perf_config();
        perf.broadcast_channel_capacity = BUFFERED_MESSAGES;
        let subscriber = Builder::from_config(config)
            .with_connection_config(|c| *c = connection)
            .with_performance_config(|p| *p = perf)
            .set_policy(fred::prelude::ReconnectPolicy::new_exponential(
                0, 100, 5_000, 2,
            ))
            .build_subscriber_client()
            .map_err(|e| RedisError::Url(e.details().to_owned()))?;
        subscriber
            .init()
            .await
            .map_err(|source| RedisError::Connect {
                server: server.clone(),
                source,
            })?;
        let routes: Routes = Arc::default();
        let resubscribe = subscriber.manage_subscriptions();
        let dispatch = tokio::spawn(dispatch(subscriber.message_rx(), routes.clone()));
        tracing::info!(%server, "subscriber connected to Redis");
        Ok(RedisBus {
            store: store.clone(),
            subscriber,
            routes,
            tasks: vec![resubscribe, dispatch],
        })
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Routes each published message to the receiver of its site's channel.
async fn dispatch(mut rx: broadcast::Receiver<fred::types::Message>, routes: Routes) {
    loop {
        let message = match rx.recv().await {
            Ok(message) => message,
            // Dropped messages are gaps in the numbers: the host replays them from the log.
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "bus subscriber lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(payload) = message.value.as_str() else {
            continue;
        };
        let Some(broadcast) = parse_published(&payload) else {
            tracing::warn!(channel = %&*message.channel, "unreadable bus message; ignored");
            continue;
        };
        let to = routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*message.channel)
            .cloned();
        if let Some(to) = to {
            // A full receiver drops the message: the host replays the gap from the log.
            let _ = to.try_send(broadcast);
        }
    }
}

/// `<seq> <text>` as published by the store's script.
fn parse_published(payload: &str) -> Option<Broadcast> {
    let (seq, text) = payload.split_once(' ')?;
    Some(Broadcast {
        seq: seq.parse().ok()?,
        text: Arc::from(text),
    })
}

#[async_trait]
impl Bus for RedisBus {
    async fn subscribe(
        &self,
        site: &SiteId,
        to: mpsc::Sender<Broadcast>,
    ) -> Result<(), StoreError> {
        let channel = self.store.channel(site);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.clone(), to);
        // Answered once the server has subscribed: every later publish reaches `to`.
        self.subscriber.subscribe(channel).await.map_err(backend)
    }

    async fn unsubscribe(&self, site: &SiteId) -> Result<(), StoreError> {
        let channel = self.store.channel(site);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&channel);
        self.subscriber.unsubscribe(channel).await.map_err(backend)
    }

    async fn replay(
        &self,
        site: &SiteId,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<Broadcast>>, StoreError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let flat: Vec<String> = self
            .store
            .eval(
                &self.store.scripts.replay,
                vec![self.store.site_key(site, "log")],
                vec![from.to_string(), to.to_string()],
            )
            .await?;
        let mut entries = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [seq, text] = pair else {
                return Err(StoreError::Corrupt("the log's range is uneven".to_owned()));
            };
            let seq = seq
                .parse::<u64>()
                .map_err(|_| StoreError::Corrupt(format!("a log entry is numbered {seq:?}")))?;
            entries.push(Broadcast {
                seq,
                text: Arc::from(text.as_str()),
            });
        }
        let whole = entries.len() as u64 == to - from + 1
            && entries.iter().zip(from..).all(|(e, n)| e.seq == n);
        Ok(whole.then_some(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_messages_parse_back() {
        let b = parse_published("12 {\"type\":\"X\",\"seq\":12}").expect("parses");
        assert_eq!(b.seq, 12);
        assert_eq!(&*b.text, "{\"type\":\"X\",\"seq\":12}");
        assert!(parse_published("x {}").is_none());
        assert!(parse_published("12").is_none());
    }
}
