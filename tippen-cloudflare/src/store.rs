//! [`DurableObjectStore`]: the [`Store`] on a SQLite-backed Durable Object's storage
//! (`ctx.storage.sql`).
//!
//! The SQL API of a Durable Object is synchronous and the object runs one event at a time, so
//! every method here runs to completion without yielding: a read-compare-write is atomic and
//! the store never reports a [`StoreError::Conflict`] it did not find in the data. The output
//! gate holds each response until its writes are durable.
//!
//! Tables (created on first use, all prefixed `tippen_`):
//!
//! - `tippen_visitors(site, id, version, deadline, body)` and `tippen_users(...)` (support
//!   users), each with an index on `(site, deadline)`: records as JSON, the deadline indexes
//!   of the contract.
//! - `tippen_sites(id, body)` and `tippen_site_keys(hash, site)`: sites and their key index.
//! - `tippen_tickets(site, token, until)`: spent dashboard socket tickets, each kept until it
//!   expires (the expired ones of a site are dropped at its next spend).
//! - `tippen_alert_log(site, n, body)`: each site's alert log (alerts raised, deliveries), its
//!   newest entries kept.
//! - `tippen_audit_log(site, n, at, body)`, indexed on `(site, at)`: each site's audit log,
//!   entries as JSON; each append deletes the site's entries older than its retention boundary.
//! - `tippen_records(kind, site, key, version, body)`: every other record kind as versioned
//!   JSON (sequence numbers, enrichment counters, the enrichment cache). A new kind of record
//!   needs no new table: use [`DurableObjectStore::record`] and
//!   [`DurableObjectStore::put_record`] with a new `kind`.
//!
//! The enrichment cache is shared by all sites: with [`DurableObjectStore::with_shared_cache`]
//! (the Worker binds the KV namespace [`ENRICHMENT_CACHE_BINDING`]) its entries live in KV,
//! keyed `lookup:<address>`, each expiring with the entry (KV's expiration, at least 60 s
//! out); without it, in the object's own `tippen_records` (one object's cache). The per-site
//! counters (`record_enrichment`) stay in the object.

use std::net::IpAddr;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tippen_core::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use tippen_core::presence::VisitorRecord;
use tippen_core::support::UserRecord;
use tippen_core::{KeyHash, Site, SiteId, Store, StoreError, Timestamp, Version, Versioned};
use worker::send::SendFuture;
use worker::{KvStore, SqlStorage, SqlStorageValue};

/// The KV namespace binding holding the enrichment cache shared by every site's object.
pub const ENRICHMENT_CACHE_BINDING: &str = "TIPPEN_ENRICHMENT_CACHE";

/// KV's shortest expiration (seconds ahead).
const KV_MIN_TTL_SECS: i64 = 60;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tippen_sites (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tippen_site_keys (hash TEXT PRIMARY KEY, site TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tippen_visitors (
  site TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
  deadline INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (site, id));
CREATE INDEX IF NOT EXISTS tippen_visitors_by_deadline ON tippen_visitors (site, deadline);
CREATE TABLE IF NOT EXISTS tippen_users (
  site TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
  deadline INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (site, id));
CREATE INDEX IF NOT EXISTS tippen_users_by_deadline ON tippen_users (site, deadline);
CREATE TABLE IF NOT EXISTS tippen_tickets (
  site TEXT NOT NULL, token TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (site, token));
CREATE TABLE IF NOT EXISTS tippen_alert_log (
  site TEXT NOT NULL, n INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tippen_alert_log_by_site ON tippen_alert_log (site, n);
CREATE TABLE IF NOT EXISTS tippen_audit_log (
  site TEXT NOT NULL, n INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tippen_audit_log_by_site ON tippen_audit_log (site, at);
CREATE TABLE IF NOT EXISTS tippen_records (
  kind TEXT NOT NULL, site TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
  body TEXT NOT NULL, PRIMARY KEY (kind, site, key));
";

/// Record kind of a site's message counter (`key` empty, body: the number).
const SEQUENCE: &str = "sequence";
/// Record kind of a site's enrichment counters (`key` empty, body: `EnrichmentStats`).
const ENRICHMENT_STATS: &str = "enrichment_stats";
/// Record kind of the enrichment cache (`site` empty, `key` the address).
const LOOKUP: &str = "lookup";

/// A [`Store`] on a Durable Object's SQLite storage. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct DurableObjectStore {
    sql: SqlStorage,
    /// The enrichment cache shared across sites, when bound.
    shared_cache: Option<KvStore>,
}

fn backend(e: worker::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn text(v: &str) -> SqlStorageValue {
    SqlStorageValue::String(v.to_owned())
}

fn int(v: i64) -> SqlStorageValue {
    SqlStorageValue::Integer(v)
}

fn as_i64(v: &SqlStorageValue) -> Result<i64, StoreError> {
    match v {
        SqlStorageValue::Integer(i) => Ok(*i),
        SqlStorageValue::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(corrupt("expected an integer", format!("{other:?}"))),
    }
}

fn as_str(v: &SqlStorageValue) -> Result<&str, StoreError> {
    match v {
        SqlStorageValue::String(s) => Ok(s),
        other => Err(corrupt("expected text", format!("{other:?}"))),
    }
}

fn version_of(v: &SqlStorageValue) -> Result<Version, StoreError> {
    u64::try_from(as_i64(v)?)
        .map(Version)
        .map_err(|e| corrupt("version", e))
}

fn decode<T: DeserializeOwned>(what: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| corrupt(what, e))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

impl DurableObjectStore {
    /// A store on `sql` (from `state.storage().sql()`), creating its tables if needed.
    pub fn new(sql: SqlStorage) -> Result<Self, StoreError> {
        for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sql.exec(statement, None).map_err(backend)?;
        }
        Ok(DurableObjectStore {
            sql,
            shared_cache: None,
        })
    }

    /// The same store with the enrichment cache in `kv` (shared by every site's object).
    pub fn with_shared_cache(mut self, kv: KvStore) -> Self {
        self.shared_cache = Some(kv);
        self
    }

    fn cache_key(ip: IpAddr) -> String {
        format!("{LOOKUP}:{ip}")
    }

    fn rows(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<Vec<SqlStorageValue>>, StoreError> {
        let cursor = self.sql.exec(query, bindings).map_err(backend)?;
        cursor.raw().collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    /// How many rows of the indexed `table` belong to `site`.
    fn count(&self, table: Indexed, site: &SiteId) -> Result<usize, StoreError> {
        let rows = self.rows(
            &format!("SELECT COUNT(*) FROM {} WHERE site = ?", table.0),
            vec![text(site.as_str())],
        )?;
        let n = rows
            .first()
            .and_then(|r| r.first())
            .map(as_i64)
            .transpose()?;
        Ok(usize::try_from(n.unwrap_or(0)).unwrap_or(0))
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<(), StoreError> {
        self.sql.exec(query, bindings).map_err(backend).map(|_| ())
    }

    /// A record of kind `kind` (a generic versioned JSON record: use a new kind for a new
    /// sort of data), or `None`.
    pub fn record<T: DeserializeOwned>(
        &self,
        kind: &str,
        site: &str,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let rows = self.rows(
            "SELECT version, body FROM tippen_records WHERE kind = ? AND site = ? AND key = ?",
            vec![text(kind), text(site), text(key)],
        )?;
        rows.first()
            .map(|row| {
                Ok(Versioned {
                    version: version_of(&row[0])?,
                    value: decode(kind, as_str(&row[1])?)?,
                })
            })
            .transpose()
    }

    /// Writes a record of kind `kind` if its stored version is `expected` (`None`: only if
    /// absent); returns the new version, or [`StoreError::Conflict`].
    pub fn put_record<T: Serialize>(
        &self,
        kind: &str,
        site: &str,
        key: &str,
        value: &T,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let current = self
            .rows(
                "SELECT version FROM tippen_records WHERE kind = ? AND site = ? AND key = ?",
                vec![text(kind), text(site), text(key)],
            )?
            .first()
            .map(|row| version_of(&row[0]))
            .transpose()?;
        if current != expected {
            return Err(StoreError::Conflict);
        }
        self.replace_record(kind, site, key, value, expected)
    }

    /// Writes a record of kind `kind` whatever is stored; returns the new version.
    fn replace_record<T: Serialize>(
        &self,
        kind: &str,
        site: &str,
        key: &str,
        value: &T,
        previous: Option<Version>,
    ) -> Result<Version, StoreError> {
        let version = Version(previous.map_or(1, |v| v.0 + 1));
        self.run(
            "INSERT OR REPLACE INTO tippen_records (kind, site, key, version, body) \
             VALUES (?, ?, ?, ?, ?)",
            vec![
                text(kind),
                text(site),
                text(key),
                int(version.0 as i64),
                text(&encode(value)?),
            ],
        )?;
        Ok(version)
    }

    /// Reads, changes and writes a record in one step (atomic: nothing else runs in between).
    fn update_record<T: Serialize + DeserializeOwned + Default>(
        &self,
        kind: &str,
        site: &str,
        key: &str,
        change: impl FnOnce(&mut T),
    ) -> Result<T, StoreError> {
        let current = self.record::<T>(kind, site, key)?;
        let previous = current.as_ref().map(|v| v.version);
        let mut value = current.map(|v| v.value).unwrap_or_default();
        change(&mut value);
        self.replace_record(kind, site, key, &value, previous)?;
        Ok(value)
    }

    fn indexed_version(
        &self,
        table: Indexed,
        site: &SiteId,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        self.rows(
            &format!("SELECT version FROM {} WHERE site = ? AND id = ?", table.0),
            vec![text(site.as_str()), text(id)],
        )?
        .first()
        .map(|row| version_of(&row[0]))
        .transpose()
    }

    fn indexed_rows<T: DeserializeOwned>(
        &self,
        table: Indexed,
        filter: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        let query = format!("SELECT version, body FROM {} WHERE {filter}", table.0);
        self.rows(&query, bindings)?
            .iter()
            .map(|row| {
                Ok(Versioned {
                    version: version_of(&row[0])?,
                    value: decode(table.0, as_str(&row[1])?)?,
                })
            })
            .collect()
    }

    fn indexed_get<T: DeserializeOwned>(
        &self,
        table: Indexed,
        site: &SiteId,
        id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        Ok(self
            .indexed_rows(
                table,
                "site = ? AND id = ?",
                vec![text(site.as_str()), text(id)],
            )?
            .pop())
    }

    fn indexed_save<T: Serialize>(
        &self,
        table: Indexed,
        site: &SiteId,
        id: &str,
        deadline: Timestamp,
        value: &T,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        if self.indexed_version(table, site, id)? != expected {
            return Err(StoreError::Conflict);
        }
        let version = Version(expected.map_or(1, |v| v.0 + 1));
        self.run(
            &format!(
                "INSERT OR REPLACE INTO {} (site, id, version, deadline, body) \
                 VALUES (?, ?, ?, ?, ?)",
                table.0
            ),
            vec![
                text(site.as_str()),
                text(id),
                int(version.0 as i64),
                int(deadline.as_millis()),
                text(&encode(value)?),
            ],
        )?;
        Ok(version)
    }

    fn indexed_remove(
        &self,
        table: Indexed,
        site: &SiteId,
        id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        if self.indexed_version(table, site, id)? != Some(expected) {
            return Err(StoreError::Conflict);
        }
        self.run(
            &format!("DELETE FROM {} WHERE site = ? AND id = ?", table.0),
            vec![text(site.as_str()), text(id)],
        )
    }

    fn indexed_due<T: DeserializeOwned>(
        &self,
        table: Indexed,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.indexed_rows(
            table,
            "site = ? AND deadline <= ? ORDER BY deadline, id LIMIT ?",
            vec![
                text(site.as_str()),
                int(now.as_millis()),
                int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
    }

    fn indexed_next_deadline(
        &self,
        table: Indexed,
        site: &SiteId,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.rows(
            &format!(
                "SELECT deadline FROM {} WHERE site = ? ORDER BY deadline LIMIT 1",
                table.0
            ),
            vec![text(site.as_str())],
        )?
        .first()
        .map(|row| as_i64(&row[0]).map(Timestamp::from_millis))
        .transpose()
    }
}

/// A table of records with a deadline index (same columns: site, id, version, deadline,
/// body). Only the constants below exist, so table names never come from input.
#[derive(Clone, Copy, Debug)]
struct Indexed(&'static str);

const VISITORS: Indexed = Indexed("tippen_visitors");
const USERS: Indexed = Indexed("tippen_users");

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Store for DurableObjectStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM tippen_site_keys WHERE site = ?",
            vec![text(site.id.as_str())],
        )?;
        for hash in site.key_hashes() {
            self.run(
                "INSERT OR REPLACE INTO tippen_site_keys (hash, site) VALUES (?, ?)",
                vec![text(&hash.to_hex()), text(site.id.as_str())],
            )?;
        }
        self.run(
            "INSERT OR REPLACE INTO tippen_sites (id, body) VALUES (?, ?)",
            vec![text(site.id.as_str()), text(&encode(site)?)],
        )
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.rows("SELECT body FROM tippen_sites", vec![])?
            .iter()
            .map(|row| decode("site", as_str(&row[0])?))
            .collect()
    }

    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError> {
        let rows = self.rows(
            "SELECT s.body FROM tippen_site_keys k JOIN tippen_sites s ON s.id = k.site \
             WHERE k.hash = ?",
            vec![text(&key.to_hex())],
        )?;
        rows.first()
            .map(|row| decode("site", as_str(&row[0])?))
            .transpose()
    }

    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        let rows = self.rows(
            "SELECT body FROM tippen_sites WHERE id = ?",
            vec![text(id.as_str())],
        )?;
        rows.first()
            .map(|row| decode("site", as_str(&row[0])?))
            .transpose()
    }

    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.run(
            "DELETE FROM tippen_tickets WHERE site = ? AND until <= ?",
            vec![text(site.as_str()), int(now.as_millis())],
        )?;
        let inserted = self.rows(
            "INSERT INTO tippen_tickets (site, token, until) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING 1",
            vec![text(site.as_str()), text(token), int(until.as_millis())],
        )?;
        Ok(!inserted.is_empty())
    }

    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &tippen_core::alerts::AlertLogEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.run(
            "INSERT INTO tippen_alert_log (site, body) VALUES (?, ?)",
            vec![text(site.as_str()), text(&body)],
        )?;
        self.run(
            "DELETE FROM tippen_alert_log WHERE site = ? AND n NOT IN \
             (SELECT n FROM tippen_alert_log WHERE site = ? ORDER BY n DESC LIMIT ?)",
            vec![
                text(site.as_str()),
                text(site.as_str()),
                int(i64::try_from(keep.max(1)).unwrap_or(i64::MAX)),
            ],
        )
    }

    async fn alert_log(
        &self,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<tippen_core::alerts::AlertLogEntry>, StoreError> {
        let rows = self.rows(
            "SELECT body FROM tippen_alert_log WHERE site = ? ORDER BY n DESC LIMIT ?",
            vec![
                text(site.as_str()),
                int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let body = row
                    .first()
                    .ok_or_else(|| StoreError::Corrupt("alert log row".into()))?;
                serde_json::from_str(as_str(body)?)
                    .map_err(|e| StoreError::Corrupt(format!("alert log: {e}")))
            })
            .collect()
    }

    async fn log_audit(
        &self,
        entry: &tippen_core::audit::AuditEntry,
        keep_after: Timestamp,
    ) -> Result<(), StoreError> {
        let site = entry.site.as_str();
        self.run(
            "INSERT INTO tippen_audit_log (site, at, body) VALUES (?, ?, ?)",
            vec![text(site), int(entry.at.as_millis()), text(&encode(entry)?)],
        )?;
        self.run(
            "DELETE FROM tippen_audit_log WHERE site = ? AND at < ?",
            vec![text(site), int(keep_after.as_millis())],
        )
    }

    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<tippen_core::audit::AuditEntry>, StoreError> {
        self.rows(
            "SELECT body FROM tippen_audit_log WHERE site = ? AND at >= ? \
             ORDER BY at DESC, n DESC LIMIT ?",
            vec![
                text(site.as_str()),
                int(since.as_millis()),
                int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?
        .iter()
        .map(|row| {
            let body = row
                .first()
                .ok_or_else(|| StoreError::Corrupt("audit log row".into()))?;
            decode("audit log entry", as_str(body)?)
        })
        .collect()
    }

    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError> {
        self.indexed_get(VISITORS, site, visitor_id)
    }

    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        self.indexed_save(
            VISITORS,
            site,
            &record.visitor_id,
            record.deadline,
            record,
            expected,
        )
    }

    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.indexed_remove(VISITORS, site, visitor_id, expected)
    }

    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError> {
        Ok(self
            .indexed_rows::<VisitorRecord>(VISITORS, "site = ?", vec![text(site.as_str())])?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count(VISITORS, site)
    }

    async fn due_visitors(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<VisitorRecord>>, StoreError> {
        self.indexed_due(VISITORS, site, now, limit)
    }

    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.indexed_next_deadline(VISITORS, site)
    }

    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError> {
        self.update_record::<u64>(SEQUENCE, site.as_str(), "", |n| *n += by)
    }

    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError> {
        Ok(self
            .record::<u64>(SEQUENCE, site.as_str(), "")?
            .map_or(0, |v| v.value))
    }

    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError> {
        if let Some(kv) = &self.shared_cache {
            // The runtime is single-threaded; the JS future never crosses threads.
            let body = SendFuture::new(kv.get(&Self::cache_key(ip)).text())
                .await
                .map_err(|e| StoreError::Backend(format!("KV get: {e}")))?;
            return body
                .map(|b| decode::<CachedLookup>("enrichment cache entry", &b))
                .transpose();
        }
        Ok(self
            .record::<CachedLookup>(LOOKUP, "", &ip.to_string())?
            .map(|v| v.value))
    }

    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError> {
        if let Some(kv) = &self.shared_cache {
            // Expire with the entry (readers check freshness anyway); KV needs 60 s at least.
            let now = js_sys::Date::now() as i64;
            let ttl = ((entry.expires_at.as_millis() - now) / 1000).max(KV_MIN_TTL_SECS);
            let put = kv
                .put(&Self::cache_key(ip), encode(entry)?)
                .map_err(|e| StoreError::Backend(format!("KV put: {e}")))?
                .expiration_ttl(ttl as u64);
            return SendFuture::new(put.execute())
                .await
                .map_err(|e| StoreError::Backend(format!("KV put: {e}")));
        }
        let key = ip.to_string();
        let previous = self
            .record::<serde_json::Value>(LOOKUP, "", &key)?
            .map(|v| v.version);
        self.replace_record(LOOKUP, "", &key, entry, previous)
            .map(|_| ())
    }

    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError> {
        Ok(self
            .record::<EnrichmentStats>(ENRICHMENT_STATS, site.as_str(), "")?
            .map(|v| v.value)
            .unwrap_or_default())
    }

    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.update_record::<EnrichmentStats>(ENRICHMENT_STATS, site.as_str(), "", |stats| {
            for event in events {
                stats.record(*event);
            }
        })
        .map(|_| ())
    }

    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.indexed_get(USERS, site, user_id)
    }

    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        self.indexed_save(
            USERS,
            site,
            &record.user_id,
            record.deadline,
            record,
            expected,
        )
    }

    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.indexed_remove(USERS, site, user_id, expected)
    }

    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self
            .indexed_rows::<UserRecord>(USERS, "site = ?", vec![text(site.as_str())])?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count(USERS, site)
    }

    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError> {
        self.indexed_due(USERS, site, now, limit)
    }

    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.indexed_next_deadline(USERS, site)
    }
}
