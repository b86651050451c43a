//! The visitor channel (`/ws/visitor`) on a real loopback socket, on a temporary SQLite file:
//! the invite pushed the moment it is sent, delivery reported to dashboards, the visitor's
//! answer on the socket, the invite in the hello, refusals, cancellation, and isolation
//! between visitors.

mod common;

use std::time::{Duration, Instant};

use common::{Server, next_matching, quiet};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tippen_core::Site;
use tokio_tungstenite::tungstenite::Message;

async fn start() -> Server {
    common::start(
        &[
            Site::legacy("legacy", "Legacy", "legacy_key"),
            Site::new("a", "Site A", "pk_a", "sk_a"),
        ],
        |t| t,
    )
    .await
}

impl Server {
    async fn invite(&self, visitor_id: &str, invite_id: &str) {
        let body = json!({
            "visitorId": visitor_id,
            "guestUrl": "https://video.example/guest/1",
            "inviteId": invite_id,
            "invitedBy": "Alice",
        });
        let (status, answer) = self.post("/api/send-video-invite", "sk_a", body).await;
        assert_eq!((status, answer), (200, json!({"success": true})));
    }
}

fn update(invite_id: &str, state: &str) -> impl Fn(&Value) -> bool {
    let (invite_id, state) = (invite_id.to_owned(), state.to_owned());
    move |v| v["type"] == "VIDEO_INVITE_UPDATE" && v["inviteId"] == invite_id && v["state"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_is_pushed_delivered_and_answered_on_the_socket() {
    let server = start().await;
    server.pageview("v1").await;
    server.pageview("v2").await;
    let mut dashboard = server.dashboard().await;
    let mut visitor = server.visitor("v1").await;
    let mut other = server.visitor("v2").await;
    // Nothing open: no hello.
    quiet(&mut visitor, Duration::from_millis(200)).await;

    let started = Instant::now();
    server.invite("v1", "inv_1").await;
    let pushed = next_matching(&mut visitor, Duration::from_secs(1), |v| {
        v["type"] == "VIDEO_INVITE"
    })
    .await;
    let latency = started.elapsed();
    println!(
        "invite push latency (send request → VIDEO_INVITE on the visitor socket): {latency:?}"
    );
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(pushed["inviteId"], "inv_1");
    assert_eq!(pushed["guestUrl"], "https://video.example/guest/1");
    assert_eq!(pushed["invitedBy"], "Alice");
    assert!(pushed["expiresIn"].as_u64().is_some_and(|ms| ms > 0));

    // The dashboard hears sent, then delivered (the socket delivered it).
    next_matching(
        &mut dashboard,
        Duration::from_secs(2),
        update("inv_1", "sent"),
    )
    .await;
    next_matching(
        &mut dashboard,
        Duration::from_secs(2),
        update("inv_1", "delivered"),
    )
    .await;

    visitor
        .send(Message::text(
            json!({"type": "INVITE_ACCEPTED", "inviteId": "inv_1"}).to_string(),
        ))
        .await
        .expect("send");
    let reply = next_matching(&mut visitor, Duration::from_secs(2), |v| {
        v["type"] != "VIDEO_INVITE"
    })
    .await;
    assert_eq!(
        reply,
        json!({"type": "VIDEO_INVITE_UPDATE", "inviteId": "inv_1", "state": "accepted"})
    );
    next_matching(
        &mut dashboard,
        Duration::from_secs(2),
        update("inv_1", "accepted"),
    )
    .await;

    // Answers that make no sense get an ERROR, not a closed socket.
    visitor
        .send(Message::text(
            json!({"type": "INVITE_DECLINED", "inviteId": "inv_1"}).to_string(),
        ))
        .await
        .expect("send");
    let error = next_matching(&mut visitor, Duration::from_secs(2), |_| true).await;
    assert_eq!(error["type"], "ERROR", "{error}");
    visitor.send(Message::text("not json")).await.expect("send");
    let error = next_matching(&mut visitor, Duration::from_secs(2), |_| true).await;
    assert_eq!(error["type"], "ERROR", "{error}");

    // Another visitor's socket heard none of it.
    quiet(&mut other, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_opened_after_the_invite_gets_it_in_the_hello() {
    let server = start().await;
    server.pageview("v1").await;
    let mut dashboard = server.dashboard().await;
    server.invite("v1", "inv_1").await;
    next_matching(
        &mut dashboard,
        Duration::from_secs(2),
        update("inv_1", "sent"),
    )
    .await;

    let mut visitor = server.visitor("v1").await;
    let hello = next_matching(&mut visitor, Duration::from_secs(2), |_| true).await;
    assert_eq!(hello["type"], "VIDEO_INVITE");
    assert_eq!(hello["inviteId"], "inv_1");
    next_matching(
        &mut dashboard,
        Duration::from_secs(2),
        update("inv_1", "delivered"),
    )
    .await;

    // A second tab gets it too, without a second `delivered`.
    let mut tab2 = server.visitor("v1").await;
    let hello = next_matching(&mut tab2, Duration::from_secs(2), |_| true).await;
    assert_eq!(hello["inviteId"], "inv_1");
    quiet(&mut dashboard, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_invite_reaches_the_visitor_as_an_update() {
    let server = start().await;
    server.pageview("v1").await;
    let mut visitor = server.visitor("v1").await;
    server.invite("v1", "inv_1").await;
    next_matching(&mut visitor, Duration::from_secs(2), |v| {
        v["type"] == "VIDEO_INVITE"
    })
    .await;
    let (status, answer) = server
        .post(
            "/api/invites/cancel",
            "sk_a",
            json!({"visitorId": "v1", "inviteId": "inv_1"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let pushed = next_matching(&mut visitor, Duration::from_secs(2), |_| true).await;
    assert_eq!(
        pushed,
        json!({"type": "VIDEO_INVITE_UPDATE", "inviteId": "inv_1", "state": "cancelled"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_takes_any_site_key_and_refuses_others() {
    let server = start().await;
    for path in [
        "/ws/visitor?apiKey=sk_a&visitorId=v1",
        "/ws/visitor?apiKey=legacy_key&visitorId=v1",
    ] {
        let mut ws = server.socket(path).await;
        let _ = ws.close(None).await;
    }
    for (path, status) in [
        ("/ws/visitor?apiKey=nope&visitorId=v1", 403),
        ("/ws/visitor?visitorId=v1", 401),
        ("/ws/visitor?apiKey=pk_a", 400),
    ] {
        let url = format!("ws://{}{path}", server.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
            }
            Err(e) => panic!("{path}: unexpected error {e}"),
            Ok(_) => panic!("{path}: upgraded"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_on_one_tab_reaches_the_other_tabs_once() {
    let server = start().await;
    server.pageview("v1").await;
    let mut tab1 = server.visitor("v1").await;
    let mut tab2 = server.visitor("v1").await;
    server.invite("v1", "inv_1").await;
    for tab in [&mut tab1, &mut tab2] {
        let push =
            next_matching(tab, Duration::from_secs(2), |v| v["type"] == "VIDEO_INVITE").await;
        assert_eq!(push["inviteId"], "inv_1");
    }

    tab1.send(Message::text(
        json!({"type": "INVITE_DECLINED", "inviteId": "inv_1"}).to_string(),
    ))
    .await
    .expect("send");
    let declined = json!({"type": "VIDEO_INVITE_UPDATE", "inviteId": "inv_1", "state": "declined"});
    // The answering tab gets its reply, once; the other tab hears the update and hides its popup.
    let reply = next_matching(&mut tab1, Duration::from_secs(2), |_| true).await;
    assert_eq!(reply, declined);
    let pushed = next_matching(&mut tab2, Duration::from_secs(2), |_| true).await;
    assert_eq!(pushed, declined);
    quiet(&mut tab1, Duration::from_millis(300)).await;
    quiet(&mut tab2, Duration::from_millis(100)).await;
}
