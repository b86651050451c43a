//! [`D1History`]: the [`HistoryStore`] on a Cloudflare D1 database (the binding
//! [`HISTORY_BINDING`]), shared by every site's Durable Object.
//!
//! The schema is a D1 migration, `examples/worker/migrations/0001_history.sql` (apply it with
//! `wrangler d1 migrations apply <database> --remote`; see `docs/workers.md`):
//!
//! - `tippen_visits(site, visit_id, started_at, visitor_id, company, country, paths, puts,
//!   body)`, primary key `(site, visit_id)`, indexed by `(site, started_at, visit_id)`,
//!   `(site, visitor_id, started_at, visit_id)` and `(site, company, started_at, visit_id)`
//!   (each serves its filter and the newest-first order, so SQLite picks it over the start
//!   index): each visit as JSON
//!   (`body`) next to the columns the queries filter on. `company` is the company key in ASCII
//!   lower case and `country` the country code in upper case, so the case-insensitive filters
//!   of [`VisitFilter`] are equality on an index; `paths` is the JSON array of the visit's page
//!   paths, for the page filter (`json_each`). `puts` counts the puts of a visit id: the
//!   upsert returns it, and `1` means the put inserted.
//! - `tippen_rollups(site, kind, company, bucket, version, body)`, primary key
//!   `(site, kind, company, bucket)` ([`RollupScope::kind`], [`RollupScope::company`], the
//!   bucket start in epoch milliseconds), indexed by `(site, kind, bucket)`; writes are
//!   conditional on `version` (`UPDATE … WHERE version = ?` or `INSERT … ON CONFLICT DO
//!   NOTHING`, and the changed-rows count tells a [`StoreError::Conflict`]).
//!
//! Every method is at most one D1 round trip (the purge's two deletes go in one batch, which
//! D1 runs as a transaction); the core remembers the rollups it last wrote, so a fold on the
//! close path is one conditional write, not a read and a write. The store keeps records and answers queries; what a visit is and how
//! rollups count is the core's ([`tippen_core::history`]). Several objects (and requests of
//! one object, which interleave while D1 answers) may write at once: visits are upserts by id,
//! rollups conditional writes the core retries.
//!
//! Timestamps are bound as JavaScript numbers (D1 has no 64-bit integer parameters): epoch
//! milliseconds are exact up to 2^53, and the open ends of a range (`i64::MIN`/`MAX`) compare
//! correctly as the nearest doubles.

use async_trait::async_trait;
use serde::Deserialize;
use tippen_core::history::{
    HistoryStore, PutVisit, Rollup, RollupKey, RollupQuery, RollupScope, RollupSelect, Visit,
    VisitCursor, VisitFilter, VisitQuery,
};
use tippen_core::{SiteId, StoreError, Timestamp, Version, Versioned};
use wasm_bindgen::JsValue;
use worker::send::SendFuture;
use worker::{D1Database, D1PreparedStatement, D1Result};

/// The D1 database binding holding visit history (`[[d1_databases]]` `binding` in
/// `wrangler.toml`). Without it, history is off (the history API answers `501`).
pub const HISTORY_BINDING: &str = "TIPPEN_HISTORY";

/// Visit history in D1. See the [module docs](self) for the schema.
#[derive(Debug)]
pub struct D1History {
    db: D1Database,
}

/// One bound parameter.
enum Arg<'a> {
    Text(&'a str),
    /// Bound as a JavaScript number (exact up to 2^53).
    Int(i64),
    Null,
}

impl Arg<'_> {
    fn js(&self) -> JsValue {
        match self {
            Arg::Text(s) => JsValue::from_str(s),
            Arg::Int(i) => JsValue::from_f64(*i as f64),
            Arg::Null => JsValue::NULL,
        }
    }
}

fn ms(t: Timestamp) -> Arg<'static> {
    Arg::Int(t.as_millis())
}

fn opt(s: Option<&str>) -> Arg<'_> {
    s.map_or(Arg::Null, Arg::Text)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("D1: {e}"))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// The `company` column: the company key in ASCII lower case.
fn company_column(key: &str) -> String {
    key.to_ascii_lowercase()
}

/// The `country` column: the country code in ASCII upper case.
fn country_column(code: &str) -> String {
    code.to_ascii_uppercase()
}

/// A row holding a JSON record.
#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

/// A row holding a versioned JSON record.
#[derive(Deserialize)]
struct VersionedRow {
    version: f64,
    body: String,
}

/// A row holding a count.
#[derive(Deserialize)]
struct PutsRow {
    puts: f64,
}

fn visits_of(result: &D1Result) -> Result<Vec<Visit>, StoreError> {
    result
        .results::<BodyRow>()
        .map_err(backend)?
        .iter()
        .map(|row| serde_json::from_str(&row.body).map_err(|e| corrupt("visit", e)))
        .collect()
}

fn rollups_of(result: &D1Result) -> Result<Vec<Versioned<Rollup>>, StoreError> {
    result
        .results::<VersionedRow>()
        .map_err(backend)?
        .iter()
        .map(|row| {
            Ok(Versioned {
                version: version_of(row.version)?,
                value: serde_json::from_str(&row.body).map_err(|e| corrupt("rollup", e))?,
            })
        })
        .collect()
}

fn version_of(v: f64) -> Result<Version, StoreError> {
    if v.fract() == 0.0 && v >= 0.0 {
        Ok(Version(v as u64))
    } else {
        Err(corrupt("rollup version", v))
    }
}

/// How many rows a write changed.
fn changes(result: &D1Result) -> Result<usize, StoreError> {
    if let Some(error) = result.error() {
        return Err(backend(error));
    }
    Ok(result
        .meta()
        .map_err(backend)?
        .and_then(|m| m.changes)
        .unwrap_or(0))
}

impl D1History {
    /// A store on `db` (from `env.d1(HISTORY_BINDING)`). The tables must exist: apply the
    /// migrations first.
    pub fn new(db: D1Database) -> Self {
        D1History { db }
    }

    fn statement(&self, sql: &str, args: &[Arg<'_>]) -> Result<D1PreparedStatement, StoreError> {
        let values: Vec<JsValue> = args.iter().map(Arg::js).collect();
        self.db.prepare(sql).bind(&values).map_err(backend)
    }

    /// Runs one statement and returns its rows and metadata.
    async fn all(&self, sql: &str, args: &[Arg<'_>]) -> Result<D1Result, StoreError> {
        let result = self.statement(sql, args)?.all().await.map_err(backend)?;
        match result.error() {
            Some(error) => Err(backend(error)),
            None => Ok(result),
        }
    }

    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        let company = visit.company.as_ref().map(|c| company_column(&c.key()));
        let country = visit.place.country.as_deref().map(country_column);
        let paths: Vec<&str> = visit.pages.iter().map(|p| &*p.path).collect();
        let result = self
            .all(
                "INSERT INTO tippen_visits \
                 (site, visit_id, started_at, visitor_id, company, country, paths, puts, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8) \
                 ON CONFLICT (site, visit_id) DO UPDATE SET \
                 started_at = excluded.started_at, visitor_id = excluded.visitor_id, \
                 company = excluded.company, country = excluded.country, \
                 paths = excluded.paths, puts = tippen_visits.puts + 1, body = excluded.body \
                 RETURNING puts",
                &[
                    Arg::Text(site.as_str()),
                    Arg::Text(&visit.visit_id),
                    ms(visit.started_at),
                    Arg::Text(&visit.visitor_id),
                    opt(company.as_deref()),
                    opt(country.as_deref()),
                    Arg::Text(&encode(&paths)?),
                    Arg::Text(&encode(visit)?),
                ],
            )
            .await?;
        let puts = result
            .results::<PutsRow>()
            .map_err(backend)?
            .first()
            .map(|r| r.puts)
            .ok_or_else(|| backend("the upsert returned no row"))?;
        Ok(if puts == 1.0 {
            PutVisit::Inserted
        } else {
            PutVisit::Replaced
        })
    }

    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError> {
        let result = self
            .all(
                "SELECT body FROM tippen_visits WHERE site = ?1 AND visit_id = ?2",
                &[Arg::Text(site.as_str()), Arg::Text(visit_id)],
            )
            .await?;
        Ok(visits_of(&result)?.pop())
    }

    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // Every field of the filter, so a new one does not compile until it is queried here.
        let VisitFilter {
            company,
            page,
            country,
            visitor,
        } = &query.filter;
        let company = company.as_deref().map(company_column);
        let country = country.as_deref().map(country_column);
        // A cursor narrows the range's upper end (so the scan starts at the cursor) and breaks
        // the tie on its start by id. Written as `OR` rather than a row value, which SQLite's
        // planner would answer from the start index alone, ignoring the visitor and company
        // indexes (checked with EXPLAIN QUERY PLAN).
        let to = match &query.after {
            Some(c) => query.to.min(Timestamp::from_millis(
                c.started_at.as_millis().saturating_add(1),
            )),
            None => query.to,
        };
        let mut sql = String::from(
            "SELECT body FROM tippen_visits WHERE site = ? AND started_at >= ? AND started_at < ?",
        );
        let mut args = vec![Arg::Text(site.as_str()), ms(query.from), ms(to)];
        if let Some(VisitCursor {
            started_at,
            visit_id,
        }) = &query.after
        {
            sql.push_str(" AND (started_at < ? OR (started_at = ? AND visit_id < ?))");
            args.extend([ms(*started_at), ms(*started_at), Arg::Text(visit_id)]);
        }
        for (column, value) in [
            ("company", company.as_deref()),
            ("country", country.as_deref()),
            ("visitor_id", visitor.as_deref()),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Arg::Text(value));
            }
        }
        if let Some(page) = page {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(tippen_visits.paths) WHERE value = ?)",
            );
            args.push(Arg::Text(page));
        }
        sql.push_str(" ORDER BY started_at DESC, visit_id DESC LIMIT ?");
        args.push(Arg::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)));
        let result = self.all(&sql, &args).await?;
        // The columns answer the filter exactly; the core's definition has the last word.
        Ok(visits_of(&result)?
            .into_iter()
            .filter(|v| query.matches(v))
            .collect())
    }

    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError> {
        let result = self
            .all(
                "DELETE FROM tippen_visits WHERE site = ?1 AND visitor_id = ?2 RETURNING body",
                &[Arg::Text(site.as_str()), Arg::Text(visitor_id)],
            )
            .await?;
        visits_of(&result)
    }

    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        let result = self
            .all(
                "SELECT version, body FROM tippen_rollups \
                 WHERE site = ?1 AND kind = ?2 AND company = ?3 AND bucket = ?4",
                &[
                    Arg::Text(site.as_str()),
                    Arg::Text(key.scope.kind()),
                    Arg::Text(key.scope.company()),
                    ms(key.bucket),
                ],
            )
            .await?;
        Ok(rollups_of(&result)?.pop())
    }

    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let key = &rollup.key;
        let body = encode(rollup)?;
        let (sql, version, args) = match expected {
            None => (
                "INSERT INTO tippen_rollups (site, kind, company, bucket, version, body) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT DO NOTHING",
                Version(1),
                vec![
                    Arg::Text(site.as_str()),
                    Arg::Text(key.scope.kind()),
                    Arg::Text(key.scope.company()),
                    ms(key.bucket),
                    Arg::Text(&body),
                ],
            ),
            Some(Version(current)) => (
                "UPDATE tippen_rollups SET version = ?6, body = ?5 \
                 WHERE site = ?1 AND kind = ?2 AND company = ?3 AND bucket = ?4 AND version = ?7",
                Version(current + 1),
                vec![
                    Arg::Text(site.as_str()),
                    Arg::Text(key.scope.kind()),
                    Arg::Text(key.scope.company()),
                    ms(key.bucket),
                    Arg::Text(&body),
                    Arg::Int(i64::try_from(current + 1).map_err(|e| corrupt("version", e))?),
                    Arg::Int(i64::try_from(current).map_err(|e| corrupt("version", e))?),
                ],
            ),
        };
        let result = self.statement(sql, &args)?.run().await.map_err(backend)?;
        match changes(&result)? {
            1 => Ok(version),
            _ => Err(StoreError::Conflict),
        }
    }

    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let company_kind = RollupScope::Company(String::new());
        let (scope, company) = match &query.select {
            RollupSelect::Site => (RollupScope::Site.kind(), Some(RollupScope::Site.company())),
            RollupSelect::Companies => (company_kind.kind(), None),
            RollupSelect::Company(c) => (company_kind.kind(), Some(c.as_str())),
        };
        let mut sql = String::from(
            "SELECT version, body FROM tippen_rollups \
             WHERE site = ? AND kind = ? AND bucket >= ? AND bucket < ?",
        );
        let mut args = vec![
            Arg::Text(site.as_str()),
            Arg::Text(scope),
            ms(query.from),
            ms(query.to),
        ];
        if let Some(company) = company {
            sql.push_str(" AND company = ?");
            args.push(Arg::Text(company));
        }
        let result = self.all(&sql, &args).await?;
        Ok(rollups_of(&result)?
            .into_iter()
            .map(|v| v.value)
            .filter(|r| query.contains(&r.key))
            .collect())
    }

    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        let statements = vec![
            self.statement(
                "DELETE FROM tippen_visits WHERE site = ?1 AND started_at < ?2",
                &[Arg::Text(site.as_str()), ms(before)],
            )?,
            self.statement(
                "DELETE FROM tippen_rollups WHERE site = ?1 AND bucket < ?2",
                &[Arg::Text(site.as_str()), ms(before)],
            )?,
        ];
        let results = self.db.batch(statements).await.map_err(backend)?;
        let mut counts = Vec::with_capacity(results.len());
        for result in &results {
            counts.push(changes(result)?);
        }
        Ok(counts.first().copied().unwrap_or(0) as u64)
    }
}

// The runtime is single-threaded: the JS futures below never cross threads (`SendFuture`
// only satisfies the trait's `Send` bound on native builds).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl HistoryStore for D1History {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        SendFuture::new(D1History::put_visit(self, site, visit)).await
    }

    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError> {
        SendFuture::new(D1History::visit(self, site, visit_id)).await
    }

    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        SendFuture::new(D1History::visits(self, site, query)).await
    }

    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError> {
        SendFuture::new(D1History::erase_visitor(self, site, visitor_id)).await
    }

    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        SendFuture::new(D1History::rollup(self, site, key)).await
    }

    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        SendFuture::new(D1History::save_rollup(self, site, rollup, expected)).await
    }

    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        SendFuture::new(D1History::rollups(self, site, query)).await
    }

    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        SendFuture::new(D1History::purge(self, site, before)).await
    }
}
