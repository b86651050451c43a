//! The service's side of visit history: writing closed visits and folding them into rollups,
//! erasing a visitor's history, purging by retention. See [`crate::history`] for the model
//! and the store contract.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::history::{
    Fold, HistoryStore, PutVisit, Rollup, RollupKey, Visit, VisitFilter, VisitQuery,
};
use crate::site::SiteId;
use crate::store::StoreError;

use super::{ServiceError, Tippen};

/// Visit numbers count at most this many earlier visits of a visitor (a crawler returning
/// every minute stays cheap to number).
const MAX_COUNTED_VISITS: usize = 999;

impl Tippen {
    /// The same service keeping visit history in `history`: a visit closed by presence is
    /// written there (before the live record is removed), `DELETE /api/visitors/{id}` erases
    /// the visitor's history too, and the history API answers (without a store it answers
    /// 501).
    pub fn with_history(mut self, history: Arc<dyn HistoryStore>) -> Self {
        self.history = Some(history);
        self
    }

    /// The history store, when one is configured.
    pub fn history(&self) -> Option<&Arc<dyn HistoryStore>> {
        self.history.as_ref()
    }

    /// The history store, or [`ServiceError::HistoryDisabled`].
    pub(crate) fn history_store(&self) -> Result<&Arc<dyn HistoryStore>, ServiceError> {
        self.history.as_ref().ok_or(ServiceError::HistoryDisabled)
    }

    /// Writes closed visits: numbers each among its visitor's earlier visits, stores it (a
    /// replacing put by visit id) and, when it was new, folds it into its rollups. Without a
    /// history store the visits are dropped.
    pub(crate) async fn record_visits(
        &self,
        site: &SiteId,
        visits: Vec<Visit>,
    ) -> Result<(), ServiceError> {
        let Some(history) = self.history.as_deref() else {
            return Ok(());
        };
        for mut visit in visits {
            let earlier = history
                .visits(
                    site,
                    &VisitQuery {
                        from: Timestamp::EPOCH,
                        to: visit.started_at,
                        filter: VisitFilter {
                            visitor: Some(visit.visitor_id.clone()),
                            ..VisitFilter::default()
                        },
                        after: None,
                        limit: MAX_COUNTED_VISITS,
                    },
                )
                .await?;
            visit.visit_number = earlier.len() as u32 + 1;
            let put = history.put_visit(site, &visit).await?;
            tracing::debug!(
                site = %site,
                visit = %visit.visit_id,
                pages = visit.pages.len(),
                duration_ms = visit.duration_ms,
                new = put == PutVisit::Inserted,
                "visit closed"
            );
            if put == PutVisit::Inserted {
                self.fold_visit(history, site, &visit, Fold::Add).await?;
            }
        }
        Ok(())
    }

    /// Folds `visit` into (or out of) each of its rollups, each a conditional write retried
    /// on a conflict.
    async fn fold_visit(
        &self,
        history: &dyn HistoryStore,
        site: &SiteId,
        visit: &Visit,
        how: Fold,
    ) -> Result<(), ServiceError> {
        'keys: for key in RollupKey::of_visit(visit) {
            for _ in 0..self.config().limits.max_write_attempts {
                let current = history.rollup(site, &key).await?;
                let version = current.as_ref().map(|v| v.version);
                let mut rollup = current
                    .map(|v| v.value)
                    .unwrap_or_else(|| Rollup::new(key.clone()));
                rollup.fold(visit, how);
                match history.save_rollup(site, &rollup, version).await {
                    Ok(_) => continue 'keys,
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            return Err(ServiceError::Contention(format!("rollup {key:?}")));
        }
        Ok(())
    }

    /// Erases every stored visit of `visitor_id` and takes them out of the rollups; how many
    /// there were (0 without a history store).
    pub(crate) async fn erase_history(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<usize, ServiceError> {
        let Some(history) = self.history.as_deref() else {
            return Ok(0);
        };
        let erased = history.erase_visitor(site, visitor_id).await?;
        for visit in &erased {
            self.fold_visit(history, site, visit, Fold::Remove).await?;
        }
        if !erased.is_empty() {
            tracing::info!(site = %site, visits = erased.len(), "visitor history erased");
        }
        Ok(erased.len())
    }

    /// Deletes the site's visits (and rollups) older than `retention` before now; how many
    /// visits went. Hosts call it periodically (the axum host: hourly).
    pub async fn purge_history(
        &self,
        site: &SiteId,
        retention: std::time::Duration,
    ) -> Result<u64, ServiceError> {
        let history = self.history_store()?;
        let before = self.now().minus(retention);
        let purged = history.purge(site, before).await?;
        if purged > 0 {
            tracing::info!(site = %site, purged, "history purged by retention");
        }
        Ok(purged)
    }
}
