//! [`HistoryStore`]: where closed visits and rollups are kept. See the
//! [module docs](super) for the contract.

use async_trait::async_trait;

use super::rollup::{Rollup, RollupKey, RollupQuery};
use super::visit::Visit;
use crate::clock::Timestamp;
use crate::site::SiteId;
use crate::store::{MaybeSendSync, StoreError, Version, Versioned};

/// Which visits a query wants, beyond its time range. Every set field must match
/// ([`matches`](Self::matches) is the definition a store follows, and may simply call).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VisitFilter {
    /// The company's key ([`VisitCompany::key`](super::VisitCompany::key): its domain, or its
    /// name without one), compared case-insensitively.
    pub company: Option<String>,
    /// A page path the visit viewed (exact).
    pub page: Option<String>,
    /// The country code (case-insensitive).
    pub country: Option<String>,
    /// The visitor.
    pub visitor: Option<String>,
}

impl VisitFilter {
    /// Whether `visit` passes every set field.
    pub fn matches(&self, visit: &Visit) -> bool {
        self.company.as_deref().is_none_or(|c| {
            visit
                .company
                .as_ref()
                .is_some_and(|vc| vc.key().eq_ignore_ascii_case(c))
        }) && self
            .page
            .as_deref()
            .is_none_or(|p| visit.pages.iter().any(|page| *page.path == *p))
            && self.country.as_deref().is_none_or(|c| {
                visit
                    .place
                    .country
                    .as_deref()
                    .is_some_and(|vc| vc.eq_ignore_ascii_case(c))
            })
            && self
                .visitor
                .as_deref()
                .is_none_or(|v| visit.visitor_id == v)
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == VisitFilter::default()
    }
}

/// Where a page of visits ended: the last visit's start and id. Visits come newest first,
/// ordered by `(started_at, visit_id)` descending; the next page starts strictly after this.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VisitCursor {
    /// The last visit's start.
    pub started_at: Timestamp,
    /// The last visit's id.
    pub visit_id: String,
}

impl VisitCursor {
    /// The cursor after `visit`.
    pub fn after(visit: &Visit) -> VisitCursor {
        VisitCursor {
            started_at: visit.started_at,
            visit_id: visit.visit_id.clone(),
        }
    }

    /// Whether `visit` comes after this cursor (in newest-first order).
    pub fn precedes(&self, visit: &Visit) -> bool {
        (visit.started_at, visit.visit_id.as_str()) < (self.started_at, self.visit_id.as_str())
    }

    /// The opaque form the API hands out (`<ms>.<visit id>`).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.started_at.as_millis(), self.visit_id)
    }

    /// Reads [`encode`](Self::encode)'s form.
    pub fn decode(s: &str) -> Option<VisitCursor> {
        let (ms, id) = s.split_once('.')?;
        let ms: i64 = ms.parse().ok()?;
        (!id.is_empty() && id.len() <= 64).then(|| VisitCursor {
            started_at: Timestamp::from_millis(ms),
            visit_id: id.to_owned(),
        })
    }
}

/// A query of visits: `from <= started_at < to`, passing `filter`, after `after`, newest
/// first, at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitQuery {
    /// Earliest start included.
    pub from: Timestamp,
    /// Starts before this.
    pub to: Timestamp,
    /// What else must match.
    pub filter: VisitFilter,
    /// Start after this cursor (the previous page's last visit).
    pub after: Option<VisitCursor>,
    /// At most this many visits.
    pub limit: usize,
}

impl VisitQuery {
    /// Whether `visit` is in the query's range, passes its filter and comes after its cursor
    /// (everything but the limit).
    pub fn matches(&self, visit: &Visit) -> bool {
        self.from <= visit.started_at
            && visit.started_at < self.to
            && self.after.as_ref().is_none_or(|c| c.precedes(visit))
            && self.filter.matches(visit)
    }
}

/// What [`HistoryStore::put_visit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutVisit {
    /// The visit was new: stored. (The core folds it into the rollups.)
    Inserted,
    /// A visit with this id was there: replaced by this one. (Not folded again.)
    Replaced,
}

/// Storage of closed visits and rollups. See the [module docs](super) for the contract; the
/// core holds the logic (what a visit is, how rollups count), a store only keeps records.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait HistoryStore: MaybeSendSync {
    /// Stores `visit` under `(site, visit.visit_id)`, replacing one with the same id;
    /// whether it was new.
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError>;

    /// One visit.
    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError>;

    /// The visits [`VisitQuery::matches`] accepts, newest first (by `(started_at, visit_id)`
    /// descending), at most `query.limit`.
    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError>;

    /// How many visits of `visitor_id` on `site` started before `before`, counting at most
    /// `max` (the core numbers a closing visit by it). The default reads them with
    /// [`visits`](Self::visits); a store that can count without reading the visits should.
    async fn count_visits(
        &self,
        site: &SiteId,
        visitor_id: &str,
        before: Timestamp,
        max: usize,
    ) -> Result<usize, StoreError> {
        let earlier = self
            .visits(
                site,
                &VisitQuery {
                    from: Timestamp::EPOCH,
                    to: before,
                    filter: VisitFilter {
                        visitor: Some(visitor_id.to_owned()),
                        ..VisitFilter::default()
                    },
                    after: None,
                    limit: max,
                },
            )
            .await?;
        Ok(earlier.len())
    }

    /// Deletes every visit of `visitor_id` on `site` and returns them (so the core can take
    /// them out of the rollups).
    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError>;

    /// One rollup with its version.
    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError>;

    /// Writes `rollup` (under its [`key`](Rollup::key)) if the stored version is `expected`
    /// (`None`: only when there is none); the new version, or [`StoreError::Conflict`] and
    /// nothing written.
    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError>;

    /// The rollups [`RollupQuery::contains`] accepts, in any order.
    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError>;

    /// Some of the company rollups of `query` (whose select is
    /// [`RollupSelect::Companies`](super::RollupSelect::Companies)), in any order: every
    /// rollup in range of each company it includes, and at least the companies whose visits
    /// over the range ([`Rollup::visits`], summed) rank among the first `top` (with all those
    /// tied with the last of them). So the first `top` of the company summaries are the same
    /// as from all of [`rollups`](Self::rollups). The default is all of them; a store that
    /// can rank companies by an indexed count should, and read only those companies'.
    async fn top_company_rollups(
        &self,
        site: &SiteId,
        query: &RollupQuery,
        top: usize,
    ) -> Result<Vec<Rollup>, StoreError> {
        let _ = top;
        self.rollups(site, query).await
    }

    /// Deletes the visits started before `before` and the rollups whose bucket starts before
    /// it; how many visits went.
    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError>;
}
