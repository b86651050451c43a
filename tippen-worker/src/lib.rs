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
//! Company enrichment (`TIPPEN_ENRICHMENT_PROVIDER`): each site's object runs the lookups the
//! core asks for in the background with `fetch`; the cache is shared by all sites through the
//! KV namespace bound as `TIPPEN_ENRICHMENT_CACHE` (see [`store`]).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod config;
pub mod convert;
mod enrich;
mod front;
mod object;
mod runtime;
pub mod store;
mod transport;

pub use config::{ConfigError, WorkerConfig};
pub use front::{SITE_HEADER, SITE_OBJECT_BINDING, STORE_SUITE_PATH, fetch};
pub use object::{DASHBOARD_TAG, SiteObject, visitor_tag};
pub use runtime::WorkerClock;
pub use store::{DurableObjectStore, ENRICHMENT_CACHE_BINDING};
pub use transport::FetchTransport;
