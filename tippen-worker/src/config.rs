//! [`WorkerConfig`]: sites and timings from the Worker's environment (wrangler `[vars]`, or
//! secrets in production).
//!
//! The variables every host reads (`TIPPEN_SITES`, the timings, the video provider, Slack,
//! enrichment, the support rules) and their checks are [`tippen_core::settings`]'s; put
//! `TIPPEN_SITES`, `TIPPEN_SLACK_WEBHOOK_URL` and `TIPPEN_ENRICHMENT_API_KEY` as **secrets** in
//! production (`wrangler secret put TIPPEN_SITES`). Here `TIPPEN_SITES` is required; outbound
//! calls (video provider, Slack, enrichment) go out with `fetch`. The Worker adds:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TIPPEN_RATE_LIMIT_PER_IP`, `TIPPEN_RATE_LIMIT_PER_KEY` | requests a second (bursts of 4×) per client address and per key, counted by each site's object for its own requests (`429` + `Retry-After`); 0: off | 100, 1000 |
//! | `TIPPEN_TEST_ROUTES` | `1` serves the store conformance routes (tests only; needs the crate feature `test-routes`) | off |
//!
//! Bindings (not variables): the Durable Object namespace `TIPPEN_SITE` (required), the KV
//! namespace `TIPPEN_ENRICHMENT_CACHE` (the shared enrichment cache) and the D1 database
//! `TIPPEN_HISTORY` (visit history; without it history is off).

use thiserror::Error;
use tippen_core::enrichment::ProviderConfig;
use tippen_core::rate::RateLimits;
use tippen_core::settings::{Settings, SettingsError, names};
use tippen_core::slack::SlackConfig;
use tippen_core::{Config, Site};

/// Why the environment does not describe a usable configuration.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `TIPPEN_SITES` is not set.
    #[error("TIPPEN_SITES is not set (a JSON array of sites)")]
    NoSites,
    /// A setting every host reads is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The enrichment provider could not be built.
    #[error("enrichment: {0}")]
    Enrichment(String),
}

/// The Worker's configuration: its sites and the core's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Every configured site.
    pub sites: Vec<Site>,
    /// The core's settings (timings and support rules from the environment, the rest default).
    pub core: Config,
    /// The video-session provider's base URL (`TIPPEN_VIDEO_PROVIDER_URL`).
    pub video_provider_url: Option<String>,
    /// Slack notifications of support alerts (`TIPPEN_SLACK_WEBHOOK_URL`).
    pub slack: Option<SlackConfig>,
    /// The enrichment provider (`TIPPEN_ENRICHMENT_*`), validated.
    pub enrichment: Option<ProviderConfig>,
    /// Whether the test-only routes are served (`TIPPEN_TEST_ROUTES=1`).
    pub test_routes: bool,
    /// Rate limits (`TIPPEN_RATE_LIMIT_PER_IP`, `TIPPEN_RATE_LIMIT_PER_KEY`, a site's
    /// `rateLimitPerKey`), kept by each site's object in memory for that site's requests.
    pub rate_limits: RateLimits,
}

impl WorkerConfig {
    /// Reads the configuration through `var` (the value of an environment variable or
    /// secret, `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if var(names::SITES).is_none_or(|v| v.trim().is_empty()) {
            return Err(ConfigError::NoSites);
        }
        let test_routes = var("TIPPEN_TEST_ROUTES").is_some_and(|v| v.trim() == "1");
        let s = Settings::from_vars(var)?;
        Ok(WorkerConfig {
            sites: s.sites,
            core: s.config,
            video_provider_url: s.video_provider_url,
            slack: s.slack,
            enrichment: s.enrichment,
            rate_limits: s.rate_limits,
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

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sites_are_required_and_the_rest_is_the_shared_settings() {
        let sites = r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij"}]"#;
        for unset in [vars(&[]), vars(&[("TIPPEN_SITES", " ")])] {
            assert_eq!(
                WorkerConfig::from_vars(unset).unwrap_err(),
                ConfigError::NoSites
            );
        }
        let config = WorkerConfig::from_vars(vars(&[
            ("TIPPEN_SITES", sites),
            ("TIPPEN_INVITE_TTL_MS", "4000"),
            ("TIPPEN_TEST_ROUTES", "1"),
        ]))
        .unwrap();
        assert_eq!(config.site("a").unwrap().name, "a");
        assert_eq!(config.core.invites.ttl.as_millis(), 4000);
        assert!(config.test_routes);
        assert!(
            !WorkerConfig::from_vars(vars(&[("TIPPEN_SITES", "[]")]))
                .unwrap()
                .test_routes
        );
        assert!(matches!(
            WorkerConfig::from_vars(vars(&[
                ("TIPPEN_SITES", sites),
                ("TIPPEN_VISIBLE_GRACE_MS", "2s")
            ])),
            Err(ConfigError::Settings(SettingsError::NotANumber { .. }))
        ));
    }
}
