//! Slack delivery against a local HTTP receiver on a real socket: the payload's shape, one
//! message per alert, the per-user cooldown, retries on 429 (honouring `Retry-After`) and
//! 5xx, and a webhook URL that never reaches the logs.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use tippen_axum::{HostConfig, TippenHost};
use tippen_core::slack::{RetryPolicy, SlackConfig, WebhookUrl};
use tippen_core::support::SupportConfig;
use tippen_core::{Config, MemoryStore, Site, SystemClock, Tippen};

const SECRET_PATH: &str = "/services/T0001/B0001/SECRETxyz123";

/// A scripted answer: status and `Retry-After`.
type Answer = (u16, Option<&'static str>);

/// A stand-in for Slack: records every POST, answers from a script (then 200 `ok`).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

async fn receive(State(r): State<Receiver>, body: String) -> impl IntoResponse {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push((Instant::now(), value));
    let next = r.script.lock().unwrap().pop_front();
    let mut headers = HeaderMap::new();
    match next {
        Some((status, retry_after)) => {
            if let Some(s) = retry_after {
                headers.insert("retry-after", s.parse().unwrap());
            }
            (
                StatusCode::from_u16(status).unwrap(),
                headers,
                "rate_limited",
            )
        }
        None => (StatusCode::OK, headers, "ok"),
    }
}

async fn start_receiver(script: &[Answer]) -> (Receiver, String) {
    let r = Receiver::default();
    r.script.lock().unwrap().extend(script.iter().copied());
    let app = Router::new()
        .route(SECRET_PATH, post(receive))
        .with_state(r.clone());
    let addr = common::serve(app).await;
    (r, format!("http://{addr}{SECRET_PATH}"))
}

async fn start_tippen(support: SupportConfig, webhook: &str, retry: RetryPolicy) -> String {
    let tippen = Arc::new(Tippen::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Config {
            support,
            ..Config::default()
        },
    ));
    tippen
        .put_site(&Site::new("a", "Site A", "pk_a", "sk_a"))
        .await
        .unwrap();
    let host = TippenHost::with_config(
        tippen,
        HostConfig {
            slack: Some(SlackConfig {
                webhook: WebhookUrl::parse(webhook).unwrap(),
                dashboard_base_url: Some("https://tippen.example".into()),
                retry,
            }),
            ..HostConfig::default()
        },
    );
    let addr = common::serve(host.router()).await;
    format!("http://{addr}")
}

async fn errors(base: &str, user: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"type":"error","message":format!("TypeError {i}"),"route":"/billing","timestamp":1}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/track/user-activity"))
        .json(&json!({
            "apiKey": "pk_a",
            "userId": user,
            "userEmail": format!("{user}@acme.example"),
            "subscriptionTier": "free_trial",
            "events": events,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!(r#"{{"success":true,"stored":{n},"analyzed":true}}"#)
    );
}

async fn wait_for(r: &Receiver, n: usize, within: Duration) -> Vec<(Instant, Value)> {
    let end = Instant::now() + within;
    loop {
        let got = r.got.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Captured log output.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

// Current-thread runtime: every spawned task logs to the captured subscriber.
#[tokio::test]
async fn one_message_per_alert_after_a_429_honouring_retry_after_and_the_dashboard_hears_it() {
    let (logs, _guard) = capture_logs();
    let (receiver, webhook) = start_receiver(&[(429, Some("1"))]).await;
    let base = start_tippen(SupportConfig::default(), &webhook, RetryPolicy::default()).await;
    let ws_url = format!(
        "{}/ws/dashboard?apiKey=sk_a",
        base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    common::next_matching(&mut ws, Duration::from_secs(5), |m| {
        m["type"] == "INITIAL_VISITORS"
    })
    .await;

    errors(&base, "user_42", 4).await;
    let alert = common::next_matching(&mut ws, Duration::from_secs(5), |m| {
        m["type"] == "SUPPORT_ALERT"
    })
    .await;
    assert_eq!(alert["user"]["userId"], "user_42");
    assert_eq!(alert["raised"], json!(["error_burst"]));

    let got = wait_for(&receiver, 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "a 429, then the delivered retry");
    let gap = got[1].0 - got[0].0;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured (retried after {gap:?})"
    );
    assert_eq!(got[0].1, got[1].1, "the retry sends the same message");
    let m = &got[1].1;
    let text = m.to_string();
    assert!(m["text"].as_str().unwrap().contains("user_42@acme.example"));
    assert_eq!(m["blocks"][0]["type"], "header");
    for part in [
        "*User*\\nuser_42",
        "*Email*\\nuser_42@acme.example",
        "*Tier*\\nFree Trial",
        "*Current page*\\n/billing",
        "*Time on page*\\n",
        "*Trigger*\\nErrors: &gt; 3 in 5 minutes",
        "Total events: 4",
        "https://tippen.example/dashboard#support=user_42",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
    // More errors while the burst holds: no new alert, no new message.
    errors(&base, "user_42", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got.lock().unwrap().len(), 2);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Slack notified"), "{logs}");
    assert!(
        !logs.contains("SECRETxyz123"),
        "the webhook URL leaked: {logs}"
    );
}

#[tokio::test]
async fn the_cooldown_holds_back_a_second_alert_and_5xx_is_retried() {
    // Short windows so the real clock can show recovery and the cooldown.
    let support = SupportConfig {
        error_window: Duration::from_millis(400),
        slack_cooldown: Duration::from_millis(2500),
        ..SupportConfig::default()
    };
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let (receiver, webhook) = start_receiver(&[(503, None)]).await;
    let base = start_tippen(support, &webhook, retry).await;
    let t0 = Instant::now();
    errors(&base, "u", 4).await; // alert 1: notified (503, then delivered)
    let got = wait_for(&receiver, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2, "503 retried");
    assert!(got[1].0 - got[0].0 >= Duration::from_millis(90), "backoff");
    // The errors age out (400 ms): the host's timer sweeps, the user recovers.
    tokio::time::sleep(Duration::from_millis(700)).await;
    errors(&base, "u", 4).await; // alert 2, within the cooldown: dashboards only
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.got.lock().unwrap().len(),
        2,
        "no message within the cooldown"
    );
    // After the cooldown (2.5 s from the first) and another recovery: notified again.
    let wait = Duration::from_millis(2700).saturating_sub(t0.elapsed());
    tokio::time::sleep(wait).await;
    errors(&base, "u", 4).await;
    let got = wait_for(&receiver, 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3, "a new alert after the cooldown is sent");
    // Another user has a cooldown of their own.
    errors(&base, "someone_else", 4).await;
    let got = wait_for(&receiver, 4, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    assert!(got[3].1.to_string().contains("someone_else"));
}

#[tokio::test]
async fn an_unreachable_webhook_gives_up_without_logging_its_url() {
    let (logs, _guard) = capture_logs();
    // A port with nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let webhook = format!("http://{closed}{SECRET_PATH}");
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    let base = start_tippen(SupportConfig::default(), &webhook, retry).await;
    errors(&base, "u", 4).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        if text.contains("Slack notification dropped") {
            assert!(text.contains("unreachable 2 times"), "{text}");
            assert!(
                !text.contains("SECRETxyz123"),
                "the webhook URL leaked: {text}"
            );
            break;
        }
        assert!(Instant::now() < end, "no give-up logged: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
