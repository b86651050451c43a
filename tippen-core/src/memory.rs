//! [`MemoryStore`]: the in-process [`Store`], for tests, benchmarks and single-process hosts
//! that need no persistence.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use crate::presence::VisitorRecord;
use crate::records::RecordTable;
use crate::site::{KeyHash, Site, SiteId};
use crate::store::{SpentTickets, Store, StoreError, Version, Versioned};
use crate::support::UserRecord;

/// A [`Store`] in memory: hash maps, visitors and users in per-site [`RecordTable`]s.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sites: HashMap<SiteId, Site>,
    keys: HashMap<KeyHash, SiteId>,
    visitors: HashMap<SiteId, SiteVisitors>,
    lookups: HashMap<IpAddr, CachedLookup>,
    stats: HashMap<SiteId, EnrichmentStats>,
    users: HashMap<SiteId, RecordTable<UserRecord>>,
    /// Spent dashboard socket tickets and until when each is kept.
    tickets: SpentTickets,
    /// Alert logs.
    alert_logs: crate::store::AlertLogs,
    audit_logs: crate::audit::AuditLogs,
}

#[derive(Debug, Default)]
struct SiteVisitors {
    records: RecordTable<VisitorRecord>,
    sequence: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the process; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Approximate heap bytes held for one site's visitors (for the memory benchmark).
    pub fn approximate_bytes(&self, site: &SiteId) -> usize {
        let inner = self.lock();
        let Some(s) = inner.visitors.get(site) else {
            return 0;
        };
        s.records
            .iter()
            .map(|(k, v)| {
                let r = &v.value;
                let tabs: usize = r.tabs.capacity() * std::mem::size_of::<crate::presence::Tab>()
                    + r.tabs
                        .iter()
                        .map(|t| t.tab_id.capacity() + t.url.len())
                        .sum::<usize>();
                // key (shared by the map and the index) + record + tabs + index entry + hash
                // map overhead (~1 word)
                k.len()
                    + 2 * std::mem::size_of::<usize>()
                    + std::mem::size_of_val(v)
                    + r.visitor_id.capacity()
                    + r.website.len()
                    + r.referrer.as_deref().map_or(0, str::len)
                    + r.user_agent.as_deref().map_or(0, str::len)
                    + r.client_timestamp.as_deref().map_or(0, str::len)
                    + r.company.name.capacity()
                    + r.company.location.capacity()
                    + tabs
                    + std::mem::size_of::<(Timestamp, std::sync::Arc<str>)>()
                    + 2 * std::mem::size_of::<usize>()
            })
            .sum()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Store for MemoryStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(old) = inner.sites.remove(&site.id) {
            for h in old.key_hashes() {
                inner.keys.remove(&h);
            }
        }
        for h in site.key_hashes() {
            inner.keys.insert(h, site.id.clone());
        }
        inner.sites.insert(site.id.clone(), site.clone());
        Ok(())
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        Ok(self.lock().sites.values().cloned().collect())
    }

    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .keys
            .get(key)
            .and_then(|id| inner.sites.get(id))
            .cloned())
    }

    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.lock().sites.get(id).cloned())
    }

    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().tickets.spend(site, token, now, until))
    }

    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &crate::alerts::AlertLogEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        self.lock().alert_logs.push(site, entry.clone(), keep);
        Ok(())
    }

    async fn alert_log(
        &self,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<crate::alerts::AlertLogEntry>, StoreError> {
        Ok(self.lock().alert_logs.latest(site, limit))
    }

    async fn log_audit(
        &self,
        entry: &crate::audit::AuditEntry,
        keep_after: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock().audit_logs.push(entry.clone(), keep_after);
        Ok(())
    }

    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::audit::AuditEntry>, StoreError> {
        Ok(self.lock().audit_logs.latest(site, since, limit))
    }

    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError> {
        Ok(self
            .lock()
            .visitors
            .get(site)
            .and_then(|s| s.records.get(visitor_id))
            .cloned())
    }

    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let mut inner = self.lock();
        let s = inner.visitors.entry(site.clone()).or_default();
        s.records.save(record.clone(), expected)
    }

    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        match self.lock().visitors.get_mut(site) {
            Some(s) => s.records.remove(visitor_id, expected),
            None => Err(StoreError::Conflict),
        }
    }

    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError> {
        Ok(self
            .lock()
            .visitors
            .get(site)
            .map(|s| s.records.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .visitors
            .get(site)
            .map_or(0, |s| s.records.len()))
    }

    async fn due_visitors(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<VisitorRecord>>, StoreError> {
        Ok(self
            .lock()
            .visitors
            .get(site)
            .map(|s| s.records.due(now, limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .lock()
            .visitors
            .get(site)
            .and_then(|s| s.records.next_deadline()))
    }

    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let s = inner.visitors.entry(site.clone()).or_default();
        s.sequence += by;
        Ok(s.sequence)
    }

    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError> {
        Ok(self.lock().visitors.get(site).map_or(0, |s| s.sequence))
    }

    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError> {
        Ok(self.lock().lookups.get(&ip).cloned())
    }

    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError> {
        self.lock().lookups.insert(ip, entry.clone());
        Ok(())
    }

    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError> {
        Ok(self.lock().stats.get(site).cloned().unwrap_or_default())
    }

    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut inner = self.lock();
        let stats = inner.stats.entry(site.clone()).or_default();
        for event in events {
            stats.record(*event);
        }
        Ok(())
    }

    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        Ok(self
            .lock()
            .users
            .get(site)
            .and_then(|s| s.get(user_id))
            .cloned())
    }

    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let mut inner = self.lock();
        let s = inner.users.entry(site.clone()).or_default();
        s.save(record.clone(), expected)
    }

    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        match self.lock().users.get_mut(site) {
            Some(s) => s.remove(user_id, expected),
            None => Err(StoreError::Conflict),
        }
    }

    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self
            .lock()
            .users
            .get(site)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self.lock().users.get(site).map_or(0, |s| s.len()))
    }

    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError> {
        Ok(self
            .lock()
            .users
            .get(site)
            .map(|s| s.due(now, limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().users.get(site).and_then(|s| s.next_deadline()))
    }
}
