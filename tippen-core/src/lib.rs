#![doc = include_str!("../README.md")]
//!
//! ## Design
//!
//! Sans-IO in the manner of quinn-proto and str0m:
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
//! A host applies effects through [`host::apply`]; see the [`host`] module for the order.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod alerts;
pub mod api;
#[cfg(feature = "assets")]
pub mod assets;
pub mod audit;
pub mod clock;
pub mod config;
pub mod effects;
pub mod enrichment;
pub mod history;
pub mod host;
pub mod ids;
pub mod invite;
pub mod memory;
pub mod notify;
pub mod presence;
pub mod protocol;
pub mod quota;
pub mod rate;
pub mod records;
pub mod service;
pub mod settings;
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
pub use config::{Config, Limits, PresenceConfig, PrivacyConfig, SocketUrls};
pub use effects::{Broadcast, Deadline, Effects, VisitorPush};
pub use ids::{IdGenerator, SecureIds, SeededIds};
pub use memory::MemoryStore;
pub use service::{
    ClientInfo, InviteChange, LookupRequest, Outcome, ServiceError, SupportOverview, Tippen,
};
pub use site::{IdentityError, IdentitySecret, KeyHash, KeyRole, Site, SiteId};
pub use store::{Store, StoreError, Version, Versioned};
pub use transport::{Transport, TransportError};
