//! `POST /api/video-call` on a real loopback socket against a local stand-in of the video
//! provider (the predecessor's `…/create-session` API): one call creates the session and sends
//! the invite, the admin gets the host URL, the visitor's socket gets the guest URL; retries,
//! refusals and provider failures create nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::{Server, next_matching};
use http::StatusCode;
use serde_json::{Value, json};
use tippen_core::Site;
use tippen_core::video::CustomerConnect;

/// How the stand-in provider answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    ServerError,
    Malformed,
    RateLimited,
}

#[derive(Clone)]
struct Provider {
    mode: Arc<Mutex<Mode>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Provider {
    fn calls(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn create_session(
    State(p): State<Provider>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = {
        let mut bodies = p.bodies.lock().unwrap();
        bodies.push(body);
        bodies.len()
    };
    match *p.mode.lock().unwrap() {
        Mode::Ok => (
            StatusCode::OK,
            Json(json!({
                "success": true,
                "sessionId": format!("sess_{n}"),
                "roomId": format!("room_{n}"),
                "urls": {
                    "host": format!("https://video.example/host/sess_{n}"),
                    "guest": format!("https://video.example/guest/sess_{n}"),
                },
            })),
        ),
        Mode::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"success": false, "error": "boom"})),
        ),
        Mode::Malformed => (StatusCode::OK, Json(json!({"success": true}))),
        Mode::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "slow down"})),
        ),
    }
}

/// The stand-in provider at `http://…/public/video-connect`.
async fn start_provider() -> (String, Provider) {
    let provider = Provider {
        mode: Arc::new(Mutex::new(Mode::Ok)),
        bodies: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route("/public/video-connect/create-session", post(create_session))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}/public/video-connect"), provider)
}

async fn start(provider_url: Option<&str>) -> Server {
    common::start(
        &[Site::new("a", "Site A", "pk_a", "sk_a")],
        |tippen| match provider_url {
            Some(url) => tippen.with_video_provider(Arc::new(CustomerConnect::new(url))),
            None => tippen,
        },
    )
    .await
}

impl Server {
    async fn call(&self, body: Value) -> (u16, Value) {
        self.post("/api/video-call", "sk_a", body).await
    }

    /// The visitor's open invite as listed by `/api/visitors`.
    async fn listed_invite(&self, visitor_id: &str) -> Value {
        let v: Value = self
            .client
            .get(format!("{}/api/visitors?apiKey=sk_a", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        v["visitors"]
            .as_array()
            .expect("visitors")
            .iter()
            .find(|x| x["visitorId"] == visitor_id)
            .map(|x| x["invite"].clone())
            .unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_call_creates_the_session_and_sends_the_invite() {
    let (url, provider) = start_provider().await;
    let server = start(Some(&url)).await;
    server.pageview("v1").await;
    let mut dashboard = server.socket("/ws/dashboard?apiKey=sk_a").await;
    next_matching(&mut dashboard, Duration::from_secs(2), |v| {
        v["type"] == "INITIAL_VISITORS"
    })
    .await;
    let mut visitor = server.socket("/ws/visitor?apiKey=pk_a&visitorId=v1").await;

    let (status, answer) = server
        .call(json!({"visitorId": "v1", "inviteId": "inv-1", "invitedBy": "Alice"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["inviteId"], "inv-1");
    assert_eq!(answer["hostUrl"], "https://video.example/host/sess_1");
    assert_eq!(answer["guestUrl"], "https://video.example/guest/sess_1");
    assert_eq!(answer["state"], "sent");
    assert!(answer["expiresAt"].as_i64().is_some(), "{answer}");

    // The provider got the predecessor's request shape.
    assert_eq!(
        provider.bodies.lock().unwrap().clone(),
        vec![json!({"hostName": "Alice", "guestName": "Visitor", "isAdmin": true})]
    );
    // The visitor's page gets the guest URL, the dashboards Part A's message.
    let push = next_matching(&mut visitor, Duration::from_secs(2), |v| {
        v["type"] == "VIDEO_INVITE"
    })
    .await;
    assert_eq!(push["guestUrl"], "https://video.example/guest/sess_1");
    assert_eq!(push["inviteId"], "inv-1");
    let sent = next_matching(&mut dashboard, Duration::from_secs(2), |v| {
        v["type"] == "VIDEO_INVITE_SENT"
    })
    .await;
    assert_eq!(sent["guestUrl"], "https://video.example/guest/sess_1");
    assert_eq!(sent["visitorId"], "v1");

    // A retry (same invite id) answers the same session without a second one.
    let (status, again) = server
        .call(json!({"visitorId": "v1", "inviteId": "inv-1", "invitedBy": "Alice"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["hostUrl"], answer["hostUrl"]);
    assert_eq!(provider.calls(), 1, "a retry must not create a session");

    // Another invite while this one is open: refused before any session is created.
    let (status, refused) = server
        .call(json!({"visitorId": "v1", "inviteId": "inv-2"}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("inv-1"));
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_create_no_session() {
    let (url, provider) = start_provider().await;
    let server = start(Some(&url)).await;
    server.pageview("v1").await;

    let (status, body) = server.call(json!({"visitorId": "nobody"})).await;
    assert_eq!((status, body), (404, json!({"error": "Visitor not found"})));
    let (status, body) = server
        .post("/api/video-call", "pk_a", json!({"visitorId": "v1"}))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server.call(json!({"inviteId": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("visitorId"),
        "{body}"
    );
    assert_eq!(provider.calls(), 0);
    assert_eq!(server.listed_invite("v1").await, Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_failures_are_502_and_send_nothing() {
    let (url, provider) = start_provider().await;
    let server = start(Some(&url)).await;
    server.pageview("v1").await;

    for (mode, want_status, want_text) in [
        (Mode::ServerError, 502, "HTTP 500"),
        (Mode::Malformed, 502, "missing sessionId or urls"),
        (Mode::RateLimited, 503, "rate limiting"),
    ] {
        provider.set(mode);
        let (status, body) = server.call(json!({"visitorId": "v1"})).await;
        assert_eq!(status, want_status, "{mode:?}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.contains(want_text), "{mode:?}: {error}");
        assert_eq!(
            server.listed_invite("v1").await,
            Value::Null,
            "{mode:?}: no invite"
        );
    }
    assert_eq!(provider.calls(), 3);

    // Once the provider recovers, the visitor can be invited.
    provider.set(Mode::Ok);
    let (status, body) = server.call(json!({"visitorId": "v1"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.listed_invite("v1").await["state"], "sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_or_absent_provider() {
    // Nothing listens on the provider's port.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/video", closed.local_addr().expect("addr"));
    drop(closed);
    let server = start(Some(&url)).await;
    server.pageview("v1").await;
    let (status, body) = server.call(json!({"visitorId": "v1"})).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{body}"
    );
    assert_eq!(server.listed_invite("v1").await, Value::Null);

    let server = start(None).await;
    server.pageview("v1").await;
    let (status, body) = server.call(json!({"visitorId": "v1"})).await;
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no video provider"),
        "{body}"
    );
}
