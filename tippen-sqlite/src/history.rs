//! [`SqliteHistory`]: a [`HistoryStore`] on a SQLite file, normally the
//! same file as the [`SqliteStore`](crate::SqliteStore) (its own connection and tables; WAL
//! lets both write).
//!
//! Unlike the live store, history is not held in memory (it grows with every visit): each
//! call is one indexed query, run on a thread of the history's own that owns its connection,
//! one call after the other; the calling task awaits the answer. They take milliseconds, and a
//! write may wait seconds for the live store's writer (one writer per SQLite file, SQLite's
//! busy handler sleeping meanwhile): on the calling task that stalled the async runtime's
//! thread and every request on it (`strace` of the reference server at 10,000 visitors: 516
//! busy-handler sleeps, 1.4 s in 25 s). Writes are committed when they return: a closed visit
//! is durable before the live record it came from is removed (see [`tippen_core::history`]).
//!
//! Those commits never wait for the disk: with `synchronous=NORMAL` a WAL commit only appends,
//! and the checkpoints (which `fsync` the log and the file, tens of milliseconds each) run on a
//! thread of the history's own every [`CHECKPOINT_EVERY`], not in the committing call as
//! SQLite's automatic checkpoint would — there they stalled the async runtime's thread, and
//! with it every request, up to 60 ms at a time under load (`strace` of the reference server at
//! 5,000 visitors: 370 `fsync`s on the runtime's thread in 25 s).
//!
//! Schema (tables created on open, next to the live store's):
//!
//! ```sql
//! history_visits  (site_id, visit_id, started_at, visitor_id, company, country, record)
//!                 UNIQUE (site_id, visit_id)
//!                 INDEX (site_id, started_at, visit_id)          -- time range, newest first
//!                 INDEX (site_id, visitor_id, started_at)        -- numbering, erasure
//!                 INDEX (site_id, company, started_at)           -- a company's timeline
//! history_rollups (site_id, kind, company, bucket, version, record, visits)
//!                 PRIMARY KEY (site_id, kind, company, bucket)
//!                 INDEX history_rollups_by_bucket (site_id, kind, bucket, company, visits)
//! ```
//!
//! `company` is the visit's company key in lower case, `country` its country code; `record`
//! is the rollup as JSON, or the visit in [`compact`] form
//! (older rows: the visit's full JSON, still read). The page filter is applied on the rows the indexed filters
//! return, in batches.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    Connection, OptionalExtension, Transaction, TransactionBehavior, params, params_from_iter,
    types::Value,
};
use tippen_core::history::{
    HistoryStore, PutVisit, Rollup, RollupKey, RollupQuery, RollupSelect, Visit, VisitQuery,
    compact,
};
use tippen_core::{SiteId, StoreError, Timestamp, Version, Versioned};

use crate::store::SqliteError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS history_visits (
    site_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    visitor_id TEXT NOT NULL,
    company TEXT,
    country TEXT,
    record TEXT NOT NULL,
    UNIQUE (site_id, visit_id)
);
CREATE INDEX IF NOT EXISTS history_visits_by_start
    ON history_visits (site_id, started_at, visit_id);
CREATE INDEX IF NOT EXISTS history_visits_by_visitor
    ON history_visits (site_id, visitor_id, started_at);
CREATE INDEX IF NOT EXISTS history_visits_by_company
    ON history_visits (site_id, company, started_at);
CREATE TABLE IF NOT EXISTS history_rollups (
    site_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    company TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    visits INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, kind, company, bucket)
) WITHOUT ROWID;
";

/// Added after the tables above (an older file gains them on open): the visits of each
/// rollup as a column, and an index covering the companies' ranking over a range of buckets
/// ([`HistoryStore::top_company_rollups`]).
const RANKING: &str = "
CREATE INDEX IF NOT EXISTS history_rollups_by_bucket
    ON history_rollups (site_id, kind, bucket, company, visits);
";

/// Rows fetched per round when a filter must be checked on the rows (the page filter).
const BATCH: usize = 200;

/// Visit history in a SQLite file. See the [module docs](self).
#[derive(Debug)]
pub struct SqliteHistory {
    /// The thread that owns the connection and runs the calls, in order.
    calls: Calls,
    /// The checkpoint thread of a file in WAL mode; it ends when this is dropped.
    _checkpoints: Option<Checkpoints>,
}

/// One call for the history's thread: it runs with the connection and sends its own answer.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// The thread that owns a history's connection and runs its calls one after the other (see
/// the [module docs](self)). Dropping this ends it once the calls already sent have run.
#[derive(Debug)]
struct Calls {
    queue: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
}

impl Calls {
    fn start(mut conn: Connection) -> Result<Self, SqliteError> {
        let (queue, calls) = mpsc::channel::<Call>();
        let thread = std::thread::Builder::new()
            .name("tippen-sqlite-history".into())
            .spawn(move || {
                // Ends when the history (the sender) is dropped. A call that panics drops
                // its answer's sender, so its caller gets an error; the thread goes on.
                for call in calls {
                    if catch_unwind(AssertUnwindSafe(|| call(&mut conn))).is_err() {
                        tracing::error!("a history call panicked on the SQLite history thread");
                    }
                }
            })
            .map_err(SqliteError::Thread)?;
        Ok(Calls {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    fn send(&self, call: Call) -> Result<(), StoreError> {
        self.queue
            .as_ref()
            .and_then(|q| q.send(call).ok())
            .ok_or_else(stopped)
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        // The thread runs what was sent, then closes the connection; wait for it so the file
        // is closed once the history is gone.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite history thread stopped".into())
}

/// How often the checkpoint thread copies the WAL into the file (a passive checkpoint: it
/// never blocks a writer; what a reader still needs is copied the next time).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The thread that checkpoints a history file's WAL (see the [module docs](self)). Dropping
/// this ends it.
#[derive(Debug)]
struct Checkpoints {
    _stop: mpsc::Sender<()>,
}

impl Checkpoints {
    /// Starts checkpointing the file at `path` on a connection and thread of its own.
    fn start(path: &Path) -> Result<Self, SqliteError> {
        let open_err = |source| SqliteError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("tippen-sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the history (the sender) is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(file = %shown, error = %e, "history checkpoint failed");
                    }
                }
            })
            .map_err(SqliteError::Thread)?;
        Ok(Checkpoints { _stop: stop })
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn company_key(v: &Visit) -> Option<String> {
    v.company.as_ref().map(|c| c.key().to_lowercase())
}

impl SqliteHistory {
    /// Opens (creating when needed) the history tables in the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let path = path.as_ref();
        let open_err = |source| SqliteError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // A file in WAL mode is checkpointed by a thread of its own, not by the commits (an
        // in-memory database has no WAL).
        let checkpoints = if mode.eq_ignore_ascii_case("wal") {
            let checkpoints = Checkpoints::start(path)?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(open_err)?;
            Some(checkpoints)
        } else {
            None
        };
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let has_visits: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('history_rollups') WHERE name = 'visits'")
            .and_then(|mut s| s.exists([]))
            .map_err(open_err)?;
        if !has_visits {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 ALTER TABLE history_rollups ADD COLUMN visits INTEGER NOT NULL DEFAULT 0;
                 UPDATE history_rollups
                    SET visits = COALESCE(json_extract(record, '$.visits'), 0);
                 COMMIT;",
            )
            .map_err(open_err)?;
        }
        conn.execute_batch(RANKING).map_err(open_err)?;
        Ok(SqliteHistory {
            calls: Calls::start(conn)?,
            _checkpoints: checkpoints,
        })
    }

    /// A history in memory (tests).
    pub fn in_memory() -> Result<Self, SqliteError> {
        Self::open(":memory:")
    }

    /// Runs `call` on the history's thread and awaits its answer.
    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.calls.send(Box::new(move |conn| {
            let _ = answer.send(call(conn));
        }))?;
        answered.await.map_err(|_| stopped())?
    }

    /// Runs `call` on the history's thread and blocks the calling thread until it answers
    /// (the synchronous calls, for imports and benchmarks).
    fn run_blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.calls.send(Box::new(move |conn| {
            let _ = answer.send(call(conn));
        }))?;
        answered.recv().map_err(|_| stopped())?
    }

    /// Upserts many visits in one transaction (an import; the benchmark's bulk load). What
    /// each put did, in order. Rollups are the caller's (fold the inserted ones).
    pub fn put_visits(&self, site: &SiteId, visits: &[Visit]) -> Result<Vec<PutVisit>, StoreError> {
        let rows: Vec<VisitRow> = visits.iter().map(|v| VisitRow::new(site, v)).collect();
        self.run_blocking(move |conn| {
            let tx = immediate(conn).map_err(backend)?;
            let puts = rows
                .iter()
                .map(|row| put_one(&tx, row))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(backend)?;
            Ok(puts)
        })
    }

    /// Bytes the file's history tables and indexes take (SQLite's `dbstat`), for the
    /// benchmark of stored bytes per visit; `None` when the build lacks `dbstat`.
    pub fn stored_bytes(&self) -> Option<u64> {
        self.run_blocking(|conn| {
            Ok(conn
                .query_row(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'history_visits%' \
                     OR name LIKE 'sqlite_autoindex_history_visits%'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
                .map(|n| n as u64))
        })
        .ok()
        .flatten()
    }
}

/// A visit as its row: the columns, encoded on the calling task (the history's thread only
/// runs SQL).
struct VisitRow {
    site_id: String,
    visit_id: String,
    started_at: i64,
    visitor_id: String,
    company: Option<String>,
    country: Option<String>,
    record: String,
}

impl VisitRow {
    fn new(site: &SiteId, visit: &Visit) -> Self {
        VisitRow {
            site_id: site.as_str().to_owned(),
            visit_id: visit.visit_id.clone(),
            started_at: visit.started_at.as_millis(),
            visitor_id: visit.visitor_id.clone(),
            company: company_key(visit),
            country: visit.place.country.as_deref().map(str::to_ascii_uppercase),
            record: compact::encode(visit),
        }
    }
}

/// Upserts one visit inside `tx`.
fn put_one(tx: &rusqlite::Transaction<'_>, row: &VisitRow) -> Result<PutVisit, StoreError> {
    let existed = tx
        .prepare_cached("SELECT 1 FROM history_visits WHERE site_id = ?1 AND visit_id = ?2")
        .and_then(|mut s| s.exists(params![row.site_id, row.visit_id]))
        .map_err(backend)?;
    tx.prepare_cached(
        "INSERT INTO history_visits \
         (site_id, visit_id, started_at, visitor_id, company, country, record) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (site_id, visit_id) DO UPDATE SET started_at = excluded.started_at, \
         visitor_id = excluded.visitor_id, company = excluded.company, \
         country = excluded.country, record = excluded.record",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.site_id,
            row.visit_id,
            row.started_at,
            row.visitor_id,
            row.company,
            row.country,
            row.record,
        ])
    })
    .map_err(backend)?;
    Ok(if existed {
        PutVisit::Replaced
    } else {
        PutVisit::Inserted
    })
}

/// A visit row: its record ([`compact`] form, or the full JSON of older rows) with the
/// columns that form leaves out.
fn decode_visit(
    site: &SiteId,
    visit_id: &str,
    visitor_id: &str,
    started_at: i64,
    text: &str,
) -> Result<Visit, StoreError> {
    compact::decode(
        site,
        visit_id,
        visitor_id,
        Timestamp::from_millis(started_at),
        text,
    )
    .map_err(corrupt)
}

#[async_trait]
impl HistoryStore for SqliteHistory {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        let row = VisitRow::new(site, visit);
        self.run(move |conn| {
            let tx = immediate(conn).map_err(backend)?;
            let put = put_one(&tx, &row)?;
            tx.commit().map_err(backend)?;
            Ok(put)
        })
        .await
    }

    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError> {
        let (site, visit_id) = (site.clone(), visit_id.to_owned());
        self.run(move |conn| {
            let row: Option<(String, String, i64)> = conn
                .prepare_cached(
                    "SELECT record, visitor_id, started_at FROM history_visits \
                     WHERE site_id = ?1 AND visit_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![site.as_str(), visit_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(backend)?;
            row.map(|(text, visitor, started)| {
                decode_visit(&site, &visit_id, &visitor, started, &text)
            })
            .transpose()
        })
        .await
    }

    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // The indexed filters in SQL; the rest (the page) on the rows, in batches.
        let mut sql = String::from(
            "SELECT record, started_at, visit_id, visitor_id FROM history_visits \
             WHERE site_id = ? AND started_at >= ? AND started_at < ?",
        );
        let mut args: Vec<Value> = vec![
            Value::Text(site.as_str().to_owned()),
            Value::Integer(query.from.as_millis()),
            Value::Integer(query.to.as_millis()),
        ];
        if let Some(c) = &query.filter.company {
            sql.push_str(" AND company = ?");
            args.push(Value::Text(c.to_lowercase()));
        }
        if let Some(c) = &query.filter.country {
            sql.push_str(" AND country = ?");
            args.push(Value::Text(c.to_ascii_uppercase()));
        }
        if let Some(v) = &query.filter.visitor {
            sql.push_str(" AND visitor_id = ?");
            args.push(Value::Text(v.clone()));
        }
        sql.push_str(
            " AND (started_at, visit_id) < (?, ?) ORDER BY started_at DESC, visit_id DESC LIMIT ?",
        );
        let batch = if query.filter.page.is_some() {
            BATCH.max(query.limit)
        } else {
            query.limit
        };
        let (mut at, mut id) = match &query.after {
            Some(c) => (c.started_at.as_millis(), c.visit_id.clone()),
            None => (i64::MAX, String::new()),
        };
        if query.after.is_none() {
            // Every id sorts before this one, so the first page starts at the newest visit.
            id = "\u{10FFFF}".to_owned();
        }
        let (site, query) = (site.clone(), query.clone());
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let mut out = Vec::new();
            loop {
                let mut round = args.clone();
                round.push(Value::Integer(at));
                round.push(Value::Text(id.clone()));
                round.push(Value::Integer(batch as i64));
                let rows: Vec<(String, i64, String, String)> = stmt
                    .query_map(params_from_iter(round), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(backend)?;
                let fetched = rows.len();
                for (text, started, visit_id, visitor) in rows {
                    let visit = decode_visit(&site, &visit_id, &visitor, started, &text)?;
                    if query.filter.matches(&visit) {
                        out.push(visit);
                        if out.len() == query.limit {
                            return Ok(out);
                        }
                    }
                    (at, id) = (started, visit_id);
                }
                if fetched < batch {
                    return Ok(out);
                }
            }
        })
        .await
    }

    /// Counts on the visitor's index: the default reads the visits through [`visits`](
    /// HistoryStore::visits), whose query SQLite runs on the time index (for its order), so
    /// numbering one closing visit scanned every visit of the site since the epoch — the
    /// expiry sweep's main cost under load (issue 18).
    async fn count_visits(
        &self,
        site: &SiteId,
        visitor_id: &str,
        before: Timestamp,
        max: usize,
    ) -> Result<usize, StoreError> {
        let (site, visitor_id) = (site.clone(), visitor_id.to_owned());
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM history_visits \
                     INDEXED BY history_visits_by_visitor \
                     WHERE site_id = ?1 AND visitor_id = ?2 AND started_at >= 0 \
                     AND started_at < ?3 LIMIT ?4)",
                )
                .map_err(backend)?;
            let n: i64 = stmt
                .query_row(
                    params![
                        site.as_str(),
                        visitor_id,
                        before.as_millis(),
                        i64::try_from(max).unwrap_or(i64::MAX)
                    ],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError> {
        let (site, visitor_id) = (site.clone(), visitor_id.to_owned());
        self.run(move |conn| {
            let tx = immediate(conn).map_err(backend)?;
            let rows: Vec<(String, String, i64)> = tx
                .prepare_cached(
                    "SELECT record, visit_id, started_at FROM history_visits \
                     WHERE site_id = ?1 AND visitor_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![site.as_str(), visitor_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(backend)?;
            tx.prepare_cached("DELETE FROM history_visits WHERE site_id = ?1 AND visitor_id = ?2")
                .and_then(|mut s| s.execute(params![site.as_str(), visitor_id]))
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            rows.iter()
                .map(|(text, id, started)| decode_visit(&site, id, &visitor_id, *started, text))
                .collect()
        })
        .await
    }

    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        let (site, kind, company, bucket) = (
            site.clone(),
            key.scope.kind(),
            key.scope.company().to_owned(),
            key.bucket.as_millis(),
        );
        let row: Option<(i64, String)> = self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT version, record FROM history_rollups \
                     WHERE site_id = ?1 AND kind = ?2 AND company = ?3 AND bucket = ?4",
                )
                .and_then(|mut s| {
                    s.query_row(params![site.as_str(), kind, company, bucket], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(backend)
            })
            .await?;
        row.map(|(version, text)| {
            Ok(Versioned {
                version: Version(version as u64),
                value: serde_json::from_str(&text).map_err(corrupt)?,
            })
        })
        .transpose()
    }

    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let record = serde_json::to_string(rollup).map_err(corrupt)?;
        let visits = i64::try_from(rollup.visits).unwrap_or(i64::MAX);
        let key = &rollup.key;
        let (site, kind, company, bucket) = (
            site.clone(),
            key.scope.kind(),
            key.scope.company().to_owned(),
            key.bucket.as_millis(),
        );
        self.run(move |conn| {
            let (changed, version) = match expected {
                None => (
                    conn.prepare_cached(
                        "INSERT INTO history_rollups \
                         (site_id, kind, company, bucket, version, record, visits) \
                         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6) ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            site.as_str(),
                            kind,
                            company,
                            bucket,
                            record,
                            visits
                        ])
                    })
                    .map_err(backend)?,
                    Version(1),
                ),
                Some(v) => (
                    conn.prepare_cached(
                        "UPDATE history_rollups SET version = version + 1, record = ?6, \
                         visits = ?7 WHERE site_id = ?1 AND kind = ?2 AND company = ?3 \
                         AND bucket = ?4 AND version = ?5",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            site.as_str(),
                            kind,
                            company,
                            bucket,
                            v.0 as i64,
                            record,
                            visits
                        ])
                    })
                    .map_err(backend)?,
                    Version(v.0 + 1),
                ),
            };
            if changed == 1 {
                Ok(version)
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let (kind, company) = match &query.select {
            RollupSelect::Site => ("site", None),
            RollupSelect::Companies => ("company", None),
            RollupSelect::Company(c) => ("company", Some(c.clone())),
        };
        let (site, from, to) = (site.clone(), query.from.as_millis(), query.to.as_millis());
        let texts: Vec<String> = self
            .run(move |conn| {
                match company {
                    None => conn
                        .prepare_cached(
                            "SELECT record FROM history_rollups WHERE site_id = ?1 \
                             AND kind = ?2 AND bucket >= ?3 AND bucket < ?4",
                        )
                        .and_then(|mut s| {
                            s.query_map(params![site.as_str(), kind, from, to], |r| r.get(0))?
                                .collect()
                        }),
                    Some(c) => conn
                        .prepare_cached(
                            "SELECT record FROM history_rollups WHERE site_id = ?1 \
                             AND kind = ?2 AND company = ?3 AND bucket >= ?4 AND bucket < ?5",
                        )
                        .and_then(|mut s| {
                            s.query_map(params![site.as_str(), kind, c, from, to], |r| r.get(0))?
                                .collect()
                        }),
                }
                .map_err(backend)
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(corrupt))
            .collect()
    }

    async fn top_company_rollups(
        &self,
        site: &SiteId,
        query: &RollupQuery,
        top: usize,
    ) -> Result<Vec<Rollup>, StoreError> {
        if query.select != RollupSelect::Companies {
            return self.rollups(site, query).await;
        }
        let (site, from, to) = (site.clone(), query.from.as_millis(), query.to.as_millis());
        let texts: Vec<String> = self
            .run(move |conn| {
                // The ranking from the covering index: one small row per company.
                let mut totals: Vec<(String, i64)> = conn
                    .prepare_cached(
                        "SELECT company, SUM(visits) FROM history_rollups \
                         WHERE site_id = ?1 AND kind = 'company' AND bucket >= ?2 \
                         AND bucket < ?3 GROUP BY company",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![site.as_str(), from, to], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect()
                    })
                    .map_err(backend)?;
                totals.retain(|(_, visits)| *visits > 0);
                totals.sort_unstable_by_key(|t| std::cmp::Reverse(t.1));
                // Everyone tied with the last of the first `top` (the summaries break ties by
                // what only the rollups hold).
                if top == 0 {
                    totals.clear();
                } else if let Some(&(_, last)) = totals.get(top - 1) {
                    totals.retain(|(_, visits)| *visits >= last);
                }
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT record FROM history_rollups WHERE site_id = ?1 \
                         AND kind = 'company' AND company = ?2 AND bucket >= ?3 AND bucket < ?4",
                    )
                    .map_err(backend)?;
                let mut texts = Vec::new();
                for (company, _) in &totals {
                    let rows: Vec<String> = stmt
                        .query_map(params![site.as_str(), company, from, to], |r| r.get(0))
                        .and_then(|rows| rows.collect())
                        .map_err(backend)?;
                    texts.extend(rows);
                }
                Ok(texts)
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(corrupt))
            .collect()
    }

    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        let site = site.clone();
        self.run(move |conn| {
            let tx = immediate(conn).map_err(backend)?;
            let n = tx
                .execute(
                    "DELETE FROM history_visits WHERE site_id = ?1 AND started_at < ?2",
                    params![site.as_str(), before.as_millis()],
                )
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM history_rollups WHERE site_id = ?1 AND bucket < ?2",
                params![site.as_str(), before.as_millis()],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }
}

/// A write transaction that takes the write lock at `BEGIN IMMEDIATE`, where the busy timeout
/// applies: the live store's writer commits to the same file from another connection, and a
/// deferred transaction upgrading from read to write would fail at once with "database is
/// locked" instead of waiting.
fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}
