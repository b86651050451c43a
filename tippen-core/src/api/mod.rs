//! The HTTP contract: routing, key checks, status codes, error bodies, CORS and limits, over
//! `http` types. Hosts convert their request to `http::Request<Bytes>`, call
//! [`Tippen::handle`] (or [`Tippen::route`] then [`Tippen::execute`] to hold a per-site lock
//! around the write) and apply the [`Effects`] they answer with through
//! [`host::apply`](crate::host::apply). The dashboard WebSocket's and the visitor channel's
//! authorization and messages are here too, answering with [`Effects`] as well. `docs/contract.md` lists every route.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

mod access;
mod alert_rules;
mod extract;
mod history;
mod operator;
mod response;
mod socket;
mod ticket;

pub use extract::{API_KEY_HEADER, DNT_HEADER, GPC_HEADER, presented_key, query_param};
pub use operator::{operator_combine, operator_fanout_path, operator_site, overview_of};
pub use response::ApiError;
pub use socket::SocketRole;
pub use ticket::TICKET_PARAM;

use access::{AuditNote, Caller};
use extract::*;
use response::*;

#[cfg(feature = "assets")]
use crate::assets;
use crate::effects::Effects;
use crate::invite::{InviteError, InviteEvent, InviteFromVisitor, NewInvite};
use crate::presence::{Ping, PingKind, Visibility};
use crate::protocol::{
    CancelInviteRequest, LeaveRequest, SendVideoInviteRequest, TrackInviteRequest,
    TrackVisitorRequest, UserActivityRequest, VideoCallRequest,
};
use crate::service::{ClientInfo, Outcome, ServiceError, Tippen};
use crate::site::{KeyRole, Site, SiteId};
use crate::transport::{Transport, TransportError};
use crate::video::{SessionRequest, VideoError};

/// The `cursor` and `limit` of `GET /api/users/{id}/activity` (a bad one is a 400 naming it).
fn activity_page(query: Option<&str>) -> Result<crate::support::activity::ActivityPage, ApiError> {
    use crate::support::activity::{ACTIVITY_LIMIT, ActivityPage};
    let param = |name| query_param(query, name).filter(|v| !v.is_empty());
    let (default, max) = ACTIVITY_LIMIT;
    let limit = match param("limit") {
        None => default,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid 'limit' (expected 1 to {max})"))
            })?,
    };
    let before = match param("cursor") {
        None => None,
        Some(raw) => Some(ActivityPage::parse_cursor(&raw).ok_or_else(|| {
            ApiError::bad_request("invalid 'cursor' (pass back a nextCursor as it came)")
        })?),
    };
    Ok(ActivityPage { before, limit })
}

/// The site a request names for hosts that keep each site apart (the Workers host forwards
/// to the site's Durable Object) when they do not know its key: a key the server issued
/// ([`site_in_key`](crate::site::site_in_key)), a dashboard socket's ticket, or an operator
/// route's site ([`operator_site`]). Only a hint for routing: the site's owner runs the
/// request through [`Tippen::route`] and decides the answer.
pub fn routing_site(req: &Request<Bytes>) -> Option<SiteId> {
    let query = req.uri().query();
    if let Some(site) = presented_key(req).and_then(|k| crate::site::site_in_key(&k)) {
        return Some(site);
    }
    if let Some(ticket) = query_param(query, TICKET_PARAM) {
        return ticket::Ticket::parse(&ticket)
            .ok()
            .map(|t| SiteId(t.site.to_owned()));
    }
    operator_site(req.uri().path(), query, req.body())
}

/// What the host knows about a request beyond the request itself.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The client's address, as the host determined it (socket, `CF-Connecting-IP`, API
    /// Gateway's `sourceIp`, or a trusted proxy's header).
    pub client_ip: Option<IpAddr>,
    /// The client sent Global Privacy Control by other means than the `Sec-GPC: 1` header
    /// (which [`Tippen::route`] reads itself); hosts normally leave this `false`.
    pub gpc: bool,
    /// Where the client is, when the host's platform says (Cloudflare's `cf` object,
    /// CloudFront's viewer headers: see [`Place::from_headers`](crate::history::Place)):
    /// kept on the visit for history.
    pub place: Option<crate::history::Place>,
    /// The caller an embedding backend signed in by its own means (see [`Principal`]): used
    /// when the request presents no key. Only the host sets it, never from what a client
    /// sent.
    pub principal: Option<Principal>,
}

/// A user an embedding backend has signed in by its own means (a session cookie, OIDC), with
/// the role it grants them on one site: tippen authorizes that user's requests (those without
/// a key) as if they held a member token of that role, and records their name in the audit
/// log and on their invites. `tippen_axum::Authorize` maps a backend's sessions to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The site.
    pub site: SiteId,
    /// What the user may do there ([`KeyRole::Viewer`], [`KeyRole::Agent`] or
    /// [`KeyRole::Secret`], the admin's).
    pub role: KeyRole,
    /// The user's name, as the audit log and invites show it.
    pub name: String,
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
    /// [`Transport`], then pass the answer to [`Tippen::resume`], which
    /// routes on.
    Outbound(OutboundCall),
}

impl Routed {
    /// The site whose key the request presented, once authenticated (`None` when the answer
    /// is already decided): what a host needs to apply the site's own limits
    /// ([`Site::key_rate_limit`]) before running it.
    pub fn site_record(&self) -> Option<&Site> {
        match self {
            Routed::Done(_) => None,
            Routed::Site(call) => Some(&call.site),
            Routed::Outbound(call) => Some(&call.site),
        }
    }
}

/// A request waiting for an outbound HTTP answer (see [`Routed::Outbound`]).
#[derive(Debug)]
pub struct OutboundCall {
    site: Site,
    request: Request<Bytes>,
    pending: Pending,
    audit: Option<AuditNote>,
}

impl OutboundCall {
    /// The site the request is for.
    pub fn site(&self) -> &SiteId {
        &self.site.id
    }

    /// The request to send (clone it, or take it with [`take_request`](Self::take_request)).
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
    /// Recorded in the audit log once the operation is done.
    audit: Option<AuditNote>,
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
        sends_dnt: bool,
        place: Option<crate::history::Place>,
    },
    Leave {
        visitor_id: String,
        tab_id: Option<String>,
        page_id: Option<String>,
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
    UserActivityRead {
        user_id: String,
        page: crate::support::activity::ActivityPage,
    },
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
    UserActivityRead,
    Visits,
    Visit,
    Companies,
    Company,
    Analytics,
    WsTicket,
    AlertRules,
    AlertRule,
    AlertDestinations,
    Alerts,
    Members,
    Member,
    Audit,
    Me,
    Operator(operator::OperatorRoute),
    /// A browser asset (feature `assets`).
    #[cfg(feature = "assets")]
    Asset(assets::Asset),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        #[cfg(feature = "assets")]
        if let Some(asset) = assets::find(path) {
            return Some(Route::Asset(asset));
        }
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
            p if p
                .strip_prefix("/api/users/")
                .and_then(|rest| rest.strip_suffix("/activity"))
                .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
            {
                Route::UserActivityRead
            }
            p if p.starts_with("/api/users/") && p.len() > "/api/users/".len() => Route::User,
            "/api/visits" => Route::Visits,
            p if p.starts_with("/api/visits/") && p.len() > "/api/visits/".len() => Route::Visit,
            "/api/companies" => Route::Companies,
            p if p.starts_with("/api/companies/") && p.len() > "/api/companies/".len() => {
                Route::Company
            }
            "/api/analytics" => Route::Analytics,
            "/api/ws-ticket" => Route::WsTicket,
            "/api/alert-rules" => Route::AlertRules,
            "/api/alert-destinations" => Route::AlertDestinations,
            "/api/alerts" => Route::Alerts,
            "/api/members" => Route::Members,
            p if p
                .strip_prefix("/api/members/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
            {
                Route::Member
            }
            "/api/audit" => Route::Audit,
            "/api/me" => Route::Me,
            p if p.starts_with("/api/operator/") => {
                return operator::OperatorRoute::of(p).map(Route::Operator);
            }
            p if p
                .strip_prefix("/api/alert-rules/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
            {
                Route::AlertRule
            }
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
            | Route::UserActivity
            | Route::WsTicket => "POST, OPTIONS",
            Route::Visitor | Route::User => "DELETE, OPTIONS",
            Route::AlertRules => "GET, HEAD, POST, OPTIONS",
            Route::AlertRule => "GET, HEAD, PUT, DELETE, OPTIONS",
            Route::Members => "GET, HEAD, POST, OPTIONS",
            Route::Member => "DELETE, OPTIONS",
            Route::Operator(r) => r.allow(),
            Route::AlertDestinations => "GET, HEAD, PUT, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    fn method_ok(self, m: &Method) -> bool {
        match self.allow() {
            "POST, OPTIONS" => m == Method::POST,
            "DELETE, OPTIONS" => m == Method::DELETE,
            "GET, HEAD, POST, OPTIONS" => {
                m == Method::GET || m == Method::HEAD || m == Method::POST
            }
            "GET, HEAD, PUT, OPTIONS" => m == Method::GET || m == Method::HEAD || m == Method::PUT,
            "GET, HEAD, PUT, DELETE, OPTIONS" => {
                m == Method::GET || m == Method::HEAD || m == Method::PUT || m == Method::DELETE
            }
            "GET, HEAD, PATCH, OPTIONS" => {
                m == Method::GET || m == Method::HEAD || m == Method::PATCH
            }
            _ => m == Method::GET || m == Method::HEAD,
        }
    }
}

impl Tippen {
    /// Checks `key` for `need`; the site on success.
    pub async fn authorize(&self, key: Option<&str>, need: KeyRole) -> Result<Site, ApiError> {
        Ok(self
            .caller(key, need, &RequestContext::default(), None)
            .await?
            .site)
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

    /// [`keyed_body`](Self::keyed_body) answering the caller, a refused member's `action`
    /// recorded as denied.
    async fn keyed_body_caller<T: KeyedBody>(
        &self,
        key: Option<&str>,
        body: &[u8],
        need: KeyRole,
        ctx: &RequestContext,
        action: &'static str,
    ) -> Result<(T, Caller), ApiError> {
        let header_caller = match key {
            Some(k) => Some(self.caller(Some(k), need, ctx, Some(action)).await?),
            None => None,
        };
        let req: T = parse_body(body)?;
        let caller = match header_caller {
            Some(caller) => caller,
            None => self.caller(req.api_key(), need, ctx, Some(action)).await?,
        };
        Ok((req, caller))
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
            return Err(ApiError::body_too_large(limits.max_body_bytes));
        }
        let key = key_from(&parts.headers, query);
        let done = |r| Ok(Routed::Done(Effects::respond(r)));
        let call = |site: Site, op: Op| {
            Ok(Routed::Site(SiteCall {
                site,
                op,
                audit: None,
            }))
        };
        let audited = |caller: &Caller, op: Op, action: &'static str, target: Option<String>| {
            Ok(Routed::Site(SiteCall {
                audit: Some(AuditNote::new(caller, action, target, ctx)),
                site: caller.site.clone(),
                op,
            }))
        };
        let k = key.as_deref();
        match route {
            Route::Root => {
                let mut r = Response::new(Bytes::from_static(b"Tippen API"));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                done(with_common_headers(r))
            }
            #[cfg(feature = "assets")]
            Route::Asset(asset) => done(static_response(
                asset.content_type,
                asset.body_for(&self.config().sockets),
            )),
            Route::SupportUsers => {
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                call(site, Op::SupportUsers)
            }
            Route::User => {
                let caller = self
                    .caller(k, KeyRole::Secret, ctx, Some("user.delete"))
                    .await?;
                let raw = path.trim_end_matches('/').trim_start_matches("/api/users/");
                let user_id = percent_decode(raw);
                check_id("user id", &user_id, limits.max_id_bytes)?;
                let target = Some(user_id.clone());
                audited(&caller, Op::DeleteUser { user_id }, "user.delete", target)
            }
            Route::UserActivityRead => {
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                let raw = path
                    .trim_end_matches('/')
                    .trim_start_matches("/api/users/")
                    .trim_end_matches("/activity");
                let user_id = percent_decode(raw);
                check_id("user id", &user_id, limits.max_id_bytes)?;
                let page = activity_page(query)?;
                call(site, Op::UserActivityRead { user_id, page })
            }
            Route::WsTicket => {
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                done(self.ws_ticket(&site))
            }
            Route::AlertRules | Route::AlertRule => {
                let reads = matches!(parts.method, Method::GET | Method::HEAD);
                let action = match parts.method {
                    Method::DELETE => "alertRule.delete",
                    _ => "alertRule.put",
                };
                let need = if reads {
                    KeyRole::Viewer
                } else {
                    KeyRole::Secret
                };
                let caller = self
                    .caller(k, need, ctx, (!reads).then_some(action))
                    .await?;
                let id = path
                    .trim_end_matches('/')
                    .strip_prefix("/api/alert-rules/")
                    .map(percent_decode);
                let site = if reads {
                    caller.site.clone()
                } else {
                    self.fresh_site(caller.site.clone()).await?
                };
                let response = self
                    .alert_rules_call(site, &parts.method, id.clone(), &body)
                    .await?;
                if !reads {
                    let target = id.or_else(|| {
                        serde_json::from_slice::<serde_json::Value>(response.body())
                            .ok()
                            .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                    });
                    let note = AuditNote::new(&caller, action, target, ctx);
                    self.record_audit(&caller.site.id, note, access::done())
                        .await;
                }
                done(response)
            }
            Route::AlertDestinations => {
                let reads = matches!(parts.method, Method::GET | Method::HEAD);
                let need = if reads {
                    KeyRole::Viewer
                } else {
                    KeyRole::Secret
                };
                let caller = self
                    .caller(k, need, ctx, (!reads).then_some("alertDestinations.put"))
                    .await?;
                let site = if reads {
                    caller.site.clone()
                } else {
                    self.fresh_site(caller.site.clone()).await?
                };
                let response = self
                    .alert_destinations_call(site, &parts.method, &body)
                    .await?;
                if !reads {
                    let note = AuditNote::new(&caller, "alertDestinations.put", None, ctx);
                    self.record_audit(&caller.site.id, note, access::done())
                        .await;
                }
                done(response)
            }
            Route::Alerts => {
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                done(self.alerts_response(&site, query).await?)
            }
            Route::Members | Route::Member => {
                let action = match parts.method {
                    Method::POST => Some("member.create"),
                    Method::DELETE => Some("member.revoke"),
                    _ => None,
                };
                let caller = self.caller(k, KeyRole::Secret, ctx, action).await?;
                let id = path
                    .trim_end_matches('/')
                    .strip_prefix("/api/members/")
                    .map(percent_decode);
                done(
                    self.members_call(caller, &parts.method, id, &body, ctx)
                        .await?,
                )
            }
            Route::Me => {
                let caller = self.caller(k, KeyRole::Viewer, ctx, None).await?;
                done(json_response(StatusCode::OK, &access::me(&caller)))
            }
            Route::Audit => {
                let site = self.caller(k, KeyRole::Secret, ctx, None).await?.site;
                let entries = self.audit_entries(&[site.id], query).await?;
                let entries: Vec<_> = entries.iter().map(access::audit_view).collect();
                done(json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "entries": entries }),
                ))
            }
            Route::Operator(route) => done(
                self.operator_call(route, &parts, path, query, &body, ctx)
                    .await?,
            ),
            Route::DashboardSocket => {
                if query_param(query, ticket::TICKET_PARAM).is_none() {
                    self.caller(k, KeyRole::Viewer, ctx, None).await?;
                }
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
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                call(site, Op::ListVisitors)
            }
            Route::Visits | Route::Visit | Route::Companies | Route::Company | Route::Analytics => {
                let op = match route {
                    Route::Visits => history::HistoryOp::visits(query)?,
                    Route::Visit => history::HistoryOp::visit(path)?,
                    Route::Companies => history::HistoryOp::companies(query)?,
                    Route::Company => history::HistoryOp::company(path, query)?,
                    _ => history::HistoryOp::analytics(query)?,
                };
                let need = if op.exports() {
                    KeyRole::Secret
                } else {
                    KeyRole::Viewer
                };
                let site = self.caller(k, need, ctx, None).await?.site;
                // Reads of history only: answered here, without the site's lock.
                done(self.history_response(&site.id, op).await?)
            }
            Route::Stats => {
                let site = self.caller(k, KeyRole::Viewer, ctx, None).await?.site;
                call(site, Op::Stats)
            }
            Route::Visitor => {
                let caller = self
                    .caller(k, KeyRole::Secret, ctx, Some("visitor.delete"))
                    .await?;
                let raw = path
                    .trim_end_matches('/')
                    .trim_start_matches("/api/visitors/");
                let visitor_id = percent_decode(raw);
                check_id("visitor id", &visitor_id, limits.max_id_bytes)?;
                let target = Some(visitor_id.clone());
                audited(
                    &caller,
                    Op::DeleteVisitor { visitor_id },
                    "visitor.delete",
                    target,
                )
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
                        if let Some(tab_id) = &req.visitor.tab_id {
                            check_id("visitor.tabId", tab_id, limits.max_id_bytes)?;
                        }
                        return call(
                            site,
                            Op::Leave {
                                visitor_id: req.visitor.visitor_id,
                                tab_id: req.visitor.tab_id,
                                page_id: page_id(req.visitor.page_id, limits.max_id_bytes),
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
                    page_id: page_id(v.page_id, limits.max_id_bytes),
                };
                call(
                    site,
                    Op::Track {
                        visitor_id: v.visitor_id,
                        ping,
                        client_ip: ctx.client_ip,
                        sends_gpc: ctx.gpc || sends_gpc(&parts.headers),
                        sends_dnt: sends_dnt(&parts.headers),
                        place: ctx.place.clone(),
                    },
                )
            }
            Route::TrackLeave => {
                let (req, site): (LeaveRequest, _) = self
                    .keyed_body(key.as_deref(), &body, KeyRole::Public)
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                if let Some(tab_id) = &req.tab_id {
                    check_id("tabId", tab_id, limits.max_id_bytes)?;
                }
                call(
                    site,
                    Op::Leave {
                        visitor_id: req.visitor_id,
                        tab_id: req.tab_id,
                        page_id: page_id(req.page_id, limits.max_id_bytes),
                    },
                )
            }
            Route::SendVideoInvite => {
                let (req, caller): (SendVideoInviteRequest, _) = self
                    .keyed_body_caller(k, &body, KeyRole::Agent, ctx, "invite.send")
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                self.check_guest_url(&caller.site, &req.guest_url)?;
                let invite_id = match req.invite_id {
                    Some(id) => {
                        check_id("inviteId", &id, limits.max_id_bytes)?;
                        id
                    }
                    None => self.new_invite_id(),
                };
                let mut new = NewInvite::new(&invite_id, &req.visitor_id, &req.guest_url);
                // A member's name is who invited, whatever the body says.
                new.invited_by = caller
                    .actor
                    .name
                    .clone()
                    .or(req.invited_by)
                    .map(|b| cut(b, 128));
                let target = Some(req.visitor_id.clone());
                audited(&caller, Op::SendVideoInvite { new }, "invite.send", target)
            }
            Route::VideoCall => {
                let (mut req, caller): (VideoCallRequest, _) = self
                    .keyed_body_caller(k, &body, KeyRole::Agent, ctx, "videoCall.create")
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                let invite_id = match req.invite_id.take() {
                    Some(id) => {
                        check_id("inviteId", &id, limits.max_id_bytes)?;
                        id
                    }
                    None => self.new_invite_id(),
                };
                let audit = AuditNote::new(
                    &caller,
                    "videoCall.create",
                    Some(req.visitor_id.clone()),
                    ctx,
                );
                // A member's name is who invites, whatever the body says.
                req.invited_by = caller.actor.name.clone().or(req.invited_by);
                self.route_video_call(caller.site, req, invite_id, audit)
                    .await
            }
            Route::CancelInvite => {
                let (req, caller): (CancelInviteRequest, _) = self
                    .keyed_body_caller(k, &body, KeyRole::Agent, ctx, "invite.cancel")
                    .await?;
                check_id("visitorId", &req.visitor_id, limits.max_id_bytes)?;
                check_id("inviteId", &req.invite_id, limits.max_id_bytes)?;
                let target = Some(req.invite_id.clone());
                audited(
                    &caller,
                    Op::CancelInvite {
                        visitor_id: req.visitor_id,
                        invite_id: req.invite_id,
                    },
                    "invite.cancel",
                    target,
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
                site.verify_identity(&req.user_id, req.user_hash.as_deref())
                    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
                let identity = crate::support::UserIdentity {
                    email: req
                        .user_email
                        .map(|e| cut(e, 254))
                        .filter(|e| !e.is_empty()),
                    tier: req.subscription_tier,
                    // Only a link: a bad one is dropped rather than the batch refused.
                    visitor_id: page_id(req.visitor_id, limits.max_id_bytes),
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

    /// A guest URL an admin invites with: an `https://` URL (the tracker opens it in a frame
    /// allowed the camera and microphone) of at most 2048 bytes. Its origin must be on the
    /// site's allowlist or be the video provider's `https://` origin, whenever either exists;
    /// with neither (no allowlist, no `https://` provider) any `https://` origin is accepted.
    fn check_guest_url(&self, site: &Site, url: &str) -> Result<(), ApiError> {
        let max = self.config().limits.max_text_bytes;
        let origin = crate::site::https_origin(url).filter(|_| url.len() <= max);
        let Some(origin) = origin else {
            return Err(ApiError::bad_request(format!(
                "guestUrl must be an https:// URL of at most {max} bytes"
            )));
        };
        let provider = self.video_provider().and_then(|p| p.guest_origin());
        let restricted = !site.guest_url_origins.is_empty() || provider.is_some();
        if restricted
            && !site.guest_url_origins.contains(&origin)
            && provider.as_ref() != Some(&origin)
        {
            let mut allowed = site.guest_url_origins.clone();
            allowed.extend(provider);
            return Err(ApiError::bad_request(format!(
                "guestUrl's origin {origin} is not allowed for this site (allowed: {})",
                allowed.join(", ")
            )));
        }
        Ok(())
    }

    /// Runs an operation returned by [`route`](Self::route).
    pub async fn execute(&self, call: SiteCall) -> Effects {
        // The site record stays whole for its alert rules; the operation takes its id.
        let SiteCall {
            site: record,
            op: call_op,
            audit,
        } = call;
        let honours_gpc = record.honor_gpc;
        let honours_dnt = record.honor_dnt;
        let site = record.id.clone();
        let result: Result<(Response<Bytes>, Outcome), ApiError> = async {
            Ok(match call_op {
                Op::Track {
                    visitor_id,
                    ping,
                    client_ip,
                    sends_gpc,
                    sends_dnt,
                    place,
                } => {
                    let client = ClientInfo {
                        ip: client_ip,
                        sends_gpc,
                        site_honours_gpc: honours_gpc,
                        sends_dnt,
                        site_honours_dnt: honours_dnt,
                        place,
                    };
                    let outcome = self.track_client(&site, &visitor_id, &ping, client).await?;
                    let body = TrackResponse {
                        success: true,
                        session_id: &visitor_id,
                        invite: outcome.invite.clone(),
                    };
                    (json_response(StatusCode::OK, &body), outcome)
                }
                Op::Leave {
                    visitor_id,
                    tab_id,
                    page_id,
                } => {
                    let outcome = self
                        .leave_page(&site, &visitor_id, tab_id.as_deref(), page_id.as_deref())
                        .await?;
                    (
                        json_response(StatusCode::OK, &Success { success: true }),
                        outcome,
                    )
                }
                Op::ListVisitors => {
                    let (visitors, seq) = self.visitor_listing(&site).await?;
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
                Op::UserActivityRead { user_id, page } => {
                    match self.user_activity(&site, &user_id, page).await? {
                        Some(activity) => {
                            (json_response(StatusCode::OK, &activity), Outcome::default())
                        }
                        None => {
                            return Err(ApiError::new(StatusCode::NOT_FOUND, "user not found"));
                        }
                    }
                }
            })
        }
        .await;
        match result {
            Ok((response, outcome)) => {
                if let Some(note) = audit
                    && response.status().is_success()
                {
                    self.record_audit(&site, note, access::done()).await;
                }
                let mut effects = if record.alert_rules.is_empty() {
                    Effects::from_outcome(&site, outcome, false)
                } else {
                    self.effects_with_alerts(&site, Some(&record), outcome, false)
                        .await
                };
                effects.response = Some(response);
                effects
            }
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
        let OutboundCall {
            site,
            pending,
            audit,
            ..
        } = call;
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
                            audit,
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
        req: VideoCallRequest,
        invite_id: String,
        audit: AuditNote,
    ) -> Result<Routed, ApiError> {
        let VideoCallRequest {
            visitor_id,
            invited_by,
            host_name,
            guest_name,
            ..
        } = req;
        let Some(provider) = self.video_provider() else {
            return Err(no_video_provider());
        };
        let now = self.now();
        let record = self
            .present_visitor(&site.id, &visitor_id)
            .await?
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
            audit: Some(audit),
        }))
    }

    /// A site's deadline has come (its timer fired): sweeps what is due — expired visitors,
    /// invites and support triggers — and answers with what that broadcasts and pushes, and
    /// the site's next deadline, [`Deadline::Exactly`](crate::effects::Deadline) (read under
    /// the site's owner). Spurious or late calls are harmless. When the deadline returned is
    /// already due, more than one batch was: call again.
    pub async fn handle_timeout(&self, site: &SiteId) -> Result<Effects, ServiceError> {
        let outcome = self.sweep(site).await?;
        // Visits closed by the sweep are evaluated by the alert rules (the site is read only
        // when some closed).
        Ok(self.effects_with_alerts(site, None, outcome, true).await)
    }
}
