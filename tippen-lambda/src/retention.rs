//! The retention purge of visit history: the scheduled function calls
//! [`LambdaHost::purge_history_if_due`] on each run; at most once an hour per instance it
//! deletes every site's visits and rollups older than the site's retention
//! (`historyRetentionDays` in `TIPPEN_SITES`, default 90;
//! [`Tippen::purge_expired_history`](tippen_core::Tippen::purge_expired_history)). DynamoDB's
//! TTL removes the same items eventually at no write cost; the purge makes the bound exact.

use std::time::{Duration, Instant};

use crate::host::{HostError, LambdaHost};

/// How often one instance purges (the scheduled function runs every minute).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

impl LambdaHost {
    /// Purges every site's history past its retention when history is on and this instance
    /// has not purged within [`PURGE_INTERVAL`]; how many visits went (`None`: not due, or
    /// history off). A failed pass is tried again on the next call.
    pub async fn purge_history_if_due(&self) -> Result<Option<u64>, HostError> {
        if self.tippen().history().is_none() {
            return Ok(None);
        }
        {
            let last = self
                .history_purged
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < PURGE_INTERVAL) {
                return Ok(None);
            }
        }
        let purged = self.tippen().purge_expired_history().await?;
        *self
            .history_purged
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(Some(purged))
    }
}
