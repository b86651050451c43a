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
//!   deadline; the host wakes up then and calls [`Tippen::handle_timeout`] — with a tokio timer, a
//!   Durable Object alarm or a scheduled Lambda.
//!
//! ## The drive loop
//!
//! Input (a request, a socket frame, a deadline, a settled lookup — with the clock's `now`)
//! → one [`Effects`] value out → applied by the host through [`host::apply`] and its small
//! [`host::HostIo`]. Invariants a host keeps (and [`host::apply`] keeps for it):
//!
//! 1. Apply each [`Effects`] before the next input's for the same site; hosts with one owner
//!    per site run [`Tippen::route`] → lock → [`Tippen::execute`] → [`host::apply`] → unlock,
//!    so dashboards see a site's broadcasts in sequence order.
//! 2. Apply in the one order: broadcasts, visitor pushes (a delivered invite reported once
//!    per push), the deadline, lookups, notifications; the response or reply is sent last.
//! 3. Keep, per site, the deadline [`Effects::deadline`] asks for ([`Deadline::merge`]); at
//!    that moment call [`Tippen::handle_timeout`] and apply what it returns. Spurious or late
//!    calls are harmless.
//! 4. Start [`Effects::lookups`] without delaying the answer; when a lookup settles, apply
//!    what [`enrichment::steps::Answer::give`] returns for each waiting visitor.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use bytes::Bytes;
//! use tippen_core::{api::RequestContext, Clock, Config, Deadline, ManualClock, MemoryStore, Site, SiteId, Timestamp, Tippen};
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
//! let effects = tippen.handle(req, &RequestContext::default()).await;
//! assert_eq!(effects.response.as_ref().unwrap().body().as_ref(), br#"{"success":true,"sessionId":"test"}"#);
//!
//! // Effects out: one VISITOR_UPDATE for the site's dashboards, serialized once.
//! assert!(effects.broadcasts[0].text.starts_with(r#"{"type":"VISITOR_UPDATE""#));
//!
//! // Deadline out: 60 s later the visitor is due.
//! let due = effects.deadline.unwrap().at().unwrap();
//! assert_eq!(due, clock.now().plus(Duration::from_secs(60)));
//!
//! // The host's timer fires at the deadline.
//! clock.set(due);
//! let swept = tippen.handle_timeout(&SiteId::from("demo")).await.unwrap();
//! assert!(swept.broadcasts[0].text.contains(r#""reason":"inactive""#));
//! assert_eq!(swept.deadline, Some(Deadline::Exactly(None))); // nothing left to wait for
//! # }).unwrap();
//! ```
//!
//! A host applies effects through [`host::apply`]; see the [`host`] module for the order.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
#[cfg(feature = "assets")]
pub mod assets;
pub mod clock;
pub mod config;
pub mod effects;
pub mod enrichment;
pub mod host;
pub mod ids;
pub mod invite;
pub mod memory;
pub mod presence;
pub mod protocol;
pub mod records;
pub mod service;
pub mod settings;
pub mod site;
#[cfg(feature = "slack")]
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
pub use config::{Config, Limits, PresenceConfig, PrivacyConfig, SocketUrls};
pub use effects::{Broadcast, Deadline, Effects, VisitorPush};
pub use ids::{IdGenerator, SecureIds, SeededIds};
pub use memory::MemoryStore;
pub use service::{
    ClientInfo, InviteChange, LookupRequest, Outcome, ServiceError, SupportOverview, Tippen,
};
pub use site::{KeyHash, KeyRole, Site, SiteId};
pub use store::{Store, StoreError, Version, Versioned};
pub use transport::{Transport, TransportError};
