//! [`TippenHost`]: the axum router, the per-site locks, broadcast channels and timers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use thiserror::Error;
use tippen_core::api::{ApiError, RequestContext, Routed, SiteCall, SocketRole, presented_key};
use tippen_core::host::{self as seam, HostIo};
use tippen_core::notify::Notice;
use tippen_core::quota::SnapshotBudget;
use tippen_core::rate::{Gate, RateLimit, too_many_from_address, too_many_with_key};
use tippen_core::{
    Broadcast, Deadline, Effects, KeyHash, LookupRequest, ServiceError, Site, SiteId, StoreError,
    Timestamp, Tippen, Transport, TransportError, VisitorPush,
};
use tokio::sync::{broadcast, mpsc, watch};
use tower_http::trace::TraceLayer;

use crate::bus::Bus;
use crate::enrich::{Enrichment, EnrichmentConfig};
use crate::ip::TrustedProxies;
use crate::limit::{LimitScope, Limiters, RateLimits, SharedLimiter};
use crate::quota::{SocketCounts, SocketSlot};
use crate::slack::Deliveries;
use tippen_http::HttpTransport;

/// Settings of the host itself (the core's settings are in [`tippen_core::Config`]).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the client. Empty by default.
    pub trusted_proxies: TrustedProxies,
    /// Messages buffered per site for slow dashboards; a dashboard that falls further behind
    /// is sent a fresh `INITIAL_VISITORS`. With a [`Bus`], also the messages buffered between
    /// the bus and the site's forwarder (beyond, they are replayed from the log). Default 1024.
    pub broadcast_capacity: usize,
    /// Largest WebSocket message accepted from a dashboard. Default 64 KiB.
    pub max_ws_message_bytes: usize,
    /// Lingering close: how much of an over-limit request body is still read and discarded
    /// after the 413 is answered, so that a client that sends its whole body before reading
    /// (most blocking HTTP clients) sees the answer rather than a broken pipe. A declared
    /// `Content-Length` beyond it is not waited for. Default 32 MiB.
    pub max_drain_bytes: usize,
    /// Lingering close: how long an over-limit body is read and discarded at most. Default
    /// 10 s.
    pub linger_timeout: Duration,
    /// A request body must arrive within this time (counted from its header); else
    /// `408 {"error":…}`. Default 30 s.
    pub body_read_timeout: Duration,
    /// A WebSocket (dashboard or visitor channel) from which nothing arrives for this long
    /// is closed; the host sends a ping every third of it, which browsers answer by
    /// themselves. Default 120 s.
    pub ws_idle_timeout: Duration,
    /// Rate limits per client address and per key (`429` with `Retry-After`).
    pub rate_limits: RateLimits,
    /// With shared limits ([`TippenHost::with_shared_limits`]): how long a check may take;
    /// a slower one lets the request through (fail open). Default 250 ms.
    pub shared_limits_timeout: Duration,
    /// A dashboard that does not take a message within this time is disconnected (it
    /// reconnects and resyncs). Default 30 s.
    pub ws_send_timeout: Duration,
    /// IP → company enrichment: the provider and its limits. `None` (default): every visitor
    /// keeps its fallback company.
    pub enrichment: Option<EnrichmentConfig>,
    /// Slack notifications of support alerts (the webhook, the dashboard's public URL,
    /// retries), sent on the outbound transport (each attempt limited by
    /// [`outbound_timeout`](Self::outbound_timeout)). `None` (default): alerts reach the
    /// dashboards only.
    pub slack: Option<tippen_core::slack::SlackConfig>,
    /// Time limit of an outbound call made while a client waits (the video provider of
    /// `POST /api/video-call`). Default 10 s.
    pub outbound_timeout: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            trusted_proxies: TrustedProxies::none(),
            broadcast_capacity: 1024,
            max_ws_message_bytes: 64 * 1024,
            max_drain_bytes: 32 * 1024 * 1024,
            linger_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            ws_idle_timeout: Duration::from_secs(120),
            rate_limits: RateLimits::default(),
            shared_limits_timeout: Duration::from_millis(250),
            ws_send_timeout: Duration::from_secs(30),
            enrichment: None,
            slack: None,
            outbound_timeout: Duration::from_secs(10),
        }
    }
}

/// Maps an embedding application's signed-in users to tippen's roles (see
/// [`TippenHost::router_with`]): the application keeps its own login (cookies, OIDC, ...) and
/// tells tippen who the request's user is, on which site, in which role.
///
/// ```
/// use tippen_axum::Authorize;
/// use tippen_core::api::Principal;
/// use tippen_core::{KeyRole, SiteId};
///
/// /// Everyone with the application's `staff=` cookie is an agent of the site `shop`.
/// struct Staff;
///
/// impl Authorize for Staff {
///     fn principal(&self, parts: &http::request::Parts) -> Option<Principal> {
///         let cookies = parts.headers.get(http::header::COOKIE)?.to_str().ok()?;
///         let name = cookies.split("; ").find_map(|c| c.strip_prefix("staff="))?;
///         // A real application looks its session up; this one trusts the cookie's name.
///         Some(Principal { site: SiteId::from("shop"), role: KeyRole::Agent, name: name.to_owned() })
///     }
/// }
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// The request's signed-in user, with their site and role; `None` when there is none.
    fn principal(&self, parts: &http::request::Parts) -> Option<tippen_core::api::Principal>;
}

/// `router` with a layer that puts `authorize`'s principal of each request (and only that:
/// one a request brought along is dropped) where the host reads it.
fn with_sessions(router: Router, authorize: impl Authorize) -> Router {
    let authorize = Arc::new(authorize);
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let authorize = authorize.clone();
            async move {
                let (mut parts, body) = req.into_parts();
                parts.extensions.remove::<tippen_core::api::Principal>();
                if let Some(principal) = authorize.principal(&parts) {
                    parts.extensions.insert(principal);
                }
                next.run(Request::from_parts(parts, body)).await
            }
        },
    ))
}

/// Why a host operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A core operation failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// tippen hosted on axum and tokio.
///
/// Cheap to clone (an `Arc`). Holds, per site, a lock that serializes the site's writes, a
/// broadcast channel to its dashboards and a timer task armed at the site's next deadline
/// (created lazily, or by [`arm_stored_deadlines`](Self::arm_stored_deadlines) at startup).
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct TippenHost {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TippenHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TippenHost")
            .field("tippen", &self.inner.tippen)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) tippen: Arc<Tippen>,
    config: HostConfig,
    /// The enrichment task's channel, when a provider is configured.
    enrichment: Option<Enrichment>,
    /// The Slack transport, when a webhook is configured.
    notifier: Option<Deliveries>,
    /// Outbound HTTP for requests that need it (the video provider).
    transport: Option<HttpTransport>,
    sites: Mutex<HashMap<SiteId, Arc<SiteState>>>,
    /// `true` once shutdown has begun; dropped with the host, which also stops the tasks.
    shutdown: watch::Sender<bool>,
    /// Timer tasks and dashboard sockets still running.
    active: Arc<Active>,
    /// The rate limits' buckets.
    limiters: Limiters,
    /// Where the rate limits are counted instead, shared with other replicas.
    shared_limits: OnceLock<Arc<dyn SharedLimiter>>,
    /// When the last "shared limits unavailable" warning was logged.
    shared_limits_warned: Mutex<Option<Instant>>,
    /// Carries dashboard messages between replicas; `None`: this process is the only one.
    bus: Option<Arc<dyn Bus>>,
    /// Open sockets per site and per client address, for the socket quotas.
    sockets: Arc<SocketCounts>,
}

/// One site's owner state.
pub(crate) struct SiteState {
    id: SiteId,
    /// Held around every write and sweep of the site, and around fanning out its messages,
    /// so dashboards receive them in sequence order.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// The site's dashboard messages.
    tx: broadcast::Sender<Utf8Bytes>,
    /// The site's visitor pushes; each visitor socket keeps the ones for its visitor.
    visitors: broadcast::Sender<Push>,
    /// Open visitor sockets per visitor: `(socket number)`s, so a push knows whether it
    /// reaches anyone.
    sockets: Mutex<HashMap<Arc<str>, Vec<u64>>>,
    /// The earliest deadline the timer must wake up for.
    armed: watch::Sender<Option<Timestamp>>,
    timer_started: AtomicBool,
    /// With a bus: the site's dashboards here and the task forwarding the bus's messages to
    /// them.
    following: tokio::sync::Mutex<Following>,
    /// The buckets of the site's keys when the site has its own per-key limit (with that
    /// limit, so a changed one starts afresh).
    key_gate: Mutex<Option<(RateLimit, Gate)>>,
}

/// A site followed on the bus while this replica holds dashboards of it.
#[derive(Default)]
struct Following {
    dashboards: usize,
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

/// Counts running tasks so shutdown can wait for them.
struct Active(watch::Sender<usize>);

struct ActiveGuard(Arc<Active>);

impl Active {
    fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.0.send_modify(|n| *n += 1);
        ActiveGuard(self.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The read buffer of a WebSocket session, allocated when the socket opens. Frames larger than it
/// still arrive whole (the buffer grows for them, up to the configured message limit).
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// At most one "shared limits unavailable" warning in this time (the others are debug logs).
const SHARED_LIMITS_WARN_EVERY: Duration = Duration::from_secs(10);

/// Resolves once shutdown has begun or the host is gone.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl TippenHost {
    /// A host for `tippen` (a `Tippen` or an `Arc<Tippen>`) with the default [`HostConfig`].
    pub fn new(tippen: impl Into<Arc<Tippen>>) -> Self {
        Self::with_config(tippen, HostConfig::default())
    }

    /// A host for `tippen` (a `Tippen` or an `Arc<Tippen>`) with `config`.
    pub fn with_config(tippen: impl Into<Arc<Tippen>>, config: HostConfig) -> Self {
        Self::build(tippen.into(), config, None)
    }

    /// A host that is one of several replicas sharing `tippen`'s store: its dashboards hear
    /// every replica's messages through `bus` (see [`Bus`]), and it sends none to them
    /// directly. The store must publish what it numbers
    /// ([`Store::publishes_broadcasts`](tippen_core::Store::publishes_broadcasts)), like
    /// `tippen_redis::RedisStore` does for `tippen_redis::RedisBus`.
    pub fn with_bus(tippen: impl Into<Arc<Tippen>>, config: HostConfig, bus: Arc<dyn Bus>) -> Self {
        let tippen: Arc<Tippen> = tippen.into();
        if !tippen.store().publishes_broadcasts() {
            tracing::error!("the store publishes no broadcasts: dashboards will hear nothing");
        }
        Self::build(tippen, config, Some(bus))
    }

    /// The host with its rate limits ([`HostConfig::rate_limits`] and sites' own
    /// [`rate_limit_per_key`](Site::rate_limit_per_key)) counted in `limiter`, shared with
    /// every replica that uses it, instead of in this process: N replicas then allow a limit
    /// once, not N times. The answers over a limit are the same (`429 {"error":…}` with
    /// `Retry-After`). When `limiter` fails or takes longer than
    /// [`HostConfig::shared_limits_timeout`], the request is let through (fail open) and a
    /// warning is logged. `tippen_redis::RedisRateLimiter` is the limiter on Redis.
    ///
    /// Call it before serving; a second call is ignored (with an error logged).
    pub fn with_shared_limits(self, limiter: Arc<dyn SharedLimiter>) -> Self {
        if self.inner.shared_limits.set(limiter).is_err() {
            tracing::error!("the host already has shared limits; the new limiter is ignored");
        }
        self
    }

    fn build(tippen: Arc<Tippen>, config: HostConfig, bus: Option<Arc<dyn Bus>>) -> Self {
        let enrichment = config.enrichment.clone().map(Enrichment::new);
        let config_limits = config.rate_limits.clone();
        let transport = HttpTransport::new(config.outbound_timeout)
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the outbound HTTP client"))
            .ok();
        let notifier = match &transport {
            Some(t) => Some(Deliveries::new(
                t.clone(),
                tippen_core::notify::Notifier::new(config.slack.clone(), tippen.config()),
                tippen.clone(),
            )),
            None => {
                tracing::error!("no outbound HTTP client: Slack and webhook notifications are off");
                None
            }
        };
        TippenHost {
            inner: Arc::new(Inner {
                tippen,
                config,
                enrichment,
                notifier,
                transport,
                sites: Mutex::new(HashMap::new()),
                shutdown: watch::Sender::new(false),
                active: Arc::new(Active(watch::Sender::new(0))),
                limiters: Limiters::new(&config_limits),
                shared_limits: OnceLock::new(),
                shared_limits_warned: Mutex::new(None),
                bus,
                sockets: Arc::default(),
            }),
        }
    }

    /// The core service.
    pub fn tippen(&self) -> &Arc<Tippen> {
        &self.inner.tippen
    }

    /// The host's settings.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// The router serving the whole contract (`docs/contract.md`): every path goes to the
    /// core, `/ws/dashboard` upgrades to the dashboard WebSocket and `/ws/visitor` to the
    /// visitor channel. Merge it into your app
    /// (`app.merge(host.router())`); it has a fallback (the core's JSON 404), so the app it
    /// is merged into must not have one of its own. To serve tippen under a path prefix
    /// instead, beside an app's own routes and fallback, use [`router_at`](Self::router_at).
    ///
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the client's
    /// address is known. A tower-http `TraceLayer` is included. There is deliberately no
    /// `CorsLayer`: CORS answers (preflights and `Access-Control-Allow-Origin`) are the core's,
    /// like every other part of the contract.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws/dashboard", any(socket_route))
            // The core routes paths with a trailing slash like those without.
            .route("/ws/dashboard/", any(socket_route))
            .route("/ws/visitor", any(socket_route))
            .route("/ws/visitor/", any(socket_route))
            .fallback(http_route)
            .layer(TraceLayer::new_for_http())
            .with_state(self.clone())
    }

    /// [`router`](Self::router) under `prefix` (`"/tippen"`), for an application that serves
    /// its own routes beside tippen's: tippen's paths become `/tippen/track/visitor`,
    /// `/tippen/ws/dashboard`, `/tippen/dashboard`, `/tippen/tippen-tracker.js`, ..., and tippen
    /// answers every path under the prefix (`/tippen` and `/tippen/` are its root), unknown ones
    /// with its JSON 404. It has no fallback, so merge it into an app that may have routes,
    /// state (given first, with `with_state`) and a fallback of its own:
    ///
    /// ```text
    /// let app = Router::new().route("/", get(home)).fallback(not_found).with_state(state)
    ///     .merge(host.router_at("/tippen"));
    /// ```
    ///
    /// It is `Router::new().nest(prefix, host.router())` plus the one path axum's `nest` does
    /// not route into a nested router, `{prefix}/`. The pages tippen serves (dashboard, demo)
    /// and its trackers find its endpoints under the prefix they were served from.
    ///
    /// # Panics
    ///
    /// When `prefix` does not start with `/`, ends with `/`, or is `/` (at the root, merge
    /// [`router`](Self::router) itself).
    pub fn router_at(&self, prefix: &str) -> Router {
        assert!(
            prefix.len() > 1 && prefix.starts_with('/') && !prefix.ends_with('/'),
            "tippen's prefix must start with '/' and not end with one, got {prefix:?}"
        );
        Router::new().nest(prefix, self.router()).route(
            &format!("{prefix}/"),
            any(prefix_root)
                .layer(TraceLayer::new_for_http())
                .with_state(self.clone()),
        )
    }

    /// [`router`](Self::router) whose requests without a key are authorized by the
    /// application's own sign-in: `authorize` maps each request (its cookies, its bearer
    /// token, whatever the application checks) to a [`Principal`](tippen_core::api::Principal)
    /// — a site, a role and the person's name — or to `None` (then a key is needed, as
    /// always). tippen authorizes that person like a member token of that role, records their
    /// name on their invites and in the audit log. A request presenting a key is the key's.
    /// Dashboards' sockets open with a ticket of `POST /api/ws-ticket`, which the session may
    /// ask for.
    pub fn router_with(&self, authorize: impl Authorize) -> Router {
        with_sessions(self.router(), authorize)
    }

    /// [`router_at`](Self::router_at) with [`router_with`](Self::router_with)'s sessions.
    pub fn router_at_with(&self, prefix: &str, authorize: impl Authorize) -> Router {
        with_sessions(self.router_at(prefix), authorize)
    }

    /// Arms every stored site's timer at its next stored deadline, so visitors whose grace
    /// passed while the server was down are swept at once. Call it once at startup. Returns
    /// how many sites have a deadline.
    pub async fn arm_stored_deadlines(&self) -> Result<usize, HostError> {
        let tippen = &self.inner.tippen;
        let mut armed = 0;
        for site in tippen.store().sites().await? {
            if let Some(deadline) = tippen.next_deadline(&site.id).await? {
                let state = self.site(&site.id);
                self.arm(&state, Deadline::AtMost(deadline));
                armed += 1;
            }
        }
        tracing::info!(sites = armed, "armed stored deadlines");
        Ok(armed)
    }

    /// Purges visit history past each site's retention now and then every `every`, until
    /// shutdown ([`Tippen::purge_expired_history`]; nothing without a history store).
    pub fn spawn_history_purge(&self, every: Duration) {
        if self.tippen().history().is_none() {
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            let mut shutdown = host.inner.shutdown.subscribe();
            loop {
                match host.tippen().purge_expired_history().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(visits = n, "purged visit history past retention"),
                    Err(e) => tracing::warn!(error = %e, "history purge failed; next try later"),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stopped(&mut shutdown) => break,
                }
            }
        });
    }

    /// Starts shutting down: timers stop and dashboard sockets are closed (code 1001). Returns
    /// at once; HTTP requests are still answered. Idempotent.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has begun (or the host is gone): a future for
    /// `axum::serve(..).with_graceful_shutdown(..)` when something else calls
    /// [`shutdown`](Self::shutdown).
    pub async fn shutdown_requested(&self) {
        stopped(&mut self.inner.shutdown.subscribe()).await;
    }

    /// Shuts down (see [`begin_shutdown`](Self::begin_shutdown)) and waits until every timer
    /// task and dashboard socket has ended. Use it as (part of) the future given to
    /// `axum::serve(..).with_graceful_shutdown(..)`.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let mut rx = self.inner.active.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
        tracing::debug!("tippen host stopped");
    }

    /// Answers one HTTP request through the core (what the router's fallback does). Useful to
    /// call tippen from a handler of your own.
    pub async fn handle(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let client_ip = self.client_ip(peer, &parts.headers);
        if let Some(refusal) = self.over_client_limit(client_ip).await {
            return refusal;
        }
        let limits = &self.inner.tippen.config().limits;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let read = tokio::time::timeout(
            self.inner.config.body_read_timeout,
            read_body(body, limits.max_body_bytes),
        )
        .await;
        let body = match read {
            Ok(Ok((body, rest))) => {
                if let Some(rest) = rest {
                    self.linger(rest, declared);
                }
                body
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read request body");
                return into_axum(
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("could not read the request body: {e}"),
                    )
                    .into_response(),
                );
            }
            Err(_) => {
                let secs = self.inner.config.body_read_timeout.as_secs_f64();
                return into_axum(
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the request body did not arrive within {secs} s"),
                    )
                    .into_response(),
                );
            }
        };
        let ctx = RequestContext {
            client_ip,
            // Set by `router_with`'s layer from the application's own session, never by a client.
            principal: parts
                .extensions
                .get::<tippen_core::api::Principal>()
                .cloned(),
            ..RequestContext::default()
        };
        let req = http::Request::from_parts(parts, body);
        let key = presented_key(&req);
        let mut routed = Box::pin(self.inner.tippen.route(req, &ctx)).await;
        if let Some(refusal) = self
            .over_key_limit(key.as_deref(), routed.site_record())
            .await
        {
            return refusal;
        }
        if let Routed::Outbound(mut call) = routed {
            // Outside the site's lock: the provider may take seconds.
            let answer = match &self.inner.transport {
                Some(transport) => transport.send(call.take_request()).await,
                None => Err(TransportError::Unavailable),
            };
            routed = self.inner.tippen.resume(call, answer);
        }
        match routed {
            Routed::Done(effects) => {
                into_axum(self.apply(effects, None).await.response.unwrap_or_default())
            }
            Routed::Outbound(_) => into_axum(
                ApiError::new(StatusCode::BAD_GATEWAY, "more than one outbound call")
                    .into_response(),
            ),
            Routed::Site(call) => {
                // Run the locked section in its own task: a client that hangs up must not
                // cancel it between the write and the fan-out.
                let host = self.clone();
                match tokio::spawn(async move { host.run_site_call(call).await }).await {
                    Ok(r) => into_axum(r),
                    Err(e) => {
                        tracing::error!(error = %e, "site operation panicked");
                        into_axum(
                            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                                .into_response(),
                        )
                    }
                }
            }
        }
    }

    fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        self.inner.config.trusted_proxies.client_ip(peer, headers)
    }

    /// The 429 for a client over its rate limit.
    async fn over_client_limit(&self, client: Option<IpAddr>) -> Option<Response> {
        let client = client?;
        let wait = match self.inner.shared_limits.get() {
            Some(shared) => {
                let limit = self.inner.config.rate_limits.per_client?;
                self.check_shared(shared.as_ref(), LimitScope::Client(client), limit)
                    .await
                    .err()?
            }
            None => self.inner.limiters.check_client(client).err()?,
        };
        Some(into_axum(too_many_from_address(wait)))
    }

    /// The 429 for a key over its rate limit: the site's own limit when it has one (the
    /// core's buckets in the site's state), else the host's; with shared limits, both are
    /// counted by the shared limiter.
    async fn over_key_limit(&self, key: Option<&str>, site: Option<&Site>) -> Option<Response> {
        let max_key_bytes = self.inner.tippen.config().limits.max_key_bytes;
        let key = key.filter(|k| k.len() <= max_key_bytes)?;
        if let Some(shared) = self.inner.shared_limits.get() {
            let hash = KeyHash::of(key);
            let (scope, limit) = match site.and_then(|s| s.rate_limit_per_key) {
                Some(limit) => (LimitScope::SiteKey(hash), limit),
                None => (
                    LimitScope::Key(hash),
                    self.inner.config.rate_limits.per_key?,
                ),
            };
            let wait = self
                .check_shared(shared.as_ref(), scope, limit)
                .await
                .err()?;
            return Some(into_axum(too_many_with_key(wait)));
        }
        if let Some(site) = site
            && let Some(limit) = site.rate_limit_per_key
        {
            let state = self.site(&site.id);
            let mut gate = state.key_gate.lock().unwrap_or_else(|e| e.into_inner());
            if gate.as_ref().is_none_or(|(l, _)| *l != limit) {
                *gate = Some((limit, Gate::new(None, Some(limit))));
            }
            let (_, buckets) = gate.as_mut()?;
            let now = self.inner.tippen.now();
            return buckets
                .check(None, Some(key), max_key_bytes, now)
                .map(into_axum);
        }
        let wait = self.inner.limiters.check_key(key).err()?;
        Some(into_axum(too_many_with_key(wait)))
    }

    /// Counts a request in `scope` with the shared limiter: `Err(wait)` when over the limit.
    /// Fails open: a limiter that fails or does not answer in time lets the request through.
    async fn check_shared(
        &self,
        shared: &dyn SharedLimiter,
        scope: LimitScope,
        limit: RateLimit,
    ) -> Result<(), Duration> {
        let now = self.inner.tippen.now();
        let timeout = self.inner.config.shared_limits_timeout;
        let problem = match tokio::time::timeout(timeout, shared.check(scope, limit, now)).await {
            Ok(Ok(answer)) => return answer,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        let mut warned = self
            .inner
            .shared_limits_warned
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= SHARED_LIMITS_WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                %problem,
                "shared rate limits unavailable: requests are let through (fail open)"
            );
        } else {
            tracing::debug!(%problem, "shared rate limits unavailable: request let through");
        }
        Ok(())
    }

    /// Lingering close of a refused body: reads and discards what the client still sends
    /// (bounded in bytes and time) while the 413 is answered, so the client gets to read it.
    fn linger(&self, mut rest: Body, declared: Option<u64>) {
        let max = self.inner.config.max_drain_bytes;
        if declared.is_some_and(|d| d > (max as u64).saturating_add(1 << 20)) {
            // Too much to wait for: the connection is closed under the client.
            return;
        }
        let timeout = self.inner.config.linger_timeout;
        tokio::spawn(async move {
            let drain = async {
                let mut drained = 0usize;
                while drained <= max {
                    match rest.frame().await {
                        Some(Ok(f)) => drained += f.data_ref().map_or(0, Bytes::len),
                        _ => break,
                    }
                }
            };
            let _ = tokio::time::timeout(timeout, drain).await;
        });
    }

    async fn run_site_call(&self, call: SiteCall) -> http::Response<Bytes> {
        let state = self.site(call.site());
        let _owner = state.lock.lock().await;
        // Boxed, as in the sessions: the core's futures are large, and this one is spawned
        // (moved into its task) on every request, so inline they were copied each time
        // (`memmove` was 12 % of the server's time under a heartbeat load).
        let effects = Box::pin(self.inner.tippen.execute(call)).await;
        Box::pin(self.apply(effects, None))
            .await
            .response
            .unwrap_or_default()
    }

    /// Applies `effects` through the shared host layer (see [`tippen_core::host`]); call it
    /// under the site's lock.
    pub(crate) async fn apply(&self, effects: Effects, origin: Option<&u64>) -> seam::Answer {
        seam::apply(&self.inner.tippen, self, effects, origin).await
    }

    fn sites(&self) -> MutexGuard<'_, HashMap<SiteId, Arc<SiteState>>> {
        self.inner.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The site's state, created on first use.
    pub(crate) fn site(&self, id: &SiteId) -> Arc<SiteState> {
        if let Some(s) = self.sites().get(id) {
            return s.clone();
        }
        self.sites()
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(SiteState {
                    id: id.clone(),
                    lock: tokio::sync::Mutex::new(()),
                    tx: broadcast::Sender::new(self.inner.config.broadcast_capacity.max(1)),
                    visitors: broadcast::Sender::new(self.inner.config.broadcast_capacity.max(1)),
                    sockets: Mutex::new(HashMap::new()),
                    armed: watch::Sender::new(None),
                    timer_started: AtomicBool::new(false),
                    following: tokio::sync::Mutex::new(Following::default()),
                    key_gate: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Arms the site's timer at `deadline` (the earliest, or exactly it after a sweep),
    /// starting the timer task if needed.
    fn arm(&self, state: &Arc<SiteState>, deadline: Deadline) {
        state.armed.send_if_modified(|cur| {
            let next = deadline.merge(*cur);
            let changed = next != *cur;
            *cur = next;
            changed
        });
        if *self.inner.shutdown.borrow() || state.timer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = Timer {
            host: Arc::downgrade(&self.inner),
            state: state.clone(),
            shutdown: self.inner.shutdown.subscribe(),
            _active: self.inner.active.enter(),
        };
        tokio::spawn(task.run());
    }

    /// With a bus: counts one more dashboard of the site here, following the site on the bus
    /// (and starting its forwarder) for the first. `None` without a bus.
    async fn follow(&self, state: &Arc<SiteState>) -> Result<Option<Followed>, StoreError> {
        let Some(bus) = &self.inner.bus else {
            return Ok(None);
        };
        let mut following = state.following.lock().await;
        if following.forwarder.is_none() {
            let (tx, rx) = mpsc::channel(self.inner.config.broadcast_capacity.max(1));
            bus.subscribe(&state.id, tx).await?;
            // Read after subscribing: every message numbered above it arrives on `rx`.
            let last = match self.inner.tippen.store().sequence(&state.id).await {
                Ok(last) => last,
                Err(e) => {
                    let _ = bus.unsubscribe(&state.id).await;
                    return Err(e);
                }
            };
            let forwarder = Forwarder {
                host: Arc::downgrade(&self.inner),
                state: state.clone(),
            };
            following.forwarder = Some(tokio::spawn(forwarder.run(rx, last)));
            tracing::debug!(site = %state.id, "following the site on the bus");
        }
        following.dashboards += 1;
        Ok(Some(Followed {
            host: self.clone(),
            state: state.clone(),
        }))
    }

    /// One dashboard of the site fewer here; the last one unsubscribes from the bus.
    async fn unfollow(&self, state: &SiteState) {
        let Some(bus) = &self.inner.bus else {
            return;
        };
        let mut following = state.following.lock().await;
        following.dashboards = following.dashboards.saturating_sub(1);
        if following.dashboards > 0 {
            return;
        }
        if let Some(forwarder) = following.forwarder.take() {
            forwarder.abort();
        }
        match bus.unsubscribe(&state.id).await {
            Ok(()) => tracing::debug!(site = %state.id, "no dashboard here; left the bus"),
            Err(e) => tracing::warn!(site = %state.id, error = %e, "could not unsubscribe"),
        }
    }

    /// Under the site's lock: subscribes the socket to what it hears, then sends what
    /// [`Tippen::socket_open`] answers (applying its effects), so nothing published before is
    /// missed and nothing is received twice. `None` when the socket is done.
    async fn subscribe(
        &self,
        state: &SiteState,
        role: &SocketRole,
        conn: &mut Peer,
    ) -> Option<Feed> {
        let opened = {
            let _owner = state.lock.lock().await;
            let feed = match role {
                SocketRole::Dashboard { .. } => Feed::Dashboard(state.tx.subscribe()),
                SocketRole::Visitor { .. } => Feed::Visitor(state.visitors.subscribe()),
            };
            match self.inner.tippen.socket_open(role).await {
                Ok(effects) => Ok((feed, self.apply(effects, Some(&conn.number)).await.reply)),
                Err(e) => Err(e),
            }
        };
        match opened {
            Ok((feed, reply)) => {
                if let Some(reply) = reply
                    && !conn.send(Message::Text(reply.into())).await
                {
                    return None;
                }
                Some(feed)
            }
            Err(e) => {
                tracing::error!(site = %state.id, error = %e, "socket hello failed");
                conn.close(1011, "internal error").await;
                None
            }
        }
    }

    /// One socket, dashboard or visitor, from its upgrade to its end; `slot` is its place in
    /// the socket counts (freed when the session ends) and `budget` its snapshot budget.
    async fn session(
        self,
        role: SocketRole,
        socket: WebSocket,
        _slot: SocketSlot,
        mut budget: SnapshotBudget,
    ) {
        let _active = self.inner.active.enter();
        let mut conn = Peer {
            socket,
            shutdown: self.inner.shutdown.subscribe(),
            send_timeout: self.inner.config.ws_send_timeout,
            number: NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
        };
        if *conn.shutdown.borrow() {
            conn.close(1001, "server shutting down").await;
            return;
        }
        let site = role.site().clone();
        let state = self.site(&site);
        let _listed = match &role {
            SocketRole::Visitor { visitor_id, .. } => Some(Listed::new(
                &state,
                Arc::from(visitor_id.as_str()),
                conn.number,
            )),
            SocketRole::Dashboard { .. } => None,
        };
        let _followed = match &role {
            SocketRole::Dashboard { .. } => match Box::pin(self.follow(&state)).await {
                Ok(followed) => followed,
                Err(e) => {
                    tracing::error!(site = %site, error = %e, "cannot follow the site's bus");
                    conn.close(1011, "internal error").await;
                    return;
                }
            },
            SocketRole::Visitor { .. } => None,
        };
        let Some(mut feed) = Box::pin(self.subscribe(&state, &role, &mut conn)).await else {
            return;
        };
        tracing::debug!(site = %site, role = ?role, "socket connected");
        // Idle sockets: a ping every third of the timeout (browsers answer by themselves); a
        // socket from which nothing arrived for the whole timeout is closed.
        let idle = self
            .inner
            .config
            .ws_idle_timeout
            .max(Duration::from_millis(30));
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + idle / 3, idle / 3);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard_at = tokio::time::Instant::now();
        // The messages of one write (kept: no allocation per message).
        let mut texts = Vec::new();
        loop {
            // A lag or the end of the feed, seen while taking what it held.
            let mut then = Heard::Empty;
            tokio::select! {
                () = stopped(&mut conn.shutdown) => {
                    conn.close(1001, "server shutting down").await;
                    break;
                }
                _ = pings.tick() => {
                    if heard_at.elapsed() >= idle {
                        tracing::debug!(site = %site, "idle socket; closing");
                        conn.close(1000, "idle").await;
                        break;
                    }
                    if !conn.send(Message::Ping(Bytes::new())).await {
                        break;
                    }
                }
                heard = feed.next(&role, conn.number) => {
                    // What else the feed holds already goes with it, in one write: under
                    // load a dashboard's task wakes to several broadcasts, and a write each
                    // was a system call each. Beyond the bound the rest stays in the feed for
                    // the next turn.
                    then = match heard {
                        Heard::Text(text) => {
                            texts.push(Message::Text(text));
                            feed.drain_into(&mut texts, SEND_BATCH, &role, conn.number)
                        }
                        other => other,
                    };
                    if !texts.is_empty() && !conn.send_all(texts.drain(..)).await {
                        break;
                    }
                },
                incoming = conn.socket.recv() => {
                    heard_at = tokio::time::Instant::now();
                    let text = match incoming {
                        Some(Ok(Message::Text(t))) => t.to_string(),
                        Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                        // tungstenite answers pings by itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    };
                    // Boxed, as the other calls into the core here: their futures are large, and
                    // inline they would make every open socket's task that large while it
                    // waits (8 KB per socket, measured with heaptrack and `load hold --sockets`).
                    let answered = Box::pin(async {
                        let _owner = state.lock.lock().await;
                        match self
                            .inner
                            .tippen
                            .socket_frame_within(&role, &mut budget, &text)
                            .await
                        {
                            Ok(effects) => Ok(self.apply(effects, Some(&conn.number)).await.reply),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
                    match answered {
                        Ok(reply) => {
                            // What the site broadcast before the reply was built is in the
                            // feed already (numbered and sent under the owner's lock, as the
                            // reply was built): it goes first, so a reply's `seq` never runs
                            // ahead of the messages this socket has. All in one write.
                            if let Some(reply) = reply {
                                if matches!(feed, Feed::Dashboard(_)) {
                                    then = feed.drain_into(
                                        &mut texts,
                                        usize::MAX,
                                        &role,
                                        conn.number,
                                    );
                                }
                                texts.push(Message::Text(reply.into()));
                                if !conn.send_all(texts.drain(..)).await {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(site = %site, error = %e, "socket message failed");
                            conn.close(1011, "internal error").await;
                            break;
                        }
                    }
                }
            }
            match then {
                Heard::Text(_) | Heard::Empty => {}
                Heard::Lagged(missed) => {
                    tracing::debug!(site = %site, missed, "socket lagged; resyncing");
                    match Box::pin(self.subscribe(&state, &role, &mut conn)).await {
                        Some(fresh) => feed = fresh,
                        None => break,
                    }
                }
                Heard::Closed => break,
            }
        }
        tracing::debug!(site = %site, "socket disconnected");
    }
}

/// What a socket hears from its site: every broadcast (a dashboard), or the pushes for its
/// visitor (a visitor channel).
enum Feed {
    Dashboard(broadcast::Receiver<Utf8Bytes>),
    Visitor(broadcast::Receiver<Push>),
}

/// The next thing a socket hears.
enum Heard {
    Text(Utf8Bytes),
    Lagged(u64),
    Closed,
    /// Nothing more for now ([`Feed::try_next`]).
    Empty,
}

/// Most messages a socket sends with one flush.
const SEND_BATCH: usize = 64;

impl Feed {
    async fn next(&mut self, role: &SocketRole, socket: u64) -> Heard {
        let heard = match self {
            Feed::Dashboard(rx) => rx.recv().await,
            Feed::Visitor(rx) => loop {
                match rx.recv().await {
                    Ok(push) => {
                        if push.is_for(role, socket) {
                            break Ok(push.text);
                        }
                    }
                    Err(e) => break Err(e),
                }
            },
        };
        match heard {
            Ok(text) => Heard::Text(text),
            Err(broadcast::error::RecvError::Lagged(missed)) => Heard::Lagged(missed),
            Err(broadcast::error::RecvError::Closed) => Heard::Closed,
        }
    }

    /// Moves the texts the feed already holds into `texts` until it holds `limit`; returns
    /// what stopped it early (a lag, the end), else [`Heard::Empty`].
    fn drain_into(
        &mut self,
        texts: &mut Vec<Message>,
        limit: usize,
        role: &SocketRole,
        socket: u64,
    ) -> Heard {
        while texts.len() < limit {
            match self.try_next(role, socket) {
                Some(Heard::Text(text)) => texts.push(Message::Text(text)),
                Some(other) => return other,
                None => break,
            }
        }
        Heard::Empty
    }

    /// What the socket hears without waiting; `None` when nothing is there yet.
    fn try_next(&mut self, role: &SocketRole, socket: u64) -> Option<Heard> {
        use broadcast::error::TryRecvError;
        let heard = match self {
            Feed::Dashboard(rx) => rx.try_recv(),
            Feed::Visitor(rx) => loop {
                match rx.try_recv() {
                    Ok(push) => {
                        if push.is_for(role, socket) {
                            break Ok(push.text);
                        }
                    }
                    Err(e) => break Err(e),
                }
            },
        };
        match heard {
            Ok(text) => Some(Heard::Text(text)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(missed)) => Some(Heard::Lagged(missed)),
            Err(TryRecvError::Closed) => Some(Heard::Closed),
        }
    }
}

/// A visitor socket listed in its site's [`SiteState::sockets`] while it is open.
struct Listed {
    state: Arc<SiteState>,
    visitor: Arc<str>,
    number: u64,
}

impl Listed {
    fn new(state: &Arc<SiteState>, visitor: Arc<str>, number: u64) -> Self {
        lock(&state.sockets)
            .entry(visitor.clone())
            .or_default()
            .push(number);
        Listed {
            state: state.clone(),
            visitor,
            number,
        }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut sockets = lock(&self.state.sockets);
        if let Some(list) = sockets.get_mut(&self.visitor) {
            list.retain(|n| *n != self.number);
            if list.is_empty() {
                sockets.remove(&self.visitor);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's side of the shared host layer: dashboards and visitor sockets through the
/// site's channels, the site's timer, the enrichment task and the Slack notifier.
#[async_trait::async_trait]
impl HostIo for TippenHost {
    /// A socket's number, unique in the process (counted from 1).
    type Socket = u64;

    async fn broadcast(&self, site: &SiteId, messages: &[Broadcast]) {
        if self.inner.bus.is_some() {
            // The store published them; every dashboard hears them through the bus.
            return;
        }
        let state = self.site(site);
        for m in messages {
            // An error only means no dashboard is connected.
            let _ = state.tx.send(Utf8Bytes::from(&*m.text));
        }
    }

    async fn push(&self, site: &SiteId, push: &VisitorPush, skip: Option<&u64>) -> bool {
        let state = self.site(site);
        let to: Arc<str> = Arc::from(push.visitor_id.as_str());
        let reached = lock(&state.sockets)
            .get(&to)
            .is_some_and(|list| list.iter().any(|n| Some(n) != skip));
        // An error only means no visitor socket is open.
        let _ = state.visitors.send(Push {
            to,
            text: Utf8Bytes::from(&*push.text),
            skip: skip.copied(),
        });
        reached
    }

    async fn arm(&self, site: &SiteId, deadline: Deadline) {
        let state = self.site(site);
        TippenHost::arm(self, &state, deadline);
    }

    async fn start_lookups(&self, lookups: Vec<LookupRequest>) {
        if let Some(enrichment) = &self.inner.enrichment {
            // Queued for the enrichment task: the answer never waits for the provider.
            enrichment.submit(lookups, &self.inner, self.inner.shutdown.subscribe());
        }
    }

    async fn notify(&self, notices: Vec<Notice>) {
        match &self.inner.notifier {
            Some(notifier) => notifier.submit(notices, &self.inner.shutdown.subscribe()),
            None => tracing::warn!(
                alerts = notices.len(),
                "no outbound HTTP client: alerts go to dashboards only"
            ),
        }
    }
}

/// One WebSocket (a dashboard's or a visitor's), with the shutdown signal and the send
/// timeout.
struct Peer {
    socket: WebSocket,
    shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
    /// The socket's number: a push its own frame caused skips it.
    number: u64,
}

impl Peer {
    /// Sends a message; false when the socket is done (closed, too slow, or shutting down).
    async fn send(&mut self, msg: Message) -> bool {
        self.send_all(std::iter::once(msg)).await
    }

    /// Sends messages in order with one flush (one write to the connection where they fit
    /// its buffer); false when the socket is done (closed, too slow, or shutting down).
    async fn send_all(&mut self, msgs: impl IntoIterator<Item = Message>) -> bool {
        use futures_util::SinkExt;
        let socket = &mut self.socket;
        let sending = async move {
            for msg in msgs {
                socket.feed(msg).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            sent = tokio::time::timeout(self.send_timeout, sending) => match sent {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    tracing::debug!("dashboard too slow to take a message; disconnecting");
                    false
                }
            },
            () = stopped(&mut self.shutdown) => false,
        }
    }

    /// Sends a close frame, waiting at most a second for a client that does not read.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.send(frame)).await;
    }
}

/// A push for one visitor's sockets; the socket whose own frame caused it (`skip`) already
/// has the reply.
#[derive(Clone)]
pub(crate) struct Push {
    to: Arc<str>,
    text: Utf8Bytes,
    skip: Option<u64>,
}

impl Push {
    /// Whether socket number `socket`, open in `role`, gets this push: a visitor channel of
    /// its visitor, unless its own frame caused it.
    fn is_for(&self, role: &SocketRole, socket: u64) -> bool {
        matches!(role, SocketRole::Visitor { visitor_id, .. } if *self.to == **visitor_id)
            && self.skip != Some(socket)
    }
}

/// A dashboard socket counted in its site's [`SiteState::following`] while it is open.
struct Followed {
    host: TippenHost,
    state: Arc<SiteState>,
}

impl Drop for Followed {
    fn drop(&mut self) {
        let (host, state) = (self.host.clone(), self.state.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { host.unfollow(&state).await });
        }
    }
}

/// Hands a followed site's messages from the bus to its dashboards here, once each and in
/// `seq` order; fills a gap from the store's log, or resyncs the dashboards with a snapshot.
struct Forwarder {
    host: std::sync::Weak<Inner>,
    state: Arc<SiteState>,
}

impl Forwarder {
    /// `last`: the site's number when the subscription began.
    async fn run(self, mut rx: mpsc::Receiver<Broadcast>, mut last: u64) {
        while let Some(message) = rx.recv().await {
            if message.seq <= last {
                continue;
            }
            if message.seq > last + 1 {
                let Some(host) = self.host.upgrade().map(|inner| TippenHost { inner }) else {
                    return;
                };
                last = self.fill_gap(&host, last, message.seq - 1).await;
                if message.seq <= last {
                    continue;
                }
            }
            // An error only means no dashboard is connected.
            let _ = self.state.tx.send(Utf8Bytes::from(&*message.text));
            last = message.seq;
        }
    }

    /// Sends the dashboards the messages numbered `last + 1..=to` from the log, or, when the
    /// log no longer holds them, a fresh `INITIAL_VISITORS`. Returns the new last number.
    async fn fill_gap(&self, host: &TippenHost, last: u64, to: u64) -> u64 {
        let site = &self.state.id;
        if let Some(bus) = &host.inner.bus {
            match bus.replay(site, last + 1, to).await {
                Ok(Some(missed))
                    if missed.len() as u64 == to - last
                        && missed.iter().zip(last + 1..).all(|(m, n)| m.seq == n) =>
                {
                    tracing::debug!(%site, missed = missed.len(), "replayed a gap from the log");
                    for m in missed {
                        let _ = self.state.tx.send(Utf8Bytes::from(&*m.text));
                    }
                    return to;
                }
                Ok(_) => tracing::debug!(%site, "the log no longer reaches back; resyncing"),
                Err(e) => tracing::warn!(%site, error = %e, "replay failed; resyncing"),
            }
        }
        match host.inner.tippen.snapshot(site).await {
            Ok(snapshot) => {
                let _ = self.state.tx.send(Utf8Bytes::from(snapshot.to_json()));
                snapshot.seq.max(to)
            }
            Err(e) => {
                // The dashboards see the gap and ask for a snapshot themselves.
                tracing::warn!(%site, error = %e, "resync snapshot failed");
                to
            }
        }
    }
}

/// Numbers sockets, so that a push can skip the socket that caused it.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

fn into_axum(r: http::Response<Bytes>) -> Response {
    r.map(Body::from)
}

/// One site's timer: sleeps until the earliest armed deadline, then calls
/// [`Tippen::handle_timeout`] under the site's lock and applies what it returns (which re-arms
/// at the site's next deadline).
struct Timer {
    host: std::sync::Weak<Inner>,
    state: Arc<SiteState>,
    shutdown: watch::Receiver<bool>,
    _active: ActiveGuard,
}

impl Timer {
    async fn run(mut self) {
        let mut armed = self.state.armed.subscribe();
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let Some(host) = self.host.upgrade().map(|inner| TippenHost { inner }) else {
                return;
            };
            let target = *armed.borrow_and_update();
            let wait = target.map(|at| at.since(host.inner.tippen.now()));
            drop(host);
            match wait {
                Some(wait) if wait.is_zero() => {}
                _ => {
                    let sleep = async {
                        match wait {
                            Some(wait) => tokio::time::sleep(wait).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = stopped(&mut self.shutdown) => return,
                        r = armed.changed() => if r.is_err() { return },
                        () = sleep => {}
                    }
                    continue;
                }
            }
            if !self.fire().await {
                // The store failed: retry after a pause, deadline still armed.
                tokio::select! {
                    () = stopped(&mut self.shutdown) => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// Handles the site's deadline; false when the store failed.
    async fn fire(&mut self) -> bool {
        let Some(host) = self.host.upgrade().map(|inner| TippenHost { inner }) else {
            return true;
        };
        let site = &self.state.id;
        let _owner = self.state.lock.lock().await;
        match host.inner.tippen.handle_timeout(site).await {
            Ok(effects) => {
                if !effects.broadcasts.is_empty() {
                    tracing::debug!(site = %site, messages = effects.broadcasts.len(), "swept");
                }
                let next = effects.deadline.and_then(Deadline::at);
                host.apply(effects, None).await;
                if next.is_some_and(|n| n <= host.inner.tippen.now()) {
                    // More than one batch was due: go again, but let others run first.
                    tokio::task::yield_now().await;
                }
                true
            }
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "sweep failed; retrying in 1 s");
                false
            }
        }
    }
}

async fn http_route(State(host): State<TippenHost>, req: Request) -> Response {
    host.handle(req).await
}

/// `{prefix}/` of [`TippenHost::router_at`], which axum's `nest` leaves to the outer router:
/// answered as the core's root, `/` (the core treats a trailing slash as none everywhere else).
async fn prefix_root(State(host): State<TippenHost>, mut req: Request) -> Response {
    let root = match req.uri().query() {
        Some(query) => format!("/?{query}"),
        None => "/".to_owned(),
    };
    if let Ok(uri) = root.parse() {
        *req.uri_mut() = uri;
    }
    host.handle(req).await
}

fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `/ws/dashboard` and `/ws/visitor`: a WebSocket upgrade after the core authorized it;
/// anything else (no upgrade headers, wrong method) is answered by the core like any request.
async fn socket_route(State(host): State<TippenHost>, req: Request) -> Response {
    if !wants_upgrade(&req) {
        return host.handle(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client_ip = host.client_ip(peer, &parts.headers);
    if let Some(refusal) = host.over_client_limit(client_ip).await {
        return refusal;
    }
    let key =
        tippen_core::api::presented_key(&http::Request::from_parts(parts.clone(), Bytes::new()));
    // The key's site, for its own per-key limit (an unknown key: the host's limit, then the
    // core's refusal).
    let site = match key.as_deref() {
        Some(k) if k.len() <= host.tippen().config().limits.max_key_bytes => {
            host.tippen().authenticate(k).await.ok().flatten()
        }
        _ => None,
    };
    if let Some(refusal) = host
        .over_key_limit(key.as_deref(), site.as_ref().map(|(s, _)| s))
        .await
    {
        return refusal;
    }
    let authorized = host
        .tippen()
        .authorize_socket(parts.uri.path(), &parts.headers, parts.uri.query())
        .await;
    let role = match authorized {
        Some(Ok(role)) => role,
        Some(Err(refusal)) => return into_axum(refusal),
        None => return host.handle(Request::from_parts(parts, body)).await,
    };
    // The socket quotas, before upgrading: the place is taken now and freed when the session
    // (or a failed upgrade) drops it.
    let quotas = host.tippen().socket_quotas_of(role.site()).await;
    let slot = match host.inner.sockets.open(&quotas, role.site(), client_ip) {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::debug!(site = %role.site(), "upgrade over a socket quota");
            return into_axum(refusal);
        }
    };
    let budget = quotas.snapshot_budget();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => {
            let max = host.inner.config.max_ws_message_bytes;
            // A session reads small frames (page views, presence, invite answers): a 4 KiB
            // read buffer instead of tungstenite's eager 128 KiB keeps an open socket cheap.
            ws.read_buffer_size(WS_READ_BUFFER_BYTES)
                .max_message_size(max)
                .max_frame_size(max)
                .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
                .on_upgrade(move |socket| host.session(role, socket, slot, budget))
        }
        // Not a valid upgrade (method, version, key): the core answers (405 or 426).
        Err(rejection) => {
            tracing::debug!(reason = %rejection.body_text(), "invalid WebSocket upgrade");
            host.handle(Request::from_parts(parts, body)).await
        }
    }
    .into_response()
}

/// Why a request body could not be read.
#[derive(Debug, Error)]
#[error("{0}")]
struct BodyError(String);

/// Reads the body, keeping at most `limit + 1` bytes (enough for the core to answer 413);
/// for a body over the limit, also the rest of it, still unread (for a lingering close).
async fn read_body(mut body: Body, limit: usize) -> Result<(Bytes, Option<Body>), BodyError> {
    let keep = limit.saturating_add(1);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            // Keep the first `limit + 1` bytes; the rest is the caller's to drain.
            let mut kept = match first.take() {
                Some(f) => BytesMut::from(&f[..]),
                None => buf,
            };
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
            return Ok((kept.freeze(), Some(body)));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.reserve(f.len() + data.len());
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok((first.unwrap_or_else(|| buf.freeze()), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole() {
        let (b, rest) = read_body(chunked(&[b"ab", b"cd", b"e"]), 10).await.unwrap();
        assert_eq!(&b[..], b"abcde");
        assert!(rest.is_none());
        let (b, _) = read_body(chunked(&[b"abcde"]), 5).await.unwrap();
        assert_eq!(&b[..], b"abcde");
        let (b, _) = read_body(Body::empty(), 5).await.unwrap();
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn large_bodies_are_cut_to_limit_plus_one() {
        let (b, rest) = read_body(chunked(&[b"abc", b"defgh", b"ijk"]), 4)
            .await
            .unwrap();
        assert_eq!(&b[..], b"abcde");
        let rest = rest.expect("the rest, unread").collect().await.unwrap();
        assert_eq!(&rest.to_bytes()[..], b"ijk");
        let (b, _) = read_body(chunked(&[b"abcdefgh"]), 4).await.unwrap();
        assert_eq!(&b[..], b"abcde");
    }
}
