//! Configuration: every timing and limit, with the documented defaults.

use std::time::Duration;

/// Presence timings. Defaults: heartbeat 30 s, visible tab kept 60 s after its last event,
/// hidden tab 300 s (browsers throttle timers in hidden tabs to once a minute or less), a tab
/// that sent its exit beacon held 2 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// How often the tracker sends a heartbeat (told to trackers; not enforced).
    pub heartbeat_interval: Duration,
    /// How long a visible tab stays live after its last event.
    pub visible_grace: Duration,
    /// How long a hidden tab stays live after its last event.
    pub hidden_grace: Duration,
    /// Most tabs kept per visitor; the least recently seen tab is dropped beyond it.
    pub max_tabs_per_visitor: usize,
    /// After a tab's exit beacon, its heartbeats and visibility events are ignored for this
    /// long, so a request that was in flight when the tab closed does not bring the visitor
    /// back; a page view from that tab still counts. Zero disables it.
    pub departure_quiet: Duration,
    /// How long a tab that sent its exit beacon is held before it is dropped (the visitor
    /// removed with reason `left` when it was the last tab). An exit beacon cannot tell a
    /// reload, a back/forward navigation or a page restored from the back/forward cache from a
    /// close: the next page's event from the same tab (its id survives in `sessionStorage`),
    /// or another tab of the visitor, arriving within the linger keeps the visitor and its
    /// counts. Zero drops the tab at once.
    pub leave_linger: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            heartbeat_interval: Duration::from_secs(30),
            visible_grace: Duration::from_secs(60),
            hidden_grace: Duration::from_secs(300),
            max_tabs_per_visitor: 20,
            departure_quiet: Duration::from_secs(10),
            leave_linger: Duration::from_secs(2),
        }
    }
}

/// Request limits and quotas of the HTTP contract. Every quota answers with a documented 4xx
/// and `{"error": …}` when exceeded, and nothing grows (`docs/contract.md`, "Limits and
/// quotas").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (413 beyond). Default 64 KiB.
    pub max_body_bytes: usize,
    /// Most events in one `/api/track/user-activity` batch (413 beyond). Default 50.
    pub max_activity_batch: usize,
    /// Longest accepted id in bytes — visitor, tab, invite and user ids on every route and
    /// socket frame (400 beyond). Default 128.
    pub max_id_bytes: usize,
    /// Longest accepted API key in bytes; a longer one is refused as unknown (403) without
    /// being hashed. Default 256.
    pub max_key_bytes: usize,
    /// Largest accepted WebSocket text frame (dashboard or visitor channel) in bytes; a larger
    /// one is answered with an `ERROR` message and changes nothing. Default 4 KiB.
    pub max_frame_bytes: usize,
    /// Most departed tabs remembered per visitor (see
    /// [`PresenceConfig::departure_quiet`]); beyond it the oldest departure is forgotten, so a
    /// flood of exit beacons with new tab ids does not grow the record. Default 20.
    pub max_departed_tabs: usize,
    /// Most visitor records a site holds (live visitors, departed ones in their quiet period,
    /// opt-out tombstones). A new visitor beyond it is refused with 429; existing visitors
    /// keep being tracked. Default 10,000.
    pub max_visitors_per_site: usize,
    /// Most support users a site holds; a new user beyond it is refused with 429 (known users
    /// keep being analysed). What is held per user is bounded by
    /// [`SupportConfig`](crate::support::SupportConfig) (`max_raw_events`,
    /// `max_window_events`). Default 10,000.
    pub max_users_per_site: usize,
    /// URLs, referrers and user agents are cut to this many bytes. Default 2048.
    pub max_text_bytes: usize,
    /// Most due visitors handled by one sweep call; the rest wait for the next. Default 1000.
    pub sweep_batch: usize,
    /// Attempts of a read-modify-write before giving up on contention. Default 16.
    pub max_write_attempts: usize,
    /// How long a site's `INITIAL_VISITORS` text, once built for a dashboard socket (its
    /// opening, or its `GET_VISITORS`), is sent again to the site's dashboards as it is,
    /// while the site's sequence number has not moved: a flood of `GET_VISITORS` or of
    /// dashboard connects then costs one snapshot per site and period, not one each. What
    /// the reused text may miss is bounded by the period: time-derived fields, and a visitor
    /// whose grace ended but whose removal is not numbered yet. `GET /api/visitors` always
    /// reads afresh. Zero: never reused. Default 1 s.
    pub snapshot_reuse: Duration,
    /// How long a dashboard socket ticket (`POST /api/ws-ticket`) may be spent; it opens one
    /// socket, once. Default 30 s.
    pub ws_ticket_ttl: Duration,
    /// Most open sockets of one site — its dashboards and its visitor channels together. An
    /// upgrade beyond it is refused with 429 before upgrading; a socket stops counting when it
    /// closes. A site's own [`Site::socket_quotas`](crate::Site::socket_quotas) replaces it
    /// for that site. Default 5,000.
    pub max_sockets_per_site: usize,
    /// Most open sockets from one client address (see [`crate::quota`] for what "one address"
    /// spans on each host: every site on axum, the site on the Worker and Lambda). An upgrade
    /// beyond it is refused with 429 before upgrading. Default 50.
    pub max_sockets_per_address: usize,
    /// `GET_VISITORS` frames one dashboard socket may send a minute (a token bucket of this
    /// size, refilled evenly over the minute; the opening snapshot does not count). One over
    /// it is answered with an `ERROR` instead of a snapshot; nothing else changes. Default 30.
    pub snapshots_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_activity_batch: 50,
            max_id_bytes: 128,
            max_key_bytes: 256,
            max_frame_bytes: 4096,
            max_departed_tabs: 20,
            max_visitors_per_site: 10_000,
            max_users_per_site: 10_000,
            max_text_bytes: 2048,
            sweep_batch: 1000,
            max_write_attempts: 16,
            snapshot_reuse: Duration::from_secs(1),
            ws_ticket_ttl: Duration::from_secs(30),
            max_sockets_per_site: 5_000,
            max_sockets_per_address: 50,
            snapshots_per_minute: 30,
        }
    }
}

/// Privacy: what a deletion leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyConfig {
    /// A deleted visitor's id is kept (nothing else) for this long as an opt-out tombstone:
    /// its tracking calls are refused with `410` instead of recreating the visitor.
    /// Default 30 days.
    pub opt_out_retention: Duration,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            opt_out_retention: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

/// Where the host's WebSockets are, when not beside its HTTP routes (`/ws/dashboard`,
/// `/ws/visitor` on the host the page came from): on AWS Lambda the WebSocket API has its own
/// address. The served dashboard, demo page and tracker are told these URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketUrls {
    /// Where dashboards connect (`ws://` or `wss://`, possibly with a query); the page appends
    /// `apiKey=<key>`.
    pub dashboard: Option<String>,
    /// Where visitors' pages connect; the tracker appends `apiKey=<key>&visitorId=<id>`.
    pub visitor: Option<String>,
}

/// Everything configurable in the core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// How long enrichment results stay in the shared cache (hits 30 days, failures 1 day).
    pub enrichment_cache: crate::enrichment::CachePolicy,
    /// Presence timings.
    pub presence: PresenceConfig,
    /// Request limits.
    pub limits: Limits,
    /// Video invite timings (an unanswered invite expires after 60 s by default).
    pub invites: crate::invite::InviteConfig,
    /// Support triggers: rule thresholds and tiers, the Slack cooldown, what is kept per user
    /// (see [`crate::support`]).
    pub support: crate::support::SupportConfig,
    /// Privacy: the opt-out tombstone a deletion leaves.
    pub privacy: PrivacyConfig,
    /// Where the host's WebSockets are, told to the pages it serves (default: beside the HTTP
    /// routes).
    pub sockets: SocketUrls,
    /// Alert rules' delivery (see [`crate::alerts`]).
    pub alerts: crate::alerts::AlertsConfig,
    /// How long the audit log keeps entries (see [`crate::audit`]).
    pub audit: crate::audit::AuditConfig,
    /// The hash of the operator token (`TIPPEN_OPERATOR_TOKEN`), which authorizes the
    /// operator API (`/api/operator/...`) across sites; `None`: that API is off.
    pub operator_token: Option<crate::site::KeyHash>,
}
