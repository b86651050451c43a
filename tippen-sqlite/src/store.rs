//! [`SqliteStore`]: a [`Store`] on a SQLite file (SQLite is compiled in).
//!
//! # Design: memory first, SQLite behind
//!
//! The store keeps every site, visitor and sequence number in memory (presence data is small:
//! one record per live visitor) and answers every call from there, with the [`Store`]
//! contract's conditional writes checked under one mutex. Each change also marks its key as
//! pending, and a dedicated thread that owns the SQLite connection writes the current state of
//! every pending key in one transaction (ten heartbeats of one visitor between two commits
//! become one row write). On open, the file is loaded back into memory, so a restarted server
//! lists the visitors still inside their grace window.
//!
//! Durability ([`SqliteOptions`]):
//! - [`WriteBehind`](SqliteDurability::WriteBehind) (default): a write returns once it is in
//!   memory and queued; the thread commits it within the commit interval (default 100 ms;
//!   at most one commit per interval, so under load the disk work is bounded by the number of
//!   distinct visitors changed, not by the request rate). A crash loses at most the changes of
//!   that last interval — heartbeats, which the next heartbeat re-sends. This keeps SQLite off
//!   the request path: a heartbeat costs no disk write of its own.
//! - [`Immediate`](SqliteDurability::Immediate): every write waits until its transaction is
//!   committed (group commit: writes queued together share one).
//!
//! Whatever the durability, what the core must not lose waits for its commit: it calls
//! [`Store::sync`] (here [`SqliteStore::flush`], a group commit that every caller waiting at
//! once shares) before acknowledging a deletion, an invite or its change, or an activity
//! batch. So only heartbeats and page views are written behind.
//!
//! Spent dashboard socket tickets ([`Store::spend_ticket`]) are kept in memory only: a ticket
//! spent before a restart could be spent once more after it, within its lifetime
//! ([`Limits::ws_ticket_ttl`](tippen_core::config::Limits::ws_ticket_ttl), 30 s by default).
//!
//! Sites are always written immediately ([`Store::put_site`] waits for the commit).
//! [`SqliteStore::flush`] waits until everything written so far is committed; dropping the
//! store commits what is pending and closes the file.
//!
//! One store writes the file: the memory copy is authoritative while it is open. Opening
//! another store on the same file to read it is fine; writing through both is not.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL` (a commit survives a crash of the
//! process; after power loss, up to the last checkpoint), a busy timeout, and statements
//! prepared once and cached.
//!
//! Schema (version 5, in `PRAGMA user_version`):
//!
//! ```sql
//! sites     (id TEXT PRIMARY KEY, record TEXT)          -- the site as JSON (key hashes only)
//! site_keys (key_hash TEXT PRIMARY KEY, site_id TEXT)   -- hex SHA-256 of each key → site
//! visitors  (site_id, visitor_id, version, deadline, record)   -- PRIMARY KEY (site_id, visitor_id)
//!                                                              -- record: JSON, without its visit
//! open_visits (site_id, visitor_id, visit)   -- a visitor's open visit (VisitorRecord::visit)
//! sequences (site_id TEXT PRIMARY KEY, value INTEGER)
//! enrichment_cache (ip TEXT PRIMARY KEY, expires_at INTEGER, record TEXT)  -- shared by all sites
//! enrichment_stats (site_id TEXT PRIMARY KEY, record TEXT)                -- counters as JSON
//! alert_log        (n INTEGER PRIMARY KEY, site_id TEXT, record TEXT)   -- alert log entries as JSON
//! audit_log        (n INTEGER PRIMARY KEY, site_id TEXT, at INTEGER, record TEXT)  -- audit entries
//!                  INDEX audit_log_by_site (site_id, at)                -- as JSON, `at` in ms
//! users     (site_id, user_id, version, deadline, record)      -- PRIMARY KEY (site_id, user_id)
//!                                                              -- support triggers (record as JSON,
//!                                                              -- its capped raw events inside)
//! ```
//!
//! The enrichment tables were added in version 2, the users table in version 3,
//! `open_visits` in version 4 and `audit_log` in version 5; an older file gains them on open
//! (a version 3 row keeps its visit inside `record` until that visitor is next written).
//! The deadline indexes of `visitors` and `users` that files up to version 5 carried are
//! dropped on open: the deadlines are indexed in memory, the file is only read whole on open,
//! and keeping them cost every heartbeat's row write two more B-tree changes.
//!
//! The audit log ([`Store::log_audit`]) is held in memory like the alert log (the core's
//! [`AuditLogs`]: at most [`AUDIT_KEEP_MAX`](tippen_core::audit::AUDIT_KEEP_MAX) entries per
//! site) and appended to `audit_log` by the writer, which deletes the site's rows older than
//! the write's retention boundary in the same transaction. An entry is written behind like
//! the alert log (committed within the commit interval, or by the next [`Store::sync`]). A
//! retired site's audit log stays (until a later write of that site's log drops it by
//! retention).
//!
//! A visitor's open visit is a row of its own because it changes far less often than the
//! record: a heartbeat moves the record's times, and leaves the visit as it was (the record
//! keeps sharing the same `Arc`). A save notes whether the record holds another visit than
//! the one it replaces (another `Arc`, or one added or taken out; compared under the store's
//! lock, so nothing is kept per visitor for it), and the writer writes `open_visits` only for
//! those, so a batch of heartbeats rewrites only the smaller `visitors` rows. Users are written behind like visitors (an acknowledged activity
//! batch is committed through [`Store::sync`]). Cache
//! entries and counters are written behind like visitors (a crash loses at most the last
//! commit interval's; the cache survives every orderly restart).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use thiserror::Error;
use tippen_core::alerts::AlertLogEntry;
use tippen_core::audit::{AuditEntry, AuditLogs};
use tippen_core::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use tippen_core::history::OpenVisit;
use tippen_core::presence::VisitorRecord;
use tippen_core::records::RecordTable;
use tippen_core::store::{AlertLogs, SpentTickets};
use tippen_core::support::UserRecord;
use tippen_core::{KeyHash, Site, SiteId, Store, StoreError, Timestamp, Version, Versioned};
use tokio::sync::watch;

const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY NOT NULL,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_keys (
    key_hash TEXT PRIMARY KEY NOT NULL,
    site_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS site_keys_by_site ON site_keys (site_id);
CREATE TABLE IF NOT EXISTS visitors (
    site_id TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (site_id, visitor_id)
) WITHOUT ROWID;
DROP INDEX IF EXISTS visitors_by_deadline;
CREATE TABLE IF NOT EXISTS open_visits (
    site_id TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    visit TEXT NOT NULL,
    PRIMARY KEY (site_id, visitor_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequences (
    site_id TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS enrichment_cache (
    ip TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS enrichment_stats (
    site_id TEXT PRIMARY KEY NOT NULL,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_log (
    n INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_log_by_site ON alert_log (site_id, n);
CREATE TABLE IF NOT EXISTS audit_log (
    n INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_site ON audit_log (site_id, at);
CREATE TABLE IF NOT EXISTS users (
    site_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (site_id, user_id)
) WITHOUT ROWID;
DROP INDEX IF EXISTS users_by_deadline;
";

/// When a write to a [`SqliteStore`] counts as done. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqliteDurability {
    /// Done once in memory and queued for the writer thread (default).
    #[default]
    WriteBehind,
    /// Done once committed to the file.
    Immediate,
}

/// How a [`SqliteStore`] writes. `Default`: write-behind, at most one commit per 100 ms.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// When a write counts as done.
    pub durability: SqliteDurability,
    /// Write-behind only: the shortest time between two commits. Changes made meanwhile are
    /// coalesced per visitor and committed together, which bounds the disk work under load
    /// (and the changes a crash can lose). `Duration::ZERO` commits as soon as the writer is
    /// free. Waiting calls ([`SqliteStore::flush`], sites, `Immediate` writes) do not wait
    /// for it.
    pub commit_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: SqliteDurability::WriteBehind,
            commit_interval: Duration::from_millis(100),
        }
    }
}

impl SqliteOptions {
    /// Every write waits for its commit.
    pub fn immediate() -> Self {
        SqliteOptions {
            durability: SqliteDurability::Immediate,
            commit_interval: Duration::ZERO,
        }
    }

    /// Write-behind with `commit_interval` between commits.
    pub fn write_behind(commit_interval: Duration) -> Self {
        SqliteOptions {
            durability: SqliteDurability::WriteBehind,
            commit_interval,
        }
    }
}

/// Opening the database failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite refused to open, set up or read the file.
    #[error("cannot open SQLite database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row could not be decoded.
    #[error("SQLite database {path} holds a corrupt row: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which row and why.
        detail: String,
    },
    /// The file was written by a newer version of tippen.
    #[error(
        "SQLite database {path} has schema version {found}; this tippen knows up to {SCHEMA_VERSION}"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found.
        found: i64,
    },
    /// A thread of the store's (its writer) or of the history's (its checkpoints) could not
    /// be started.
    #[error("cannot start a SQLite thread: {0}")]
    Thread(std::io::Error),
}

/// A [`Store`] on a SQLite file, memory first with a writer thread behind. See the
/// [module docs](self).
pub struct SqliteStore {
    path: PathBuf,
    durability: SqliteDurability,
    shared: Arc<Shared>,
    committed: watch::Receiver<Committed>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// State shared by the store and its writer thread.
struct Shared {
    state: Mutex<State>,
    /// Signalled when there is pending work or the store closes.
    wake: Condvar,
}

/// What the writer thread has done: every change numbered up to `generation` is committed;
/// `failures` counts failed commits (the last one's error in `error`).
#[derive(Clone, Debug, Default)]
struct Committed {
    generation: u64,
    failures: u64,
    error: Option<String>,
}

#[derive(Default)]
struct State {
    sites: HashMap<SiteId, Site>,
    keys: HashMap<KeyHash, SiteId>,
    visitors: HashMap<SiteId, SiteVisitors>,
    /// The enrichment cache, shared by all sites.
    lookups: HashMap<IpAddr, CachedLookup>,
    /// Enrichment counters per site.
    stats: HashMap<SiteId, EnrichmentStats>,
    /// Support users per site.
    users: HashMap<SiteId, RecordTable<Arc<UserRecord>>>,
    /// Spent dashboard socket tickets: in memory only (see the module docs).
    tickets: SpentTickets,
    /// Alert logs (also in the `alert_log` table).
    alert_logs: AlertLogs,
    /// Audit logs (also in the `audit_log` table).
    audit_logs: AuditLogs,
    pending: Pending,
    /// Number of the last change recorded in `pending`.
    generation: u64,
    /// Someone waits for a commit: the writer does not wait for the commit interval.
    urgent: bool,
    /// The writer sleeps on the condition variable until there is work (so writers only pay
    /// for a wake-up when it is needed).
    writer_idle: bool,
    closing: bool,
}

/// A stored visitor record, shared between memory and the writer's batches.
type SharedRecord = Versioned<Arc<VisitorRecord>>;

#[derive(Default)]
struct SiteVisitors {
    /// Shared with the writer's batches, which snapshot records without copying them.
    records: RecordTable<Arc<VisitorRecord>>,
    sequence: u64,
}

/// A stored support user record, shared between memory and the writer's batches.
type SharedUser = Versioned<Arc<UserRecord>>;

/// What changed since the last batch. Visitors and sequences are only named: the writer
/// writes their state at the time it takes the batch (the latest), or deletes the row of a
/// visitor that is gone, so any number of changes to one key costs one row write.
#[derive(Default)]
struct Pending {
    /// Site changes, in order.
    sites: Vec<SiteOp>,
    /// Each changed visitor, and whether its open visit changed (another `Arc`, or one
    /// added or taken out) since its last write: only then is its `open_visits` row written.
    visitors: HashMap<SiteId, HashMap<String, bool>>,
    sequences: HashSet<SiteId>,
    lookups: HashSet<IpAddr>,
    stats: HashSet<SiteId>,
    users: HashMap<SiteId, HashSet<String>>,
    /// Alert log entries to append, with how many of the site's to keep.
    alert_log: Vec<(SiteId, AlertLogEntry, usize)>,
    /// Audit entries to append, each with its site's retention boundary.
    audit_log: Vec<(AuditEntry, Timestamp)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.sites.is_empty()
            && self.users.is_empty()
            && self.visitors.is_empty()
            && self.sequences.is_empty()
            && self.lookups.is_empty()
            && self.stats.is_empty()
            && self.alert_log.is_empty()
            && self.audit_log.is_empty()
    }

    fn visitor_changed(&mut self, site: &SiteId, visitor_id: &str, visit_changed: bool) {
        // Allocate only for the first change of a key in a batch.
        match self.visitors.get_mut(site) {
            Some(ids) => match ids.get_mut(visitor_id) {
                Some(changed) => *changed |= visit_changed,
                None => {
                    ids.insert(visitor_id.to_owned(), visit_changed);
                }
            },
            None => {
                self.visitors.insert(
                    site.clone(),
                    HashMap::from([(visitor_id.to_owned(), visit_changed)]),
                );
            }
        }
    }

    fn user_changed(&mut self, site: &SiteId, user_id: &str) {
        let ids = self.users.entry(site.clone()).or_default();
        if !ids.contains(user_id) {
            ids.insert(user_id.to_owned());
        }
    }

    fn sequence_changed(&mut self, site: &SiteId) {
        if !self.sequences.contains(site) {
            self.sequences.insert(site.clone());
        }
    }
}

/// The rows to write, snapshotted from memory by the writer under the lock.
#[derive(Default)]
struct Batch {
    sites: Vec<SiteOp>,
    /// `Some`: write this version of the record; `None`: delete the row.
    visitors: Vec<BatchVisitor>,
    sequences: Vec<(SiteId, u64)>,
    lookups: Vec<(IpAddr, CachedLookup)>,
    stats: Vec<(SiteId, EnrichmentStats)>,
    /// `Some`: write this version of the user; `None`: delete the row.
    users: Vec<(SiteId, String, Option<SharedUser>)>,
    alert_log: Vec<(SiteId, AlertLogEntry, usize)>,
    audit_log: Vec<(AuditEntry, Timestamp)>,
}

/// A visitor's row to write.
struct BatchVisitor {
    site: SiteId,
    /// The record table's copy of the id (shared), or a copy of a deleted record's.
    id: Arc<str>,
    /// `Some`: write this version of the record; `None`: delete the rows.
    current: Option<SharedRecord>,
    /// Whether its open visit changed since it was last written.
    visit_changed: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.sites.is_empty()
            && self.users.is_empty()
            && self.visitors.is_empty()
            && self.sequences.is_empty()
            && self.lookups.is_empty()
            && self.stats.is_empty()
            && self.alert_log.is_empty()
            && self.audit_log.is_empty()
    }

    /// Takes the pending changes with the current state of every changed key.
    fn take(state: &mut State) -> Batch {
        let pending = std::mem::take(&mut state.pending);
        let mut visitors = Vec::new();
        for (site, ids) in pending.visitors {
            let records = state.visitors.get(&site).map(|s| &s.records);
            for (id, visit_changed) in ids {
                let found = records.and_then(|r| r.get_with_id(&id));
                let id = found.map_or_else(|| Arc::from(id), |(shared, _)| shared.clone());
                visitors.push(BatchVisitor {
                    site: site.clone(),
                    id,
                    current: found.map(|(_, v)| v.clone()),
                    visit_changed,
                });
            }
        }
        let mut users = Vec::new();
        for (site, ids) in pending.users {
            let records = state.users.get(&site);
            for id in ids {
                let current = records.and_then(|r| r.get(&id)).cloned();
                users.push((site.clone(), id, current));
            }
        }
        let sequences = pending
            .sequences
            .into_iter()
            .map(|site| {
                let value = state.visitors.get(&site).map_or(0, |s| s.sequence);
                (site, value)
            })
            .collect();
        let lookups = pending
            .lookups
            .into_iter()
            .filter_map(|ip| state.lookups.get(&ip).map(|e| (ip, e.clone())))
            .collect();
        let stats = pending
            .stats
            .into_iter()
            .filter_map(|site| state.stats.get(&site).map(|s| (site, s.clone())))
            .collect();
        Batch {
            sites: pending.sites,
            visitors,
            sequences,
            lookups,
            stats,
            users,
            alert_log: pending.alert_log,
            audit_log: pending.audit_log,
        }
    }

    /// Marks the changes of a batch that failed to commit as pending again (site changes go
    /// before those made since).
    fn restore(self, pending: &mut Pending) {
        let newer_sites = std::mem::replace(&mut pending.sites, self.sites);
        pending.sites.extend(newer_sites);
        for v in self.visitors {
            pending.visitor_changed(&v.site, &v.id, v.visit_changed);
        }
        for (site, _) in self.sequences {
            pending.sequence_changed(&site);
        }
        for (site, id, _) in self.users {
            pending.user_changed(&site, &id);
        }
        pending
            .lookups
            .extend(self.lookups.into_iter().map(|(ip, _)| ip));
        pending
            .stats
            .extend(self.stats.into_iter().map(|(site, _)| site));
        let newer_log = std::mem::replace(&mut pending.alert_log, self.alert_log);
        pending.alert_log.extend(newer_log);
        let newer_audit = std::mem::replace(&mut pending.audit_log, self.audit_log);
        pending.audit_log.extend(newer_audit);
    }
}

enum SiteOp {
    Put(Box<Site>),
    Remove(SiteId),
}

fn unshare<T: Clone>(v: &Versioned<Arc<T>>) -> Versioned<T> {
    Versioned {
        version: v.version,
        value: (*v.value).clone(),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if absent) the database at `path` with the default
    /// [`SqliteOptions`] (write-behind).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if absent) the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, SqliteError> {
        let durability = options.durability;
        let interval = match durability {
            SqliteDurability::WriteBehind => options.commit_interval,
            SqliteDurability::Immediate => Duration::ZERO,
        };
        let path = path.as_ref().to_path_buf();
        let conn = connect(&path)?;
        let mut state = load(&conn, &path)?;
        let visitors: usize = state.visitors.values().map(|s| s.records.len()).sum();
        state.generation = 0;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
        });
        let (committed_tx, committed) = watch::channel(Committed::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tippen-sqlite".into())
                .spawn(move || write_loop(conn, &shared, &committed_tx, interval))
                .map_err(SqliteError::Thread)?
        };
        tracing::info!(
            path = %path.display(),
            visitors,
            ?durability,
            commit_interval = ?interval,
            "opened SQLite store"
        );
        Ok(SqliteStore {
            path,
            durability,
            shared,
            committed,
            writer: Some(writer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `state.pending` changed and wakes the writer when it needs waking;
    /// returns the change's number. `urgent`: someone will wait for this commit.
    fn queue(&self, mut state: MutexGuard<'_, State>, urgent: bool) -> u64 {
        state.generation += 1;
        self.wake_writer(state, urgent)
    }

    /// Wakes the writer if it sleeps without work, or, for an `urgent` change, if it waits for
    /// the commit interval; returns the number of the last change.
    fn wake_writer(&self, mut state: MutexGuard<'_, State>, urgent: bool) -> u64 {
        let generation = state.generation;
        let wake = state.writer_idle || (urgent && !state.urgent);
        state.urgent |= urgent;
        state.writer_idle &= !wake;
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        generation
    }

    /// [`queue`](Self::queue) for a write whose caller waits only in `Immediate` mode.
    fn queued(&self, state: MutexGuard<'_, State>) -> u64 {
        let urgent = self.durability == SqliteDurability::Immediate;
        self.queue(state, urgent)
    }

    /// [`queue`](Self::queue) for a change the caller waits for.
    fn queued_urgent(&self, state: MutexGuard<'_, State>) -> u64 {
        self.queue(state, true)
    }

    /// Waits until change `generation` is committed; fails if a commit failed meanwhile.
    async fn committed(&self, generation: u64) -> Result<(), StoreError> {
        let mut rx = self.committed.clone();
        let failures_before = rx.borrow().failures;
        let result = rx
            .wait_for(|c| c.generation >= generation || c.failures > failures_before)
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer thread stopped".into()))?;
        if result.generation >= generation {
            Ok(())
        } else {
            Err(StoreError::Backend(format!(
                "SQLite commit failed: {}",
                result.error.as_deref().unwrap_or("unknown error")
            )))
        }
    }

    async fn after_write(&self, generation: u64) -> Result<(), StoreError> {
        match self.durability {
            SqliteDurability::WriteBehind => Ok(()),
            SqliteDurability::Immediate => self.committed(generation).await,
        }
    }

    /// Waits until every change made so far is committed to the file.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let generation = {
            let state = self.state();
            let generation = state.generation;
            if state.pending.is_empty() {
                generation
            } else {
                self.wake_writer(state, true)
            }
        };
        self.committed(generation).await
    }

    /// Deletes a site with its keys, visitors and sequence number, and waits for the commit.
    /// Returns whether the site existed. (Not part of [`Store`]: the reference server retires
    /// sites dropped from its configuration with it.)
    pub async fn remove_site(&self, site: &SiteId) -> Result<bool, StoreError> {
        let (existed, generation) = self.remove_site_now(site);
        self.committed(generation).await?;
        Ok(existed)
    }

    // The synchronous halves of the writes: the memory update and the queueing happen under
    // the mutex, which is released before anything is awaited.

    fn remove_site_now(&self, site: &SiteId) -> (bool, u64) {
        let mut state = self.state();
        let existed = match state.sites.remove(site) {
            Some(old) => {
                for h in old.key_hashes() {
                    if state.keys.get(&h) == Some(site) {
                        state.keys.remove(&h);
                    }
                }
                true
            }
            None => false,
        };
        state.visitors.remove(site);
        state.stats.remove(site);
        state.users.remove(site);
        state.pending.users.remove(site);
        state.pending.visitors.remove(site);
        state.pending.sequences.remove(site);
        state.pending.stats.remove(site);
        state.pending.alert_log.retain(|(s, _, _)| s != site);
        state.alert_logs.forget(site);
        state.pending.sites.push(SiteOp::Remove(site.clone()));
        (existed, self.queued_urgent(state))
    }

    fn put_site_now(&self, site: &Site) -> u64 {
        let mut state = self.state();
        if let Some(old) = state.sites.remove(&site.id) {
            for h in old.key_hashes() {
                if state.keys.get(&h) == Some(&site.id) {
                    state.keys.remove(&h);
                }
            }
        }
        for h in site.key_hashes() {
            state.keys.insert(h, site.id.clone());
        }
        state.sites.insert(site.id.clone(), site.clone());
        state
            .pending
            .sites
            .push(SiteOp::Put(Box::new(site.clone())));
        self.queued_urgent(state)
    }

    fn save_visitor_now(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<(Version, u64), StoreError> {
        let mut state = self.state();
        let s = state.visitors.entry(site.clone()).or_default();
        let before = s.records.get(&record.visitor_id).map(|v| &v.value.visit);
        let visit_changed = match (before, &record.visit) {
            (Some(Some(a)), Some(b)) => !Arc::ptr_eq(a, b),
            (Some(None) | None, None) => false,
            _ => true,
        };
        let version = s.records.save(Arc::new(record.clone()), expected)?;
        state
            .pending
            .visitor_changed(site, &record.visitor_id, visit_changed);
        Ok((version, self.queued(state)))
    }

    fn remove_visitor_now(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        match state.visitors.get_mut(site) {
            Some(s) => s.records.remove(visitor_id, expected)?,
            None => return Err(StoreError::Conflict),
        }
        state.pending.visitor_changed(site, visitor_id, true);
        Ok(self.queued(state))
    }

    fn save_user_now(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<(Version, u64), StoreError> {
        let mut state = self.state();
        let s = state.users.entry(site.clone()).or_default();
        let version = s.save(Arc::new(record.clone()), expected)?;
        state.pending.user_changed(site, &record.user_id);
        Ok((version, self.queued(state)))
    }

    fn remove_user_now(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        match state.users.get_mut(site) {
            Some(s) => s.remove(user_id, expected)?,
            None => return Err(StoreError::Conflict),
        }
        state.pending.user_changed(site, user_id);
        Ok(self.queued(state))
    }

    fn put_cached_lookup_now(&self, ip: IpAddr, entry: &CachedLookup) -> u64 {
        let mut state = self.state();
        state.lookups.insert(ip, entry.clone());
        state.pending.lookups.insert(ip);
        self.queued(state)
    }

    fn record_enrichment_now(&self, site: &SiteId, events: &[EnrichmentEvent]) -> u64 {
        let mut state = self.state();
        let stats = state.stats.entry(site.clone()).or_default();
        for event in events {
            stats.record(*event);
        }
        if !state.pending.stats.contains(site) {
            state.pending.stats.insert(site.clone());
        }
        self.queued(state)
    }

    fn advance_sequence_now(&self, site: &SiteId, by: u64) -> Result<(u64, u64), StoreError> {
        let mut state = self.state();
        let s = state.visitors.entry(site.clone()).or_default();
        s.sequence = s
            .sequence
            .checked_add(by)
            .ok_or_else(|| corrupt("sequence overflow"))?;
        let value = s.sequence;
        state.pending.sequence_changed(site);
        Ok((value, self.queued(state)))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.wake.notify_one();
        // The writer commits what is pending, then exits; wait so the file is closed (and
        // complete) once the store is gone.
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The most page cache one connection keeps, in KiB (SQLite's `cache_size` pragma, negative:
/// KiB; its default is 2 MiB): 64 MiB holds the rows of about 50,000 live visitors.
const PAGE_CACHE_KIB: i64 = 64 * 1024;

fn connect(path: &Path) -> Result<Connection, SqliteError> {
    let open_err = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(open_err)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    // The writer rewrites every changed visitor's row each batch: with SQLite's default
    // 2 MiB page cache, a few thousand heartbeating visitors no longer fit, and each commit
    // spills and re-reads pages (`pagerStress`, `readDbPage`). The cache grows only as pages
    // are used, so this is a bound, not an allocation.
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    if found > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: path.to_path_buf(),
            found,
        });
    }
    conn.execute_batch(SCHEMA).map_err(open_err)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(open_err)?;
    Ok(conn)
}

/// Reads the whole file into memory, with the open visits it holds (for the writer).
fn load(conn: &Connection, path: &Path) -> Result<State, SqliteError> {
    let open_err = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let bad = |what: String| SqliteError::Corrupt {
        path: path.to_path_buf(),
        detail: what,
    };
    let mut state = State::default();
    let mut stmt = conn
        .prepare("SELECT id, record FROM sites")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (id, json) = row.map_err(open_err)?;
        let site: Site =
            serde_json::from_str(&json).map_err(|e| bad(format!("site {id:?}: {e}")))?;
        state.sites.insert(site.id.clone(), site);
    }
    let mut stmt = conn
        .prepare("SELECT key_hash, site_id FROM site_keys")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (hash, site) = row.map_err(open_err)?;
        let hash = KeyHash::from_hex(&hash)
            .ok_or_else(|| bad(format!("key hash {hash:?} of site {site:?}")))?;
        state.keys.insert(hash, SiteId(site));
    }
    let mut stmt = conn
        .prepare("SELECT site_id, version, record FROM visitors")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(open_err)?;
    for row in rows {
        let (site, version, json) = row.map_err(open_err)?;
        let record: VisitorRecord = serde_json::from_str(&json)
            .map_err(|e| bad(format!("a visitor of site {site:?}: {e}")))?;
        let version = u64::try_from(version)
            .map_err(|_| bad(format!("visitor {:?} version {version}", record.visitor_id)))?;
        state
            .visitors
            .entry(SiteId(site))
            .or_default()
            .records
            .load(Arc::new(record), Version(version));
    }
    // Visitors whose open visit has a row of its own (the others' visits, if any, are inside
    // their records, as version 3 wrote them: their next write moves them).
    let mut with_rows: HashSet<(SiteId, String)> = HashSet::new();
    let mut state_pending_visits = Vec::new();
    let mut stmt = conn
        .prepare("SELECT site_id, visitor_id, visit FROM open_visits")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(open_err)?;
    for row in rows {
        let (site, visitor_id, json) = row.map_err(open_err)?;
        let visit: Arc<OpenVisit> = serde_json::from_str(&json)
            .map_err(|e| bad(format!("the open visit of {visitor_id:?} on {site:?}: {e}")))?;
        let site = SiteId(site);
        let Some(records) = state.visitors.get_mut(&site).map(|s| &mut s.records) else {
            continue;
        };
        if let Some(current) = records.get(&visitor_id) {
            let mut record = VisitorRecord::clone(&current.value);
            record.visit = Some(visit);
            records.load(Arc::new(record), current.version);
            with_rows.insert((site, visitor_id));
        }
    }
    let mut stmt = conn
        .prepare("SELECT site_id, value FROM sequences")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (site, value) = row.map_err(open_err)?;
        state.visitors.entry(SiteId(site)).or_default().sequence =
            u64::try_from(value).map_err(|_| bad(format!("sequence {value}")))?;
    }
    let mut stmt = conn
        .prepare("SELECT ip, record FROM enrichment_cache")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (ip, json) = row.map_err(open_err)?;
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| bad(format!("enrichment cache address {ip:?}")))?;
        let entry: CachedLookup = serde_json::from_str(&json)
            .map_err(|e| bad(format!("enrichment cache entry {ip:?}: {e}")))?;
        state.lookups.insert(addr, entry);
    }
    let mut stmt = conn
        .prepare("SELECT site_id, record FROM enrichment_stats")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (site, json) = row.map_err(open_err)?;
        let counters: EnrichmentStats = serde_json::from_str(&json)
            .map_err(|e| bad(format!("enrichment stats of site {site:?}: {e}")))?;
        state.stats.insert(SiteId(site), counters);
    }
    let mut stmt = conn
        .prepare("SELECT site_id, record FROM alert_log ORDER BY n")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (site, json) = row.map_err(open_err)?;
        let entry: AlertLogEntry = serde_json::from_str(&json)
            .map_err(|e| bad(format!("alert log entry of site {site:?}: {e}")))?;
        state
            .alert_logs
            .push(&SiteId(site), entry, tippen_core::alerts::ALERT_LOG_KEEP);
    }
    let mut stmt = conn
        .prepare("SELECT site_id, record FROM audit_log ORDER BY n")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(open_err)?;
    for row in rows {
        let (site, json) = row.map_err(open_err)?;
        let entry: AuditEntry = serde_json::from_str(&json)
            .map_err(|e| bad(format!("audit log entry of site {site:?}: {e}")))?;
        // The retention boundary is the next write's to apply: everything stored is loaded.
        state
            .audit_logs
            .push(entry, Timestamp::from_millis(i64::MIN));
    }
    let mut stmt = conn
        .prepare("SELECT site_id, version, record FROM users")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(open_err)?;
    for row in rows {
        let (site, version, json) = row.map_err(open_err)?;
        let record: UserRecord = serde_json::from_str(&json)
            .map_err(|e| bad(format!("a user of site {site:?}: {e}")))?;
        let version = u64::try_from(version)
            .map_err(|_| bad(format!("user {:?} version {version}", record.user_id)))?;
        state
            .users
            .entry(SiteId(site))
            .or_default()
            .load(Arc::new(record), Version(version));
    }
    for (site, visitors) in &state.visitors {
        for record in visitors.records.values() {
            if record.visit.is_some()
                && !with_rows.contains(&(site.clone(), record.visitor_id.clone()))
            {
                state_pending_visits.push((site.clone(), record.visitor_id.clone()));
            }
        }
    }
    for (site, id) in state_pending_visits {
        state.pending.visitor_changed(&site, &id, true);
    }
    Ok(state)
}

/// The writer thread: commits pending changes, one transaction per batch, at most one commit
/// per `interval` unless someone waits, until closed.
fn write_loop(
    mut conn: Connection,
    shared: &Shared,
    committed: &watch::Sender<Committed>,
    interval: Duration,
) {
    let mut failures = 0u64;
    let mut last_commit: Option<Instant> = None;
    loop {
        let (batch, generation, closing) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if state.closing {
                    break;
                }
                if state.pending.is_empty() {
                    state.writer_idle = true;
                    state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let since = last_commit.map_or(interval, |t| t.elapsed());
                if state.urgent || since >= interval {
                    break;
                }
                state.writer_idle = false;
                state = shared
                    .wake
                    .wait_timeout(state, interval - since)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            state.writer_idle = false;
            state.urgent = false;
            (Batch::take(&mut state), state.generation, state.closing)
        };
        if batch.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        last_commit = Some(Instant::now());
        match write_batch(&mut conn, &batch) {
            Ok(()) => {
                committed.send_modify(|c| c.generation = generation);
            }
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, failures, "SQLite commit failed; will retry");
                committed.send_modify(|c| {
                    c.failures = failures;
                    c.error = Some(e.to_string());
                });
                {
                    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    batch.restore(&mut state.pending);
                }
                if closing && failures > 3 {
                    tracing::error!("closing with uncommitted changes");
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Commits `batch`.
fn write_batch(conn: &mut Connection, batch: &Batch) -> Result<(), rusqlite::Error> {
    // IMMEDIATE: the write lock is taken at BEGIN, where the busy timeout applies. A deferred
    // transaction that reads first and then writes while the history connection on the same
    // file commits fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT in WAL).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in &batch.sites {
        match op {
            SiteOp::Put(site) => put_site_row(&tx, site)?,
            SiteOp::Remove(id) => {
                tx.execute("DELETE FROM sites WHERE id = ?1", [&id.0])?;
                for table in [
                    "site_keys",
                    "visitors",
                    "open_visits",
                    "sequences",
                    "enrichment_stats",
                    "users",
                    "alert_log",
                ] {
                    tx.execute(&format!("DELETE FROM {table} WHERE site_id = ?1"), [&id.0])?;
                }
            }
        }
    }
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO visitors (site_id, visitor_id, version, deadline, record)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site_id, visitor_id) DO UPDATE SET
                version = excluded.version, deadline = excluded.deadline, record = excluded.record",
        )?;
        let mut delete =
            tx.prepare_cached("DELETE FROM visitors WHERE site_id = ?1 AND visitor_id = ?2")?;
        let mut upsert_visit = tx.prepare_cached(
            "INSERT INTO open_visits (site_id, visitor_id, visit) VALUES (?1, ?2, ?3)
             ON CONFLICT (site_id, visitor_id) DO UPDATE SET visit = excluded.visit",
        )?;
        let mut delete_visit =
            tx.prepare_cached("DELETE FROM open_visits WHERE site_id = ?1 AND visitor_id = ?2")?;
        let to_sql = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
        for BatchVisitor {
            site,
            id: visitor_id,
            current,
            visit_changed,
        } in &batch.visitors
        {
            match current {
                Some(v) => {
                    let json = match &v.value.visit {
                        None => serde_json::to_string(&*v.value).map_err(to_sql)?,
                        Some(visit) => {
                            // The record's row without its visit (a copy sharing the visit).
                            let mut bare = VisitorRecord::clone(&v.value);
                            bare.visit = None;
                            if *visit_changed {
                                let json = serde_json::to_string(&**visit).map_err(to_sql)?;
                                upsert_visit.execute(params![site.0, visitor_id, json])?;
                            }
                            serde_json::to_string(&bare).map_err(to_sql)?
                        }
                    };
                    if v.value.visit.is_none() && *visit_changed {
                        delete_visit.execute(params![site.0, visitor_id])?;
                    }
                    upsert.execute(params![
                        site.0,
                        visitor_id,
                        i64::try_from(v.version.0).unwrap_or(i64::MAX),
                        v.value.deadline.as_millis(),
                        json
                    ])?;
                }
                None => {
                    delete.execute(params![site.0, visitor_id])?;
                    delete_visit.execute(params![site.0, visitor_id])?;
                }
            }
        }
        let mut sequence = tx.prepare_cached(
            "INSERT INTO sequences (site_id, value) VALUES (?1, ?2)
             ON CONFLICT (site_id) DO UPDATE SET value = excluded.value",
        )?;
        for (site, value) in &batch.sequences {
            sequence.execute(params![site.0, i64::try_from(*value).unwrap_or(i64::MAX)])?;
        }
        let mut lookup = tx.prepare_cached(
            "INSERT INTO enrichment_cache (ip, expires_at, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (ip) DO UPDATE SET
                expires_at = excluded.expires_at, record = excluded.record",
        )?;
        for (ip, entry) in &batch.lookups {
            let json = serde_json::to_string(entry)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            lookup.execute(params![ip.to_string(), entry.expires_at.as_millis(), json])?;
        }
        let mut stats = tx.prepare_cached(
            "INSERT INTO enrichment_stats (site_id, record) VALUES (?1, ?2)
             ON CONFLICT (site_id) DO UPDATE SET record = excluded.record",
        )?;
        for (site, counters) in &batch.stats {
            let json = serde_json::to_string(counters)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            stats.execute(params![site.0, json])?;
        }
        let mut log =
            tx.prepare_cached("INSERT INTO alert_log (site_id, record) VALUES (?1, ?2)")?;
        let mut trim = tx.prepare_cached(
            "DELETE FROM alert_log WHERE site_id = ?1 AND n NOT IN
             (SELECT n FROM alert_log WHERE site_id = ?1 ORDER BY n DESC LIMIT ?2)",
        )?;
        for (site, entry, keep) in &batch.alert_log {
            let json = serde_json::to_string(entry)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            log.execute(params![site.0, json])?;
            trim.execute(params![site.0, i64::try_from(*keep).unwrap_or(i64::MAX)])?;
        }
        let mut audit =
            tx.prepare_cached("INSERT INTO audit_log (site_id, at, record) VALUES (?1, ?2, ?3)")?;
        let mut expire =
            tx.prepare_cached("DELETE FROM audit_log WHERE site_id = ?1 AND at < ?2")?;
        for (entry, keep_after) in &batch.audit_log {
            let json = serde_json::to_string(entry)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            audit.execute(params![entry.site.0, entry.at.as_millis(), json])?;
            expire.execute(params![entry.site.0, keep_after.as_millis()])?;
        }
        let mut upsert_user = tx.prepare_cached(
            "INSERT INTO users (site_id, user_id, version, deadline, record)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site_id, user_id) DO UPDATE SET
                version = excluded.version, deadline = excluded.deadline, record = excluded.record",
        )?;
        let mut delete_user =
            tx.prepare_cached("DELETE FROM users WHERE site_id = ?1 AND user_id = ?2")?;
        for (site, user_id, current) in &batch.users {
            match current {
                Some(v) => {
                    let json = serde_json::to_string(&*v.value)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    upsert_user.execute(params![
                        site.0,
                        user_id,
                        i64::try_from(v.version.0).unwrap_or(i64::MAX),
                        v.value.deadline.as_millis(),
                        json
                    ])?;
                }
                None => {
                    delete_user.execute(params![site.0, user_id])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn put_site_row(tx: &Transaction<'_>, site: &Site) -> Result<(), rusqlite::Error> {
    let json = serde_json::to_string(site)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute("DELETE FROM site_keys WHERE site_id = ?1", [&site.id.0])?;
    tx.execute(
        "INSERT INTO sites (id, record) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        params![site.id.0, json],
    )?;
    for h in site.key_hashes() {
        tx.execute(
            "INSERT OR REPLACE INTO site_keys (key_hash, site_id) VALUES (?1, ?2)",
            params![h.to_hex(), site.id.0],
        )?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let generation = self.put_site_now(site);
        // Sites are configuration: always wait for the commit, so an error surfaces.
        self.committed(generation).await
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        let mut sites: Vec<Site> = self.state().sites.values().cloned().collect();
        sites.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(sites)
    }

    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError> {
        let state = self.state();
        Ok(state
            .keys
            .get(key)
            .and_then(|id| state.sites.get(id))
            .cloned())
    }

    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.state().sites.get(id).cloned())
    }

    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.state().tickets.spend(site, token, now, until))
    }

    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError> {
        Ok(self
            .state()
            .visitors
            .get(site)
            .and_then(|s| s.records.get(visitor_id))
            .map(unshare))
    }

    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let (version, generation) = self.save_visitor_now(site, record, expected)?;
        self.after_write(generation).await?;
        Ok(version)
    }

    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        let generation = self.remove_visitor_now(site, visitor_id, expected)?;
        self.after_write(generation).await
    }

    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError> {
        // Only the records' pointers are taken under the store's one lock; they are copied
        // after it is released, so a snapshot of a big site does not stall other sites' writes.
        let shared: Vec<Arc<VisitorRecord>> = self
            .state()
            .visitors
            .get(site)
            .map(|s| s.records.values().cloned().collect())
            .unwrap_or_default();
        Ok(shared.iter().map(|v| (**v).clone()).collect())
    }

    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self
            .state()
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
            .state()
            .visitors
            .get(site)
            .map(|s| s.records.due(now, limit).map(unshare).collect())
            .unwrap_or_default())
    }

    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .state()
            .visitors
            .get(site)
            .and_then(|s| s.records.next_deadline()))
    }

    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError> {
        let (value, generation) = self.advance_sequence_now(site, by)?;
        self.after_write(generation).await?;
        Ok(value)
    }

    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError> {
        Ok(self.state().visitors.get(site).map_or(0, |s| s.sequence))
    }

    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError> {
        Ok(self.state().lookups.get(&ip).cloned())
    }

    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError> {
        let generation = self.put_cached_lookup_now(ip, entry);
        self.after_write(generation).await
    }

    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError> {
        Ok(self.state().stats.get(site).cloned().unwrap_or_default())
    }

    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &AlertLogEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        let generation = {
            let mut state = self.state();
            state.alert_logs.push(site, entry.clone(), keep);
            state
                .pending
                .alert_log
                .push((site.clone(), entry.clone(), keep));
            self.queued(state)
        };
        self.after_write(generation).await
    }

    async fn alert_log(
        &self,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<AlertLogEntry>, StoreError> {
        Ok(self.state().alert_logs.latest(site, limit))
    }

    async fn log_audit(&self, entry: &AuditEntry, keep_after: Timestamp) -> Result<(), StoreError> {
        let generation = {
            let mut state = self.state();
            state.audit_logs.push(entry.clone(), keep_after);
            state.pending.audit_log.push((entry.clone(), keep_after));
            self.queued(state)
        };
        self.after_write(generation).await
    }

    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.state().audit_logs.latest(site, since, limit))
    }

    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let generation = self.record_enrichment_now(site, events);
        self.after_write(generation).await
    }

    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        Ok(self
            .state()
            .users
            .get(site)
            .and_then(|s| s.get(user_id))
            .map(unshare))
    }

    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let (version, generation) = self.save_user_now(site, record, expected)?;
        self.after_write(generation).await?;
        Ok(version)
    }

    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        let generation = self.remove_user_now(site, user_id, expected)?;
        self.after_write(generation).await
    }

    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError> {
        // As for visitors: pointers under the lock, copies after it.
        let shared: Vec<Arc<UserRecord>> = self
            .state()
            .users
            .get(site)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        Ok(shared.iter().map(|v| (**v).clone()).collect())
    }

    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        Ok(self.state().users.get(site).map_or(0, |s| s.len()))
    }

    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError> {
        Ok(self
            .state()
            .users
            .get(site)
            .map(|s| s.due(now, limit).map(unshare).collect())
            .unwrap_or_default())
    }

    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.state().users.get(site).and_then(|s| s.next_deadline()))
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // Group commit: the writer commits everything pending at once, without waiting for
        // the commit interval, and every caller waiting meanwhile shares that commit.
        self.flush().await
    }
}
