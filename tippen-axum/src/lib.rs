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

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod enrich;
mod host;
mod ip;
mod slack;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use enrich::EnrichmentConfig;
pub use host::{HostConfig, HostError, TippenHost};
pub use ip::{InvalidProxy, TrustedProxies};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteDurability, SqliteError, SqliteOptions, SqliteStore};
pub use tippen_http::HttpTransport;
