//! [`LambdaConfig`]: what a function reads from its environment (set by `template.yaml`).

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tippen_core::enrichment::{ProviderConfig, ProviderSettingsError};
use tippen_core::slack::{SlackConfig, SlackError};
use tippen_core::{Config, Site};

/// Why the environment could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is missing.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has a value that cannot be used.
    #[error("environment variable {name}: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// One site as configured in `TIPPEN_SITES` (JSON array).
///
/// ```json
/// [{"id":"acme","name":"Acme","publicKey":"pk_…","secretKey":"sk_…"},
///  {"id":"demo","name":"Demo","legacyKey":"demo_api_key"}]
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteConfig {
    /// The site id.
    pub id: String,
    /// Display name.
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
    /// Honour Global Privacy Control for enrichment.
    #[serde(default)]
    pub honor_gpc: bool,
}

impl SiteConfig {
    /// The core's site (keys hashed).
    pub fn to_site(&self) -> Result<Site, String> {
        let name = self.name.as_deref().unwrap_or(&self.id);
        let mut site = match (&self.legacy_key, &self.public_key, &self.secret_key) {
            (Some(key), None, None) => Site::legacy(&self.id, name, key),
            (None, Some(pk), Some(sk)) => Site::new(&self.id, name, pk, sk),
            _ => {
                return Err(format!(
                    "site {:?}: give either legacyKey, or publicKey and secretKey",
                    self.id
                ));
            }
        };
        site.honor_gpc = self.honor_gpc;
        Ok(site)
    }
}

/// Everything a tippen function reads from its environment.
#[derive(Clone, Debug)]
pub struct LambdaConfig {
    /// `TIPPEN_TABLE`: the DynamoDB table.
    pub table: String,
    /// `TIPPEN_WS_ENDPOINT`: the WebSocket API's Management API endpoint
    /// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
    pub ws_endpoint: String,
    /// `TIPPEN_WS_FUNCTION` (default: this function's own name, `AWS_LAMBDA_FUNCTION_NAME`):
    /// the WebSocket function, invoked asynchronously to greet a new connection.
    pub ws_function: Option<String>,
    /// `TIPPEN_SITES`: sites registered (idempotently) at cold start; JSON, see
    /// [`SiteConfig`]. In production it is resolved from Secrets Manager by the template.
    pub sites: Vec<Site>,
    /// The core's settings: `TIPPEN_HEARTBEAT_MS`, `TIPPEN_VISIBLE_GRACE_MS`,
    /// `TIPPEN_HIDDEN_GRACE_MS` override the presence defaults.
    pub core: Config,
    /// `TIPPEN_FANOUT_CONCURRENCY` (default 16): `PostToConnection` calls in flight per batch.
    pub fanout_concurrency: usize,
    /// `TIPPEN_SITE_CACHE_MS` (default 30000): how long an instance keeps a site found by
    /// key (a key rotation reaches running instances within this time).
    pub site_cache_ttl: Duration,
    /// `TIPPEN_VIDEO_PROVIDER_URL`: the video-session provider's base URL
    /// (`tippen_core::video::CustomerConnect`), used by the HTTP function for
    /// `POST /api/video-call` (feature `outbound`). None: that route answers 501.
    pub video_provider_url: Option<String>,
    /// `TIPPEN_SLACK_WEBHOOK_URL` (+ `TIPPEN_PUBLIC_URL` for the dashboard link): Slack
    /// notifications of support alerts (feature `outbound`). None: dashboards only.
    pub slack: Option<SlackConfig>,
    /// `TIPPEN_OUTBOUND_TIMEOUT_MS` (default 5000): the time limit of one outbound exchange
    /// (connect, send, whole answer).
    pub outbound_timeout: Duration,
    /// `TIPPEN_SLACK_BUDGET_MS` (default 4000): how long an invocation waits for its Slack
    /// deliveries (all retries included) before it returns. Lambda freezes the process once
    /// the handler returns, so delivery cannot continue in the background: what is not
    /// delivered within the budget is dropped (and logged). Keep it well below the function's
    /// timeout.
    pub slack_budget: Duration,
    /// `TIPPEN_ENRICH_FUNCTION`: the enrichment function (name or ARN). The HTTP function hands
    /// the lookups the core asks for to it in an asynchronous invocation
    /// ([`crate::enrich`]). None: no enrichment; visitors keep the fallback company.
    pub enrich_function: Option<String>,
    /// `TIPPEN_ENRICHMENT_PROVIDER` (`ipinfo|ipinfo_lite|enrich_so|people_data_labs`),
    /// `TIPPEN_ENRICHMENT_API_KEY`, optionally `TIPPEN_ENRICHMENT_BASE_URL`: the provider the
    /// enrichment function calls (the reference server's and the Worker's names; checked by
    /// [`ProviderConfig::from_settings`]). Required by the enrichment function only.
    pub enrichment: Option<ProviderConfig>,
    /// `TIPPEN_ENRICH_BUDGET_MS` (default 20000): how long one enrichment invocation waits for
    /// lookups the rate limit queued or a provider asked to retry. Keep it below the
    /// function's timeout minus one provider request (`TIPPEN_OUTBOUND_TIMEOUT_MS`) and the
    /// fan-out.
    pub enrich_budget: Duration,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn millis(name: &'static str) -> Result<Option<Duration>, ConfigError> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| ConfigError::Invalid {
                    name,
                    problem: format!("{v:?} is not a number of milliseconds: {e}"),
                })
        })
        .transpose()
}

impl LambdaConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let table = var("TIPPEN_TABLE").ok_or(ConfigError::Missing("TIPPEN_TABLE"))?;
        let ws_endpoint =
            var("TIPPEN_WS_ENDPOINT").ok_or(ConfigError::Missing("TIPPEN_WS_ENDPOINT"))?;
        let ws_function = var("TIPPEN_WS_FUNCTION").or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"));
        let sites = match var("TIPPEN_SITES") {
            None => Vec::new(),
            Some(json) => {
                let parsed: Vec<SiteConfig> =
                    serde_json::from_str(&json).map_err(|e| ConfigError::Invalid {
                        name: "TIPPEN_SITES",
                        problem: e.to_string(),
                    })?;
                parsed
                    .iter()
                    .map(SiteConfig::to_site)
                    .collect::<Result<_, _>>()
                    .map_err(|problem| ConfigError::Invalid {
                        name: "TIPPEN_SITES",
                        problem,
                    })?
            }
        };
        let mut core = Config::default();
        if let Some(d) = millis("TIPPEN_HEARTBEAT_MS")? {
            core.presence.heartbeat_interval = d;
        }
        if let Some(d) = millis("TIPPEN_VISIBLE_GRACE_MS")? {
            core.presence.visible_grace = d;
        }
        if let Some(d) = millis("TIPPEN_HIDDEN_GRACE_MS")? {
            core.presence.hidden_grace = d;
        }
        let fanout_concurrency = match var("TIPPEN_FANOUT_CONCURRENCY") {
            None => 16,
            Some(v) => v.trim().parse().map_err(|e| ConfigError::Invalid {
                name: "TIPPEN_FANOUT_CONCURRENCY",
                problem: format!("{v:?}: {e}"),
            })?,
        };
        let site_cache_ttl = millis("TIPPEN_SITE_CACHE_MS")?.unwrap_or(Duration::from_secs(30));
        let video_provider_url = var("TIPPEN_VIDEO_PROVIDER_URL").map(|u| u.trim().to_owned());
        if let Some(url) = &video_provider_url
            && !is_http_url(url)
        {
            return Err(ConfigError::Invalid {
                name: "TIPPEN_VIDEO_PROVIDER_URL",
                problem: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        let slack = SlackConfig::from_settings(
            var("TIPPEN_SLACK_WEBHOOK_URL").as_deref(),
            var("TIPPEN_PUBLIC_URL").as_deref(),
        )
        .map_err(|e| ConfigError::Invalid {
            name: match e {
                SlackError::InvalidPublicUrl(_) => "TIPPEN_PUBLIC_URL",
                _ => "TIPPEN_SLACK_WEBHOOK_URL",
            },
            problem: e.to_string(),
        })?;
        let outbound_timeout =
            millis("TIPPEN_OUTBOUND_TIMEOUT_MS")?.unwrap_or(Duration::from_secs(5));
        let slack_budget = millis("TIPPEN_SLACK_BUDGET_MS")?.unwrap_or(Duration::from_secs(4));
        let enrich_function = var("TIPPEN_ENRICH_FUNCTION");
        let enrichment = ProviderConfig::from_settings(
            var("TIPPEN_ENRICHMENT_PROVIDER"),
            var("TIPPEN_ENRICHMENT_API_KEY"),
            var("TIPPEN_ENRICHMENT_BASE_URL"),
        )
        .map_err(|e| ConfigError::Invalid {
            name: match e {
                ProviderSettingsError::MissingApiKey { .. } => "TIPPEN_ENRICHMENT_API_KEY",
                ProviderSettingsError::Invalid(_) => {
                    "TIPPEN_ENRICHMENT_API_KEY or TIPPEN_ENRICHMENT_BASE_URL"
                }
                _ => "TIPPEN_ENRICHMENT_PROVIDER",
            },
            problem: e.to_string(),
        })?;
        let enrich_budget = millis("TIPPEN_ENRICH_BUDGET_MS")?.unwrap_or(Duration::from_secs(20));
        Ok(LambdaConfig {
            table,
            ws_endpoint,
            ws_function,
            sites,
            core,
            fanout_concurrency,
            site_cache_ttl,
            video_provider_url,
            slack,
            outbound_timeout,
            slack_budget,
            enrich_function,
            enrichment,
            enrich_budget,
        })
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_need_a_legacy_key_or_both_keys() {
        let ok: Vec<SiteConfig> = serde_json::from_str(
            r#"[{"id":"a","publicKey":"pk","secretKey":"sk"},{"id":"d","name":"Demo","legacyKey":"k"}]"#,
        )
        .unwrap();
        let sites: Vec<Site> = ok.iter().map(|s| s.to_site().unwrap()).collect();
        assert!(!sites[0].legacy_single_key);
        assert!(sites[1].legacy_single_key);
        assert_eq!(sites[1].name, "Demo");
        let bad: Vec<SiteConfig> =
            serde_json::from_str(r#"[{"id":"a","publicKey":"pk"}]"#).unwrap();
        assert!(
            bad[0]
                .to_site()
                .unwrap_err()
                .contains("publicKey and secretKey")
        );
        assert!(serde_json::from_str::<Vec<SiteConfig>>(r#"[{"id":"a","pubKey":"x"}]"#).is_err());
    }
}
