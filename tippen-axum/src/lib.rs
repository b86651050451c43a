//! # tippen-axum
//!
//! [tippen](tippen_core) hosted on [axum] and tokio: a [`Router`](axum::Router) serving the whole
//! HTTP and WebSocket contract (`docs/contract.md`), fan-out of dashboard messages per site and
//! of visitor pushes (the `/ws/visitor` channel: video invites the moment they are sent), a
//! timer per site driven by the core's deadlines, graceful shutdown, and — with the feature
//! `sqlite` — a [`Store`](tippen_core::Store) on a SQLite file that survives restarts.
//!
//! The adapter is thin: it converts axum requests to `http::Request<Bytes>` and back, owns the
//! sockets, locks, timers and storage, and leaves routing, validation, status codes, error
//! bodies and CORS to [`tippen_core::api`]. Per site, every write runs under one lock and its
//! dashboard messages are published before the lock is released, so concurrent pings for one
//! visitor never lose an update and dashboards see messages in sequence order.
//!
//! ## Embed in your axum app
//!
//! ```no_run
//! use std::{net::SocketAddr, sync::Arc};
//!
//! use axum::{Router, routing::get};
//! use tippen_axum::TippenHost;
//! use tippen_core::{Config, MemoryStore, Site, SystemClock, Tippen};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let store = Arc::new(MemoryStore::new()); // or tippen_axum::SqliteStore (feature `sqlite`)
//!     let tippen = Arc::new(Tippen::new(store, Arc::new(SystemClock), Config::default()));
//!     tippen.put_site(&Site::new("acme", "Acme", "pk_acme_public", "sk_acme_secret")).await?;
//!
//!     let host = TippenHost::new(tippen);
//!     host.arm_stored_deadlines().await?; // sweep what expired while the server was down
//!
//!     // Your routes, plus tippen's (`/track/visitor`, `/ws/dashboard`, `/dashboard`, ...).
//!     let app = Router::new()
//!         .route("/healthz", get(|| async { "ok" }))
//!         .merge(host.router());
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//!     let stopping = host.clone();
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .with_graceful_shutdown(async move {
//!             let _ = tokio::signal::ctrl_c().await;
//!             stopping.shutdown().await; // stop timers, close dashboard sockets
//!         })
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! On the open internet, serve with [`serve`] instead of `axum::serve`: it caps open
//! connections and closes slow or idle ones ([`ServeConfig`]). The host itself times out slow
//! bodies (408), answers an over-limit body's 413 while draining the rest (lingering close),
//! closes silent WebSockets and rate-limits per client address and per key (429 with
//! `Retry-After`): [`HostConfig`], [`RateLimits`].
//!
//! [`TippenHost::router`] has a fallback (the core answers unknown paths with its JSON 404), so
//! merge it into an app without a fallback of its own. There is no tower-http `CorsLayer`:
//! the core sets the CORS headers and answers preflights itself.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod enrich;
mod host;
mod ip;
mod limit;
mod serve;
mod slack;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use enrich::EnrichmentConfig;
pub use host::{HostConfig, HostError, TippenHost};
pub use ip::{InvalidProxy, TrustedProxies};
pub use limit::{RateLimit, RateLimits};
pub use serve::{ServeConfig, serve};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteDurability, SqliteError, SqliteOptions, SqliteStore};
pub use tippen_http::HttpTransport;
