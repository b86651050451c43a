//! [`SiteObject`]: one site's owner, run as a Durable Object.

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use tippen_cloudflare::{D1History, DurableObjectStore, ENRICHMENT_CACHE_BINDING, HISTORY_BINDING};
use tippen_core::api::{ApiError, RequestContext, SocketRole, presented_key};
use tippen_core::host::{self, Answer, HostIo};
use tippen_core::notify::{self, Notice, Notifier};
use tippen_core::quota::{SnapshotBudget, SocketQuotas, address_tag};
use tippen_core::rate::Gate;
use tippen_core::video::CustomerConnect;
use tippen_core::{
    Broadcast, Deadline, Effects, LookupRequest, SiteId, Timestamp, Tippen, VisitorPush,
};
use worker::send::{SendFuture, SendWrapper};
use worker::{
    Delay, Env, Request, Response, ScheduledTime, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair,
};

use crate::convert::{client_ip, effects_response, http_request, read_body, worker_response};
use crate::enrich::Enrichment;
use crate::front::{authorize_upgrade, config_error, forwarded_place, forwarded_site, load_config};
use crate::runtime::WorkerClock;
use crate::transport::FetchTransport;

/// Tag of every dashboard socket.
pub const DASHBOARD_TAG: &str = "dashboard";

/// Prefix of a visitor's socket tag.
const VISITOR_TAG: &str = "visitor:";

/// Prefix of a socket's client-address tag (`address:<hash>`, see
/// [`address_tag`](tippen_core::quota::address_tag)).
const ADDRESS_TAG: &str = "address:";

/// Tag of a visitor's sockets: `visitor:<visitorId>`.
pub fn visitor_tag(visitor_id: &str) -> String {
    format!("{VISITOR_TAG}{visitor_id}")
}

/// Largest WebSocket message accepted from a client (64 KiB, as on the axum host).
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Record kind of the object's own facts (which site it serves, when history was purged).
const META: &str = "meta";

/// The alarm purges history at most this often.
pub(crate) const HISTORY_PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The core, its site and what applying its effects needs, built once per object instance.
pub(crate) struct Runtime {
    pub(crate) tippen: Rc<Tippen>,
    site: SiteId,
    state: Rc<State>,
    /// The object's storage (the live store the core has too), for the object's own facts.
    store: DurableObjectStore,
    /// Outbound HTTP (the video provider, enrichment, Slack).
    pub(crate) transport: FetchTransport,
    /// Alert delivery: the support alerts' Slack webhook, the support rules.
    notifier: Rc<Notifier>,
    /// IP → company enrichment, when a provider is configured.
    pub(crate) enrichment: Option<Rc<Enrichment>>,
    /// The alarm as last read or set (`None`: not read yet; `Some(None)`: no alarm).
    armed: Cell<Option<Option<i64>>>,
    /// Why the alarm could not be set while effects were applied.
    arm_failure: Cell<Option<worker::Error>>,
    /// The site's rate limits per client address and per key, in memory (an evicted object
    /// starts with full buckets).
    gate: RefCell<Gate>,
    /// The site's socket quotas.
    quotas: SocketQuotas,
}

/// The object's [`HostIo`]: a handle on its [`Runtime`] that background tasks keep too. It is
/// `Send`/`Sync` only for the trait's bounds on native targets (the Workers runtime has one
/// thread).
#[derive(Clone)]
pub(crate) struct Host(SendWrapper<Rc<Runtime>>);

impl Deref for Host {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.0
    }
}

/// One site's state and sockets, as a Durable Object (SQLite-backed class).
///
/// - **State** lives in the object's SQLite storage ([`DurableObjectStore`]); nothing is kept
///   only in memory, so an evicted or restarted object carries on where it was.
/// - **Sockets** use the WebSocket hibernation API: dashboards are accepted with the tag
///   [`DASHBOARD_TAG`], visitor channels with [`visitor_tag`]; the tag says what a socket is.
///   A second tag, `address:<hash>`, names the client's address (hashed); with
///   `getWebSockets()` it gives the site's socket quotas their counts (per site, and per
///   address on this site), checked before accepting. A dashboard's snapshot budget is its
///   attachment, which survives hibernation.
///   A text message `ping` is answered `pong` by the runtime without waking the object
///   (`setWebSocketAutoResponse`).
/// - **Time** is one alarm at the core's next deadline, re-armed after every change and every
///   alarm; the alarm sweeps (idempotent: a spurious or repeated alarm changes nothing).
/// - **Effects**: every request, socket opening or frame, alarm and settled lookup answers
///   with the core's [`Effects`], applied through [`host::apply`] (its order) and this
///   object's [`HostIo`].
///
/// Wrap it in a `#[durable_object]` struct and delegate each `DurableObject` method to it
/// (see `examples/worker`).
pub struct SiteObject {
    state: Rc<State>,
    env: Env,
    runtime: RefCell<Option<Host>>,
}

impl std::fmt::Debug for SiteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteObject").finish_non_exhaustive()
    }
}

fn internal(message: impl std::fmt::Display) -> worker::Result<Response> {
    tracing::error!(error = %message, "site object");
    worker_response(
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error").into_response(),
    )
}

impl SiteObject {
    /// The object for `state` (the `DurableObject::new` of your wrapper).
    pub fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
            state.set_websocket_auto_response(&pair);
        }
        SiteObject {
            state: Rc::new(state),
            env,
            runtime: RefCell::new(None),
        }
    }

    /// The core for this object's site. `site` names it on the first forwarded request; later
    /// (and after eviction) it is read from storage.
    async fn runtime(&self, site: Option<SiteId>) -> Result<Host, RuntimeError> {
        if let Some(rt) = self.runtime.borrow().clone() {
            return Ok(rt);
        }
        let config = load_config(&self.env).map_err(RuntimeError::Config)?;
        let mut store =
            DurableObjectStore::new(self.state.storage().sql()).map_err(RuntimeError::Store)?;
        match self.env.kv(ENRICHMENT_CACHE_BINDING) {
            Ok(kv) => store = store.with_shared_cache(kv),
            Err(_) if config.enrichment.is_some() => tracing::warn!(
                binding = ENRICHMENT_CACHE_BINDING,
                "no KV namespace bound: each site's object keeps its own enrichment cache"
            ),
            Err(_) => {}
        }
        let stored = store
            .record::<SiteId>(META, "", "site")
            .map_err(RuntimeError::Store)?;
        let site = match (stored, site) {
            (Some(stored), _) => stored.value,
            (None, Some(site)) => {
                store
                    .put_record(META, "", "site", &site, None)
                    .map_err(RuntimeError::Store)?;
                site
            }
            (None, None) => return Err(RuntimeError::NoSite),
        };
        let mut tippen = Tippen::new(
            Arc::new(store.clone()),
            Arc::new(WorkerClock),
            config.core.clone(),
        );
        // Visit history in D1 when the database is bound; without it, history is off.
        match self.env.d1(HISTORY_BINDING) {
            Ok(db) => tippen = tippen.with_history(Arc::new(D1History::new(db))),
            Err(_) => tracing::debug!(
                binding = HISTORY_BINDING,
                "no D1 database bound: visit history is off"
            ),
        }
        if let Some(url) = &config.video_provider_url {
            tippen = tippen.with_video_provider(Arc::new(CustomerConnect::new(url)));
        }
        // The configured site, as the configuration has it now (keys may have changed since
        // the last deployment), keeping what the API added (alert rules, member tokens) unless
        // the operator API took it over. A site created at runtime is in storage already.
        if let Some(configured) = config.site(site.as_str()) {
            tippen_core::settings::register_sites(&tippen, std::slice::from_ref(configured))
                .await
                .map_err(|e| {
                    RuntimeError::Store(tippen_core::StoreError::Backend(e.to_string()))
                })?;
        }
        let enrichment = match &config.enrichment {
            None => None,
            Some(provider) => Some(Rc::new(Enrichment::new(provider).map_err(|e| {
                RuntimeError::Config(crate::config::ConfigError::Enrichment(e.to_string()))
            })?)),
        };
        // The stored record: a site created or changed by the operator API has its own limits.
        let record = {
            use tippen_core::Store;
            store.site(&site).await.ok().flatten()
        };
        let (gate, quotas) = match record.as_ref().or(config.site(site.as_str())) {
            Some(configured) => (
                Gate::for_site(&config.rate_limits, configured),
                SocketQuotas::of(&config.core.limits, configured),
            ),
            None => (
                Gate::new(config.rate_limits.per_client, config.rate_limits.per_key),
                SocketQuotas::of_host(&config.core.limits),
            ),
        };
        let rt = Host(SendWrapper::new(Rc::new(Runtime {
            gate: RefCell::new(gate),
            quotas,
            tippen: Rc::new(tippen),
            site,
            state: self.state.clone(),
            store,
            transport: FetchTransport::default(),
            notifier: Rc::new(Notifier::new(config.slack.clone(), &config.core)),
            enrichment,
            armed: Cell::new(None),
            arm_failure: Cell::new(None),
        })));
        *self.runtime.borrow_mut() = Some(rt.clone());
        Ok(rt)
    }

    /// Handles a request the Worker forwarded (the `DurableObject::fetch` of your wrapper).
    pub async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.headers().get(crate::front::REGISTRY_HEADER)?.is_some() {
            return self.registry(&mut req).await;
        }
        match req.path().trim_end_matches('/') {
            crate::front::STORE_SUITE_PATH => return self.store_suite(&req).await,
            crate::front::HISTORY_SUITE_PATH => return self.history_suite(&req).await,
            _ => {}
        }
        let rt = match self.runtime(forwarded_site(&req)).await {
            Ok(rt) => rt,
            Err(RuntimeError::Config(e)) => return config_error(&e),
            Err(e) => return internal(e),
        };
        if let Some(authorized) = authorize_upgrade(&rt.tippen, &req).await? {
            // Upgrades count against the same buckets as requests.
            let head = http_request(&req, bytes::Bytes::new())?;
            let client = client_ip(head.headers());
            if let Some(refusal) = rt.over_limit(&head, client) {
                return worker_response(refusal);
            }
            return match authorized {
                Ok(role) => self.accept(&rt, role, client).await,
                Err(refusal) => worker_response(refusal),
            };
        }
        let body = match read_body(&mut req, rt.tippen.config().limits.max_body_bytes).await? {
            Ok(body) => body,
            Err(too_large) => return worker_response(too_large),
        };
        let http_req = http_request(&req, body)?;
        let ctx = RequestContext {
            client_ip: client_ip(http_req.headers()),
            place: forwarded_place(&req),
            ..RequestContext::default()
        };
        if let Some(refusal) = rt.over_limit(&http_req, ctx.client_ip) {
            return worker_response(refusal);
        }
        let effects = rt.tippen.handle_with(http_req, &ctx, &rt.transport).await;
        if effects.site.as_ref().is_some_and(|s| *s != rt.site) {
            // The Worker forwards by site; a key of another site here is a routing bug.
            tracing::warn!(site = %rt.site, "request for another site reached this object");
        }
        effects_response(rt.apply(effects, None).await?.response)
    }

    /// The site registry (only in the object named `REGISTRY_OBJECT`, reached with the Worker's
    /// internal header): `GET` answers the ids of the sites the operator API created, `POST`
    /// adds the body's id.
    async fn registry(&self, req: &mut Request) -> worker::Result<Response> {
        const KEY: &str = "tippen_site_registry";
        // The body is read before the list: awaiting it between the storage read and write let
        // another request in (input gates hold only across storage operations), and of two
        // sites created at once one was lost from the registry.
        let id = if req.method() == worker::Method::Post {
            Some(req.text().await?)
        } else {
            None
        };
        let storage = self.state.storage();
        let mut ids: Vec<String> = storage.get(KEY).await?.unwrap_or_default();
        if let Some(id) = id
            && !id.is_empty()
            && !ids.contains(&id)
        {
            ids.push(id);
            storage.put(KEY, &ids).await?;
        }
        Response::from_json(&ids)
    }

    /// Upgrades a socket the core authorized, within the site's socket quotas (this object's
    /// open sockets, and those from `client`'s address, tagged with its hash): subscribes it
    /// (its tags; a dashboard's snapshot budget in its attachment), then sends what the core
    /// answers for its opening (a dashboard's snapshot, a visitor's open invite).
    async fn accept(
        &self,
        rt: &Host,
        role: SocketRole,
        client: Option<std::net::IpAddr>,
    ) -> worker::Result<Response> {
        if *role.site() != rt.site {
            let site = role.site();
            return internal(format!(
                "a socket of {site} reached the object of {}",
                rt.site
            ));
        }
        let address = client.map(|ip| format!("{ADDRESS_TAG}{}", address_tag(ip)));
        let on_site = self.state.get_websockets().len();
        let from_address = address
            .as_deref()
            .map_or(0, |tag| self.state.get_websockets_with_tag(tag).len());
        if let Err(refusal) = rt.quotas.admit(on_site, from_address) {
            tracing::debug!(site = %rt.site, "upgrade over a socket quota");
            return worker_response(refusal);
        }
        let pair = WebSocketPair::new()?;
        let tag = match &role {
            SocketRole::Dashboard { .. } => DASHBOARD_TAG.to_owned(),
            SocketRole::Visitor { visitor_id, .. } => visitor_tag(visitor_id),
        };
        let mut tags = vec![tag.as_str()];
        tags.extend(address.as_deref());
        self.state.accept_websocket_with_tags(&pair.server, &tags);
        if matches!(role, SocketRole::Dashboard { .. }) {
            pair.server
                .serialize_attachment(rt.quotas.snapshot_budget())?;
        }
        let opened = match rt.tippen.socket_open(&role).await {
            Ok(opened) => opened,
            Err(e) => return internal(e),
        };
        if let Some(hello) = rt.apply(opened, Some(&pair.server)).await?.reply {
            pair.server.send_with_str(hello)?;
        }
        Response::from_websocket(pair.client)
    }

    /// The alarm fired: sweeps the site and re-arms at its next deadline (the
    /// `DurableObject::alarm` of your wrapper). At-least-once delivery is harmless: a sweep
    /// with nothing due changes nothing.
    pub async fn alarm(&self) -> worker::Result<Response> {
        let rt = match self.runtime(None).await {
            Ok(rt) => rt,
            Err(RuntimeError::NoSite) => return Response::ok("no site"),
            Err(e) => return Err(worker::Error::RustError(e.to_string())),
        };
        // The runtime cleared the alarm that fired.
        rt.armed.set(Some(None));
        let swept = rt
            .tippen
            .handle_timeout(&rt.site)
            .await
            .map_err(|e| worker::Error::RustError(format!("sweep failed: {e}")))?;
        // The sweep's deadline is exact: it replaces whatever is armed, and one already due
        // (more than a sweep batch was due) fires again at once.
        rt.apply(swept, None).await?;
        // Retention, at most hourly. A failure is logged and retried at a later alarm; it
        // never holds up presence.
        if let Err(e) = rt.purge_history().await {
            tracing::error!(site = %rt.site, error = %e, "history purge failed");
        }
        Response::ok("swept")
    }

    /// A message on a hibernatable socket (the `DurableObject::websocket_message` of your
    /// wrapper).
    pub async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let text = match message {
            WebSocketIncomingMessage::String(s) => s,
            WebSocketIncomingMessage::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        };
        if text.len() > MAX_WS_MESSAGE_BYTES {
            return ws.close(Some(1009), Some("message too big"));
        }
        let rt = match self.runtime(None).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "socket message without a site");
                return ws.close(Some(1011), Some("internal error"));
            }
        };
        let Some(role) = rt.role_of(&ws) else {
            return ws.close(Some(1011), Some("unknown socket"));
        };
        // A dashboard's snapshot budget lives in its attachment (it survives hibernation).
        let stored: Option<SnapshotBudget> = match role {
            SocketRole::Dashboard { .. } => ws.deserialize_attachment().ok().flatten(),
            SocketRole::Visitor { .. } => None,
        };
        let before = stored.unwrap_or_else(|| rt.quotas.snapshot_budget());
        let mut budget = before;
        let effects = match rt
            .tippen
            .socket_frame_within(&role, &mut budget, &text)
            .await
        {
            Ok(effects) => effects,
            Err(e) => {
                tracing::error!(error = %e, "socket message failed");
                return ws.close(Some(1011), Some("internal error"));
            }
        };
        if budget != before {
            ws.serialize_attachment(budget)?;
        }
        match rt.apply(effects, Some(&ws)).await?.reply {
            Some(reply) => ws.send_with_str(reply),
            None => Ok(()),
        }
    }

    /// A socket closed (the `DurableObject::websocket_close` of your wrapper): completes the
    /// closing handshake.
    pub async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        // 1005/1006 (no code, abnormal) cannot be sent back; answer a normal closure.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| *c != 1005 && *c != 1006)
            .unwrap_or(1000);
        // The socket may already be closed.
        let _ = ws.close(Some(code), Some("closed"));
        Ok(())
    }

    /// A socket failed (the `DurableObject::websocket_error` of your wrapper).
    pub async fn websocket_error(
        &self,
        _ws: WebSocket,
        error: worker::Error,
    ) -> worker::Result<()> {
        tracing::debug!(error = %error, "socket error");
        Ok(())
    }

    #[cfg(feature = "test-routes")]
    async fn store_suite(&self, req: &Request) -> worker::Result<Response> {
        let config = match load_config(&self.env) {
            Ok(c) => c,
            Err(e) => return config_error(&e),
        };
        if !config.test_routes {
            return worker_response(
                ApiError::new(StatusCode::NOT_FOUND, "test routes are off").into_response(),
            );
        }
        let prefix = tippen_core::api::query_param(req.url()?.query(), "prefix")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("suite{}", js_sys::Date::now() as u64));
        let store = match DurableObjectStore::new(self.state.storage().sql()) {
            Ok(s) => s,
            Err(e) => return internal(e),
        };
        // A failing check panics, which fails this request (the runtime answers 500).
        tippen_core::testkit::run_store_suite(Arc::new(store), &prefix).await;
        Response::from_json(&serde_json::json!({ "passed": true, "prefix": prefix }))
    }

    #[cfg(feature = "test-routes")]
    async fn history_suite(&self, req: &Request) -> worker::Result<Response> {
        let config = match load_config(&self.env) {
            Ok(c) => c,
            Err(e) => return config_error(&e),
        };
        if !config.test_routes {
            return worker_response(
                ApiError::new(StatusCode::NOT_FOUND, "test routes are off").into_response(),
            );
        }
        let Ok(db) = self.env.d1(HISTORY_BINDING) else {
            return worker_response(
                ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("no D1 database bound as {HISTORY_BINDING}"),
                )
                .into_response(),
            );
        };
        let prefix = tippen_core::api::query_param(req.url()?.query(), "prefix")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("hsuite{}", js_sys::Date::now() as u64));
        // A failing check panics, which fails this request (the runtime answers 500).
        tippen_core::testkit::run_history_suite(Arc::new(D1History::new(db)), &prefix).await;
        Response::from_json(&serde_json::json!({ "passed": true, "prefix": prefix }))
    }

    #[cfg(not(feature = "test-routes"))]
    async fn history_suite(&self, req: &Request) -> worker::Result<Response> {
        self.store_suite(req).await
    }

    #[cfg(not(feature = "test-routes"))]
    async fn store_suite(&self, _req: &Request) -> worker::Result<Response> {
        worker_response(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "test routes are not built in (feature test-routes)",
            )
            .into_response(),
        )
    }
}

impl Host {
    /// The `429` for a client or key over its rate limit (the buckets of this site's object),
    /// for a request (`req`, whose key may be in its body) or an upgrade.
    fn over_limit(
        &self,
        req: &http::Request<bytes::Bytes>,
        client: Option<std::net::IpAddr>,
    ) -> Option<http::Response<bytes::Bytes>> {
        let key = presented_key(req);
        self.gate.borrow_mut().check(
            client,
            key.as_deref(),
            self.tippen.config().limits.max_key_bytes,
            self.tippen.now(),
        )
    }

    /// Applies `effects` through this object ([`host::apply`]); returns the response or reply
    /// to send, or why the alarm could not be set.
    pub(crate) async fn apply(
        &self,
        effects: Effects,
        origin: Option<&WebSocket>,
    ) -> worker::Result<Answer> {
        let answer = host::apply(&self.tippen, self, effects, origin).await;
        self.arm_failure.take().map_or(Ok(answer), Err)
    }
}

impl Runtime {
    /// Purges the site's history past its retention ([`Site::history_retention`], 90 days
    /// unless the site says otherwise) when history is on and the last purge (kept in the
    /// object's storage) is [`HISTORY_PURGE_INTERVAL`] old or more.
    ///
    /// [`Site::history_retention`]: tippen_core::Site::history_retention
    async fn purge_history(&self) -> Result<(), RuntimeError> {
        const PURGED_AT: &str = "history_purged_at";
        if self.tippen.history().is_none() {
            return Ok(());
        }
        let now = self.tippen.now();
        let last = self
            .store
            .record::<Timestamp>(META, "", PURGED_AT)
            .map_err(RuntimeError::Store)?;
        if last
            .as_ref()
            .is_some_and(|l| now < l.value.plus(HISTORY_PURGE_INTERVAL))
        {
            return Ok(());
        }
        // The object's storage holds its own site only: this purges that site.
        self.tippen
            .purge_expired_history()
            .await
            .map_err(|e| RuntimeError::History(e.to_string()))?;
        self.store
            .put_record(META, "", PURGED_AT, &now, last.map(|l| l.version))
            .map_err(RuntimeError::Store)?;
        Ok(())
    }

    /// What a socket of this object is, from its tags (its first; an address tag may
    /// follow).
    fn role_of(&self, ws: &WebSocket) -> Option<SocketRole> {
        let site = self.site.clone();
        let tags = self.state.get_tags(ws);
        if tags.iter().any(|t| t == DASHBOARD_TAG) {
            return Some(SocketRole::Dashboard { site });
        }
        let visitor_id = tags.iter().find_map(|t| t.strip_prefix(VISITOR_TAG))?;
        Some(SocketRole::Visitor {
            site,
            visitor_id: visitor_id.to_owned(),
        })
    }

    /// Sets the alarm `deadline` asks for: an [`AtMost`](Deadline::AtMost) keeps an earlier
    /// alarm, an [`Exactly`](Deadline::Exactly) replaces it.
    async fn set_alarm(&self, deadline: Deadline) -> worker::Result<()> {
        let storage = self.state.storage();
        if let Deadline::AtMost(at) = deadline {
            let armed = match self.armed.get() {
                Some(known) => known,
                None => storage.get_alarm().await?,
            };
            self.armed.set(Some(armed));
            if armed.is_some_and(|armed| armed <= at.as_millis()) {
                return Ok(());
            }
        }
        let at = deadline.at().map(|at| at.as_millis());
        match at {
            Some(ms) => {
                let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
                storage.set_alarm(ScheduledTime::new(date)).await?;
            }
            None => storage.delete_alarm().await?,
        }
        self.armed.set(Some(at));
        Ok(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl HostIo for Host {
    type Socket = WebSocket;

    async fn broadcast(&self, _site: &SiteId, messages: &[Broadcast]) {
        let sockets = self.state.get_websockets_with_tag(DASHBOARD_TAG);
        for message in messages {
            for ws in &sockets {
                // A failed send means the socket is closing; its close event cleans up.
                let _ = ws.send_with_str(&*message.text);
            }
        }
    }

    async fn push(&self, _site: &SiteId, push: &VisitorPush, skip: Option<&WebSocket>) -> bool {
        let sockets = self
            .state
            .get_websockets_with_tag(&visitor_tag(&push.visitor_id));
        let sent = sockets
            .iter()
            .filter(|ws| Some(*ws) != skip)
            .filter(|ws| ws.send_with_str(&*push.text).is_ok())
            .count();
        sent > 0
    }

    async fn arm(&self, _site: &SiteId, deadline: Deadline) {
        // The runtime is single-threaded; the storage futures never cross threads.
        if let Err(e) = SendFuture::new(self.set_alarm(deadline)).await {
            tracing::error!(error = %e, "the alarm could not be set");
            self.arm_failure.set(Some(e));
        }
    }

    /// Runs the lookups in the background: the answer never waits for the provider (see
    /// [`Enrichment`]).
    async fn start_lookups(&self, lookups: Vec<LookupRequest>) {
        match self.enrichment.clone() {
            Some(enrichment) => {
                wasm_bindgen_futures::spawn_local(enrichment.submit(self.clone(), lookups))
            }
            None => tracing::debug!(
                lookups = lookups.len(),
                "no enrichment provider configured; visitors keep their fallback company"
            ),
        }
    }

    /// Sends support notices to Slack in the background (`waitUntil`): the answer never waits
    /// for Slack; retries wait with the runtime's timers.
    async fn notify(&self, notices: Vec<Notice>) {
        for outgoing in self.notifier.outgoing(&notices) {
            let host = self.clone();
            self.state.wait_until(async move {
                let sent = notify::send(
                    &host.transport,
                    &outgoing,
                    || js_sys::Date::now() as i64 / 1000,
                    Delay::from,
                )
                .await;
                sent.log(&outgoing.label);
                host.tippen.record_delivery(&outgoing.label, &sent).await;
            });
        }
    }
}

/// Why the object could not set up its core.
#[derive(Debug, thiserror::Error)]
enum RuntimeError {
    /// The environment's configuration is unusable.
    #[error(transparent)]
    Config(crate::config::ConfigError),
    /// Storage failed.
    #[error(transparent)]
    Store(tippen_core::StoreError),
    /// Visit history failed.
    #[error("history: {0}")]
    History(String),
    /// No request has named the site yet (an alarm or socket before any request).
    #[error("this object has not been told its site yet")]
    NoSite,
}
