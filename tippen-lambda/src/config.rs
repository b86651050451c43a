//! [`LambdaConfig`]: what a function reads from its environment (set by `template.yaml`).

use std::time::Duration;

use thiserror::Error;
use tippen_core::enrichment::ProviderConfig;
use tippen_core::history::GeoHeaders;
use tippen_core::settings::{Settings, SettingsError, env_lookup, names};
use tippen_core::slack::SlackConfig;
use tippen_core::{Config, Site};

/// Why the environment could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is missing.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has a value that cannot be used (the checks every host shares:
    /// [`tippen_core::settings`]).
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    /// A variable has a value outside the ones it accepts.
    #[error("{name} must be {expected}, got {value:?}")]
    Unsupported {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it accepts.
        expected: &'static str,
    },
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
    /// [`SiteEntry`](tippen_core::settings::SiteEntry). In production it is resolved from
    /// Secrets Manager by the template.
    pub sites: Vec<Site>,
    /// The core's settings: `TIPPEN_HEARTBEAT_MS`, `TIPPEN_VISIBLE_GRACE_MS`,
    /// `TIPPEN_HIDDEN_GRACE_MS`, `TIPPEN_INVITE_TTL_MS` and `TIPPEN_SUPPORT_*` override the
    /// defaults ([`tippen_core::settings`]).
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
    /// `TIPPEN_SWEEP_FUNCTION`: the scheduled function (name or ARN). A deadline due sooner
    /// than the scheduled run would notice it (a tab's leave linger, 2 s) is written as a wake
    /// for whichever sweep invocation polls them; when none does until then, the HTTP function
    /// invokes this one asynchronously to poll, so a closed tab reaches dashboards when its
    /// linger ends rather than at the next run. Unset: only the scheduled runs sweep.
    pub sweep_function: Option<String>,
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
    /// `TIPPEN_HISTORY_TABLE`: the DynamoDB table visit history is kept in
    /// ([`DynamoHistory`](crate::DynamoHistory); the template passes `TIPPEN_TABLE`'s). None:
    /// no history (visits are not kept; the history API answers 501). How long a site's
    /// visits are kept is the site's `historyRetentionDays` in `TIPPEN_SITES` (default 90):
    /// the scheduled function purges hourly ([`crate::retention`]), and items carry a TTL at
    /// that age.
    pub history_table: Option<String>,
    /// `TIPPEN_GEO_HEADERS=cloudfront`: the HTTP function reads the visitor's country and city
    /// from CloudFront's viewer headers into the visit. Set it only when CloudFront is in
    /// front and is the only way to the function (a client reaching it directly could send
    /// the headers itself). Unset: the place comes from the enrichment provider.
    pub geo_headers: Option<GeoHeaders>,
    /// `TIPPEN_RATE_LIMIT_PER_KEY` (requests a second, bursts of 4×; 0: off) and a site's
    /// `rateLimitPerKey`: the HTTP function counts each key's requests per window in the table
    /// ([`DynamoStore::count_request`](crate::DynamoStore::count_request)) and answers `429`
    /// with `Retry-After` beyond. That is one more DynamoDB write per request, so here the
    /// per-key limit is off unless the variable is set (the template's `RateLimitPerKey`) or
    /// the site has its own. `TIPPEN_RATE_LIMIT_PER_IP` likewise: when set, every request and
    /// WebSocket connect is counted per client address (API Gateway's source address) in the
    /// table ([`DynamoStore::count_address`](crate::DynamoStore::count_address): the address
    /// only as an HMAC), one more write per request; unset, the template's API Gateway
    /// throttling bounds the rate as a whole.
    pub rate_limits: tippen_core::rate::RateLimits,
}

impl LambdaConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var` (a variable's value, `None` when unset; blank
    /// values count as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let shared = Settings::from_vars(&var)?;
        let var = env_lookup(var);
        let mut rate_limits = shared.rate_limits;
        if var(names::RATE_LIMIT_PER_KEY).is_none() {
            rate_limits.per_key = None;
        }
        if var(names::RATE_LIMIT_PER_IP).is_none() {
            rate_limits.per_client = None;
        }
        let required = |name| var(name).map(|s| s.value).ok_or(ConfigError::Missing(name));
        let millis = |name, default| -> Result<Duration, SettingsError> {
            Ok(var(name)
                .map(|s| s.millis())
                .transpose()?
                .unwrap_or(default))
        };
        Ok(LambdaConfig {
            table: required("TIPPEN_TABLE")?,
            ws_endpoint: required("TIPPEN_WS_ENDPOINT")?,
            ws_function: var("TIPPEN_WS_FUNCTION")
                .or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"))
                .map(|s| s.value),
            sites: shared.sites,
            core: shared.config,
            fanout_concurrency: var("TIPPEN_FANOUT_CONCURRENCY")
                .map(|s| s.number())
                .transpose()?
                .unwrap_or(16),
            site_cache_ttl: millis("TIPPEN_SITE_CACHE_MS", Duration::from_secs(30))?,
            video_provider_url: shared.video_provider_url,
            slack: shared.slack,
            outbound_timeout: millis("TIPPEN_OUTBOUND_TIMEOUT_MS", Duration::from_secs(5))?,
            slack_budget: millis("TIPPEN_SLACK_BUDGET_MS", Duration::from_secs(4))?,
            enrich_function: var("TIPPEN_ENRICH_FUNCTION").map(|s| s.value),
            sweep_function: var("TIPPEN_SWEEP_FUNCTION").map(|s| s.value),
            enrichment: shared.enrichment,
            enrich_budget: millis("TIPPEN_ENRICH_BUDGET_MS", Duration::from_secs(20))?,
            history_table: var("TIPPEN_HISTORY_TABLE").map(|s| s.value),
            rate_limits,
            geo_headers: match var("TIPPEN_GEO_HEADERS") {
                None => None,
                Some(s) if s.value.eq_ignore_ascii_case("cloudfront") => {
                    Some(GeoHeaders::CloudFront)
                }
                Some(s) => {
                    return Err(ConfigError::Unsupported {
                        name: "TIPPEN_GEO_HEADERS",
                        value: s.value,
                        expected: "cloudfront (or unset)",
                    });
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let base = [
            ("TIPPEN_TABLE", "tippen"),
            ("TIPPEN_WS_ENDPOINT", "http://127.0.0.1:9001/local"),
        ];
        let all: Vec<(String, String)> = base
            .iter()
            .chain(pairs)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Later pairs win (an empty value unsets).
        LambdaConfig::from_vars(|name| {
            all.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn host_variables_and_the_shared_settings_are_read() {
        let c = read(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "tippen-ws"),
            (
                "TIPPEN_SITES",
                r#"[{"id":"d","name":"Demo","legacyKey":"legacy_0123456789abcdefgh"}]"#,
            ),
            ("TIPPEN_INVITE_TTL_MS", "4000"),
            ("TIPPEN_SITE_CACHE_MS", "0"),
            ("TIPPEN_FANOUT_CONCURRENCY", "4"),
        ])
        .unwrap();
        assert_eq!((c.table.as_str(), c.fanout_concurrency), ("tippen", 4));
        assert_eq!(c.ws_function.as_deref(), Some("tippen-ws"));
        assert_eq!(c.core.invites.ttl, Duration::from_secs(4));
        assert_eq!(c.site_cache_ttl, Duration::ZERO);
        assert_eq!(c.outbound_timeout, Duration::from_secs(5));
        assert!(c.sites[0].legacy_single_key && c.sites[0].honor_gpc);
        assert!(matches!(
            read(&[("TIPPEN_TABLE", " ")]),
            Err(ConfigError::Missing("TIPPEN_TABLE"))
        ));
        assert!(matches!(
            read(&[("TIPPEN_SITES", r#"[{"id":"d","legacyKey":""}]"#)]),
            Err(ConfigError::Invalid(SettingsError::Site { .. }))
        ));
        assert_eq!(
            c.history_table, None,
            "history is off unless a table is named"
        );
        assert_eq!(c.geo_headers, None);
        let h = read(&[
            ("TIPPEN_HISTORY_TABLE", "tippen"),
            ("TIPPEN_GEO_HEADERS", "CloudFront"),
        ])
        .unwrap();
        assert_eq!(h.history_table.as_deref(), Some("tippen"));
        assert_eq!(h.geo_headers, Some(GeoHeaders::CloudFront));
        assert!(matches!(
            read(&[("TIPPEN_GEO_HEADERS", "cloudflare")]),
            Err(ConfigError::Unsupported {
                name: "TIPPEN_GEO_HEADERS",
                ..
            })
        ));
        let e = read(&[("TIPPEN_SLACK_BUDGET_MS", "4s")]).unwrap_err();
        assert!(e.to_string().contains("TIPPEN_SLACK_BUDGET_MS"), "{e}");
    }

    #[test]
    fn the_per_key_counter_is_off_unless_asked_for() {
        use tippen_core::rate::RateLimit;
        assert_eq!(read(&[]).unwrap().rate_limits.per_key, None);
        let c = read(&[("TIPPEN_RATE_LIMIT_PER_KEY", "5")]).unwrap();
        assert_eq!(c.rate_limits.per_key, Some(RateLimit::new(5, 20)));
        assert_eq!(
            read(&[("TIPPEN_RATE_LIMIT_PER_KEY", "0")])
                .unwrap()
                .rate_limits
                .per_key,
            None
        );
    }
}
