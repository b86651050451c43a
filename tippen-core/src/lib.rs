//! # tippen-core
//!
//! The pure core of tippen: who is on a site right now, the wire protocol of the trackers and
//! dashboards, and the HTTP contract, shared unchanged by every host (axum, AWS Lambda,
//! Cloudflare Workers).
//!
//! It is sans-IO in the manner of quinn-proto and str0m:
//!
//! - **No clock.** Time comes from an injected [`Clock`]; pure functions take `now`.
//!   `Instant` and `SystemTime::now()` do not appear (it builds for `wasm32-unknown-unknown`).
//!   Randomness (invite ids) comes from an injected [`IdGenerator`]: [`SecureIds`] (the
//!   platform's secure source) by default, [`SeededIds`] in deterministic tests.
//! - **No IO.** Records live behind the async [`Store`] trait (see its contract: versioned,
//!   conditional writes), which each host implements on its storage.
//! - **No broadcasting.** Every operation returns what happened — dashboard messages numbered
//!   with the site's sequence — and the host fans them out.
//! - **Deadlines out.** Time-driven work (a visitor whose grace has passed) is reported as a
//!   deadline; the host wakes up then and calls [`Tippen::sweep`] — with a tokio timer, a
//!   Durable Object alarm or a scheduled Lambda.
//!
//! ## The drive loop
//!
//! Input (a request, with the clock's `now`) → events out (response + broadcasts) → the next
//! deadline. Invariants a host keeps:
//!
//! 1. Send every message of [`Handled::broadcasts`](api::Handled) to the site's dashboards, in
//!    order, before the next operation's messages for that site (hosts with one owner per site
//!    run [`Tippen::route`] → lock → [`Tippen::execute`] → fan out → unlock).
//! 2. Keep, per site, the earliest deadline seen; at that moment call [`Tippen::sweep`] and
//!    re-arm at the deadline it returns. Spurious or late calls are harmless.
//! 3. Hand every [`Handled::lookups`](api::Handled) (enrichment lookups the shared cache could
//!    not answer) to a [`LookupPlanner`](enrichment::LookupPlanner) owned by the host, without
//!    delaying the response; when a lookup settles, call [`Tippen::cache_lookup`] once, then
//!    [`Tippen::complete_lookup`] for each waiting visitor under its site's lock, and fan out
//!    what it returns.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use bytes::Bytes;
//! use tippen_core::{api::RequestContext, Clock, Config, ManualClock, MemoryStore, Site, SiteId, Timestamp, Tippen};
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_729_080_000_000)));
//! let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock.clone(), Config::default());
//! tippen.put_site(&Site::legacy("demo", "Demo", "demo_api_key")).await.unwrap();
//!
//! // Input: a page view (the predecessor's exact request).
//! let req = http::Request::post("/track/visitor")
//!     .header("X-Tippen-API-Key", "demo_api_key")
//!     .body(Bytes::from_static(br#"{"event":"pageview","visitor":{"visitorId":"test","url":"https://test.com","timestamp":"2025-10-16T12:00:00Z"},"website":"test.com"}"#))
//!     .unwrap();
//! let handled = tippen.handle(req, &RequestContext::default()).await;
//! assert_eq!(handled.response.body().as_ref(), br#"{"success":true,"sessionId":"test"}"#);
//!
//! // Events out: one VISITOR_UPDATE for the site's dashboards.
//! assert!(handled.broadcasts[0].starts_with(r#"{"type":"VISITOR_UPDATE""#));
//!
//! // Deadline out: 60 s later the visitor is due.
//! let due = handled.deadline.unwrap();
//! assert_eq!(due, clock.now().plus(Duration::from_secs(60)));
//!
//! // The host's timer fires at the deadline: sweep.
//! clock.set(due);
//! let outcome = tippen.sweep(&SiteId::from("demo")).await.unwrap();
//! assert!(outcome.messages[0].to_json().contains(r#""reason":"inactive""#));
//! assert_eq!(outcome.deadline, None); // nothing left to wait for
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod assets;
pub mod clock;
pub mod config;
pub mod enrichment;
pub mod ids;
pub mod invite;
pub mod memory;
pub mod presence;
pub mod protocol;
pub mod records;
pub mod service;
pub mod site;
pub mod slack;
pub mod store;
pub mod support;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod video;

#[cfg(not(target_arch = "wasm32"))]
pub use clock::SystemClock;
pub use clock::{Clock, ManualClock, Timestamp};
pub use config::{Config, Limits, PresenceConfig};
pub use ids::{IdGenerator, SecureIds, SeededIds};
pub use memory::MemoryStore;
pub use service::{
    ClientInfo, InviteChange, LookupRequest, Outcome, ServiceError, SupportOverview, Tippen,
};
pub use site::{KeyHash, KeyRole, Site, SiteId};
pub use store::{Store, StoreError, Version, Versioned};
pub use transport::{Transport, TransportError};
