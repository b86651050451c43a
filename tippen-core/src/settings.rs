//! Host settings: the sites and the common `TIPPEN_*` variables, read and checked once for
//! every host.
//!
//! Every host reads the same names (the reference server also from its TOML file, whose values
//! the environment overrides) and gets one [`Settings`]: the core [`Config`], the [`Site`]s
//! with their keys hashed, and the optional video provider, Slack and enrichment settings.
//! What only one host has (a DynamoDB table, the Worker's test routes, trusted proxies) stays
//! in that host. This module does no IO: it reads through a lookup function.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TIPPEN_SITES` | the sites, a JSON array of [`SiteEntry`] | none |
//! | `TIPPEN_HEARTBEAT_MS` | heartbeat interval told to trackers | 30000 |
//! | `TIPPEN_VISIBLE_GRACE_MS` | a visible tab is dropped this long after its last event | 60000 |
//! | `TIPPEN_HIDDEN_GRACE_MS` | a hidden tab is dropped this long after its last event | 300000 |
//! | `TIPPEN_LEAVE_LINGER_MS` | a tab that sent its exit beacon is held this long (a reload keeps the visitor); 0 drops it at once | 2000 |
//! | `TIPPEN_INVITE_TTL_MS` | an unanswered video invite expires after this long | 60000 |
//! | `TIPPEN_VIDEO_PROVIDER_URL` | the video-session provider (`POST /api/video-call`) | none (`501`) |
//! | `TIPPEN_SLACK_WEBHOOK_URL` | Slack incoming webhook for support alerts (a secret) | none |
//! | `TIPPEN_DASHBOARD_WS_URL` | where dashboards open their socket, told to the served dashboard (`ws://` or `wss://`; the page appends `apiKey=`) | `/ws/dashboard` beside the page |
//! | `TIPPEN_VISITOR_WS_URL` | where visitors' pages open their socket, told to the served tracker (the tracker appends `apiKey=…&visitorId=…`) | `/ws/visitor` beside the tracker's endpoint |
//! | `TIPPEN_PUBLIC_URL` | the public base URL, for the dashboard link in Slack messages | none |
//! | `TIPPEN_ENRICHMENT_PROVIDER` | `ipinfo`, `ipinfo_lite`, `enrich_so` or `people_data_labs` | none |
//! | `TIPPEN_ENRICHMENT_API_KEY` | the provider's API key (a secret) | required with a provider |
//! | `TIPPEN_ENRICHMENT_BASE_URL` | another base URL for the provider (a proxy, a test double) | the provider's |
//! | `TIPPEN_MAX_BODY_BYTES` | largest request body (413 beyond) | 65536 |
//! | `TIPPEN_MAX_ID_BYTES` | longest visitor, tab, invite or user id (400 beyond) | 128 |
//! | `TIPPEN_MAX_FRAME_BYTES` | largest WebSocket text frame (an `ERROR` reply beyond) | 4096 |
//! | `TIPPEN_MAX_TABS_PER_VISITOR` | tabs kept per visitor (the least recently seen dropped beyond) | 20 |
//! | `TIPPEN_MAX_DEPARTED_TABS` | departed tabs remembered per visitor (the oldest forgotten beyond) | 20 |
//! | `TIPPEN_MAX_VISITORS_PER_SITE` | visitor records per site (a new visitor is 429 beyond) | 10000 |
//! | `TIPPEN_MAX_USERS_PER_SITE` | support users per site (a new user is 429 beyond) | 10000 |
//! | `TIPPEN_RATE_LIMIT_PER_IP` | requests a second per client address, bursts of 4×; 0: off (`429` + `Retry-After` beyond) | 100 |
//! | `TIPPEN_RATE_LIMIT_PER_KEY` | requests a second per presented key, bursts of 4×; 0: off (a site's `rateLimitPerKey` replaces it for its keys) | 1000 |
//! | `TIPPEN_SNAPSHOT_REUSE_MS` | how long a site's snapshot for dashboard sockets is sent again as it is while nothing was numbered ([`Limits::snapshot_reuse`](crate::config::Limits::snapshot_reuse)); 0: never | 1000 |
//! | `TIPPEN_WS_TICKET_TTL_MS` | how long a dashboard socket ticket (`POST /api/ws-ticket`) may be spent ([`Limits::ws_ticket_ttl`](crate::config::Limits::ws_ticket_ttl)) | 30000 |
//! | `TIPPEN_MAX_SOCKETS_PER_SITE` | open sockets (dashboards and visitor channels) per site; an upgrade beyond is 429 (a site's `maxSockets` replaces it) | 5000 |
//! | `TIPPEN_MAX_SOCKETS_PER_ADDRESS` | open sockets per client address (see [`crate::quota`] for its scope on each host); an upgrade beyond is 429 (a site's `maxSocketsPerAddress` replaces it) | 50 |
//! | `TIPPEN_SNAPSHOTS_PER_MINUTE` | `GET_VISITORS` a minute per dashboard socket, an `ERROR` reply beyond (a site's `snapshotsPerMinute` replaces it) | 30 |
//! | `TIPPEN_OPERATOR_TOKEN` | the operator API's token (a secret, at least 24 characters): sites, keys and settings at runtime, the Command Center (`/command-center`) | none (the operator API answers 403) |
//! | `TIPPEN_AUDIT_RETENTION_DAYS` | days the audit log keeps entries | 365 |
//! | `TIPPEN_OPT_OUT_RETENTION_MS` | how long a deleted visitor's id stays opted out (410) | 2592000000 (30 days) |
//! | `TIPPEN_SUPPORT_<KEY>` | the support rules: `STUCK_AFTER_MS`, `PRESENCE_WINDOW_MS`, `LOW_ACTIVITY_WINDOW_MS`, `LOW_ACTIVITY_MIN_EVENTS`, `ERROR_WINDOW_MS`, `ERROR_BURST_MAX`, `INACTIVITY_AFTER_MS`, `SLACK_COOLDOWN_MS`, `RETENTION_MS`, `MAX_RAW_EVENTS`, and the tiers of each rule `STUCK_TIERS`, `LOW_ACTIVITY_TIERS`, `ERROR_BURST_TIERS`, `INACTIVITY_TIERS` (`all`, `none`, or a comma-separated list of `free_trial`, `paid`, `enterprise`) | [`SupportConfig::default`] |
//!
//! The rules, the same on every host: blank values count as unset; timings are whole numbers
//! of milliseconds, at least 1; URLs are `http://` or `https://` with a host; a site id is 1 to
//! 64 letters, digits, `-`, `_` or `.`, used once; every key is non-empty and belongs to one
//! site in one role (a site's public and secret keys differ); a secret or legacy key given in
//! plain has at least [`MIN_SECRET_KEY_CHARS`] (24) characters; dashboard origins are
//! `http(s)://host[:port]`; guest URL origins are
//! `https://host[:port]`.
//!
//! ```
//! use tippen_core::settings::Settings;
//!
//! let env = |name: &str| match name {
//!     "TIPPEN_SITES" => Some(r#"[{"id":"acme","publicKey":"pk_acme","secretKey":"sk_acme_7f3a9c1e5b2d8f4a6c0e"}]"#.to_owned()),
//!     "TIPPEN_VISIBLE_GRACE_MS" => Some("2000".to_owned()),
//!     _ => None,
//! };
//! let settings = Settings::from_vars(env).unwrap();
//! assert_eq!(settings.sites[0].name, "acme");
//! assert_eq!(settings.config.presence.visible_grace.as_millis(), 2000);
//!
//! let reused = |name: &str| (name == "TIPPEN_SITES").then(|| {
//!     r#"[{"id":"a","legacyKey":"k"},{"id":"b","publicKey":"k","secretKey":"s"}]"#.to_owned()
//! });
//! let e = Settings::from_vars(reused).unwrap_err();
//! assert_eq!(e.to_string(), r#"TIPPEN_SITES: site "b": a key is used twice (site "a" has it too)"#);
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::enrichment::{ProviderConfig, ProviderConfigError, ProviderSettingsError};
use crate::protocol::SubscriptionTier;
#[cfg(feature = "slack")]
use crate::slack::{SlackConfig, SlackError};
use crate::support::{RuleScope, SupportConfig};
use crate::{Config, KeyHash, ServiceError, Site, SiteId, Tippen};

/// The fewest characters a secret (or legacy) key may have: a guessable dashboard key gives
/// away every visitor of the site. Generate one with `openssl rand -hex 16`.
pub const MIN_SECRET_KEY_CHARS: usize = 24;

/// The names of the variables this module reads.
pub mod names {
    /// The sites (JSON).
    pub const SITES: &str = "TIPPEN_SITES";
    /// Heartbeat interval (ms).
    pub const HEARTBEAT_MS: &str = "TIPPEN_HEARTBEAT_MS";
    /// A visible tab's grace (ms).
    pub const VISIBLE_GRACE_MS: &str = "TIPPEN_VISIBLE_GRACE_MS";
    /// A hidden tab's grace (ms).
    pub const HIDDEN_GRACE_MS: &str = "TIPPEN_HIDDEN_GRACE_MS";
    /// How long a tab that sent its exit beacon is held (ms, 0 allowed).
    pub const LEAVE_LINGER_MS: &str = "TIPPEN_LEAVE_LINGER_MS";
    /// An unanswered invite's lifetime (ms).
    pub const INVITE_TTL_MS: &str = "TIPPEN_INVITE_TTL_MS";
    /// The video-session provider's base URL.
    pub const VIDEO_PROVIDER_URL: &str = "TIPPEN_VIDEO_PROVIDER_URL";
    /// The Slack incoming webhook.
    pub const SLACK_WEBHOOK_URL: &str = "TIPPEN_SLACK_WEBHOOK_URL";
    /// The public base URL (dashboard links).
    pub const PUBLIC_URL: &str = "TIPPEN_PUBLIC_URL";
    /// Where dashboards open their socket.
    pub const DASHBOARD_WS_URL: &str = "TIPPEN_DASHBOARD_WS_URL";
    /// Where visitors' pages open their socket.
    pub const VISITOR_WS_URL: &str = "TIPPEN_VISITOR_WS_URL";
    /// The enrichment provider's name.
    pub const ENRICHMENT_PROVIDER: &str = "TIPPEN_ENRICHMENT_PROVIDER";
    /// The enrichment provider's API key.
    pub const ENRICHMENT_API_KEY: &str = "TIPPEN_ENRICHMENT_API_KEY";
    /// The enrichment provider's base URL.
    pub const ENRICHMENT_BASE_URL: &str = "TIPPEN_ENRICHMENT_BASE_URL";
    /// Support: stuck after (ms).
    pub const SUPPORT_STUCK_AFTER_MS: &str = "TIPPEN_SUPPORT_STUCK_AFTER_MS";
    /// Support: presence window (ms).
    pub const SUPPORT_PRESENCE_WINDOW_MS: &str = "TIPPEN_SUPPORT_PRESENCE_WINDOW_MS";
    /// Support: low-activity window (ms).
    pub const SUPPORT_LOW_ACTIVITY_WINDOW_MS: &str = "TIPPEN_SUPPORT_LOW_ACTIVITY_WINDOW_MS";
    /// Support: low activity below this many interactions.
    pub const SUPPORT_LOW_ACTIVITY_MIN_EVENTS: &str = "TIPPEN_SUPPORT_LOW_ACTIVITY_MIN_EVENTS";
    /// Support: error-burst window (ms).
    pub const SUPPORT_ERROR_WINDOW_MS: &str = "TIPPEN_SUPPORT_ERROR_WINDOW_MS";
    /// Support: error burst above this many errors.
    pub const SUPPORT_ERROR_BURST_MAX: &str = "TIPPEN_SUPPORT_ERROR_BURST_MAX";
    /// Support: inactivity after (ms).
    pub const SUPPORT_INACTIVITY_AFTER_MS: &str = "TIPPEN_SUPPORT_INACTIVITY_AFTER_MS";
    /// Largest request body (bytes).
    pub const MAX_BODY_BYTES: &str = "TIPPEN_MAX_BODY_BYTES";
    /// Longest id (bytes).
    pub const MAX_ID_BYTES: &str = "TIPPEN_MAX_ID_BYTES";
    /// Largest WebSocket text frame (bytes).
    pub const MAX_FRAME_BYTES: &str = "TIPPEN_MAX_FRAME_BYTES";
    /// Tabs kept per visitor.
    pub const MAX_TABS_PER_VISITOR: &str = "TIPPEN_MAX_TABS_PER_VISITOR";
    /// Departed tabs remembered per visitor.
    pub const MAX_DEPARTED_TABS: &str = "TIPPEN_MAX_DEPARTED_TABS";
    /// Visitor records per site.
    pub const MAX_VISITORS_PER_SITE: &str = "TIPPEN_MAX_VISITORS_PER_SITE";
    /// Support users per site.
    pub const MAX_USERS_PER_SITE: &str = "TIPPEN_MAX_USERS_PER_SITE";
    /// How long a dashboard snapshot is reused while nothing was numbered (ms; 0: never).
    pub const SNAPSHOT_REUSE_MS: &str = "TIPPEN_SNAPSHOT_REUSE_MS";
    /// How long a dashboard socket ticket may be spent (ms).
    pub const WS_TICKET_TTL_MS: &str = "TIPPEN_WS_TICKET_TTL_MS";
    /// Open sockets per site.
    pub const MAX_SOCKETS_PER_SITE: &str = "TIPPEN_MAX_SOCKETS_PER_SITE";
    /// Open sockets per client address.
    pub const MAX_SOCKETS_PER_ADDRESS: &str = "TIPPEN_MAX_SOCKETS_PER_ADDRESS";
    /// `GET_VISITORS` a minute per dashboard socket.
    pub const SNAPSHOTS_PER_MINUTE: &str = "TIPPEN_SNAPSHOTS_PER_MINUTE";
    /// How long a deleted visitor stays opted out (ms).
    pub const OPT_OUT_RETENTION_MS: &str = "TIPPEN_OPT_OUT_RETENTION_MS";
    /// Support: the tiers `stuck` applies to.
    pub const SUPPORT_STUCK_TIERS: &str = "TIPPEN_SUPPORT_STUCK_TIERS";
    /// Support: the tiers `low_activity` applies to.
    pub const SUPPORT_LOW_ACTIVITY_TIERS: &str = "TIPPEN_SUPPORT_LOW_ACTIVITY_TIERS";
    /// Support: the tiers `error_burst` applies to.
    pub const SUPPORT_ERROR_BURST_TIERS: &str = "TIPPEN_SUPPORT_ERROR_BURST_TIERS";
    /// Support: the tiers `inactivity` applies to.
    pub const SUPPORT_INACTIVITY_TIERS: &str = "TIPPEN_SUPPORT_INACTIVITY_TIERS";
    /// Support: one Slack message per user per this (ms).
    pub const SUPPORT_SLACK_COOLDOWN_MS: &str = "TIPPEN_SUPPORT_SLACK_COOLDOWN_MS";
    /// Support: users and raw events are forgotten after this (ms).
    pub const SUPPORT_RETENTION_MS: &str = "TIPPEN_SUPPORT_RETENTION_MS";
    /// Support: raw events kept per user.
    pub const SUPPORT_MAX_RAW_EVENTS: &str = "TIPPEN_SUPPORT_MAX_RAW_EVENTS";
    /// Requests a second per client address (bursts of 4×); 0: off.
    pub const RATE_LIMIT_PER_IP: &str = "TIPPEN_RATE_LIMIT_PER_IP";
    /// Requests a second per presented key (bursts of 4×); 0: off.
    pub const RATE_LIMIT_PER_KEY: &str = "TIPPEN_RATE_LIMIT_PER_KEY";
    /// Alert destinations set through the API may be `http://` and private (1) or not (0).
    pub const ALERT_PRIVATE_DESTINATIONS: &str = "TIPPEN_ALERT_PRIVATE_DESTINATIONS";
    /// The operator token of the operator API (a secret; unset: that API is off).
    pub const OPERATOR_TOKEN: &str = "TIPPEN_OPERATOR_TOKEN";
    /// Days the audit log keeps entries.
    pub const AUDIT_RETENTION_DAYS: &str = "TIPPEN_AUDIT_RETENTION_DAYS";
}

/// Why the settings are unusable; each variant names the setting (a variable, or the file
/// field it came from) and the problem.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// The operator token is too short to resist guessing.
    #[error(
        "{name} has {chars} characters; it needs at least {MIN_SECRET_KEY_CHARS} (generate one with `openssl rand -hex 32`)"
    )]
    ShortOperatorToken {
        /// The setting.
        name: &'static str,
        /// Its length in characters.
        chars: usize,
    },
    /// Not a whole non-negative number.
    #[error("{name} must be a whole number, got {value:?}")]
    NotANumber {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Zero where at least 1 is needed.
    #[error("{name} must be at least 1")]
    Zero {
        /// The setting.
        name: &'static str,
    },
    /// Not an `http://` or `https://` URL with a host.
    #[error("{name} must be an http:// or https:// URL, got {value:?}")]
    NotHttpUrl {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Not a `ws://` or `wss://` URL with a host.
    #[error("{name} must be a ws:// or wss:// URL, got {value:?}")]
    NotWsUrl {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// A support rule's tiers name an unknown tier.
    #[error(
        "{name}: unknown tier {tier:?} (expected all, none, or a list of free_trial, paid, enterprise)"
    )]
    UnknownTier {
        /// The setting.
        name: &'static str,
        /// The tier as given.
        tier: String,
    },
    /// The Slack webhook or the public URL is unusable.
    #[cfg(feature = "slack")]
    #[error("{name}: {problem}")]
    Slack {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        problem: SlackError,
    },
    /// The enrichment provider settings are unusable.
    #[error("{name}: {problem}")]
    Enrichment {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        problem: ProviderSettingsError,
    },
    /// The site list is not a JSON array of [`SiteEntry`].
    #[error("{name} is not a JSON array of sites: {problem}")]
    SitesJson {
        /// The setting.
        name: &'static str,
        /// The parser's message.
        problem: String,
    },
    /// A site is unusable.
    #[error("{name}: site {site:?}: {problem}")]
    Site {
        /// The setting the site list came from.
        name: &'static str,
        /// The site's id.
        site: String,
        /// What is wrong.
        problem: SiteProblem,
    },
}

/// What is wrong with one configured site.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SiteProblem {
    /// The id is empty, too long or has other characters than letters, digits, `-_.`.
    #[error("the id must be 1 to 64 characters of letters, digits, '-', '_' or '.'")]
    InvalidId,
    /// Neither both keys nor one legacy key (or both).
    #[error("give publicKey and secretKey, or legacyKey")]
    Keys,
    /// A key is empty.
    #[error("a key is empty")]
    EmptyKey,
    /// The public key is the secret key.
    #[error("the public and the secret key must differ")]
    SameKeys,
    /// An alert rule or destination is refused.
    #[error("alert settings: {0}")]
    Alerts(String),
    /// Another site has the same id.
    #[error("the id is used twice")]
    DuplicateId,
    /// Another site has this key (in any role).
    #[error("a key is used twice (site {other:?} has it too)")]
    ReusedKey {
        /// The other site's id.
        other: String,
    },
    /// The secret (or legacy) key is too short to resist guessing.
    #[error(
        "the secret key has {chars} characters; it needs at least {MIN_SECRET_KEY_CHARS} (generate one with `openssl rand -hex 16`)"
    )]
    ShortKey {
        /// The key's length in characters.
        chars: usize,
    },
    /// The identity secret is too short to resist guessing.
    #[error(
        "the identity secret has {chars} characters; it needs at least {MIN_SECRET_KEY_CHARS} (generate one with `openssl rand -hex 32`)"
    )]
    ShortIdentitySecret {
        /// The secret's length in characters.
        chars: usize,
    },
    /// A dashboard origin is not `http(s)://host[:port]`.
    #[error("dashboard origin {origin:?} is not an origin (http(s)://host[:port])")]
    DashboardOrigin {
        /// The origin as given.
        origin: String,
    },
    /// A guest URL origin is not `https://host[:port]`.
    #[error("guest URL origin {origin:?} is not an https:// origin (https://host[:port])")]
    GuestUrlOrigin {
        /// The origin as given.
        origin: String,
    },
}

/// One setting's value and where it came from (a variable, a file field), for messages.
/// `Debug` shows only the name: values may be secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable or field.
    pub name: &'static str,
    /// The value as given (trimmed).
    pub value: String,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Setting({})", self.name)
    }
}

impl Setting {
    /// A value of `name`.
    pub fn new(name: &'static str, value: impl Into<String>) -> Self {
        Setting {
            name,
            value: value.into().trim().to_owned(),
        }
    }

    /// The value as a whole number.
    pub fn number<T: FromStr>(&self) -> Result<T, SettingsError> {
        self.value.parse().map_err(|_| SettingsError::NotANumber {
            name: self.name,
            value: self.value.clone(),
        })
    }

    /// The value as a whole number, at least 1.
    pub fn positive_number(&self) -> Result<usize, SettingsError> {
        match self.number()? {
            0 => Err(SettingsError::Zero { name: self.name }),
            n => Ok(n),
        }
    }

    /// The value as milliseconds (0 allowed).
    pub fn millis(&self) -> Result<Duration, SettingsError> {
        self.number().map(Duration::from_millis)
    }

    /// The value as milliseconds, at least 1.
    pub fn positive_millis(&self) -> Result<Duration, SettingsError> {
        match self.millis()? {
            Duration::ZERO => Err(SettingsError::Zero { name: self.name }),
            d => Ok(d),
        }
    }

    /// The value, checked to be an `http://` or `https://` URL with a host.
    pub fn http_url(self) -> Result<String, SettingsError> {
        let uri: Option<http::Uri> = self.value.parse().ok();
        match uri.as_ref().map(|u| (u.scheme_str(), u.host())) {
            Some((Some("http" | "https"), Some(h))) if !h.is_empty() => Ok(self.value),
            _ => Err(SettingsError::NotHttpUrl {
                name: self.name,
                value: self.value,
            }),
        }
    }

    /// The value, checked to be a `ws://` or `wss://` URL with a host (a query allowed).
    pub fn ws_url(self) -> Result<String, SettingsError> {
        let uri: Option<http::Uri> = self.value.parse().ok();
        let clean = !self.value.contains(['"', '<', '>', '\\', '#']);
        match uri.as_ref().map(|u| (u.scheme_str(), u.host())) {
            Some((Some("ws" | "wss"), Some(h))) if !h.is_empty() && clean => Ok(self.value),
            _ => Err(SettingsError::NotWsUrl {
                name: self.name,
                value: self.value,
            }),
        }
    }

    /// The value as a rule's tiers: `all`, `none`, or a comma-separated list of tiers.
    fn tiers(&self) -> Result<RuleScope, SettingsError> {
        match self.value.as_str() {
            "all" => return Ok(RuleScope::everyone()),
            "none" => {
                return Ok(RuleScope {
                    enabled: false,
                    tiers: Vec::new(),
                });
            }
            _ => {}
        }
        let mut tiers = Vec::new();
        for tier in self.value.split(',').map(str::trim) {
            tiers.push(match tier {
                "free_trial" => SubscriptionTier::FreeTrial,
                "paid" => SubscriptionTier::Paid,
                "enterprise" => SubscriptionTier::Enterprise,
                other => {
                    return Err(SettingsError::UnknownTier {
                        name: self.name,
                        tier: other.to_owned(),
                    });
                }
            });
        }
        Ok(RuleScope::only(&tiers))
    }
}

/// A lookup of [`Setting`]s over environment-style variables (`var` gives a variable's value,
/// `None` when unset): values are trimmed, blank ones count as unset.
pub fn env_lookup(
    var: impl Fn(&'static str) -> Option<String>,
) -> impl Fn(&'static str) -> Option<Setting> {
    move |name| {
        var(name)
            .map(|v| Setting::new(name, v))
            .filter(|s| !s.value.is_empty())
    }
}

/// A secret key as configured: the key, or its SHA-256 (to keep it out of the configuration).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretKey {
    /// The key itself.
    Plain(String),
    /// Its SHA-256.
    Sha256(KeyHash),
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretKey::Plain(_) => f.write_str("Plain([redacted])"),
            SecretKey::Sha256(h) => write!(f, "Sha256({h:?})"),
        }
    }
}

impl SecretKey {
    fn hash(&self) -> Result<KeyHash, SiteProblem> {
        match self {
            SecretKey::Plain(k) if k.is_empty() => Err(SiteProblem::EmptyKey),
            SecretKey::Plain(k) => Ok(KeyHash::of(k)),
            SecretKey::Sha256(h) => Ok(*h),
        }
    }
}

/// A site's keys as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteKeys {
    /// A public (tracking) key and a secret key.
    Pair {
        /// The public key (it is in the tracker snippet; not a secret).
        public: String,
        /// The secret key.
        secret: SecretKey,
    },
    /// One key for everything (legacy single-key mode).
    Legacy(SecretKey),
}

/// A site as configured, before the checks (a host's file format reads into this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// The id.
    pub id: String,
    /// Display name (default: the id).
    pub name: Option<String>,
    /// The keys.
    pub keys: SiteKeys,
    /// Honour Global Privacy Control (default true).
    pub honor_gpc: Option<bool>,
    /// Honour Do Not Track (`DNT: 1`) like Global Privacy Control (default false).
    pub honor_dnt: Option<bool>,
    /// Origins guest URLs may point at (see [`Site::guest_url_origins`]); empty: any https.
    pub guest_url_origins: Vec<String>,
    /// Origins whose pages may open the site's dashboard socket (see
    /// [`Site::dashboard_origins`]); empty: any.
    pub dashboard_origins: Vec<String>,
    /// The identity secret of verified in-app users (see [`Site::identity_secret`]), at least
    /// [`MIN_SECRET_KEY_CHARS`] characters.
    pub identity_secret: Option<String>,
    /// Days of visit history kept (see [`Site::history_retention_days`]; default 90).
    pub history_retention_days: Option<u32>,
    /// Requests a second per key of this site, bursts of 4× (see
    /// [`Site::rate_limit_per_key`]); `None` or 0: the host's per-key limit.
    pub rate_limit_per_key: Option<u32>,
    /// The site's own socket quotas (see [`Site::socket_quotas`]); unset ones: the host's.
    pub socket_quotas: crate::quota::QuotaOverrides,
    /// The site's alert rules (see [`crate::alerts`]).
    pub alert_rules: Vec<crate::alerts::AlertRule>,
    /// Where the site's alerts go.
    pub alert_destinations: crate::alerts::AlertDestinations,
}

impl SiteSpec {
    /// The site, keys hashed, after the checks of one site (id syntax, non-empty and distinct
    /// keys).
    pub(crate) fn into_site(self) -> Result<Site, SiteProblem> {
        let valid_id = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_id {
            return Err(SiteProblem::InvalidId);
        }
        let (public_key_hash, secret_key_hash, legacy_single_key) = match &self.keys {
            SiteKeys::Pair { public, .. } if public.is_empty() => {
                return Err(SiteProblem::EmptyKey);
            }
            SiteKeys::Pair { public, secret } => (Some(KeyHash::of(public)), secret.hash()?, false),
            SiteKeys::Legacy(key) => (None, key.hash()?, true),
        };
        if public_key_hash == Some(secret_key_hash) {
            return Err(SiteProblem::SameKeys);
        }
        let mut guest_url_origins = Vec::with_capacity(self.guest_url_origins.len());
        for origin in self.guest_url_origins {
            match crate::site::https_origin(&origin) {
                Some(o) if o == origin.trim_end_matches('/').to_ascii_lowercase() => {
                    guest_url_origins.push(o);
                }
                _ => return Err(SiteProblem::GuestUrlOrigin { origin }),
            }
        }
        let mut dashboard_origins = Vec::with_capacity(self.dashboard_origins.len());
        for origin in self.dashboard_origins {
            match crate::site::web_origin(&origin) {
                Some(o) if o == origin.trim_end_matches('/').to_ascii_lowercase() => {
                    dashboard_origins.push(o);
                }
                _ => return Err(SiteProblem::DashboardOrigin { origin }),
            }
        }
        let identity_secret = match self.identity_secret {
            Some(secret) if secret.chars().count() < MIN_SECRET_KEY_CHARS => {
                return Err(SiteProblem::ShortIdentitySecret {
                    chars: secret.chars().count(),
                });
            }
            secret => secret.map(crate::site::IdentitySecret::new),
        };
        let alert_rules =
            crate::alerts::check_rules(self.alert_rules, crate::alerts::RuleSource::Config)
                .map_err(|e| SiteProblem::Alerts(e.0))?;
        let alert_destinations = self
            .alert_destinations
            .checked()
            .map_err(|e| SiteProblem::Alerts(e.0))?;
        Ok(Site {
            alert_rules,
            alert_destinations,
            identity_secret,
            name: self.name.unwrap_or_else(|| self.id.clone()),
            id: SiteId(self.id),
            public_key_hash,
            secret_key_hash,
            legacy_single_key,
            honor_gpc: self.honor_gpc.unwrap_or(true),
            honor_dnt: self.honor_dnt.unwrap_or(false),
            guest_url_origins,
            dashboard_origins,
            history_retention_days: self.history_retention_days,
            rate_limit_per_key: self
                .rate_limit_per_key
                .and_then(crate::rate::RateLimit::per_second),
            socket_quotas: self.socket_quotas,
            credentials: Vec::new(),
            disabled: false,
            managed: false,
        })
    }
}

/// One site in `TIPPEN_SITES`, a JSON array; a site has a public and a secret key, or one
/// legacy key:
///
/// ```json
/// [{"id":"acme","name":"Acme","publicKey":"pk_acme","secretKey":"sk_acme_7f3a9c1e5b2d8f4a6c0e"},
///  {"id":"old","name":"Old","legacyKey":"legacy_4f1c9a7e2b6d8e0f3a5c","honorGpc":true}]
/// ```
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteEntry {
    /// The id.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Public (tracking) key.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Secret (dashboard, admin) key.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// One key for everything (the predecessor's clients).
    #[serde(default)]
    pub legacy_key: Option<String>,
    /// Honour Global Privacy Control for enrichment (default true).
    #[serde(default)]
    pub honor_gpc: Option<bool>,
    /// Honour Do Not Track (`DNT: 1`) for enrichment, as Global Privacy Control (default
    /// false).
    #[serde(default)]
    pub honor_dnt: Option<bool>,
    /// Origins (`https://host[:port]`) guest URLs may point at, besides the video
    /// provider's; absent or empty: any `https://` URL.
    #[serde(default)]
    pub guest_url_origins: Option<Vec<String>>,
    /// Origins (`http(s)://host[:port]`) whose pages may open the site's dashboard socket,
    /// besides the server's own; absent or empty: any.
    #[serde(default)]
    pub dashboard_origins: Option<Vec<String>>,
    /// The identity secret of verified in-app users (see [`Site::identity_secret`]); absent:
    /// user ids are taken as sent.
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// Days of visit history kept (default 90).
    #[serde(default)]
    pub history_retention_days: Option<u32>,
    /// Requests a second per key of this site, bursts of 4×, replacing the host's
    /// `TIPPEN_RATE_LIMIT_PER_KEY` for its keys; absent or 0: the host's.
    #[serde(default)]
    pub rate_limit_per_key: Option<u32>,
    /// Most open sockets of this site (dashboards and visitor channels), replacing the
    /// host's `TIPPEN_MAX_SOCKETS_PER_SITE`; absent or 0: the host's.
    #[serde(default)]
    pub max_sockets: Option<u32>,
    /// Most open sockets from one client address on upgrades to this site, replacing the
    /// host's `TIPPEN_MAX_SOCKETS_PER_ADDRESS`; absent or 0: the host's.
    #[serde(default)]
    pub max_sockets_per_address: Option<u32>,
    /// `GET_VISITORS` a minute per dashboard of this site, replacing the host's
    /// `TIPPEN_SNAPSHOTS_PER_MINUTE`; absent or 0: the host's.
    #[serde(default)]
    pub snapshots_per_minute: Option<u32>,
    /// Alert rules (see [`crate::alerts`]).
    #[serde(default)]
    pub alert_rules: Vec<crate::alerts::AlertRule>,
    /// Where alerts go: `{"slackWebhookUrl"?, "webhooks": [{"url","secret"}]}`.
    #[serde(default)]
    pub alert_destinations: crate::alerts::AlertDestinations,
}

impl SiteEntry {
    /// The site as configured: `legacyKey` alone, or `publicKey` and `secretKey`.
    pub fn into_spec(self) -> Result<SiteSpec, SiteProblem> {
        let keys = match (self.public_key, self.secret_key, self.legacy_key) {
            (Some(public), Some(secret), None) => SiteKeys::Pair {
                public,
                secret: SecretKey::Plain(secret),
            },
            (None, None, Some(key)) => SiteKeys::Legacy(SecretKey::Plain(key)),
            _ => return Err(SiteProblem::Keys),
        };
        Ok(SiteSpec {
            id: self.id,
            name: self.name,
            keys,
            honor_gpc: self.honor_gpc,
            honor_dnt: self.honor_dnt,
            guest_url_origins: self.guest_url_origins.unwrap_or_default(),
            dashboard_origins: self.dashboard_origins.unwrap_or_default(),
            identity_secret: self.identity_secret,
            history_retention_days: self.history_retention_days,
            rate_limit_per_key: self.rate_limit_per_key,
            socket_quotas: crate::quota::QuotaOverrides {
                max_sockets: self.max_sockets.filter(|n| *n > 0),
                max_sockets_per_address: self.max_sockets_per_address.filter(|n| *n > 0),
                snapshots_per_minute: self.snapshots_per_minute.filter(|n| *n > 0),
            },
            alert_rules: self.alert_rules,
            alert_destinations: self.alert_destinations,
        })
    }
}

/// The settings every host shares, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The core's configuration: presence and invite timings, limits and quotas, the opt-out
    /// retention, support rules; the rest default.
    pub config: Config,
    /// The sites, keys hashed.
    pub sites: Vec<Site>,
    /// The video-session provider's base URL (`tippen_core::video::CustomerConnect`).
    pub video_provider_url: Option<String>,
    /// Slack notifications of support alerts; `None`: dashboards only.
    #[cfg(feature = "slack")]
    pub slack: Option<SlackConfig>,
    /// The enrichment provider (built once to check it); `None`: fallback companies only.
    pub enrichment: Option<ProviderConfig>,
    /// Rate limits per client address and per key (`TIPPEN_RATE_LIMIT_PER_IP`,
    /// `TIPPEN_RATE_LIMIT_PER_KEY`), for the hosts that apply them themselves.
    pub rate_limits: crate::rate::RateLimits,
}

impl Settings {
    /// Reads environment-style variables (`var` gives a variable's value, `None` when unset),
    /// `TIPPEN_SITES` included (unset: no site).
    pub fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, SettingsError> {
        let lookup = env_lookup(var);
        let sites = match lookup(names::SITES) {
            None => Vec::new(),
            Some(json) => parse_sites(&json)?,
        };
        Self::from_lookup(lookup, names::SITES, sites)
    }

    /// Reads the variables through `lookup` (which may take values from a file, named by their
    /// field), and checks `sites` (read from `sites_from`).
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<Setting>,
        sites_from: &'static str,
        sites: Vec<SiteSpec>,
    ) -> Result<Self, SettingsError> {
        let sites = check_sites(sites_from, sites)?;
        let mut config = Config::default();
        let p = &mut config.presence;
        for (name, into) in [
            (names::HEARTBEAT_MS, &mut p.heartbeat_interval),
            (names::VISIBLE_GRACE_MS, &mut p.visible_grace),
            (names::HIDDEN_GRACE_MS, &mut p.hidden_grace),
            (names::INVITE_TTL_MS, &mut config.invites.ttl),
            (
                names::OPT_OUT_RETENTION_MS,
                &mut config.privacy.opt_out_retention,
            ),
        ] {
            if let Some(s) = lookup(name) {
                *into = s.positive_millis()?;
            }
        }
        let l = &mut config.limits;
        for (name, into) in [
            (names::MAX_BODY_BYTES, &mut l.max_body_bytes),
            (names::MAX_ID_BYTES, &mut l.max_id_bytes),
            (names::MAX_FRAME_BYTES, &mut l.max_frame_bytes),
            (
                names::MAX_TABS_PER_VISITOR,
                &mut config.presence.max_tabs_per_visitor,
            ),
            (names::MAX_DEPARTED_TABS, &mut l.max_departed_tabs),
            (names::MAX_VISITORS_PER_SITE, &mut l.max_visitors_per_site),
            (names::MAX_USERS_PER_SITE, &mut l.max_users_per_site),
            (names::MAX_SOCKETS_PER_SITE, &mut l.max_sockets_per_site),
            (
                names::MAX_SOCKETS_PER_ADDRESS,
                &mut l.max_sockets_per_address,
            ),
        ] {
            if let Some(s) = lookup(name) {
                *into = s.positive_number()?;
            }
        }
        if let Some(s) = lookup(names::LEAVE_LINGER_MS) {
            config.presence.leave_linger = s.millis()?;
        }
        if let Some(s) = lookup(names::SNAPSHOTS_PER_MINUTE) {
            config.limits.snapshots_per_minute =
                u32::try_from(s.positive_number()?).unwrap_or(u32::MAX);
        }
        if let Some(s) = lookup(names::SNAPSHOT_REUSE_MS) {
            config.limits.snapshot_reuse = s.millis()?;
        }
        if let Some(s) = lookup(names::WS_TICKET_TTL_MS) {
            config.limits.ws_ticket_ttl = s.positive_millis()?;
        }
        if let Some(s) = lookup(names::ALERT_PRIVATE_DESTINATIONS) {
            config.alerts.allow_private_destinations = s.number::<u8>()? != 0;
        }
        if let Some(s) = lookup(names::OPERATOR_TOKEN) {
            let chars = s.value.chars().count();
            if chars < MIN_SECRET_KEY_CHARS {
                return Err(SettingsError::ShortOperatorToken {
                    name: s.name,
                    chars,
                });
            }
            config.operator_token = Some(KeyHash::of(&s.value));
        }
        if let Some(s) = lookup(names::AUDIT_RETENTION_DAYS) {
            let days = s.positive_number()?;
            config.audit.retention =
                std::time::Duration::from_secs((days as u64).saturating_mul(86_400));
        }
        config.support = support(&lookup)?;
        config.sockets.dashboard = lookup(names::DASHBOARD_WS_URL)
            .map(Setting::ws_url)
            .transpose()?;
        config.sockets.visitor = lookup(names::VISITOR_WS_URL)
            .map(Setting::ws_url)
            .transpose()?;
        let video_provider_url = lookup(names::VIDEO_PROVIDER_URL)
            .map(Setting::http_url)
            .transpose()?;
        #[cfg(feature = "slack")]
        let slack = slack(&lookup)?;
        let enrichment = enrichment(&lookup)?;
        // After the Slack settings, whose message names a bad public URL as Slack's.
        config.alerts.public_url = lookup(names::PUBLIC_URL)
            .filter(|s| !s.value.trim().is_empty())
            .map(Setting::http_url)
            .transpose()?;
        let mut rate_limits = crate::rate::RateLimits::default();
        for (name, into) in [
            (names::RATE_LIMIT_PER_IP, &mut rate_limits.per_client),
            (names::RATE_LIMIT_PER_KEY, &mut rate_limits.per_key),
        ] {
            if let Some(s) = lookup(name) {
                *into = crate::rate::RateLimit::per_second(s.number()?);
            }
        }
        Ok(Settings {
            rate_limits,
            config,
            sites,
            video_provider_url,
            #[cfg(feature = "slack")]
            slack,
            enrichment,
        })
    }

    /// The configured site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id.as_str() == id)
    }
}

/// Parses a JSON array of [`SiteEntry`] (the form of `TIPPEN_SITES`), checking each entry's
/// fields; the checks across sites come with [`Settings::from_lookup`].
pub fn parse_sites(json: &Setting) -> Result<Vec<SiteSpec>, SettingsError> {
    let entries: Vec<SiteEntry> =
        serde_json::from_str(&json.value).map_err(|e| SettingsError::SitesJson {
            name: json.name,
            problem: e.to_string(),
        })?;
    entries
        .into_iter()
        .map(|entry| {
            let site = entry.id.clone();
            entry.into_spec().map_err(|problem| SettingsError::Site {
                name: json.name,
                site,
                problem,
            })
        })
        .collect()
}

/// Checks each site and the list: ids used once, each key (hash) in one site and one role.
fn check_sites(name: &'static str, specs: Vec<SiteSpec>) -> Result<Vec<Site>, SettingsError> {
    let mut sites: Vec<Site> = Vec::with_capacity(specs.len());
    let short: Vec<(String, usize)> = specs
        .iter()
        .filter_map(|spec| {
            let secret = match &spec.keys {
                SiteKeys::Pair { secret, .. } | SiteKeys::Legacy(secret) => secret,
            };
            match secret {
                SecretKey::Plain(k)
                    if !k.is_empty() && k.chars().count() < MIN_SECRET_KEY_CHARS =>
                {
                    Some((spec.id.clone(), k.chars().count()))
                }
                _ => None,
            }
        })
        .collect();
    for spec in specs {
        let id = spec.id.clone();
        let problem = |problem| SettingsError::Site {
            name,
            site: id.clone(),
            problem,
        };
        let site = spec.into_site().map_err(problem)?;
        for other in &sites {
            if other.id == site.id {
                return Err(problem(SiteProblem::DuplicateId));
            }
            if site
                .key_hashes()
                .any(|h| other.key_hashes().any(|o| o == h))
            {
                return Err(problem(SiteProblem::ReusedKey {
                    other: other.id.0.clone(),
                }));
            }
        }
        sites.push(site);
    }
    // Last, so that the other problems of a list are named first.
    if let Some((spec_id, chars)) = short.into_iter().next() {
        return Err(SettingsError::Site {
            name,
            site: spec_id,
            problem: SiteProblem::ShortKey { chars },
        });
    }
    Ok(sites)
}

/// The support rules, from the `TIPPEN_SUPPORT_*` settings over the defaults.
fn support(
    lookup: &impl Fn(&'static str) -> Option<Setting>,
) -> Result<SupportConfig, SettingsError> {
    let mut c = SupportConfig::default();
    for (name, into) in [
        (names::SUPPORT_STUCK_AFTER_MS, &mut c.stuck_after),
        (names::SUPPORT_PRESENCE_WINDOW_MS, &mut c.presence_window),
        (
            names::SUPPORT_LOW_ACTIVITY_WINDOW_MS,
            &mut c.low_activity_window,
        ),
        (names::SUPPORT_ERROR_WINDOW_MS, &mut c.error_window),
        (names::SUPPORT_INACTIVITY_AFTER_MS, &mut c.inactivity_after),
        (names::SUPPORT_SLACK_COOLDOWN_MS, &mut c.slack_cooldown),
        (names::SUPPORT_RETENTION_MS, &mut c.retention),
    ] {
        if let Some(s) = lookup(name) {
            *into = s.positive_millis()?;
        }
    }
    for (name, into) in [
        (
            names::SUPPORT_LOW_ACTIVITY_MIN_EVENTS,
            &mut c.low_activity_min_events,
        ),
        (names::SUPPORT_ERROR_BURST_MAX, &mut c.error_burst_max),
        (names::SUPPORT_MAX_RAW_EVENTS, &mut c.max_raw_events),
    ] {
        if let Some(s) = lookup(name) {
            *into = s.number()?;
        }
    }
    for (name, into) in [
        (names::SUPPORT_STUCK_TIERS, &mut c.stuck),
        (names::SUPPORT_LOW_ACTIVITY_TIERS, &mut c.low_activity),
        (names::SUPPORT_ERROR_BURST_TIERS, &mut c.error_burst),
        (names::SUPPORT_INACTIVITY_TIERS, &mut c.inactivity),
    ] {
        if let Some(s) = lookup(name) {
            *into = s.tiers()?;
        }
    }
    Ok(c)
}

/// The enrichment provider, built once to check it; the error names the setting at fault.
fn enrichment(
    lookup: &impl Fn(&'static str) -> Option<Setting>,
) -> Result<Option<ProviderConfig>, SettingsError> {
    let provider = lookup(names::ENRICHMENT_PROVIDER);
    let api_key = lookup(names::ENRICHMENT_API_KEY);
    let base_url = lookup(names::ENRICHMENT_BASE_URL);
    let name_of = |s: &Option<Setting>, default| s.as_ref().map_or(default, |s| s.name);
    let value = |s: &Option<Setting>| s.as_ref().map(|s| s.value.clone());
    ProviderConfig::from_settings(value(&provider), value(&api_key), value(&base_url)).map_err(
        |problem| SettingsError::Enrichment {
            name: match &problem {
                ProviderSettingsError::MissingApiKey { .. }
                | ProviderSettingsError::Invalid(
                    ProviderConfigError::EmptyApiKey | ProviderConfigError::InvalidApiKey,
                ) => name_of(&api_key, names::ENRICHMENT_API_KEY),
                ProviderSettingsError::Invalid(_) => name_of(&base_url, names::ENRICHMENT_BASE_URL),
                _ => name_of(&provider, names::ENRICHMENT_PROVIDER),
            },
            problem,
        },
    )
}

/// Stores every configured site the store does not hold as it is (a new site, changed keys or
/// policies); returns how many were written. Sites the store has but `sites` lacks are kept.
/// A stored site keeps the alert rules created through the API (unless the configuration
/// uses their ids), when the configuration names none, its alert destinations, and its member
/// tokens. A site the operator API created or changed ([`Site::managed`]) is left as stored.
pub async fn register_sites(tippen: &Tippen, sites: &[Site]) -> Result<usize, ServiceError> {
    let stored = tippen.store().sites().await?;
    let mut written = 0;
    for site in sites {
        let mut site = site.clone();
        if let Some(old) = stored.iter().find(|s| s.id == site.id) {
            if old.managed {
                // The operator API changed it: the store's record wins.
                continue;
            }
            site.alert_rules = crate::alerts::merge_configured(&site.alert_rules, &old.alert_rules);
            if site.alert_destinations.is_empty() {
                site.alert_destinations = old.alert_destinations.clone();
            }
            // Member tokens issued at runtime stay.
            site.credentials = old.credentials.clone();
        }
        if !stored.contains(&site) {
            tippen.put_site(&site).await?;
            written += 1;
        }
    }
    Ok(written)
}

/// The Slack settings (`TIPPEN_SLACK_WEBHOOK_URL`, `TIPPEN_PUBLIC_URL`), checked.
#[cfg(feature = "slack")]
fn slack(
    lookup: &impl Fn(&'static str) -> Option<Setting>,
) -> Result<Option<SlackConfig>, SettingsError> {
    let webhook = lookup(names::SLACK_WEBHOOK_URL);
    let public_url = lookup(names::PUBLIC_URL);
    SlackConfig::from_settings(
        webhook.as_ref().map(|s| s.value.as_str()),
        public_url.as_ref().map(|s| s.value.as_str()),
    )
    .map_err(|problem| SettingsError::Slack {
        name: match (&problem, &webhook, &public_url) {
            (SlackError::InvalidPublicUrl(_), _, Some(s)) => s.name,
            (_, Some(s), _) => s.name,
            _ => names::SLACK_WEBHOOK_URL,
        },
        problem,
    })
}

#[cfg(test)]
mod tests;
