//! The HTTP contract: routing, key checks, status codes, error bodies, CORS and limits, over
//! `http` types. Hosts convert their request to `http::Request<Bytes>`, call
//! [`Tippen::handle`] (or [`Tippen::route`] then [`Tippen::execute`] to hold a per-site lock
//! around the write) and apply the [`Effects`] they answer with through
//! [`host::apply`](crate::host::apply). The dashboard WebSocket's and the visitor channel's
//! authorization and messages are here too, answering with [`Effects`] as well. `docs/contract.md` lists every route.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::assets;
use crate::effects::Effects;
use crate::invite::{InviteError, InviteEvent, InviteFromVisitor, InviteToVisitor, NewInvite};
use crate::presence::{Ping, PingKind, Visibility};
use crate::protocol::{
    CancelInviteRequest, ClientMessage, LeaveRequest, SendVideoInviteRequest, ServerMessage,
    TrackInviteRequest, TrackVisitorRequest, UserActivityRequest, VideoCallRequest,
    VideoCallResponse,
};
use crate::service::{ClientInfo, Outcome, ServiceError, Tippen};
use crate::site::{KeyRole, Site, SiteId};
use crate::transport::{Transport, TransportError};
use crate::video::{SessionRequest, VideoError};

/// The header carrying the key (Part A).
pub const API_KEY_HEADER: &str = "x-tippen-api-key";

/// What the host knows about a request beyond the request itself.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The client's address, as the host determined it (socket, `CF-Connecting-IP`, API
    /// Gateway's `sourceIp`, or a trusted proxy's header).
    pub client_ip: Option<IpAddr>,
    /// The client sent Global Privacy Control by other means than the `Sec-GPC: 1` header
    /// (which [`Tippen::route`] reads itself); hosts normally leave this `false`.
    pub gpc: bool,
}

/// The Global Privacy Control request header.
pub const GPC_HEADER: &str = "sec-gpc";

/// Whether the request carries `Sec-GPC: 1`.
fn sends_gpc(headers: &HeaderMap) -> bool {
    headers
        .get(GPC_HEADER)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// The outcome of [`Tippen::route`].
#[derive(Debug)]
pub enum Routed {
    /// Nothing site-specific to do (or an error): here is the answer.
    Done(Effects),
    /// An authorized operation on one site, to run with [`Tippen::execute`].
    Site(SiteCall),
    /// The request needs an outbound HTTP call first (the video provider of
    /// `POST /api/video-call`): send [`OutboundCall::request`] with the host's
    /// [`Transport`](crate::Transport), then pass the answer to [`Tippen::resume`], which
    /// routes on.
    Outbound(OutboundCall),
}

/// A request waiting for an outbound HTTP answer (see [`Routed::Outbound`]).
#[derive(Debug)]
pub struct OutboundCall {
    site: Site,
    request: Request<Bytes>,
    pending: Pending,
}

impl OutboundCall {
    /// The site the request is for.
    pub fn site(&self) -> &SiteId {
        &self.site.id
    }

    /// The request to send (clone it, or take it with [`into_request`](Self::into_request)).
    pub fn request(&self) -> &Request<Bytes> {
        &self.request
    }

    /// The request to send, leaving an empty one in its place.
    pub fn take_request(&mut self) -> Request<Bytes> {
        std::mem::take(&mut self.request)
    }
}

#[derive(Debug)]
enum Pending {
    VideoCall { new: NewInvite },
}

/// An authorized, validated operation on one site. Hosts with one owner per site run it under
/// that site's lock and fan out its broadcasts before releasing the lock, so dashboards see
/// messages in sequence order.
#[derive(Debug)]
pub struct SiteCall {
    site: Site,
    op: Op,
}

impl SiteCall {
    /// The site the operation touches.
    pub fn site(&self) -> &SiteId {
        &self.site.id
    }
}

#[derive(Debug)]
enum Op {
    Track {
        visitor_id: String,
        ping: Ping,
        client_ip: Option<IpAddr>,
        sends_gpc: bool,
    },
    Leave {
        visitor_id: String,
        tab_id: Option<String>,
    },
    ListVisitors,
    Stats,
    DeleteVisitor {
        visitor_id: String,
    },
    SendVideoInvite {
        new: NewInvite,
    },
    VideoCall {
        new: NewInvite,
    },
    CancelInvite {
        visitor_id: String,
        invite_id: String,
    },
    AnswerInvite {
        visitor_id: String,
        answer: InviteFromVisitor,
    },
    UserActivity {
        user_id: String,
        identity: crate::support::UserIdentity,
        events: Vec<crate::protocol::ActivityEvent>,
    },
    SupportUsers,
    DeleteUser {
        user_id: String,
    },
}

/// `200 {"success":true,"deleted":<bool>}`: the answer of a deletion (visitor or user).
fn deleted_response(deleted: bool) -> Response<Bytes> {
    #[derive(Serialize)]
    struct Deleted {
        success: bool,
        deleted: bool,
    }
    json_response(
        StatusCode::OK,
        &Deleted {
            success: true,
            deleted,
        },
    )
}

fn no_video_provider() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "no video provider is configured on this server; use /api/send-video-invite with a guestUrl",
    )
}

fn video_call_response(invite: &crate::invite::Invite) -> VideoCallResponse {
    VideoCallResponse {
        success: true,
        invite_id: invite.invite_id.clone(),
        host_url: invite.host_url.clone().unwrap_or_default(),
        guest_url: invite.guest_url.clone(),
        state: invite.state,
        expires_at: invite.expires_at,
    }
}

/// An error answer: status and message, sent as `{"error":"<message>"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message naming the problem.
    pub message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Bytes> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
        }
        let mut r = json_response(
            self.status,
            &Body {
                error: &self.message,
            },
        );
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::VisitorNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "Visitor not found")
            }
            ServiceError::Contention(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ServiceError::Invite(err @ InviteError::NotFound { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, err.to_string())
            }
            ServiceError::Invite(err) => ApiError::new(StatusCode::CONFLICT, err.to_string()),
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "store failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
            }
        }
    }
}

fn with_common_headers(mut r: Response<Bytes>) -> Response<Bytes> {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Bytes::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_common_headers(r)
}

fn static_response(content_type: &'static str, body: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(body.as_bytes()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    with_common_headers(r)
}

fn preflight() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, X-Tippen-API-Key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    with_common_headers(r)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Root,
    TrackVisitor,
    TrackLeave,
    TrackInvite,
    DashboardSocket,
    VisitorSocket,
    Visitors,
    Visitor,
    Stats,
    SendVideoInvite,
    VideoCall,
    CancelInvite,
    UserActivity,
    SupportUsers,
    User,
    AppTracker,
    Tracker,
    Dashboard,
    Demo,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        Some(match path {
            "/" | "" => Route::Root,
            "/track/visitor" => Route::TrackVisitor,
            "/track/leave" => Route::TrackLeave,
            "/track/invite" => Route::TrackInvite,
            "/ws/dashboard" => Route::DashboardSocket,
            "/ws/visitor" => Route::VisitorSocket,
            "/api/visitors" => Route::Visitors,
            p if p.starts_with("/api/visitors/") && p.len() > "/api/visitors/".len() => {
                Route::Visitor
            }
            "/api/stats" => Route::Stats,
            "/api/send-video-invite" => Route::SendVideoInvite,
            "/api/video-call" => Route::VideoCall,
            "/api/invites/cancel" => Route::CancelInvite,
            "/api/track/user-activity" => Route::UserActivity,
            "/api/support/users" => Route::SupportUsers,
            p if p.starts_with("/api/users/") && p.len() > "/api/users/".len() => Route::User,
            "/tippen-app-tracker.js" => Route::AppTracker,
            "/tippen-tracker.js" => Route::Tracker,
            "/dashboard" => Route::Dashboard,
            "/demo" => Route::Demo,
            _ => return None,
        })
    }

    fn allow(self) -> &'static str {
        match self {
            Route::TrackVisitor
            | Route::TrackLeave
            | Route::TrackInvite
            | Route::SendVideoInvite
            | Route::VideoCall
            | Route::CancelInvite
            | Route::UserActivity => "POST, OPTIONS",
            Route::Visitor | Route::User => "DELETE, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    fn method_ok(self, m: &Method) -> bool {
        match self.allow() {
            "POST, OPTIONS" => m == Method::POST,
            "DELETE, OPTIONS" => m == Method::DELETE,
            _ => m == Method::GET || m == Method::HEAD,
        }
    }
}

/// The value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(s: &str) -> String {
    // form_urlencoded also maps '+' to ' '; path segments keep '+', so protect it first.
    let protected = s.replace('+', "%2B");
    form_urlencoded::parse(format!("x={protected}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn key_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(query, "apiKey"))
        .filter(|k| !k.is_empty())
}

/// The key a request presents, from the places the routes accept it: the `X-Tippen-API-Key`
/// header, the `apiKey` query parameter, or an `apiKey` string field of a JSON body (in that
/// order). Nothing else is checked. For hosts that must pick a site's owner before running the
/// request (the Workers host forwards to the site's Durable Object); [`Tippen::route`] still
/// decides every answer.
pub fn presented_key(req: &Request<Bytes>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct BodyKey {
        #[serde(rename = "apiKey")]
        api_key: Option<String>,
    }
    key_from(req.headers(), req.uri().query()).or_else(|| {
        serde_json::from_slice::<BodyKey>(req.body())
            .ok()
            .and_then(|b| b.api_key)
            .filter(|k| !k.is_empty())
    })
}

/// A JSON request body that may carry the site's key (`apiKey`).
trait KeyedBody: DeserializeOwned {
    /// The key in the body, if any.
    fn api_key(&self) -> Option<&str>;
}

macro_rules! keyed_body {
    ($($t:ty),* $(,)?) => {
        $(impl KeyedBody for $t {
            fn api_key(&self) -> Option<&str> {
                self.api_key.as_deref()
            }
        })*
    };
}

keyed_body!(
    TrackVisitorRequest,
    LeaveRequest,
    SendVideoInviteRequest,
    VideoCallRequest,
    CancelInviteRequest,
    TrackInviteRequest,
    UserActivityRequest,
);

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    // The hot path (heartbeats) parses once without tracking paths; only a failed parse pays
    // for a second pass that names the field.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                // serde_json appends " at line L column C"; the path says more.
                let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                // Name JSON shapes, not Rust types.
                if let Some(i) = msg.find("expected struct ") {
                    msg.replace_range(i.., "expected a JSON object");
                }
                if path == "." {
                    ApiError::bad_request(format!("invalid request body: {msg}"))
                } else {
                    ApiError::bad_request(format!("{msg} at {path}"))
                }
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn check_id(what: &str, id: &str, max: usize) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > max {
        return Err(ApiError::bad_request(format!(
            "{what} must be 1 to {max} bytes long"
        )));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrackResponse<'a> {
    success: bool,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    invite: Option<InviteToVisitor>,
}

#[derive(Serialize)]
struct InviteStateResponse {
    success: bool,
    state: crate::invite::InviteState,
}

#[derive(Serialize)]
struct Success {
    success: bool,
}

#[derive(Serialize)]
struct ActivityResponse {
    success: bool,
    stored: usize,
    analyzed: bool,
}

#[derive(Serialize)]
struct VisitorsResponse {
    visitors: Vec<crate::protocol::VisitorView>,
    seq: u64,
}

/// `200 {"success":true,"state":…}`, or the conflict (409) of an event that found the invite
/// expired, keeping the expiry's broadcast.
fn invite_change_response(change: crate::service::InviteChange) -> (Response<Bytes>, Outcome) {
    let response = match change.refused {
        Some(err) => ApiError::from(ServiceError::Invite(err)).into_response(),
        None => json_response(
            StatusCode::OK,
            &InviteStateResponse {
                success: true,
                state: change.invite.state,
            },
        ),
    };
    (response, change.outcome)
}

impl Tippen {
    /// Checks `key` for `need`; the site on success.
    pub async fn authorize(&self, key: Option<&str>, need: KeyRole) -> Result<Site, ApiError> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "API key required"));
        };
        match self.authenticate(key).await? {
            None => Err(ApiError::new(StatusCode::FORBIDDEN, "invalid API key")),
            Some((_, KeyRole::Public)) if need == KeyRole::Secret => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this endpoint requires the site's secret key",
            )),
            Some((site, _)) => Ok(site),
        }
    }

    /// Parses a JSON body that may carry the key (`apiKey`) and authorizes the request: with
    /// `key` (header or query) when there is one — checked before the body is parsed, so a
    /// bad key is refused whatever the body — else with the body's.
    async fn keyed_body<T: KeyedBody>(
        &self,
        key: Option<&str>,
        body: &[u8],
        need: KeyRole,
    ) -> Result<(T, Site), ApiError> {
        self.keyed_body_checked(key, body, need, |_| Ok(())).await
    }

    /// [`keyed_body`](Self::keyed_body) with `precheck` run on the raw body after the header
    /// key's check and before parsing (a limit that must win over any other complaint).
    async fn keyed_body_checked<T: KeyedBody>(
        &self,
        key: Option<&str>,
        body: &[u8],
        need: KeyRole,
        precheck: impl FnOnce(&[u8]) -> Result<(), ApiError>,
    ) -> Result<(T, Site), ApiError> {
        let header_site = match key {
            Some(k) => Some(self.authorize(Some(k), need).await?),
            None => None,
        };
        precheck(body)?;
        let req: T = parse_body(body)?;
        let site = match header_site {
            Some(site) => site,
            None => self.authorize(req.api_key(), need).await?,
        };
        Ok((req, site))
    }

    /// Routes, authorizes and validates a request; site operations are returned unexecuted.
    pub async fn route(&self, req: Request<Bytes>, ctx: &RequestContext) -> Routed {
        match self.route_inner(req, ctx).await {
            Ok(r) => r,
            Err(e) => Routed::Done(Effects::respond(e.into_response())),
        }
    }

    async fn route_inner(
        &self,
        req: Request<Bytes>,
        ctx: &RequestContext,
    ) -> Result<Routed, ApiError> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let query = parts.uri.query();
        let Some(route) = Route::of(path) else {
            if parts.method == Method::OPTIONS {
                return Ok(Routed::Done(Effects::respond(preflight())));
            }
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no route for {} {}", parts.method, path),
            ));
        };
        if parts.method == Method::OPTIONS {
            return Ok(Routed::Done(Effects::respond(preflight())));
        }
        if !route.method_ok(&parts.method) {
            let mut e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {} not allowed on {}", parts.method, path),
            );
            e.allow = Some(route.allow());
            return Err(e);
        }
        let limits = &self.config().limits;
        if body.len() > limits.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body too large (limit {} bytes)",
                    limits.max_body_bytes
                ),
            ));
        }
        let key = key_from(&parts.headers, query);
        let done = |r| Ok(Routed::Done(Effects::respond(r)));
        let call = |site: Site, op: Op| Ok(Routed::Site(SiteCall { site, op }));
        match route {
            Route::Root => {
                let mut r = Response::new(Bytes::from_static(b"Tippen API"));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                done(with_common_headers(r))
            }
            Route::Tracker => done(static_response(
                "application/javascript; charset=utf-8",
                assets::TRACKER_JS,
            )),
            Route::AppTracker => done(static_response(
                "application/javascript; charset=utf-8",
                assets::APP_TRACKER_JS,
            )),
            Route::SupportUsers => {
                let site = self.authorize(key.as_deref(), KeyRole::Secret).await?;
                call(site, Op::SupportUsers)
            }
            Route::User => {
                let site = self.authorize(key.as_deref(), KeyRole::Secret).await?;
                let raw = path.trim_end_matches('/').trim_start_matches("/api/users/");
                let user_id = percent_decode(raw);
                check_id("user id", &user_id, limits.max_id_bytes)?;
                call(site, Op::DeleteUser { user_id })
            }
            Route::Dashboard => done(static_response(
                "text/html; charset=utf-8",
                assets::DASHBOARD_HTML,
            )),
            Route::Demo => done(static_response(
                "text/html; charset=utf-8",
                assets::DEMO_HTML,
            )),
            Route::DashboardSocket => {
                self.authorize(key.as_deref(), KeyRole::Secret).await?;
                Err(ApiError::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this endpoint is a WebSocket; send an upgrade request",
                ))
            }
            Route::VisitorSocket => {
                self.authorize(key.as_deref(), KeyRole::Public).await?;
                Err(ApiError::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this endpoint is a WebSocket; send an upgrade request",
                ))
            }
            Route::Visitors => {
                let site = self.authorize(key.as_deref(), KeyRole::Secret).await?;
                call(site, Op::ListVisitors)
            }
            Route::Stats => {
                let site = self.authorize(key.as_deref(), KeyRole::Secret).await?;
                call(site, Op::Stats)
            }
            Route::Visitor => {
                let site = self.authorize(key.as_deref(), KeyRole::Secret).await?;
                let raw = path
                    .trim_end_matches('/')
                    .trim_start_matches("/api/visitors/");
                let visitor_id = percent_decode(raw);
                check_id("visitor id", &visitor_id, limits.max_id_bytes)?;
                call(site, Op::DeleteVisitor { visitor_id })
            }
            Route::TrackVisitor => {
                let (req, site): (TrackVisitorRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Public)
                    .await?;
                let kind = match req.event.as_str() {
                    "pageview" => PingKind::PageView,
                    "heartbeat" => PingKind::Heartbeat,
                    "visibility" => PingKind::VisibilityChange,
                    "leave" => {
                        check_id(
                            "visitor.visitorId",
                            &req.visitor.visitor_id,
                            limits.max_id_bytes,
                        )?;
                        return call(
                            site,
                            Op::Leave {
                                visitor_id: req.visitor.visitor_id,
                                tab_id: req.visitor.tab_id,
                            },
                        );
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown event '{}' at event (expected pageview, heartbeat, visibility or leave)",
                            cut(other.to_owned(), 64)
                        )));
                    }
                };
                let v = req.visitor;
                check_id("visitor.visitorId", &v.visitor_id, limits.max_id_bytes)?;
                let tab_id = v.tab_id.unwrap_or_else(|| "default".to_owned());
                check_id("visitor.tabId", &tab_id, limits.max_id_bytes)?;
                let max = limits.max_text_bytes;
                let ping = Ping {
                    kind,
                    tab_id,
                    url: cut(v.url.unwrap_or_default(), max),
                    visibility: v.visibility.unwrap_or(Visibility::Visible),
                    referrer: v.referrer.map(|r| cut(r, max)),
                    user_agent: v.user_agent.map(|u| cut(u, 512)),
                    website: cut(req.website.unwrap_or_default(), 253),
                    client_timestamp: v.timestamp.map(|t| cut(t, 64)),
                };
                call(
                    site,
                    Op::Track {
                        visitor_id: v.visitor_id,
                        ping,
                        client_ip: ctx.client_ip,
                        sends_gpc: ctx.gpc || sends_gpc(&parts.headers),
                    },
                )
            }
            Route::TrackLeave => {
                let (req, site): (LeaveRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Public)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                call(
                    site,
                    Op::Leave {
                        visitor_id: req.visitor_id,
                        tab_id: req.tab_id,
                    },
                )
            }
            Route::SendVideoInvite => {
                let (req, site): (SendVideoInviteRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Secret)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                if !(req.guest_url.starts_with("https://") || req.guest_url.starts_with("http://"))
                    || req.guest_url.len() > limits.max_text_bytes
                {
                    return Err(ApiError::bad_request(
                        "guestUrl must be an http(s) URL of at most 2048 bytes",
                    ));
                }
                let invite_id = match req.invite_id {
                    Some(id) => {
                        check_id("inviteId", &id, limits.max_id_bytes)?;
                        id
                    }
                    None => self.new_invite_id(),
                };
                let mut new = NewInvite::new(&invite_id, &req.visitor_id, &req.guest_url);
                new.invited_by = req.invited_by.map(|b| cut(b, 128));
                call(site, Op::SendVideoInvite { new })
            }
            Route::VideoCall => {
                let (req, site): (VideoCallRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Secret)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                let invite_id = match req.invite_id {
                    Some(id) => {
                        check_id("inviteId", &id, limits.max_id_bytes)?;
                        id
                    }
                    None => self.new_invite_id(),
                };
                self.route_video_call(
                    site,
                    req.visitor_id,
                    invite_id,
                    req.invited_by,
                    req.host_name,
                    req.guest_name,
                )
                .await
            }
            Route::CancelInvite => {
                let (req, site): (CancelInviteRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Secret)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                check_id("inviteId", &req.invite_id, limits.max_id_bytes)?;
                call(
                    site,
                    Op::CancelInvite {
                        visitor_id: req.visitor_id,
                        invite_id: req.invite_id,
                    },
                )
            }
            Route::TrackInvite => {
                let (req, site): (TrackInviteRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Public)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                check_id("inviteId", req.answer.invite_id(), limits.max_id_bytes)?;
                call(
                    site,
                    Op::AnswerInvite {
                        visitor_id: req.visitor_id,
                        answer: req.answer,
                    },
                )
            }
            Route::UserActivity => {
                // Count first so an oversized batch is a 413 whatever its events look like.
                #[derive(serde::Deserialize)]
                struct Count {
                    #[serde(default)]
                    events: Option<Vec<serde::de::IgnoredAny>>,
                }
                let max = limits.max_activity_batch;
                let count_events = |body: &[u8]| {
                    let count: Count = parse_body(body)?;
                    let n = count.events.as_ref().map_or(0, Vec::len);
                    if n > max {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("batch of {n} events exceeds the limit of {max} per request"),
                        ));
                    }
                    Ok(())
                };
                let (req, site): (UserActivityRequest, _) = self
                    .keyed_body_checked(key.as_deref(), &body, KeyRole::Public, count_events)
                    .await?;
                check_id("userId", &req.user_id, limits.max_id_bytes)?;
                let identity = crate::support::UserIdentity {
                    email: req
                        .user_email
                        .map(|e| cut(e, 254))
                        .filter(|e| !e.is_empty()),
                    tier: req.subscription_tier,
                };
                let support = &self.config().support;
                let events = req
                    .events
                    .into_iter()
                    .map(|e| crate::support::bounded_event(e, support))
                    .collect();
                call(
                    site,
                    Op::UserActivity {
                        user_id: req.user_id,
                        identity,
                        events,
                    },
                )
            }
        }
    }

    /// Runs an operation returned by [`route`](Self::route).
    pub async fn execute(&self, call: SiteCall) -> Effects {
        let honours_gpc = call.site.honor_gpc;
        let site = call.site.id;
        let result: Result<(Response<Bytes>, Outcome), ApiError> = async {
            Ok(match call.op {
                Op::Track {
                    visitor_id,
                    ping,
                    client_ip,
                    sends_gpc,
                } => {
                    let client = ClientInfo {
                        ip: client_ip,
                        sends_gpc,
                        site_honours_gpc: honours_gpc,
                    };
                    let outcome = self.track_client(&site, &visitor_id, &ping, client).await?;
                    let body = TrackResponse {
                        success: true,
                        session_id: &visitor_id,
                        invite: outcome.invite.clone(),
                    };
                    (json_response(StatusCode::OK, &body), outcome)
                }
                Op::Leave { visitor_id, tab_id } => {
                    let outcome = self.leave(&site, &visitor_id, tab_id.as_deref()).await?;
                    (
                        json_response(StatusCode::OK, &Success { success: true }),
                        outcome,
                    )
                }
                Op::ListVisitors => {
                    let seq = self
                        .store()
                        .sequence(&site)
                        .await
                        .map_err(ServiceError::from)?;
                    let visitors = self.live_visitors(&site).await?;
                    (
                        json_response(StatusCode::OK, &VisitorsResponse { visitors, seq }),
                        Outcome::default(),
                    )
                }
                Op::Stats => {
                    let stats = self.enrichment_stats(&site).await?;
                    (
                        json_response(StatusCode::OK, &stats.report()),
                        Outcome::default(),
                    )
                }
                Op::DeleteVisitor { visitor_id } => {
                    let (deleted, outcome) = self.delete_visitor(&site, &visitor_id).await?;
                    (deleted_response(deleted), outcome)
                }
                Op::SendVideoInvite { new } => {
                    // Part A's answer, byte for byte: the id is in the broadcast.
                    let (_, outcome) = self.send_invite(&site, new).await?;
                    (
                        json_response(StatusCode::OK, &Success { success: true }),
                        outcome,
                    )
                }
                Op::VideoCall { new } => {
                    let (invite, outcome) = self.send_invite(&site, new).await?;
                    (
                        json_response(StatusCode::OK, &video_call_response(&invite)),
                        outcome,
                    )
                }
                Op::CancelInvite {
                    visitor_id,
                    invite_id,
                } => {
                    let change = self
                        .invite_event(&site, &visitor_id, &invite_id, InviteEvent::Cancelled)
                        .await?;
                    invite_change_response(change)
                }
                Op::AnswerInvite { visitor_id, answer } => {
                    let change = self
                        .invite_event(&site, &visitor_id, answer.invite_id(), answer.event())
                        .await?;
                    invite_change_response(change)
                }
                Op::UserActivity {
                    user_id,
                    identity,
                    events,
                } => {
                    let outcome = self
                        .record_activity(&site, &user_id, &identity, &events)
                        .await?;
                    (
                        json_response(
                            StatusCode::OK,
                            &ActivityResponse {
                                success: true,
                                stored: events.len(),
                                analyzed: true,
                            },
                        ),
                        outcome,
                    )
                }
                Op::SupportUsers => (
                    json_response(StatusCode::OK, &self.support_overview(&site).await?),
                    Outcome::default(),
                ),
                Op::DeleteUser { user_id } => {
                    let (deleted, outcome) = self.delete_user(&site, &user_id).await?;
                    (deleted_response(deleted), outcome)
                }
            })
        }
        .await;
        match result {
            Ok((response, outcome)) => Effects {
                response: Some(response),
                ..Effects::from_outcome(&site, outcome, false)
            },
            Err(e) => Effects {
                site: Some(site),
                ..Effects::respond(e.into_response())
            },
        }
    }

    /// Routes and executes a request in one call (for hosts without per-site locking), with
    /// no outbound HTTP: a request that needs it ([`Routed::Outbound`]) is answered as if the
    /// transport were [`Unavailable`](TransportError::Unavailable). See
    /// [`handle_with`](Self::handle_with).
    pub async fn handle(&self, req: Request<Bytes>, ctx: &RequestContext) -> Effects {
        let mut routed = self.route(req, ctx).await;
        loop {
            match routed {
                Routed::Done(h) => return h,
                Routed::Site(call) => return self.execute(call).await,
                Routed::Outbound(call) => {
                    routed = self.resume(call, Err(TransportError::Unavailable));
                }
            }
        }
    }

    /// Routes and executes a request in one call, sending outbound requests with `transport`.
    pub async fn handle_with(
        &self,
        req: Request<Bytes>,
        ctx: &RequestContext,
        transport: &dyn Transport,
    ) -> Effects {
        let mut routed = self.route(req, ctx).await;
        loop {
            match routed {
                Routed::Done(h) => return h,
                Routed::Site(call) => return self.execute(call).await,
                Routed::Outbound(mut call) => {
                    let answer = transport.send(call.take_request()).await;
                    routed = self.resume(call, answer);
                }
            }
        }
    }

    /// Continues a request after its outbound call ([`Routed::Outbound`]) with the answer, or
    /// the transport's failure. A provider that failed or answered out of contract is a
    /// `502 {"error":…}` naming the problem (`503` with `Retry-After` when it rate limits);
    /// nothing has changed then.
    pub fn resume(
        &self,
        call: OutboundCall,
        answer: Result<Response<Bytes>, TransportError>,
    ) -> Routed {
        let OutboundCall { site, pending, .. } = call;
        match pending {
            Pending::VideoCall { mut new } => {
                let Some(provider) = self.video_provider() else {
                    return Routed::Done(Effects::respond(no_video_provider().into_response()));
                };
                let session = match answer {
                    Ok(response) => provider.parse_session(&response),
                    Err(e) => {
                        tracing::warn!(error = %e, "video provider unreachable");
                        return Routed::Done(Effects::respond(
                            ApiError::new(
                                StatusCode::BAD_GATEWAY,
                                format!("the video provider could not be reached: {e}"),
                            )
                            .into_response(),
                        ));
                    }
                };
                match session {
                    Ok(session) => {
                        new.guest_url = session.guest_url;
                        new.host_url = Some(session.host_url);
                        Routed::Site(SiteCall {
                            site,
                            op: Op::VideoCall { new },
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "video provider failed");
                        let status = match e {
                            VideoError::RateLimited => StatusCode::SERVICE_UNAVAILABLE,
                            _ => StatusCode::BAD_GATEWAY,
                        };
                        Routed::Done(Effects::respond(
                            ApiError::new(status, e.to_string()).into_response(),
                        ))
                    }
                }
            }
        }
    }

    /// `POST /api/video-call` after validation: answers a retry (same invite id) from the
    /// stored invite, refuses an absent visitor (404) or one with another open invite (409)
    /// before any session is created, and otherwise asks for the provider call.
    async fn route_video_call(
        &self,
        site: Site,
        visitor_id: String,
        invite_id: String,
        invited_by: Option<String>,
        host_name: Option<String>,
        guest_name: Option<String>,
    ) -> Result<Routed, ApiError> {
        let Some(provider) = self.video_provider() else {
            return Err(no_video_provider());
        };
        let now = self.now();
        let cfg = &self.config().presence;
        let record = self
            .store()
            .visitor(&site.id, &visitor_id)
            .await
            .map_err(ServiceError::from)?
            .map(|v| v.value)
            .filter(|v| v.live_at(now, cfg))
            .ok_or(ServiceError::VisitorNotFound)?;
        if let Some(invite) = record.invite.as_ref() {
            if invite.invite_id == invite_id && invite.host_url.is_some() {
                return Ok(Routed::Done(Effects::respond(json_response(
                    StatusCode::OK,
                    &video_call_response(invite),
                ))));
            }
            if invite.is_open() && !invite.is_due(now) && invite.invite_id != invite_id {
                return Err(ServiceError::Invite(InviteError::AlreadyOpen {
                    invite_id: invite.invite_id.clone(),
                })
                .into());
            }
        }
        let invited_by = invited_by.map(|b| cut(b, 128));
        let session = SessionRequest {
            host_name: cut(
                host_name
                    .or_else(|| invited_by.clone())
                    .unwrap_or_else(|| "Tippen".to_owned()),
                128,
            ),
            guest_name: cut(
                guest_name
                    // A known company names the guest; the fallbacks ("Unknown Company") do not.
                    .or_else(|| {
                        record
                            .company
                            .domain
                            .is_some()
                            .then(|| record.company.name.clone())
                    })
                    .unwrap_or_else(|| "Visitor".to_owned()),
                128,
            ),
        };
        let request = provider.create_session_request(&session);
        let mut new = NewInvite::new(&invite_id, &visitor_id, "");
        new.invited_by = invited_by;
        Ok(Routed::Outbound(OutboundCall {
            site,
            request,
            pending: Pending::VideoCall { new },
        }))
    }

    /// Authorizes a WebSocket upgrade of `path` (`/ws/dashboard` or `/ws/visitor`, a
    /// trailing slash allowed): `None` when the path is not a socket path, else the socket's
    /// role or the refusal to send instead of upgrading. The key comes from the
    /// `X-Tippen-Api-Key` header or the `apiKey` query parameter. A dashboard needs the
    /// secret key; the visitor channel any of the site's keys and a `visitorId` (no key: 401;
    /// an unknown key: 403; a missing or over-long `visitorId`: 400). On success the host
    /// upgrades, subscribes the socket, then sends what [`socket_open`](Self::socket_open)
    /// answers.
    pub async fn authorize_socket(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Option<Result<SocketRole, Response<Bytes>>> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let need = match path {
            "/ws/dashboard" => KeyRole::Secret,
            "/ws/visitor" => KeyRole::Public,
            _ => return None,
        };
        let key = key_from(headers, query);
        let result = async {
            let site = self.authorize(key.as_deref(), need).await?.id;
            if need == KeyRole::Secret {
                return Ok(SocketRole::Dashboard { site });
            }
            let visitor_id = query_param(query, "visitorId").unwrap_or_default();
            check_id("visitorId", &visitor_id, self.config().limits.max_id_bytes)?;
            Ok(SocketRole::Visitor { site, visitor_id })
        }
        .await;
        Some(result.map_err(ApiError::into_response))
    }

    /// A socket authorized by [`authorize_socket`](Self::authorize_socket) has opened (the
    /// host has subscribed it): its first message as the reply. A dashboard gets
    /// `INITIAL_VISITORS`; a visitor its open invite as a `VIDEO_INVITE` (none when it has
    /// none). Sending that delivers the invite: one in state `sent` becomes `delivered`, and
    /// the broadcasts say so (an invite found due is expired instead, and not sent). Run it
    /// under the site's owner and apply the effects.
    pub async fn socket_open(&self, role: &SocketRole) -> Result<Effects, ServiceError> {
        match role {
            SocketRole::Dashboard { site } => Ok(Effects {
                site: Some(site.clone()),
                ..Effects::reply(self.snapshot(site).await?.to_json())
            }),
            SocketRole::Visitor { site, visitor_id } => self.visitor_hello(site, visitor_id).await,
        }
    }

    /// A text frame from a socket authorized by [`authorize_socket`](Self::authorize_socket):
    /// the reply for the same socket and what else it caused. Run it under the site's owner
    /// and apply the effects with this socket as their origin (its own pushes skip it). Only
    /// a store failure is an `Err`; a malformed frame is answered with an `ERROR` reply.
    pub async fn socket_frame(
        &self,
        role: &SocketRole,
        text: &str,
    ) -> Result<Effects, ServiceError> {
        match role {
            SocketRole::Dashboard { site } => {
                let reply = self.dashboard_message(site, text).await?;
                Ok(Effects {
                    site: Some(site.clone()),
                    ..Effects::reply(reply)
                })
            }
            SocketRole::Visitor { site, visitor_id } => {
                self.visitor_message(site, visitor_id, text).await
            }
        }
    }

    /// A dashboard's text message; returns the reply to send on the same socket.
    async fn dashboard_message(&self, site: &SiteId, text: &str) -> Result<String, ServiceError> {
        let reply = match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::Ping) => {
                self.reply(
                    site,
                    ServerMessage::Pong {
                        timestamp: self.now().as_millis(),
                    },
                )
                .await?
            }
            Ok(ClientMessage::GetVisitors) => self.snapshot(site).await?,
            Err(_) => {
                let kind = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| {
                        v.get("type")
                            .and_then(|t| t.as_str())
                            .map(|t| cut(t.to_owned(), 64))
                    });
                let error = match kind {
                    Some(t) => {
                        format!("unknown message type '{t}' (expected PING or GET_VISITORS)")
                    }
                    None => {
                        "expected a JSON object with a \"type\" of PING or GET_VISITORS".to_owned()
                    }
                };
                self.reply(site, ServerMessage::Error { error }).await?
            }
        };
        Ok(reply.to_json())
    }

    /// A site's deadline has come (its timer fired): sweeps what is due — expired visitors,
    /// invites and support triggers — and answers with what that broadcasts and pushes, and
    /// the site's next deadline, [`Deadline::Exactly`](crate::effects::Deadline) (read under
    /// the site's owner). Spurious or late calls are harmless. When the deadline returned is
    /// already due, more than one batch was: call again.
    pub async fn handle_timeout(&self, site: &SiteId) -> Result<Effects, ServiceError> {
        let outcome = self.sweep(site).await?;
        Ok(Effects::from_outcome(site, outcome, true))
    }

    /// The visitor channel's hello (see [`socket_open`](Self::socket_open)).
    async fn visitor_hello(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Effects, ServiceError> {
        let quiet = || Effects {
            site: Some(site.clone()),
            ..Effects::default()
        };
        let now = self.now();
        let open = self
            .store()
            .visitor(site, visitor_id)
            .await?
            .filter(|v| v.value.live_at(now, &self.config().presence))
            .and_then(|v| v.value.open_invite().map(|i| i.invite_id.clone()));
        let Some(invite_id) = open else {
            return Ok(quiet());
        };
        let change = match self
            .invite_event(site, visitor_id, &invite_id, InviteEvent::Delivered)
            .await
        {
            Ok(change) => change,
            Err(ServiceError::Invite(_) | ServiceError::VisitorNotFound) => return Ok(quiet()),
            Err(e) => return Err(e),
        };
        let reply = change
            .invite
            .is_open()
            .then(|| serde_json::to_string(&change.invite.visitor_message(now)))
            .transpose()
            .unwrap_or_default();
        Ok(Effects {
            reply,
            ..Effects::from_outcome(site, change.outcome, false)
        })
    }

    /// A visitor socket took the pushed `VIDEO_INVITE` `invite_id`: an invite still `sent`
    /// becomes `delivered`. Idempotent (later calls, or an invite already further along or
    /// gone, change nothing). [`host::apply`](crate::host::apply) calls it once per push that
    /// reached a socket.
    pub async fn invite_delivered(
        &self,
        site: &SiteId,
        visitor_id: &str,
        invite_id: &str,
    ) -> Result<Effects, ServiceError> {
        match self
            .invite_event(site, visitor_id, invite_id, InviteEvent::Delivered)
            .await
        {
            Ok(change) => Ok(Effects::from_outcome(site, change.outcome, false)),
            Err(ServiceError::Invite(_) | ServiceError::VisitorNotFound) => Ok(Effects {
                site: Some(site.clone()),
                ..Effects::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// A visitor socket's text message: `{"type":"INVITE_SEEN"|"INVITE_ACCEPTED"|
    /// "INVITE_DECLINED","inviteId":…}`, applied like `POST /track/invite`. The reply is
    /// `{"type":"VIDEO_INVITE_UPDATE","inviteId","state"}` with the state now, or
    /// `{"type":"ERROR","error":…}` (malformed message, unknown invite, conflict); the pushes
    /// tell the visitor's other tabs (the popup hides).
    async fn visitor_message(
        &self,
        site: &SiteId,
        visitor_id: &str,
        text: &str,
    ) -> Result<Effects, ServiceError> {
        let error = |error: String| Effects {
            site: Some(site.clone()),
            ..Effects::reply(serde_json::json!({ "type": "ERROR", "error": error }).to_string())
        };
        let answer = match serde_json::from_str::<InviteFromVisitor>(text) {
            Ok(answer) => answer,
            Err(_) => {
                let msg = "expected a JSON object with a \"type\" of INVITE_SEEN, \
                           INVITE_ACCEPTED or INVITE_DECLINED and an \"inviteId\"";
                return Ok(error(msg.to_owned()));
            }
        };
        let change = match self
            .invite_event(site, visitor_id, answer.invite_id(), answer.event())
            .await
        {
            Ok(change) => change,
            Err(e @ (ServiceError::Invite(_) | ServiceError::VisitorNotFound)) => {
                return Ok(error(ApiError::from(e).message));
            }
            Err(e) => return Err(e),
        };
        let reply = match change.refused {
            Some(err) => {
                serde_json::json!({ "type": "ERROR", "error": err.to_string() }).to_string()
            }
            None => serde_json::to_string(&InviteToVisitor::VideoInviteUpdate {
                invite_id: change.invite.invite_id.clone(),
                state: change.invite.state,
            })
            .unwrap_or_default(),
        };
        Ok(Effects {
            reply: Some(reply),
            ..Effects::from_outcome(site, change.outcome, false)
        })
    }
}

/// What a WebSocket authorized by [`Tippen::authorize_socket`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketRole {
    /// A dashboard (`/ws/dashboard`) of a site: it hears every broadcast of the site.
    Dashboard {
        /// The site.
        site: SiteId,
    },
    /// A visitor's channel (`/ws/visitor`): it hears the pushes for that visitor.
    Visitor {
        /// The site.
        site: SiteId,
        /// The visitor.
        visitor_id: String,
    },
}

impl SocketRole {
    /// The site of the socket.
    pub fn site(&self) -> &SiteId {
        match self {
            SocketRole::Dashboard { site } | SocketRole::Visitor { site, .. } => site,
        }
    }
}
