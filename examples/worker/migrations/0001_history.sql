-- Visit history (tippen_worker::D1History) in the D1 database bound as TIPPEN_HISTORY.
-- Apply with `npx wrangler d1 migrations apply tippen-history --remote` (production) or
-- `--local` (wrangler dev); see docs/workers.md. Each record is its JSON (`body`, the core's
-- serde form) next to the columns the queries index; the store keeps no logic.

-- Closed visits, one row per (site, visit id).
--   started_at  epoch ms (range queries, newest first, cursors)
--   visitor_id  the visitor (visit numbers, erasure)
--   company     the company key, ASCII lower case (NULL: unidentified)
--   country     the country code, ASCII upper case (NULL: unknown)
--   paths       the JSON array of the visit's page paths (the page filter)
--   puts        how many times the visit was put (1 after the insert: `put_visit`'s answer)
CREATE TABLE tippen_visits (
  site TEXT NOT NULL,
  visit_id TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  visitor_id TEXT NOT NULL,
  company TEXT,
  country TEXT,
  paths TEXT NOT NULL,
  puts INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (site, visit_id)
);
-- Time ranges newest first (with the cursor's tie-break on visit_id), and the purge.
CREATE INDEX tippen_visits_by_start ON tippen_visits (site, started_at, visit_id);
-- One visitor's visits (visit numbers on every close, erasure). Ending in the answers' order
-- (started_at, visit_id), so SQLite filters and orders with it rather than scanning the site's
-- visits by start (EXPLAIN QUERY PLAN); the same for the company index.
CREATE INDEX tippen_visits_by_visitor ON tippen_visits (site, visitor_id, started_at, visit_id);
-- One company's visits (the company page).
CREATE INDEX tippen_visits_by_company ON tippen_visits (site, company, started_at, visit_id)
  WHERE company IS NOT NULL;

-- Rollups, one row per (site, scope kind, company key or '', bucket start in epoch ms), with
-- the version their conditional writes compare.
CREATE TABLE tippen_rollups (
  site TEXT NOT NULL,
  kind TEXT NOT NULL,
  company TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  version INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (site, kind, company, bucket)
);
-- Every company's buckets in a range (the companies list), and the purge.
CREATE INDEX tippen_rollups_by_bucket ON tippen_rollups (site, kind, bucket);
