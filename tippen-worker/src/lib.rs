#![doc = include_str!("../README.md")]
//!
//! ## Design
//!
//! The way the predecessor ran: one Durable Object per site, WebSocket hibernation, one alarm
//! per object.
//!
//! ```text
//!  request ──► Worker: fetch() ──────────────┐  static assets, preflights, every error
//!              (sites from TIPPEN_SITES,     │  the core answers without a site: here
//!               keys → site id)              │
//!                     │ site-scoped work     ▼
//!                     └──► Durable Object idFromName(<site id>): SiteObject
//!                           · tippen_core::Tippen over DurableObjectStore (SQLite storage)
//!                           · dashboards and visitor channels: hibernatable WebSockets,
//!                             tagged `dashboard` / `visitor:<id>` (the tag is the role)
//!                           · one alarm at the core's next deadline → sweep → re-arm
//!                             (and, at most hourly, the history retention purge)
//!                           · closed visits → D1History (the D1 binding TIPPEN_HISTORY,
//!                             shared by every site's object), when bound
//!                           · every Effects the core answers with applied through
//!                             tippen_core::host::apply (one HostIo for the object)
//! ```
//!
//! The adapter is thin: [`fetch`] and [`SiteObject`] convert the runtime's requests to
//! `http::Request<Bytes>` and back and leave routing, validation, status codes, error bodies
//! and CORS to [`tippen_core::api`]. The Worker authenticates the presented key against the
//! configured sites (in memory) and forwards to the Durable Object named after the **site id**
//! — never after the raw key, and never for an unknown key. The object runs the request
//! through the core again with its own storage, which makes it the single owner of the site:
//! it handles one event at a time and its SQL storage is synchronous, so a read-modify-write
//! is atomic and dashboards receive messages in sequence order.
//!
//! Time comes from `Date.now()` ([`WorkerClock`]), ids from `crypto.getRandomValues`
//! (the core's default `SecureIds`), the client's address from `CF-Connecting-IP`; the video provider of
//! `POST /api/video-call` is called with the runtime's `fetch` ([`FetchTransport`]). Configuration is described
//! in [`config`].
//!
//! The storage is the crate `tippen-cloudflare`, re-exported as [`store`] ([`DurableObjectStore`]
//! and the shared enrichment cache) and [`history`] ([`D1History`]), so any other Worker can
//! use it too.
//!
//! Company enrichment (`TIPPEN_ENRICHMENT_PROVIDER`): each site's object runs the lookups the
//! core asks for in the background with `fetch`; the cache is shared by all sites through the
//! KV namespace bound as `TIPPEN_ENRICHMENT_CACHE` (see [`store`]).
//!
//! Visit history (`/api/visits`, `/api/companies`, `/api/analytics`): with a D1 database bound
//! as [`HISTORY_BINDING`] each site's object keeps closed visits and rollups there
//! ([`D1History`]; the tables are the migrations in `examples/worker/migrations`), with the
//! client's country and city from the request's `cf` object, and purges them past the site's
//! retention (`historyRetentionDays`, 90 days by default) from its alarm, at most hourly. Without the binding history is off (the API answers 501).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod config;
pub mod convert;
mod enrich;
mod front;
mod object;
mod runtime;
mod transport;

pub use config::{ConfigError, WorkerConfig};
pub use front::{
    GEO_CITY_HEADER, GEO_COUNTRY_HEADER, HISTORY_SUITE_PATH, SITE_HEADER, SITE_OBJECT_BINDING,
    STORE_SUITE_PATH, fetch,
};
pub use object::{DASHBOARD_TAG, SiteObject, visitor_tag};
pub use runtime::WorkerClock;
pub use tippen_cloudflare::{
    D1History, DurableObjectStore, ENRICHMENT_CACHE_BINDING, HISTORY_BINDING, history, store,
};
pub use transport::FetchTransport;
