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

/// Request limits of the HTTP contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (413 beyond). Default 64 KiB.
    pub max_body_bytes: usize,
    /// Most events in one `/api/track/user-activity` batch (413 beyond). Default 50.
    pub max_activity_batch: usize,
    /// Longest accepted visitor or tab id in bytes (400 beyond). Default 128.
    pub max_id_bytes: usize,
    /// URLs, referrers and user agents are cut to this many bytes. Default 2048.
    pub max_text_bytes: usize,
    /// Most due visitors handled by one sweep call; the rest wait for the next. Default 1000.
    pub sweep_batch: usize,
    /// Attempts of a read-modify-write before giving up on contention. Default 16.
    pub max_write_attempts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_activity_batch: 50,
            max_id_bytes: 128,
            max_text_bytes: 2048,
            sweep_batch: 1000,
            max_write_attempts: 16,
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
    /// Where the host's WebSockets are, told to the pages it serves (default: beside the HTTP
    /// routes).
    pub sockets: SocketUrls,
}
