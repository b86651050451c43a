//! Video-call invites: the lifecycle of one invite as pure functions of `now`.
//!
//! A visitor's record ([`VisitorRecord::invite`](crate::presence::VisitorRecord::invite))
//! holds its current invite, so at most one is open per visitor; the service
//! ([`Tippen::send_invite`](crate::Tippen::send_invite),
//! [`Tippen::invite_event`](crate::Tippen::invite_event), the sweep) drives it.
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
//!   (`Invite::part_a_message`).
//! - An open invite's [`deadline`](Invite::deadline) is its expiry; a final one has none. It
//!   counts in the visitor record's deadline, so the store's deadline index brings a due
//!   invite to the sweep.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::Timestamp;
use crate::protocol::ServerMessage;
pub use crate::protocol::{InviteFromVisitor, InviteState};

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
    pub(crate) fn part_a_message(&self) -> ServerMessage {
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

impl InviteFromVisitor {
    /// The event to apply ([`Tippen::invite_event`](crate::Tippen::invite_event)).
    pub fn event(&self) -> InviteEvent {
        match self {
            InviteFromVisitor::InviteSeen { .. } => InviteEvent::Seen,
            InviteFromVisitor::InviteAccepted { .. } => InviteEvent::Accepted,
            InviteFromVisitor::InviteDeclined { .. } => InviteEvent::Declined,
        }
    }
}

impl From<InviteMessage> for ServerMessage {
    fn from(m: InviteMessage) -> Self {
        match m {
            InviteMessage::VideoInviteUpdate {
                invite_id,
                visitor_id,
                state,
                invited_by,
                expires_at,
                updated_at,
            } => ServerMessage::VideoInviteUpdate {
                invite_id,
                visitor_id,
                state,
                invited_by,
                expires_at,
                updated_at,
            },
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

    #[test]
    fn wire_shapes() {
        let mut new = NewInvite::new("inv_1", "visitor_123", "https://app.example/guest/abc123");
        new.invited_by = Some("Alice".into());
        new.host_url = Some("https://app.example/host/abc123".into());
        let ttl = InviteConfig {
            ttl: Duration::from_secs(10),
        };
        let invite = Invite::new(new, T0, &ttl);
        assert_eq!(
            serde_json::to_value(invite.message()).unwrap(),
            json!({"type":"VIDEO_INVITE_UPDATE","inviteId":"inv_1","visitorId":"visitor_123",
                   "state":"sent","invitedBy":"Alice","expiresAt":1_729_080_010_000_i64,
                   "updatedAt":1_729_080_000_000_i64})
        );
        assert_eq!(
            serde_json::to_string(&invite.part_a_message()).unwrap(),
            r#"{"type":"VIDEO_INVITE_SENT","visitorId":"visitor_123","guestUrl":"https://app.example/guest/abc123"}"#
        );
        assert_eq!(
            serde_json::to_value(&invite).unwrap(),
            json!({"inviteId":"inv_1","visitorId":"visitor_123",
                   "guestUrl":"https://app.example/guest/abc123",
                   "hostUrl":"https://app.example/host/abc123","invitedBy":"Alice",
                   "createdAt":1_729_080_000_000_i64,"expiresAt":1_729_080_010_000_i64,
                   "state":"sent","updatedAt":1_729_080_000_000_i64})
        );
        let back: Invite = serde_json::from_value(serde_json::to_value(&invite).unwrap()).unwrap();
        assert_eq!(back, invite);
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
