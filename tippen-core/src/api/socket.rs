//! The two WebSocket protocols: the dashboard's and the visitor channel's — authorization,
//! the first message, frames and delivery reports.

use bytes::Bytes;
use http::{HeaderMap, Response};

use super::extract::{check_id, cut, key_from, query_param};
use super::response::ApiError;
use super::ticket::{TICKET_PARAM, Ticket, invalid as invalid_ticket};
use crate::effects::Effects;
use crate::invite::{InviteEvent, InviteFromVisitor, InviteToVisitor};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::service::{ServiceError, Tippen};
use crate::site::{KeyRole, SiteId};

impl Tippen {
    /// Authorizes a WebSocket upgrade of `path` (`/ws/dashboard` or `/ws/visitor`, a
    /// trailing slash allowed): `None` when the path is not a socket path, else the socket's
    /// role or the refusal to send instead of upgrading. The key comes from the
    /// `X-Tippen-Api-Key` header or the `apiKey` query parameter. A dashboard needs a
    /// viewer's role (a member token or the secret key) or a `ticket` of `POST /api/ws-ticket` (checked, then spent once the rest
    /// passes: a ticket opens one socket; else 403), and a browser's `Origin` allowed by the site
    /// ([`Site::dashboard_origins`](crate::Site::dashboard_origins); else 403); the visitor channel any of the site's keys and a `visitorId` (no key: 401;
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
            "/ws/dashboard" => KeyRole::Viewer,
            "/ws/visitor" => KeyRole::Public,
            _ => return None,
        };
        let key = key_from(headers, query);
        let ticket = (need == KeyRole::Viewer)
            .then(|| query_param(query, TICKET_PARAM))
            .flatten();
        let result = async {
            let (site, spend) = match &ticket {
                Some(ticket) => {
                    let (site, spend) = self.check_ticket(ticket).await?;
                    (site, Some(spend))
                }
                None => (self.authorize(key.as_deref(), need).await?, None),
            };
            if need == KeyRole::Viewer {
                if let Some(origin) = headers.get(http::header::ORIGIN) {
                    let origin = String::from_utf8_lossy(origin.as_bytes());
                    let host = headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok());
                    if !site.allows_dashboard_origin(&origin, host) {
                        return Err(ApiError::new(
                            http::StatusCode::FORBIDDEN,
                            format!(
                                "origin {} may not open this site's dashboards (not in its dashboardOrigins)",
                                cut(origin.into_owned(), 256)
                            ),
                        ));
                    }
                }
                if let Some((token, until)) = spend {
                    self.spend_ticket(&site, &token, until).await?;
                }
                return Ok(SocketRole::Dashboard { site: site.id });
            }
            let site = site.id;
            let visitor_id = query_param(query, "visitorId").unwrap_or_default();
            check_id("visitorId", &visitor_id, self.config().limits.max_id_bytes)?;
            Ok(SocketRole::Visitor { site, visitor_id })
        }
        .await;
        Some(result.map_err(ApiError::into_response))
    }

    /// Checks a dashboard socket ticket (403 when it is not one, has a wrong tag or has
    /// expired): the site it opens, and what spending it takes.
    async fn check_ticket(
        &self,
        ticket: &str,
    ) -> Result<(crate::Site, (String, crate::Timestamp)), ApiError> {
        let parsed = Ticket::parse(ticket)?;
        let site = self
            .store()
            .site(&SiteId(parsed.site.to_owned()))
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(invalid_ticket)?;
        parsed.check(&site, self.now())?;
        Ok((site, (parsed.spend_key(), parsed.expires)))
    }

    /// Spends a checked ticket: 403 when it was spent before.
    async fn spend_ticket(
        &self,
        site: &crate::Site,
        token: &str,
        until: crate::Timestamp,
    ) -> Result<(), ApiError> {
        let fresh = self
            .store()
            .spend_ticket(&site.id, token, self.now(), until)
            .await
            .map_err(ServiceError::from)?;
        if !fresh {
            return Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "ticket already used (a ticket opens one socket; get a new one from POST /api/ws-ticket)",
            ));
        }
        Ok(())
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
                ..Effects::reply(self.snapshot_text(site).await?)
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
        if let Some(error) = self.oversized(text) {
            return Ok(self
                .reply(site, ServerMessage::Error { error })
                .await?
                .to_json());
        }
        let reply = match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::GetVisitors) => return self.snapshot_text(site).await,
            Ok(ClientMessage::Ping) => {
                self.reply(
                    site,
                    ServerMessage::Pong {
                        timestamp: self.now().as_millis(),
                    },
                )
                .await?
            }
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

    /// The complaint about a frame over [`Limits::max_frame_bytes`](crate::config::Limits)
    /// (answered with an `ERROR`, nothing else done; the socket stays open).
    fn oversized(&self, text: &str) -> Option<String> {
        let max = self.config().limits.max_frame_bytes;
        (text.len() > max)
            .then(|| format!("message of {} bytes exceeds the limit of {max}", text.len()))
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
            .present_visitor(site, visitor_id)
            .await?
            .and_then(|v| v.open_invite().map(|i| i.invite_id.clone()));
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
        if let Some(message) = self.oversized(text) {
            return Ok(error(message));
        }
        let answer = match serde_json::from_str::<InviteFromVisitor>(text) {
            Ok(answer) if answer.invite_id().len() > self.config().limits.max_id_bytes => {
                let max = self.config().limits.max_id_bytes;
                return Ok(error(format!("inviteId must be 1 to {max} bytes long")));
            }
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
