//! [`WorkerConfig`]: sites and timings from the Worker's environment (wrangler `[vars]`, or
//! secrets in production).
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TIPPEN_SITES` | the sites, JSON (below); put it as a **secret** in production (`wrangler secret put TIPPEN_SITES`) | required |
//! | `TIPPEN_HEARTBEAT_MS` | heartbeat interval told to trackers | 30000 |
//! | `TIPPEN_VISIBLE_GRACE_MS` | a visible tab is dropped this long after its last event | 60000 |
//! | `TIPPEN_HIDDEN_GRACE_MS` | a hidden tab is dropped this long after its last event | 300000 |
//! | `TIPPEN_INVITE_TTL_MS` | an unanswered video invite expires after this long | 60000 |
//! | `TIPPEN_VIDEO_PROVIDER_URL` | the video-session provider (`POST /api/video-call`), called with `fetch` | none (`501` on that route) |
//! | `TIPPEN_SLACK_WEBHOOK_URL` | Slack incoming webhook for support alerts (a **secret**), called with `fetch` | none (dashboards only) |
//! | `TIPPEN_PUBLIC_URL` | the Worker's public base URL, for the link in Slack messages | none |
//! | `TIPPEN_ENRICHMENT_PROVIDER` | IP → company enrichment: `ipinfo`, `ipinfo_lite`, `enrich_so` or `people_data_labs`, called with `fetch` from the site's Durable Object | none (visitors keep the fallback company) |
//! | `TIPPEN_ENRICHMENT_API_KEY` | the provider's API key (a **secret**: `wrangler secret put TIPPEN_ENRICHMENT_API_KEY`) | required with a provider |
//! | `TIPPEN_ENRICHMENT_BASE_URL` | another base URL for the provider (a proxy, a test stand-in) | the provider's |
//! | `TIPPEN_TEST_ROUTES` | `1` serves the store conformance route (tests only; needs the crate feature `test-routes`) | off |
//!
//! `TIPPEN_SITES` is a JSON array; each site has a public and a secret key, or one legacy key:
//!
//! ```json
//! [{"id":"acme","name":"Acme","publicKey":"pk_acme","secretKey":"sk_acme"},
//!  {"id":"demo","name":"Demo","legacyKey":"demo_api_key","honorGpc":true}]
//! ```
//!
//! Keys are hashed (SHA-256) as soon as they are read; only hashes reach storage.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tippen_core::enrichment::ProviderConfig;
use tippen_core::slack::SlackConfig;
use tippen_core::{Config, Site};

/// Why the environment does not describe a usable configuration.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `TIPPEN_SITES` is not set.
    #[error("TIPPEN_SITES is not set (a JSON array of sites)")]
    NoSites,
    /// `TIPPEN_SITES` is not a valid JSON array of sites.
    #[error("TIPPEN_SITES is invalid: {0}")]
    Sites(String),
    /// A site has neither both keys nor a legacy key, or both.
    #[error("site {0}: give publicKey and secretKey, or legacyKey")]
    Keys(String),
    /// Two sites share an id.
    #[error("site id {0} appears twice in TIPPEN_SITES")]
    DuplicateId(String),
    /// `TIPPEN_VIDEO_PROVIDER_URL` is not an http(s) URL.
    #[error("TIPPEN_VIDEO_PROVIDER_URL must be an http:// or https:// URL, got {0:?}")]
    VideoProviderUrl(String),
    /// `TIPPEN_SLACK_WEBHOOK_URL` or `TIPPEN_PUBLIC_URL` is unusable.
    #[error("Slack: {0}")]
    Slack(String),
    /// The enrichment settings (`TIPPEN_ENRICHMENT_*`) are unusable.
    #[error("enrichment: {0}")]
    Enrichment(String),
    /// A timing is not a whole number of milliseconds.
    #[error("{name} must be a whole number of milliseconds, got {value:?}")]
    Millis {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SiteEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    legacy_key: Option<String>,
    #[serde(default)]
    honor_gpc: Option<bool>,
}

impl SiteEntry {
    fn into_site(self) -> Result<Site, ConfigError> {
        let name = self.name.clone().unwrap_or_else(|| self.id.clone());
        let nonempty = |k: &Option<String>| k.as_deref().filter(|k| !k.is_empty()).is_some();
        let mut site = match (&self.public_key, &self.secret_key, &self.legacy_key) {
            (Some(p), Some(s), None)
                if nonempty(&self.public_key) && nonempty(&self.secret_key) =>
            {
                Site::new(&self.id, &name, p, s)
            }
            (None, None, Some(k)) if nonempty(&self.legacy_key) => Site::legacy(&self.id, &name, k),
            _ => return Err(ConfigError::Keys(self.id)),
        };
        if let Some(honor) = self.honor_gpc {
            site.honor_gpc = honor;
        }
        Ok(site)
    }
}

/// The Worker's configuration: its sites and the core's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Every configured site.
    pub sites: Vec<Site>,
    /// The core's settings (timings from the environment, the rest default).
    pub core: Config,
    /// The video-session provider's base URL (`TIPPEN_VIDEO_PROVIDER_URL`).
    pub video_provider_url: Option<String>,
    /// Slack notifications of support alerts (`TIPPEN_SLACK_WEBHOOK_URL`).
    pub slack: Option<SlackConfig>,
    /// The enrichment provider (`TIPPEN_ENRICHMENT_*`), validated.
    pub enrichment: Option<ProviderConfig>,
    /// Whether the test-only routes are served (`TIPPEN_TEST_ROUTES=1`).
    pub test_routes: bool,
}

/// The provider names accepted in `TIPPEN_ENRICHMENT_PROVIDER`.
/// The provider `TIPPEN_ENRICHMENT_PROVIDER`, `TIPPEN_ENRICHMENT_API_KEY` and
/// `TIPPEN_ENRICHMENT_BASE_URL` name (read through `nonempty`), checked by building it once.
fn enrichment(
    nonempty: impl Fn(&str) -> Option<String>,
) -> Result<Option<ProviderConfig>, ConfigError> {
    ProviderConfig::from_settings(
        nonempty("TIPPEN_ENRICHMENT_PROVIDER"),
        nonempty("TIPPEN_ENRICHMENT_API_KEY"),
        nonempty("TIPPEN_ENRICHMENT_BASE_URL"),
    )
    .map_err(|e| ConfigError::Enrichment(e.to_string()))
}

impl WorkerConfig {
    /// Reads the configuration through `var` (the value of an environment variable or
    /// secret, `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw = var("TIPPEN_SITES").ok_or(ConfigError::NoSites)?;
        let entries: Vec<SiteEntry> =
            serde_json::from_str(&raw).map_err(|e| ConfigError::Sites(e.to_string()))?;
        let mut sites: Vec<Site> = Vec::with_capacity(entries.len());
        for entry in entries {
            let site = entry.into_site()?;
            if sites.iter().any(|s| s.id == site.id) {
                return Err(ConfigError::DuplicateId(site.id.0));
            }
            sites.push(site);
        }
        let mut core = Config::default();
        let millis = |name: &'static str| -> Result<Option<Duration>, ConfigError> {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| ConfigError::Millis { name, value: v })
                })
                .transpose()
        };
        if let Some(d) = millis("TIPPEN_HEARTBEAT_MS")? {
            core.presence.heartbeat_interval = d;
        }
        if let Some(d) = millis("TIPPEN_VISIBLE_GRACE_MS")? {
            core.presence.visible_grace = d;
        }
        if let Some(d) = millis("TIPPEN_HIDDEN_GRACE_MS")? {
            core.presence.hidden_grace = d;
        }
        if let Some(d) = millis("TIPPEN_INVITE_TTL_MS")? {
            core.invites.ttl = d;
        }
        let video_provider_url = var("TIPPEN_VIDEO_PROVIDER_URL")
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        if let Some(url) = &video_provider_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::VideoProviderUrl(url.clone()));
        }
        let nonempty = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let slack = SlackConfig::from_settings(
            nonempty("TIPPEN_SLACK_WEBHOOK_URL").as_deref(),
            nonempty("TIPPEN_PUBLIC_URL").as_deref(),
        )
        .map_err(|e| ConfigError::Slack(e.to_string()))?;
        let enrichment = enrichment(nonempty)?;
        let test_routes = var("TIPPEN_TEST_ROUTES").is_some_and(|v| v.trim() == "1");
        Ok(WorkerConfig {
            sites,
            core,
            video_provider_url,
            slack,
            enrichment,
            test_routes,
        })
    }

    /// The configured site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tippen_core::enrichment::ProviderKind;
    use tippen_core::{KeyHash, KeyRole};

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sites_and_timings_are_read() {
        let config = WorkerConfig::from_vars(vars(&[
            (
                "TIPPEN_SITES",
                r#"[{"id":"a","name":"A","publicKey":"pk_a","secretKey":"sk_a"},
                    {"id":"demo","legacyKey":"demo_api_key","honorGpc":false}]"#,
            ),
            ("TIPPEN_VISIBLE_GRACE_MS", "2000"),
            ("TIPPEN_HIDDEN_GRACE_MS", " 5000 "),
            ("TIPPEN_TEST_ROUTES", "1"),
        ]))
        .unwrap();
        assert_eq!(config.sites.len(), 2);
        let a = config.site("a").unwrap();
        assert_eq!(a.role_of(&KeyHash::of("pk_a")), Some(KeyRole::Public));
        assert_eq!(a.role_of(&KeyHash::of("sk_a")), Some(KeyRole::Secret));
        let demo = config.site("demo").unwrap();
        assert!(demo.legacy_single_key);
        assert!(!demo.honor_gpc);
        assert_eq!(demo.name, "demo");
        assert_eq!(
            config.core.presence.visible_grace,
            Duration::from_millis(2000)
        );
        assert_eq!(
            config.core.presence.hidden_grace,
            Duration::from_millis(5000)
        );
        assert_eq!(
            config.core.presence.heartbeat_interval,
            Duration::from_secs(30)
        );
        assert!(config.test_routes);
        assert_eq!(config.video_provider_url, None);
        assert!(config.slack.is_none());
    }

    #[test]
    fn enrichment_comes_from_the_reference_server_names() {
        let config = WorkerConfig::from_vars(vars(&[
            ("TIPPEN_SITES", "[]"),
            ("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo"),
            ("TIPPEN_ENRICHMENT_API_KEY", "tok"),
            ("TIPPEN_ENRICHMENT_BASE_URL", "http://127.0.0.1:8822"),
        ]))
        .unwrap();
        let provider = config.enrichment.unwrap();
        assert_eq!(provider.kind, ProviderKind::Ipinfo);
        assert_eq!(provider.base_url.as_deref(), Some("http://127.0.0.1:8822"));
        let without = WorkerConfig::from_vars(vars(&[("TIPPEN_SITES", "[]")])).unwrap();
        assert!(without.enrichment.is_none());
        for bad in [
            vec![
                ("TIPPEN_ENRICHMENT_PROVIDER", "maxmind"),
                ("TIPPEN_ENRICHMENT_API_KEY", "k"),
            ],
            vec![("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo")],
            vec![("TIPPEN_ENRICHMENT_API_KEY", "k")],
            vec![
                ("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo"),
                ("TIPPEN_ENRICHMENT_API_KEY", "k"),
                ("TIPPEN_ENRICHMENT_BASE_URL", "ftp://x"),
            ],
        ] {
            let mut pairs = vec![("TIPPEN_SITES", "[]")];
            pairs.extend(bad.iter().copied());
            assert!(
                matches!(
                    WorkerConfig::from_vars(vars(&pairs)),
                    Err(ConfigError::Enrichment(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn slack_comes_from_the_webhook_secret() {
        let config = WorkerConfig::from_vars(vars(&[
            ("TIPPEN_SITES", "[]"),
            ("TIPPEN_SLACK_WEBHOOK_URL", "http://127.0.0.1:8806/hook"),
            ("TIPPEN_PUBLIC_URL", "https://tippen.example"),
        ]))
        .unwrap();
        let slack = config.slack.unwrap();
        assert_eq!(slack.webhook.expose(), "http://127.0.0.1:8806/hook");
        assert_eq!(
            slack.dashboard_base_url.as_deref(),
            Some("https://tippen.example")
        );
        assert!(matches!(
            WorkerConfig::from_vars(vars(&[
                ("TIPPEN_SITES", "[]"),
                ("TIPPEN_SLACK_WEBHOOK_URL", "http://127.0.0.1:8806/hook"),
                ("TIPPEN_PUBLIC_URL", "tippen.example"),
            ]))
            .unwrap_err(),
            ConfigError::Slack(_)
        ));
    }

    #[test]
    fn bad_configurations_are_named() {
        assert_eq!(
            WorkerConfig::from_vars(vars(&[])).unwrap_err(),
            ConfigError::NoSites
        );
        assert!(matches!(
            WorkerConfig::from_vars(vars(&[("TIPPEN_SITES", "{")])).unwrap_err(),
            ConfigError::Sites(_)
        ));
        assert_eq!(
            WorkerConfig::from_vars(vars(&[(
                "TIPPEN_SITES",
                r#"[{"id":"a","publicKey":"pk_a"}]"#
            )]))
            .unwrap_err(),
            ConfigError::Keys("a".into())
        );
        assert_eq!(
            WorkerConfig::from_vars(vars(&[(
                "TIPPEN_SITES",
                r#"[{"id":"a","legacyKey":"k"},{"id":"a","legacyKey":"j"}]"#
            )]))
            .unwrap_err(),
            ConfigError::DuplicateId("a".into())
        );
        assert!(matches!(
            WorkerConfig::from_vars(vars(&[
                ("TIPPEN_SITES", "[]"),
                ("TIPPEN_VISIBLE_GRACE_MS", "2s")
            ]))
            .unwrap_err(),
            ConfigError::Millis {
                name: "TIPPEN_VISIBLE_GRACE_MS",
                ..
            }
        ));
        assert_eq!(
            WorkerConfig::from_vars(vars(&[
                ("TIPPEN_SITES", "[]"),
                ("TIPPEN_VIDEO_PROVIDER_URL", "ftp://x")
            ]))
            .unwrap_err(),
            ConfigError::VideoProviderUrl("ftp://x".into())
        );
        assert_eq!(
            WorkerConfig::from_vars(vars(&[
                ("TIPPEN_SITES", "[]"),
                ("TIPPEN_VIDEO_PROVIDER_URL", " https://video.example/ ")
            ]))
            .unwrap()
            .video_provider_url
            .as_deref(),
            Some("https://video.example/")
        );
        assert!(
            !WorkerConfig::from_vars(vars(&[("TIPPEN_SITES", "[]")]))
                .unwrap()
                .test_routes
        );
    }
}
