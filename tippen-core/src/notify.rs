//! One delivery path for every kind of alert, sans-IO.
//!
//! The core hands a host [`Notice`]s (support alerts and alert-rule alerts alike, in
//! [`Effects::notifications`](crate::Effects::notifications)); [`Notifier::outgoing`] turns each into
//! the HTTP requests it needs — Slack messages (Block Kit) and signed webhooks — and
//! [`send`] delivers one of them with the host's HTTP transport and timer, retrying 429 and
//! 5xx answers with backoff and honouring `Retry-After`. Every host calls these two and
//! nothing else, so delivery behaves the same on each.
//!
//! # Webhooks
//! A webhook is a `POST` of the alert as JSON (`{"type":"alert","alertId",…}`, see
//! [`webhook_body`]) with the header
//!
//! ```text
//! Tippen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! The receiver recomputes the HMAC over the timestamp, a dot and the raw body with the
//! webhook's secret, compares in constant time, and refuses timestamps older than a few
//! minutes (replays). `docs/alerts.md` has the snippet for Rust, Node and Python;
//! [`verify`] is the Rust one.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, header};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::alerts::{AlertNotice, SigningSecret};
use crate::slack::{
    self, Delivery, RetryPolicy, SlackConfig, WebhookUrl, duration_text, escape, percent_encode,
};
use crate::support::{SupportConfig, SupportNotice};

/// The header a webhook's signature is in.
pub const SIGNATURE_HEADER: &str = "tippen-signature";

/// Something to tell people outside the dashboards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A logged-in user needs support (the server-wide Slack webhook).
    Support(Box<SupportNotice>),
    /// An alert rule matched a visit (the site's own destinations).
    Alert(Box<AlertNotice>),
}

/// What a delivery is for, for logs and the delivery log: never a URL or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The site.
    pub site: String,
    /// `support` or `alert`.
    pub kind: &'static str,
    /// The user (support) or the alert id.
    pub id: String,
    /// `slack` or `webhook`.
    pub channel: &'static str,
    /// Where: the destination's scheme and host only (`https://hooks.slack.com/…`).
    pub destination: String,
}

/// One HTTP request to deliver, with how to retry it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// What it is for.
    pub label: Label,
    /// Where it goes (never logged).
    pub url: WebhookUrl,
    /// The JSON body.
    pub body: Bytes,
    /// The webhook's signing secret (`None`: a Slack message).
    pub secret: Option<SigningSecret>,
    /// Retries.
    pub retry: RetryPolicy,
}

/// The server-wide settings deliveries need: the support alerts' Slack webhook (and the
/// dashboard's public URL for links), and the support rules (for the message text).
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    /// The server-wide Slack webhook of support alerts.
    pub slack: Option<SlackConfig>,
    /// The support rules (their windows appear in the message).
    pub support: SupportConfig,
    /// The server's public base URL, for links back to the dashboard in alerts.
    pub public_url: Option<String>,
}

impl Notifier {
    /// A notifier with the support alerts' Slack configuration, if any, and the core's
    /// configuration (the support rules, the public URL of [`AlertsConfig`](crate::alerts::AlertsConfig)).
    pub fn new(slack: Option<SlackConfig>, config: &crate::Config) -> Self {
        Notifier {
            slack,
            support: config.support.clone(),
            public_url: config.alerts.public_url.clone(),
        }
    }

    /// The requests `notices` need, in order.
    pub fn outgoing(&self, notices: &[Notice]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for notice in notices {
            match notice {
                Notice::Support(n) => match &self.slack {
                    Some(config) => out.push(Outgoing {
                        label: Label {
                            site: n.site.to_string(),
                            kind: "support",
                            id: n.user.user_id.clone(),
                            channel: "slack",
                            destination: config.webhook.to_string(),
                        },
                        url: config.webhook.clone(),
                        body: to_bytes(&slack::message(
                            n,
                            &self.support,
                            config.dashboard_base_url.as_deref(),
                        )),
                        secret: None,
                        retry: config.retry.clone(),
                    }),
                    None => tracing::debug!(
                        site = %n.site,
                        "no Slack webhook configured; support alerts go to dashboards only"
                    ),
                },
                Notice::Alert(a) => {
                    let label = |channel, url: &WebhookUrl| Label {
                        site: a.site.to_string(),
                        kind: "alert",
                        id: a.alert_id.clone(),
                        channel,
                        destination: url.to_string(),
                    };
                    if let Some(url) = &a.destinations.slack_webhook_url {
                        out.push(Outgoing {
                            label: label("slack", url),
                            url: url.clone(),
                            body: to_bytes(&alert_slack_message(a, self.public_url.as_deref())),
                            secret: None,
                            retry: RetryPolicy::default(),
                        });
                    }
                    for hook in &a.destinations.webhooks {
                        out.push(Outgoing {
                            label: label("webhook", &hook.url),
                            url: hook.url.clone(),
                            body: to_bytes(&webhook_body(a, self.public_url.as_deref())),
                            secret: Some(hook.secret.clone()),
                            retry: RetryPolicy::default(),
                        });
                    }
                }
            }
        }
        out
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &SigningSecret, unix_seconds: i64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac(secret, unix_seconds, body).finalize().into_bytes())
    )
}

fn mac(secret: &SigningSecret, unix_seconds: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a `Tippen-Signature` header for `body` (constant-time), refusing timestamps more
/// than `tolerance` away from `now_unix_seconds`.
pub fn verify(
    secret: &SigningSecret,
    header: &str,
    body: &[u8],
    now_unix_seconds: i64,
    tolerance: Duration,
) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if (now_unix_seconds - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    v1.iter()
        .any(|sig| mac(secret, t, body).verify_slice(sig).is_ok())
}

/// The request for one attempt of `outgoing`, signed at `unix_seconds` when it is a webhook.
pub fn request(outgoing: &Outgoing, unix_seconds: i64) -> Request<Bytes> {
    let mut req = Request::new(outgoing.body.clone());
    *req.method_mut() = http::Method::POST;
    if let Ok(uri) = outgoing.url.expose().parse() {
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(secret) = &outgoing.secret
        && let Ok(value) = signature(secret, unix_seconds, &outgoing.body).parse()
    {
        headers.insert(SIGNATURE_HEADER, value);
    }
    req
}

/// The wall clock in Unix seconds, to sign with ([`crate::SystemClock`]; a Worker passes its
/// own clock to [`send`] instead).
#[cfg(not(target_arch = "wasm32"))]
pub fn unix_now() -> i64 {
    use crate::clock::Clock;
    crate::SystemClock.now().as_millis().div_euclid(1000)
}

/// How [`send`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Taken after this many attempts.
    Yes {
        /// Attempts made.
        attempts: u32,
    },
    /// Given up.
    No {
        /// Attempts made.
        attempts: u32,
        /// Why (never the URL).
        reason: String,
    },
}

impl Sent {
    /// Logs the outcome (never the URL or a secret): `Slack notified` / `Slack notification
    /// dropped`, `webhook delivered` / `webhook delivery dropped`, with the site, the kind, the
    /// alert id or user, and the attempts.
    pub fn log(&self, label: &Label) {
        let slack = label.channel == "slack";
        match self {
            Sent::Yes { attempts } => tracing::info!(
                site = %label.site, kind = label.kind, id = %label.id, channel = label.channel,
                attempts,
                "{}", if slack { "Slack notified" } else { "webhook delivered" }
            ),
            Sent::No { attempts, reason } => tracing::warn!(
                site = %label.site, kind = label.kind, id = %label.id, channel = label.channel,
                attempts, %reason,
                "{}", if slack { "Slack notification dropped" } else { "webhook delivery dropped" }
            ),
        }
    }
}

/// Delivers `outgoing` with `transport`, retrying as its policy says and waiting with the
/// host's `sleep`; `unix_now` gives the time each attempt is signed at. No IO of its own; a
/// host that must stop early drops the future.
pub async fn send<F, Fut>(
    transport: &dyn crate::transport::Transport,
    outgoing: &Outgoing,
    unix_now: impl Fn() -> i64,
    mut sleep: F,
) -> Sent
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let next = match transport.send(request(outgoing, unix_now())).await {
            Ok(response) => slack::after_response(
                response.status(),
                response.headers(),
                attempt,
                &outgoing.retry,
            ),
            Err(e) => {
                tracing::debug!(attempt, error = %e, "notification receiver unreachable");
                slack::after_transport_error(attempt, &outgoing.retry)
            }
        };
        match next {
            Delivery::Delivered => return Sent::Yes { attempts: attempt },
            Delivery::GiveUp(reason) => {
                return Sent::No {
                    attempts: attempt,
                    reason,
                };
            }
            Delivery::RetryAfter(wait) => sleep(wait).await,
        }
    }
}

/// The dashboard link that opens the dashboard with `visitor_id` selected.
pub fn visitor_link(base: &str, visitor_id: &str) -> String {
    format!(
        "{}/dashboard#visitor={}",
        base.trim_end_matches('/'),
        percent_encode(visitor_id)
    )
}

/// The dashboard link to a company's visits.
pub fn visits_link(base: &str, company: &str) -> String {
    format!(
        "{}/dashboard#visits={}",
        base.trim_end_matches('/'),
        percent_encode(company)
    )
}

/// The Slack message (Block Kit) of an alert: the company, the pages, time on site, the
/// lead score, and buttons **Invite to a call** and **View visits** when the server's public
/// URL is known.
pub fn alert_slack_message(a: &AlertNotice, public_url: Option<&str>) -> Value {
    let c = &a.subject.company;
    let company = match &c.domain {
        Some(d) => format!("{} ({})", c.name, d),
        None => c.name.clone(),
    };
    let pages = if a.subject.pages.is_empty() {
        "—".to_owned()
    } else {
        a.subject
            .pages
            .iter()
            .take(10)
            .map(|p| format!("`{}`", escape(p)))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let text = format!(
        "🔔 {}: {} is on {}",
        escape(&a.rule_name),
        escape(&company),
        escape(&a.site_name)
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("🔔 {}", a.rule_name)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Company*\n{}", escape(&company))},
            {"type": "mrkdwn", "text": format!("*Industry*\n{}", escape(c.industry.as_deref().unwrap_or("—")))},
            {"type": "mrkdwn", "text": format!("*Employees*\n{}", escape(c.employees.as_deref().unwrap_or("—")))},
            {"type": "mrkdwn", "text": format!("*Location*\n{}", escape(c.enriched_location.as_deref().unwrap_or(&c.location)))},
            {"type": "mrkdwn", "text": format!("*Time on site*\n{}", duration_text(Duration::from_millis(a.subject.time_on_site_ms)))},
            {"type": "mrkdwn", "text": format!("*Lead score*\n{}", a.lead_score)},
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Pages*\n{pages}")}}),
    ];
    if let Some(base) = public_url {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Invite to a call"},
             "url": visitor_link(base, &a.subject.visitor_id), "action_id": "tippen_invite"},
            {"type": "button", "text": {"type": "plain_text", "text": "View visits"},
             "url": visits_link(base, c.domain.as_deref().unwrap_or(&c.name)), "action_id": "tippen_visits"},
        ]}));
    }
    json!({"text": text, "blocks": blocks})
}

/// The JSON a webhook receives for an alert.
pub fn webhook_body(a: &AlertNotice, public_url: Option<&str>) -> Value {
    let c = &a.subject.company;
    json!({
        "type": "alert",
        "alertId": a.alert_id,
        "siteId": a.site.to_string(),
        "rule": {"id": a.rule_id, "name": a.rule_name},
        "visitorId": a.subject.visitor_id,
        "company": {
            "name": c.name, "domain": c.domain, "industry": c.industry,
            "employees": c.employees, "revenue": c.revenue,
            "location": c.enriched_location.as_deref().unwrap_or(&c.location),
        },
        "pages": a.subject.pages,
        "pageViews": a.subject.page_views,
        "timeOnSiteMs": a.subject.time_on_site_ms,
        "leadScore": a.lead_score,
        "at": a.at.as_millis(),
        "dashboardUrl": public_url.map(|b| visitor_link(b, &a.subject.visitor_id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a script; records the signature headers it was sent.
    struct Scripted(
        std::sync::Mutex<Vec<Result<http::Response<Bytes>, crate::TransportError>>>,
        std::sync::Mutex<Vec<Option<String>>>,
    );

    #[async_trait::async_trait]
    impl crate::Transport for Scripted {
        async fn send(
            &self,
            request: Request<Bytes>,
        ) -> Result<http::Response<Bytes>, crate::TransportError> {
            assert_eq!(request.method(), http::Method::POST);
            assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
            self.1.lock().unwrap().push(
                request
                    .headers()
                    .get(SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            self.0.lock().unwrap().remove(0)
        }
    }

    fn answer(status: u16, retry_after: Option<&str>) -> http::Response<Bytes> {
        let mut r = http::Response::new(Bytes::new());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, s.parse().unwrap());
        }
        r
    }

    fn outgoing(secret: Option<&str>) -> Outgoing {
        Outgoing {
            label: Label {
                site: "a".into(),
                kind: "alert",
                id: "alt_1".into(),
                channel: "webhook",
                destination: "https://hooks.example/…".into(),
            },
            url: WebhookUrl::parse("https://hooks.example/x").unwrap(),
            body: Bytes::from_static(b"{}"),
            secret: secret.map(SigningSecret::new),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn send_retries_with_the_hosts_sleep_and_signs_each_attempt() {
        let transport = Scripted(
            std::sync::Mutex::new(vec![
                Ok(answer(429, Some("2"))),
                Err(crate::TransportError::Timeout(10)),
                Ok(answer(502, None)),
                Ok(answer(200, None)),
            ]),
            Default::default(),
        );
        let mut slept = Vec::new();
        let clock = std::cell::Cell::new(100);
        let out = outgoing(Some("0123456789abcdef"));
        let done = futures_util::FutureExt::now_or_never(send(
            &transport,
            &out,
            || {
                clock.set(clock.get() + 1);
                clock.get()
            },
            |d| {
                slept.push(d);
                std::future::ready(())
            },
        ))
        .unwrap();
        assert_eq!(done, Sent::Yes { attempts: 4 });
        assert_eq!(
            slept,
            [
                Duration::from_secs(2),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        let signatures = transport.1.lock().unwrap().clone();
        let secret = SigningSecret::new("0123456789abcdef");
        for (i, sig) in signatures.iter().enumerate() {
            let t = 101 + i as i64;
            assert_eq!(sig.as_deref(), Some(signature(&secret, t, b"{}").as_str()));
        }
        let transport = Scripted(
            std::sync::Mutex::new(vec![Ok(answer(404, None))]),
            Default::default(),
        );
        let done = futures_util::FutureExt::now_or_never(send(
            &transport,
            &outgoing(None),
            || 0,
            |_| std::future::ready(()),
        ))
        .unwrap();
        assert!(matches!(done, Sent::No { attempts: 1, .. }));
        assert_eq!(
            *transport.1.lock().unwrap(),
            vec![None],
            "Slack messages are not signed"
        );
    }

    #[test]
    fn signatures_verify_and_refuse_changes() {
        let secret = SigningSecret::new("whsec_0123456789abcdef");
        let body = br#"{"type":"alert"}"#;
        let header = signature(&secret, 1_800_000_000, body);
        let ok = |h: &str, b: &[u8], now| verify(&secret, h, b, now, Duration::from_secs(300));
        assert!(ok(&header, body, 1_800_000_010));
        assert!(!ok(&header, b"{\"type\":\"alertX\"}", 1_800_000_010));
        assert!(!ok(&header, body, 1_800_001_000), "too old");
        assert!(!verify(
            &SigningSecret::new("another secret 0123"),
            &header,
            body,
            1_800_000_000,
            Duration::from_secs(300)
        ));
        // Known answer, so the documented snippets in other languages can be checked by hand.
        assert_eq!(
            signature(&SigningSecret::new("secret"), 1, b"{}"),
            format!(
                "t=1,v1={}",
                hex::encode(
                    <Hmac<Sha256> as Mac>::new_from_slice(b"secret")
                        .unwrap()
                        .chain_update(b"1.{}")
                        .finalize()
                        .into_bytes()
                )
            )
        );
    }
}
