//! Visit history: who came, from which company, what they read — kept after they leave.
//!
//! # The model
//!
//! A visit opens when presence creates a visitor and closes when presence removes it (reason
//! `left`, `inactive`). While it lasts it is an [`OpenVisit`] inside the live
//! [`VisitorRecord::visit`](crate::presence::VisitorRecord::visit): every event of the
//! visitor updates it in the same record write the live store does anyway, so there is no
//! history write per heartbeat (or per page view). When presence removes the visitor the core
//! closes it ([`OpenVisit::close`], pure) into a [`Visit`] and writes that to the
//! [`HistoryStore`] **before** the live record is removed; a deletion
//! (`DELETE /api/visitors/{id}`) writes nothing and erases the visitor's history.
//!
//! # What a crash can lose
//!
//! - The open visit is persisted with the live record, so a crash loses what the live store
//!   loses: nothing for stores durable on return (DynamoDB, Durable Objects, D1), at most the
//!   commit interval for a write-behind store (the axum host's SQLite store: 100 ms by
//!   default). After a restart the sweep finds the record due and closes its visit then.
//! - The close is written before the live removal, and is a pure function of the record, and
//!   stored by visit id ([`visit_id`]: a hash of visitor and start) with a replacing put: a
//!   close retried after a conflict or repeated after a crash writes the same visit again,
//!   never a second one.
//! - Rollups are folded once, when [`HistoryStore::put_visit`] reports the visit as
//!   [`PutVisit::Inserted`]; a crash between that put and the rollup writes leaves the visit
//!   stored and the rollups one visit short (the lists are exact, the aggregates may
//!   undercount by the visits closed in that instant).
//!
//! # The store contract (for implementers)
//!
//! A store keeps two kinds of records per site, and no logic:
//!
//! - **Visits**, keyed by `(site, visit_id)`. [`put_visit`](HistoryStore::put_visit) is an
//!   upsert reporting whether the id was new. [`visits`](HistoryStore::visits) answers a
//!   [`VisitQuery`]: visits with `from <= started_at < to` that pass
//!   [`VisitFilter::matches`] (company key, page path, country, visitor), strictly after the
//!   cursor, **newest first** by `(started_at, visit_id)`, at most `limit`. A store may
//!   evaluate the filter with its indexes or fetch by time and call
//!   [`VisitQuery::matches`]; either way the answer is the same.
//!   [`erase_visitor`](HistoryStore::erase_visitor) deletes (and returns) one visitor's
//!   visits; [`purge`](HistoryStore::purge) deletes visits started before a time and rollups
//!   whose bucket starts before it.
//! - **Rollups**, keyed by `(site, scope kind, company key, bucket)` ([`RollupKey`];
//!   [`RollupScope::kind`], [`RollupScope::company`], `bucket` in epoch milliseconds), each
//!   with a [`Version`](crate::store::Version): [`rollup`](HistoryStore::rollup) reads one,
//!   [`save_rollup`](HistoryStore::save_rollup) writes conditionally on the version read
//!   (like [`Store::save_visitor`](crate::Store::save_visitor)), and
//!   [`rollups`](HistoryStore::rollups) returns a [`RollupQuery`]'s range (one scope kind,
//!   optionally one company, `from <= bucket < to`). Site rollups are hourly, company rollups
//!   daily: 30 days are 720 site records, or one record per company and day.
//!
//! Records are opaque to the store: it may keep each as JSON (`serde_json`) next to the
//! columns it indexes (site, start, visit id, visitor, company key, country for visits; site,
//! kind, company, bucket for rollups). Sites are isolated. `testkit::run_history_suite`
//! (feature `testkit`) checks all of this against any implementation; [`MemoryHistory`]
//! passes it.
//!
//! # Where the data comes from
//!
//! Pages, times, referrer and UTM from the tracker's events; browser, OS and device class from
//! the user agent ([`Device::parse`], with `woothee`); the place from the host's request
//! geodata ([`RequestContext::place`](crate::api::RequestContext::place);
//! [`Place::from_headers`] reads CloudFront's and Cloudflare's headers) or else the
//! enrichment provider's company location; the company as enrichment left it when the visit
//! closed (a lookup that settled mid-visit counts); invites from the live record.

pub mod compact;
mod memory;
mod report;
mod rollup;
mod store;
mod visit;

pub use memory::MemoryHistory;
pub use report::{
    Analytics, Bucket, CompanySummary, Count, MAX_WINDOW, VISIT_CSV_HEADER, Window, analytics,
    companies_csv, company_summaries, csv_field, visit_csv_header, visit_csv_row,
};
pub use rollup::{
    DAY_MS, DURATION_BOUNDS_S, Fold, HOUR_MS, Rollup, RollupKey, RollupQuery, RollupScope,
    RollupSelect, Sketch, TOP_ENTRIES, TopCounts,
};
pub use store::{HistoryStore, PutVisit, VisitCursor, VisitFilter, VisitQuery};
pub use visit::{
    Device, DeviceClass, GeoHeaders, MAX_PAGES, OpenVisit, PageVisit, Place, Utm, Visit,
    VisitCompany, VisitInvite, VisitTab, host_of, path_of, visit_id,
};
