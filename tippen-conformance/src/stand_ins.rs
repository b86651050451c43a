//! Stand-ins of the outbound services a host talks to, served by the suite itself on one
//! loopback port, so every host's test only points its settings at them:
//!
//! | path | stands in for | host setting |
//! |---|---|---|
//! | `POST /video/create-session` | the video provider (the predecessor's API) | `TIPPEN_VIDEO_PROVIDER_URL=<base>/video` |
//! | `POST /slack/hook` | a Slack incoming webhook | `TIPPEN_SLACK_WEBHOOK_URL=<base>/slack/hook` |
//! | `GET /ipinfo/<ip>` | IPinfo, answering after [`ENRICHMENT_DELAY`] | `TIPPEN_ENRICHMENT_PROVIDER=ipinfo`, `TIPPEN_ENRICHMENT_API_KEY=`[`IPINFO_TOKEN`], `TIPPEN_ENRICHMENT_BASE_URL=<base>/ipinfo` |
//! | `POST /hooks/<name>` | an alert webhook receiver: answers 200, except the first delivery of an alert whose rule id starts with `flaky`, answered 500 | a site's `alertDestinations` |
//! | `GET /control/state` | – | what the stand-ins were asked (JSON), for debugging |
//!
//! The stand-ins serve every case at once: each case recognises its own requests (by the
//! `hostName` it gave the video provider, the user in a Slack message, the address it looked
//! up). The video provider's answer is chosen by the `hostName`'s first word:
//! `fail-500` → 500, `malformed` → 200 without `sessionId`/`urls`, `rate-limited` → 429 with
//! `Retry-After: 7`; anything else → a session `sess_<n>` with
//! `urls.host = https://video.conformance.test/host/sess_<n>` and the guest URL likewise.
//!
//! IPinfo names [`STAND_IN_COMPANY`] for every address except those in `8.0.0.0/8`:
//! `8.a.b.c` is the company `Target a-b-c` at `t-a-b-c.target.example` (the alert cases
//! make up a target account of their own that way).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The API key the IPinfo stand-in accepts (`Authorization: Bearer <token>`); any other is
/// answered `403`, as IPinfo answers an unknown token.
pub const IPINFO_TOKEN: &str = "conformance_token";

/// How long the IPinfo stand-in takes to answer, so that a host whose tracking answer waited
/// for the lookup shows.
pub const ENRICHMENT_DELAY: Duration = Duration::from_millis(500);

/// The company the IPinfo stand-in names for every address.
pub(crate) const STAND_IN_COMPANY: &str = "Stand-in Corp";
/// Its domain.
pub(crate) const STAND_IN_DOMAIN: &str = "standin.example";

/// The company the IPinfo stand-in names for an `8.a.b.c` address: `Target a-b-c` at
/// `t-a-b-c.target.example` (name, domain); `None` for any other address.
pub(crate) fn target_company(ip: &str) -> Option<(String, String)> {
    let tag = ip.strip_prefix("8.")?.replace('.', "-");
    Some((format!("Target {tag}"), format!("t-{tag}.target.example")))
}

/// One request the IPinfo stand-in received.
#[derive(Debug, Clone)]
pub(crate) struct IpinfoRequest {
    /// The address looked up.
    pub(crate) ip: String,
    /// The `Authorization` header, as sent.
    pub(crate) authorization: Option<String>,
    /// When the stand-in answered (after [`ENRICHMENT_DELAY`]), once it has.
    pub(crate) answered_at: Option<Instant>,
}

/// One delivery the webhook receiver got.
#[derive(Debug, Clone)]
pub(crate) struct HookDelivery {
    /// The `<name>` of `/hooks/<name>`.
    pub(crate) name: String,
    /// The raw body.
    pub(crate) body: String,
    /// The `Tippen-Signature` header, as sent.
    pub(crate) signature: Option<String>,
    /// The status it was answered.
    pub(crate) status: u16,
    /// When it arrived.
    pub(crate) at: Instant,
}

#[derive(Default)]
struct Recorded {
    video: Vec<Value>,
    slack: Vec<(Instant, Value)>,
    ipinfo: Vec<IpinfoRequest>,
    hooks: Vec<HookDelivery>,
}

type Shared = Arc<Mutex<Recorded>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Recorded> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops the server when the last handle goes.
struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running stand-ins (a cheap handle; the server stops when the last clone is dropped).
#[derive(Clone)]
pub struct StandIns {
    addr: SocketAddr,
    state: Shared,
    _serving: Arc<Serving>,
}

impl fmt::Debug for StandIns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIns")
            .field("addr", &self.addr)
            .finish()
    }
}

impl StandIns {
    /// Serves the stand-ins on `addr` (port 0 picks a free one) from the current tokio
    /// runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Shared::default();
        let app = Router::new()
            .route("/video/create-session", post(create_session))
            .route("/slack/hook", post(slack_hook))
            .route("/hooks/{name}", post(webhook))
            .route("/ipinfo/{ip}", get(ipinfo))
            .route("/control/state", get(control_state))
            .with_state(state.clone());
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandIns {
            addr,
            state,
            _serving: Arc::new(Serving(serving)),
        })
    }

    /// Where the stand-ins listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The video provider's base URL (`TIPPEN_VIDEO_PROVIDER_URL`).
    pub fn video_provider_url(&self) -> String {
        format!("{}/video", self.base_url())
    }

    /// The Slack webhook (`TIPPEN_SLACK_WEBHOOK_URL`).
    pub fn slack_webhook_url(&self) -> String {
        format!("{}/slack/hook", self.base_url())
    }

    /// IPinfo's base URL (`TIPPEN_ENRICHMENT_BASE_URL`, with provider `ipinfo` and the key
    /// [`IPINFO_TOKEN`]).
    pub fn ipinfo_base_url(&self) -> String {
        format!("{}/ipinfo", self.base_url())
    }

    /// The host settings that point a host at these stand-ins, as `NAME=value` lines.
    pub fn host_settings(&self) -> String {
        format!(
            "TIPPEN_VIDEO_PROVIDER_URL={}\nTIPPEN_SLACK_WEBHOOK_URL={}\nTIPPEN_ENRICHMENT_PROVIDER=ipinfo\nTIPPEN_ENRICHMENT_API_KEY={IPINFO_TOKEN}\nTIPPEN_ENRICHMENT_BASE_URL={}",
            self.video_provider_url(),
            self.slack_webhook_url(),
            self.ipinfo_base_url()
        )
    }

    /// The video provider's requests whose `hostName` contains `tag`.
    pub(crate) fn video_requests(&self, tag: &str) -> Vec<Value> {
        lock(&self.state)
            .video
            .iter()
            .filter(|b| b["hostName"].as_str().is_some_and(|h| h.contains(tag)))
            .cloned()
            .collect()
    }

    /// The Slack messages that mention `tag` anywhere.
    pub(crate) fn slack_messages(&self, tag: &str) -> Vec<Value> {
        self.slack_messages_at(tag)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// The Slack messages that mention `tag` anywhere, with when each arrived.
    pub(crate) fn slack_messages_at(&self, tag: &str) -> Vec<(Instant, Value)> {
        lock(&self.state)
            .slack
            .iter()
            .filter(|(_, m)| m.to_string().contains(tag))
            .cloned()
            .collect()
    }

    /// A webhook receiver's URL: `<base>/hooks/<name>`.
    pub(crate) fn hook_url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.base_url())
    }

    /// The deliveries to the webhook receivers whose body mentions `tag`.
    pub(crate) fn hook_deliveries(&self, tag: &str) -> Vec<HookDelivery> {
        lock(&self.state)
            .hooks
            .iter()
            .filter(|d| d.body.contains(tag))
            .cloned()
            .collect()
    }

    /// The IPinfo requests for `ip`.
    pub(crate) fn ipinfo_requests(&self, ip: &str) -> Vec<IpinfoRequest> {
        lock(&self.state)
            .ipinfo
            .iter()
            .filter(|r| r.ip == ip)
            .cloned()
            .collect()
    }

    /// How many lookups of `ip` the IPinfo stand-in received (for a host's own tests, such as
    /// two replicas sharing one lookup).
    pub fn ipinfo_lookups(&self, ip: &str) -> usize {
        lock(&self.state)
            .ipinfo
            .iter()
            .filter(|r| r.ip == ip)
            .count()
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn create_session(State(state): State<Shared>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| json!({"unparsable": body}));
    let mode = body["hostName"]
        .as_str()
        .and_then(|h| h.split_whitespace().next())
        .unwrap_or("")
        .to_owned();
    let n = {
        let mut recorded = lock(&state);
        recorded.video.push(body);
        recorded.video.len()
    };
    match mode.as_str() {
        "fail-500" => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"success": false, "error": "provider down (stand-in)"}),
        ),
        "malformed" => json_answer(StatusCode::OK, json!({"success": true})),
        "rate-limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            axum::Json(json!({"error": "slow down (stand-in)"})),
        )
            .into_response(),
        _ => json_answer(
            StatusCode::OK,
            json!({
                "success": true,
                "sessionId": format!("sess_{n}"),
                "roomId": format!("room_{n}"),
                "urls": {
                    "host": format!("https://video.conformance.test/host/sess_{n}"),
                    "guest": format!("https://video.conformance.test/guest/sess_{n}"),
                },
            }),
        ),
    }
}

async fn slack_hook(State(state): State<Shared>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| json!({"unparsable": body}));
    lock(&state).slack.push((Instant::now(), body));
    (StatusCode::OK, "ok").into_response()
}

async fn webhook(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let alert = parsed["alertId"].as_str().unwrap_or("").to_owned();
    let flaky = parsed["rule"]["id"]
        .as_str()
        .is_some_and(|r| r.starts_with("flaky"));
    let mut recorded = lock(&state);
    let seen = recorded
        .hooks
        .iter()
        .any(|d| d.name == name && d.body.contains(&format!("\"alertId\":\"{alert}\"")));
    let status = if flaky && !seen { 500 } else { 200 };
    recorded.hooks.push(HookDelivery {
        name,
        body,
        signature: headers
            .get("tippen-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status,
        at: Instant::now(),
    });
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "ok").into_response()
}

async fn ipinfo(
    State(state): State<Shared>,
    Path(ip): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let index = {
        let mut recorded = lock(&state);
        recorded.ipinfo.push(IpinfoRequest {
            ip: ip.clone(),
            authorization: authorization.clone(),
            answered_at: None,
        });
        recorded.ipinfo.len() - 1
    };
    tokio::time::sleep(ENRICHMENT_DELAY).await;
    lock(&state).ipinfo[index].answered_at = Some(Instant::now());
    if authorization.as_deref() != Some(&format!("Bearer {IPINFO_TOKEN}")) {
        return json_answer(
            StatusCode::FORBIDDEN,
            json!({"title": "Unknown token", "message": "Please ensure you've entered your token correctly."}),
        );
    }
    let company = match target_company(&ip) {
        Some((name, domain)) => json!({"name": name, "domain": domain, "type": "business"}),
        None => {
            json!({"name": STAND_IN_COMPANY, "domain": STAND_IN_DOMAIN, "type": "business"})
        }
    };
    json_answer(
        StatusCode::OK,
        json!({
            "ip": ip, "city": "Zurich", "region": "Zurich", "country": "CH",
            "org": "AS64500 Stand-in Networks",
            "company": company,
        }),
    )
}

async fn control_state(State(state): State<Shared>) -> Response {
    let recorded = lock(&state);
    let ipinfo: Vec<Value> = recorded
        .ipinfo
        .iter()
        .map(|r| json!({"ip": r.ip, "authorization": r.authorization, "answered": r.answered_at.is_some()}))
        .collect();
    json_answer(
        StatusCode::OK,
        json!({
            "video": recorded.video,
            "slack": recorded.slack.iter().map(|(_, m)| m).collect::<Vec<_>>(),
            "ipinfo": ipinfo,
            "hooks": recorded.hooks.iter().map(|d| json!({"name": d.name, "status": d.status, "body": d.body})).collect::<Vec<_>>(),
        }),
    )
}
