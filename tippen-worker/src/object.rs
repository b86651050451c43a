//! [`SiteObject`]: one site's owner, run as a Durable Object.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tippen_core::api::{ApiError, RequestContext, pushed_invite};
use tippen_core::slack::SlackConfig;
use tippen_core::support::SupportNotice;
use tippen_core::video::CustomerConnect;
use tippen_core::{SiteId, Timestamp, Tippen};
use worker::{
    Delay, Env, Method, Request, Response, ScheduledTime, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::WorkerConfig;
use crate::convert::{client_ip, http_headers, http_request, wants_upgrade, worker_response};
use crate::enrich::Enrichment;
use crate::front::{config_error, forwarded_site, load_config};
use crate::runtime::{CryptoIds, WorkerClock};
use crate::store::{DurableObjectStore, ENRICHMENT_CACHE_BINDING};
use crate::transport::FetchTransport;

/// Tag of every dashboard socket.
pub const DASHBOARD_TAG: &str = "dashboard";

/// Tag of a visitor's sockets: `visitor:<visitorId>`.
pub fn visitor_tag(visitor_id: &str) -> String {
    format!("visitor:{visitor_id}")
}

/// Largest WebSocket message accepted from a client (64 KiB, as on the axum host).
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Record kind of the object's own facts (which site it serves).
const META: &str = "meta";

/// What a hibernated socket is, kept in its attachment so it survives eviction.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "camelCase")]
enum Attachment {
    /// An admin dashboard.
    Dashboard,
    /// A visitor's tab.
    #[serde(rename_all = "camelCase")]
    Visitor {
        /// The visitor.
        visitor_id: String,
    },
}

/// The core, its store and the site, built once per object instance.
struct Runtime {
    tippen: Rc<Tippen>,
    site: SiteId,
    /// Slack notifications of support alerts, when a webhook is configured.
    slack: Option<Rc<SlackConfig>>,
    /// IP → company enrichment, when a provider is configured.
    enrichment: Option<Rc<Enrichment>>,
}

/// One site's state and sockets, as a Durable Object (SQLite-backed class).
///
/// - **State** lives in the object's SQLite storage ([`DurableObjectStore`]); nothing is kept
///   only in memory, so an evicted or restarted object carries on where it was.
/// - **Sockets** use the WebSocket hibernation API: dashboards are accepted with the tag
///   [`DASHBOARD_TAG`], visitor channels with [`visitor_tag`]; each socket's role is in its
///   attachment. A text message `ping` is answered `pong` by the runtime without waking the
///   object (`setWebSocketAutoResponse`).
/// - **Time** is one alarm at the core's next deadline, re-armed after every change and every
///   alarm; the alarm sweeps (idempotent: a spurious or repeated alarm changes nothing).
///
/// Wrap it in a `#[durable_object]` struct and delegate each `DurableObject` method to it
/// (see `examples/worker`).
pub struct SiteObject {
    /// Shared with the background enrichment tasks (they publish to the site's sockets).
    state: Rc<State>,
    env: Env,
    runtime: RefCell<Option<Rc<Runtime>>>,
    /// The alarm as last read or set (`None`: not read yet; `Some(None)`: no alarm).
    armed: Cell<Option<Option<i64>>>,
    /// Outbound HTTP (the video provider).
    transport: FetchTransport,
}

impl std::fmt::Debug for SiteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteObject")
            .field("armed", &self.armed.get())
            .finish_non_exhaustive()
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
            armed: Cell::new(None),
            transport: FetchTransport::default(),
        }
    }

    /// The core for this object's site. `site` names it on the first forwarded request; later
    /// (and after eviction) it is read from storage.
    async fn runtime(&self, site: Option<SiteId>) -> Result<Rc<Runtime>, RuntimeError> {
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
        self.sync_site(&store, &config, &site).await?;
        let mut tippen = Tippen::new(Arc::new(store), Arc::new(WorkerClock), config.core.clone())
            .with_ids(Arc::new(CryptoIds));
        if let Some(url) = &config.video_provider_url {
            tippen = tippen.with_video_provider(Arc::new(CustomerConnect::new(url)));
        }
        let slack = config.slack.clone().map(Rc::new);
        let enrichment = match &config.enrichment {
            None => None,
            Some(provider) => Some(Rc::new(Enrichment::new(provider).map_err(|e| {
                RuntimeError::Config(crate::config::ConfigError::Enrichment(e.to_string()))
            })?)),
        };
        let rt = Rc::new(Runtime {
            tippen: Rc::new(tippen),
            site,
            slack,
            enrichment,
        });
        *self.runtime.borrow_mut() = Some(rt.clone());
        Ok(rt)
    }

    /// Stores the configured site (its keys may have changed since the last deployment).
    async fn sync_site(
        &self,
        store: &DurableObjectStore,
        config: &WorkerConfig,
        site: &SiteId,
    ) -> Result<(), RuntimeError> {
        use tippen_core::Store;
        let Some(configured) = config.site(site.as_str()) else {
            // The store conformance object, or a site removed from the configuration: it
            // keeps what it has and authenticates nothing new.
            return Ok(());
        };
        let stored = store.sites().await.map_err(RuntimeError::Store)?;
        if !stored.iter().any(|s| s == configured) {
            store
                .put_site(configured)
                .await
                .map_err(RuntimeError::Store)?;
        }
        Ok(())
    }

    /// Handles a request the Worker forwarded (the `DurableObject::fetch` of your wrapper).
    pub async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let route_path = path.trim_end_matches('/');
        if route_path == crate::front::STORE_SUITE_PATH {
            return self.store_suite(&req).await;
        }
        let rt = match self.runtime(forwarded_site(&req)).await {
            Ok(rt) => rt,
            Err(RuntimeError::Config(e)) => return config_error(&e),
            Err(e) => return internal(e),
        };
        let headers = http_headers(req.headers());
        if wants_upgrade(&headers) && req.method() == Method::Get {
            let query = req.url()?.query().map(str::to_owned);
            match route_path {
                "/ws/dashboard" => return self.accept_dashboard(&rt, &headers, query).await,
                "/ws/visitor" => return self.accept_visitor(&rt, &headers, query).await,
                _ => {}
            }
        }
        let body = Bytes::from(req.bytes().await.unwrap_or_default());
        let http_req = http_request(&req, body)?;
        let ctx = RequestContext {
            client_ip: client_ip(http_req.headers()),
            ..RequestContext::default()
        };
        let handled = rt.tippen.handle_with(http_req, &ctx, &self.transport).await;
        if handled.site.as_ref().is_some_and(|s| *s != rt.site) {
            // The Worker forwards by site; a key of another site here is a routing bug.
            tracing::warn!(site = %rt.site, "request for another site reached this object");
        }
        self.publish(&handled.broadcasts);
        self.push_visitors(&rt, handled.visitor_messages, None)
            .await;
        self.enrich(&rt, handled.lookups);
        self.notify(&rt, handled.notifications);
        if let Some(deadline) = handled.deadline {
            self.arm_at_most(deadline).await?;
        }
        worker_response(handled.response)
    }

    async fn accept_dashboard(
        &self,
        rt: &Runtime,
        headers: &http::HeaderMap,
        query: Option<String>,
    ) -> worker::Result<Response> {
        let site = match rt
            .tippen
            .authorize_dashboard(headers, query.as_deref())
            .await
        {
            Ok(site) => site,
            Err(refusal) => return worker_response(refusal),
        };
        if site != rt.site {
            return internal(format!(
                "dashboard of {site} reached the object of {}",
                rt.site
            ));
        }
        let hello = match rt.tippen.dashboard_hello(&site).await {
            Ok(hello) => hello,
            Err(e) => return internal(e),
        };
        let pair = WebSocketPair::new()?;
        self.state
            .accept_websocket_with_tags(&pair.server, &[DASHBOARD_TAG]);
        pair.server.serialize_attachment(&Attachment::Dashboard)?;
        pair.server.send_with_str(hello)?;
        Response::from_websocket(pair.client)
    }

    async fn accept_visitor(
        &self,
        rt: &Runtime,
        headers: &http::HeaderMap,
        query: Option<String>,
    ) -> worker::Result<Response> {
        let (site, visitor_id) = match rt
            .tippen
            .authorize_visitor_channel(headers, query.as_deref())
            .await
        {
            Ok(v) => v,
            Err(refusal) => return worker_response(refusal),
        };
        if site != rt.site {
            return internal(format!(
                "visitor of {site} reached the object of {}",
                rt.site
            ));
        }
        let pair = WebSocketPair::new()?;
        let tag = visitor_tag(&visitor_id);
        self.state
            .accept_websocket_with_tags(&pair.server, &[tag.as_str()]);
        pair.server.serialize_attachment(&Attachment::Visitor {
            visitor_id: visitor_id.clone(),
        })?;
        match rt.tippen.visitor_hello(&site, &visitor_id).await {
            Ok((hello, broadcasts)) => {
                if let Some(hello) = hello {
                    pair.server.send_with_str(hello)?;
                }
                self.publish(&broadcasts);
            }
            Err(e) => return internal(e),
        }
        Response::from_websocket(pair.client)
    }

    /// Sends each text to every dashboard of the site, in order.
    fn publish(&self, broadcasts: &[String]) {
        publish(&self.state, broadcasts);
    }

    /// Runs the lookups the core asked for in the background: the answer never waits for the
    /// provider (see [`Enrichment`]).
    fn enrich(&self, rt: &Rc<Runtime>, lookups: Vec<tippen_core::LookupRequest>) {
        if lookups.is_empty() {
            return;
        }
        let Some(enrichment) = rt.enrichment.clone() else {
            tracing::debug!(
                lookups = lookups.len(),
                "no enrichment provider configured; visitors keep their fallback company"
            );
            return;
        };
        let tippen = rt.tippen.clone();
        let state = self.state.clone();
        let transport = self.transport;
        wasm_bindgen_futures::spawn_local(async move {
            enrichment
                .submit(tippen, transport, lookups, move |texts| {
                    publish(&state, &texts)
                })
                .await;
        });
    }

    /// Sends `(visitorId, json)` pushes to the visitors' sockets (but `except`); a
    /// `VIDEO_INVITE` that reached a socket is reported delivered (and dashboards hear it).
    async fn push_visitors(
        &self,
        rt: &Runtime,
        pushes: Vec<(String, String)>,
        except: Option<&WebSocket>,
    ) {
        for (visitor_id, text) in pushes {
            let sockets = self
                .state
                .get_websockets_with_tag(&visitor_tag(&visitor_id));
            let sent = sockets
                .iter()
                .filter(|ws| Some(*ws) != except)
                .filter(|ws| ws.send_with_str(&text).is_ok())
                .count();
            if sent == 0 {
                continue;
            }
            if let Some(invite_id) = pushed_invite(&text) {
                match rt
                    .tippen
                    .invite_delivered(&rt.site, &visitor_id, &invite_id)
                    .await
                {
                    Ok(broadcasts) => self.publish(&broadcasts),
                    Err(e) => tracing::warn!(error = %e, "invite delivery not recorded"),
                }
            }
        }
    }

    /// Sends support notices to Slack in the background (`waitUntil`): the answer never waits
    /// for Slack; retries wait with the runtime's timers.
    fn notify(&self, rt: &Runtime, notices: Vec<SupportNotice>) {
        if notices.is_empty() {
            return;
        }
        let Some(slack) = rt.slack.clone() else {
            tracing::debug!(
                alerts = notices.len(),
                "no Slack webhook configured; support alerts go to dashboards only"
            );
            return;
        };
        let support = rt.tippen.config().support.clone();
        let transport = self.transport;
        for notice in notices {
            let slack = slack.clone();
            let support = support.clone();
            self.state.wait_until(async move {
                let delivered =
                    tippen_core::slack::deliver(&transport, &slack, &support, &notice, |d| {
                        Delay::from(d)
                    })
                    .await;
                delivered.log(&notice);
            });
        }
    }

    /// The alarm as stored (read once per instance, then tracked here).
    async fn current_alarm(&self) -> worker::Result<Option<i64>> {
        if let Some(known) = self.armed.get() {
            return Ok(known);
        }
        let stored = self.state.storage().get_alarm().await?;
        self.armed.set(Some(stored));
        Ok(stored)
    }

    async fn set_alarm(&self, at: Option<Timestamp>) -> worker::Result<()> {
        let storage = self.state.storage();
        match at {
            Some(at) => {
                let ms = at.as_millis();
                let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
                storage.set_alarm(ScheduledTime::new(date)).await?;
                self.armed.set(Some(Some(ms)));
            }
            None => {
                storage.delete_alarm().await?;
                self.armed.set(Some(None));
            }
        }
        Ok(())
    }

    /// Arms the alarm at `deadline` unless it is already armed earlier.
    async fn arm_at_most(&self, deadline: Timestamp) -> worker::Result<()> {
        match self.current_alarm().await? {
            Some(at) if at <= deadline.as_millis() => Ok(()),
            _ => self.set_alarm(Some(deadline)).await,
        }
    }

    /// The alarm fired: sweeps the site and re-arms at its next deadline (the
    /// `DurableObject::alarm` of your wrapper). At-least-once delivery is harmless: a sweep
    /// with nothing due changes nothing.
    pub async fn alarm(&self) -> worker::Result<Response> {
        // The runtime cleared the alarm that fired.
        self.armed.set(Some(None));
        let rt = match self.runtime(None).await {
            Ok(rt) => rt,
            Err(RuntimeError::NoSite) => return Response::ok("no site"),
            Err(e) => return Err(worker::Error::RustError(e.to_string())),
        };
        let swept = rt
            .tippen
            .handle_deadline_with_pushes(&rt.site)
            .await
            .map_err(|e| worker::Error::RustError(format!("sweep failed: {e}")))?;
        self.publish(&swept.broadcasts);
        self.push_visitors(&rt, swept.visitor_messages, None).await;
        self.notify(&rt, swept.notifications);
        // The sweep's deadline is the store's next one, exact here: replace whatever is
        // armed. One already due (more than a sweep batch was due) fires again at once.
        self.set_alarm(swept.deadline).await?;
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
        match ws.deserialize_attachment::<Attachment>()? {
            Some(Attachment::Dashboard) => {
                match rt.tippen.dashboard_message(&rt.site, &text).await {
                    Ok(reply) => ws.send_with_str(reply),
                    Err(e) => {
                        tracing::error!(error = %e, "dashboard message failed");
                        ws.close(Some(1011), Some("internal error"))
                    }
                }
            }
            Some(Attachment::Visitor { visitor_id }) => {
                match rt
                    .tippen
                    .visitor_message(&rt.site, &visitor_id, &text)
                    .await
                {
                    Ok(answer) => {
                        self.publish(&answer.broadcasts);
                        let sent = match &answer.reply {
                            Some(reply) => ws.send_with_str(reply),
                            None => Ok(()),
                        };
                        // The visitor's other tabs hear the change (the sender has the reply).
                        self.push_visitors(&rt, answer.visitor_pushes, Some(&ws))
                            .await;
                        sent
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "visitor message failed");
                        ws.close(Some(1011), Some("internal error"))
                    }
                }
            }
            None => ws.close(Some(1011), Some("unknown socket")),
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

/// Sends each text to every dashboard socket of the object, in order.
fn publish(state: &State, broadcasts: &[String]) {
    if broadcasts.is_empty() {
        return;
    }
    let sockets = state.get_websockets_with_tag(DASHBOARD_TAG);
    for text in broadcasts {
        for ws in &sockets {
            // A failed send means the socket is closing; its close event cleans up.
            let _ = ws.send_with_str(text);
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
    /// No request has named the site yet (an alarm or socket before any request).
    #[error("this object has not been told its site yet")]
    NoSite,
}
