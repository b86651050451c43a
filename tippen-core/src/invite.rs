//! Video-call invites: the lifecycle of one invite as pure functions of `now`, and [`Invites`],
//! a per-site book of them (in memory; the reference the stores follow).
//!
//! ```text
//! sent → delivered → seen → accepted | declined | expired | cancelled | visitor_left
//! ```
//!
//! - `delivered` from `sent`; `seen` from `sent | delivered`; `accepted` and `declined` from any
//!   open state (a visitor may answer before we heard `seen`); `cancelled` and `visitor_left`
//!   from any open state; `expired` from any open state once `now >= expires_at`.
//! - **Expiry wins at the deadline.** Whatever reaches an open invite at or after its
//!   [`expires_at`](Invite::expires_at) finds it expired: the expiry is applied (and reported)
//!   first, and the event is then judged against `expired`.
//! - **Final states never change.** An event already reflected by the state (`seen` twice,
//!   `accepted` after accepted, `seen` after accepted) is an idempotent no-op with no message;
//!   one that contradicts a final state (`accepted` after expired) is
//!   [`InviteError::Conflict`], naming both states.
//! - **Every state change yields exactly one [`InviteMessage`]** for dashboards; no-ops yield
//!   none. The creation also maps to Part A's `VIDEO_INVITE_SENT`
//!   ([`Invite::part_a_message`]).
//! - An open invite's [`deadline`](Invite::deadline) is its expiry; a final one has none. The
//!   book indexes open invites by deadline so that a [`sweep`](Invites::sweep) touches only
//!   what is due.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::Timestamp;
use crate::protocol::ServerMessage;

/// Invite timings. Default: an unanswered invite expires 60 s after it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteConfig {
    /// How long an invite stays open without an answer.
    pub ttl: Duration,
}

impl Default for InviteConfig {
    fn default() -> Self {
        InviteConfig {
            ttl: Duration::from_secs(60),
        }
    }
}

/// Where an invite is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    /// Created; not yet known to have reached the visitor.
    Sent,
    /// Pushed to the visitor (over its channel or in a heartbeat response).
    Delivered,
    /// The visitor's page showed it.
    Seen,
    /// The visitor joined (final).
    Accepted,
    /// The visitor declined (final).
    Declined,
    /// Nobody answered before [`Invite::expires_at`] (final).
    Expired,
    /// The admin withdrew it (final).
    Cancelled,
    /// The visitor left the site while it was open (final).
    VisitorLeft,
}

impl InviteState {
    /// Whether the invite can still change (`sent`, `delivered`, `seen`).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            InviteState::Sent | InviteState::Delivered | InviteState::Seen
        )
    }

    /// Whether the invite will never change again.
    pub fn is_final(self) -> bool {
        !self.is_open()
    }

    /// The wire name (`sent`, …, `visitor_left`).
    pub fn as_str(self) -> &'static str {
        match self {
            InviteState::Sent => "sent",
            InviteState::Delivered => "delivered",
            InviteState::Seen => "seen",
            InviteState::Accepted => "accepted",
            InviteState::Declined => "declined",
            InviteState::Expired => "expired",
            InviteState::Cancelled => "cancelled",
            InviteState::VisitorLeft => "visitor_left",
        }
    }
}

impl fmt::Display for InviteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to an invite, other than time passing (see [`Invite::expire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteEvent {
    /// The server pushed it to the visitor.
    Delivered,
    /// The visitor's page showed it.
    Seen,
    /// The visitor joined.
    Accepted,
    /// The visitor declined.
    Declined,
    /// The admin withdrew it.
    Cancelled,
    /// The visitor left the site.
    VisitorLeft,
}

impl InviteEvent {
    /// The state this event moves an invite to.
    pub fn target(self) -> InviteState {
        match self {
            InviteEvent::Delivered => InviteState::Delivered,
            InviteEvent::Seen => InviteState::Seen,
            InviteEvent::Accepted => InviteState::Accepted,
            InviteEvent::Declined => InviteState::Declined,
            InviteEvent::Cancelled => InviteState::Cancelled,
            InviteEvent::VisitorLeft => InviteState::VisitorLeft,
        }
    }
}

/// Why an invite operation was refused. Nothing changed when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InviteError {
    /// The visitor already has an open invite (this one); a second is refused.
    #[error("visitor already has an open invite {invite_id}")]
    AlreadyOpen {
        /// The open invite.
        invite_id: String,
    },
    /// No invite has this id.
    #[error("invite {invite_id} not found")]
    NotFound {
        /// The id asked for.
        invite_id: String,
    },
    /// The id is taken by an invite to another visitor.
    #[error("invite id {invite_id} is already used for another visitor")]
    IdReused {
        /// The id.
        invite_id: String,
    },
    /// The event contradicts the invite's final state.
    #[error("invite {invite_id} is {current}; cannot become {requested}")]
    Conflict {
        /// The invite.
        invite_id: String,
        /// Its (final) state.
        current: InviteState,
        /// The state the event asked for.
        requested: InviteState,
    },
}

/// What an admin asks for when sending an invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvite {
    /// The invite's id (from the injected `IdGenerator`, or the client's idempotency key).
    pub invite_id: String,
    /// The invited visitor.
    pub visitor_id: String,
    /// Where the visitor joins the call.
    pub guest_url: String,
    /// Where the admin joins the call, when the server created the session.
    pub host_url: Option<String>,
    /// Who invites (admin label shown to the visitor and to other admins).
    pub invited_by: Option<String>,
}

impl NewInvite {
    /// An invite of `visitor_id` to `guest_url`, without host URL or admin label.
    pub fn new(invite_id: &str, visitor_id: &str, guest_url: &str) -> Self {
        NewInvite {
            invite_id: invite_id.to_owned(),
            visitor_id: visitor_id.to_owned(),
            guest_url: guest_url.to_owned(),
            host_url: None,
            invited_by: None,
        }
    }
}

/// One invite as stored (and, camelCase, as shown on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    /// Its id.
    pub invite_id: String,
    /// The invited visitor.
    pub visitor_id: String,
    /// Where the visitor joins.
    pub guest_url: String,
    /// Where the admin joins, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_url: Option<String>,
    /// Who invites (admin label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// When it was sent (server time).
    pub created_at: Timestamp,
    /// When it expires unanswered: `created_at + ttl`.
    pub expires_at: Timestamp,
    /// Where it is now.
    pub state: InviteState,
    /// When the state last changed.
    pub updated_at: Timestamp,
}

impl Invite {
    /// A new invite, state `sent`, sent at `now`.
    pub fn new(new: NewInvite, now: Timestamp, cfg: &InviteConfig) -> Self {
        Invite {
            invite_id: new.invite_id,
            visitor_id: new.visitor_id,
            guest_url: new.guest_url,
            host_url: new.host_url,
            invited_by: new.invited_by,
            created_at: now,
            expires_at: now.plus(cfg.ttl),
            state: InviteState::Sent,
            updated_at: now,
        }
    }

    /// Whether it can still change.
    pub fn is_open(&self) -> bool {
        self.state.is_open()
    }

    /// The next moment it changes without input: `expires_at` while open, `None` when final.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.is_open().then_some(self.expires_at)
    }

    /// Whether it is open and its deadline has come (`now >= expires_at`).
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.is_open() && now >= self.expires_at
    }

    /// Expires it if it is due at `now`; the dashboard message when it did.
    pub fn expire(&mut self, now: Timestamp) -> Option<InviteMessage> {
        if !self.is_due(now) {
            return None;
        }
        Some(self.set_state(InviteState::Expired, now))
    }

    /// Applies `event` at `now`: at most one message (none for a no-op), or a conflict.
    ///
    /// A due invite expires first (reported as `expired`); the event is then judged against
    /// `expired` and, being late, either is a no-op or conflicts — and a conflict after the
    /// expiry is reported as the expiry (`Ok`, state `expired`), so that its message is not
    /// lost. Compare [`state`](Self::state) with `event.target()` to tell.
    pub fn handle(
        &mut self,
        event: InviteEvent,
        now: Timestamp,
    ) -> Result<Option<InviteMessage>, InviteError> {
        if let Some(expired) = self.expire(now) {
            return Ok(Some(expired));
        }
        match check(self.state, event) {
            Step::To(next) => Ok(Some(self.set_state(next, now))),
            Step::NoOp => Ok(None),
            Step::Conflict => Err(InviteError::Conflict {
                invite_id: self.invite_id.clone(),
                current: self.state,
                requested: event.target(),
            }),
        }
    }

    fn set_state(&mut self, state: InviteState, now: Timestamp) -> InviteMessage {
        self.state = state;
        self.updated_at = now;
        self.message()
    }

    /// The dashboard message describing its current state.
    pub fn message(&self) -> InviteMessage {
        InviteMessage::VideoInviteUpdate {
            invite_id: self.invite_id.clone(),
            visitor_id: self.visitor_id.clone(),
            state: self.state,
            invited_by: self.invited_by.clone(),
            expires_at: self.expires_at,
            updated_at: self.updated_at,
        }
    }

    /// Part A's dashboard message for its creation,
    /// `{"type":"VIDEO_INVITE_SENT","visitorId":…,"guestUrl":…}`.
    pub fn part_a_message(&self) -> ServerMessage {
        ServerMessage::VideoInviteSent {
            visitor_id: self.visitor_id.clone(),
            guest_url: self.guest_url.clone(),
        }
    }

    /// The push to the visitor's page: the invite itself while open, else the final state (so
    /// that the page hides a popup that was cancelled, expired or answered in another tab).
    pub fn visitor_message(&self, now: Timestamp) -> InviteToVisitor {
        if self.is_open() {
            InviteToVisitor::VideoInvite {
                invite_id: self.invite_id.clone(),
                guest_url: self.guest_url.clone(),
                invited_by: self.invited_by.clone(),
                expires_at: self.expires_at,
                expires_in: self.expires_at.since(now).as_millis() as u64,
            }
        } else {
            InviteToVisitor::VideoInviteUpdate {
                invite_id: self.invite_id.clone(),
                state: self.state,
            }
        }
    }
}

enum Step {
    To(InviteState),
    NoOp,
    Conflict,
}

/// The transition table.
fn check(current: InviteState, event: InviteEvent) -> Step {
    use InviteState as S;
    let target = event.target();
    if current == target {
        return Step::NoOp;
    }
    match (event, current) {
        (InviteEvent::Delivered, S::Sent) => Step::To(target),
        (InviteEvent::Seen, S::Sent | S::Delivered) => Step::To(target),
        // The visitor's page got it: a late progress report is already reflected.
        (InviteEvent::Delivered, S::Seen | S::Accepted | S::Declined) => Step::NoOp,
        (InviteEvent::Seen, S::Accepted | S::Declined) => Step::NoOp,
        (_, s) if s.is_open() && event != InviteEvent::Delivered && event != InviteEvent::Seen => {
            Step::To(target)
        }
        _ => Step::Conflict,
    }
}

/// What one call did to the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The invite the call was about, as it is now.
    pub invite: Invite,
    /// Whether the call created it (send the Part A message too: [`Invite::part_a_message`]).
    pub created: bool,
    /// One dashboard message per state change, in order; empty for a no-op. A `send` that
    /// found the visitor's open invite due carries that invite's `expired` first.
    pub messages: Vec<InviteMessage>,
}

impl Change {
    /// Whether nothing changed.
    pub fn is_noop(&self) -> bool {
        self.messages.is_empty()
    }
}

/// A per-site book of invites, in memory: at most one open invite per visitor, idempotent by
/// invite id, open invites indexed by deadline.
///
/// Final invites are kept (so that a retried `send` or a late answer is recognised) until
/// [`prune`](Self::prune) drops them.
#[derive(Clone, Debug, Default)]
pub struct Invites {
    config: InviteConfig,
    by_id: BTreeMap<String, Invite>,
    /// visitor → its open invite.
    open: BTreeMap<String, String>,
    /// (expires_at, invite_id) of every open invite.
    by_deadline: BTreeSet<(Timestamp, String)>,
}

impl Invites {
    /// An empty book.
    pub fn new(config: InviteConfig) -> Self {
        Invites {
            config,
            ..Invites::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &InviteConfig {
        &self.config
    }

    /// Sends an invite at `now`.
    ///
    /// The same invite id again returns the existing invite without a message (after
    /// expiring it if due); the id on another visitor is [`InviteError::IdReused`]. A visitor
    /// with another open invite gets [`InviteError::AlreadyOpen`], unless that invite is due:
    /// it expires (first message) and the new one is sent.
    pub fn send(&mut self, new: NewInvite, now: Timestamp) -> Result<Change, InviteError> {
        if let Some(existing) = self.by_id.get(&new.invite_id) {
            if existing.visitor_id != new.visitor_id {
                return Err(InviteError::IdReused {
                    invite_id: new.invite_id,
                });
            }
            let mut messages = Vec::new();
            messages.extend(self.expire_one(&new.invite_id, now));
            return Ok(Change {
                invite: self.by_id[&new.invite_id].clone(),
                created: false,
                messages,
            });
        }
        let mut messages = Vec::new();
        if let Some(open_id) = self.open.get(&new.visitor_id).cloned() {
            match self.expire_one(&open_id, now) {
                Some(m) => messages.push(m),
                None => return Err(InviteError::AlreadyOpen { invite_id: open_id }),
            }
        }
        let invite = Invite::new(new, now, &self.config);
        messages.push(invite.message());
        self.open
            .insert(invite.visitor_id.clone(), invite.invite_id.clone());
        self.by_deadline
            .insert((invite.expires_at, invite.invite_id.clone()));
        self.by_id.insert(invite.invite_id.clone(), invite.clone());
        Ok(Change {
            invite,
            created: true,
            messages,
        })
    }

    /// Applies `event` to invite `invite_id` at `now` (see [`Invite::handle`]).
    pub fn handle(
        &mut self,
        invite_id: &str,
        event: InviteEvent,
        now: Timestamp,
    ) -> Result<Change, InviteError> {
        let Some(invite) = self.by_id.get_mut(invite_id) else {
            return Err(InviteError::NotFound {
                invite_id: invite_id.to_owned(),
            });
        };
        let was_open = invite.is_open();
        let message = invite.handle(event, now)?;
        let invite = invite.clone();
        if was_open && !invite.is_open() {
            self.unindex(&invite);
        }
        Ok(Change {
            invite,
            created: false,
            messages: message.into_iter().collect(),
        })
    }

    /// The visitor is gone: its open invite, if any, ends with `visitor_left` (or `expired`
    /// when it was due).
    pub fn visitor_left(&mut self, visitor_id: &str, now: Timestamp) -> Option<Change> {
        let invite_id = self.open.get(visitor_id)?.clone();
        self.handle(&invite_id, InviteEvent::VisitorLeft, now).ok()
    }

    /// The visitor's open invite.
    pub fn open_for(&self, visitor_id: &str) -> Option<&Invite> {
        self.open.get(visitor_id).and_then(|id| self.by_id.get(id))
    }

    /// The invite with this id.
    pub fn get(&self, invite_id: &str) -> Option<&Invite> {
        self.by_id.get(invite_id)
    }

    /// Every invite, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Invite> {
        self.by_id.values()
    }

    /// How many invites the book holds (open and final).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The earliest deadline of an open invite.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// Expires every invite due at `now`, earliest first: O(k log n) for k due of n open.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((due, id)) = self.by_deadline.first().cloned() {
            if due > now {
                break;
            }
            match self.expire_one(&id, now) {
                Some(message) => changes.push(Change {
                    invite: self.by_id[&id].clone(),
                    created: false,
                    messages: vec![message],
                }),
                // Not reachable while the index is consistent; never loop on it.
                None => {
                    self.by_deadline.remove(&(due, id));
                }
            }
        }
        changes
    }

    /// Forgets final invites last changed before `cutoff`; returns how many.
    pub fn prune(&mut self, cutoff: Timestamp) -> usize {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, i| i.is_open() || i.updated_at >= cutoff);
        before - self.by_id.len()
    }

    /// Expires `invite_id` if due, keeping the indexes.
    fn expire_one(&mut self, invite_id: &str, now: Timestamp) -> Option<InviteMessage> {
        let invite = self.by_id.get_mut(invite_id)?;
        let message = invite.expire(now)?;
        let invite = invite.clone();
        self.unindex(&invite);
        Some(message)
    }

    /// Removes a now-final invite from the open indexes.
    fn unindex(&mut self, invite: &Invite) {
        self.by_deadline
            .remove(&(invite.expires_at, invite.invite_id.clone()));
        if self.open.get(&invite.visitor_id) == Some(&invite.invite_id) {
            self.open.remove(&invite.visitor_id);
        }
    }
}

/// A server → dashboard message about an invite (numbered by the site's sequence like every
/// broadcast, when the wiring adds it to the dashboard stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum InviteMessage {
    /// An invite was created (`state: "sent"`) or changed state.
    VideoInviteUpdate {
        /// The invite.
        invite_id: String,
        /// The invited visitor.
        visitor_id: String,
        /// Its new state.
        state: InviteState,
        /// Who invites (so that other admins see whose invite locks the visitor).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invited_by: Option<String>,
        /// When it expires unanswered, epoch milliseconds.
        expires_at: Timestamp,
        /// When the state changed, epoch milliseconds.
        updated_at: Timestamp,
    },
}

impl InviteMessage {
    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The invite it is about.
    pub fn invite_id(&self) -> &str {
        match self {
            InviteMessage::VideoInviteUpdate { invite_id, .. } => invite_id,
        }
    }

    /// The state it reports.
    pub fn state(&self) -> InviteState {
        match self {
            InviteMessage::VideoInviteUpdate { state, .. } => *state,
        }
    }
}

/// A server → visitor message on the visitor channel (or in a heartbeat response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum InviteToVisitor {
    /// Show the invite.
    VideoInvite {
        /// The invite (echoed in the answer).
        invite_id: String,
        /// Where to join.
        guest_url: String,
        /// Who invites.
        invited_by: Option<String>,
        /// When it expires, epoch milliseconds (server clock).
        expires_at: Timestamp,
        /// Milliseconds left when this was sent: for a countdown that does not depend on the
        /// visitor's clock.
        expires_in: u64,
    },
    /// The invite ended (or moved on in another tab): hide it unless this is what the page
    /// itself answered.
    VideoInviteUpdate {
        /// The invite.
        invite_id: String,
        /// Its state.
        state: InviteState,
    },
}

/// A visitor → server message: the visitor's page reports on an invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum InviteFromVisitor {
    /// The page showed it.
    InviteSeen {
        /// The invite.
        invite_id: String,
    },
    /// The visitor clicked Join.
    InviteAccepted {
        /// The invite.
        invite_id: String,
    },
    /// The visitor clicked Decline.
    InviteDeclined {
        /// The invite.
        invite_id: String,
    },
}

impl InviteFromVisitor {
    /// The invite it is about.
    pub fn invite_id(&self) -> &str {
        match self {
            InviteFromVisitor::InviteSeen { invite_id }
            | InviteFromVisitor::InviteAccepted { invite_id }
            | InviteFromVisitor::InviteDeclined { invite_id } => invite_id,
        }
    }

    /// The event to apply ([`Invites::handle`]).
    pub fn event(&self) -> InviteEvent {
        match self {
            InviteFromVisitor::InviteSeen { .. } => InviteEvent::Seen,
            InviteFromVisitor::InviteAccepted { .. } => InviteEvent::Accepted,
            InviteFromVisitor::InviteDeclined { .. } => InviteEvent::Declined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InviteEvent as E;
    use InviteState as S;
    use serde_json::json;

    const T0: Timestamp = Timestamp::from_millis(1_729_080_000_000);

    fn at(ms: u64) -> Timestamp {
        T0.plus(Duration::from_millis(ms))
    }

    fn invite_in(state: S) -> Invite {
        let mut i = Invite::new(
            NewInvite::new("inv_1", "v1", "https://g/1"),
            T0,
            &InviteConfig::default(),
        );
        i.state = state;
        i
    }

    const ALL: [S; 8] = [
        S::Sent,
        S::Delivered,
        S::Seen,
        S::Accepted,
        S::Declined,
        S::Expired,
        S::Cancelled,
        S::VisitorLeft,
    ];
    const EVENTS: [E; 6] = [
        E::Delivered,
        E::Seen,
        E::Accepted,
        E::Declined,
        E::Cancelled,
        E::VisitorLeft,
    ];

    /// Expected outcome of every (state, event) pair before the deadline:
    /// `Some(Some(s))` moves to `s`, `Some(None)` is a no-op, `None` conflicts.
    fn expected(from: S, e: E) -> Option<Option<S>> {
        let t = e.target();
        if from == t {
            return Some(None);
        }
        let progressed = matches!(from, S::Seen | S::Accepted | S::Declined);
        match e {
            E::Delivered if from == S::Sent => Some(Some(t)),
            E::Delivered if progressed => Some(None),
            E::Seen if matches!(from, S::Sent | S::Delivered) => Some(Some(t)),
            E::Seen if matches!(from, S::Accepted | S::Declined) => Some(None),
            E::Delivered | E::Seen => None,
            _ if from.is_open() => Some(Some(t)),
            _ => None,
        }
    }

    #[test]
    fn every_transition_before_the_deadline() {
        for from in ALL {
            for e in EVENTS {
                let mut i = invite_in(from);
                let before = i.clone();
                let r = i.handle(e, at(1_000));
                match expected(from, e) {
                    Some(Some(to)) => {
                        let m = r.unwrap().expect("a change has a message");
                        assert_eq!((i.state, m.state()), (to, to), "{from} + {e:?}");
                        assert_eq!(i.updated_at, at(1_000));
                        assert!(from.is_open(), "a final state changed: {from} + {e:?}");
                    }
                    Some(None) => {
                        assert_eq!(r, Ok(None), "{from} + {e:?}");
                        assert_eq!(i, before);
                    }
                    None => {
                        assert_eq!(
                            r,
                            Err(InviteError::Conflict {
                                invite_id: "inv_1".into(),
                                current: from,
                                requested: e.target(),
                            }),
                            "{from} + {e:?}"
                        );
                        assert_eq!(i, before);
                    }
                }
            }
        }
    }

    #[test]
    fn the_transition_table_by_name() {
        let go = |from, e| {
            invite_in(from)
                .handle(e, at(1))
                .map(|m| m.map(|m| m.state()))
        };
        assert_eq!(go(S::Sent, E::Delivered), Ok(Some(S::Delivered)));
        assert_eq!(go(S::Sent, E::Seen), Ok(Some(S::Seen)));
        assert_eq!(go(S::Delivered, E::Seen), Ok(Some(S::Seen)));
        assert_eq!(go(S::Sent, E::Accepted), Ok(Some(S::Accepted)));
        assert_eq!(go(S::Seen, E::Declined), Ok(Some(S::Declined)));
        assert_eq!(go(S::Seen, E::Cancelled), Ok(Some(S::Cancelled)));
        assert_eq!(go(S::Delivered, E::VisitorLeft), Ok(Some(S::VisitorLeft)));
        assert_eq!(go(S::Seen, E::Seen), Ok(None));
        assert_eq!(go(S::Seen, E::Delivered), Ok(None));
        assert_eq!(go(S::Accepted, E::Accepted), Ok(None));
        assert_eq!(go(S::Accepted, E::Seen), Ok(None));
        let err = invite_in(S::Expired)
            .handle(E::Accepted, at(1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invite inv_1 is expired; cannot become accepted"
        );
        assert!(go(S::Accepted, E::Declined).is_err());
        assert!(go(S::Accepted, E::Cancelled).is_err());
        assert!(go(S::Cancelled, E::Seen).is_err());
    }

    #[test]
    fn expiry_at_the_deadline_never_before_and_wins_over_late_events() {
        let ttl = InviteConfig::default().ttl.as_millis() as u64;
        let mut i = invite_in(S::Seen);
        assert_eq!(i.deadline(), Some(at(ttl)));
        assert_eq!(i.expire(at(ttl - 1)), None);
        assert_eq!(i.handle(E::Seen, at(ttl - 1)), Ok(None));
        // At the deadline an answer finds it expired: the expiry is reported.
        let m = i.handle(E::Accepted, at(ttl)).unwrap().unwrap();
        assert_eq!((i.state, m.state()), (S::Expired, S::Expired));
        assert_eq!(i.deadline(), None);
        assert!(i.handle(E::Accepted, at(ttl)).is_err());
        assert_eq!(i.expire(at(ttl * 2)), None);
        for from in ALL {
            let mut i = invite_in(from);
            assert_eq!(i.expire(at(ttl)).is_some(), from.is_open(), "{from}");
            assert!(!i.is_open());
        }
    }

    #[test]
    fn states_open_and_final() {
        for s in ALL {
            assert_eq!(s.is_open(), !s.is_final());
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert_eq!(
            ALL.iter().filter(|s| s.is_open()).count(),
            3,
            "sent, delivered, seen"
        );
    }

    fn book() -> Invites {
        Invites::new(InviteConfig {
            ttl: Duration::from_secs(10),
        })
    }

    #[test]
    fn send_is_idempotent_by_id_and_one_open_per_visitor() {
        let mut b = book();
        let c = b
            .send(NewInvite::new("i1", "v1", "https://g/1"), T0)
            .unwrap();
        assert!(c.created);
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.invite.state, S::Sent);
        assert_eq!(b.next_deadline(), Some(at(10_000)));
        // Retry: same invite, no message.
        let again = b
            .send(NewInvite::new("i1", "v1", "https://g/1"), at(5))
            .unwrap();
        assert!(!again.created && again.is_noop());
        assert_eq!(again.invite, c.invite);
        // Another id while open: refused.
        assert_eq!(
            b.send(NewInvite::new("i2", "v1", "https://g/2"), at(5)),
            Err(InviteError::AlreadyOpen {
                invite_id: "i1".into()
            })
        );
        // The same id for another visitor: refused.
        assert_eq!(
            b.send(NewInvite::new("i1", "v2", "https://g/1"), at(5)),
            Err(InviteError::IdReused {
                invite_id: "i1".into()
            })
        );
        // Another visitor: fine.
        b.send(NewInvite::new("i3", "v2", "https://g/3"), at(6))
            .unwrap();
        assert_eq!(b.open_for("v2").unwrap().invite_id, "i3");
        // Once i1 is final, v1 may be invited again.
        b.handle("i1", E::Declined, at(7)).unwrap();
        assert!(b.open_for("v1").is_none());
        let c = b
            .send(NewInvite::new("i2", "v1", "https://g/2"), at(8))
            .unwrap();
        assert!(c.created);
        // A retry of the declined one stays declined.
        let old = b
            .send(NewInvite::new("i1", "v1", "https://g/1"), at(9))
            .unwrap();
        assert_eq!((old.invite.state, old.is_noop()), (S::Declined, true));
        assert_eq!(b.open_for("v1").unwrap().invite_id, "i2");
    }

    #[test]
    fn send_over_a_due_invite_expires_it_first() {
        let mut b = book();
        b.send(NewInvite::new("i1", "v1", "u"), T0).unwrap();
        let c = b.send(NewInvite::new("i2", "v1", "u"), at(10_000)).unwrap();
        let states: Vec<_> = c
            .messages
            .iter()
            .map(|m| (m.invite_id(), m.state()))
            .collect();
        assert_eq!(states, [("i1", S::Expired), ("i2", S::Sent)]);
        assert_eq!(b.get("i1").unwrap().state, S::Expired);
        assert_eq!(b.next_deadline(), Some(at(20_000)));
    }

    #[test]
    fn handle_unknown_and_visitor_left() {
        let mut b = book();
        assert_eq!(
            b.handle("nope", E::Seen, T0),
            Err(InviteError::NotFound {
                invite_id: "nope".into()
            })
        );
        assert!(b.visitor_left("v1", T0).is_none());
        b.send(NewInvite::new("i1", "v1", "u"), T0).unwrap();
        b.handle("i1", E::Delivered, at(1)).unwrap();
        let c = b.visitor_left("v1", at(2)).unwrap();
        assert_eq!(c.messages[0].state(), S::VisitorLeft);
        assert!(b.open_for("v1").is_none());
        assert_eq!(b.next_deadline(), None);
        assert!(b.visitor_left("v1", at(3)).is_none());
    }

    #[test]
    fn sweep_expires_exactly_the_due_ones_in_order() {
        let mut b = book();
        b.send(NewInvite::new("a", "v1", "u"), T0).unwrap();
        b.send(NewInvite::new("b", "v2", "u"), at(100)).unwrap();
        b.send(NewInvite::new("c", "v3", "u"), at(200)).unwrap();
        b.handle("b", E::Accepted, at(300)).unwrap();
        assert!(b.sweep(at(9_999)).is_empty());
        assert_eq!(b.next_deadline(), Some(at(10_000)));
        let out = b.sweep(at(10_200));
        let ids: Vec<_> = out.iter().map(|c| c.invite.invite_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert!(out.iter().all(|c| c.messages.len() == 1));
        assert_eq!(b.next_deadline(), None);
        assert!(b.sweep(at(99_999)).is_empty());
        assert_eq!(b.get("b").unwrap().state, S::Accepted);
        assert_eq!(
            b.prune(at(10_200)),
            1,
            "b and the expired ones at 10_200 stay"
        );
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn wire_shapes() {
        let mut b = book();
        let mut new = NewInvite::new("inv_1", "visitor_123", "https://app.example/guest/abc123");
        new.invited_by = Some("Alice".into());
        new.host_url = Some("https://app.example/host/abc123".into());
        let c = b.send(new, T0).unwrap();
        assert_eq!(
            serde_json::to_value(&c.messages[0]).unwrap(),
            json!({"type":"VIDEO_INVITE_UPDATE","inviteId":"inv_1","visitorId":"visitor_123",
                   "state":"sent","invitedBy":"Alice","expiresAt":1_729_080_010_000_i64,
                   "updatedAt":1_729_080_000_000_i64})
        );
        assert_eq!(
            serde_json::to_string(&c.invite.part_a_message()).unwrap(),
            r#"{"type":"VIDEO_INVITE_SENT","visitorId":"visitor_123","guestUrl":"https://app.example/guest/abc123"}"#
        );
        assert_eq!(
            serde_json::to_value(&c.invite).unwrap(),
            json!({"inviteId":"inv_1","visitorId":"visitor_123",
                   "guestUrl":"https://app.example/guest/abc123",
                   "hostUrl":"https://app.example/host/abc123","invitedBy":"Alice",
                   "createdAt":1_729_080_000_000_i64,"expiresAt":1_729_080_010_000_i64,
                   "state":"sent","updatedAt":1_729_080_000_000_i64})
        );
        let back: Invite =
            serde_json::from_value(serde_json::to_value(&c.invite).unwrap()).unwrap();
        assert_eq!(back, c.invite);
    }

    #[test]
    fn visitor_channel_golden() {
        let mut i = invite_in(S::Sent);
        i.invited_by = Some("Alice".into());
        assert_eq!(
            serde_json::to_string(&i.visitor_message(at(15_000))).unwrap(),
            r#"{"type":"VIDEO_INVITE","inviteId":"inv_1","guestUrl":"https://g/1","invitedBy":"Alice","expiresAt":1729080060000,"expiresIn":45000}"#
        );
        i.state = S::Cancelled;
        assert_eq!(
            serde_json::to_string(&i.visitor_message(at(15_000))).unwrap(),
            r#"{"type":"VIDEO_INVITE_UPDATE","inviteId":"inv_1","state":"cancelled"}"#
        );
        i.invited_by = None;
        i.state = S::Seen;
        assert!(
            serde_json::to_string(&i.visitor_message(at(99_000)))
                .unwrap()
                .contains(r#""invitedBy":null,"expiresAt":1729080060000,"expiresIn":0"#)
        );
        for (text, event) in [
            (r#"{"type":"INVITE_SEEN","inviteId":"inv_1"}"#, E::Seen),
            (
                r#"{"type":"INVITE_ACCEPTED","inviteId":"inv_1"}"#,
                E::Accepted,
            ),
            (
                r#"{"type":"INVITE_DECLINED","inviteId":"inv_1"}"#,
                E::Declined,
            ),
        ] {
            let m: InviteFromVisitor = serde_json::from_str(text).unwrap();
            assert_eq!((m.invite_id(), m.event()), ("inv_1", event));
            assert_eq!(serde_json::to_string(&m).unwrap(), text);
        }
        for bad in [
            r#"{"type":"INVITE_SEEN"}"#,
            r#"{"type":"INVITE_JOINED","inviteId":"inv_1"}"#,
            r#"{"inviteId":"inv_1"}"#,
        ] {
            assert!(
                serde_json::from_str::<InviteFromVisitor>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
