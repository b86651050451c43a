//! `POST /api/video-call` with a provider this host cannot reach, or none configured (the
//! provider's answers — a session, failures, rate limiting — and the refusals are cases of the
//! shared conformance suite, run against the suite's stand-in in `conformance.rs`).

mod common;

use std::sync::Arc;

use common::Server;
use serde_json::{Value, json};
use tippen_core::Site;
use tippen_core::video::CustomerConnect;

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
