//! The configuration file (TOML) and the environment. The format is documented at the top of
//! `main.rs` and in `tippen.example.toml`.
//!
//! What every host reads and checks the same way (sites and keys, timings, the video provider,
//! Slack, enrichment, support rules) goes through [`tippen_core::settings`]: the file's values
//! enter under the environment's names (named by their field in messages) and the environment
//! overrides them. Only what is this server's own is checked here: the shape of a `[[sites]]`
//! entry, trusted proxies, the enrichment rate limit and timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tippen_axum::{EnrichmentConfig, InvalidProxy, TrustedProxies};
use tippen_core::KeyHash;
use tippen_core::enrichment::{ProviderConfig, ProviderConfigError, RateLimit};
use tippen_core::invite::InviteConfig;
use tippen_core::settings::{
    self, SecretKey, Setting, SettingsError, SiteKeys, SiteProblem, SiteSpec, names,
};
use tippen_core::slack::SlackConfig;
use tippen_core::support::SupportConfig;
use tippen_core::{Limits, PresenceConfig, PrivacyConfig, Site};

/// The id of the demo site.
pub const DEMO_SITE_ID: &str = "demo";
/// The demo site's key: public knowledge (it is in the predecessor's docs).
pub const DEMO_KEY: &str = "demo_api_key";

/// A configuration problem; the message names the file, the site and the field.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        source: Box<toml::de::Error>,
    },
    /// A `[[sites]]` entry has an inconsistent set of fields.
    #[error("site {site:?}: {problem}")]
    Site {
        /// The site's id.
        site: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A configured site takes the demo site's id.
    #[error(
        "site {DEMO_SITE_ID:?}: the id `demo` is the demo site's; rename the site or run with --no-demo"
    )]
    DemoSiteId,
    /// A setting every host shares is unusable (see [`tippen_core::settings`]).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A trusted proxy entry is not an address or network.
    #[error(transparent)]
    Proxy(#[from] InvalidProxy),
    /// The `[enrichment]` section's rate limit is 0.
    #[error("enrichment: rate_limit_per_minute must be at least 1")]
    RateLimit,
    /// The provider configuration is unusable (empty key, bad base URL).
    #[error("enrichment: {0}")]
    Provider(#[from] ProviderConfigError),
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Proxies (IP addresses or CIDR networks) whose forwarding headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Presence timings.
    #[serde(default)]
    pub presence: PresenceSection,
    /// The sites.
    #[serde(default)]
    pub sites: Vec<SiteEntry>,
    /// IP → company enrichment.
    #[serde(default)]
    pub enrichment: EnrichmentSection,
    /// Video-call invites.
    #[serde(default)]
    pub invites: InvitesSection,
    /// The server's public base URL (links back to the dashboard in Slack messages).
    pub public_url: Option<String>,
    /// Support triggers and Slack.
    #[serde(default)]
    pub support: SupportSection,
    /// Request limits and quotas.
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[limits]`: request limits and quotas (`tippen_core::Limits`) and the opt-out retention;
/// absent keys keep the core's defaults. Each is also `TIPPEN_<KEY in capitals>`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body in bytes (default 65536; 413 beyond).
    pub max_body_bytes: Option<usize>,
    /// Longest visitor, tab, invite or user id in bytes (default 128; 400 beyond).
    pub max_id_bytes: Option<usize>,
    /// Largest WebSocket text frame in bytes (default 4096; an `ERROR` reply beyond).
    pub max_frame_bytes: Option<usize>,
    /// Tabs kept per visitor (default 20; the least recently seen is dropped beyond).
    pub max_tabs_per_visitor: Option<usize>,
    /// Departed tabs remembered per visitor (default 20; the oldest is forgotten beyond).
    pub max_departed_tabs: Option<usize>,
    /// Visitor records per site (default 10000; a new visitor is 429 beyond).
    pub max_visitors_per_site: Option<usize>,
    /// Support users per site (default 10000; a new user is 429 beyond).
    pub max_users_per_site: Option<usize>,
    /// Open sockets (dashboards and visitor channels) per site (default 5000; an upgrade is
    /// 429 beyond).
    pub max_sockets_per_site: Option<usize>,
    /// Open sockets per client address, across sites (default 50; an upgrade is 429 beyond).
    pub max_sockets_per_address: Option<usize>,
    /// `GET_VISITORS` a minute per dashboard socket (default 30; an `ERROR` reply beyond).
    pub snapshots_per_minute: Option<u32>,
    /// How long a deleted visitor's id stays opted out, in milliseconds (default 30 days).
    pub opt_out_retention_ms: Option<u64>,
}

/// `[invites]`: how long an invite waits for an answer, and the video provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitesSection {
    /// An unanswered invite expires after this many milliseconds (default 60000).
    pub ttl_ms: Option<u64>,
    /// Base URL of the video provider's API (the predecessor's `…/create-session` shape);
    /// enables `POST /api/video-call`. Absent: admins invite with their own guest URL.
    pub video_provider_url: Option<String>,
}

/// `[support]`: the support rules' thresholds (milliseconds, counts), the tiers each rule
/// applies to, and Slack; absent ones keep the core's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportSection {
    /// Stuck: the same page for more than this (default 300000).
    pub stuck_after_ms: Option<u64>,
    /// A user is present while their last event is at most this old (default 120000).
    pub presence_window_ms: Option<u64>,
    /// Low activity: the window (default 600000).
    pub low_activity_window_ms: Option<u64>,
    /// Low activity: fewer interactions than this in the window (default 3).
    pub low_activity_min_events: Option<usize>,
    /// Error burst: the window (default 300000).
    pub error_window_ms: Option<u64>,
    /// Error burst: more errors than this in the window (default 3).
    pub error_burst_max: Option<usize>,
    /// Inactivity: no events for this long (default 900000).
    pub inactivity_after_ms: Option<u64>,
    /// Tiers each rule applies to: `["all"]`, a list of `free_trial`, `paid`,
    /// `enterprise`, or `[]` to turn the rule off.
    pub stuck_tiers: Option<Vec<String>>,
    /// See `stuck_tiers` (default `["free_trial"]`).
    pub low_activity_tiers: Option<Vec<String>>,
    /// See `stuck_tiers` (default `["all"]`).
    pub error_burst_tiers: Option<Vec<String>>,
    /// See `stuck_tiers` (default `["free_trial"]`).
    pub inactivity_tiers: Option<Vec<String>>,
    /// At most one Slack message per user per this long (default 600000).
    pub slack_cooldown_ms: Option<u64>,
    /// A user without events for this long is forgotten; raw events are kept no longer
    /// (default 86400000).
    pub retention_ms: Option<u64>,
    /// Raw events kept per user (default 100).
    pub max_raw_events: Option<usize>,
    /// The Slack incoming webhook; better from `TIPPEN_SLACK_WEBHOOK_URL`.
    pub slack_webhook_url: Option<String>,
}

/// `[enrichment]`: the provider; absent: visitors get fallbacks only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentSection {
    /// `ipinfo`, `ipinfo_lite`, `enrich_so` or `people_data_labs`.
    pub provider: Option<String>,
    /// The provider's API key (token).
    pub api_key: Option<String>,
    /// Another base URL (a proxy, a test double); default: the provider's production URL.
    pub base_url: Option<String>,
    /// Most provider requests per minute (default 50); excess lookups wait in a queue.
    pub rate_limit_per_minute: Option<u32>,
    /// A provider request taking longer fails and is retried (milliseconds, default 5000).
    pub request_timeout_ms: Option<u64>,
}

/// `[presence]`: timings in milliseconds; absent ones keep the core's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSection {
    /// Heartbeat interval told to trackers (default 30000).
    pub heartbeat_ms: Option<u64>,
    /// How long a visible tab stays live after its last event (default 60000).
    pub visible_grace_ms: Option<u64>,
    /// How long a hidden tab stays live after its last event (default 300000).
    pub hidden_grace_ms: Option<u64>,
    /// How long a tab that sent its exit beacon is held, so a reload keeps the visitor
    /// (default 2000; 0 drops it at once).
    pub leave_linger_ms: Option<u64>,
}

/// `[[sites]]`: one site.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// Stable id (not secret; appears in logs).
    pub id: String,
    /// Display name (defaults to the id).
    pub name: Option<String>,
    /// The public site key (the tracker snippet's key). Not allowed in legacy mode.
    pub public_key: Option<String>,
    /// The secret key (dashboards, invites, visitor list); in legacy mode, the one key.
    pub secret_key: Option<String>,
    /// Instead of `secret_key`: its SHA-256 as 64 hex digits, to keep the key out of the file.
    pub secret_key_sha256: Option<String>,
    /// One key for everything, as the predecessor's clients expect (default false).
    #[serde(default)]
    pub legacy_single_key: bool,
    /// Honour `Sec-GPC: 1` (default true).
    pub honor_gpc: Option<bool>,
    /// Honour `DNT: 1` (Do Not Track) as GPC: no company lookup (default false).
    pub honor_dnt: Option<bool>,
    /// Origins (`https://host[:port]`) invites' guest URLs may point at besides the video
    /// provider's; absent: any `https://` URL.
    #[serde(default)]
    pub guest_url_origins: Vec<String>,
    /// Origins (`http(s)://host[:port]`) whose pages may open this site's dashboard socket,
    /// besides the server's own; absent: any.
    #[serde(default)]
    pub dashboard_origins: Vec<String>,
    /// Verified in-app identities: the secret under which your backend signs each logged-in
    /// user's id (`userHash`, hex HMAC-SHA256); absent: user ids are taken as sent.
    pub identity_secret: Option<String>,
    /// Days of visit history kept (default 90); older visits are purged hourly.
    pub history_retention_days: Option<u32>,
    /// Requests a second per key of this site, bursts of 4× (replaces `--rate-limit-per-key`
    /// for its keys); absent or 0: the host's.
    #[serde(default)]
    pub rate_limit_per_key: Option<u32>,
    /// Most open sockets of this site (replaces `[limits] max_sockets_per_site`); absent or
    /// 0: the server's.
    #[serde(default)]
    pub max_sockets: Option<u32>,
    /// Most open sockets from one address on upgrades to this site (replaces `[limits]
    /// max_sockets_per_address`); absent or 0: the server's.
    #[serde(default)]
    pub max_sockets_per_address: Option<u32>,
    /// `GET_VISITORS` a minute per dashboard of this site (replaces `[limits]
    /// snapshots_per_minute`); absent or 0: the server's.
    #[serde(default)]
    pub snapshots_per_minute: Option<u32>,
    /// Alert rules, as in `TIPPEN_SITES`' `alertRules` (their keys are camelCase:
    /// `[[sites.alert_rules]] id = "pricing" when = { domains = ["acme.com"] }`).
    #[serde(default)]
    pub alert_rules: Vec<tippen_core::alerts::AlertRule>,
    /// Where alerts go, as `TIPPEN_SITES`' `alertDestinations`
    /// (`[sites.alert_destinations] slackWebhookUrl = "…"`).
    #[serde(default)]
    pub alert_destinations: tippen_core::alerts::AlertDestinations,
}

/// Everything the server takes from the file and the environment.
#[derive(Debug)]
pub struct Settings {
    /// Presence timings.
    pub presence: PresenceConfig,
    /// Trusted proxies.
    pub trusted_proxies: TrustedProxies,
    /// Sites from the file (keys already hashed).
    pub sites: Vec<Site>,
    /// The enrichment provider; `None`: fallbacks only.
    pub enrichment: Option<EnrichmentConfig>,
    /// Support rules.
    pub support: SupportConfig,
    /// Slack notifications; `None`: alerts go to dashboards only.
    pub slack: Option<SlackConfig>,
    /// Invite timings.
    pub invites: InviteConfig,
    /// Base URL of the video provider, when one is configured.
    pub video_provider_url: Option<String>,
    /// Request limits and quotas.
    pub limits: Limits,
    /// Privacy (the opt-out retention).
    pub privacy: PrivacyConfig,
    /// Alert delivery (public URL, private destinations).
    pub alerts: tippen_core::alerts::AlertsConfig,
    /// The audit log's retention.
    pub audit: tippen_core::audit::AuditConfig,
    /// The operator token's hash (`TIPPEN_OPERATOR_TOKEN`).
    pub operator_token: Option<KeyHash>,
}

impl FileConfig {
    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Checks the file with the environment `env` over it (the shared checks, then this
    /// server's), hashes the keys, and adds the demo site when `demo`.
    pub fn into_settings(
        mut self,
        demo: bool,
        env: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let env = settings::env_lookup(env);
        let mut sites = std::mem::take(&mut self.sites)
            .into_iter()
            .map(SiteEntry::into_spec)
            .collect::<Result<Vec<_>, _>>()?;
        // TIPPEN_SITES (the JSON array every host reads) adds to the file's [[sites]].
        if let Some(json) = env(names::SITES) {
            sites.extend(settings::parse_sites(&json)?);
        }
        if demo {
            sites.push(SiteSpec {
                id: DEMO_SITE_ID.to_owned(),
                name: Some("Demo".to_owned()),
                // Public knowledge, and short: given as its hash, which the key-length rule
                // does not measure (the demo site is refused off loopback instead).
                keys: SiteKeys::Legacy(SecretKey::Sha256(KeyHash::of(DEMO_KEY))),
                honor_gpc: None,
                honor_dnt: None,
                guest_url_origins: Vec::new(),
                dashboard_origins: Vec::new(),
                identity_secret: None,
                history_retention_days: None,
                rate_limit_per_key: None,
                socket_quotas: Default::default(),
                alert_rules: Vec::new(),
                alert_destinations: Default::default(),
            });
        }
        let lookup = |name| env(name).or_else(|| self.setting(name));
        let shared =
            settings::Settings::from_lookup(lookup, "sites", sites).map_err(|e| match e {
                SettingsError::Site {
                    site,
                    problem: SiteProblem::DuplicateId,
                    ..
                } if demo && site == DEMO_SITE_ID => ConfigError::DemoSiteId,
                e => e.into(),
            })?;
        let enrichment = match &shared.enrichment {
            Some(provider) => Some(self.enrichment.axum_config(provider)?),
            None => None,
        };
        Ok(Settings {
            presence: shared.config.presence,
            trusted_proxies: TrustedProxies::parse(&self.trusted_proxies)?,
            sites: shared.sites,
            enrichment,
            support: shared.config.support,
            slack: shared.slack,
            invites: shared.config.invites,
            video_provider_url: shared.video_provider_url,
            limits: shared.config.limits,
            privacy: shared.config.privacy,
            alerts: shared.config.alerts,
            audit: shared.config.audit,
            operator_token: shared.config.operator_token,
        })
    }

    /// The file's value of the shared setting `name`, named by its field.
    fn setting(&self, name: &'static str) -> Option<Setting> {
        let (p, i, s, e, l) = (
            &self.presence,
            &self.invites,
            &self.support,
            &self.enrichment,
            &self.limits,
        );
        match name {
            names::HEARTBEAT_MS => number("presence.heartbeat_ms", p.heartbeat_ms),
            names::VISIBLE_GRACE_MS => number("presence.visible_grace_ms", p.visible_grace_ms),
            names::HIDDEN_GRACE_MS => number("presence.hidden_grace_ms", p.hidden_grace_ms),
            names::LEAVE_LINGER_MS => number("presence.leave_linger_ms", p.leave_linger_ms),
            names::INVITE_TTL_MS => number("invites.ttl_ms", i.ttl_ms),
            names::VIDEO_PROVIDER_URL => text("invites.video_provider_url", &i.video_provider_url),
            names::PUBLIC_URL => text("public_url", &self.public_url),
            names::SLACK_WEBHOOK_URL => text("support.slack_webhook_url", &s.slack_webhook_url),
            names::ENRICHMENT_PROVIDER => text("enrichment.provider", &e.provider),
            names::ENRICHMENT_API_KEY => text("enrichment.api_key", &e.api_key),
            names::ENRICHMENT_BASE_URL => text("enrichment.base_url", &e.base_url),
            names::SUPPORT_STUCK_AFTER_MS => number("support.stuck_after_ms", s.stuck_after_ms),
            names::SUPPORT_PRESENCE_WINDOW_MS => {
                number("support.presence_window_ms", s.presence_window_ms)
            }
            names::SUPPORT_LOW_ACTIVITY_WINDOW_MS => {
                number("support.low_activity_window_ms", s.low_activity_window_ms)
            }
            names::SUPPORT_LOW_ACTIVITY_MIN_EVENTS => {
                number("support.low_activity_min_events", s.low_activity_min_events)
            }
            names::SUPPORT_ERROR_WINDOW_MS => number("support.error_window_ms", s.error_window_ms),
            names::SUPPORT_ERROR_BURST_MAX => number("support.error_burst_max", s.error_burst_max),
            names::SUPPORT_INACTIVITY_AFTER_MS => {
                number("support.inactivity_after_ms", s.inactivity_after_ms)
            }
            names::SUPPORT_STUCK_TIERS => tiers("support.stuck_tiers", &s.stuck_tiers),
            names::SUPPORT_LOW_ACTIVITY_TIERS => {
                tiers("support.low_activity_tiers", &s.low_activity_tiers)
            }
            names::SUPPORT_ERROR_BURST_TIERS => {
                tiers("support.error_burst_tiers", &s.error_burst_tiers)
            }
            names::SUPPORT_INACTIVITY_TIERS => {
                tiers("support.inactivity_tiers", &s.inactivity_tiers)
            }
            names::SUPPORT_SLACK_COOLDOWN_MS => {
                number("support.slack_cooldown_ms", s.slack_cooldown_ms)
            }
            names::SUPPORT_RETENTION_MS => number("support.retention_ms", s.retention_ms),
            names::SUPPORT_MAX_RAW_EVENTS => number("support.max_raw_events", s.max_raw_events),
            names::MAX_BODY_BYTES => number("limits.max_body_bytes", l.max_body_bytes),
            names::MAX_ID_BYTES => number("limits.max_id_bytes", l.max_id_bytes),
            names::MAX_FRAME_BYTES => number("limits.max_frame_bytes", l.max_frame_bytes),
            names::MAX_TABS_PER_VISITOR => {
                number("limits.max_tabs_per_visitor", l.max_tabs_per_visitor)
            }
            names::MAX_DEPARTED_TABS => number("limits.max_departed_tabs", l.max_departed_tabs),
            names::MAX_VISITORS_PER_SITE => {
                number("limits.max_visitors_per_site", l.max_visitors_per_site)
            }
            names::MAX_USERS_PER_SITE => number("limits.max_users_per_site", l.max_users_per_site),
            names::MAX_SOCKETS_PER_SITE => {
                number("limits.max_sockets_per_site", l.max_sockets_per_site)
            }
            names::MAX_SOCKETS_PER_ADDRESS => {
                number("limits.max_sockets_per_address", l.max_sockets_per_address)
            }
            names::SNAPSHOTS_PER_MINUTE => {
                number("limits.snapshots_per_minute", l.snapshots_per_minute)
            }
            names::OPT_OUT_RETENTION_MS => {
                number("limits.opt_out_retention_ms", l.opt_out_retention_ms)
            }
            _ => None,
        }
    }
}

fn number(field: &'static str, value: Option<impl ToString>) -> Option<Setting> {
    value.map(|v| Setting::new(field, v.to_string()))
}

fn text(field: &'static str, value: &Option<String>) -> Option<Setting> {
    value.as_ref().map(|v| Setting::new(field, v.as_str()))
}

/// A TOML list of tiers in the shared form: `[]` is `none`, the rest comma-separated.
fn tiers(field: &'static str, value: &Option<Vec<String>>) -> Option<Setting> {
    value.as_ref().map(|t| match t.as_slice() {
        [] => Setting::new(field, "none"),
        t => Setting::new(field, t.join(",")),
    })
}

impl EnrichmentSection {
    /// The axum host's enrichment: the checked `provider`, with this section's rate limit and
    /// request timeout.
    fn axum_config(&self, provider: &ProviderConfig) -> Result<EnrichmentConfig, ConfigError> {
        let mut config = EnrichmentConfig::from_provider_config(provider)?;
        match self.rate_limit_per_minute {
            Some(0) => return Err(ConfigError::RateLimit),
            Some(n) => config.planner.rate_limit = RateLimit::new(n, Duration::from_secs(60)),
            None => {}
        }
        if let Some(ms) = self.request_timeout_ms.filter(|ms| *ms > 0) {
            config.request_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }
}

impl SiteEntry {
    /// The site as the shared checks take it, after the checks of this entry's fields.
    fn into_spec(self) -> Result<SiteSpec, ConfigError> {
        let problem = |problem| ConfigError::Site {
            site: self.id.clone(),
            problem,
        };
        let secret = match (&self.secret_key, &self.secret_key_sha256) {
            (Some(k), None) => SecretKey::Plain(k.clone()),
            (None, Some(h)) => SecretKey::Sha256(
                KeyHash::from_hex(h.trim())
                    .ok_or_else(|| problem("secret_key_sha256 must be 64 hex digits"))?,
            ),
            (Some(_), Some(_)) => {
                return Err(problem("give secret_key or secret_key_sha256, not both"));
            }
            (None, None) => return Err(problem("secret_key (or secret_key_sha256) is required")),
        };
        let keys = match (&self.public_key, self.legacy_single_key) {
            (Some(_), true) => {
                return Err(problem(
                    "a legacy single-key site has no public_key; its secret_key is its one key",
                ));
            }
            (None, true) => SiteKeys::Legacy(secret),
            (Some(public), false) => SiteKeys::Pair {
                public: public.clone(),
                secret,
            },
            (None, false) => {
                return Err(problem(
                    "public_key is required (or set legacy_single_key = true)",
                ));
            }
        };
        Ok(SiteSpec {
            id: self.id,
            name: self.name,
            keys,
            honor_gpc: self.honor_gpc,
            honor_dnt: self.honor_dnt,
            guest_url_origins: self.guest_url_origins,
            dashboard_origins: self.dashboard_origins,
            identity_secret: self.identity_secret,
            history_retention_days: self.history_retention_days,
            rate_limit_per_key: self.rate_limit_per_key,
            socket_quotas: tippen_core::quota::QuotaOverrides {
                max_sockets: self.max_sockets.filter(|n| *n > 0),
                max_sockets_per_address: self.max_sockets_per_address.filter(|n| *n > 0),
                snapshots_per_minute: self.snapshots_per_minute.filter(|n| *n > 0),
            },
            alert_rules: self.alert_rules,
            alert_destinations: self.alert_destinations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tippen_core::enrichment::ProviderKind;
    use tippen_core::protocol::SubscriptionTier;

    fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn no_env(_: &'static str) -> Option<String> {
        None
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../tippen.example.toml");
        let settings = parse(text)
            .expect("parses")
            .into_settings(true, no_env)
            .expect("valid");
        assert!(!settings.sites.is_empty());
        assert!(!settings.trusted_proxies.is_empty());
    }

    #[test]
    fn socket_quotas_come_from_limits_and_a_sites_own() {
        let text = r#"
            [limits]
            max_sockets_per_site = 100
            max_sockets_per_address = 7
            snapshots_per_minute = 9

            [[sites]]
            id = "acme"
            public_key = "pk_acme"
            secret_key = "sk_acme_0123456789abcdefgh"
            max_sockets = 3
            snapshots_per_minute = 0
            "#;
        let s = parse(text).unwrap().into_settings(false, no_env).unwrap();
        let l = &s.limits;
        assert_eq!(
            (
                l.max_sockets_per_site,
                l.max_sockets_per_address,
                l.snapshots_per_minute
            ),
            (100, 7, 9)
        );
        let q = tippen_core::quota::SocketQuotas::of(l, &s.sites[0]);
        assert_eq!(
            (q.per_site, q.per_address, q.snapshots_per_minute),
            (3, 7, 9)
        );
    }

    #[test]
    fn keys_are_hashed_and_roles_follow() {
        let hex = KeyHash::of("sk_hidden").to_hex();
        let text = format!(
            r#"
            [[sites]]
            id = "acme"
            public_key = "pk_acme"
            secret_key_sha256 = "{hex}"
            honor_gpc = false

            [[sites]]
            id = "old"
            name = "Old client"
            legacy_single_key = true
            secret_key = "one_key_0123456789abcdefgh"
            "#
        );
        let s = parse(&text).unwrap().into_settings(true, no_env).unwrap();
        let acme = &s.sites[0];
        assert_eq!(acme.name, "acme");
        assert_eq!(
            acme.role_of(&KeyHash::of("pk_acme")),
            Some(tippen_core::KeyRole::Public)
        );
        assert_eq!(
            acme.role_of(&KeyHash::of("sk_hidden")),
            Some(tippen_core::KeyRole::Secret)
        );
        assert!(!acme.honor_gpc);
        let old = &s.sites[1];
        assert!(old.legacy_single_key && old.public_key_hash.is_none());
        assert_eq!(
            old.role_of(&KeyHash::of("one_key_0123456789abcdefgh")),
            Some(tippen_core::KeyRole::Secret)
        );
    }

    #[test]
    fn tippen_sites_adds_to_the_file_and_identity_secrets_are_checked() {
        let text = "[[sites]]\nid = \"acme\"\npublic_key = \"pk_acme\"\nsecret_key = \"sk_acme_0123456789abcdefgh\"\nidentity_secret = \"idv_acme_0123456789abcdefgh\"\n";
        let env = |v: &'static str| {
            (v == "TIPPEN_SITES").then(|| {
                r#"[{"id":"v","publicKey":"pk_v","secretKey":"sk_v_0123456789abcdefghij"}]"#
                    .to_owned()
            })
        };
        let s = parse(text).unwrap().into_settings(false, env).unwrap();
        let ids: Vec<_> = s.sites.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["acme", "v"]);
        let acme = &s.sites[0];
        let hash = tippen_core::IdentitySecret::new("idv_acme_0123456789abcdefgh").sign("u1");
        assert_eq!(acme.verify_identity("u1", Some(&hash)), Ok(true));
        assert!(acme.verify_identity("u2", Some(&hash)).is_err());
        assert_eq!(s.sites[1].verify_identity("u1", None), Ok(false));
        // A key used in both places is refused like any reused key.
        let twice = |v: &'static str| {
            (v == "TIPPEN_SITES").then(|| {
                r#"[{"id":"w","publicKey":"pk_acme","secretKey":"sk_w_0123456789abcdefghij"}]"#
                    .to_owned()
            })
        };
        let e = parse(text)
            .unwrap()
            .into_settings(false, twice)
            .unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let short = text.replace("idv_acme_0123456789abcdefgh", "short");
        let e = parse(&short)
            .unwrap()
            .into_settings(false, no_env)
            .unwrap_err();
        assert!(
            e.to_string().contains("identity secret has 5 characters"),
            "{e}"
        );
    }

    #[test]
    fn timings_come_from_the_file_then_the_environment() {
        let text = "[presence]\nvisible_grace_ms = 1000\nhidden_grace_ms = 2000\n";
        let s = parse(text).unwrap().into_settings(false, no_env).unwrap();
        assert_eq!(s.presence.visible_grace, Duration::from_secs(1));
        assert_eq!(s.presence.hidden_grace, Duration::from_secs(2));
        assert_eq!(s.presence.heartbeat_interval, Duration::from_secs(30));
        let env = |v: &'static str| (v == "TIPPEN_HIDDEN_GRACE_MS").then(|| "7000".to_owned());
        let s = parse(text).unwrap().into_settings(false, env).unwrap();
        assert_eq!(s.presence.hidden_grace, Duration::from_secs(7));
        let bad = |v: &'static str| (v == "TIPPEN_HEARTBEAT_MS").then(|| "soon".to_owned());
        let e = parse(text).unwrap().into_settings(false, bad).unwrap_err();
        assert!(e.to_string().contains("TIPPEN_HEARTBEAT_MS"), "{e}");
    }

    #[test]
    fn enrichment_comes_from_the_file_then_the_environment() {
        let s = parse("").unwrap().into_settings(false, no_env).unwrap();
        assert!(s.enrichment.is_none(), "no provider: fallbacks only");
        let text = "[enrichment]\nprovider = \"ipinfo\"\napi_key = \"tok_file\"\nrate_limit_per_minute = 120\n";
        let s = parse(text).unwrap().into_settings(false, no_env).unwrap();
        let e = s.enrichment.expect("configured");
        assert_eq!(e.provider.kind(), ProviderKind::Ipinfo);
        assert_eq!(e.planner.rate_limit.max_starts, 120);
        let req = e.provider.build_request("8.8.8.8".parse().unwrap());
        assert_eq!(req.uri(), "https://ipinfo.io/8.8.8.8");
        assert!(
            !format!("{e:?}").contains("tok_file"),
            "the key is not in Debug"
        );
        let env = |v: &'static str| match v {
            "TIPPEN_ENRICHMENT_PROVIDER" => Some("enrich_so".to_owned()),
            "TIPPEN_ENRICHMENT_API_KEY" => Some("tok_env".to_owned()),
            "TIPPEN_ENRICHMENT_BASE_URL" => Some("http://127.0.0.1:9".to_owned()),
            _ => None,
        };
        let e = parse(text)
            .unwrap()
            .into_settings(false, env)
            .unwrap()
            .enrichment
            .unwrap();
        assert_eq!(e.provider.kind(), ProviderKind::EnrichSo);
        let req = e.provider.build_request("8.8.8.8".parse().unwrap());
        assert!(
            req.uri().to_string().starts_with("http://127.0.0.1:9/"),
            "{}",
            req.uri()
        );
        for (text, expected) in [
            (
                "[enrichment]\nprovider = \"clearbit\"\napi_key = \"k\"\n",
                "unknown provider",
            ),
            ("[enrichment]\nprovider = \"ipinfo\"\n", "needs api_key"),
            ("[enrichment]\napi_key = \"k\"\n", "no provider"),
            (
                "[enrichment]\nprovider = \"ipinfo\"\napi_key = \"k\"\nbase_url = \"ftp://x\"\n",
                "base URL",
            ),
            (
                "[enrichment]\nprovider = \"ipinfo\"\napi_key = \"k\"\nrate_limit_per_minute = 0\n",
                "at least 1",
            ),
        ] {
            let e = parse(text)
                .unwrap()
                .into_settings(false, no_env)
                .unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn support_rules_and_slack_come_from_the_file_then_the_environment() {
        let s = parse("").unwrap().into_settings(false, no_env).unwrap();
        assert_eq!(s.support, SupportConfig::default());
        assert!(s.slack.is_none(), "no webhook: dashboards only");
        let text = r#"
            public_url = "https://tippen.example"
            [support]
            stuck_after_ms = 1000
            error_burst_max = 5
            stuck_tiers = ["paid", "enterprise"]
            low_activity_tiers = []
            error_burst_tiers = ["all"]
            slack_webhook_url = "https://hooks.slack.com/services/T/B/file_secret"
        "#;
        let s = parse(text).unwrap().into_settings(false, no_env).unwrap();
        assert_eq!(s.support.stuck_after, Duration::from_secs(1));
        assert_eq!(s.support.error_burst_max, 5);
        assert!(s.support.stuck.applies_to(Some(SubscriptionTier::Paid)));
        assert!(
            !s.support
                .stuck
                .applies_to(Some(SubscriptionTier::FreeTrial))
        );
        assert!(
            !s.support
                .low_activity
                .applies_to(Some(SubscriptionTier::FreeTrial))
        );
        assert!(s.support.error_burst.applies_to(None));
        let slack = s.slack.expect("configured");
        assert_eq!(
            slack.webhook.expose(),
            "https://hooks.slack.com/services/T/B/file_secret"
        );
        assert_eq!(
            slack.dashboard_base_url.as_deref(),
            Some("https://tippen.example")
        );
        assert!(
            !format!("{slack:?}").contains("file_secret"),
            "not in Debug"
        );
        let env = |v: &'static str| match v {
            "TIPPEN_SLACK_WEBHOOK_URL" => Some("http://127.0.0.1:9/hook".to_owned()),
            "TIPPEN_PUBLIC_URL" => Some("http://localhost:8787".to_owned()),
            _ => None,
        };
        let slack = parse(text)
            .unwrap()
            .into_settings(false, env)
            .unwrap()
            .slack
            .unwrap();
        assert_eq!(slack.webhook.expose(), "http://127.0.0.1:9/hook");
        assert_eq!(
            slack.dashboard_base_url.as_deref(),
            Some("http://localhost:8787")
        );
        for (text, expected) in [
            ("[support]\nstuck_tiers = [\"gold\"]\n", "unknown tier"),
            ("[support]\nerror_window_ms = 0\n", "at least 1"),
            ("[support]\nslack_webhook_url = \"hooks\"\n", "webhook URL"),
            (
                "public_url = \"tippen.example\"\n[support]\nslack_webhook_url = \"https://h/x\"\n",
                "public_url",
            ),
        ] {
            let e = parse(text)
                .unwrap()
                .into_settings(false, no_env)
                .unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
        assert!(
            parse("[support]\nstuck_after = 1\n").is_err(),
            "unknown fields"
        );
    }

    #[test]
    fn inconsistent_sites_are_rejected_with_a_reason() {
        let cases = [
            (
                "[[sites]]\nid = \"a\"\nsecret_key = \"s\"\n",
                "public_key is required",
            ),
            ("[[sites]]\nid = \"a\"\npublic_key = \"p\"\n", "secret_key"),
            (
                "[[sites]]\nid = \"a\"\nlegacy_single_key = true\npublic_key = \"p\"\nsecret_key = \"s\"\n",
                "legacy",
            ),
            (
                "[[sites]]\nid = \"a\"\npublic_key = \"p\"\nsecret_key_sha256 = \"zz\"\n",
                "64 hex digits",
            ),
            (
                "[[sites]]\nid = \"demo\"\npublic_key = \"p\"\nsecret_key = \"s\"\n",
                "--no-demo",
            ),
            (
                "[[sites]]\nid = \"a\"\npublic_key = \"p\"\nsecret_key = \"s\"\n[[sites]]\nid = \"b\"\npublic_key = \"p\"\nsecret_key = \"t\"\n",
                "used twice",
            ),
            (
                "[[sites]]\nid = \"a b\"\npublic_key = \"p\"\nsecret_key = \"s\"\n",
                "id must",
            ),
            (
                "trusted_proxies = [\"localhost\"]\n",
                "invalid trusted proxy",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text)
                .unwrap()
                .into_settings(true, no_env)
                .unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
        assert!(
            parse("[[sites]]\nid = \"a\"\nsecret = \"typo\"\n").is_err(),
            "unknown fields"
        );
    }

    #[test]
    fn file_values_go_through_the_shared_checks_named_by_their_field() {
        let e = parse("[presence]\nheartbeat_ms = 0\n")
            .unwrap()
            .into_settings(false, no_env)
            .unwrap_err();
        assert_eq!(e.to_string(), "presence.heartbeat_ms must be at least 1");
        let e = parse("[[sites]]\nid = \"a\"\npublic_key = \"demo_api_key\"\nsecret_key = \"s\"\n")
            .unwrap()
            .into_settings(true, no_env)
            .unwrap_err();
        assert!(e.to_string().contains("used twice"), "the demo key: {e}");
        let text = "[support]\nstuck_tiers = [\"paid\"]\n";
        let env = |v: &'static str| match v {
            "TIPPEN_SUPPORT_STUCK_TIERS" => Some("none".to_owned()),
            "TIPPEN_INVITE_TTL_MS" => Some("4000".to_owned()),
            _ => None,
        };
        let s = parse(text).unwrap().into_settings(false, env).unwrap();
        assert!(!s.support.stuck.enabled, "the environment wins");
        assert_eq!(s.invites.ttl, Duration::from_secs(4));
    }
}
