//! [`Effects`]: the one value every core entry point answers with.
//!
//! An HTTP request ([`Tippen::execute`](crate::Tippen::execute)), a frame on a dashboard or
//! visitor socket, a socket opening, a deadline ([`Tippen::handle_timeout`](crate::Tippen::handle_timeout)),
//! a delivered invite and a settled enrichment lookup all return an [`Effects`]: the
//! response or reply, and everything the host must do because of it. Hosts do not take it
//! apart themselves: they hand it to [`host::apply`](crate::host::apply), which performs it
//! in the one documented order through the host's small [`HostIo`](crate::host::HostIo).

use std::sync::Arc;

use bytes::Bytes;
use http::Response;

use crate::clock::Timestamp;
use crate::invite::InviteToVisitor;
use crate::protocol::Sequenced;
use crate::service::{LookupRequest, Outcome};
use crate::site::SiteId;

/// A dashboard message, serialized once: every socket of the site is sent the same text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The site's sequence number of the message.
    pub seq: u64,
    /// The JSON text sent on the wire.
    pub text: Arc<str>,
}

impl Broadcast {
    /// The broadcast of a sequenced message.
    pub fn new(message: &Sequenced) -> Self {
        Broadcast {
            seq: message.seq,
            text: Arc::from(message.to_json()),
        }
    }
}

impl std::ops::Deref for Broadcast {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::ops::Deref for VisitorPush {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// A message for one visitor's open `/ws/visitor` sockets (every tab).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitorPush {
    /// The visitor.
    pub visitor_id: String,
    /// The JSON text sent on the wire.
    pub text: Arc<str>,
    /// The invite this push delivers (a `VIDEO_INVITE`): once a socket has taken it, the host
    /// layer reports the invite delivered ([`Tippen::invite_delivered`](crate::Tippen::invite_delivered)).
    pub invite: Option<String>,
}

impl VisitorPush {
    /// A push of `text` to `visitor_id`, recognising a `VIDEO_INVITE` it delivers.
    pub fn new(visitor_id: impl Into<String>, text: impl Into<String>) -> Self {
        let text: String = text.into();
        let invite = match serde_json::from_str::<InviteToVisitor>(&text) {
            Ok(InviteToVisitor::VideoInvite { invite_id, .. }) => Some(invite_id),
            _ => None,
        };
        VisitorPush {
            visitor_id: visitor_id.into(),
            text: Arc::from(text),
            invite,
        }
    }
}

/// When the host must call [`Tippen::handle_timeout`](crate::Tippen::handle_timeout) for the
/// site next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// After a write: no later than this (keep the earliest of this and what is armed).
    AtMost(Timestamp),
    /// After a sweep: exactly this, read under the site's owner (`None`: nothing pending);
    /// it replaces what is armed.
    Exactly(Option<Timestamp>),
}

impl Deadline {
    /// The moment this deadline names, if any.
    pub fn at(self) -> Option<Timestamp> {
        match self {
            Deadline::AtMost(at) => Some(at),
            Deadline::Exactly(at) => at,
        }
    }

    /// What to arm when `armed` is armed now: the earliest for [`AtMost`](Self::AtMost), the
    /// new value for [`Exactly`](Self::Exactly).
    pub fn merge(self, armed: Option<Timestamp>) -> Option<Timestamp> {
        match self {
            Deadline::AtMost(at) => Some(armed.map_or(at, |a| a.min(at))),
            Deadline::Exactly(at) => at,
        }
    }
}

/// Everything one core entry point asks of the host. Apply it with
/// [`host::apply`](crate::host::apply), in its order:
///
/// 1. [`broadcasts`](Self::broadcasts) to every dashboard of [`site`](Self::site), in order
///    (before any later operation's broadcasts for the site);
/// 2. [`pushes`](Self::pushes) to the visitors' sockets, in order; a push that delivers an
///    invite and reached a socket is reported once, and what that reports is applied at once;
/// 3. the [`deadline`](Self::deadline) armed;
/// 4. the [`lookups`](Self::lookups) started, never waited for;
/// 5. the [`notifications`](Self::notifications) handed to the notifier, never waited for;
/// 6. the [`response`](Self::response) or [`reply`](Self::reply) sent last.
#[derive(Debug, Default)]
pub struct Effects {
    /// The site the input touched, if any.
    pub site: Option<SiteId>,
    /// The HTTP response, for an HTTP request.
    pub response: Option<Response<Bytes>>,
    /// The text to send on the socket whose frame (or opening) this answers.
    pub reply: Option<String>,
    /// Messages for every dashboard of the site, in sequence order.
    pub broadcasts: Vec<Broadcast>,
    /// Messages for visitors' sockets of the site, in order.
    pub pushes: Vec<VisitorPush>,
    /// When to call [`Tippen::handle_timeout`](crate::Tippen::handle_timeout) for the site.
    pub deadline: Option<Deadline>,
    /// Enrichment lookups to start (the shared cache could not answer them).
    pub lookups: Vec<LookupRequest>,
    /// Alerts for the notifier (support alerts and alert-rule alerts), cooldowns applied:
    /// deliver them with [`crate::notify`].
    pub notifications: Vec<crate::notify::Notice>,
}

impl Effects {
    /// Only a response.
    pub fn respond(response: Response<Bytes>) -> Self {
        Effects {
            response: Some(response),
            ..Effects::default()
        }
    }

    /// Only a reply on the socket.
    pub fn reply(reply: impl Into<String>) -> Self {
        Effects {
            reply: Some(reply.into()),
            ..Effects::default()
        }
    }

    /// What a service outcome on `site` asks for; `exact` when its deadline was read after a
    /// sweep ([`Deadline::Exactly`]).
    pub(crate) fn from_outcome(site: &SiteId, outcome: Outcome, exact: bool) -> Self {
        let pushes = outcome
            .visitor_pushes()
            .into_iter()
            .map(|(visitor, text)| VisitorPush::new(visitor, text))
            .collect();
        Effects {
            site: Some(site.clone()),
            response: None,
            reply: None,
            broadcasts: outcome.messages.iter().map(Broadcast::new).collect(),
            pushes,
            deadline: if exact {
                Some(Deadline::Exactly(outcome.deadline))
            } else {
                outcome.deadline.map(Deadline::AtMost)
            },
            lookups: outcome.lookups,
            notifications: outcome
                .notifications
                .into_iter()
                .map(|n| crate::notify::Notice::Support(Box::new(n)))
                .collect(),
        }
    }

    /// Adds `other`'s effects after this one's (its response or reply wins if this has none).
    pub fn append(&mut self, other: Effects) {
        if self.site.is_none() {
            self.site = other.site;
        }
        if self.response.is_none() {
            self.response = other.response;
        }
        if self.reply.is_none() {
            self.reply = other.reply;
        }
        self.broadcasts.extend(other.broadcasts);
        self.pushes.extend(other.pushes);
        self.deadline = match (self.deadline, other.deadline) {
            (d, None) => d,
            (None, d) => d,
            (Some(_), Some(Deadline::Exactly(at))) => Some(Deadline::Exactly(at)),
            (Some(Deadline::AtMost(a)), Some(Deadline::AtMost(b))) => {
                Some(Deadline::AtMost(a.min(b)))
            }
            (Some(Deadline::Exactly(a)), Some(Deadline::AtMost(b))) => {
                Some(Deadline::Exactly(Some(a.map_or(b, |a| a.min(b)))))
            }
        };
        self.lookups.extend(other.lookups);
        self.notifications.extend(other.notifications);
    }

    /// The broadcasts' texts (for tests and simple hosts).
    pub fn broadcast_texts(&self) -> Vec<&str> {
        self.broadcasts.iter().map(|b| &*b.text).collect()
    }

    /// Whether there is nothing to do but send the response or reply.
    pub fn is_quiet(&self) -> bool {
        self.broadcasts.is_empty()
            && self.pushes.is_empty()
            && self.deadline.is_none()
            && self.lookups.is_empty()
            && self.notifications.is_empty()
    }
}
