//! [`Bus`]: dashboard messages carried between replicas that share one store.
//!
//! One replica's write numbers its dashboard messages and the store publishes them, in the same
//! atomic step ([`Store::advance_sequence_publishing`](tippen_core::Store::advance_sequence_publishing)),
//! so numbering order is publishing order. A host given a bus
//! ([`TippenHost::with_bus`](crate::TippenHost::with_bus)) sends no broadcast to its own
//! dashboards directly: every dashboard, wherever the write happened, hears the site's
//! messages through the bus, one path, in `seq` order.
//!
//! While a replica holds at least one dashboard socket of a site it follows the site
//! ([`Bus::subscribe`]); a forwarding task hands each message to the site's local dashboards
//! once, in order. When a number is skipped (a message dropped on the way, a reconnection) it
//! replays the missing ones from the store's log ([`Bus::replay`]); when the log no longer
//! reaches back, it sends the site's dashboards a fresh `INITIAL_VISITORS`, which resets their
//! baseline. The last dashboard socket closing unsubscribes ([`Bus::unsubscribe`]).

use async_trait::async_trait;
use tippen_core::{Broadcast, SiteId, StoreError};
use tokio::sync::mpsc;

/// Carries a site's numbered dashboard messages from every replica to the replicas holding
/// that site's dashboards. `tippen_redis::RedisBus` is the implementation on Redis.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Starts following `site`: once this returns, every message the store publishes for the
    /// site from then on is sent to `to`, in publishing order. A message that finds `to` full
    /// may be dropped (the host sees the gap in the numbers and replays it). Following a site
    /// twice replaces the first receiver.
    async fn subscribe(&self, site: &SiteId, to: mpsc::Sender<Broadcast>)
    -> Result<(), StoreError>;

    /// Stops following `site`.
    async fn unsubscribe(&self, site: &SiteId) -> Result<(), StoreError>;

    /// The site's messages numbered `from..=to`, in order, from the store's bounded log;
    /// `None` when the log no longer holds all of them.
    async fn replay(
        &self,
        site: &SiteId,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<Broadcast>>, StoreError>;
}
