//! The shared host layer: what every host does with the core's [`Effects`], written once.
//!
//! A host implements [`HostIo`] — the few things only it can do: send to a site's
//! dashboards, push to a visitor's sockets, arm a timer, start lookups, hand alerts to a
//! notifier — and calls [`apply`] with every [`Effects`] the core returns. [`apply`] keeps
//! the one order every host follows (see [`Effects`]):
//!
//! 1. broadcasts, in order;
//! 2. visitor pushes, in order; a push delivering an invite that reached at least one socket
//!    is reported with [`Tippen::invite_delivered`] once per push (not per socket), and the
//!    broadcasts that reports go out at once, before the next push;
//! 3. the deadline;
//! 4. the lookups;
//! 5. the notifications;
//! 6. the response or reply is returned, for the host to send last.
//!
//! Hosts with one owner per site (axum's per-site lock, a Durable Object) call the entry
//! point and [`apply`] under that owner, so dashboards see a site's messages in sequence
//! order.

use async_trait::async_trait;
use bytes::Bytes;
use http::Response;

use crate::effects::{Broadcast, Deadline, Effects, VisitorPush};
use crate::notify::Notice;
use crate::service::{LookupRequest, Tippen};
use crate::site::SiteId;

/// What a host does for [`apply`]: its sockets, timers, background work and notifier.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait HostIo {
    /// One of the host's visitor sockets: a push caused by that socket's own frame skips it
    /// (it has the reply already).
    #[cfg(not(target_arch = "wasm32"))]
    type Socket: ?Sized + Sync;
    /// One of the host's visitor sockets: a push caused by that socket's own frame skips it
    /// (it has the reply already).
    #[cfg(target_arch = "wasm32")]
    type Socket: ?Sized;

    /// Sends `messages` to every dashboard of `site`, in order.
    async fn broadcast(&self, site: &SiteId, messages: &[Broadcast]);

    /// Sends `push` to the open sockets of its visitor on `site`, except `skip`. Returns
    /// whether at least one socket took it.
    async fn push(&self, site: &SiteId, push: &VisitorPush, skip: Option<&Self::Socket>) -> bool;

    /// Arms the site's timer ([`Deadline::merge`] with what is armed).
    async fn arm(&self, site: &SiteId, deadline: Deadline);

    /// Starts enrichment lookups in the background; never waits for them.
    async fn start_lookups(&self, lookups: Vec<LookupRequest>);

    /// Hands alerts (support and alert rules) to the notifier ([`crate::notify`]); never
    /// waits for their delivery.
    async fn notify(&self, notices: Vec<Notice>);
}

/// The part of [`Effects`] the host sends itself, after [`apply`] did the rest.
#[derive(Debug, Default)]
pub struct Answer {
    /// The HTTP response, for an HTTP request.
    pub response: Option<Response<Bytes>>,
    /// The reply for the socket whose frame or opening the effects answer.
    pub reply: Option<String>,
}

/// Performs `effects` through `io` in the documented order (see the [module](self)), and
/// returns the response or reply for the host to send. Broadcasts, pushes and the deadline
/// need [`Effects::site`] (the core sets it wherever there are any); lookups and
/// notifications do not. `origin` is the socket whose frame
/// caused the effects, if any (pushes skip it).
pub async fn apply<I: HostIo + ?Sized>(
    tippen: &Tippen,
    io: &I,
    effects: Effects,
    origin: Option<&I::Socket>,
) -> Answer {
    let Effects {
        site,
        response,
        reply,
        broadcasts,
        pushes,
        mut deadline,
        mut lookups,
        mut notifications,
    } = effects;
    let answer = Answer { response, reply };
    if let Some(site) = site {
        if !broadcasts.is_empty() {
            io.broadcast(&site, &broadcasts).await;
        }
        let mut pushes = std::collections::VecDeque::from(pushes);
        while let Some(push) = pushes.pop_front() {
            let reached = io.push(&site, &push, origin).await;
            let Some(invite_id) = push.invite.as_deref().filter(|_| reached) else {
                continue;
            };
            match tippen
                .invite_delivered(&site, &push.visitor_id, invite_id)
                .await
            {
                Ok(delivered) => {
                    if !delivered.broadcasts.is_empty() {
                        io.broadcast(&site, &delivered.broadcasts).await;
                    }
                    pushes.extend(delivered.pushes);
                    deadline = merge_deadlines(deadline, delivered.deadline);
                    lookups.extend(delivered.lookups);
                    notifications.extend(delivered.notifications);
                }
                Err(e) => {
                    tracing::warn!(site = %site, error = %e, "invite delivery not recorded");
                }
            }
        }
        if let Some(deadline) = deadline {
            io.arm(&site, deadline).await;
        }
    }
    if !lookups.is_empty() {
        io.start_lookups(lookups).await;
    }
    if !notifications.is_empty() {
        io.notify(notifications).await;
    }
    answer
}

fn merge_deadlines(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
    let mut e = Effects {
        deadline: a,
        ..Effects::default()
    };
    e.append(Effects {
        deadline: b,
        ..Effects::default()
    });
    e.deadline
}
