//! The Worker's `fetch`: answers what needs no site (static assets, preflights, errors) and
//! forwards site-scoped work to the site's Durable Object.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tippen_core::api::{
    ApiError, RequestContext, Routed, SocketRole, operator_combine, operator_fanout_path,
    operator_site, presented_key, routing_site,
};
use tippen_core::history::Place;
use tippen_core::settings::register_sites;
use tippen_core::{MemoryStore, SiteId, Tippen};
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::config::WorkerConfig;
use crate::convert::{
    client_ip, effects_response, http_headers, http_request, read_body, wants_upgrade,
    worker_response,
};
use crate::runtime::WorkerClock;

/// The Durable Object namespace binding the Worker forwards to (`[[durable_objects.bindings]]`
/// `name` in `wrangler.toml`).
pub const SITE_OBJECT_BINDING: &str = "TIPPEN_SITE";

/// Internal header naming the site a forwarded request belongs to. The Worker sets it (after
/// authenticating the key) on every request it forwards; clients cannot reach a Durable
/// Object directly.
pub const SITE_HEADER: &str = "x-tippen-site";

/// Internal header carrying the client's country code from the request's `cf` object (set by
/// Cloudflare) to the site's Durable Object, which keeps it on the visit. The Worker drops a
/// client-sent one; a forwarded request has no `cf` object of its own.
pub const GEO_COUNTRY_HEADER: &str = "x-tippen-geo-country";

/// Internal header carrying the client's city (percent-encoded: header values are ASCII) from
/// the request's `cf` object to the site's Durable Object, like [`GEO_COUNTRY_HEADER`].
pub const GEO_CITY_HEADER: &str = "x-tippen-geo-city";

/// Internal header marking a request to the site registry (the Durable Object named
/// [`REGISTRY_OBJECT`], which lists the sites the operator API created). Only the Worker sets
/// it.
pub(crate) const REGISTRY_HEADER: &str = "x-tippen-registry";

/// The name of the Durable Object holding the site registry (no site uses it: site ids have no
/// leading `_`… and this one is reserved).
pub(crate) const REGISTRY_OBJECT: &str = "__tippen_registry";

/// Headers only the Worker sets on a forwarded request (a client's are dropped).
const INTERNAL_HEADERS: [&str; 4] = [
    SITE_HEADER,
    GEO_COUNTRY_HEADER,
    GEO_CITY_HEADER,
    REGISTRY_HEADER,
];

/// The store conformance route (only with `TIPPEN_TEST_ROUTES=1` and the crate feature
/// `test-routes`): `POST /__tippen/test/store-suite?prefix=<p>` runs
/// `tippen_core::testkit::run_store_suite` on a Durable Object's storage.
pub const STORE_SUITE_PATH: &str = "/__tippen/test/store-suite";

/// The history store conformance route (only with `TIPPEN_TEST_ROUTES=1`, the crate feature
/// `test-routes` and the D1 binding [`HISTORY_BINDING`](crate::HISTORY_BINDING)):
/// `POST /__tippen/test/history-suite?prefix=<p>` runs
/// `tippen_core::testkit::run_history_suite` on [`D1History`](crate::D1History).
pub const HISTORY_SUITE_PATH: &str = "/__tippen/test/history-suite";

/// The name of the Durable Object the conformance routes run in (no site uses it).
pub(crate) const STORE_SUITE_OBJECT: &str = "__tippen_store_suite";

/// Reads a variable or secret of the Worker's environment.
pub(crate) fn env_value(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

/// Reads the configuration from the environment.
pub(crate) fn load_config(env: &Env) -> Result<WorkerConfig, crate::config::ConfigError> {
    WorkerConfig::from_vars(|name| env_value(env, name))
}

/// A `500` naming a configuration problem (the operator's, never the client's).
pub(crate) fn config_error(e: &crate::config::ConfigError) -> worker::Result<Response> {
    tracing::error!(error = %e, "tippen configuration");
    worker_response(
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("server misconfigured: {e}"),
        )
        .into_response(),
    )
}

/// The Worker's core: the configured sites in memory (to authenticate keys and validate
/// requests); no visitor data is ever written to it.
struct Front {
    sites_json: String,
    config: WorkerConfig,
    tippen: Tippen,
}

thread_local! {
    /// The front core, rebuilt when `TIPPEN_SITES` changes (an isolate serves one deployment,
    /// so in practice it is built once per isolate).
    static FRONT: RefCell<Option<Rc<Front>>> = const { RefCell::new(None) };
}

async fn front(env: &Env) -> Result<Rc<Front>, crate::config::ConfigError> {
    let sites_json = env_value(env, "TIPPEN_SITES").unwrap_or_default();
    if let Some(front) = FRONT.with(|f| f.borrow().clone())
        && front.sites_json == sites_json
    {
        return Ok(front);
    }
    let config = load_config(env)?;
    let store = Arc::new(MemoryStore::new());
    let tippen = Tippen::new(store, Arc::new(WorkerClock), config.core.clone());
    // A memory store cannot fail.
    let _ = register_sites(&tippen, &config.sites).await;
    let front = Rc::new(Front {
        sites_json,
        config,
        tippen,
    });
    FRONT.with(|f| *f.borrow_mut() = Some(front.clone()));
    Ok(front)
}

/// Handles one request to the Worker: the whole HTTP and WebSocket contract
/// (`docs/contract.md`). A request presenting a known key goes to the Durable Object named
/// after that key's site id (`idFromName(site id)`), which answers it; a request without a
/// key or with an unknown one is answered here by the core (`401`/`403`, static pages,
/// preflights) and never reaches an object. Call it from your `#[event(fetch)]`.
pub async fn fetch(mut req: Request, env: &Env) -> worker::Result<Response> {
    let front = match front(env).await {
        Ok(front) => front,
        Err(e) => return config_error(&e),
    };
    let path = req.path();
    let path = path.trim_end_matches('/');
    if (path == STORE_SUITE_PATH || path == HISTORY_SUITE_PATH) && front.config.test_routes {
        return forward(env, STORE_SUITE_OBJECT, &req, Bytes::new()).await;
    }
    if let Some(authorized) = authorize_upgrade(&front.tippen, &req).await? {
        return match authorized {
            Ok(role) => forward(env, role.site().as_str(), &req, Bytes::new()).await,
            // A key or ticket of a site created at runtime: its object decides.
            Err(refusal) => match routing_site(&http_request(&req, Bytes::new())?) {
                Some(site) => forward(env, site.as_str(), &req, Bytes::new()).await,
                None => worker_response(refusal),
            },
        };
    }
    let body = match read_body(&mut req, front.tippen.config().limits.max_body_bytes).await? {
        Ok(body) => body,
        Err(too_large) => return worker_response(too_large),
    };
    let http_req = http_request(&req, body.clone())?;
    // A known key: the site's object runs the whole contract (its answers are the core's,
    // errors included). No key or an unknown one: the core answers here (401, 403, and what
    // needs no site: static pages, preflights, 404, 405, 413).
    if let Some(key) = presented_key(&http_req)
        && let Ok(Some((site, _))) = front.tippen.authenticate(&key).await
    {
        return forward(env, site.id.as_str(), &req, body).await;
    }
    if http_req.uri().path().starts_with("/api/operator/") && req.method() != Method::Options {
        return operator(env, &front, &req, http_req, body).await;
    }
    // A key the operator API issued names its site: that site's object decides.
    if let Some(site) = routing_site(&http_req) {
        return forward(env, site.as_str(), &req, body).await;
    }
    let ctx = RequestContext {
        client_ip: client_ip(http_req.headers()),
        ..RequestContext::default()
    };
    match front.tippen.route(http_req, &ctx).await {
        Routed::Done(done) => effects_response(done.response),
        // Unreachable without a known key; forwarding by the authorized site is still right.
        Routed::Site(call) => forward(env, call.site().as_str(), &req, body).await,
        Routed::Outbound(call) => forward(env, call.site().as_str(), &req, body).await,
    }
}

/// An operator request (`/api/operator/...`): one naming a site goes to that site's object
/// (a created site is then listed in the registry); one across sites is asked of every site's
/// object (the configured ones and the registry's) and joined by the core.
async fn operator(
    env: &Env,
    front: &Front,
    req: &Request,
    http_req: http::Request<Bytes>,
    body: Bytes,
) -> worker::Result<Response> {
    if let Some(refusal) = front.tippen.operator_refusal(&http_req) {
        return worker_response(refusal);
    }
    let path = http_req.uri().path().to_owned();
    let query = http_req.uri().query().map(str::to_owned);
    if let Some(site) = operator_site(&path, query.as_deref(), &body) {
        let creates =
            req.method() == Method::Post && path.trim_end_matches('/') == "/api/operator/sites";
        let response = forward(env, site.as_str(), req, body).await?;
        if creates && response.status_code() == 201 {
            registry(env, Method::Post, Some(site.as_str())).await?;
        }
        return Ok(response);
    }
    let mut ids: Vec<SiteId> = front.config.sites.iter().map(|s| s.id.clone()).collect();
    for id in registry_ids(env).await? {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut asks = Vec::new();
    for id in &ids {
        let Some(site_path) = operator_fanout_path(&path, query.as_deref(), id) else {
            // Not an operator route across sites: the core's 404 or 405.
            return match front
                .tippen
                .route(http_req, &RequestContext::default())
                .await
            {
                Routed::Done(done) => effects_response(done.response),
                _ => worker_response(
                    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {path}"))
                        .into_response(),
                ),
            };
        };
        asks.push(ask_site(env, id, req, site_path));
    }
    let mut answers = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        // A site whose object cannot answer is left out, not the whole answer.
        match answer {
            Ok(Some(v)) => answers.push(v),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "a site's object did not answer the operator"),
        }
    }
    let combined = operator_combine(&path, query.as_deref(), answers);
    let mut response = http::Response::new(Bytes::from(combined.to_string()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        "access-control-allow-origin",
        http::HeaderValue::from_static("*"),
    );
    worker_response(response)
}

/// `GET site_path` of `site`'s object with the operator's headers: the JSON body of a `200`,
/// `None` for any other answer (a site that does not exist there).
async fn ask_site(
    env: &Env,
    site: &SiteId,
    req: &Request,
    site_path: String,
) -> worker::Result<Option<serde_json::Value>> {
    let (stub, headers) = site_stub(env, site.as_str(), req)?;
    let mut url = req.url()?;
    let (p, q) = site_path.split_once('?').unwrap_or((&site_path, ""));
    url.set_path(p);
    url.set_query(Some(q).filter(|q| !q.is_empty()));
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let mut answer = stub
        .fetch_with_request(Request::new_with_init(url.as_str(), &init)?)
        .await?;
    if answer.status_code() != 200 {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&answer.bytes().await?).ok())
}

/// The site registry: `GET` lists the ids of the sites the operator API created, `POST` adds
/// `id`.
async fn registry(env: &Env, method: Method, id: Option<&str>) -> worker::Result<Response> {
    let stub = env
        .durable_object(SITE_OBJECT_BINDING)?
        .id_from_name(REGISTRY_OBJECT)?
        .get_stub()?;
    let headers = Headers::new();
    headers.set(REGISTRY_HEADER, "1")?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(id) = id {
        init.with_body(Some(wasm_bindgen::JsValue::from_str(id)));
    }
    stub.fetch_with_request(Request::new_with_init("https://registry.internal/", &init)?)
        .await
}

/// The ids in the site registry.
async fn registry_ids(env: &Env) -> worker::Result<Vec<SiteId>> {
    let mut answer = registry(env, Method::Get, None).await?;
    let ids: Vec<String> = serde_json::from_slice(&answer.bytes().await?).unwrap_or_default();
    Ok(ids.into_iter().map(SiteId).collect())
}

/// The core's word on a WebSocket upgrade ([`Tippen::authorize_socket`]): `None` when `req`
/// is not a `GET` asking for one to a socket path, else the socket's role or the refusal.
pub(crate) async fn authorize_upgrade(
    tippen: &Tippen,
    req: &Request,
) -> worker::Result<Option<Result<SocketRole, http::Response<Bytes>>>> {
    let headers = http_headers(req.headers());
    if !wants_upgrade(&headers) || req.method() != Method::Get {
        return Ok(None);
    }
    Ok(tippen
        .authorize_socket(&req.path(), &headers, req.url()?.query())
        .await)
}

/// Sends the request (method, URL, headers, `body`) to the Durable Object named `object`,
/// adding [`SITE_HEADER`] and the client's place from the `cf` object ([`GEO_COUNTRY_HEADER`],
/// [`GEO_CITY_HEADER`]).
async fn forward(env: &Env, object: &str, req: &Request, body: Bytes) -> worker::Result<Response> {
    let (stub, headers) = site_stub(env, object, req)?;
    if let Some(cf) = req.cf() {
        if let Some(country) = cf.country() {
            headers.set(GEO_COUNTRY_HEADER, &country)?;
        }
        if let Some(city) = cf.city() {
            headers.set(
                GEO_CITY_HEADER,
                &String::from(js_sys::encode_uri_component(&city)),
            )?;
        }
    }
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if !body.is_empty() && !matches!(method, Method::Get | Method::Head) {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_ref()).into()));
    }
    let forwarded = Request::new_with_init(req.url()?.as_str(), &init)?;
    stub.fetch_with_request(forwarded).await
}

/// The stub of the Durable Object named `object`, and the headers to send it: the client's,
/// without [`INTERNAL_HEADERS`], with [`SITE_HEADER`] naming `object`.
fn site_stub(env: &Env, object: &str, req: &Request) -> worker::Result<(worker::Stub, Headers)> {
    let stub = env
        .durable_object(SITE_OBJECT_BINDING)?
        .id_from_name(object)?
        .get_stub()?;
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !INTERNAL_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            headers.append(&name, &value)?;
        }
    }
    headers.set(SITE_HEADER, object)?;
    Ok((stub, headers))
}

/// The site a Durable Object serves, from a forwarded request's [`SITE_HEADER`].
pub(crate) fn forwarded_site(req: &Request) -> Option<SiteId> {
    req.headers()
        .get(SITE_HEADER)
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(SiteId)
}

/// The client's place on a forwarded request (what [`forward`] took from the `cf` object),
/// `None` when Cloudflare gave none.
pub(crate) fn forwarded_place(req: &Request) -> Option<Place> {
    let header = |name| req.headers().get(name).ok().flatten();
    let country = header(GEO_COUNTRY_HEADER);
    let city = header(GEO_CITY_HEADER)
        .and_then(|c| js_sys::decode_uri_component(&c).ok())
        .map(String::from);
    Some(Place::new(country.as_deref(), city.as_deref())).filter(|p| !p.is_empty())
}
