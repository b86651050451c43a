//! The service's side of visit history: writing closed visits and folding them into rollups,
//! erasing a visitor's history, purging by retention. See [`crate::history`] for the model
//! and the store contract.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::join_all;

use crate::clock::Timestamp;
use crate::history::{
    Analytics, CompanySummary, Fold, HistoryStore, PutVisit, Rollup, RollupKey, RollupQuery,
    RollupScope, RollupSelect, Visit, VisitCursor, VisitFilter, VisitQuery, Window, analytics,
    company_summaries,
};
use crate::site::SiteId;
use crate::store::{StoreError, Versioned};

use super::{ServiceError, Tippen};

/// Visit numbers count at most this many earlier visits of a visitor (a crawler returning
/// every minute stays cheap to number).
const MAX_COUNTED_VISITS: usize = 999;

/// How many rollups a service remembers (dropped whole when full).
const ROLLUP_CACHE: usize = 512;

/// The rollups a service last read or wrote, with their versions: a fold starts from the
/// remembered rollup instead of reading it (the site's hour and a company's day are folded
/// into again and again), saving a store round trip on the close path. The write is
/// conditional on the remembered version, so when another writer (another replica, another
/// Lambda instance) moved it, the write reports a conflict, the entry is forgotten and the
/// retry reads the store.
#[derive(Debug, Default)]
pub(crate) struct RollupCache(Mutex<HashMap<(SiteId, RollupKey), Versioned<Rollup>>>);

impl RollupCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<(SiteId, RollupKey), Versioned<Rollup>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, site: &SiteId, key: &RollupKey) -> Option<Versioned<Rollup>> {
        self.lock().get(&(site.clone(), key.clone())).cloned()
    }

    fn remember(&self, site: &SiteId, rollup: Versioned<Rollup>) {
        let mut cache = self.lock();
        if cache.len() >= ROLLUP_CACHE {
            cache.clear();
        }
        cache.insert((site.clone(), rollup.value.key.clone()), rollup);
    }

    fn forget(&self, site: &SiteId, key: &RollupKey) {
        self.lock().remove(&(site.clone(), key.clone()));
    }

    fn forget_site(&self, site: &SiteId) {
        self.lock().retain(|(s, _), _| s != site);
    }
}

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
                .count_visits(
                    site,
                    &visit.visitor_id,
                    visit.started_at,
                    MAX_COUNTED_VISITS,
                )
                .await?;
            visit.visit_number = earlier as u32 + 1;
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

    /// Folds `visit` into (or out of) each of its rollups at once, each a conditional write
    /// retried on a conflict.
    async fn fold_visit(
        &self,
        history: &dyn HistoryStore,
        site: &SiteId,
        visit: &Visit,
        how: Fold,
    ) -> Result<(), ServiceError> {
        let folds = RollupKey::of_visit(visit)
            .into_iter()
            .map(|key| self.fold_into(history, site, key, visit, how));
        join_all(folds).await.into_iter().collect()
    }

    /// Folds `visit` into the rollup `key`: from the remembered rollup when there is one,
    /// re-read after a conflict.
    async fn fold_into(
        &self,
        history: &dyn HistoryStore,
        site: &SiteId,
        key: RollupKey,
        visit: &Visit,
        how: Fold,
    ) -> Result<(), ServiceError> {
        let cache = &self.rollup_cache;
        let mut known = cache.get(site, &key);
        for _ in 0..self.config().limits.max_write_attempts {
            let current = match known.take() {
                Some(known) => Some(known),
                None => history.rollup(site, &key).await?,
            };
            let version = current.as_ref().map(|v| v.version);
            let mut rollup = current
                .map(|v| v.value)
                .unwrap_or_else(|| Rollup::new(key.clone()));
            rollup.fold(visit, how);
            match history.save_rollup(site, &rollup, version).await {
                Ok(version) => {
                    cache.remember(
                        site,
                        Versioned {
                            version,
                            value: rollup,
                        },
                    );
                    return Ok(());
                }
                Err(StoreError::Conflict) => cache.forget(site, &key),
                Err(e) => {
                    cache.forget(site, &key);
                    return Err(e.into());
                }
            }
        }
        Err(ServiceError::Contention(format!("rollup {key:?}")))
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

    /// Purges every site's history past its retention
    /// ([`Site::history_retention`](crate::Site::history_retention), default 90 days); how
    /// many visits went. Hosts call it periodically (the axum host: hourly). Without a history
    /// store it does nothing.
    pub async fn purge_expired_history(&self) -> Result<u64, ServiceError> {
        if self.history.is_none() {
            return Ok(0);
        }
        let mut purged = 0;
        for site in self.store().sites().await? {
            purged += self
                .purge_history(&site.id, site.history_retention())
                .await?;
        }
        Ok(purged)
    }

    /// Deletes the site's visits (and rollups) older than `retention` before now; how many
    /// visits went.
    pub async fn purge_history(
        &self,
        site: &SiteId,
        retention: std::time::Duration,
    ) -> Result<u64, ServiceError> {
        let history = self.history_store()?;
        let before = self.now().minus(retention);
        let purged = history.purge(site, before).await;
        // Some remembered rollups are gone (or, after an error, may be).
        self.rollup_cache.forget_site(site);
        let purged = purged?;
        if purged > 0 {
            tracing::info!(site = %site, purged, "history purged by retention");
        }
        Ok(purged)
    }
}

/// A page of visits and the cursor of the next (`None`: this was the last page).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitPage {
    /// The visits, newest first.
    pub visits: Vec<Visit>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// A company's summary over a window and its visits as a timeline.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyDetail {
    /// The summary over the window.
    pub summary: Option<CompanySummary>,
    /// Its visits, newest first (one page).
    pub visits: Vec<Visit>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

impl Tippen {
    /// One page of the site's visits matching `query` (newest first), with the next page's
    /// cursor.
    pub async fn history_visits(
        &self,
        site: &SiteId,
        query: &VisitQuery,
    ) -> Result<VisitPage, ServiceError> {
        let history = self.history_store()?;
        let mut ask = query.clone();
        ask.limit = query.limit.saturating_add(1);
        let mut visits = history.visits(site, &ask).await?;
        let more = visits.len() > query.limit;
        visits.truncate(query.limit);
        let next_cursor = more
            .then(|| visits.last().map(|v| VisitCursor::after(v).encode()))
            .flatten();
        Ok(VisitPage {
            visits,
            next_cursor,
        })
    }

    /// One visit of the site.
    pub async fn history_visit(
        &self,
        site: &SiteId,
        visit_id: &str,
    ) -> Result<Option<Visit>, ServiceError> {
        Ok(self.history_store()?.visit(site, visit_id).await?)
    }

    /// Per-company summaries over `window` (ending now), most visits first: the first
    /// `limit` (the store reads only the rollups of the companies that rank among them,
    /// [`HistoryStore::top_company_rollups`]).
    pub async fn history_companies(
        &self,
        site: &SiteId,
        window: &Window,
        limit: usize,
    ) -> Result<Vec<CompanySummary>, ServiceError> {
        let now = self.now();
        let (from, _) = window.range(now);
        let scope = RollupScope::Company(String::new());
        let rollups = self
            .history_store()?
            .top_company_rollups(
                site,
                &RollupQuery {
                    select: RollupSelect::Companies,
                    from: scope.bucket_of(from),
                    to: now.plus(std::time::Duration::from_millis(1)),
                },
                limit,
            )
            .await?;
        let mut companies = company_summaries(&rollups);
        companies.truncate(limit);
        Ok(companies)
    }

    async fn company_rollups(
        &self,
        site: &SiteId,
        window: &Window,
        select: RollupSelect,
    ) -> Result<Vec<Rollup>, ServiceError> {
        let now = self.now();
        let (from, _) = window.range(now);
        let scope = RollupScope::Company(String::new());
        Ok(self
            .history_store()?
            .rollups(
                site,
                &RollupQuery {
                    select,
                    from: scope.bucket_of(from),
                    to: now.plus(std::time::Duration::from_millis(1)),
                },
            )
            .await?)
    }

    /// One company (by its key: domain, else name): its summary over `window` and a page of
    /// its visits (all time within retention), newest first. `None` when the site has
    /// neither.
    pub async fn history_company(
        &self,
        site: &SiteId,
        key: &str,
        window: &Window,
        after: Option<VisitCursor>,
        limit: usize,
    ) -> Result<Option<CompanyDetail>, ServiceError> {
        let key = key.to_ascii_lowercase();
        let rollups = self
            .company_rollups(site, window, RollupSelect::Company(key.clone()))
            .await?;
        let summary = company_summaries(&rollups).into_iter().next();
        let page = self
            .history_visits(
                site,
                &VisitQuery {
                    from: Timestamp::EPOCH,
                    to: Timestamp::from_millis(i64::MAX),
                    filter: VisitFilter {
                        company: Some(key),
                        ..VisitFilter::default()
                    },
                    after,
                    limit,
                },
            )
            .await?;
        if summary.is_none() && page.visits.is_empty() {
            return Ok(None);
        }
        Ok(Some(CompanyDetail {
            summary,
            visits: page.visits,
            next_cursor: page.next_cursor,
        }))
    }

    /// Analytics over `window` (ending now) from the site's hourly rollups.
    pub async fn history_analytics(
        &self,
        site: &SiteId,
        window: &Window,
    ) -> Result<Analytics, ServiceError> {
        let now = self.now();
        let (from, _) = window.range(now);
        let rollups = self
            .history_store()?
            .rollups(
                site,
                &RollupQuery {
                    select: RollupSelect::Site,
                    from: RollupScope::Site.bucket_of(from),
                    to: now.plus(std::time::Duration::from_millis(1)),
                },
            )
            .await?;
        Ok(analytics(window, now, &rollups))
    }
}
