//! [`MemoryHistory`]: the in-process [`HistoryStore`], for tests and hosts without
//! persistence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::rollup::{Rollup, RollupKey, RollupQuery};
use super::store::{HistoryStore, PutVisit, VisitQuery};
use super::visit::Visit;
use crate::clock::Timestamp;
use crate::site::SiteId;
use crate::store::{StoreError, Version, Versioned};

/// A [`HistoryStore`] in memory: per site, visits ordered by start and rollups by key.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    inner: Mutex<HashMap<SiteId, SiteHistory>>,
}

#[derive(Debug, Default)]
struct SiteHistory {
    /// By `(started_at, visit_id)`.
    visits: BTreeMap<(Timestamp, String), Visit>,
    /// Visit id → its start.
    starts: HashMap<String, Timestamp>,
    rollups: BTreeMap<RollupKey, Versioned<Rollup>>,
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SiteId, SiteHistory>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl HistoryStore for MemoryHistory {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        let mut inner = self.lock();
        let h = inner.entry(site.clone()).or_default();
        let old = h.starts.insert(visit.visit_id.clone(), visit.started_at);
        if let Some(start) = old {
            h.visits.remove(&(start, visit.visit_id.clone()));
        }
        h.visits
            .insert((visit.started_at, visit.visit_id.clone()), visit.clone());
        Ok(if old.is_some() {
            PutVisit::Replaced
        } else {
            PutVisit::Inserted
        })
    }

    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError> {
        let inner = self.lock();
        Ok(inner.get(site).and_then(|h| {
            let start = h.starts.get(visit_id)?;
            h.visits.get(&(*start, visit_id.to_owned())).cloned()
        }))
    }

    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        let inner = self.lock();
        let Some(h) = inner.get(site) else {
            return Ok(Vec::new());
        };
        Ok(h.visits
            .values()
            .rev()
            .filter(|v| query.matches(v))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError> {
        let mut inner = self.lock();
        let Some(h) = inner.get_mut(site) else {
            return Ok(Vec::new());
        };
        let keys: Vec<_> = h
            .visits
            .iter()
            .filter(|(_, v)| v.visitor_id == visitor_id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut erased = Vec::with_capacity(keys.len());
        for key in keys {
            h.starts.remove(&key.1);
            erased.extend(h.visits.remove(&key));
        }
        Ok(erased)
    }

    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        Ok(self
            .lock()
            .get(site)
            .and_then(|h| h.rollups.get(key).cloned()))
    }

    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let mut inner = self.lock();
        let h = inner.entry(site.clone()).or_default();
        let current = h.rollups.get(&rollup.key).map(|v| v.version);
        if current != expected {
            return Err(StoreError::Conflict);
        }
        let version = Version(expected.map_or(1, |v| v.0 + 1));
        h.rollups.insert(
            rollup.key.clone(),
            Versioned {
                version,
                value: rollup.clone(),
            },
        );
        Ok(version)
    }

    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .get(site)
            .map(|h| {
                h.rollups
                    .iter()
                    .filter(|(k, _)| query.contains(k))
                    .map(|(_, v)| v.value.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let Some(h) = inner.get_mut(site) else {
            return Ok(0);
        };
        let old: Vec<_> = h
            .visits
            .range(..(before, String::new()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &old {
            h.visits.remove(key);
            h.starts.remove(&key.1);
        }
        h.rollups.retain(|k, _| k.bucket >= before);
        Ok(old.len() as u64)
    }
}
