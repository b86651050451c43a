//! Acknowledged writes that must not be lost (issue 17): the real server on a real SQLite
//! file, killed with SIGKILL at once after each answer and started again on the same file.
//! A deletion never comes back (and its opt-out tombstone refuses the visitor's next
//! heartbeat with 410); an invite and an activity batch are there after the restart. The
//! store writes heartbeats behind (100 ms), so without the commit before the answer these
//! were lost in most rounds.

mod common;

use common::Server;
use serde_json::{Value, json};

const KEY: &str = "demo_api_key";

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let answer = client
        .post(url)
        .header("X-Tippen-API-Key", KEY)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn track(client: &reqwest::Client, base: &str, id: &str, event: &str) -> (u16, Value) {
    post(
        client,
        format!("{base}/track/visitor"),
        json!({
            "event": event,
            "visitor": {"visitorId": id, "tabId": "tab", "visibility": "hidden",
                        "url": "https://test.com/", "timestamp": "2025-10-16T12:00:00Z"},
            "website": "test.com",
        }),
    )
    .await
}

async fn visitors(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let answer: Value = client
        .get(format!("{base}/api/visitors?apiKey={KEY}"))
        .send()
        .await
        .expect("GET /api/visitors")
        .json()
        .await
        .expect("JSON");
    answer["visitors"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|v| v["visitorId"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deletions_invites_and_batches_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tippen.db");
    let client = reqwest::Client::new();
    let mut server = Server::start(&db, &[]);
    for round in 0..5 {
        let id = format!("visitor_durable_{round}");
        let base = server.base_url.clone();
        assert_eq!(track(&client, &base, &id, "pageview").await.0, 200);
        let invite = format!("inv_durable_{round}");
        let (status, _) = post(
            &client,
            format!("{base}/api/send-video-invite"),
            json!({"visitorId": id, "inviteId": invite, "guestUrl": "https://video.test/guest"}),
        )
        .await;
        assert_eq!(status, 200);
        let user = format!("user_durable_{round}");
        let (status, _) = post(
            &client,
            format!("{base}/api/track/user-activity"),
            json!({"userId": user, "events": [{"type": "route", "route": "/a", "timestamp": 1}]}),
        )
        .await;
        assert_eq!(status, 200);
        server.kill();

        server = Server::start(&db, &[]);
        let base = server.base_url.clone();
        let listed = visitors(&client, &base).await;
        let visitor = find(&listed, &id)
            .unwrap_or_else(|| panic!("round {round}: the invited visitor is back: {listed:?}"));
        assert_eq!(
            visitor["invite"]["inviteId"], invite,
            "round {round}: the acknowledged invite survived"
        );
        let users: Value = client
            .get(format!("{base}/api/support/users?apiKey={KEY}"))
            .send()
            .await
            .expect("GET /api/support/users")
            .json()
            .await
            .expect("JSON");
        assert!(
            users["users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u["userId"] == user)),
            "round {round}: the acknowledged batch survived: {users}"
        );

        let answer = client
            .delete(format!("{base}/api/visitors/{id}"))
            .header("X-Tippen-API-Key", KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<Value>().await.expect("JSON"),
            json!({"success": true, "deleted": true})
        );
        server.kill();

        server = Server::start(&db, &[]);
        let base = server.base_url.clone();
        let listed = visitors(&client, &base).await;
        assert!(
            find(&listed, &id).is_none(),
            "round {round}: an acknowledged deletion came back after SIGKILL: {listed:?}"
        );
        let (status, body) = track(&client, &base, &id, "heartbeat").await;
        assert_eq!(
            (status, body),
            (
                410,
                json!({"error": format!("visitor {id} was deleted and has opted out of tracking")})
            ),
            "round {round}: the opt-out survived and refuses the next heartbeat"
        );
        assert!(find(&visitors(&client, &base).await, &id).is_none());
    }
    server.kill();
}
