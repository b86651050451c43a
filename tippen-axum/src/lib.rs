#![doc = include_str!("../README.md")]
//!
//! ## Design
//!
//! The adapter is thin: it converts axum requests to `http::Request<Bytes>` and back, owns the
//! sockets, locks, timers and storage, and leaves routing, validation, status codes, error
//! bodies and CORS to [`tippen_core::api`]. Per site, every write runs under one lock and its
//! dashboard messages are published before the lock is released, so concurrent pings for one
//! visitor never lose an update and dashboards see messages in sequence order. There is no
//! tower-http `CorsLayer`: the core sets the CORS headers and answers preflights itself.
//!
//! On the open internet, serve with [`serve`] instead of `axum::serve`: it caps open
//! connections and closes slow or idle ones ([`ServeConfig`]). The host itself times out slow
//! bodies (408), answers an over-limit body's 413 while draining the rest (lingering close),
//! closes silent WebSockets and rate-limits per client address and per key (429 with
//! `Retry-After`): [`HostConfig`], [`RateLimits`]. Those counters are per process unless the
//! host is given a [`SharedLimiter`] ([`TippenHost::with_shared_limits`]), which replicas
//! share (`tippen_redis::RedisRateLimiter`). The core's socket quotas
//! ([`tippen_core::quota`]: open sockets per site and per client address, snapshots per
//! dashboard) are counted per process: an upgrade over one is refused with `429` before
//! upgrading, and a socket's place is freed when its session ends.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod bus;
mod enrich;
mod host;
mod ip;
mod limit;
mod quota;
mod serve;
mod slack;

pub use bus::Bus;
pub use enrich::EnrichmentConfig;
pub use host::{Authorize, HostConfig, HostError, TippenHost};
pub use ip::{InvalidProxy, TrustedProxies};
pub use limit::{LimitScope, RateLimit, RateLimits, SharedLimiter};
pub use serve::{ServeConfig, serve};
pub use tippen_http::HttpTransport;
/// The SQLite stores (the crate `tippen-sqlite`, re-exported with the feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use tippen_sqlite as sqlite;
#[cfg(feature = "sqlite")]
pub use tippen_sqlite::{SqliteDurability, SqliteError, SqliteHistory, SqliteOptions, SqliteStore};
