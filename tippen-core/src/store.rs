//! Persistence: the [`Store`] trait every host implements on its storage.
//!
//! # Contract
//!
//! The core is the only writer of records and follows optimistic concurrency, so one contract
//! serves a stateless host with concurrent writers (Lambda + DynamoDB) and a single-owner host
//! (an axum actor, a Durable Object) alike:
//!
//! - Every visitor record has a [`Version`]. [`Store::save_visitor`] writes only when the stored
//!   version still equals `expected` (`None`: only when no record exists) and returns the new
//!   version; otherwise it fails with [`StoreError::Conflict`] and writes nothing.
//!   [`Store::remove_visitor`] is conditional the same way. The core re-reads and retries on a
//!   conflict, so no update is ever lost. A single-owner host never sees a conflict and pays one
//!   comparison for the check.
//! - [`Store::due_visitors`] returns records whose stored `deadline` is `<= now`, earliest
//!   first, at most `limit`, in O(k · log n) for k results (an index on the deadline, not a scan);
//!   [`Store::next_deadline`] is the smallest stored deadline, O(log n).
//! - [`Store::advance_sequence`] atomically adds to the site's message counter and returns the
//!   new value; two concurrent callers never get overlapping numbers. A store shared by
//!   several processes may also carry the numbered messages to them
//!   ([`Store::publishes_broadcasts`], [`Store::advance_sequence_publishing`]: numbering and
//!   publishing in one atomic step).
//! - Sites are found by the hash of either of their keys; an unknown hash is `Ok(None)`, never
//!   a new site.
//! - A dashboard socket ticket is spent once ([`Store::spend_ticket`]: atomic, like a
//!   conditional write).
//! - Sites are isolated: nothing keyed by one [`SiteId`] is visible under another.
//! - The enrichment cache ([`Store::cached_lookup`], [`Store::put_cached_lookup`]) is the one
//!   thing shared by every site: it is keyed by IP address only, so one site's lookup saves
//!   another's credit. A put replaces the address's entry. A store may return an entry that
//!   is no longer fresh (the caller checks [`CachedLookup::is_fresh`]) or drop it once
//!   expired. It holds no visitor data (no visitor id, no site); persistent stores keep it
//!   across restarts.
//! - Enrichment accounting is per site: [`Store::record_enrichment`] adds a batch of
//!   [`EnrichmentEvent`]s to the site's [`EnrichmentStats`] atomically (two concurrent
//!   batches both count, no lost update); [`Store::enrichment_stats`] reads them (all zero for
//!   a site with none).
//!
//! - Support users ([`UserRecord`], keyed by site and user id) follow the visitors' contract:
//!   [`Store::save_user`] and [`Store::remove_user`] are conditional on the [`Version`] the
//!   same way, [`Store::due_users`] returns records whose stored `deadline` is `<= now`,
//!   earliest first, at most `limit` (an index, not a scan) and
//!   [`Store::next_user_deadline`] is the smallest. A user record carries its own bounded
//!   list of raw events, so storing it is one write; no other table is needed.
//!
//! `tippen_core::testkit` (feature `testkit`) checks all of this against any implementation.

use async_trait::async_trait;
use thiserror::Error;

use std::net::IpAddr;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use crate::presence::VisitorRecord;
use crate::site::{KeyHash, Site, SiteId};
use crate::support::UserRecord;

/// A record's version for optimistic concurrency. Starts at 1 on insert, +1 per write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// A stored value with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The version the value was read at.
    pub version: Version,
    /// The value.
    pub value: T,
}

/// Why a store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write found another version (or no record / an existing record).
    #[error("the record changed since it was read")]
    Conflict,
    /// The backing storage failed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// `Send + Sync` natively; nothing on `wasm32`, where host storage handles are `!Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` natively; nothing on `wasm32`, where host storage handles are `!Send`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// Storage of sites, visitors and sequence numbers. See the [module docs](self) for the
/// contract.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Store: MaybeSendSync {
    /// Inserts or replaces a site (matched by id) and its key index entries.
    async fn put_site(&self, site: &Site) -> Result<(), StoreError>;

    /// Every site.
    async fn sites(&self) -> Result<Vec<Site>, StoreError>;

    /// The site having a key with this hash.
    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError>;

    /// The site with this id. The default looks through [`sites`](Self::sites); stores
    /// override it with a keyed read.
    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.sites().await?.into_iter().find(|s| &s.id == id))
    }

    /// Spends the single-use `token` of `site` (a dashboard socket ticket's nonce and tag, or
    /// an alert rule's cooldown for a company): `Ok(true)` the first time, `Ok(false)` on
    /// every later call while the `until` it was spent with is after `now`; once that has
    /// passed, the next call spends it again (with its own `until`). Atomic: of concurrent
    /// calls with one token, one gets `true`, also across processes sharing the store. Tokens
    /// of one site never spend another's.
    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Appends `entry` to the site's alert log. The store keeps at least the site's newest
    /// `keep` entries; it may drop older ones by count or, after 30 days, by age.
    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &crate::alerts::AlertLogEntry,
        keep: usize,
    ) -> Result<(), StoreError>;

    /// The site's alert log, newest first, at most `limit` entries.
    async fn alert_log(
        &self,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<crate::alerts::AlertLogEntry>, StoreError>;

    /// Appends `entry` to the audit log of its site ([`crate::audit`]) and drops that site's
    /// entries older than `keep_after` (a store may also drop them later, by a TTL, or keep
    /// at most [`AUDIT_KEEP_MAX`](crate::audit::AUDIT_KEEP_MAX) per site). Entries of one site
    /// never leave another's.
    async fn log_audit(
        &self,
        entry: &crate::audit::AuditEntry,
        keep_after: Timestamp,
    ) -> Result<(), StoreError>;

    /// The site's audit entries at or after `since`, newest first (by time), at most `limit`.
    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::audit::AuditEntry>, StoreError>;

    /// One visitor record.
    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError>;

    /// Writes `record` if the stored version is `expected`; returns the new version.
    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError>;

    /// Deletes the record if its stored version is `expected`.
    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError>;

    /// Whether [`touch_visitor`](Self::touch_visitor) is cheaper here than
    /// [`save_visitor`](Self::save_visitor): then the core compares a heartbeat's record with
    /// the one it read and, when only the volatile fields moved
    /// ([`VisitorRecord::only_touched_since`]), touches instead of saving. `false` by default.
    fn touches_visitors(&self) -> bool {
        false
    }

    /// Writes a heartbeat's `record`, whose change since the stored version `expected` is
    /// only in the fields [`VisitorRecord::only_touched_since`] ignores, if the stored version
    /// is still `expected`; returns the new version. Afterwards every read returns `record`
    /// (at the new version) and the deadline index holds its deadline, as after a save; a
    /// store may keep the moved fields beside the record instead of rewriting it. The default
    /// is [`save_visitor`](Self::save_visitor).
    async fn touch_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Version,
    ) -> Result<Version, StoreError> {
        self.save_visitor(site, record, Some(expected)).await
    }

    /// Every stored visitor record of the site (live or not yet swept).
    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError>;

    /// How many visitor records the site holds (what [`visitors`](Self::visitors) would
    /// return), for the quota on visitors per site; asked only when a new visitor would be
    /// created. The default counts [`visitors`](Self::visitors); stores override it with a
    /// cheaper count.
    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self.visitors(site).await?.len())
    }

    /// Records with `deadline <= now`, earliest first, at most `limit`.
    async fn due_visitors(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<VisitorRecord>>, StoreError>;

    /// The smallest stored deadline of the site.
    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError>;

    /// Adds `by` to the site's message counter and returns the new value.
    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError>;

    /// The site's message counter (0 before the first message).
    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError>;

    /// Whether the core should number a write's dashboard messages before the write
    /// ([`advance_sequence`](Self::advance_sequence) first) instead of after it: for stores of
    /// hosts that may be cut off at any moment (a Lambda invocation's timeout). Then a change
    /// is never stored without its numbers taken: cut off after the write (or between the two),
    /// the numbers whose messages never come are a gap, which dashboards detect (the next
    /// message's or `PONG`'s `seq`) and resync from, so they still learn of the change. The
    /// price: a conflicting write whose retry says less leaves a gap too. `false` by default.
    fn numbers_before_writes(&self) -> bool {
        false
    }

    /// Whether this store carries dashboard messages to other processes: then the core numbers
    /// broadcasts with [`advance_sequence_publishing`](Self::advance_sequence_publishing)
    /// instead of [`advance_sequence`](Self::advance_sequence). `false` by default.
    fn publishes_broadcasts(&self) -> bool {
        false
    }

    /// Numbers `unnumbered.len()` dashboard messages: adds that many to the site's message
    /// counter and returns the new value, like [`advance_sequence`](Self::advance_sequence).
    /// A store that carries messages to other processes (one whose
    /// [`publishes_broadcasts`](Self::publishes_broadcasts) is `true`) also logs and publishes
    /// each message in the same atomic step, so numbering order is publishing order: message
    /// `i` is numbered `new - len + 1 + i`, and its text is `unnumbered[i]` followed by its
    /// number and `}` ([`Sequenced::unnumbered_json`](crate::protocol::Sequenced::unnumbered_json)).
    /// The default only advances the counter.
    async fn advance_sequence_publishing(
        &self,
        site: &SiteId,
        unnumbered: &[String],
    ) -> Result<u64, StoreError> {
        self.advance_sequence(site, unnumbered.len() as u64).await
    }

    /// The enrichment cache's entry for `ip` (shared by every site), fresh or not.
    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError>;

    /// Stores (replaces) the enrichment cache's entry for `ip`.
    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError>;

    /// Claims the provider lookup of `ip` for this process for `hold`, so that processes
    /// sharing this store send one provider request per address between them (the
    /// single flight across replicas): `Ok(true)` when this process may send it, `Ok(false)`
    /// while another process holds an unexpired claim (it will put the result in the cache
    /// and [`release_lookup`](Self::release_lookup)). A store no other process shares needs
    /// no claim: the default is `Ok(true)`.
    async fn claim_lookup(&self, ip: IpAddr, hold: Duration) -> Result<bool, StoreError> {
        let _ = (ip, hold);
        Ok(true)
    }

    /// Ends this process's claim on the lookup of `ip` (its result is in the cache, or it
    /// failed for good), if it still holds it. The default does nothing.
    async fn release_lookup(&self, ip: IpAddr) -> Result<(), StoreError> {
        let _ = ip;
        Ok(())
    }

    /// The site's enrichment counters (all zero when nothing was recorded).
    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError>;

    /// Adds `events` to the site's enrichment counters, atomically.
    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError>;

    /// One support user record.
    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError>;

    /// Writes the user `record` if the stored version is `expected` (`None`: only when no
    /// record exists); returns the new version.
    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError>;

    /// Deletes the user record if its stored version is `expected`.
    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError>;

    /// Every stored user record of the site.
    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError>;

    /// How many user records the site holds, for the quota on support users per site; asked
    /// only when a new user would be created. The default counts [`users`](Self::users).
    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self.users(site).await?.len())
    }

    /// User records with `deadline <= now`, earliest first, at most `limit`.
    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError>;

    /// The smallest stored user deadline of the site.
    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError>;

    /// Waits until every write made so far is durable (survives a crash of the process). The
    /// core calls it before acknowledging what must not be lost: deletions (and their opt-out
    /// tombstones), invites and their changes, activity batches. A store whose writes are
    /// durable when they return (the default) does nothing; a write-behind store commits
    /// what is pending — one commit for every caller waiting at once (group commit).
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Spent dashboard socket tickets in memory, for stores that keep their state in the process
/// ([`MemoryStore`](crate::MemoryStore), a store that loads its file into memory): what their
/// [`Store::spend_ticket`] needs, with expired entries dropped as the set grows.
#[derive(Debug, Default)]
pub struct SpentTickets(std::collections::HashMap<(SiteId, String), Timestamp>);

impl SpentTickets {
    /// [`Store::spend_ticket`]'s answer: `true` when `token` of `site` was not spent yet (it
    /// is now, until `until`).
    pub fn spend(&mut self, site: &SiteId, token: &str, now: Timestamp, until: Timestamp) -> bool {
        let n = self.0.len();
        // Amortized: the set is swept of what can no longer be spent each time it doubles.
        if n >= 1024 && n.is_power_of_two() {
            self.0.retain(|_, kept| *kept > now);
        }
        match self.0.entry((site.clone(), token.to_owned())) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if *o.get() > now {
                    return false;
                }
                o.insert(until);
                true
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(until);
                true
            }
        }
    }
}

/// Alert logs held in memory ([`Store::log_alert`]), newest last, for the memory and SQLite
/// stores.
#[derive(Clone, Debug, Default)]
pub struct AlertLogs(
    std::collections::HashMap<SiteId, std::collections::VecDeque<crate::alerts::AlertLogEntry>>,
);

impl AlertLogs {
    /// Appends `entry`, keeping the site's newest `keep`.
    pub fn push(&mut self, site: &SiteId, entry: crate::alerts::AlertLogEntry, keep: usize) {
        let log = self.0.entry(site.clone()).or_default();
        log.push_back(entry);
        while log.len() > keep.max(1) {
            log.pop_front();
        }
    }

    /// Forgets the site's log (the site was removed).
    pub fn forget(&mut self, site: &SiteId) {
        self.0.remove(site);
    }

    /// The site's newest `limit` entries, newest first.
    pub fn latest(&self, site: &SiteId, limit: usize) -> Vec<crate::alerts::AlertLogEntry> {
        self.0
            .get(site)
            .map(|log| log.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}
