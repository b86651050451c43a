//! Slack notifications of support alerts, sans-IO.
//!
//! The core builds the incoming-webhook message ([`message`]) and decides what a response
//! means ([`after_response`]): delivered, retry later (429 and 5xx, honouring
//! `Retry-After`), or give up; [`crate::notify`] sends it, with every other alert. The
//! cooldown (one notification per user per [`SupportConfig::slack_cooldown`]) was applied by
//! the core before the notice was made.
//!
//! The webhook URL is a secret (whoever has it can post to the channel): [`WebhookUrl`]
//! never shows it in `Debug` or `Display`, so it cannot end up in a log line by accident.
//!
//! ```
//! use tippen_core::slack::{self, Delivery, RetryPolicy, WebhookUrl};
//! let url = WebhookUrl::parse("https://hooks.slack.com/services/T000/B000/XXXX").unwrap();
//! assert_eq!(format!("{url:?}"), "WebhookUrl(https://hooks.slack.com/…)");
//! let policy = RetryPolicy::default();
//! let mut headers = http::HeaderMap::new();
//! headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
//! assert_eq!(
//!     slack::after_response(http::StatusCode::TOO_MANY_REQUESTS, &headers, 1, &policy),
//!     Delivery::RetryAfter(std::time::Duration::from_secs(7))
//! );
//! ```

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use thiserror::Error;

use crate::protocol::SubscriptionTier;
use crate::support::{SupportConfig, SupportNotice, Trigger};

/// A Slack incoming-webhook URL. `Debug` and `Display` show only its scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

/// A Slack setting was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlackError {
    /// Not an `http://` or `https://` URL with a host.
    #[error("a webhook URL must be an http(s) URL with a host")]
    InvalidWebhookUrl,
    /// The public base URL (for the dashboard link) is not an `http://` or `https://` URL.
    #[error("the public URL (TIPPEN_PUBLIC_URL) must be an http(s) URL, got {0:?}")]
    InvalidPublicUrl(String),
}

impl WebhookUrl {
    /// Checks that `url` is an http(s) URL with a host.
    pub fn parse(url: &str) -> Result<Self, SlackError> {
        let url = url.trim();
        let uri: http::Uri = url.parse().map_err(|_| SlackError::InvalidWebhookUrl)?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(WebhookUrl(url.to_owned())),
            _ => Err(SlackError::InvalidWebhookUrl),
        }
    }

    /// The URL itself, to send the request to. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        let uri: Option<http::Uri> = self.0.parse().ok();
        match uri
            .as_ref()
            .and_then(|u| Some((u.scheme_str()?, u.host()?)))
        {
            Some((scheme, host)) => format!("{scheme}://{host}/…"),
            None => "…".to_owned(),
        }
    }
}

impl serde::Serialize for WebhookUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for WebhookUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        WebhookUrl::parse(&url).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted())
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How often and how long to retry a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included). Default 4.
    pub max_attempts: u32,
    /// Wait before the second attempt when the answer names none; doubles per attempt.
    /// Default 1 s.
    pub base_delay: Duration,
    /// Longest wait, also for a `Retry-After` (a longer one gives up). Default 60 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Where Slack notifications go and what they link to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackConfig {
    /// The incoming webhook.
    pub webhook: WebhookUrl,
    /// The server's public base URL (e.g. `https://tippen.example.com`), for the link back to
    /// the dashboard; without it the message has no link.
    pub dashboard_base_url: Option<String>,
    /// Retries.
    pub retry: RetryPolicy,
}

impl SlackConfig {
    /// The configuration that a webhook URL setting and a public base URL setting name
    /// (`TIPPEN_SLACK_WEBHOOK_URL`, `TIPPEN_PUBLIC_URL` on every host); `None` without a
    /// webhook. Blank settings count as unset.
    pub fn from_settings(
        webhook: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Option<Self>, SlackError> {
        let Some(webhook) = webhook.map(str::trim).filter(|w| !w.is_empty()) else {
            return Ok(None);
        };
        let mut config = SlackConfig::new(WebhookUrl::parse(webhook)?);
        if let Some(base) = public_url.map(str::trim).filter(|b| !b.is_empty()) {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(SlackError::InvalidPublicUrl(base.to_owned()));
            }
            config.dashboard_base_url = Some(base.to_owned());
        }
        Ok(Some(config))
    }

    /// Notifications to `webhook`, no dashboard link, default retries.
    pub fn new(webhook: WebhookUrl) -> Self {
        SlackConfig {
            webhook,
            dashboard_base_url: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Slack took the message.
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop; the reason, for the log (never the URL).
    GiveUp(String),
}

fn backoff(attempt: u32, policy: &RetryPolicy) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay)
}

/// The `Retry-After` of a response, in whole seconds (Slack sends seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What attempt number `attempt` (from 1) answering `status` with `headers` means: 2xx is
/// delivered; 429 and 5xx are retried (after `Retry-After` when given, else exponential
/// backoff) while attempts remain; anything else gives up.
pub fn after_response(
    status: StatusCode,
    headers: &HeaderMap,
    attempt: u32,
    policy: &RetryPolicy,
) -> Delivery {
    if status.is_success() {
        return Delivery::Delivered;
    }
    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    if !retryable {
        return Delivery::GiveUp(format!("the receiver answered {status}"));
    }
    if attempt >= policy.max_attempts {
        return Delivery::GiveUp(format!("the receiver answered {status} {attempt} times"));
    }
    match retry_after(headers) {
        Some(wait) if wait > policy.max_delay => Delivery::GiveUp(format!(
            "the receiver answered {status} with Retry-After {}s, beyond the {}s limit",
            wait.as_secs(),
            policy.max_delay.as_secs()
        )),
        Some(wait) => Delivery::RetryAfter(wait),
        None => Delivery::RetryAfter(backoff(attempt, policy)),
    }
}

/// What a failure to get any response (connection refused, timeout) on attempt `attempt`
/// means: retry with backoff while attempts remain.
pub fn after_transport_error(attempt: u32, policy: &RetryPolicy) -> Delivery {
    if attempt >= policy.max_attempts {
        Delivery::GiveUp(format!("the receiver was unreachable {attempt} times"))
    } else {
        Delivery::RetryAfter(backoff(attempt, policy))
    }
}

/// `&`, `<` and `>` escaped as Slack's mrkdwn wants.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tier_name(tier: Option<SubscriptionTier>) -> &'static str {
    match tier {
        Some(SubscriptionTier::FreeTrial) => "Free Trial",
        Some(SubscriptionTier::Paid) => "Paid",
        Some(SubscriptionTier::Enterprise) => "Enterprise",
        None => "Unknown tier",
    }
}

pub(crate) fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

pub(crate) fn percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The dashboard link for a user: `<base>/dashboard#support=<userId>`.
pub fn dashboard_link(base: &str, user_id: &str) -> String {
    format!(
        "{}/dashboard#support={}",
        base.trim_end_matches('/'),
        percent_encode(user_id)
    )
}

/// The incoming-webhook message for a notice: a plain `text` (notifications, old clients)
/// and `blocks` with the user, email, tier, page, time on page, trigger(s), an activity
/// summary and, with a base URL, a link back to the dashboard.
pub fn message(
    notice: &SupportNotice,
    support: &SupportConfig,
    dashboard_base_url: Option<&str>,
) -> Value {
    let u = &notice.user;
    let who = u.user_email.as_deref().unwrap_or(&u.user_id);
    let triggers: Vec<Trigger> = if notice.raised.is_empty() {
        u.triggers.clone()
    } else {
        notice.raised.clone()
    };
    let trigger_text = triggers
        .iter()
        .map(|t| t.describe(support))
        .collect::<Vec<_>>()
        .join("; ");
    let page = u.route.as_deref().unwrap_or("unknown");
    let on_page = duration_text(Duration::from_millis(u.time_on_page_ms));
    let last_active = u.last_activity.clone();
    let text = format!(
        "🚨 User needs support: {} ({}) on {} — {}",
        escape(who),
        tier_name(u.subscription_tier),
        escape(page),
        escape(&trigger_text)
    );
    let mut summary = format!(
        "• Total events: {}\n• Errors: {} ({} in the last {} min)\n• Events in the last {} min: {}\n• Last active: {}",
        u.event_count,
        u.error_count,
        u.errors_in_window,
        support.error_window.as_secs().div_ceil(60),
        support.low_activity_window.as_secs().div_ceil(60),
        u.events_in_window,
        last_active
    );
    if let Some(err) = &u.last_error {
        summary.push_str(&format!("\n• Last error: {}", escape(err)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "🚨 User Needs Support"}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*User*\n{}", escape(&u.user_id))},
            {"type": "mrkdwn", "text": format!("*Email*\n{}", escape(u.user_email.as_deref().unwrap_or("—")))},
            {"type": "mrkdwn", "text": format!("*Tier*\n{}", tier_name(u.subscription_tier))},
            {"type": "mrkdwn", "text": format!("*Current page*\n{}", escape(page))},
            {"type": "mrkdwn", "text": format!("*Time on page*\n{on_page}")},
            {"type": "mrkdwn", "text": format!("*Trigger*\n{}", escape(&trigger_text))},
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Activity summary*\n{summary}")}}),
    ];
    if let Some(base) = dashboard_base_url {
        let link = dashboard_link(base, &u.user_id);
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "View in dashboard"}, "url": link}
        ]}));
    }
    json!({ "text": text, "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::support::UserSummary;

    #[test]
    fn settings_name_a_config_or_say_what_is_wrong() {
        assert_eq!(
            SlackConfig::from_settings(None, Some("https://x")),
            Ok(None)
        );
        assert_eq!(SlackConfig::from_settings(Some("  "), None), Ok(None));
        let c = SlackConfig::from_settings(
            Some(" https://hooks.slack.com/services/T/B/x "),
            Some("https://tippen.example"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.dashboard_base_url.as_deref(),
            Some("https://tippen.example")
        );
        assert_eq!(
            SlackConfig::from_settings(Some("ftp://x"), None),
            Err(SlackError::InvalidWebhookUrl)
        );
        assert_eq!(
            SlackConfig::from_settings(Some("https://hooks.slack.com/x"), Some("tippen.example")),
            Err(SlackError::InvalidPublicUrl("tippen.example".into()))
        );
    }

    fn notice() -> SupportNotice {
        SupportNotice {
            site: crate::site::SiteId::from("s"),
            user: UserSummary {
                user_id: "user_123".into(),
                user_email: Some("john@acme.com".into()),
                subscription_tier: Some(SubscriptionTier::FreeTrial),
                route: Some("/dashboard/<analytics>".into()),
                on_route_since: None,
                time_on_page_ms: 383_000,
                first_seen: "2024-10-16T12:00:00.000Z".into(),
                last_activity: "2024-10-16T12:06:00.000Z".into(),
                present: true,
                events_in_window: 2,
                errors_in_window: 4,
                event_count: 45,
                error_count: 4,
                last_error: Some("Failed to load".into()),
                needs_support: true,
                triggers: vec![Trigger::Stuck, Trigger::ErrorBurst],
                alert_since: None,
            },
            raised: vec![Trigger::ErrorBurst],
            at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn message_has_every_part_and_escapes() {
        let m = message(
            &notice(),
            &SupportConfig::default(),
            Some("https://t.example/"),
        );
        let text = m.to_string();
        for part in [
            "user_123",
            "john@acme.com",
            "Free Trial",
            "/dashboard/&lt;analytics&gt;",
            "6m 23s",
            "Errors: &gt; 3 in 5 minutes",
            "Total events: 45",
            "https://t.example/dashboard#support=user_123",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        assert!(!text.contains("<analytics>"));
        let no_link = message(&notice(), &SupportConfig::default(), None).to_string();
        assert!(!no_link.contains("/dashboard#support"));
    }

    #[test]
    fn retries_only_what_may_succeed_later() {
        let p = RetryPolicy::default();
        let h = HeaderMap::new();
        assert_eq!(
            after_response(StatusCode::OK, &h, 1, &p),
            Delivery::Delivered
        );
        assert_eq!(
            after_response(StatusCode::SERVICE_UNAVAILABLE, &h, 2, &p),
            Delivery::RetryAfter(Duration::from_secs(2))
        );
        assert!(matches!(
            after_response(StatusCode::BAD_REQUEST, &h, 1, &p),
            Delivery::GiveUp(_)
        ));
        assert!(matches!(
            after_response(StatusCode::TOO_MANY_REQUESTS, &h, 4, &p),
            Delivery::GiveUp(_)
        ));
        let mut long = HeaderMap::new();
        long.insert(header::RETRY_AFTER, "3600".parse().unwrap());
        assert!(matches!(
            after_response(StatusCode::TOO_MANY_REQUESTS, &long, 1, &p),
            Delivery::GiveUp(_)
        ));
        assert_eq!(
            after_transport_error(1, &p),
            Delivery::RetryAfter(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_url_is_never_shown() {
        let url = WebhookUrl::parse("https://hooks.slack.com/services/T1/B2/secret").unwrap();
        let cfg = SlackConfig::new(url.clone());
        for shown in [format!("{url}"), format!("{url:?}"), format!("{cfg:?}")] {
            assert!(!shown.contains("secret"), "{shown}");
        }
        assert_eq!(
            WebhookUrl::parse("ftp://x/y"),
            Err(SlackError::InvalidWebhookUrl)
        );
        assert_eq!(
            WebhookUrl::parse("nope"),
            Err(SlackError::InvalidWebhookUrl)
        );
    }
}
