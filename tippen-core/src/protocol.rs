//! The wire protocol: request bodies, the `<Visitor>` JSON and dashboard messages.
//!
//! Part A of `protocol.md` (the predecessor's contract) is accepted byte for byte; tippen's
//! additions are new optional fields and new message types only. JSON names are camelCase,
//! message `type`s SCREAMING_SNAKE_CASE.
//!
//! The bottom layer: it depends on no domain module. The enums and shapes the domain modules
//! share with the wire ([`InviteState`], [`Visibility`], [`Trigger`], [`UserSummary`], …) are
//! defined here and re-exported by them; building a view from a record (`VisitorView::of`,
//! `UserRecord::summary`) happens above, in `presence` and `support`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Body of `POST /track/visitor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackVisitorRequest {
    /// `pageview | heartbeat | visibility | leave`.
    pub event: String,
    /// The visitor and tab the event is about.
    pub visitor: TrackedVisitor,
    /// The site's host name as the tracker sees it.
    #[serde(default)]
    pub website: Option<String>,
    /// The key, for clients that cannot set headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// The `visitor` object of [`TrackVisitorRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackedVisitor {
    /// Tracker-chosen visitor id.
    pub visitor_id: String,
    /// Current page URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The client's clock (recorded, not trusted).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// `navigator.userAgent`.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// `document.referrer`.
    #[serde(default)]
    pub referrer: Option<String>,
    /// Addition: per-tab id (default `"default"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tab_id: Option<String>,
    /// Addition: the tab's visibility (default visible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// Addition: the id of the page (document) that sent the event, new on every page load;
    /// an exit beacon naming an earlier page of the tab than its last page view is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
}

/// Body of `POST /track/leave` (the exit beacon).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRequest {
    /// The key (`sendBeacon` cannot set headers); may be in the query instead.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The leaving visitor.
    pub visitor_id: String,
    /// The closing tab; `None` means every tab.
    #[serde(default)]
    pub tab_id: Option<String>,
    /// Addition: the page (document) being left. A beacon for a page the tab has already left
    /// (its next page's page view came first, as a reload's may) changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
}

/// Body of `POST /api/video-call`: create a video session with the configured provider and
/// invite the visitor to it, in one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoCallRequest {
    /// The key, for clients that cannot set headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The invited visitor.
    pub visitor_id: String,
    /// The invite's id, an idempotency key: a retry with the same id creates no second
    /// session and no second invite. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_id: Option<String>,
    /// Who invites (admin label shown to the visitor and other admins; the host's name in the
    /// call unless `hostName` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// The admin's name in the call. Default: `invitedBy`, else `Tippen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// The visitor's name in the call. Default: the visitor's company, else `Visitor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_name: Option<String>,
}

/// Answer of `POST /api/video-call`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoCallResponse {
    /// Always `true`.
    pub success: bool,
    /// The invite's id (the one given, or the generated one).
    pub invite_id: String,
    /// Where the admin joins the call.
    pub host_url: String,
    /// Where the visitor joins (sent to the visitor with the invite).
    pub guest_url: String,
    /// The invite's state (`sent`, or a later state when this was a retry).
    pub state: InviteState,
    /// When the invite expires unanswered.
    pub expires_at: Timestamp,
}

/// Body of `POST /api/send-video-invite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendVideoInviteRequest {
    /// The key (Part A sends it in the body).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The invited visitor.
    pub visitor_id: String,
    /// Where the visitor joins the call.
    pub guest_url: String,
    /// Addition: the invite's id, an idempotency key (a retry with the same id changes
    /// nothing); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_id: Option<String>,
    /// Addition: who invites (admin label shown to the visitor and other admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
}

/// Body of `POST /api/invites/cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelInviteRequest {
    /// The key, for clients that cannot set headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The invited visitor.
    pub visitor_id: String,
    /// The invite to withdraw.
    pub invite_id: String,
}

/// Body of `POST /track/invite`: the visitor's page answers an invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInviteRequest {
    /// The key (may be in the header or query instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The answering visitor.
    pub visitor_id: String,
    /// The answer (`type` and `inviteId`).
    #[serde(flatten)]
    pub answer: InviteFromVisitor,
}

/// A logged-in user's subscription tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionTier {
    /// On a free trial.
    FreeTrial,
    /// Paying.
    Paid,
    /// Enterprise contract.
    Enterprise,
}

/// Body of `POST /api/track/user-activity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserActivityRequest {
    /// The key (Part A sends it in the body).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The product's user id.
    pub user_id: String,
    /// The user's email.
    #[serde(default)]
    pub user_email: Option<String>,
    /// The user's tier.
    #[serde(default)]
    pub subscription_tier: Option<SubscriptionTier>,
    /// Hex HMAC-SHA256 of `userId` under the site's identity secret, computed by the
    /// product's backend; required by a site that verifies identities
    /// ([`Site::identity_secret`](crate::Site::identity_secret)), ignored by the others.
    #[serde(default)]
    pub user_hash: Option<String>,
    /// Addition: the live visitor id of the page (the visitor tracker's, when both trackers
    /// run on it), linking the user to the live list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The batch (at most [`Limits::max_activity_batch`](crate::config::Limits)).
    pub events: Vec<ActivityEvent>,
}

/// One in-app activity event. `timestamp` is the client's epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ActivityEvent {
    /// The user moved to a route.
    Route {
        /// The route.
        route: String,
        /// Client time, ms.
        timestamp: i64,
    },
    /// A click.
    Click {
        /// What was clicked.
        #[serde(default)]
        element: Option<String>,
        /// Where.
        #[serde(default)]
        route: Option<String>,
        /// Client time, ms.
        timestamp: i64,
    },
    /// A form was submitted.
    FormSubmit {
        /// The form.
        #[serde(default)]
        form_id: Option<String>,
        /// Where.
        #[serde(default)]
        route: Option<String>,
        /// Client time, ms.
        timestamp: i64,
    },
    /// Time spent on a route.
    PageTime {
        /// The route.
        #[serde(default)]
        route: Option<String>,
        /// Milliseconds.
        duration: u64,
        /// Client time, ms.
        timestamp: i64,
    },
    /// A client-side error.
    Error {
        /// Its message.
        #[serde(default)]
        message: Option<String>,
        /// Where.
        #[serde(default)]
        route: Option<String>,
        /// Client time, ms.
        timestamp: i64,
    },
    /// An application-defined event.
    Custom {
        /// Its name.
        name: String,
        /// Free-form data.
        #[serde(default)]
        data: Option<serde_json::Value>,
        /// Client time, ms.
        timestamp: i64,
    },
}

/// One tab in the `<Visitor>` JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TabView {
    /// Tab id.
    pub tab_id: String,
    /// Current URL.
    pub url: String,
    /// Visibility.
    pub visibility: Visibility,
    /// Last event, RFC 3339.
    pub last_seen: String,
}

/// The `<Visitor>` JSON of Part A, with tippen's additions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorView {
    /// Visitor id.
    pub visitor_id: String,
    /// Company name or fallback.
    pub company: String,
    /// Location.
    pub location: String,
    /// Role (always `Unknown` today, as in the predecessor).
    pub last_role: String,
    /// Page views in this visit.
    pub page_views: u64,
    /// Start of this visit, RFC 3339.
    pub timestamp: String,
    /// Last event, RFC 3339.
    pub last_activity: String,
    /// `active` (some tab visible) or `idle` (all hidden).
    pub status: String,
    /// Site host name.
    pub website: String,
    /// Company domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_domain: Option<String>,
    /// Industry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// Revenue range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<String>,
    /// Employee range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees: Option<String>,
    /// Provider's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enriched_location: Option<String>,
    /// `provider | cache | fallback`.
    #[serde(default)]
    pub enrichment_source: EnrichmentSource,
    /// Whether the company data came from the cache.
    #[serde(default)]
    pub is_cached: bool,
    /// When the company data was looked up, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enriched_at: Option<String>,
    /// Addition: the most recently active tab's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Addition: referrer of the visit's first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// Addition: user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Addition: known bot.
    #[serde(default)]
    pub is_bot: bool,
    /// Addition: live tabs.
    #[serde(default)]
    pub tabs: Vec<TabView>,
    /// Addition: the visitor's open invite, if any (so a dashboard that connects later shows
    /// who holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<OpenInviteView>,
}

/// The open invite shown in the `<Visitor>` JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInviteView {
    /// The invite.
    pub invite_id: String,
    /// Its state (`sent`, `delivered` or `seen`).
    pub state: InviteState,
    /// Who invites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// When it expires unanswered, epoch milliseconds.
    pub expires_at: Timestamp,
}

/// A server → dashboard message (without its sequence number; see [`Sequenced`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// The site's live visitors (on connect and on `GET_VISITORS`).
    InitialVisitors {
        /// Every live visitor.
        visitors: Vec<VisitorView>,
    },
    /// A visitor arrived or changed.
    VisitorUpdate {
        /// The visitor as it is now.
        visitor: Box<VisitorView>,
        /// What changed.
        event: UpdateKind,
    },
    /// A visitor is gone.
    VisitorRemoved {
        /// Who.
        visitor_id: String,
        /// Why.
        reason: RemovalReason,
    },
    /// An admin invited a visitor to a video call.
    VideoInviteSent {
        /// Who.
        visitor_id: String,
        /// Where the visitor joins.
        guest_url: String,
    },
    /// Addition: an invite was created (`state: "sent"`) or changed state (see
    /// [`InviteMessage`](crate::invite::InviteMessage)).
    VideoInviteUpdate {
        /// The invite.
        invite_id: String,
        /// The invited visitor.
        visitor_id: String,
        /// Its new state.
        state: InviteState,
        /// Who invites.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invited_by: Option<String>,
        /// When it expires unanswered, epoch milliseconds.
        expires_at: Timestamp,
        /// When the state changed, epoch milliseconds.
        updated_at: Timestamp,
    },
    /// Addition: a logged-in user needs support — a trigger started to hold (`raised`), or
    /// one stopped while others still hold (`raised` empty). `user` is the summary now.
    SupportAlert {
        /// The user's summary (its `triggers` are every trigger holding).
        user: Box<UserSummary>,
        /// The triggers that started to hold with this message.
        raised: Vec<Trigger>,
    },
    /// Addition: a user no longer needs support.
    SupportRecovered {
        /// The product's user id.
        user_id: String,
        /// The triggers that held until now.
        cleared: Vec<Trigger>,
        /// `recovered` (no trigger holds), `expired` (retention ended) or `deleted`.
        resolution: Resolution,
        /// When, RFC 3339.
        at: String,
    },
    /// Answer to `PING`.
    Pong {
        /// Server time, epoch milliseconds.
        timestamp: i64,
    },
    /// Addition: the dashboard sent something the server does not understand.
    Error {
        /// What was wrong.
        error: String,
    },
}

impl ServerMessage {
    /// Whether this message goes to every dashboard of the site (and so advances `seq`).
    pub fn is_broadcast(&self) -> bool {
        matches!(
            self,
            ServerMessage::VisitorUpdate { .. }
                | ServerMessage::VisitorRemoved { .. }
                | ServerMessage::VideoInviteSent { .. }
                | ServerMessage::VideoInviteUpdate { .. }
                | ServerMessage::SupportAlert { .. }
                | ServerMessage::SupportRecovered { .. }
        )
    }
}

/// A [`ServerMessage`] with the site's sequence number (`"seq"`), as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced {
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
    /// Broadcasts: this message's number; replies: the site's current number.
    pub seq: u64,
}

impl Sequenced {
    /// The JSON text sent over the WebSocket.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The JSON text of `message` up to its number: [`to_json`](Self::to_json) of the message
    /// numbered `seq` is this text, then `seq` in decimal, then `}` (`"seq"` is the last
    /// field). A store that numbers and publishes messages in one atomic step
    /// ([`Store::advance_sequence_publishing`](crate::Store::advance_sequence_publishing))
    /// completes it there.
    pub fn unnumbered_json(message: &ServerMessage) -> String {
        #[derive(Serialize)]
        struct Numbered<'a> {
            #[serde(flatten)]
            message: &'a ServerMessage,
            seq: u64,
        }
        let mut json = serde_json::to_string(&Numbered { message, seq: 0 })
            .unwrap_or_else(|_| String::from("{\"seq\":0}"));
        // Drop the `0}` of the placeholder number.
        json.truncate(json.len().saturating_sub(2));
        json
    }
}

/// A dashboard → server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientMessage {
    /// Keep-alive; answered with `PONG`.
    Ping,
    /// Asks for a fresh `INITIAL_VISITORS`.
    GetVisitors,
}

// ---- Wire enums and shapes of the domain modules ----
//
// Here, at the bottom, so that the protocol depends on no domain module: `invite`, `presence`,
// `support` and `enrichment` re-export them and build them from their records (for example
// `VisitorView::of` in `presence`).

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
    /// Nobody answered before
    /// [`Invite::expires_at`](crate::invite::Invite::expires_at) (final).
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
}

/// Page visibility of a tab (Page Visibility API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The tab is shown.
    #[default]
    Visible,
    /// The tab is in the background; browsers throttle its timers.
    Hidden,
}

/// Why a visitor was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalReason {
    /// No event within the grace period.
    Inactive,
    /// The last tab sent an exit beacon.
    Left,
    /// Addition: an admin deleted the visitor's data (privacy request).
    Deleted,
}

/// What a ping changed, as far as a dashboard can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// First event of a visit.
    NewVisitor,
    /// A page view or a URL change.
    Pageview,
    /// A tab's visibility changed.
    Visibility,
    /// A new tab joined the visitor.
    TabOpened,
    /// A tab left or expired while others remain.
    TabClosed,
    /// The visitor's company data arrived (an enrichment lookup finished).
    Enriched,
}

/// Why a user needs support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// On the same route for too long while present.
    Stuck,
    /// Too few interactions in the window while present.
    LowActivity,
    /// Too many errors in the window.
    ErrorBurst,
    /// No events for too long.
    Inactivity,
}

impl Trigger {
    /// Every trigger, in report order.
    pub const ALL: [Trigger; 4] = [
        Trigger::Stuck,
        Trigger::LowActivity,
        Trigger::ErrorBurst,
        Trigger::Inactivity,
    ];

    /// The wire name (`stuck`, `low_activity`, `error_burst`, `inactivity`).
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Stuck => "stuck",
            Trigger::LowActivity => "low_activity",
            Trigger::ErrorBurst => "error_burst",
            Trigger::Inactivity => "inactivity",
        }
    }
}

/// Why a user stopped needing support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// No trigger holds any more.
    Recovered,
    /// The user's retention ended (no events for
    /// [`SupportConfig::retention`](crate::support::SupportConfig::retention)).
    Expired,
    /// The user's data was deleted.
    Deleted,
}

/// A user's activity summary, as the support endpoint and `SUPPORT_ALERT` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    /// The product's user id.
    pub user_id: String,
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// The user's tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_tier: Option<SubscriptionTier>,
    /// The current route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Since when, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_route_since: Option<String>,
    /// Time on the current route, milliseconds.
    pub time_on_page_ms: u64,
    /// First event, RFC 3339.
    pub first_seen: String,
    /// Last event, RFC 3339.
    pub last_activity: String,
    /// An event within the presence window.
    pub present: bool,
    /// Interactions in the low-activity window.
    pub events_in_window: u64,
    /// Errors in the error window.
    pub errors_in_window: u64,
    /// Events in total.
    pub event_count: u64,
    /// Errors in total.
    pub error_count: u64,
    /// The last error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether a trigger holds.
    pub needs_support: bool,
    /// The triggers holding (`stuck`, `low_activity`, `error_burst`, `inactivity`).
    pub triggers: Vec<Trigger>,
    /// Since when the user needs support, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_since: Option<String>,
}

/// Where a visitor's company data came from (the visitor JSON's `enrichmentSource`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichmentSource {
    /// A provider lookup made for this visitor (or joined while in flight).
    Provider,
    /// The shared cache, without a lookup.
    Cache,
    /// No data: the fallback company of a skip or a failure.
    #[default]
    Fallback,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnumbered_json_completed_with_the_number_is_the_wire_text() {
        let messages = [
            ServerMessage::VisitorRemoved {
                visitor_id: "v\"1}".into(),
                reason: RemovalReason::Inactive,
            },
            ServerMessage::Pong { timestamp: -5 },
            ServerMessage::Error {
                error: "\"seq\":0}".into(),
            },
        ];
        for message in messages {
            for seq in [0, 7, u64::MAX] {
                let unnumbered = Sequenced::unnumbered_json(&message);
                let wire = Sequenced {
                    message: message.clone(),
                    seq,
                }
                .to_json();
                assert_eq!(format!("{unnumbered}{seq}}}"), wire);
            }
        }
    }
}
