//! The configuration file (TOML) and the environment overrides of the timings. The format is
//! documented at the top of `main.rs` and in `tippen.example.toml`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tippen_axum::{EnrichmentConfig, InvalidProxy, TrustedProxies};
use tippen_core::enrichment::{ProviderConfig, ProviderConfigError, RateLimit};
use tippen_core::invite::InviteConfig;
use tippen_core::protocol::SubscriptionTier;
use tippen_core::slack::{SlackConfig, WebhookUrl};
use tippen_core::support::{RuleScope, SupportConfig};
use tippen_core::{KeyHash, PresenceConfig, Site, SiteId};

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
    /// A site entry is inconsistent.
    #[error("site {site:?}: {problem}")]
    Site {
        /// The site's id.
        site: String,
        /// What is wrong.
        problem: String,
    },
    /// A trusted proxy entry is not an address or network.
    #[error(transparent)]
    Proxy(#[from] InvalidProxy),
    /// The `[enrichment]` section (or its environment variables) is inconsistent.
    #[error("enrichment: {0}")]
    Enrichment(String),
    /// The provider configuration is unusable (empty key, bad base URL).
    #[error("enrichment: {0}")]
    Provider(#[from] ProviderConfigError),
    /// The `[support]` section (or its environment variables) is inconsistent.
    #[error("support: {0}")]
    Support(String),
    /// The video provider's base URL is not an http(s) URL.
    #[error("the video provider URL must start with https:// or http://, got {0:?}")]
    VideoProviderUrl(String),
    /// A timing environment variable is not a number of milliseconds.
    #[error("{var} must be a positive number of milliseconds, got {value:?}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
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

    /// Validates the file, hashes the keys and applies the timing overrides from `env`.
    pub fn into_settings(
        self,
        demo: bool,
        env: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut presence = PresenceConfig::default();
        let mut invites = InviteConfig::default();
        let overrides = [
            ("TIPPEN_INVITE_TTL_MS", self.invites.ttl_ms),
            ("TIPPEN_HEARTBEAT_MS", self.presence.heartbeat_ms),
            ("TIPPEN_VISIBLE_GRACE_MS", self.presence.visible_grace_ms),
            ("TIPPEN_HIDDEN_GRACE_MS", self.presence.hidden_grace_ms),
        ];
        for (var, from_file) in overrides {
            let ms = match env(var).filter(|v| !v.trim().is_empty()) {
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Some(ms),
                    _ => return Err(ConfigError::Env { var, value }),
                },
                None => from_file,
            };
            if let Some(ms) = ms {
                let d = Duration::from_millis(ms);
                match var {
                    "TIPPEN_HEARTBEAT_MS" => presence.heartbeat_interval = d,
                    "TIPPEN_VISIBLE_GRACE_MS" => presence.visible_grace = d,
                    "TIPPEN_INVITE_TTL_MS" => invites.ttl = d,
                    _ => presence.hidden_grace = d,
                }
            }
        }
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        let enrichment = self.enrichment.into_config(&env)?;
        let public_url = env("TIPPEN_PUBLIC_URL")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .or(self.public_url);
        let (support, slack) = self.support.into_config(public_url, &env)?;
        let video_provider_url = env("TIPPEN_VIDEO_PROVIDER_URL")
            .filter(|v| !v.trim().is_empty())
            .or(self.invites.video_provider_url);
        if let Some(url) = &video_provider_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::VideoProviderUrl(url.clone()));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        if demo {
            ids.insert(DEMO_SITE_ID.to_owned());
            keys.insert(KeyHash::of(DEMO_KEY));
        }
        let mut sites = Vec::with_capacity(self.sites.len());
        for entry in self.sites {
            let site = entry.into_site()?;
            let problem = |problem: &str| ConfigError::Site {
                site: site.id.0.clone(),
                problem: problem.to_owned(),
            };
            if !ids.insert(site.id.0.clone()) {
                return Err(problem(if demo && site.id.0 == DEMO_SITE_ID {
                    "the id `demo` is the demo site's; rename the site or run with --no-demo"
                } else {
                    "the id is used twice"
                }));
            }
            for h in site.key_hashes() {
                if !keys.insert(h) {
                    return Err(problem(
                        "a key is used twice (by this or another site, or it is the demo key)",
                    ));
                }
            }
            sites.push(site);
        }
        Ok(Settings {
            presence,
            trusted_proxies,
            sites,
            enrichment,
            support,
            slack,
            invites,
            video_provider_url,
        })
    }
}

fn scope(field: &str, tiers: &[String]) -> Result<RuleScope, ConfigError> {
    let mut out = Vec::new();
    for t in tiers {
        match t.as_str() {
            "all" if tiers.len() == 1 => return Ok(RuleScope::everyone()),
            "free_trial" => out.push(SubscriptionTier::FreeTrial),
            "paid" => out.push(SubscriptionTier::Paid),
            "enterprise" => out.push(SubscriptionTier::Enterprise),
            other => {
                return Err(ConfigError::Support(format!(
                    "{field}: unknown tier {other:?} (expected [\"all\"], [] or a list of \
                     free_trial, paid, enterprise)"
                )));
            }
        }
    }
    if out.is_empty() {
        Ok(RuleScope {
            enabled: false,
            tiers: Vec::new(),
        })
    } else {
        Ok(RuleScope::only(&out))
    }
}

impl SupportSection {
    /// The rules, and Slack from `slack_webhook_url` or `TIPPEN_SLACK_WEBHOOK_URL` (which wins)
    /// with `public_url` for the dashboard link.
    fn into_config(
        self,
        public_url: Option<String>,
        env: impl Fn(&'static str) -> Option<String>,
    ) -> Result<(SupportConfig, Option<SlackConfig>), ConfigError> {
        let mut c = SupportConfig::default();
        let ms = |field: &str, v: Option<u64>, into: &mut Duration| match v {
            Some(0) => Err(ConfigError::Support(format!("{field} must be at least 1"))),
            Some(ms) => {
                *into = Duration::from_millis(ms);
                Ok(())
            }
            None => Ok(()),
        };
        ms("stuck_after_ms", self.stuck_after_ms, &mut c.stuck_after)?;
        ms(
            "presence_window_ms",
            self.presence_window_ms,
            &mut c.presence_window,
        )?;
        ms(
            "low_activity_window_ms",
            self.low_activity_window_ms,
            &mut c.low_activity_window,
        )?;
        ms("error_window_ms", self.error_window_ms, &mut c.error_window)?;
        ms(
            "inactivity_after_ms",
            self.inactivity_after_ms,
            &mut c.inactivity_after,
        )?;
        ms(
            "slack_cooldown_ms",
            self.slack_cooldown_ms,
            &mut c.slack_cooldown,
        )?;
        ms("retention_ms", self.retention_ms, &mut c.retention)?;
        if let Some(n) = self.low_activity_min_events {
            c.low_activity_min_events = n;
        }
        if let Some(n) = self.error_burst_max {
            c.error_burst_max = n;
        }
        if let Some(n) = self.max_raw_events {
            c.max_raw_events = n;
        }
        for (field, tiers, into) in [
            ("stuck_tiers", &self.stuck_tiers, &mut c.stuck),
            (
                "low_activity_tiers",
                &self.low_activity_tiers,
                &mut c.low_activity,
            ),
            (
                "error_burst_tiers",
                &self.error_burst_tiers,
                &mut c.error_burst,
            ),
            (
                "inactivity_tiers",
                &self.inactivity_tiers,
                &mut c.inactivity,
            ),
        ] {
            if let Some(tiers) = tiers {
                *into = scope(field, tiers)?;
            }
        }
        let webhook = env("TIPPEN_SLACK_WEBHOOK_URL")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .or(self.slack_webhook_url);
        let slack = match webhook {
            None => None,
            Some(url) => {
                let webhook =
                    WebhookUrl::parse(&url).map_err(|e| ConfigError::Support(e.to_string()))?;
                let mut slack = SlackConfig::new(webhook);
                if let Some(base) = &public_url
                    && !(base.starts_with("http://") || base.starts_with("https://"))
                {
                    return Err(ConfigError::Support(format!(
                        "public_url must be an http(s) URL, got {base:?}"
                    )));
                }
                slack.dashboard_base_url = public_url;
                Some(slack)
            }
        };
        Ok((c, slack))
    }
}

impl EnrichmentSection {
    /// The provider, with `TIPPEN_ENRICHMENT_PROVIDER`, `TIPPEN_ENRICHMENT_API_KEY` and
    /// `TIPPEN_ENRICHMENT_BASE_URL` overriding the file.
    fn into_config(
        self,
        env: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Option<EnrichmentConfig>, ConfigError> {
        let pick = |var: &'static str, from_file: Option<String>| {
            env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .or(from_file)
        };
        let provider = pick("TIPPEN_ENRICHMENT_PROVIDER", self.provider);
        let api_key = pick("TIPPEN_ENRICHMENT_API_KEY", self.api_key);
        let base_url = pick("TIPPEN_ENRICHMENT_BASE_URL", self.base_url);
        let Some(provider) = ProviderConfig::from_settings(provider, api_key, base_url)
            .map_err(|e| ConfigError::Enrichment(e.to_string()))?
        else {
            return Ok(None);
        };
        let mut config = EnrichmentConfig::from_provider_config(&provider)?;
        if let Some(n) = self.rate_limit_per_minute {
            if n == 0 {
                return Err(ConfigError::Enrichment(
                    "rate_limit_per_minute must be at least 1".into(),
                ));
            }
            config.planner.rate_limit = RateLimit::new(n, Duration::from_secs(60));
        }
        if let Some(ms) = self.request_timeout_ms.filter(|ms| *ms > 0) {
            config.request_timeout = Duration::from_millis(ms);
        }
        Ok(Some(config))
    }
}

impl SiteEntry {
    fn into_site(self) -> Result<Site, ConfigError> {
        let problem = |problem: &str| ConfigError::Site {
            site: self.id.clone(),
            problem: problem.to_owned(),
        };
        let valid_id = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_id {
            return Err(problem(
                "id must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        let secret_key_hash = match (&self.secret_key, &self.secret_key_sha256) {
            (Some(k), None) if !k.is_empty() => KeyHash::of(k),
            (None, Some(h)) => KeyHash::from_hex(h.trim())
                .ok_or_else(|| problem("secret_key_sha256 must be 64 hex digits"))?,
            (Some(_), Some(_)) => {
                return Err(problem("give secret_key or secret_key_sha256, not both"));
            }
            _ => return Err(problem("secret_key (or secret_key_sha256) is required")),
        };
        let public_key_hash = match (&self.public_key, self.legacy_single_key) {
            (Some(_), true) => {
                return Err(problem(
                    "a legacy single-key site has no public_key; its secret_key is its one key",
                ));
            }
            (None, true) => None,
            (Some(k), false) if !k.is_empty() => Some(KeyHash::of(k)),
            (_, false) => {
                return Err(problem(
                    "public_key is required (or set legacy_single_key = true)",
                ));
            }
        };
        if public_key_hash == Some(secret_key_hash) {
            return Err(problem("public_key and secret_key must differ"));
        }
        Ok(Site {
            id: SiteId(self.id.clone()),
            name: self.name.clone().unwrap_or_else(|| self.id.clone()),
            public_key_hash,
            secret_key_hash,
            legacy_single_key: self.legacy_single_key,
            honor_gpc: self.honor_gpc.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tippen_core::enrichment::ProviderKind;

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
            secret_key = "one_key"
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
            old.role_of(&KeyHash::of("one_key")),
            Some(tippen_core::KeyRole::Secret)
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
}
